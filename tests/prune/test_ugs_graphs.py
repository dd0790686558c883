"""UGS on graph classification: per-batch mask slices, pruned datasets against masked ones,
exact pruning counts for UGS and random pruning, resume, splits, argument checks, and the
bench suite end to end. Small synthetic TU datasets written by the tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sparselth.data import GraphLoader, load_tu
from sparselth.models import GINGraphClassifier
from sparselth.prune import UGS, UGSConfig
from sparselth.prune.ugs import GRAPH_MASK, ugs_schedule
from sparselth.prune.run import ticket_parts
from sparselth.sparse import GraphBatch
from sparselth.train import GraphClassificationTask, graph_split

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_tu(folder: Path, name: str = "SYN", graphs: int = 24, seed: int = 0) -> Path:
    """TU text files of ``graphs`` small graphs: class 0 paths, class 1 cycles with a chord,
    random sizes 3-7 and two node labels."""
    g = torch.Generator().manual_seed(seed)
    edges, indicator, labels, node_labels = [], [], [], []
    base = 1
    for k in range(graphs):
        n = int(torch.randint(3, 8, (1,), generator=g))
        cls = k % 2
        und = [(i, i + 1) for i in range(n - 1)]
        if cls == 1:
            und += [(n - 1, 0), (0, n // 2)] if n > 3 else [(n - 1, 0)]
        for a, b in und:
            edges += [(base + a, base + b), (base + b, base + a)]
        indicator += [k + 1] * n
        labels.append(cls)
        node_labels += torch.randint(0, 2, (n,), generator=g).tolist()
        base += n
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}_A.txt").write_text("".join(f"{a}, {b}\n" for a, b in edges))
    (folder / f"{name}_graph_indicator.txt").write_text("".join(f"{i}\n" for i in indicator))
    (folder / f"{name}_graph_labels.txt").write_text("".join(f"{c}\n" for c in labels))
    (folder / f"{name}_node_labels.txt").write_text("".join(f"{c}\n" for c in node_labels))
    return folder


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("tu")
    _write_tu(root / "tu" / "SYN")
    return load_tu("SYN", root=root)


def _model(ds, **kw):
    torch.manual_seed(0)
    return GINGraphClassifier(ds, ds.num_features, ds.num_classes, hidden=8, num_layers=2, **kw)


def test_loaded_graph_ptr_is_checked(ds):
    """``graph_ptr`` may come from a state dict: a graph range that splits another graph's
    entries, or runs past the nodes, is refused before pooling reads it."""
    model = _model(ds)
    x = ds.data.x
    model(x)
    for edit in (lambda p: p.__setitem__(1, p[1] + 1), lambda p: p.__setitem__(-1, p[-1] + 4)):
        sd = dict(model.state_dict())
        sd["graph_ptr"] = sd["graph_ptr"].clone()
        edit(sd["graph_ptr"])
        bad = _model(ds)
        bad.load_state_dict(sd)
        with pytest.raises(ValueError, match="ptr|different graphs"):
            bad(x)


def _cfg(**kw):
    base = dict(task="graph", rounds=2, mask_epochs=3, fix_epochs=3, lr=0.01, seed=0,
                prune_graph=0.2, prune_weight=0.3, mask_noise=1e-3)
    base.update(kw)
    return UGSConfig(**base)


def test_batch_gathers_each_graphs_slice_of_the_mask(ds):
    model = _model(ds)
    with torch.no_grad():
        model.edge_mask.copy_(torch.rand(model.edge_mask.shape))
    eptr = ds.data.edge_ptr
    for index in (torch.tensor([5, 0, 17, 5]), torch.arange(len(ds)), torch.tensor([23])):
        b = model.batch(ds.data.x, index)
        slow = torch.cat([model.edge_mask.detach()[eptr[g]:eptr[g + 1]] for g in index.tolist()])
        torch.testing.assert_close(b.adj.val.detach(), slow, rtol=0, atol=0)
        ref = ds.batch(index)   # the same graphs from the dataset: same pattern and features
        assert torch.equal(b.adj.rowptr.long(), ref.adj.rowptr.long())
        assert torch.equal(b.adj.col.long(), ref.adj.col.long())
        assert torch.equal(b.x, ref.x) and torch.equal(b.ptr, ref.ptr)
    # the loss of a batch reaches exactly its graphs' mask entries
    model.zero_grad()
    index = torch.tensor([2, 9])
    model(ds.data.x, index).sum().backward()
    touched = torch.zeros(model.edge_mask.numel(), dtype=torch.bool)
    for g in index.tolist():
        touched[eptr[g]:eptr[g + 1]] = True
    grad = model.edge_mask.grad
    assert bool((grad[~touched] == 0).all()) and bool((grad[touched] != 0).any())


def test_pruned_dataset_encodes_like_the_masked_dense_dataset(ds):
    from bench.ugs_graphs import encode_epoch

    model = _model(ds).eval()
    g = torch.Generator().manual_seed(3)
    nnz = ds.data.adj.nnz
    keep = torch.rand(nnz, generator=g) < 0.6
    weights = torch.rand(nnz, generator=g) + 0.5
    pruned = ds.keep_edges(keep)
    assert pruned.data.adj.nnz == int(keep.sum())
    d = ds.data
    masked = GraphBatch(d.x, d.adj.with_values(weights * keep), d.ptr, d.y)
    kept = GraphBatch(pruned.data.x, pruned.data.adj.with_values(weights[keep]),
                      pruned.data.ptr, pruned.data.y)
    with torch.no_grad():
        a, b = encode_epoch(model, masked, 5), encode_epoch(model, kept, 5)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        # a 0/1 mask: the pruned pattern (no values) equals the dense one with the mask
        a01 = encode_epoch(model, GraphBatch(d.x, d.adj.with_values(keep.float()), d.ptr), 7)
        torch.testing.assert_close(a01, encode_epoch(model, pruned.data, 7), rtol=1e-6,
                                   atol=1e-6)
        # the model's own stored dataset: compacting drops the zero entries, same logits
        model.edge_mask.copy_(weights * keep)
        before = model(d.x)
        model.compact_graph()
        assert model.edge_mask.numel() == int(keep.sum())
        torch.testing.assert_close(model(d.x), before, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(before, a, rtol=1e-6, atol=1e-6)
    # the loader over the pruned dataset yields every graph once, in order
    assert sum(b.num_graphs for b in GraphLoader(pruned, 5)) == len(ds)


def test_ugs_prunes_exactly_the_scheduled_edges_and_weights(ds, tmp_path):
    task = GraphClassificationTask(ds, batch_size=8)
    ugs = UGS(lambda: _model(ds), task, _cfg(), root=tmp_path, progress=False)
    recs = ugs.run()
    scope = task.prunable_entries(ugs.model)           # the training graphs' edges
    E = int(scope.sum())
    assert 0 < E < ds.data.adj.nnz
    W = sum(ugs.model.get_parameter(n).numel() for n in ugs.weight_names)
    assert ugs.weight_names == ["convs.0.lin1.weight", "convs.0.lin2.weight",
                                "convs.1.lin1.weight", "convs.1.lin2.weight"]
    assert [r["prunable_edges_kept"] for r in recs] == ugs_schedule(E, 0.2, 2)
    assert all(r["graph_edges_kept"] == r["prunable_edges_kept"] + ds.data.adj.nnz - E
               for r in recs)                           # val/test graphs kept whole
    assert [r["weights_kept"] for r in recs] == ugs_schedule(W, 0.3, 2)
    prev = None
    for k, r in enumerate(recs):
        assert r["task"] == "graph" and 0.0 <= r["test_acc"] <= 1.0
        masks = ticket_parts(ugs.run_dir, k)["masks"]
        assert int(masks[GRAPH_MASK].sum()) == r["graph_edges_kept"]
        if prev is not None:  # survivors only shrink
            for name in masks:
                assert not bool((masks[name] & ~prev[name]).any())
        prev = masks
    assert recs[2]["macs"] < recs[0]["macs"]
    # the last round's pruned dataset stores exactly the kept edges
    assert ds.keep_edges(ugs.masks[GRAPH_MASK]).data.adj.nnz == recs[-1]["graph_edges_kept"]
    # a round as a ticket on a fresh model (then compacted) gives the round's accuracies
    from sparselth.ticket import load_round

    fresh = load_round(ugs.run_dir, 2).apply_to(_model(ds))
    ev = task.evaluate(fresh)
    assert (ev["test"], ev["val"]) == (recs[2]["test_acc"], recs[2]["val_acc"])
    assert task.evaluate(fresh.compact_graph()) == ev
    assert fresh.edge_mask.numel() == recs[2]["graph_edges_kept"]


def test_random_baseline_on_graph_classification(ds, tmp_path):
    task = GraphClassificationTask(ds, batch_size=8)
    ugs = UGS(lambda: _model(ds), task, _cfg(baseline="random"), root=tmp_path, progress=False)
    recs = ugs.run()
    scope = task.prunable_entries(ugs.model)
    E = int(scope.sum())
    for k, r in enumerate(recs):
        assert r["mask_search"] is None
        assert E - r["prunable_edges_kept"] == math.floor((1 - 0.8**k) * E + 0.5)
        masks = ticket_parts(ugs.run_dir, k)["masks"]
        assert bool(masks[GRAPH_MASK][~scope].all())      # val/test graphs kept whole
        for name in ugs.weight_names:
            n = masks[name].numel()
            assert n - int(masks[name].sum()) == math.floor((1 - 0.7**k) * n + 0.5)


def test_resume_gives_the_same_masks(ds, tmp_path):
    task = GraphClassificationTask(ds, batch_size=8)
    cfg = _cfg(rounds=2)
    full = UGS(lambda: _model(ds), task, cfg, run_dir=tmp_path / "a", progress=False).run()

    def interrupted(r, model, parts):
        if r == 2:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        UGS(lambda: _model(ds), task, cfg, run_dir=tmp_path / "b", measure=interrupted,
            progress=False).run()
    torch.manual_seed(999)  # the resumed run restores the RNG (batch order, noise) itself
    resumed = UGS(lambda: _model(ds), task, cfg, run_dir=tmp_path / "b", progress=False).run()
    assert [r["test_acc"] for r in resumed] == [r["test_acc"] for r in full]
    for k in range(3):
        a, b = ticket_parts(tmp_path / "a", k), ticket_parts(tmp_path / "b", k)
        assert a["masks"] == b["masks"]
        for name in a["trained_state"]:
            torch.testing.assert_close(a["trained_state"][name], b["trained_state"][name],
                                       rtol=0, atol=0)


def test_split_is_stratified_disjoint_and_complete(ds, tmp_path):
    tr, va, te, how = graph_split(ds, seed=1)
    assert "80/10/10" in how
    allidx = torch.cat([tr, va, te])
    assert sorted(allidx.tolist()) == list(range(len(ds)))
    for part in (va, te):   # 12 graphs per class: round(1.2) = 1 of each class
        assert sorted(ds.y[part].tolist()) == [0, 1]
    assert not torch.equal(graph_split(ds, seed=2)[1], va) or \
        not torch.equal(graph_split(ds, seed=2)[2], te)
    # with GIN folds: fold 0's test graphs, validation carved from its training graphs
    from sparselth.data.tu import GraphDataset

    folds = [(torch.arange(4, 24), torch.arange(4))] * 10
    fd = GraphDataset(ds.name, ds.data, ds.classes, folds)
    tr, va, te, how = graph_split(fd)
    assert te.tolist() == [0, 1, 2, 3] and "fold 0" in how
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(4, 24)) and va.numel() == 2


def test_bad_arguments_raise(ds):
    with pytest.raises(ValueError, match="hidden"):
        GINGraphClassifier(ds, ds.num_features, 2, hidden=0)
    with pytest.raises(ValueError, match="dropout"):
        GINGraphClassifier(ds, ds.num_features, 2, dropout=1.5)
    with pytest.raises(TypeError, match="data"):
        GINGraphClassifier(torch.zeros(3, 3), 3, 2)
    model = _model(ds)
    with pytest.raises(ValueError, match="x must be"):
        model(ds.data.x[:-1])
    with pytest.raises(ValueError, match="batch_size"):
        GraphClassificationTask(ds, batch_size=0)
    with pytest.raises(TypeError, match="dataset"):
        GraphClassificationTask(ds.data)
    with pytest.raises(ValueError, match="seed"):
        graph_split(ds, seed=1.5)
    with pytest.raises(ValueError, match="keep"):
        ds.keep_edges(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="keep"):
        ds.keep_edges(torch.ones(ds.data.adj.nnz))
    with pytest.raises(ValueError, match="task"):
        UGSConfig(task="graphs")
    with pytest.raises(ValueError, match="metric"):  # a graph task under a link config
        UGS(_model(ds), GraphClassificationTask(ds), UGSConfig(task="link"))
    assert UGSConfig(task="graph").metric == "acc"


def test_bench_ugs_graphs_end_to_end(ds, tmp_path):
    from bench import ugs as bench_ugs

    root = tmp_path / "data"
    _write_tu(root / "tu" / "SYN")
    argv = ["--task", "graph", "--model", "gin", "--dataset", "SYN", "--data", str(root),
            "--rounds", "2", "--epochs", "2", "--seeds", "0", "1", "--hidden", "8",
            "--layers", "2", "--batch-size", "8", "--prune-graph", "0.2", "--out",
            str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), "--no-progress",
            "--budget", "0.005", "--min-reps", "2", "--max-reps", "3", "--threads", "1"]
    rep = bench_ugs.main(argv)   # hands over to bench.ugs_graphs
    assert rep["suite"] == "ugs_graphs" and rep["published_protocol"] is False
    assert [r["round"] for r in rep["rounds"]] == [0, 1, 2]
    E = rep["data"]["edges"]
    for r in rep["rounds"]:
        for b in ("ugs", "random"):
            d = r[b]["dataset"]
            assert d["edges_stored_pruned"] == round((1 - r[b]["graph_sparsity"]) * E)
            assert d["bytes_ratio"] <= 1 and d["encode_ratio"] > 0
            assert d["encode_max_abs_diff"] < 1e-5
            assert len(r[b]["per_seed"]) == 2
    saved = json.loads((tmp_path / "out" / "ugs-gin-graphs-SYN.json").read_text())
    assert saved["machine"]["cpu"] and saved["split"].startswith("seeded stratified")
    assert "random acc %" in (tmp_path / "out" / "ugs-gin-graphs-SYN.md").read_text()
    assert (tmp_path / "out" / "ugs-gin-graphs-SYN.png").stat().st_size > 0


def test_entries_of_a_batch_and_the_l1_term_on_them_only(ds):
    from sparselth.prune.ugs import add_l1_subgradient

    model = _model(ds)
    rowptr, ptr = ds.data.adj.rowptr.long(), ds.data.ptr.long()
    index = torch.tensor([3, 0, 7])
    slow = torch.zeros(ds.data.adj.nnz, dtype=torch.bool)
    for g in index.tolist():
        slow[rowptr[ptr[g]]:rowptr[ptr[g + 1]]] = True
    assert torch.equal(model.entries_of(index), slow)
    em = model.edge_mask
    em.grad = None
    add_l1_subgradient([em], 0.5, slow)
    assert torch.equal(em.grad != 0, slow) and float(em.grad[slow].min()) == 0.5
