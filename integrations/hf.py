"""Hugging Face transformers integration: a ``TrainerCallback`` for ``Trainer.train``.

>>> trainer = Trainer(model=model, args=args, train_dataset=train,   # doctest: +SKIP
...                   callbacks=[WeightWatchCallback()])
>>> trainer.train()                                                  # doctest: +SKIP

The model's layers are found as the PyTorch integration finds them
(:func:`weightwatch.integrations.torch.discover_layers`), so tags and numbers
are the same as with ``WeightWatch``.

Where and when:

- the run directory is ``log_dir`` when given, else where transformers'
  ``TensorBoardCallback`` writes: ``$TENSORBOARD_LOGGING_DIR``, then
  ``args.logging_dir`` (transformers < 5), then ``<output_dir>/runs/<time>_<host>``,
  the directory transformers' callback created when training began;
- the weights are written at the end of every epoch (``schedule``), and every
  N optimizer steps with ``every_n_steps``;
- the metrics are the numbers of ``state.log_history`` (loss, eval_loss,
  eval_accuracy, learning_rate, epoch, ...), each entry at its own step,
  written as the Trainer logs them;
- the x axis is ``state.global_step``, as for transformers' own TensorBoard logs;
- only the main process (``state.is_world_process_zero``) writes; when the
  model is sharded (FSDP through accelerate: FullyShardedDataParallel or
  ``fully_shard``) every process reduces its own shards at each log with a few
  small all-reduces (see :func:`weightwatch.integrations.torch.watched`).

With a reference, the live verdict of the weights logged at a step is given
once that step's logs are in: the Trainer logs an epoch's loss and evaluation
after ``on_epoch_end``, so when it is about to (``control.should_log`` /
``should_evaluate``) the weights are judged in ``on_log`` / ``on_evaluate``,
where ``control.should_training_stop`` is set when the stop rule says so. The
steps are optimizer steps; a reference fitted on runs that count epochs judges
the weights logged at the end of each epoch as that epoch (``state.epoch``), and
the weights logged between epoch ends (``every_n_steps``) are not judged.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from weightwatch._optional import require

torch = require("torch", "hf", "weightwatch.integrations.hf")
transformers = require("transformers", "hf", "weightwatch.integrations.hf")

from weightwatch.storage import Location, location  # noqa: E402

from ._callback import WatchingCallback, WatchSession, is_scalar, scalar_metrics  # noqa: E402
from ._torch_dist import is_sharded, unwrap  # noqa: E402
from .options import WatchOptions, check_every  # noqa: E402
from ._torch_trace import traced_run_options  # noqa: E402
from .torch import watched  # noqa: E402

__all__ = ["HPARAM_ARGS", "WatchOptions", "WeightWatchCallback", "run_dir"]

#: TrainingArguments shown in the HParams dashboard when no hparams are given.
HPARAM_ARGS = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
               "weight_decay", "warmup_steps", "lr_scheduler_type", "optim", "seed")


def run_dir(args: Any, log_dir: str | Path | None = None) -> Location:
    """The directory transformers' TensorBoard output goes to (see the module doc), or ``log_dir``."""
    if log_dir is not None:
        return location(log_dir)
    env = os.environ.get("TENSORBOARD_LOGGING_DIR")
    if env:
        return Path(env).expanduser()
    if getattr(args, "logging_dir", None):
        return Path(args.logging_dir)
    return _default_logdir(Path(args.output_dir))


def _default_logdir(output_dir: Path) -> Path:
    """``<output_dir>/runs/<Mon><dd>_<HH-MM-SS>_<host>``, as transformers' TensorBoardCallback names
    it when training begins; that callback runs just before this one and has created the
    directory, so when the clock has just passed a second, the one of the second before is taken."""
    from transformers.integrations.integration_utils import default_logdir

    now = output_dir / default_logdir()
    stamp = (datetime.now() - timedelta(seconds=1)).strftime("%b%d_%H-%M-%S")
    before = output_dir / "runs" / f"{stamp}_{socket.gethostname()}"
    return before if before.is_dir() and not now.is_dir() else now


