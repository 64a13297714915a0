"""A small training job under torch.distributed (gloo, CPU), run by tests/test_distributed.py with torchrun.

    torchrun --nproc_per_node 2 tests/dist_job.py MODE LOG_DIR OUT_DIR [--skip-rank R --skip-epoch E]

MODE is ``ddp`` (DistributedDataParallel), ``compiled-ddp`` (DDP of a
``torch.compile``'d model), ``fsdp2`` (``fully_shard``), ``hsdp2`` (``fully_shard`` on a
(replicate 2, shard world/2) mesh), ``fsdp1`` (FullyShardedDataParallel,
``use_orig_params=True``, one unit), ``fsdp1-wrapped`` (nested units), ``fsdp1-flat``
(``use_orig_params=False``), ``fsdp1-noshard`` (NO_SHARD) or ``fsdp1-hybrid``
(HYBRID_SHARD over (2, world/2): on 2 ranks FSDP makes it NO_SHARD, on 4 it shards).
Every rank makes the WeightWatch and logs each epoch,
but rank R skips the log of epoch E when asked. Rank 0 saves the final full
weights to OUT_DIR/final.pt, for the test to compare with one process.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

EPOCHS = 3


class Net(nn.Module):
    """Linear -> self-attention (packed q/k/v, rows split unevenly over 2 ranks) -> LayerNorm -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 10)
        self.attn = nn.MultiheadAttention(10, 2)
        self.norm = nn.LayerNorm(10)
        self.out = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x)).unsqueeze(0)
        h = self.attn(h, h, h, need_weights=False)[0][0]
        return self.out(self.norm(h))


def wrap(mode: str, net: Net) -> nn.Module:
    if mode == "ddp":
        return nn.parallel.DistributedDataParallel(net)
    if mode == "compiled-ddp":
        return nn.parallel.DistributedDataParallel(torch.compile(net, backend="eager"))
    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for m in (net.inp, net.out):
            fully_shard(m)
        return fully_shard(net)
    if mode == "hsdp2":  # fully_shard over a (replicate 2, shard world / 2) mesh: on 2 ranks, 2 whole replicas
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (2, dist.get_world_size() // 2), mesh_dim_names=("replicate", "shard"))
        return fully_shard(net, mesh=mesh)
    if mode.startswith("fsdp1"):
        from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

        options: dict = {"use_orig_params": True, "device_id": torch.device("cpu")}
        if mode == "fsdp1-wrapped":  # a unit each for inp, norm and out, the attention in the root's unit
            for name in ("inp", "norm", "out"):
                setattr(net, name, FullyShardedDataParallel(getattr(net, name), **options))
        elif mode == "fsdp1-flat":  # the modules' tensors are views of the unsharded FlatParameter
            options["use_orig_params"] = False
        elif mode == "fsdp1-noshard":
            options["sharding_strategy"] = ShardingStrategy.NO_SHARD
        elif mode == "fsdp1-hybrid":  # shards within groups of world / 2, replicated over the 2 groups
            from torch.distributed.device_mesh import init_device_mesh

            mesh = init_device_mesh("cpu", (2, dist.get_world_size() // 2))
            options.update(sharding_strategy=ShardingStrategy.HYBRID_SHARD, device_mesh=mesh)
        elif mode != "fsdp1":
            raise SystemExit(f"unknown mode {mode}")
        return FullyShardedDataParallel(net, **options)
    raise SystemExit(f"unknown mode {mode}")


def full_state(mode: str, model: nn.Module) -> dict[str, torch.Tensor]:
    if "sdp" in mode:  # FSDP1, FSDP2, HSDP
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))  # collective
    return {k.removeprefix("module.").replace("_orig_mod.", ""): v for k, v in model.state_dict().items()}


def main() -> None:
    from weightwatch.integrations.torch import WeightWatch

    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("log_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--skip-rank", type=int, default=-1)
    ap.add_argument("--skip-epoch", type=int, default=-1)
    ap.add_argument("--sync-timeout", type=float, default=60.0)
    args = ap.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = wrap(args.mode, Net())
    ww = WeightWatch(model, args.log_dir, hparams={"mode": args.mode}, sync_timeout=args.sync_timeout, strict=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data, as a sampler gives
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(EPOCHS):
            for i in range(0, 64, 16):
                loss = nn.functional.cross_entropy(model(x[i:i + 16]), y[i:i + 16])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if not (rank == args.skip_rank and epoch == args.skip_epoch):
                ww.log(epoch, loss=loss.item())
        ww.close()
    for w in caught:
        print(f"rank {rank} warning: {w.message}", flush=True)
    state = full_state(args.mode, model)
    if rank == 0:
        torch.save({k: v.detach().cpu() for k, v in state.items()}, Path(args.out_dir) / "final.pt")
    print(f"rank {rank} of {dist.get_world_size()} (pid {os.getpid()}) done", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
