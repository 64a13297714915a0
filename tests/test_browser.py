"""TensorBoard's own dashboards, in a real Chromium, show what weightwatch logged.

A real ``tensorboard`` serves two runs logged by the PyTorch callback; each
dashboard is opened the way a user opens it, and checked for weightwatch's
tags with data: the page's own data requests must answer with the logged
values, and the page must draw them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from browser import PageLog, browser, open_page, require_browser, tensorboard
from weightwatch.integrations.torch import WeightWatch

pytestmark = pytest.mark.slow

HPARAMS = [{"lr": 0.01, "hidden": 32, "opt": "adam", "batchnorm": True},
           {"lr": 0.001, "hidden": 8, "opt": "sgd", "batchnorm": False}]
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def chromium():
    """One Chromium for the module: Playwright's sync API runs one driver per thread."""
    with browser(require_browser()) as b:
        yield b


@pytest.fixture(scope="module")
def served(tmp_path_factory, chromium):
    logdir = tmp_path_factory.mktemp("tb-browser")
    models = {}
    for i, hp in enumerate(HPARAMS):
        torch.manual_seed(i)
        model = nn.Sequential(nn.Linear(6, hp["hidden"]), nn.ReLU(), nn.Linear(hp["hidden"], 3))
        with WeightWatch(model, logdir / f"run{i}", hparams=hp) as ww:
            for epoch in range(3):
                with torch.no_grad():
                    model[0].weight.mul_(1.1)
                ww.log(epoch, loss=1.0 / (epoch + 1), accuracy=0.3 + 0.1 * epoch + 0.05 * i)
        models[f"run{i}"] = model
    with tensorboard(logdir) as base:
        yield base, chromium, models


def dashboard(served, name: str):
    base, b, _ = served
    log = PageLog()
    page = open_page(b, f"{base}/#{name}", log)
    return page, log


def test_scalars_dashboard_filters_to_a_weight_statistic(served):
    page, log = dashboard(served, "scalars")
    page.locator("tf-tag-filterer input").first.fill(r"weights/0/std")  # a Polymer paper-input
    page.get_by_text("tag: weights/0/std").first.wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(2000)  # let the chart's data request land
    tags = log.answers("/data/plugin/scalars/tags")[-1]
    assert {"weights/0/mean", "weights/2/std", "node_strength/0/fluctuation", "weights/all/std"} <= set(tags["run0"])
    # the chart's request names the tag in its (multipart) form body; the answer is {run: [[wall, step, value], ...]}
    answers = log.answers("scalars_multirun", body="weights/0/std")
    assert answers, "the page never asked for weights/0/std"
    points = answers[-1]["run1"]
    assert [p[1] for p in points] == [0, 1, 2]
    expected = served[2]["run1"][0].weight.detach().double().std(unbiased=False).item()
    assert points[-1][2] == pytest.approx(expected, rel=1e-5)
    assert not log.errors
    page.close()


def test_time_series_dashboard_draws_weight_cards(served):
    page, log = dashboard(served, "timeseries")
    page.locator("tb-filter-input[placeholder^='Filter tags'] input").first.fill("node_strength/2/mean")
    card = page.locator("card-view").filter(has_text="node_strength/2").first
    card.wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(1500)
    series = [s for answer in log.answers("/timeseries/timeSeries") for s in answer
              if s.get("tag") == "node_strength/2/mean"]
    assert series, "the time series page never fetched node_strength/2/mean"
    runs = series[-1]["runToSeries"]
    assert set(runs) == {"run0", "run1"}
    model = served[2]["run0"]
    expected = model[2].weight.detach().double().abs().sum(dim=1).mean().item()
    assert runs["run0"][-1]["value"] == pytest.approx(expected, rel=1e-5)
    assert not log.errors
    page.close()


@pytest.mark.parametrize("name, plugin", [("histograms", "histograms"), ("distributions", "distributions")])
def test_histogram_and_distribution_dashboards(served, name, plugin):
    page, log = dashboard(served, name)
    page.get_by_text("node_strength/2", exact=True).first.wait_for(timeout=WAIT_MS)
    page.get_by_text("weights/0", exact=True).first.wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(2000)
    fetched = {c.url.split("?", 1)[1] for c in log.calls if f"/data/plugin/{plugin}/{plugin}?" in c.url}
    assert {"run=run0&tag=weights%2F0", "run=run1&tag=node_strength%2F2"} <= fetched
    answer = log.answers(f"/{plugin}/{plugin}?run=run1&tag=weights%2F2")[-1]
    assert [point[1] for point in answer] == [0, 1, 2]
    if plugin == "histograms":  # [wall, step, [[left, right, count], ...]]
        counts = sum(bucket[2] for bucket in answer[-1][2])
        assert counts == pytest.approx(served[2]["run1"][2].weight.numel())
    else:  # [wall, step, [[basis point, value], ...]]: basis points 0 and 10000 are the min and max
        weight = served[2]["run1"][2].weight.detach()
        values = [value for _, value in answer[-1][2]]
        assert min(values) == pytest.approx(weight.min().item(), abs=1e-6)
        assert max(values) == pytest.approx(weight.max().item(), abs=1e-6)
    assert not log.errors
    page.close()


