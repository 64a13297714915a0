"""An Optuna study on the 8x8 digits, pruned by weightwatch's verdict, end to end.

1. Train a small population of runs with random hyperparameters (hidden size,
   init std, lr), logged by weightwatch (examples/torch_digits.py's loop).
2. ``fit`` (from ``weightwatch.analysis``) learns from them which runs end in the better half.
3. An Optuna study searches the same space; each trial trains under
   ``WeightWatch(reference=...)``, reports its accuracy and the live verdict,
   and ``WeightWatchPruner`` (with Optuna's MedianPruner behind it) stops the
   trials the verdict gives up on.

    python examples/optuna_digits.py --log-dir runs/optuna_digits --population 40 --trials 30 --epochs 6
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna
import torch

from torch_digits import digits, make_model, train_epoch, train_run
from weightwatch.analysis import fit
from weightwatch.integrations.optuna import USER_ATTR, WeightWatchPruner, report
from weightwatch.integrations.torch import WeightWatch

SPACE = {"hidden": (4, 64), "init_std": (0.02, 3.0), "lr": (3e-4, 1e-2)}


def sample(trial: optuna.Trial) -> dict:
    return {"hidden": trial.suggest_int("hidden", *SPACE["hidden"], log=True),
            "init_std": trial.suggest_float("init_std", *SPACE["init_std"], log=True),
            "lr": trial.suggest_float("lr", *SPACE["lr"], log=True)}


def population(root: Path, runs: int, epochs: int) -> None:
    """Step 1: runs drawn from the search space (random sampler), logged by weightwatch."""
    sampler = optuna.samplers.RandomSampler(seed=1)
    study = optuna.create_study(sampler=sampler)
    for i in range(runs):
        params = sample(study.ask())
        train_run(root / f"run{i:03d}", seed=1000 + i, epochs=epochs, **params)


def objective(trial: optuna.Trial, root: Path, reference, epochs: int) -> float:
    """Step 3: one trial, judged by the reference after every epoch."""
    params = sample(trial)
    torch.manual_seed(trial.number)
    xtr, ytr, xva, yva = digits()
    model = make_model(params["hidden"], params["init_std"])
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"])
    hparams = {"seed": trial.number, **params}
    with WeightWatch(model, root / f"trial{trial.number:03d}", hparams=hparams, reference=reference) as ww:
        for epoch in range(epochs):
            loss = train_epoch(model, opt, xtr, ytr, 100)
            with torch.no_grad():
                train_acc = (model(xtr).argmax(1) == ytr).float().mean().item()
                val_acc = (model(xva).argmax(1) == yva).float().mean().item()
            ww.log(epoch, loss=loss, accuracy=train_acc, val_accuracy=val_acc)
            trial.report(val_acc, epoch)
            report(trial, ww)  # P(optimal) of this epoch, for WeightWatchPruner
            trial.set_user_attr("epochs", epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned()
    return val_acc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=Path("runs/optuna_digits"))
    parser.add_argument("--population", type=int, default=40, help="runs the reference learns from")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threshold", type=float, default=0.1, help="prune when P(optimal) < THRESHOLD")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    population(args.log_dir / "population", args.population, args.epochs)
    result = fit(args.log_dir / "population", top=0.5, cv=3)
    reference = result.reference.save(args.log_dir / "reference.ww")
    print(f"reference fitted on {result.runs} runs: cross-validated AUC per epoch "
          + ", ".join(f"{c['step']}: {c['auc']:.2f} ({c['family']})" for c in result.curve))

    pruner = WeightWatchPruner(threshold=args.threshold, min_step=0,
                               base=optuna.pruners.MedianPruner(n_startup_trials=5))
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda t: objective(t, args.log_dir / "study", reference, args.epochs), n_trials=args.trials)

    trials = study.trials
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    epochs = sum(t.user_attrs.get("epochs", 0) for t in trials)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None  # every trial may have been pruned
    summary = {"trials": len(trials), "pruned": len(pruned), "epochs_trained": epochs,
               "epochs_without_pruning": len(trials) * args.epochs, "best_value": best.value if best else None,
               "best_params": best.params if best else None,
               "per_trial": [{"number": t.number, "state": t.state.name, "epochs": t.user_attrs.get("epochs", 0),
                              "p_optimal": t.user_attrs.get(USER_ATTR, {})} for t in trials]}
    print(json.dumps({k: v for k, v in summary.items() if k != "per_trial"}, indent=1))
    (args.log_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
