"""torch.distributed on the CPU with gloo, two ranks started by torchrun: a plain loop
(tests/dist_job.py), Lightning's strategies and the Hugging Face Trainer (tests/dist_framework_job.py).

Each job trains the same small model (a Linear, self-attention with packed q/k/v
rows split unevenly between the ranks, a LayerNorm, a Linear) for 3 epochs.
The logged statistics are compared with one process logging the job's final
weights, read back with TensorBoard's own reader. Every job is bounded by a
timeout and its whole process group is killed if it runs over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence, Set
from pathlib import Path

import numpy as np
import pytest
import torch

import dist_job
import tb_read
from browser import free_port
from weightwatch.integrations.torch import WeightWatch
from weightwatch.sketch import read_sketch

pytestmark = pytest.mark.slow
JOB = Path(__file__).with_name("dist_job.py")


def torchrun(tmp_path: Path, mode: str, *extra: str, timeout: float = 240, job: Path = JOB,
             log_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``job`` (tests/dist_job.py, its run in tmp_path/run) on 2 ranks; kill its whole
    process group if it outlives ``timeout``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(job), mode, str(log_dir or tmp_path / "run"), str(tmp_path), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(JOB.parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the {mode} job hung for {timeout} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-5000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def single_process(tmp_path: Path, traced: bool, step: int = dist_job.EPOCHS - 1) -> Path:
    """One process logging the job's final weights at ``step``; its data flow traced on a
    batch as the job's first forward pass traced it (DDP), or not at all (FSDP: sharded kernels
    give no outgoing terms)."""
    net = dist_job.Net()
    net.load_state_dict(torch.load(tmp_path / "final.pt"))
    example = torch.zeros(4, 6) if traced else None
    with WeightWatch(net, tmp_path / "single", example_input=example) as ww:
        ww.log(step)
    return tmp_path / "single"


def assert_same_as_one_process(tmp_path: Path, traced: bool = True, run: Path | None = None,
                               steps: Sequence[int] = range(dist_job.EPOCHS), metrics: Set[str] = frozenset({"loss"}),
                               framework_files: int = 0) -> None:
    """One run (``run``, else tmp_path/run) in tmp_path, written by one rank: one weightwatch event
    file (beside ``framework_files`` of the framework's own), the weights recorded at ``steps`` with
    the user's layer names, and at the last one every scalar, histogram count and sketch value
    those of one process logging the job's final weights (tmp_path/final.pt)."""
    run = run or tmp_path / "run"
    runs = sorted(p.parent for p in tmp_path.rglob("weightwatch.json"))
    assert runs == [run], runs
    assert len(tb_read.event_files(run)) == 1 + framework_files
    last = steps[-1]
    ref = single_process(tmp_path, traced, last)
    ours = tb_read.weightwatch_file(run)
    got, want = tb_read.scalars(ours), tb_read.scalars(ref)
    assert set(got) == set(want) | set(metrics)  # the user's layer names: no module. / _orig_mod.
    assert "weights/attn.q_proj/std" in got and not any("module" in t for t in got)
    for tag, values in want.items():
        assert [s for s, _ in got[tag]] == list(steps), tag
        assert tb_read.at(got[tag], last) == pytest.approx(values[-1][1], rel=2e-6, abs=1e-7), tag
    a, b = tb_read.load(ours), tb_read.load(tb_read.weightwatch_file(ref))
    for tag in b.Tags()["histograms"]:
        mine = [e.histogram_value for e in a.Histograms(tag) if e.step == last][0]
        theirs = b.Histograms(tag)[-1].histogram_value
        assert list(mine.bucket) == list(theirs.bucket), tag  # exact counts
        np.testing.assert_allclose(mine.bucket_limit, theirs.bucket_limit, rtol=1e-12)
    step, sketch = read_sketch(run)
    _, ref_sketch = read_sketch(ref)
    assert step == last and sketch.keys() == ref_sketch.keys()
    for name in ref_sketch:
        np.testing.assert_array_equal(sketch[name], ref_sketch[name])


@pytest.mark.parametrize("mode", ["ddp", "compiled-ddp"])
def test_ddp_one_writer_user_names_and_no_collective(tmp_path, mode):
    # rank 1 skips a log() call: with DDP nothing waits for it
    proc = torchrun(tmp_path, mode, "--skip-rank", "1", "--skip-epoch", "1")
    assert "rank 0 of 2" in proc.stdout and "rank 1 of 2" in proc.stdout
    assert_same_as_one_process(tmp_path)


def test_fsdp2_statistics_from_the_shards_equal_one_process(tmp_path):
    torchrun(tmp_path, "fsdp2")
    assert_same_as_one_process(tmp_path, traced=False)


@pytest.mark.parametrize("mode", ["fsdp2", "fsdp1"])
def test_fsdp_rank_that_does_not_log_is_named_within_the_timeout(tmp_path, mode):
    proc = torchrun(tmp_path, mode, "--skip-rank", "1", "--skip-epoch", "1", "--sync-timeout", "3")
    warned = [line for line in proc.stdout.splitlines() if "every rank must call log()" in line]
    assert any(line.startswith("rank 0 warning") and "1" in line for line in warned), proc.stdout[-3000:]
    sc = tb_read.scalars(tmp_path / "run")
    assert [s for s, _ in sc["weights/inp/mean"]] == [0]  # epoch 0 logged, then logging stopped cleanly


@pytest.mark.parametrize("mode", ["fsdp1", "fsdp1-wrapped", "fsdp1-flat", "fsdp1-noshard", "hsdp2"])
def test_fsdp1_and_hsdp_statistics_from_the_shards_equal_one_process(tmp_path, mode):
    torchrun(tmp_path, mode)
    assert_same_as_one_process(tmp_path, traced=False)


def test_fsdp1_unit_out_of_reach_is_refused_with_what_to_do(tmp_path):
    # FSDP wrapped the model from outside (as accelerate does for the Hugging Face Trainer): the module
    # given holds FSDP's pieces but not the units, so it is refused instead of read as whole tensors
    code = ("import sys; sys.path.insert(0, 'tests'); import dist_job, torch, torch.distributed as d\n"
            f"d.init_process_group('gloo', init_method='tcp://127.0.0.1:{free_port()}', rank=0, world_size=1)\n"
            "from weightwatch.integrations.torch import WeightWatch\n"
            "net = dist_job.Net()\n"
            "wrapped = dist_job.wrap('fsdp1', net)\n"
            f"WeightWatch(wrapped, {str(tmp_path / 'whole')!r}).close()\n"
            "print('wrapped model watched', flush=True)\n"
            f"WeightWatch(net, {str(tmp_path / 'inner')!r})\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=JOB.parents[1])
    assert "wrapped model watched" in out.stdout, out.stderr[-2000:]
    assert out.returncode != 0 and "give the watcher the FSDP-wrapped model" in out.stderr, out.stderr[-2000:]
    assert "inp.weight of Net" in out.stderr


FRAMEWORK_JOB = Path(__file__).with_name("dist_framework_job.py")
STEPS_PER_EPOCH = 4  # 128 samples, 64 a rank, batches of 16 (tests/dist_framework_job.py)


def framework_run(tmp_path: Path, mode: str) -> Path:
    """Run tests/dist_framework_job.py; the one run directory weightwatch wrote (the framework's own)."""
    proc = torchrun(tmp_path, mode, job=FRAMEWORK_JOB, log_dir=tmp_path / "root")
    assert "rank 0 of 2" in proc.stdout and "rank 1 of 2" in proc.stdout, proc.stdout[-3000:]
    runs = [p.parent for p in tmp_path.rglob("weightwatch.json")]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("mode", ["lightning-ddp", "lightning-ddp-compiled", "lightning-fsdp"])
def test_lightning_strategy_one_writer_and_the_numbers_of_one_process(tmp_path, mode):
    run = framework_run(tmp_path, mode)
    assert run == tmp_path / "root" / "lightning_logs" / "version_0"  # the TensorBoardLogger's directory
    # Lightning's x axis: the last optimizer step of each epoch
    steps = [STEPS_PER_EPOCH * (e + 1) - 1 for e in range(dist_job.EPOCHS)]
    assert_same_as_one_process(tmp_path, traced="fsdp" not in mode, run=run, steps=steps,
                               metrics={"train_loss", "epoch"}, framework_files=1)


@pytest.mark.parametrize("mode", ["hf-ddp", "hf-ddp-compiled"])
def test_hf_trainer_under_torchrun_one_writer_and_the_numbers_of_one_process(tmp_path, mode):
    run = framework_run(tmp_path, mode)
    assert run.parent == tmp_path / "root" / "runs"  # transformers' TensorBoardCallback's directory
    steps = [STEPS_PER_EPOCH * (e + 1) for e in range(dist_job.EPOCHS)]  # the Trainer's global_step
    metrics = tb_read.scalars(tb_read.weightwatch_file(run))
    logged = {t for t in metrics if "/" not in t}  # state.log_history's numbers; weightwatch's tags have a /
    assert {"loss", "epoch"} <= logged
    assert_same_as_one_process(tmp_path, run=run, steps=steps, metrics=logged, framework_files=1)
    # the Trainer's own numbers, at the steps transformers' TensorBoardCallback wrote them
    theirs = tb_read.scalars(tb_read.other_files(run)[0])
    assert metrics["loss"] == [(s, pytest.approx(v, rel=1e-6)) for s, v in theirs["train/loss"]]