def test_hparams_dashboard_has_typed_columns_and_no_warning(served):
    page, log = dashboard(served, "hparams")
    page.get_by_text("sgd", exact=True).first.wait_for(timeout=WAIT_MS)
    page.get_by_text("adam", exact=True).first.wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(1500)
    experiment = log.answers("/hparams/experiment")[-1]
    types = {h["name"]: h.get("type") for h in experiment["hparamInfos"]}
    assert types == {"lr": "DATA_TYPE_FLOAT64", "hidden": "DATA_TYPE_FLOAT64", "opt": "DATA_TYPE_STRING",
                     "batchnorm": "DATA_TYPE_BOOL"}
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["loss", "accuracy"]
    groups = log.answers("/hparams/session_groups")[-1]["sessionGroups"]
    assert {g["name"] for g in groups} == {"run0", "run1"}
    # TensorBoard logs "cannot process domain type ... DATA_TYPE_UNSET" for untyped hparams
    assert not log.warnings_about("domain type"), log.console
    assert not log.errors
    page.close()


def test_custom_scalars_dashboard_shows_mean_and_std_per_layer(served):
    page, log = dashboard(served, "custom_scalars")
    page.get_by_text("weights: mean and std per layer").first.wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(2000)
    answers = log.answers("/custom_scalars/scalars?")
    assert answers, "the custom scalars page fetched no data"
    tags = {tag for body in answers for tag in body.get("tag_to_events", {})}
    assert {"weights/0/mean", "weights/0/std", "weights/2/mean", "weights/2/std"} <= tags
    for body in answers:
        for events in body["tag_to_events"].values():
            assert [e[1] for e in events] == [0, 1, 2]
    assert not log.errors
    page.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory, chromium):
    """``weightwatch compare`` on a small real population: (the browser, the report folder, the run names)."""
    import populations
    from weightwatch.cli import main

    root, truth = populations.shared_population(tmp_path_factory)
    out = tmp_path_factory.mktemp("report")
    assert main(["compare", str(root), "--out", str(out), "--no-tensorboard"]) == 0
    return chromium, out, sorted(truth)


def test_html_report_opens_with_every_image_and_no_console_error(report):
    b, out, names = report
    log = PageLog()
    page = open_page(b, (out / "index.html").as_uri(), log)
    page.wait_for_load_state("load")
    images = page.evaluate(
        "() => Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    body = page.inner_text("body")
    page.locator("details").first.click()  # the run table is folded; a reader opens it
    shown = page.inner_text("details")
    page.close()
    assert len(images) >= 5, images
    broken = [alt for alt, complete, w, h in images if not (complete and w > 0 and h > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert not log.errors and not [t for kind, t in log.console if kind == "error"], (log.errors, log.console)
    assert "Runs per group" in body
    assert all(name in shown for name in names)


@pytest.fixture(scope="module")
def predicted_report(tmp_path_factory, chromium):
    """``weightwatch compare --reference`` (a reference fitted on the same population): (browser, report folder,
    the predictions compare printed as JSON)."""
    import contextlib
    import io
    import json

    import populations
    from weightwatch.analysis import fit
    from weightwatch.cli import main

    root, _ = populations.shared_population(tmp_path_factory)
    out = tmp_path_factory.mktemp("predicted")
    fit(root, cv=2, baseline=False).reference.save(out / "reference.ww")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["compare", str(root), "--out", str(out / "report"), "--no-tensorboard", "--json",
                     "--reference", str(out / "reference.ww")]) == 0
    return chromium, out / "report", json.loads(buf.getvalue())["predictions"]


def test_html_report_shows_the_predictions_sortable_by_clicking_a_header(predicted_report):
    b, out, predictions = predicted_report
    log = PageLog()
    page = open_page(b, (out / "index.html").as_uri(), log)
    page.wait_for_load_state("load")
    table = page.locator("table#predictions")

    def rows() -> list[list[str]]:
        return table.evaluate("t => Array.from(t.tBodies[0].rows).map(r => Array.from(r.cells).map("
                              "c => c.textContent))")

    shown = rows()
    assert [r[0] for r in shown] == [p["run"] for p in predictions]  # every run, in compare's order
    for row, p in zip(shown, predictions):
        assert float(row[1]) == pytest.approx(p["p_optimal"], abs=5e-4) and row[3] == p["group"]
        assert all(d["feature"] in row[4] for d in p["drivers"])
    table.locator("th", has_text="P(optimal)").click()
    ascending = [float(r[1]) for r in rows()]
    table.locator("th", has_text="P(optimal)").click()
    descending = [float(r[1]) for r in rows()]
    table.locator("th", has_text="Run").click()
    by_name = [r[0] for r in rows()]
    images = page.evaluate("() => Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    page.close()
    want = sorted(round(p["p_optimal"], 3) for p in predictions)
    assert ascending == want and descending == want[::-1]
    assert by_name == sorted(p["run"] for p in predictions)
    assert images and all(images), "an image did not load"
    assert not log.errors and not [t for kind, t in log.console if kind == "error"], (log.errors, log.console)
