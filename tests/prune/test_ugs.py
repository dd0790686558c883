"""UGS: schedules, mask mechanics, best-validation selection, random baseline, resume,
tickets and compile on a tiny contextual SBM."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

import sparselth
from sparselth import CSR
from sparselth.data import link_split
from sparselth.models import GAT, GCN, GIN
from sparselth.prune import masks_of
from sparselth.prune.run import read_records, ticket_parts
from sparselth.ticket import load_round
from sparselth.prune.ugs import (
    GRAPH_MASK,
    UGS,
    SoftMaskedModel,
    UGSConfig,
    add_l1_subgradient,
    load_ugs_round,
    prune_smallest,
    ugs_schedule,
)
from sparselth.train import GCNLinkEncoder, LinkPredictionTask, NodeClassificationTask

TIMING_KEYS = {"seconds", "seconds_train", "fix_seconds"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny graphs: threads only contend


def _gcn(data, adj):
    return lambda: GCN(adj, data.num_features, data.num_classes, hidden=16)


def _cfg(**kw):
    base = dict(rounds=3, mask_epochs=4, fix_epochs=3, seed=1, lr=0.01)
    base.update(kw)
    return UGSConfig(**base)


def _strip(records):
    out = []
    for r in records:
        r = {k: v for k, v in r.items() if k not in TIMING_KEYS}
        if r.get("mask_search"):
            r["mask_search"] = {k: v for k, v in r["mask_search"].items() if k != "seconds"}
        out.append(r)
    return out


# --------------------------------------------------------------------------- building blocks


def test_prune_smallest_matches_reference_threshold_rule():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=g), torch.randn(11, generator=g)
    alive_a = torch.rand(7, 5, generator=g) > 0.2
    alive_b = torch.ones(11, dtype=torch.bool)
    new_a, new_b = prune_smallest([a, b], [alive_a, alive_b], 0.2)
    # reference: one threshold over the surviving entries of both, keep |m| > sorted[int(n p)]
    live = torch.cat([a[alive_a].abs(), b.abs()])
    thr = live.sort().values[int(live.numel() * 0.2)]
    torch.testing.assert_close(new_a, alive_a & (a.abs() > thr), rtol=0, atol=0)
    torch.testing.assert_close(new_b, b.abs() > thr, rtol=0, atol=0)
    assert int(new_a.sum() + new_b.sum()) == live.numel() - (int(live.numel() * 0.2) + 1)
    # dead entries stay dead whatever their value; fraction 0 prunes nothing
    assert not bool((new_a & ~alive_a).any())
    assert torch.equal(prune_smallest([a], [alive_a], 0.0)[0], alive_a)
    assert ugs_schedule(100, 0.05, 3) == [100, 94, 89, 84]


def test_add_l1_subgradient():
    p = torch.tensor([2.0, -3.0, 0.0], requires_grad=True)
    add_l1_subgradient([p], 0.5)  # no gradient yet: the sub-gradient alone
    torch.testing.assert_close(p.grad, torch.tensor([0.5, -0.5, 0.0]))
    p.grad = torch.tensor([1.0, 1.0, 1.0])
    add_l1_subgradient([p], 0.1)
    torch.testing.assert_close(p.grad, torch.tensor([1.1, 0.9, 1.0]))


def test_soft_masked_model_effective_weights(data, adj):
    torch.manual_seed(0)
    model = _gcn(data, adj)()
    fixed = {n: torch.rand(model.get_parameter(n).shape) > 0.3 for n in model.ugs_weight_names()}
    fixed[GRAPH_MASK] = torch.rand(adj.nnz) > 0.3
    soft = SoftMaskedModel(model, fixed, model.ugs_weight_names(), noise=1e-5)
    for m, n in zip(soft.weight_masks, soft.weight_names):
        assert bool((m[~fixed[n]] == 0).all())
        assert float((m.detach()[fixed[n]] - 1).abs().max()) <= 1.5e-5  # float32 rounding
    with torch.no_grad():
        model.edge_mask.copy_(fixed[GRAPH_MASK].float())
    eff = soft.effective_parameters()
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for n in soft.weight_names:
            ref.get_parameter(n).copy_(eff[n])
    model.eval(), ref.eval()
    torch.testing.assert_close(soft(data.x), ref(data.x))
    soft(data.x).sum().backward()
    for m, n in zip(soft.weight_masks, soft.weight_names):
        assert m.grad is not None and bool((m.grad[~fixed[n]] == 0).all())
    assert bool((model.edge_mask.grad[~fixed[GRAPH_MASK]] == 0).all())


def test_config_validation(data):
    with pytest.raises(ValueError, match="^UGSConfig.baseline"):
        UGSConfig(baseline="magnitude")
    with pytest.raises(ValueError, match="^UGSConfig.prune_graph"):
        UGSConfig(prune_graph=1.0)
    with pytest.raises(ValueError, match="^UGSConfig.mask_epochs"):
        UGSConfig(mask_epochs=0)
    assert UGSConfig().run_name() != UGSConfig(seed=3).run_name()
    assert UGSConfig.from_dict(UGSConfig(s1=0.5).to_dict()) == UGSConfig(s1=0.5)
    with pytest.raises(ValueError, match="^UGS: the task's metric"):
        UGS(lambda: None, NodeClassificationTask(data), UGSConfig(task="link"))
    with pytest.raises(TypeError, match="^UGS: the model needs"):
        UGS(torch.nn.Linear(2, 2), NodeClassificationTask(data))


# --------------------------------------------------------------------------- the driver


def test_ugs_schedule_records_and_zeros(data, adj, tmp_path):
    """Scheduled sparsities per round, and pruned entries exactly 0 in every epoch of both
    phases (checked from inside the evaluation of every epoch)."""
    seen = {"search": 0, "fix": 0}

    class Checking(NodeClassificationTask):
        def evaluate(self, model):
            if isinstance(model, SoftMaskedModel):
                seen["search"] += 1
                inner = model.model
                dead_g = model.graph_fixed == 0
                assert bool((inner.edge_mask[dead_g] == 0).all())
                for i, m in enumerate(model.weight_masks):
                    assert bool((m[getattr(model, f"fixed_{i}") == 0] == 0).all())
            else:
                seen["fix"] += 1
                masks = masks_of(model)
                for name, mask in masks.items():
                    assert bool((model.get_parameter(name)[~mask] == 0).all()), name
            return super().evaluate(model)

    ugs = UGS(_gcn(data, adj), Checking(data), _cfg(), root=tmp_path, progress=False)
    recs = ugs.run()
    assert seen == {"search": 3 * 4, "fix": 4 * 3}
    assert [r["round"] for r in recs] == [0, 1, 2, 3]
    E, W = recs[0]["graph_edges_total"], recs[0]["weights_total"]
    assert E == adj.nnz and W == 16 * data.num_features + data.num_classes * 16
    assert [r["graph_edges_kept"] for r in recs] == ugs_schedule(E, 0.05, 3)
    assert [r["weights_kept"] for r in recs] == ugs_schedule(W, 0.2, 3)
    for k, r in enumerate(recs):
        assert abs(r["graph_sparsity"] - (1 - 0.95**k)) <= k / E + 1e-12
        assert abs(r["weight_sparsity"] - (1 - 0.8**k)) <= k / W + 1e-12
        assert 0.0 <= r["test_acc"] <= 1.0 and 0.0 <= r["val_acc"] <= 1.0
        assert r["macs_total"] == r["macs"] == r["macs_detail"]["total"]
        assert r["macs_paper"] is not None
        assert r["metric"] == "test_acc" and r["metrics"]["test_acc"] == r["test_acc"]
        assert (r["mask_search"] is None) == (k == 0)
    assert recs[3]["macs_total"] < recs[0]["macs_total"]
    # paper formula: (1 - s_w) N (F H + H C) + (1 - s_g) 2 nnz(A) H, exactly
    r = recs[2]
    n, h = data.num_nodes, 16
    assert r["macs_paper"] == n * r["weights_kept"] + 2 * r["graph_edges_kept"] * h
    # masks are nested round to round
    prev = None
    for k in range(4):
        m = ticket_parts(ugs.run_dir, k)["masks"]
        if prev is not None:
            for name in m:
                assert not bool((m[name] & ~prev[name]).any())
        prev = m


class _LastEpochBest(NodeClassificationTask):
    """Validation rises every mask-search epoch, so the last epoch's masks are kept."""

    calls = 0

    def evaluate(self, model):
        out = super().evaluate(model)
        if isinstance(model, SoftMaskedModel):
            self.calls += 1
            out["val"] = float(self.calls)
        return out


