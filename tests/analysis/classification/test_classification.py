"""fit / classify on a small real population; the reference file's format and safety; the live score."""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score, roc_auc_score

import populations
from reference_population import EPOCHS, TRAIN_RUNS, shared
from weightwatch.analysis.classification.features import FEATURE_NAMES, run_features
from weightwatch.analysis.loading.loader import load_runs
from weightwatch.analysis.loading.metric import final_metric
from weightwatch.analysis.classification.candidates import classifiers, regressors
from weightwatch.analysis.classification.export import export
from weightwatch.analysis.classification.evaluation import MARGIN
from weightwatch.analysis.classification.families import family_masks
from weightwatch.analysis.classification.population import make_labels, population_features
from weightwatch.analysis.classification.reference import Reference, classify_runs
from weightwatch.analysis.classification.reffile import JSON_MEMBER, ReferenceFileError


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
    return shared(tmp_path_factory)


def held_out(pop):
    runs = load_runs(pop.held_out, progress=False, cache=False).runs
    return runs, np.array([final_metric(r)[1] for r in runs])


def test_fit_reports_a_curve_and_classifies_held_out_runs(pop):
    fit = pop.fit
    assert fit.runs == TRAIN_RUNS and fit.metric == "val_accuracy" and fit.rule == "high-group"
    assert [c["step"] for c in fit.curve] == list(range(EPOCHS))
    for c in fit.curve:
        assert 0.0 <= c["auc"] <= 1.0 and c["runs"] == TRAIN_RUNS
    assert fit.final["auc"] >= 0.9  # good vs dead / huge inits: easy, as in the paper's zoo
    assert fit.baseline["available"] and "seed" in fit.baseline["hparams"]

    runs, truth = held_out(pop)
    y = truth >= fit.threshold
    assert 0 < y.sum() < len(y), "the held-out runs must hold both groups"
    preds = classify_runs(runs, pop.reference)
    p = np.array([pr.p_optimal for pr in preds])
    assert roc_auc_score(y, p) >= 0.9
    assert all(pr.group == ("optimal" if pr.p_optimal >= 0.5 else "suboptimal") for pr in preds)
    predicted = np.array([pr.predicted for pr in preds])
    assert np.abs(predicted - truth).mean() < 0.15
    for pr in preds:
        assert pr.step == EPOCHS - 1 and pr.model_step == EPOCHS - 1 and pr.metric == "val_accuracy"
        assert 1 <= len(pr.drivers) <= 3 and all(d.feature in FEATURE_NAMES for d in pr.drivers)


def test_early_prediction_uses_the_model_of_that_step(pop):
    ref = Reference.load(pop.reference)
    runs, _ = held_out(pop)
    run = runs[0]
    table = ref.table(run)
    for step in range(EPOCHS):
        pr = ref.classify(run, step)
        assert pr.step == step and pr.model_step == step
        p, _ = ref.predict(table.at(step)[1][None, :], step)
        assert pr.p_optimal == p[0]


def test_cross_validated_quality_is_out_of_fold(pop):
    """fit's numbers equal a by-hand out-of-fold evaluation of the chosen models with the same folds."""
    from sklearn.model_selection import StratifiedKFold

    runs = load_runs(pop.train, progress=False, cache=False).runs
    population = population_features(runs)
    y, _, _ = make_labels(population.values, runs=population.runs)
    step = EPOCHS - 1
    idx, x = population.rows(step)
    final = pop.fit.final
    finite = np.isfinite(x)
    used = np.array([finite[:, j].any() and np.ptp(x[finite[:, j], j]) > 0 for j in range(x.shape[1])])
    median = np.array([np.median(x[finite[:, j], j]) if used[j] else 0.0 for j in range(x.shape[1])])
    masks = family_masks(population.names)
    xc = np.where(finite, x, median)[:, used & masks[final["family"]]]
    xr = np.where(finite, x, median)[:, used & masks[final["regressor_family"]]]
    p, pred = np.zeros(len(y)), np.zeros(len(y))
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=0).split(xc, y):
        clf = classifiers(0)[final["classifier"]].fit(xc[tr], y[tr])
        reg = regressors(0)[final["regressor"]].fit(xr[tr], population.values[tr])
        p[te], pred[te] = clf.predict_proba(xc[te])[:, 1], reg.predict(xr[te])
    so_far = np.array([r.scalars["val_accuracy"].values[step] for r in population.runs])  # the raw curve
    assert final["auc"] == pytest.approx(roc_auc_score(y, so_far if final["family"] == "metric" else p))
    assert final["r2"] == pytest.approx(r2_score(population.values, pred))
    # the metric so far unless another family validates MARGIN better, and by more than one standard error
    aucs = {f: q["auc"] for f, q in final["families"].items() if q["available"]}
    assert aucs["metric"] == pytest.approx(roc_auc_score(y, so_far))
    best = max(aucs, key=aucs.get)
    if best != "metric":
        gain, se = final["families"][best]["gain_over_metric"], final["families"][best]["gain_se"]
        assert gain == pytest.approx(aucs[best] - aucs["metric"]) and se > 0
        assert final["family"] == (best if gain >= MARGIN and gain > se else "metric")
    else:
        assert final["family"] == "metric"


