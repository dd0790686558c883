"""Where benchmark results go: the published protocol of every committed result, the
``bench/results/`` vs ``bench/results/local/`` rule, and tables that refuse to mix runs of
different protocols. Nothing here times anything."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shlex
from pathlib import Path

import pytest

from sparselth.utils.records import write_json

from sparselth.bench import SUITES, common
from sparselth.bench import lth_rec as bench_lth_rec
from sparselth.bench import spmm as bench_spmm
from sparselth.bench import ugs as bench_ugs

BENCH = Path(common.__file__).resolve().parent
MODULES = {name: importlib.import_module(f"sparselth.bench.{name}") for name in SUITES}
PUBLISHED = [(suite, name) for suite, mod in MODULES.items() for name in mod.PUBLISHED]


def _args(mod, argv: str):
    return mod.build_parser().parse_args(shlex.split(argv))


def _dest(mod, argv: str):
    args = _args(mod, argv)
    return common.result_path(mod.output_name(args), args, mod.PUBLISHED,
                              parser=mod.build_parser(), protocol=mod.run_protocol)


@pytest.mark.parametrize("suite", SUITES)
def test_every_suite_declares_its_protocol_and_has_main(suite):
    mod = MODULES[suite]
    assert list(inspect.signature(mod.main).parameters) == ["argv"]
    assert inspect.signature(mod.main).parameters["argv"].default is None
    for attr in ("PUBLISHED", "build_parser", "run_protocol", "output_name"):
        assert hasattr(mod, attr), (suite, attr)


def test_every_committed_result_is_published():
    committed = {p.stem for p in common.RESULTS_DIR.glob("*.json")}
    # RETIRED: committed results whose protocol a suite can no longer reproduce
    declared = {name for _, name in PUBLISHED} | {
        name for mod in MODULES.values() for name in getattr(mod, "RETIRED", {})}
    assert committed <= declared, sorted(committed - declared)


@pytest.mark.parametrize("suite,name", PUBLISHED)
def test_published_arguments_name_their_result_and_write_to_results(suite, name):
    mod = MODULES[suite]
    dest = _dest(mod, mod.PUBLISHED[name])
    assert dest.stem == name
    assert dest.published and dest.folder == common.RESULTS_DIR
    assert (common.RESULTS_DIR / f"{name}.json").is_file()


def _recorded(suite: str, rep: dict) -> dict:
    """The protocol values a committed result file records, in run_protocol's names."""
    if suite == "spmm":
        a, p = rep["args"], rep["protocol"]
        return dict(graphs=a["graphs"], F=a["F"], keep=a["keep"], modes=a["modes"],
                    seed=a["seed"], **{k: p[k] for k in (
                        "warmup", "budget_s", "min_reps", "max_reps", "max_call_s",
                        "dense_max_n", "max_temp_gb")})
    if suite == "embedding":
        a = rep["args"]
        return dict({k: rep["protocol"][k] for k in ("warmup", "budget_s", "min_reps",
                                                     "max_reps")},
                    **{k: a[k] for k in ("rows", "dim", "batch", "sparsities", "masks",
                                         "train_sparsity", "train_mask", "backend", "seed",
                                         "id_batches", "threads")})
    if suite == "sparse_weights":
        a = rep["args"]
        return dict(rep["protocol"], threads=a["threads"], seed=a["seed"],
                    max_im2col_mb=a["max_im2col_mb"])
    if suite == "realised":  # write_result records the resolved protocol
        return rep["run_protocol"]
    if suite == "lth_rec":  # the file records its command line
        args = bench_lth_rec.build_parser().parse_args(rep["config"]["argv"])
        return bench_lth_rec.run_protocol(args)
    if suite == "ugs":
        argv = shlex.split(rep["command"].removeprefix("python -m bench.ugs "))
        recorded = bench_ugs.run_protocol(bench_ugs.build_parser().parse_args(argv))
        assert {k: recorded[k] for k in rep["config"]} == rep["config"]
        return recorded
    # write_result records the protocol
    if suite in ("timing_stability", "sparse_conv", "lightgcn_propagation", "graphcl",
                 "graphcl_throughput", "gan_lth", "ugs_graphs", "fuzz"):
        return rep["run_protocol"]
    raise AssertionError(suite)


@pytest.mark.parametrize("suite,name", PUBLISHED)
def test_published_protocol_matches_the_committed_file(suite, name):
    mod = MODULES[suite]
    proto = mod.run_protocol(_args(mod, mod.PUBLISHED[name]))
    recorded = _recorded(suite, json.loads((common.RESULTS_DIR / f"{name}.json").read_text()))
    assert common.protocol_differences(proto, {**proto, **recorded}) == []


def test_other_arguments_write_under_local_and_say_why():
    argv = bench_spmm.PUBLISHED["spmm-cpu-2core-small"]
    dest = _dest(bench_spmm, argv + " --budget 0.5")
    assert dest.folder == common.LOCAL_RESULTS_DIR and not dest.published
    assert dest.differences == ("budget_s: 0.5 (published: 0.3)",)
    # the order of the arguments and defaults spelt out change nothing
    same = _dest(bench_spmm, "--tag cpu-2core-small --budget 0.3 --F 16 64 256 --seed 0 "
                             "--graphs cora citeseer pubmed powerlaw-100k --keep 0.05 0.2 0.5 1")
    assert same.published and same.folder == common.RESULTS_DIR
    # a result name nobody published is local too
    quick = _dest(bench_spmm, "--quick --tag somewhere")
    assert quick.folder == common.LOCAL_RESULTS_DIR
    assert quick.differences == ("no published result of this name",)