def test_l1_term_shrinks_masks(data, adj, tmp_path):
    """With Adam, a large s1 makes the sign term dominate the mask gradient: every surviving
    mask entry moves down by about lr per step."""
    means = []
    for s1 in (0.0, 0.2):
        ugs = UGS(_gcn(data, adj), _LastEpochBest(data),
                  _cfg(rounds=1, s1=s1, mask_epochs=6, lr=0.05), root=tmp_path / str(s1),
                  progress=False)
        ugs.run()
        means.append(ugs.records[1]["mask_search"]["graph_mask_mean_abs"])
    assert means[1] < means[0] - 0.15 and means[1] < 1 - 6 * 0.05 + 0.05


def test_masks_come_from_best_validation_epoch(data, adj, tmp_path):
    script = [0.1, 0.5, 0.9, 0.2, 0.3, 0.4]
    snaps = []

    class Scripted(NodeClassificationTask):
        def evaluate(self, model):
            out = super().evaluate(model)
            if isinstance(model, SoftMaskedModel):
                snaps.append(model.model.edge_mask.detach().clone())
                out["val"] = script[len(snaps) - 1]
            return out

    ugs = UGS(_gcn(data, adj), Scripted(data),
              _cfg(rounds=1, mask_epochs=6, lr=0.1, s1=0.5, prune_graph=0.3),
              root=tmp_path, progress=False)
    ugs.run()
    assert ugs.last_search["result"].best_epoch == 2
    torch.testing.assert_close(ugs.last_search["best_masks"][GRAPH_MASK], snaps[2])
    ones = torch.ones(adj.nnz, dtype=torch.bool)
    got = ticket_parts(ugs.run_dir, 1)["masks"][GRAPH_MASK]
    assert torch.equal(got, prune_smallest([snaps[2]], [ones], 0.3)[0])
    assert not torch.equal(got, prune_smallest([snaps[-1]], [ones], 0.3)[0])


