"""Reductions with torch ops on the tensors' own device (CUDA, MPS, ...).

Every layer's results are packed into one float64 vector on the device and
copied to the host in a single transfer per log call; the weights themselves
never leave the device. Binning checks a float64 estimate against the same float64 edges as the
CPU kernels (the edges written to the file), so counts agree across devices.

torch is imported inside the function: this module is only loaded for torch
tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .packed import Packing, unpack
from .raw import KernelJob, RawLayer

__all__ = ["KernelJob", "reduce_on_device"]


def reduce_on_device(jobs: Sequence[KernelJob], bins: int) -> list[RawLayer]:
    import torch

    packed = []
    layouts = []
    for job in jobs:
        w = job.kernel.detach().reshape(max(job.nodes, 1), -1)
        if w.dtype not in (torch.float32, torch.float64):
            w = w.float()
        finite = torch.isfinite(w)
        bad = (~finite).sum()
        lo = torch.where(finite, w, math.inf).amin().double()
        hi = torch.where(finite, w, -math.inf).amax().double()
        any_finite = bad < w.numel()
        # histogram_range(), on the device: widen a constant kernel, [0, 1] when nothing is finite.
        rlo = torch.where(any_finite, torch.where(hi > lo, lo, lo - 0.5), torch.zeros_like(lo))
        rhi = torch.where(any_finite, torch.where(hi > lo, hi, hi + 0.5), torch.ones_like(hi))
        wd = torch.where(finite, w, 0).double()
        # bin_edges() and the CPU kernel's binning, on the device: a float64
        # estimate checked against the edges written to the file
        edges = rlo + (rhi - rlo) * (torch.arange(bins + 1, dtype=torch.float64, device=w.device) / bins)
        edges[-1] = rhi
        idx = ((wd - rlo) * (bins / (rhi - rlo))).to(torch.int64).clamp_(0, bins - 1)
        for _ in range(2):  # the estimate is at most one bin off; twice covers degenerate ranges
            idx -= ((wd < edges[idx]) & (idx > 0)).to(torch.int64)
            idx += ((wd >= edges[idx + 1]) & (idx < bins - 1)).to(torch.int64)
        idx = torch.where(finite, idx, bins)  # non-finite entries go to a dropped extra bin
        counts = torch.bincount(idx.reshape(-1), minlength=bins + 1)[:bins].double()
        row_sum = wd.sum(1)
        row_abs = wd.abs().sum(1)
        parts = [torch.stack([bad.double(), row_sum.sum(), (wd * wd).sum(), lo, hi]), counts, row_sum, row_abs]
        if job.cols:  # per row block: (groups, fan_in), then grouped into input units
            parts.append(wd.reshape(job.col_groups, -1, wd.shape[1]).sum(1).reshape(job.cols, -1).sum(1))
        nsample = 0
        if job.sample is not None:
            index = torch.as_tensor(job.sample, device=w.device)
            parts.append(job.kernel.detach().reshape(-1)[index].double())
            nsample = len(job.sample)
        nbias = 0
        if job.bias is not None:
            bias = job.bias.detach().reshape(-1).double()
            parts.append(bias)
            nbias = bias.numel()
        packed.append(torch.cat(parts))
        layouts.append(Packing(w.numel(), w.shape[0], job.cols, nsample, nbias))

    host = torch.cat(packed).cpu().numpy() if packed else np.zeros(0)  # the one transfer
    return unpack(host, layouts, bins)
