"""``python -m bench.graphcl_throughput``: the report, and the PyG peer's augmentations doing what
the reference's do (checked on a tiny TU dataset written by the test)."""

from __future__ import annotations

import json

import pytest
import torch

from sparselth.bench import graphcl_throughput as tp
from sparselth.data import load_tu

from ._tu import write_tu


def test_throughput_report(tmp_path, one_thread):
    data = write_tu(tmp_path / "data", graphs=20)
    rep = tp.main(["--dataset", "TINY", "--data", str(data), "--batch-size", "8",
                   "--batches", "2", "--quick", "--budget", "0.05", "--min-reps", "2",
                   "--out", str(tmp_path / "out"), "--no-progress"])
    stem = tmp_path / "out" / "graphcl-throughput-TINY"
    for suffix in (".json", ".md", ".png"):
        assert stem.with_suffix(suffix).is_file()
    saved = json.loads(stem.with_suffix(".json").read_text())
    pipes = saved["summary"]["pipelines"]
    assert set(pipes) == ({"sparselth", "pyg"} if tp.pyg_available() else {"sparselth"})
    for row in pipes.values():
        assert row["step_ms"] == pytest.approx(row["data_ms"] + row["encode_ms"])
        assert row["graphs_per_s"] == pytest.approx(8 / (row["step_ms"] * 1e-3))
    if tp.pyg_available():
        sp = saved["summary"]["speedup"]
        assert sp["end_to_end"] == pytest.approx(pipes["pyg"]["step_ms"]
                                                 / pipes["sparselth"]["step_ms"])
    assert not saved["published_protocol"] and rep["batch_size"] == 8


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        tp.main(["--batch-size", "0", "--out", str(tmp_path)])


def test_dataset_iterates_and_indexes(tmp_path):
    ds = load_tu("TINY", write_tu(tmp_path / "data", graphs=6))
    graphs = list(ds)
    assert len(graphs) == 6 and graphs[-1].num_nodes == ds[-1].num_nodes
    with pytest.raises(IndexError, match="out of range"):
        ds[6]


def _edges(data) -> set:
    return set(map(tuple, data.edge_index.t().tolist()))


@pytest.mark.skipif(not tp.pyg_available(), reason="torch_geometric is not installed "
                    "(optional benchmark peer)")
def test_pyg_peer_augmentations_match_the_reference_counts(tmp_path):
    ds = load_tu("TINY", write_tu(tmp_path / "data", graphs=12, seed=3))
    graphs = tp.to_pyg(ds)
    gen = torch.Generator().manual_seed(0)
    for g, data in zip(ds, graphs):
        n, e = data.num_nodes, data.edge_index.shape[1]
        # edge_index = [source, target]; the CSR's rows are the targets
        assert _edges(data) == set(zip(g.adj.col.tolist(), g.adj.row().tolist()))
        pe = tp.pyg_augment(data, "pedges", gen)
        assert pe.edge_index.shape[1] == e - int(e * tp.EDGE_RATIO)
        assert _edges(pe) <= _edges(data)
        mk = tp.pyg_augment(data, "mask_nodes", gen)
        changed = (mk.x != data.x).any(1).sum()
        assert changed <= int(n * tp.MASK_RATIO) and torch.equal(mk.edge_index, data.edge_index)
        dn = tp.pyg_augment(data, "dnodes", gen)
        assert 1 <= dn.num_nodes <= n - int(n * tp.NODE_RATIO)
        assert int(dn.edge_index.max()) < dn.num_nodes
        assert not bool((dn.edge_index[0] == dn.edge_index[1]).any())
        sg = tp.pyg_augment(data, "subgraph", gen)
        assert 1 <= sg.num_nodes <= int(n * tp.SUBGRAPH_RATIO) + 1
        assert sg.x.shape == (sg.num_nodes, data.x.shape[1])