def test_random_baseline_sparsities(data, adj, tmp_path):
    ugs = UGS(_gcn(data, adj), NodeClassificationTask(data), _cfg(baseline="random"),
              root=tmp_path, progress=False)
    recs = ugs.run()
    E = adj.nnz
    prev = None
    for k, r in enumerate(recs):
        assert r["mask_search"] is None
        assert E - r["graph_edges_kept"] == math.floor((1 - 0.95**k) * E + 0.5)
        masks = ticket_parts(ugs.run_dir, k)["masks"]
        for name in ugs.weight_names:  # per weight matrix, not global
            numel = masks[name].numel()
            assert numel - int(masks[name].sum()) == math.floor((1 - 0.8**k) * numel + 0.5)
        if prev is not None:
            for name in masks:
                assert not bool((masks[name] & ~prev[name]).any())
        prev = masks


def test_resume_gives_same_records(data, adj, tmp_path):
    cfg = _cfg(rounds=2)
    measured = lambda r, model, parts: {"kept": int(parts["masks"][GRAPH_MASK].sum())}  # noqa: E731
    full = UGS(_gcn(data, adj), NodeClassificationTask(data), cfg, run_dir=tmp_path / "a",
               measure=measured, progress=False).run()

    def interrupted(r, model, parts):
        if r == 2:
            raise KeyboardInterrupt
        return measured(r, model, parts)

    with pytest.raises(KeyboardInterrupt):
        UGS(_gcn(data, adj), NodeClassificationTask(data), cfg, run_dir=tmp_path / "b",
            measure=interrupted, progress=False).run()
    assert load_round(tmp_path / "b").metadata["round"] == 1
    torch.manual_seed(12345)  # the resumed run must restore the RNG itself
    resumed = UGS(_gcn(data, adj), NodeClassificationTask(data), cfg, run_dir=tmp_path / "b",
                  measure=measured, progress=False).run()
    assert _strip(resumed) == _strip(full)
    a, b = ticket_parts(tmp_path / "a"), ticket_parts(tmp_path / "b")
    assert a["masks"] == b["masks"]
    for k in a["trained_state"]:
        torch.testing.assert_close(a["trained_state"][k], b["trained_state"][k], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"different config: s1: 0\.01 -> 0\.5\. Only"):
        UGS(_gcn(data, adj), NodeClassificationTask(data), _cfg(rounds=2, s1=0.5),
            run_dir=tmp_path / "b", progress=False).run()
    # rounds is not part of the identity: a 1-round run extended to 2 rounds equals the full one
    assert UGSConfig(rounds=1).run_name() == UGSConfig(rounds=7).run_name()
    short = UGS(_gcn(data, adj), NodeClassificationTask(data), _cfg(rounds=1),
                run_dir=tmp_path / "c", measure=measured, progress=False).run()
    assert len(short) == 2
    extended = UGS(_gcn(data, adj), NodeClassificationTask(data), cfg, run_dir=tmp_path / "c",
                   measure=measured, progress=False).run()
    assert _strip(extended) == _strip(full)
    assert load_round(tmp_path / "c").metadata["config"]["rounds"] == 2
    kind, on_disk = read_records(tmp_path / "c")
    assert kind == "ugs" and _strip(on_disk) == _strip(full)