@pytest.mark.parametrize("name", ["logistic", "boosting", "forest", "ridge"])
def test_exported_models_predict_what_sklearn_predicts(name):
    rng = np.random.default_rng(0)
    n, f = 80, len(FEATURE_NAMES)
    x = rng.normal(size=(n, f))
    used = np.zeros(f, dtype=bool)
    used[rng.choice(f, 25, replace=False)] = True
    xu = x[:, used]
    target = xu[:, 0] - 0.5 * xu[:, 1] + 0.3 * rng.normal(size=n)
    classifier = name != "ridge"
    if classifier:
        est = classifiers(0)[name].fit(xu, target > 0)
        want = est.predict_proba(xu)[:, 1]
    else:
        est = regressors(0)[name].fit(xu, target)
        want = est.predict(xu)
    model = export(est, used, xu, classifier)
    assert model.predict(x) == pytest.approx(want, rel=1e-9, abs=1e-12)
    raw, contrib = model.raw(x, contributions=True)
    bias = raw - contrib.sum(axis=1)
    assert np.ptp(bias) < 1e-9  # contributions explain everything but a constant
    assert np.all(contrib[:, ~used] == 0)


def test_reference_file_round_trips(pop, tmp_path):
    ref = Reference.load(pop.reference)
    again = Reference.load(ref.save(tmp_path / "copy.ww"))
    x = np.random.default_rng(1).normal(size=(5, len(ref.names)))
    in_memory = pop.fit.reference  # as fit made it, never written
    for step in range(EPOCHS):
        for other in (again, in_memory):
            np.testing.assert_array_equal(ref.predict(x, step)[0], other.predict(x, step)[0])
            np.testing.assert_array_equal(ref.predict(x, step)[1], other.predict(x, step)[1])
    with zipfile.ZipFile(pop.reference) as zf:
        names = zf.namelist()
        doc = json.loads(zf.read(JSON_MEMBER), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert all(n == JSON_MEMBER or (n.startswith("arrays/") and n.endswith(".npy")) for n in names)
    assert doc["format"] == "weightwatch-reference" and doc["version"] == 1
    assert doc["features"]["names"] == list(FEATURE_NAMES)
    assert doc["label"]["metric"] == "val_accuracy" and len(doc["steps"]) == EPOCHS


def rewrite(src, dest, json_edit=None, members=None):
    """Copy a reference, editing its JSON and replacing / adding members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == JSON_MEMBER and json_edit:
                doc = json.loads(data)
                json_edit(doc)
                data = json.dumps(doc).encode()
            if members and item.filename in members:
                data = members.pop(item.filename)
            zout.writestr(item.filename, data)
        for name, data in (members or {}).items():
            zout.writestr(name, data)
    return dest


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_crafted_file_cannot_run_code(pop, tmp_path):
    proof = tmp_path / "code-ran"
    arr = np.empty(len(FEATURE_NAMES), dtype=object)
    arr[:] = Payload(proof)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    with zipfile.ZipFile(pop.reference) as zf:
        doc = json.loads(zf.read(JSON_MEMBER))
    fill = f"arrays/{doc['steps'][0]['fill']}.npy"
    bad = rewrite(pop.reference, tmp_path / "evil.ww", members={fill: buf.getvalue()})
    with pytest.raises(ReferenceFileError, match="expected numbers"):
        Reference.load(bad)
    assert not proof.exists()


def test_a_tree_that_loops_is_refused(pop, tmp_path):
    with zipfile.ZipFile(pop.reference) as zf:
        doc = json.loads(zf.read(JSON_MEMBER))
    model = next(m for s in doc["steps"] for m in (s["classifier"], s["regressor"]) if m["kind"] == "trees")
    key = f"arrays/{model['arrays']['left']}.npy"
    with zipfile.ZipFile(pop.reference) as zf:
        left = np.load(io.BytesIO(zf.read(key)))
    left[0] = 0  # the root is its own child
    buf = io.BytesIO()
    np.save(buf, left)
    with pytest.raises(ReferenceFileError, match="larger than their parent"):
        Reference.load(rewrite(pop.reference, tmp_path / "loop.ww", members={key: buf.getvalue()}))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(version=2), "version 2; this weightwatch reads version 1. Upgrade"),
    (lambda d: d.update(version=0), "Fit it again"),
    (lambda d: d["features"].update(version=99), "fitted on features 'weightwatch-features' version 99"),
    (lambda d: d["features"]["names"].pop(), "Fit the reference again"),
    (lambda d: d.update(format="something-else"), "is not a weightwatch reference"),
    (lambda d: d["steps"][0]["classifier"].update(link="exec"), "unknown link 'exec'"),
    (lambda d: d["steps"][0]["regressor"].update(kind="python"), "unknown model kind 'python'"),
    (lambda d: d["steps"][0].update(runs="many"), "malformed reference"),
    (lambda d: d["steps"][0].pop("fill"), "malformed reference"),
])
def test_other_versions_feature_sets_and_malformed_files_are_refused_clearly(pop, tmp_path, edit, message):
    with pytest.raises(ReferenceFileError, match=message.replace(".", r"\.")):
        Reference.load(rewrite(pop.reference, tmp_path / "other.ww", json_edit=edit))


def test_not_a_reference(tmp_path):
    path = tmp_path / "junk.ww"
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle, not a ZIP
    with pytest.raises(ReferenceFileError, match="not a weightwatch reference"):
        Reference.load(path)


def test_live_score_is_what_classify_says_afterwards(pop, tmp_path):
    """WeightWatch(reference=) logs P(optimal) and the predicted accuracy at each record; reading
    the finished run back and classifying it at each step gives the same numbers."""
    torch.manual_seed(7)
    steps = []
    ww, _, _ = populations.train_watched(
        populations.make_model("mlp", 0.1), tmp_path / "live", EPOCHS, reference=pop.reference,
        after_epoch=lambda ww, epoch, acc: steps.append((ww.score.step, ww.score.model_step)))
    assert steps == [(e, e) for e in range(EPOCHS)]
    run = load_runs(tmp_path / "live", progress=False, cache=False).runs[0]
    ref = Reference.load(pop.reference)
    logged_p = run.scalars["weightwatch/p_optimal"]
    logged_acc = run.scalars["weightwatch/predicted_accuracy"]
    assert logged_p.steps.tolist() == list(range(EPOCHS))
    for step in range(EPOCHS):
        pr = ref.classify(run, step)
        assert logged_p.values[step] == pytest.approx(pr.p_optimal, rel=1e-6, abs=1e-7)
        assert logged_acc.values[step] == pytest.approx(pr.predicted, rel=1e-6)
    assert final_metric(run)[0] == "val_accuracy"  # the verdict is not mistaken for the metric
    assert ww.score.p_optimal > 0.5  # a well-initialised MLP


def test_runs_without_the_metric_are_listed_not_used(pop, tmp_path):
    runs = load_runs(pop.train, progress=False, cache=False).runs
    blind = runs[0]
    blind.scalars = {k: v for k, v in blind.scalars.items() if "accuracy" not in k}
    population = population_features(runs)
    assert population.unlabelled == [blind.name] and len(population.runs) == len(runs) - 1


def test_labels(pop):
    values = np.array([0.1, 0.12, 0.5, 0.55, 0.9, 0.91, 0.93])
    y, thr, rule = make_labels(values, top=0.5)
    assert rule == "top" and y.sum() == 4 and thr == 0.55
    y, thr, rule = make_labels(values, threshold=0.5)
    assert rule == "threshold" and y.sum() == 5 and thr == 0.5
    with pytest.raises(ValueError):
        make_labels(values, threshold=0.5, top=0.5)
    # by default, compare's high group (per family)
    from weightwatch.analysis.comparison.groups import group_runs

    runs = load_runs(pop.train, progress=False, cache=False).runs
    population = population_features(runs)
    y, thr, rule = make_labels(population.values, runs=population.runs)
    high = {lab.run.name for lab in group_runs(population.runs).labelled if lab.group == "high"}
    assert rule == "high-group" and {r.name for r, opt in zip(population.runs, y) if opt} == high
    assert thr == min(v for v, opt in zip(population.values, y) if opt)


def test_a_run_of_another_family_gets_a_note(pop):
    from weightwatch.analysis import fit

    runs = load_runs(pop.train, progress=False, cache=False).runs
    mlps = [r for r in runs if r.name.startswith("mlp/")]
    ref = fit(mlps, cv=2, baseline=False).reference
    cnn = next(r for r in runs if r.name.startswith("cnn/"))
    assert any("same architecture family" in n for n in ref.classify(cnn).notes)
    assert not ref.classify(mlps[0]).notes


# -- the command line ------------------------------------------------------------------------------------

def test_cli_fit_and_classify(pop, tmp_path, capsys):
    from weightwatch.analysis import format_fit
    from weightwatch.cli import main

    out = tmp_path / "ref.ww"
    assert main(["fit", str(pop.train), "-o", str(out), "--cv", "3", "--json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["reference"] == str(out) and out.exists()
    assert [c["step"] for c in fitted["curve"]] == list(range(EPOCHS)) and fitted["runs"] == TRAIN_RUNS
    assert fitted["curve"] == json.loads(json.dumps(pop.fit.to_json()))["curve"]  # deterministic
    text = format_fit(pop.fit, "ref.ww")
    for part in ("held-out quality", "Kendall tau", "earliest step with AUC >= 0.9", "hyperparameters only (",
                 "wrote ref.ww"):
        assert part in text

    runs, truth = held_out(pop)
    one = pop.held_out / runs[0].name
    assert main(["classify", str(one), "--reference", str(out), "--json"]) == 0
    [p] = json.loads(capsys.readouterr().out)
    assert p["run"] == str(one) and 0 <= p["p_optimal"] <= 1 and p["group"] in ("optimal", "suboptimal")
    assert p["p_optimal"] == pytest.approx(Reference.load(out).classify(runs[0]).p_optimal)

    assert main(["classify", str(pop.held_out), "--reference", str(out), "--step", "1"]) == 0
    shown = capsys.readouterr().out
    assert all(f"{pop.held_out / r.name}: " in shown for r in runs) and "(step 1, model of step 1)" in shown


def test_cli_errors(pop, tmp_path, capsys):
    from weightwatch.cli import main

    bad = tmp_path / "bad.ww"
    bad.write_text("not a reference")
    assert main(["classify", str(pop.held_out), "--reference", str(bad)]) == 2  # unusable input
    assert "not a weightwatch reference" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["fit", str(tmp_path / "empty"), "-o", str(tmp_path / "x.ww")]) == 1
    assert "no runs found" in capsys.readouterr().err
    assert main(["fit", str(pop.train), "-o", str(tmp_path / "x.ww"), "--threshold", "2.0"]) == 1
    assert "0 of 24 runs are optimal" in capsys.readouterr().err


def test_compare_with_a_reference(pop, tmp_path, capsys):
    from weightwatch.cli import main

    assert main(["compare", str(pop.held_out), "--reference", str(pop.reference), "--json", "--no-figures",
                 "--no-tensorboard", "--out", str(tmp_path / "report")]) == 0
    report = json.loads(capsys.readouterr().out)
    runs, _ = held_out(pop)
    assert sorted(p["run"] for p in report["predictions"]) == sorted(r.name for r in runs)
