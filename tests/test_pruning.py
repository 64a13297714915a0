"""Stopping runs the reference judges hopeless: the rule, a real Optuna study, a real Ray Tune run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import populations
from reference_population import EPOCHS, per_step_reference, shared
from weightwatch.analysis import StopRule, stop_rule


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
    return shared(tmp_path_factory)


def test_stop_rule():
    rule = StopRule(threshold=0.3, min_step=1, patience=2)
    assert not rule.should_stop([])
    assert not rule.should_stop([(0, 0.0), (1, 0.1)])  # step 0 does not count
    assert rule.should_stop([(0, 0.0), (1, 0.1), (2, 0.2)])
    assert not rule.should_stop([(1, 0.1), (2, 0.2), (3, 0.9)])  # recovered
    assert not rule.should_stop([(1, 0.1), (2, 0.3)])  # not below
    assert stop_rule(None) is None and stop_rule(False) is None
    assert stop_rule(True) == StopRule() and stop_rule(0.25) == StopRule(threshold=0.25)
    with pytest.raises(ValueError):
        StopRule(threshold=2.0)


def train(model, log_dir, reference, epochs=EPOCHS, after_epoch=None, **kw):
    """Adam on the digits, logging val_accuracy each epoch; ``after_epoch(ww, epoch, acc)`` may end it."""
    return populations.train_watched(model, log_dir, epochs, after_epoch, reference=reference, **kw)


def test_plain_loop_stop_option(pop, tmp_path):
    torch.manual_seed(0)
    ww, _, epochs = train(populations.make_model("mlp", "zeros"), tmp_path / "dead", pop.reference,
                          stop=StopRule(threshold=0.5, min_step=1), after_epoch=lambda ww, e, a: ww.should_stop)
    assert epochs == 2 and ww.should_stop
    torch.manual_seed(0)
    ww, _, epochs = train(populations.make_model("mlp", 0.1), tmp_path / "good", pop.reference,
                          stop=StopRule(threshold=0.5, min_step=1), after_epoch=lambda ww, e, a: ww.should_stop)
    assert epochs == EPOCHS and not ww.should_stop


def test_optuna_prunes_the_hopeless_trials(pop, tmp_path):
    optuna = pytest.importorskip("optuna")
    from weightwatch.integrations.optuna import USER_ATTR, WeightWatchPruner, report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    inits = ["zeros", 0.1, 3.0, 0.1, "zeros", 0.3]

    def objective(trial):
        init = trial.suggest_categorical("init", inits)
        torch.manual_seed(trial.number)

        def after_epoch(ww, epoch, acc):
            trial.report(acc, epoch)
            report(trial, ww)
            if trial.should_prune():
                raise optuna.TrialPruned()

        _, acc, _ = train(populations.make_model("mlp", init), tmp_path / f"trial{trial.number}", pop.reference,
                          after_epoch=after_epoch)
        return acc

    study = optuna.create_study(direction="maximize", pruner=WeightWatchPruner(threshold=0.5, min_step=1),
                                sampler=optuna.samplers.TPESampler(seed=0))
    for init in inits:
        study.enqueue_trial({"init": init})
    study.optimize(objective, n_trials=len(inits))
    states = {t.number: (t.params["init"], t.state, t.user_attrs[USER_ATTR]) for t in study.trials}
    for init, state, history in states.values():
        if init == "zeros":  # dead networks: pruned as soon as the rule may act
            assert state == optuna.trial.TrialState.PRUNED and sorted(history) == ["0", "1"]
        elif init == 0.1:
            assert state == optuna.trial.TrialState.COMPLETE and len(history) == EPOCHS
    assert study.best_value > 0.8


def test_ray_tune_stops_the_hopeless_trials(pop, tmp_path):
    ray = pytest.importorskip("ray")
    from ray import tune

    from weightwatch.integrations.ray import WeightWatchStopper

    reference = str(pop.reference)
    out = str(tmp_path / "runs")

    def trainable(config):
        torch.set_num_threads(1)

        def after_epoch(ww, epoch, acc):
            tune.report({"val_accuracy": acc, "epoch": epoch, **ww.score.as_metrics()})

        train(populations.make_model("mlp", config["init"]), f"{out}/{config['init']}", reference,
              after_epoch=after_epoch)

    here = str(Path(__file__).parent)  # Ray's workers import this module (and populations) by name
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"init": tune.grid_search(["zeros", 0.1])},
            tune_config=tune.TuneConfig(max_concurrent_trials=2),
            run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0,
                                      stop=WeightWatchStopper(threshold=0.5, min_step=1, step="epoch")),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    epochs = {r.config["init"]: len(r.metrics_dataframe) for r in results}
    assert epochs == {"zeros": 2, 0.1: EPOCHS}


# -- the callbacks' stop option: a dead network (all-zero weights) stops, a well-initialised one trains on --

def digits_arrays():
    xtr, ytr, xva, yva = populations._digits()
    return xtr.numpy(), ytr.numpy(), xva.numpy(), yva.numpy()


def test_keras_stop_option(pop, tmp_path):
    keras = pytest.importorskip("keras")
    from weightwatch.integrations.keras import WeightWatchCallback

    xtr, ytr, xva, yva = digits_arrays()
    epochs = {}
    for init in ("zeros", 0.1):
        keras.utils.set_random_seed(0)
        kernel = "zeros" if init == "zeros" else keras.initializers.RandomNormal(0.0, init)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, "relu", kernel_initializer=kernel),
                                  keras.layers.Dense(16, "relu", kernel_initializer=kernel),
                                  keras.layers.Dense(10, kernel_initializer=kernel)])
        model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        cb = WeightWatchCallback(tmp_path / f"keras-{init}", reference=pop.reference, stop=StopRule(0.5, 1))
        history = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=EPOCHS, batch_size=64, verbose=0,
                            callbacks=[cb])
        epochs[init] = len(history.history["loss"])
        assert cb.run.scorer.history[-1].step == epochs[init] - 1
    assert epochs == {"zeros": 2, 0.1: EPOCHS}


class DigitsModule:
    """A LightningModule around the digits MLP (built lazily: lightning is imported by the test)."""

    @staticmethod
    def make(init):
        import lightning.pytorch as pl

        class Module(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = populations.make_model("mlp", init)

            def training_step(self, batch, _):
                x, y = batch
                return torch.nn.functional.cross_entropy(self.net(x), y)

            def validation_step(self, batch, _):
                x, y = batch
                self.log("val_accuracy", (self.net(x).argmax(1) == y).float().mean())

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-2)

        return Module()


@pytest.fixture(scope="module")
def per_step(tmp_path_factory):
    return per_step_reference(tmp_path_factory)


def test_lightning_stop_option(per_step, tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    from weightwatch.integrations.lightning import WeightWatchCallback

    xtr, ytr, xva, yva = populations._digits()
    epochs = {}
    for init in ("zeros", 0.1):
        torch.manual_seed(0)
        cb = WeightWatchCallback(tmp_path / f"pl-{init}", reference=per_step, stop=StopRule(0.5, 1))
        trainer = pl.Trainer(accelerator="cpu", max_epochs=EPOCHS, callbacks=[cb], logger=False,
                             enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             num_sanity_val_steps=0)
        trainer.fit(DigitsModule.make(init), DataLoader(TensorDataset(xtr, ytr), batch_size=64, shuffle=True),
                    DataLoader(TensorDataset(xva, yva), batch_size=256))
        epochs[init] = trainer.current_epoch
        assert [s.model_step for s in cb.run.scorer.history] == [21, 43, 65, 87][:epochs[init]]
    assert epochs == {"zeros": 1, 0.1: EPOCHS}  # optimizer steps: >= min_step 1 from the first epoch on


class TokensMLP(torch.nn.Module):
    """The digits MLP, speaking the Trainer's dict protocol."""

    def __init__(self, init):
        super().__init__()
        self.net = populations.make_model("mlp", init)

    def forward(self, x, labels=None):
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
        return out