@pytest.mark.parametrize("cls", [GIN, GAT])
def test_ugs_gin_gat(cls, data, adj, tmp_path):
    kw = {"heads": 2} if cls is GAT else {}
    ugs = UGS(lambda: cls(adj, data.num_features, data.num_classes, hidden=8, **kw),
              NodeClassificationTask(data), _cfg(rounds=1), root=tmp_path, progress=False)
    recs = ugs.run()
    E, W = recs[0]["graph_edges_total"], recs[0]["weights_total"]
    assert recs[1]["graph_edges_kept"] == ugs_schedule(E, 0.05, 1)[1]
    assert recs[1]["weights_kept"] == ugs_schedule(W, 0.2, 1)[1]
    assert recs[1]["macs_paper"] is None


def test_ugs_link_prediction(data, tmp_path):
    split = link_split(data.edge_index, data.num_nodes, seed=0)
    task = LinkPredictionTask(split, data.x)
    ugs = UGS(lambda: GCNLinkEncoder(split.train_edge_index, data.num_features, out_dim=4,
                                     hidden=8, num_nodes=data.num_nodes),
              task, _cfg(rounds=1, task="link"), root=tmp_path, progress=False)
    recs = ugs.run()
    assert 0.0 <= recs[1]["test_auc"] <= 1.0 and "test_ap_at_best" in recs[1]
    assert recs[1]["graph_edges_total"] == split.train_edge_index.size(1)


# --------------------------------------------------------------------------- tickets, compile


def test_ticket_round_trip_and_compile(data, adj, tmp_path):
    ugs = UGS(_gcn(data, adj), NodeClassificationTask(data), _cfg(rounds=2), root=tmp_path,
              progress=False)
    recs = ugs.run()
    ticket = sparselth.Ticket.from_run(ugs.run_dir, 2)
    with pytest.warns(DeprecationWarning, match="load_ugs_round"):
        old = sparselth.Ticket(**load_ugs_round(ugs.run_dir, 2))
    assert old.masks == ticket.masks and old.metadata == ticket.metadata
    assert ticket.metadata["kind"] == "ugs" and ticket.metadata["method"] == "ugs"
    assert ticket.metadata["weight_names"] == ugs.weight_names
    assert set(ticket.masks) == {GRAPH_MASK, "conv1.lin.weight", "conv2.lin.weight"}
    assert ticket.metadata["metrics"]["test_acc"] == recs[2]["test_acc"]
    ticket.save(tmp_path / "ticket")
    loaded = sparselth.Ticket.load(tmp_path / "ticket")
    assert loaded.masks == ticket.masks and loaded.metadata == ticket.metadata

    fresh = GCN(adj, data.num_features, data.num_classes, hidden=16)
    masked = loaded.apply_to(copy.deepcopy(fresh)).eval()
    # the ticket reproduces the recorded accuracy
    acc = NodeClassificationTask(data).evaluate(masked)
    assert acc["test"] == recs[2]["test_acc"] and acc["val"] == recs[2]["val_acc"]
    kept = recs[2]["graph_edges_kept"]
    for x in (data.x, CSR.from_dense(data.x)):
        compiled, report = sparselth.compile(fresh, loaded, example_inputs=(x,), routes=["dense"],
                                             budget_s=0.005, e2e_budget_s=0.01)
        assert compiled.edge_mask.numel() == kept == compiled.adjacency().nnz  # compacted
        assert fresh.edge_mask.numel() == adj.nnz  # the model passed in is left alone
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), masked(x), rtol=1e-5, atol=1e-6)
        assert report.end_to_end["max_rel_error"] <= 1e-4


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.floats(0.0, 0.95), st.integers(0, 2**31 - 1))
def test_prune_smallest_fuzz(n, fraction, seed):
    g = torch.Generator().manual_seed(seed)
    values = (torch.randperm(n, generator=g).double() + 1) * torch.where(
        torch.rand(n, generator=g) < 0.5, -1.0, 1.0)  # distinct magnitudes, mixed signs
    alive = torch.rand(n, generator=g) < 0.8
    live = int(alive.sum())
    (new,) = prune_smallest([values], [alive], fraction)
    assert not bool((new & ~alive).any())
    removed = live - int(new.sum())
    assert removed == (0 if fraction == 0 or live == 0 else min(live, int(live * fraction) + 1))
    if 0 < removed < live:  # the reference's threshold rule gives the same set
        thr = values[alive].abs().sort().values[int(live * fraction)]
        assert torch.equal(new, alive & (values.abs() > thr))