def test_out_overrides_the_folder(tmp_path):
    dest = _dest(bench_spmm, f"--quick --out {tmp_path}")
    assert dest.folder == tmp_path and not dest.published
    dest = _dest(bench_spmm, bench_spmm.PUBLISHED["spmm-cpu-2core-small"] + f" --out {tmp_path}")
    assert dest.folder == tmp_path and dest.published


def test_local_results_are_ignored_by_git():
    text = (common.REPO_ROOT / ".gitignore").read_text().split()
    assert "bench/results/local/" in text


def test_write_result_records_the_protocol(tmp_path):
    dest = common.ResultPath(tmp_path, "x", {"a": 1}, ("a: 1 (published: 2)",))
    report = {"value": 1.0}
    common.write_result(dest, report, "# x")
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["run_protocol"] == {"a": 1} and data["published_protocol"] is False
    assert data["differences_from_published"] == ["a: 1 (published: 2)"]
    assert "not the published protocol" in (tmp_path / "x.md").read_text()
    assert report["files"] == [str(tmp_path / "x.json"), str(tmp_path / "x.md")]


def test_protocol_differences_name_nested_fields():
    a = {"train": {"epochs": 2, "lr": 0.1}, "ks": (10, 20), "n": 1}
    b = {"train": {"epochs": 3, "lr": 0.1}, "ks": [10, 20], "n": 1.0}
    assert common.protocol_differences(a, b, "x") == ["train.epochs: 2 (x: 3)"]


# --------------------------------------------------------------------------- merged tables


def _copy_ugs_pair(tmp_path, change_random_rounds: int | None = None) -> None:
    for name in ("ugs-gcn-cora", "ugs-gcn-cora-random"):
        rep = json.loads((common.RESULTS_DIR / f"{name}.json").read_text())
        if name.endswith("random") and change_random_rounds is not None:
            rep["config"]["rounds"] = change_random_rounds
        write_json(tmp_path / f"{name}.json", rep)


def test_ugs_table_shows_the_random_baseline_of_the_same_protocol(tmp_path):
    _copy_ugs_pair(tmp_path)
    bench_ugs.render(tmp_path, "gcn", "cora", "node", plot_png=False)
    text = (tmp_path / "ugs-gcn-cora.md").read_text()
    assert "| random test % |" in text and "not shown" not in text


def test_ugs_table_refuses_a_baseline_of_another_protocol(tmp_path):
    _copy_ugs_pair(tmp_path, change_random_rounds=7)
    written = bench_ugs.render(tmp_path, "gcn", "cora", "node", plot_png=True)
    assert tmp_path / "ugs-gcn-cora.png" in written
    text = (tmp_path / "ugs-gcn-cora.md").read_text()
    assert "random test %" not in text
    assert "the random-pruning run not shown" in text and "rounds: 7 (this run: 20)" in text
    random_text = (tmp_path / "ugs-gcn-cora-random.md").read_text()
    assert "UGS test %" not in random_text and "rounds: 20 (this run: 7)" in random_text


@pytest.mark.parametrize("epochs,shown", [(None, True), (99, False)])
def test_lth_rec_figure_shares_only_one_protocol(tmp_path, epochs, shown):
    rand = json.loads((common.RESULTS_DIR / "lth-mf-lastfm-random.json").read_text())
    if epochs is not None:
        rand["config"]["train"]["epochs"] = epochs
    write_json(tmp_path / "lth-mf-lastfm-random.json", rand)
    mine = json.loads((common.RESULTS_DIR / "lth-mf-lastfm.json").read_text())
    fig, notes = bench_lth_rec.plot(tmp_path, "lth-mf-lastfm", mine)
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert ("random pruning" in labels) is shown
    assert (notes == []) is shown
    if not shown:
        assert "train.epochs: 99 (this run: 250)" in notes[0]
    import matplotlib.pyplot as plt

    plt.close(fig)


# --------------------------------------------------------------------------- house rules


def _sources():
    return sorted(BENCH.glob("*.py"))


def test_one_clock_one_figure_writer_relative_imports():
    for path in _sources():
        text = path.read_text()
        for banned in ("perf_counter", "time.time(", "process_time", "savefig", "os.replace",
                       "from bench", "import bench", "def _finite", "tmp.png"):
            assert banned not in text, f"{path.name}: {banned}"
        assert not re.search(r"^import time$", text, re.M), path.name


UTILS_NAMES = ("Timing", "Measurement", "time_interleaved", "measure", "machine_info",
               "load_average", "busy_note", "copy_bandwidth_gbs", "cpu_model", "git_commit",
               "headline_clock", "write_json", "write_markdown", "markdown_table", "finite",
               "format_number", "format_si", "figure", "save_png", "fmt_num",
               "atomic_write_text")


def test_common_exports_only_its_own_names():
    assert not set(common.__all__) & set(UTILS_NAMES)
    for name in common.__all__:
        assert hasattr(common, name), name
    pattern = re.compile(r"common\.(" + "|".join(UTILS_NAMES) + r")\b")
    for path in [*_sources(), *Path(__file__).parent.glob("*.py")]:
        assert not pattern.search(path.read_text()), path.name
