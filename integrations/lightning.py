"""PyTorch Lightning integration: ``WeightWatchCallback`` for ``Trainer.fit``.

>>> trainer = Trainer(max_epochs=20, callbacks=[WeightWatchCallback()])  # doctest: +SKIP
>>> trainer.fit(model, train_loader, val_loader)                       # doctest: +SKIP

The layers of the LightningModule are found as the PyTorch integration finds
them (:func:`weightwatch.integrations.torch.discover_layers`), so tags and
numbers are the same as with ``WeightWatch``.

Where and when:

- the run directory is ``log_dir`` when given, else the directory of the
  trainer's ``TensorBoardLogger`` (``lightning_logs/version_N``), so one
  ``tensorboard --logdir`` shows Lightning's curves and the weights together;
  without such a logger, ``<default_root_dir>/weightwatch``;
- at the end of every training epoch (after its validation) the weights and
  ``trainer.callback_metrics`` (plus ``epoch``) are written; the sanity check
  writes nothing;
- the x axis is Lightning's own: the step its loggers use (the index of the
  last optimizer step), so the weights line up with Lightning's curves and the
  epoch-end metrics fall on the points Lightning logged for them;
- under DDP (or any multi-process strategy) only global rank 0 writes; under
  the ``fsdp`` strategy (FullyShardedDataParallel) and ``fully_shard`` models
  every rank reduces its own shards with a few small all-reduces at the end of
  each epoch (see :func:`weightwatch.integrations.torch.watched`) and rank 0
  writes. The run starts at ``on_fit_start``, once the strategy has wrapped
  the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from weightwatch._optional import require

torch = require("torch", "lightning", "weightwatch.integrations.lightning")
pl = require("lightning.pytorch", "lightning", "weightwatch.integrations.lightning")

from weightwatch.storage import Location, location  # noqa: E402

from ._callback import WatchingCallback, WatchSession, scalar_metrics  # noqa: E402
from ._torch_dist import is_sharded  # noqa: E402
from .options import WatchOptions, check_every  # noqa: E402
from ._torch_trace import traced_run_options  # noqa: E402
from .torch import watched  # noqa: E402

__all__ = ["WatchOptions", "WeightWatchCallback", "logger_step"]


def logger_step(trainer: Any) -> int:
    """The step Lightning's loggers use for what is logged now: the index of the last optimizer
    step (``global_step - 1``; 0 before the first one)."""
    return max(int(trainer.global_step) - 1, 0)


def run_dir(trainer: Any, log_dir: str | Path | None) -> Location:
    """``log_dir``; else the first TensorBoardLogger's ``log_dir``; else ``<default_root_dir>/weightwatch``."""
    if log_dir is not None:
        return location(log_dir)
    for logger in trainer.loggers:
        if isinstance(logger, pl.loggers.TensorBoardLogger):
            return location(logger.log_dir)
    return location(trainer.default_root_dir) / "weightwatch"


class WeightWatchCallback(WatchingCallback, pl.Callback):
    """Record per-layer weight statistics of a LightningModule during ``Trainer.fit``.

    Args:
        log_dir: the run directory; None (default) uses the trainer's
            TensorBoardLogger directory (see the module doc).
        every_n_steps: also record the weights after every N optimizer steps,
            at the same steps as ``Trainer(log_every_n_steps=N)`` logs.
        sync_timeout: under a sharded strategy, how long (seconds) a log waits
            for every rank before it names the ranks that did not come and
            stops logging the run.
        options / ``**settings``: the watcher options, a
            :class:`~weightwatch.integrations.options.WatchOptions` and/or its
            fields as keywords. Here ``schedule`` is asked about each epoch (from
            0); ``hparams`` None takes the module's ``hparams`` (what
            ``save_hyperparameters`` stored); with ``stop``, ``trainer.should_stop``
            is set (decided on rank 0, for every rank) when the rule says so.
    """

    def __init__(self, log_dir: str | Path | None = None, *, every_n_steps: int | None = None,
                 sync_timeout: float = 300.0, options: WatchOptions | None = None, **settings: Any) -> None:
        super().__init__()
        self._store_options(log_dir, options, settings)
        self.every_n_steps = check_every(every_n_steps, "every_n_steps")
        self.sync_timeout = sync_timeout
        self._last_global_step = -1

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # after the strategy wrapped the module: a sharded one is watched on every rank
        if not self._needs_run() or not (trainer.is_global_zero or is_sharded(pl_module, trainer.model)):
            return
        self._open(lambda: self._session(trainer, pl_module))

    def _session(self, trainer: Any, pl_module: Any) -> WatchSession:
        opts = self.options
        plan = watched(pl_module, opts, self.sync_timeout, wrapper=trainer.model)
        hparams = opts.hparams if opts.hparams is not None else dict(getattr(pl_module, "hparams", {}) or {})
        # the data flow, on Lightning's example_input_array or the module's first forward pass
        example = getattr(pl_module, "example_input_array", None)
        flow = traced_run_options(pl_module, plan, lambda: self.run, example)
        return WatchSession(run_dir(trainer, self.log_dir), plan.found, opts, framework="lightning",
                            hparams=hparams, step_unit="step", **flow)

    def _writing(self, trainer: Any) -> bool:
        """Whether this rank takes part in a log now: rank 0, and every rank of a sharded run."""
        return self.run is not None and (trainer.is_global_zero or self.run.collective) and \
            not trainer.sanity_checking

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if not self.every_n_steps or not self._writing(trainer) or step == self._last_global_step:
            return
        self._last_global_step = step  # with gradient accumulation, several batches share a step
        if step > 0 and step % self.every_n_steps == 0:
            with torch.no_grad():
                self.run.log(logger_step(trainer))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._writing(trainer):
            metrics = scalar_metrics(trainer.callback_metrics)
            metrics["epoch"] = float(trainer.current_epoch)
            with torch.no_grad():
                self.run.log(logger_step(trainer), metrics, weights=bool(self.options.records(trainer.current_epoch)),
                             epoch=trainer.current_epoch + 1.0)  # the epochs completed
        if self.options.stop_rule is not None and not trainer.sanity_checking:
            # every rank takes part; only rank 0 has a verdict
            if trainer.strategy.reduce_boolean_decision(self.should_stop, all=False):
                trainer.should_stop = True

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit" and self.run is not None:
            self.run.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.run is not None:
            self.run.close(success=False)
