"""`sparselth plot` on run folders of every kind (the common record schema), on runs written
before the schema, on real tiny IMP and UGS runs, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparselth import cli
from sparselth.cli import plot as cli_plot

PNG = b"\x89PNG\r\n\x1a\n"
# the headline metric each kind writes, and whether the kind prunes a graph
KINDS = {"imp": ("accuracy", False), "ugs": ("test_acc", True), "recsys": ("recall@20", False),
         "graphcl": ("test_acc", True), "gan": ("fid", False)}


def _write_run(folder: Path, kind: str, *, metric: str | None = None,
               graph: bool | None = None, rounds: int = 3, scale: float = 1.0) -> Path:
    """A run folder that follows the record contract: config.json with kind, records.json."""
    default_metric, default_graph = KINDS[kind]
    metric = metric or default_metric
    graph = default_graph if graph is None else graph
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": kind, "config": {}}))
    records = []
    for r in range(rounds + 1):
        value = scale * (0.9 - 0.05 * r)
        metrics = {metric: value, "other": 123.0}
        if kind == "recsys":
            metrics["best_epoch"] = 40.0 + r  # never the headline
        records.append({
            "round": r, "weight_sparsity": 1 - 0.8 ** r,
            "graph_sparsity": 1 - 0.95 ** r if graph else None,
            "metric": metric, "metrics": metrics, "macs": 1000 * (rounds + 1 - r),
            "seconds": 1.5})
    (folder / "records.json").write_text(json.dumps(records))
    return folder


@pytest.fixture
def drawn(monkeypatch):
    """What each saved figure shows: ``{png name: [(x label, [(label, ys)...])...]}``."""
    seen: dict[str, list] = {}
    save = cli_plot.save_png

    def spy(fig, path):
        seen[Path(path).name] = [
            (ax.get_xlabel(), [(line.get_label(), list(line.get_ydata()))
                               for line in ax.get_lines()])
            for ax in fig.axes]
        return save(fig, path)

    monkeypatch.setattr(cli_plot, "save_png", spy)
    return seen


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_plots_its_headline_metric(kind, tmp_path, drawn, capsys):
    metric, graph = KINDS[kind]
    run = _write_run(tmp_path / "run", kind)
    assert cli.main(["plot", str(run), "--out", str(tmp_path / "plots")]) == 0
    name = cli_plot._slug(metric) + "_vs_sparsity.png"
    png = tmp_path / "plots" / name
    assert png.read_bytes()[:8] == PNG
    assert str(png) in capsys.readouterr().out
    panels = drawn[name]
    assert [p[0] for p in panels] == (["weight sparsity (%)", "graph sparsity (%)"] if graph
                                      else ["weight sparsity (%)"])
    for _, lines in panels:
        assert lines == [(str(run), pytest.approx([0.9, 0.85, 0.8, 0.75]))]


def test_recommender_run_plots_recall_not_best_epoch(tmp_path):
    curve = cli_plot.read_run(_write_run(tmp_path / "rec", "recsys"))
    assert curve.kind == "recsys" and curve.metric == "recall@20"
    assert curve.values == pytest.approx([0.9, 0.85, 0.8, 0.75])
    assert not curve.prunes_graph


def test_run_and_baseline_overlaid_in_one_figure(tmp_path, drawn):
    ugs = _write_run(tmp_path / "ugs", "ugs")
    rnd = _write_run(tmp_path / "random", "ugs", scale=0.9)
    paths = cli_plot.run_plot([ugs, rnd], tmp_path / "plots")
    assert [p.name for p in paths] == ["test_acc_vs_sparsity.png"]
    for _, lines in drawn["test_acc_vs_sparsity.png"]:
        assert [label for label, _ in lines] == [str(ugs), str(rnd)]


def test_runs_with_different_metrics_get_one_figure_each(tmp_path):
    paths = cli_plot.run_plot([_write_run(tmp_path / "a", "imp"),
                               _write_run(tmp_path / "b", "recsys")], tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["accuracy_vs_sparsity.png",
                                             "recall_20_vs_sparsity.png"]


def test_graph_panel_only_shows_runs_that_prune_the_graph(tmp_path, drawn):
    ugs = _write_run(tmp_path / "ugs", "ugs", metric="accuracy")
    imp = _write_run(tmp_path / "imp", "imp")
    cli_plot.run_plot([ugs, imp], tmp_path / "plots")
    weight, graph = drawn["accuracy_vs_sparsity.png"]
    assert [label for label, _ in weight[1]] == [str(ugs), str(imp)]
    assert [label for label, _ in graph[1]] == [str(ugs)]


def test_missing_metric_values_and_full_sparsity(tmp_path, drawn):
    run = _write_run(tmp_path / "run", "imp")
    records = json.loads((run / "records.json").read_text())
    records[1]["metrics"].pop("accuracy")
    records[-1]["weight_sparsity"] = 1.0  # nothing kept: still drawn, at the axis' end
    (run / "records.json").write_text(json.dumps(records))
    cli_plot.run_plot([run], tmp_path / "plots")
    (_, lines), = drawn["accuracy_vs_sparsity.png"]
    assert lines[0][1] == pytest.approx([0.9, 0.8, 0.75])


def test_ugs_run_written_before_the_schema(tmp_path):
    """Older UGS folders have no "metric" and no "remaining" key (this raised KeyError)."""
    run = tmp_path / "old_ugs"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        {"run_name": "ugs_abc", "config": {"prune_graph": 0.05, "prune_weight": 0.2}}))
    (run / "records.json").write_text(json.dumps([
        {"round": r, "graph_sparsity": 0.05 * r, "weight_sparsity": 0.2 * r,
         "test_acc": 0.8 - 0.01 * r, "val_acc": 0.78, "best_epoch": 100 + r,
         "macs_total": 10 - r, "seconds": 2.0} for r in range(3)]))
    assert cli.main(["plot", str(run), "--out", str(tmp_path / "plots")]) == 0
    curve = cli_plot.read_run(run)
    assert curve.kind == "ugs" and curve.values == pytest.approx([0.8, 0.79, 0.78])


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["plot", str(tmp_path / "empty"), "--out", str(tmp_path / "p")]) == 2
    assert "records.json" in capsys.readouterr().err
    run = _write_run(tmp_path / "unfinished", "imp")
    (run / "records.json").write_text("[]")
    assert cli.main(["plot", str(run), "--out", str(tmp_path / "p")]) == 2
    assert "no finished round" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli.main(["plot", str(bad), "--out", str(tmp_path / "p")]) == 2
    assert "not a compile report" in capsys.readouterr().err
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").iterdir())


# --------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_real_imp_run(tmp_path, one_thread):
    import torch

    from sparselth.data import make_image_dataset
    from sparselth.models.small import build_model
    from sparselth.prune import IMP, IMPConfig
    from sparselth.train.classification import ClassificationTask, SGDConfig

    d = make_image_dataset("synthetic", n_train=64, n_test=32, image_size=6, seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", in_channels=1, image_size=6, num_classes=10, hidden=[16])
    task = ClassificationTask(d["x_train"], d["y_train"], d["x_test"], d["y_test"],
                              SGDConfig(epochs=1, batch_size=32))
    run = tmp_path / "imp"
    task.bind(IMP(model, task, None, IMPConfig(rounds=2, fraction=0.5), run_dir=run,
                  example_inputs=d["x_test"][:4], progress=False)).run()
    assert cli.main(["plot", str(run), "--out", str(tmp_path / "plots")]) == 0
    curve = cli_plot.read_run(run)
    assert curve.kind == "imp" and curve.metric == "accuracy"
    assert curve.weight_sparsity == pytest.approx([0.0, 0.5, 0.75], abs=1e-3)
    assert (tmp_path / "plots" / "accuracy_vs_sparsity.png").read_bytes()[:8] == PNG


@pytest.mark.slow
def test_real_ugs_run_and_its_random_baseline(tmp_path, one_thread, drawn):
    from sparselth import CSR
    from sparselth.cli.demo_glt import load_demo_data
    from sparselth.models import GCN
    from sparselth.prune import UGS, UGSConfig
    from sparselth.train import NodeClassificationTask, node_features

    data = load_demo_data(None, "csbm", 120, 16, seed=0)
    A = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    task = NodeClassificationTask(data, node_features(data.x))
    runs = []
    for baseline in ("ugs", "random"):
        cfg = UGSConfig(rounds=1, prune_graph=0.2, prune_weight=0.4, mask_epochs=3,
                        fix_epochs=3, baseline=baseline)
        runs.append(tmp_path / baseline)
        UGS(lambda: GCN(A, data.num_features, data.num_classes, hidden=8), task, cfg,
            run_dir=runs[-1], progress=False).run()
    assert cli.main(["plot", *map(str, runs), "--out", str(tmp_path / "plots")]) == 0
    weight, graph = drawn["test_acc_vs_sparsity.png"]
    assert [label for label, _ in graph[1]] == [str(r) for r in runs]
    curve = cli_plot.read_run(runs[0])
    assert curve.kind == "ugs" and curve.prunes_graph and len(curve.values) == 2


@pytest.mark.slow
def test_real_recommender_run_plots_recall(tmp_path, one_thread, drawn):
    from sparselth.data import synthetic_interactions
    from sparselth.train import BPRConfig, find_recsys_ticket

    data = synthetic_interactions(60, 80, avg_interactions=8, min_interactions=3,
                                  seed=0).with_validation(0.2, seed=0)
    run = tmp_path / "mf"
    out = find_recsys_ticket("mf", data, rounds=1, fraction=0.3, dim=8, run_dir=run,
                             train=BPRConfig(epochs=2, patience=2, batch_size=256),
                             measure_latency=False, progress=False)
    assert cli.main(["plot", str(run), "--out", str(tmp_path / "plots")]) == 0
    (_, lines), = drawn["recall_20_vs_sparsity.png"]
    assert lines[0][1] == pytest.approx([r["recall@20"] for r in out["records"]])