class WeightWatchCallback(WatchingCallback, transformers.TrainerCallback):
    """Record per-layer weight statistics of a model trained by ``transformers.Trainer``.

    Args:
        log_dir: the run directory; None (default) follows transformers'
            TensorBoard output (see the module doc).
        every_n_steps: also record the weights every N optimizer steps (set it
            to ``args.logging_steps`` to match the Trainer's logging).
        sync_timeout: when the model is sharded, how long (seconds) a log waits
            for every process before it names the ones that did not come and
            stops logging the run.
        options / ``**settings``: the watcher options, a
            :class:`~weightwatch.integrations.options.WatchOptions` and/or its
            fields as keywords. Here ``schedule`` is asked about each epoch (from
            0); ``hparams`` None takes :data:`HPARAM_ARGS` from the
            TrainingArguments; with ``stop``, ``control.should_training_stop`` is
            set when the rule says so.
    """

    def __init__(self, log_dir: str | Path | None = None, *, every_n_steps: int | None = None,
                 sync_timeout: float = 300.0, options: WatchOptions | None = None, **settings: Any) -> None:
        self._store_options(log_dir, options, settings)
        self.every_n_steps = check_every(every_n_steps, "every_n_steps")
        self.sync_timeout = sync_timeout
        self._history_seen = 0  # entries of state.log_history already written
        self._written: dict[str, int] = {}  # metric -> the last step it was written at
        self._judge_on: str | None = None  # "log" / "evaluate": the event that brings the logged step's metrics
        self._logged_at = -1  # the global step of the Trainer's latest on_log

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self._needs_run() or not (state.is_world_process_zero or model is not None and is_sharded(model)):
            return
        self._open(lambda: self._session(args, model))
        self._history_seen = len(state.log_history)

    def _session(self, args: Any, model: Any) -> WatchSession:
        if model is None:
            raise ValueError("WeightWatchCallback: the Trainer passed no model to on_train_begin")
        opts = self.options
        model = unwrap(model)
        plan = watched(model, opts, self.sync_timeout)
        flow = traced_run_options(model, plan, lambda: self.run)  # traced on the first forward pass
        hparams = opts.hparams
        if hparams is None:
            hparams = {k: getattr(args, k) for k in HPARAM_ARGS if getattr(args, k, None) is not None}
        return WatchSession(run_dir(args, self.log_dir), plan.found, opts, framework="hf", hparams=hparams,
                            step_unit="step", **flow)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None and self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._log_weights(state, control)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch = max(round(state.epoch or 0) - 1, 0)  # state.epoch counts finished epochs here
        if self.run is not None and self.options.records(epoch):
            self._log_weights(state, control)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        self._logged_at = state.global_step
        self._log_history(state)
        if self._judge_on == "log":
            self._judge(control)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._log_history(state)
        if self._judge_on == "evaluate":
            self._judge(control)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None:
            self._log_history(state)
            self.run.close()

    def _log_weights(self, state: Any, control: Any) -> None:
        """Record the weights at ``state.global_step``; judge them now, or once the metrics the
        Trainer is about to log at this step are in (see the module doc)."""
        evaluate = bool(getattr(control, "should_evaluate", False))
        log = bool(getattr(control, "should_log", False)) and state.global_step > self._logged_at
        self._judge_on = "evaluate" if evaluate else "log" if log else None
        with torch.no_grad():
            self.run.log(state.global_step, epoch=state.epoch, score=self._judge_on is None)
        if self._judge_on is None:
            control.should_training_stop |= self.should_stop

    def _judge(self, control: Any) -> None:
        self._judge_on = None
        if self.run is not None:
            self.run.score_pending()
            control.should_training_stop |= self.should_stop

    def _log_history(self, state: Any) -> None:
        """Write the entries of ``state.log_history`` not written yet, each at its own step."""
        if self.run is None:
            return
        for entry in state.log_history[self._history_seen:]:
            step = int(entry.get("step", state.global_step))
            # several entries share a step (train loss, evaluation, the final summary) and repeat
            # "epoch": each metric is written once per step
            metrics = {k: v for k, v in scalar_metrics(entry, drop={"step"}).items() if self._written.get(k) != step}
            epoch = entry.get("epoch")
            self.run.log(step, metrics, weights=False, epoch=float(epoch) if is_scalar(epoch) else None)
            self._written.update(dict.fromkeys(metrics, step))
        self._history_seen = len(state.log_history)