def test_bench_ugs_smoke(tmp_path):
    """The reproduction script end to end on a small synthetic graph: JSON, Markdown, PNG,
    both baselines in one plot, latencies of the compiled tickets."""
    import json

    from bench import ugs as bench_ugs

    common = ["--model", "gcn", "--dataset", "csbm", "--csbm-nodes", "120", "--rounds", "2",
              "--epochs", "3", "--hidden", "8", "--out", str(tmp_path), "--runs",
              str(tmp_path / "runs"), "--no-progress", "--latency-budget", "0.02",
              "--compile-budget", "0.002"]
    rep = bench_ugs.main(common)
    bench_ugs.main(common + ["--baseline", "random"])
    assert rep["dense"]["round"] == 0 and [r["round"] for r in rep["rounds"]] == [1, 2]
    for r in rep["rounds"]:
        assert r["latency_ms_dense"] > 0 and r["latency_ms_ticket"] > 0
        assert r["compiled_edges"] == r["graph_edges_kept"]
        assert r["promised_speedup"] > 1
    saved = json.loads((tmp_path / "ugs-gcn-csbm.json").read_text())
    assert saved["config"]["seed"] == 0 and saved["machine"]["torch_threads"] >= 1
    md = (tmp_path / "ugs-gcn-csbm.md").read_text()
    assert "random test %" in md  # the UGS table shows the random baseline beside it
    assert (tmp_path / "ugs-gcn-csbm.png").stat().st_size > 0
    assert (tmp_path / "ugs-gcn-csbm-random.md").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_gcn_degree_config_sets_every_gcn_layer(data, adj, tmp_path):
    """``UGSConfig.gcn_degree`` decides the GCN normalisation of the run (default: sender,
    the reference's); the two choices give different runs with different names."""
    assert UGSConfig().gcn_degree == "sender"
    with pytest.raises(ValueError, match="^UGSConfig.gcn_degree must be 'sender' or 'receiver'"):
        UGSConfig(gcn_degree="target")
    assert UGSConfig(gcn_degree="receiver").run_name() != UGSConfig().run_name()
    built = []

    def build():
        built.append(GCN(adj, data.num_features, data.num_classes, hidden=16,
                         degree="receiver"))
        return built[-1]

    cfg = _cfg(rounds=1)
    sender = UGS(build, NodeClassificationTask(data), cfg, run_dir=tmp_path / "s",
                 progress=False)
    rec_s = sender.run()
    assert sender.model.conv1.degree == sender.model.conv2.degree == "sender"
    receiver = UGS(_gcn(data, adj), NodeClassificationTask(data),
                   _cfg(rounds=1, gcn_degree="receiver"), run_dir=tmp_path / "r", progress=False)
    rec_r = receiver.run()
    assert receiver.model.conv1.degree == "receiver"
    assert rec_s[0]["test_acc"] == rec_r[0]["test_acc"]     # round 0: symmetric, all ones
    assert _strip(rec_s) != _strip(rec_r)                   # the searches differ
    # a model passed as a module is set too
    m = GCN(adj, data.num_features, data.num_classes, hidden=16, degree="receiver")
    UGS(m, NodeClassificationTask(data), cfg, run_dir=tmp_path / "m", progress=False)._build_model()
    assert m.conv1.degree == "sender"


