"""GAN lottery tickets: exact pruning counts, nested masks, the variants and their files,
resume equal to an uninterrupted run, tickets that load, refused configs."""

from __future__ import annotations

import pytest
import torch

from sparselth.models import prunable_weights
from sparselth.prune.run import read_round
from sparselth.train import GANTicketConfig, GANTicketSearch, global_prune, random_prune

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(image_size=8, bottom_width=4, latent_dim=8, g_ch=4, d_ch=4, iterations=4,
            n_critic=1, d_batch=8, g_batch=8, rounds=2, eval_every=2, samples=4)


def _images():
    return torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _fid(g):
    with torch.no_grad():
        x = g(torch.randn(6, g.latent_dim, generator=torch.Generator().manual_seed(0)))
    return {"fid": float(x.mean().abs()), "std": float(x.std())}


def _run(tmp_path, name="run", **kw):
    cfg = GANTicketConfig(**{**TINY, **kw})
    s = GANTicketSearch(_images(), cfg, _fid, run_dir=tmp_path / name, progress=False)
    return s, s.run()


def test_global_prune_removes_the_smallest_survivors():
    w = {"a": torch.tensor([[0.5, -0.1], [2.0, 0.3]]), "b": torch.tensor([-0.2, 1.0, 0.05])}
    m = {"a": torch.ones(2, 2), "b": torch.tensor([1.0, 1.0, 0.0])}
    out = global_prune(w, m, 0.5)          # 6 survivors -> 3 removed: -0.1, -0.2, 0.3
    assert out["a"].tolist() == [[1.0, 0.0], [1.0, 0.0]] and out["b"].tolist() == [0.0, 1.0, 0.0]
    r = random_prune(m, 0.5, torch.Generator().manual_seed(0))
    assert sum(int(v.sum()) for v in r.values()) == 3
    assert bool(((r["b"] <= m["b"])).all())
    with pytest.raises(ValueError, match="fraction"):
        global_prune(w, m, 1.0)


def test_imp_rounds_nest_and_keep_pruned_weights_zero(tmp_path):
    s, recs = _run(tmp_path)
    assert [r["round"] for r in recs] == [0, 1, 2]
    total = recs[0]["macs_dense"]
    prev = None
    for r in (0, 1, 2):
        rd = read_round(s.run_dir, r)
        masks = rd["masks"]
        kept = sum(int(v.sum()) for v in masks.values())
        n = sum(v.numel() for v in masks.values())
        expected = n
        for _ in range(r):
            expected -= int(0.2 * expected)
        assert kept == expected and recs[r]["remaining"] == pytest.approx(kept / n)
        for name, m in masks.items():
            assert float(rd["trained_state"][name][~m].abs().sum()) == 0.0
            if prev is not None:
                assert not bool((m & ~prev[name]).any())        # nested
        prev = masks
        assert recs[r]["macs"] <= total and recs[r]["metric"] == "fid"
        assert recs[r]["metrics"]["best_fid"] == min(h["fid"] for h in recs[r]["history"])
    assert recs[2]["macs"] < recs[0]["macs"]
    assert set(read_round(s.run_dir, 1)["init_state"]) == set(rd["trained_state"])


def test_resume_equals_an_uninterrupted_run(tmp_path):
    s1, _ = _run(tmp_path, "a", rounds=1)
    s2, recs = _run(tmp_path, "a", rounds=2)              # extends the same folder
    _, whole = _run(tmp_path, "b", rounds=2)
    for r in range(3):
        a, b = read_round(s2.run_dir, r), read_round(tmp_path / "b", r)
        for k in a["trained_state"]:
            assert torch.equal(a["trained_state"][k], b["trained_state"][k]), (r, k)
    assert [r["metrics"]["fid"] for r in recs] == [r["metrics"]["fid"] for r in whole]


def test_impgd_prunes_d_and_kd_runs(tmp_path):
    s, recs = _run(tmp_path, variant="impgd-kd", d_init="trained", rounds=1)
    md = s.folder.load("round_001/masks_d.safetensors")
    assert set(md) <= set(prunable_weights(GANTicketConfig(**TINY).build(1)[1]))
    kept = sum(int(v.sum()) for v in md.values())
    n = sum(v.numel() for v in md.values())
    assert kept == n - int(0.2 * n) and recs[1]["d_sparsity"] == pytest.approx(1 - kept / n)
    raw = s.folder.load("round_001/raw.safetensors")
    for name, m in md.items():
        assert float(raw[f"D.{name}"][~m].abs().sum()) == 0.0


def test_oneshot_random_and_late_variants(tmp_path):
    so, _ = _run(tmp_path, "oneshot", oneshot=True)
    si, _ = _run(tmp_path, "imp")
    sr, _ = _run(tmp_path, "rand", ticket="random_mask")
    mo = read_round(so.run_dir, 2)["masks"]
    mi, mr = read_round(si.run_dir, 2)["masks"], read_round(sr.run_dir, 2)["masks"]
    count = lambda m: sum(int(v.sum()) for v in m.values())  # noqa: E731
    n = sum(v.numel() for v in mo.values())
    assert count(mo) == n - int((1 - 0.8 ** 2) * n)
    assert count(mr) == count(mi) and any(not torch.equal(mr[k], mi[k]) for k in mi)
    sl, _ = _run(tmp_path, "late", rewind="late", late_iterations=2, rounds=1)
    rd = read_round(sl.run_dir, 1)
    assert rd["rewind_state"] is not None and rd["start_state"] is rd["rewind_state"]


def test_ticket_loads(tmp_path):
    from sparselth.ticket import load_round

    s, recs = _run(tmp_path, rounds=1)
    t = load_round(s.run_dir, 1)
    assert t.metadata["weight_sparsity"] == pytest.approx(recs[1]["weight_sparsity"])


@pytest.mark.parametrize("kw, match", [
    ({"variant": "gd"}, "variant"), ({"rate": 1.0}, "rate"), ({"rewind": "late"}, "late"),
    ({"d_init": "x"}, "d_init"), ({"g_ch": 0}, "g_ch"),
])
def test_bad_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        GANTicketConfig(**{**TINY, **kw})


def test_bad_driver_arguments(tmp_path):
    cfg = GANTicketConfig(**TINY)
    with pytest.raises(ValueError, match="images"):
        GANTicketSearch(torch.zeros(4, 3, 8, 8), cfg, _fid, root=tmp_path)
    with pytest.raises(TypeError, match="evaluate"):
        GANTicketSearch(_images(), cfg, None, root=tmp_path)


def test_transfer_trains_the_source_masks(tmp_path):
    src, _ = _run(tmp_path, "src", rounds=2)
    other = _images() * 0.5
    cfg = GANTicketConfig(**{**TINY, "transfer_from": str(src.run_dir), "seed": 5})
    s = GANTicketSearch(other, cfg, _fid, run_dir=tmp_path / "dst", progress=False)
    recs = s.run()
    for r in range(3):
        a, b = read_round(src.run_dir, r)["masks"], read_round(s.run_dir, r)["masks"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert recs[2]["remaining"] == pytest.approx(read_round(src.run_dir, 2)["record"]["remaining"])
    bad = GANTicketConfig(**{**TINY, "g_ch": 8, "transfer_from": str(src.run_dir)})
    with pytest.raises(ValueError, match="transfer"):
        GANTicketSearch(_images(), bad, _fid, run_dir=tmp_path / "bad", progress=False).run()