def weightwatch_warnings(record) -> list[str]:
    from weightwatch.integrations._guard import WeightWatchWarning

    return [str(w.message) for w in record if issubclass(w.category, WeightWatchWarning)]


@pytest.mark.parametrize("unit", ["step", "epoch"])
def test_hf_stop_option(per_step, pop, unit, tmp_path):
    """The Trainer logs optimizer steps and no val_accuracy: the reference's chosen model (the metric so
    far) cannot judge it, so the step's weights-only fallback does, said once; a reference fitted on runs
    counting epochs judges the weights of the end of epoch e as its step e (through state.epoch)."""
    transformers = pytest.importorskip("transformers")
    from weightwatch.analysis import Reference
    from weightwatch.integrations.hf import WeightWatchCallback

    reference = per_step if unit == "step" else pop.reference
    ref = Reference.load(reference)
    assert ref.step_unit == unit
    assert all(m.cv["family"] == "metric" and m.fallback is not None for m in ref.steps)  # what this test is about
    transformers.logging.set_verbosity_error()
    xtr, ytr, _, _ = populations._digits()
    data = [{"x": x, "labels": y} for x, y in zip(xtr, ytr)]
    epochs = {}
    for init in ("zeros", 0.1):
        torch.manual_seed(0)
        cb = WeightWatchCallback(tmp_path / f"hf-{init}", reference=reference, stop=StopRule(0.5, 1))
        args = transformers.TrainingArguments(output_dir=str(tmp_path / f"out-{init}"), num_train_epochs=EPOCHS,
                                              per_device_train_batch_size=64, learning_rate=1e-2,
                                              save_strategy="no", report_to=[], use_cpu=True,
                                              disable_tqdm=True, logging_strategy="epoch")
        trainer = transformers.Trainer(model=TokensMLP(init), args=args, train_dataset=data, callbacks=[cb])
        with pytest.warns(Warning) as record:
            trainer.train()
        epochs[init] = round(trainer.state.epoch)
        history = cb.run.scorer.history
        assert [s.step for s in history] == [22, 44, 66, 88][:epochs[init]]  # the Trainer's global steps
        want = [21, 43, 65, 87] if unit == "step" else [0, 1, 2, 3]  # the reference's step of each epoch end
        assert [s.model_step for s in history] == want[:epochs[init]]
        assert not any(s.uncertain for s in history)
        assert [s.family for s in history] == [ref.model_for(s).cv["fallback"]["family"] for s in want[:epochs[init]]]
        assert all(s.missing == ("curve/metric_last",) for s in history)
        said = [m for m in weightwatch_warnings(record) if "weights only" in m]
        assert len(said) == 1 and "curve/metric_last" in said[0] and "'val_accuracy'" in said[0]
    assert epochs == {"zeros": 1, 0.1: EPOCHS}  # optimizer steps: >= min_step 1 from the first epoch on