def test_run_folders_from_before_gcn_degree_resume_as_receiver(data, adj, tmp_path):
    """A folder written before ``gcn_degree`` existed was made with receiver degrees: resuming
    it with the new default is refused, with ``gcn_degree="receiver"`` it resumes."""
    import json

    cfg = _cfg(rounds=1, gcn_degree="receiver")
    UGS(_gcn(data, adj), NodeClassificationTask(data), cfg, run_dir=tmp_path,
        progress=False).run()
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["config"]["gcn_degree"]                        # as written before the field
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"different config: gcn_degree: 'receiver' -> 'sender'"):
        UGS(_gcn(data, adj), NodeClassificationTask(data), _cfg(rounds=2), run_dir=tmp_path,
            progress=False).run()
    recs = UGS(_gcn(data, adj), NodeClassificationTask(data), _cfg(rounds=2, gcn_degree="receiver"),
               run_dir=tmp_path, progress=False).run()
    assert [r["round"] for r in recs] == [0, 1, 2]


def test_bench_ugs_seeds_report_mean_and_std(tmp_path):
    """``--seeds``: one run per seed, per round the mean ± std of the test metric, the
    per-seed records kept, a name of its own."""
    import json

    from bench import ugs as bench_ugs

    common = ["--model", "gcn", "--dataset", "csbm", "--csbm-nodes", "120", "--rounds", "1",
              "--epochs", "2", "--hidden", "8", "--out", str(tmp_path), "--runs",
              str(tmp_path / "runs"), "--no-progress", "--no-latency", "--seeds", "3", "4"]
    rep = bench_ugs.main(common)
    bench_ugs.main(common + ["--baseline", "random"])
    assert rep["seeds"] == [3, 4] and len(rep["per_seed"]) == 2
    assert len(rep["run_dir"]) == 2 and rep["config"]["gcn_degree"] == "sender"
    for k, r in enumerate([rep["dense"]] + rep["rounds"]):
        accs = [s["dense"] if k == 0 else s["rounds"][k - 1] for s in rep["per_seed"]]
        accs = [a["test_acc"] for a in accs]
        assert r["test_acc"] == pytest.approx(sum(accs) / 2)
        assert r["test_acc_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
        assert r["test_acc_per_seed"] == accs
    assert json.loads((tmp_path / "ugs-gcn-csbm-2seeds.json").read_text())["seeds"] == [3, 4]
    md = (tmp_path / "ugs-gcn-csbm-2seeds.md").read_text()
    assert "mean ± std, 2 seeds" in md and "random test %" in md and " ± " in md
    assert "GCN degree normalisation sender" in md
    assert (tmp_path / "ugs-gcn-csbm-2seeds.png").stat().st_size > 0
    assert bench_ugs.result_name("gcn", "cora", "node", "random", 3) == "ugs-gcn-cora-3seeds-random"
    assert bench_ugs.result_name("gcn", "cora", "node", "ugs") == "ugs-gcn-cora"


def test_bench_seed_means():
    from bench.ugs import seed_means

    a = [{"round": 0, "test_acc": 0.5, "val_acc": 0.4, "x": 1},
         {"round": 1, "test_acc": 0.7, "val_acc": 0.6, "x": 2}]
    b = [{"round": 0, "test_acc": 0.7, "val_acc": 0.4, "x": 9}]
    (r,) = seed_means([a, b], "acc")                        # only rounds both seeds finished
    assert r["test_acc"] == pytest.approx(0.6) and r["x"] == 1
    assert r["test_acc_std"] == pytest.approx(0.2 / 2 ** 0.5) and r["val_acc_std"] == 0.0
    (one,) = seed_means([b], "acc")
    assert one["test_acc_std"] == 0.0
