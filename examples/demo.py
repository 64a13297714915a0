"""The ``make demo`` job: train a small population on the digits, then compare it.

    python examples/demo.py                      # 20 runs, 3 epochs, into runs/demo; report in report/
    python examples/demo.py --runs 8 --epochs 2  # quicker

1. trains MLPs and CNNs on scikit-learn's 8x8 digits with different seeds and
   weight initialisations (some good, some poor, some that never learn),
   each logged by ``weightwatch.integrations.torch.WeightWatch``
   (the generator is tests/populations.py, which the tests use too);
2. runs ``weightwatch compare`` on them: the table of groups, the dispersion
   test, report/index.html and the population in TensorBoard;
3. fits a reference on the population (``weightwatch fit``) and classifies two
   runs it did not see, one well initialised and one dead (``weightwatch classify``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the population generator

import populations  # noqa: E402

from weightwatch.analysis import logdir_spec  # noqa: E402
from weightwatch.cli import main as weightwatch  # noqa: E402


def train(log_dir: Path, runs: int, epochs: int) -> None:
    if log_dir.exists() and any(log_dir.iterdir()):
        if not (log_dir / "truth.json").exists():
            raise SystemExit(f"{log_dir} holds something else than an earlier demo; pass another --log-dir")
        shutil.rmtree(log_dir)  # an earlier demo's runs: start again
    t0 = time.perf_counter()
    truth = populations.make_population(log_dir, runs=runs, epochs=epochs)
    accs = sorted(t.val_accuracy for t in truth.values())
    print(f"trained {len(truth)} runs in {time.perf_counter() - t0:.0f} s into {log_dir} "
          f"(val_accuracy {accs[0]:.2f} .. {accs[-1]:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("report"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)

    print("== 1. training a population ==")
    train(args.log_dir, args.runs, args.epochs)

    print("\n== 2. weightwatch compare ==")
    code = weightwatch(["compare", str(args.log_dir), "--out", str(args.out)])
    if code != 0:
        return code
    print("\n== 3. weightwatch fit, then classify two runs it did not see ==")
    reference = args.out / "reference.ww"
    code = weightwatch(["fit", str(args.log_dir), "-o", str(reference)])
    if code != 0:
        return code
    unseen = args.log_dir.with_name(args.log_dir.name + "-unseen")
    shutil.rmtree(unseen, ignore_errors=True)
    for family, init in (("mlp", 0.1), ("mlp", "zeros")):
        populations.train_run(unseen / f"{family}_init{init}", family, init, seed=1000, epochs=args.epochs)
    print()
    code = weightwatch(["classify", str(unseen), "--reference", str(reference)])
    if code != 0:
        return code
    print(f"\nthe report: {args.out / 'index.html'}")
    print(f"the runs and the population in TensorBoard: {logdir_spec([args.log_dir], args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