@pytest.fixture(scope="module")
def metric_only(pop, tmp_path_factory):
    """A reference of the metric so far alone: no step holds a weights-only fallback."""
    from weightwatch.analysis import fit
    from weightwatch.analysis.loading.loader import load_runs

    result = fit(load_runs(pop.train, progress=False, cache=False).runs, cv=3, families=("metric",))
    assert all(m.fallback is None for m in result.reference.steps)
    return result.reference.save(tmp_path_factory.mktemp("metric_only") / "reference.ww")


def test_a_run_without_the_curve_is_uncertain_and_never_stopped(metric_only, tmp_path):
    """A plain loop that logs no val_accuracy, judged by a reference that needs it and has nothing else:
    every verdict is uncertain (no P(optimal), nothing logged for it), the dead network trains every epoch,
    one warning says what is missing and what to do; the same network logging val_accuracy is stopped."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from weightwatch.analysis import Reference
    from weightwatch.analysis.loading.loader import load_runs

    torch.manual_seed(0)
    with pytest.warns(Warning) as record:
        ww, _, epochs = train(populations.make_model("mlp", "zeros"), tmp_path / "blind", metric_only,
                              stop=StopRule(threshold=0.5, min_step=1), curve=None,
                              after_epoch=lambda ww, e, a: ww.should_stop)
    assert epochs == EPOCHS and not ww.should_stop
    history = ww.run.scorer.history
    assert [s.step for s in history] == list(range(EPOCHS))
    assert all(s.uncertain and s.p_optimal is None and s.predicted is None for s in history)
    assert all(s.missing == ("curve/metric_last",) and "val_accuracy" in s.reason for s in history)
    said = weightwatch_warnings(record)
    assert len(said) == 1 and "uncertain" in said[0] and "'val_accuracy'" in said[0]
    events = EventAccumulator(str(tmp_path / "blind")).Reload()
    assert "loss" in events.Tags()["scalars"] and not any(t.startswith("weightwatch/p_optimal") or
                                                          t.startswith("weightwatch/predicted")
                                                          for t in events.Tags()["scalars"])
    # read back, the finished run gets the same answer: no verdict
    run = load_runs(tmp_path / "blind", progress=False, cache=False).runs[0]
    pred = Reference.load(metric_only).classify(run)
    assert pred.group == "uncertain" and pred.missing == ["curve/metric_last"]
    assert any("uncertain" in n for n in pred.notes)

    torch.manual_seed(0)  # the same network with the curve: judged, and stopped once the rule may act
    ww, _, epochs = train(populations.make_model("mlp", "zeros"), tmp_path / "seen", metric_only,
                          stop=StopRule(threshold=0.5, min_step=1), after_epoch=lambda ww, e, a: ww.should_stop)
    assert epochs == 2 and ww.should_stop and not any(s.uncertain for s in ww.run.scorer.history)


def test_keras_epochs_are_not_judged_by_a_reference_in_optimizer_steps(per_step, tmp_path):
    """Keras' epoch mode counts epochs, the reference optimizer steps: no mapping exists, so every verdict is
    uncertain and a dead network trains every epoch, with one warning."""
    keras = pytest.importorskip("keras")
    from weightwatch.integrations.keras import WeightWatchCallback

    xtr, ytr, xva, yva = digits_arrays()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, "relu", kernel_initializer="zeros"),
                              keras.layers.Dense(16, "relu", kernel_initializer="zeros"),
                              keras.layers.Dense(10, kernel_initializer="zeros")])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    cb = WeightWatchCallback(tmp_path / "keras", reference=per_step, stop=StopRule(0.5, 1))
    with pytest.warns(Warning) as record:
        history = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=EPOCHS, batch_size=64, verbose=0,
                            callbacks=[cb])
    assert len(history.history["loss"]) == EPOCHS
    scores = cb.run.scorer.history
    assert [s.step for s in scores] == list(range(EPOCHS)) and all(s.uncertain for s in scores)
    said = weightwatch_warnings(record)
    assert len(said) == 1 and "optimizer steps" in said[0]


@pytest.mark.slow
def test_optuna_study_example_end_to_end(tmp_path):
    """examples/optuna_digits.py: a population, a reference, a study pruned by the verdict; every trial
    whose P(optimal) fell below the threshold stopped there, the others trained every epoch."""
    pytest.importorskip("optuna")
    import json

    from tb_read import run_example
    from weightwatch.analysis import load_runs

    epochs, threshold = 3, 0.2
    run_example("optuna_digits.py", tmp_path, "--population", "10", "--trials", "6", "--epochs", str(epochs),
                "--threshold", str(threshold))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["trials"] == 6 and (tmp_path / "reference.ww").exists()
    assert summary["epochs_trained"] == sum(t["epochs"] for t in summary["per_trial"])
    runs = {r.name: r for r in load_runs(tmp_path / "study", progress=False, cache=False).runs}
    for t in summary["per_trial"]:
        run = runs[f"trial{t['number']:03d}"]
        assert run.scalars["val_accuracy"].steps.tolist() == list(range(t["epochs"]))  # what it trained
        history = [t["p_optimal"][str(e)] for e in range(t["epochs"])]
        # the verdict the pruner saw is the one the run logged
        assert run.scalars["weightwatch/p_optimal"].values.tolist() == pytest.approx(history, rel=1e-6, abs=1e-7)
        below = [e for e, p in enumerate(history) if p < threshold]
        if below:  # the rule fires at the first epoch below the threshold
            assert t["state"] == "PRUNED" and t["epochs"] == below[0] + 1
        elif t["state"] == "COMPLETE":
            assert t["epochs"] == epochs


@pytest.mark.slow
def test_replay_of_a_logged_population_writes_its_section(tmp_path_factory, tmp_path):
    """benchmarks/pruning.py --populations on runs logged elsewhere: a disjoint seeded split, every held-out
    run replayed (unpruned: all its epochs; pruned: fewer), and the table written under its own heading."""
    pytest.importorskip("optuna")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import pruning

    root, truth = populations.shared_population(tmp_path_factory)
    train, test = pruning.logged_population(root, 0.6)
    names = [r.name for r in train + test]
    assert len(train) == 12 and sorted(names) == sorted(truth) and len(set(names)) == len(names)
    assert [r.name for r in train] != sorted(r.name for r in train)  # shuffled, not name order
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\n## Other\n\nkept\n")
    assert pruning.main(["--populations", f"digits={root}", "--orders", "2", "--results", str(results),
                         "--title", "Pruning replay", "--plot", str(tmp_path / "figures" / "pruning.png")]) == 0
    text = results.read_text()
    assert "## Other\n\nkept" in text and (tmp_path / "figures" / "pruning.png").exists()
    assert "](figures/pruning.png)" in text
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| pruner")}
    epochs = len(test) * 3  # every held-out run, all 3 epochs
    assert float(rows["no pruning"][0]) == epochs and float(rows["no pruning"][1]) == 1.0
    assert float(rows["no pruning"][3].strip(" |")) == len(test)
    for name, (trained, recall, best, finished) in rows.items():
        assert len(test) <= float(trained) <= epochs and 0.0 <= float(recall) <= 1.0, name
        assert float(finished.strip(" |")) <= len(test), name
    best_final = max(truth[r.name].val_accuracy for r in test)
    assert float(rows["no pruning"][2]) == pytest.approx(best_final, abs=1e-4)
