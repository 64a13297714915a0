"""tests/dist_job.py's model trained by Lightning or the Hugging Face Trainer under torchrun (gloo, CPU).

    torchrun --nproc_per_node 2 tests/dist_framework_job.py MODE ROOT_DIR OUT_DIR

MODE is ``lightning-ddp``, ``lightning-fsdp`` (Lightning's strategies, ``Trainer(accelerator="cpu",
devices=2)``; Lightning lets its FSDP strategy run on CUDA only: the job steps past that check)
or ``hf-ddp`` (``transformers.Trainer``, DDP over gloo), with ``-compiled`` appended for a
``torch.compile``'d model (Lightning: ``fit(torch.compile(module))``; Hugging Face:
``torch_compile=True``), both with the ``eager`` backend. Each trains
:class:`dist_job.Net` for ``dist_job.EPOCHS`` epochs on 128 samples (64 per rank, batches of
16: 4 steps an epoch) with the framework's ``WeightWatchCallback`` and its default run
directory under ROOT_DIR (the framework's own TensorBoard directory). Rank 0 saves the final
full weights (state-dict keys of ``dist_job.Net``) to OUT_DIR/final.pt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

import dist_job

SAMPLES, BATCH = 128, 16


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100)
    return torch.randn(SAMPLES, 6, generator=g), torch.randint(0, 3, (SAMPLES,), generator=g)


def save(state: dict[str, torch.Tensor], out_dir: str) -> None:
    if dist.get_rank() == 0:
        torch.save({k: v.detach().cpu() for k, v in state.items()}, Path(out_dir) / "final.pt")


def lightning(strategy: str, root: str, out_dir: str, compiled: bool) -> None:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from weightwatch.integrations.lightning import WeightWatchCallback

    class LitNet(pl.LightningModule):
        """dist_job.Net's layers under the same names, trained by Lightning."""

        def __init__(self) -> None:
            super().__init__()
            net = dist_job.Net()
            self.inp, self.attn, self.norm, self.out = net.inp, net.attn, net.norm, net.out

        forward = dist_job.Net.forward

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    if strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        class CPUFSDPStrategy(FSDPStrategy):
            """Lightning's FSDPStrategy (FullyShardedDataParallel, use_orig_params=True) on the CPU: a subclass,
            which the accelerator connector's check that the strategy runs on CUDA (``type(...) is``) lets by,
            and the model wrapped as Lightning wraps it but with ``device_id`` the CPU (Lightning passes the
            CUDA index, None here, which FSDP refuses); Lightning's own ``_setup_model`` then finds it wrapped."""

            def _setup_model(self, model: nn.Module) -> nn.Module:
                from torch.distributed.fsdp import FullyShardedDataParallel

                wrapped = FullyShardedDataParallel(model, sharding_strategy=self.sharding_strategy,
                                                   device_id=torch.device("cpu"), **self.kwargs)
                return super()._setup_model(wrapped)

        chosen: Any = CPUFSDPStrategy(auto_wrap_policy={nn.LayerNorm})  # a unit for the norm, the root's for the rest
    else:
        chosen = strategy
    torch.manual_seed(0)
    model = LitNet()
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy=chosen, max_epochs=dist_job.EPOCHS, default_root_dir=root,
        callbacks=[WeightWatchCallback(hparams={"mode": f"lightning-{strategy}"}, strict=True, sync_timeout=60)],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=1)
    fitted = torch.compile(model, backend="eager") if compiled else model
    trainer.fit(fitted, DataLoader(TensorDataset(*data()), batch_size=BATCH, shuffle=False))
    save(trainer.strategy.lightning_module_state_dict(), out_dir)  # a collective under FSDP


class _Pairs(Dataset):
    def __init__(self) -> None:
        self.x, self.y = data()

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


class HFNet(dist_job.Net):
    """dist_job.Net returning its loss, as the Hugging Face Trainer expects."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = super().forward(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def hf(root: str, out_dir: str, compiled: bool) -> None:
    from transformers import Trainer, TrainingArguments

    from weightwatch.integrations.hf import WeightWatchCallback

    torch.manual_seed(0)
    model = HFNet()
    args = TrainingArguments(
        output_dir=root, per_device_train_batch_size=BATCH, num_train_epochs=dist_job.EPOCHS, learning_rate=0.1,
        optim="sgd", lr_scheduler_type="constant", weight_decay=0.0, warmup_steps=0, max_grad_norm=0.0,
        logging_steps=2, save_strategy="no", report_to="tensorboard", use_cpu=True, ddp_backend="gloo",
        ddp_find_unused_parameters=False, dataloader_num_workers=0, seed=0, disable_tqdm=True,
        torch_compile=compiled, torch_compile_backend="eager" if compiled else None)
    trainer = Trainer(model=model, args=args, train_dataset=_Pairs(),
                      callbacks=[WeightWatchCallback(hparams={"mode": "hf-ddp"}, strict=True)])
    trainer.train()
    save(trainer.model.state_dict(), out_dir)


def main() -> None:
    mode, root, out_dir = sys.argv[1:4]
    base, compiled = mode.removesuffix("-compiled"), mode.endswith("-compiled")
    if base == "hf-ddp":  # accelerate turns FSDP on for accelerators only
        hf(root, out_dir, compiled)
    elif base.startswith("lightning-"):
        lightning(base.removeprefix("lightning-"), root, out_dir, compiled)
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(f"rank {dist.get_rank()} of {dist.get_world_size()} (pid {os.getpid()}) done", flush=True)
    # the frameworks leave the process group up; gloo's threads torn down at interpreter exit then
    # abort a rank now and then ("terminate called without an active exception", seen in make test)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
