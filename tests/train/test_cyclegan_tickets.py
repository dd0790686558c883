"""CycleGAN tickets: each generator pruned on its own by exact counts, nested masks, pruned
weights zero, impgd prunes the discriminators, resume, a G_AB ticket that loads."""

from __future__ import annotations

import pytest
import torch

from sparselth.prune.run import read_round
from sparselth.train import CycleGANTicketConfig, CycleGANTicketSearch

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(image_size=8, ngf=2, n_res=1, ndf=2, d_layers=1, iterations=3, batch_size=2,
            decay_start=2, rounds=2, eval_every=2)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 8, 8, generator=g) * 2 - 1, torch.rand(6, 1, 8, 8, generator=g) * 2 - 1


def _eval(nets):
    a, b = _data()
    return {"fid_ab": float((nets["G_AB"](a) - b).abs().mean()),
            "fid_ba": float((nets["G_BA"](b) - a).abs().mean())}


def _run(tmp_path, name="r", **kw):
    a, b = _data()
    s = CycleGANTicketSearch(a, b, CycleGANTicketConfig(**{**TINY, **kw}), _eval,
                             run_dir=tmp_path / name, progress=False)
    return s, s.run()


def test_each_generator_pruned_on_its_own(tmp_path):
    s, recs = _run(tmp_path)
    prev = None
    for r in range(3):
        flat = s.folder.load(f"round_{r:03d}/masks_all.safetensors")
        raw = s.folder.load(f"round_{r:03d}/raw.safetensors")
        for net in ("G_AB", "G_BA"):
            mk = {k: v for k, v in flat.items() if k.startswith(net + ".")}
            n = sum(v.numel() for v in mk.values())
            expected = n
            for _ in range(r):
                expected -= int(0.2 * expected)
            assert sum(int(v.sum()) for v in mk.values()) == expected, (r, net)
            for k, m in mk.items():
                assert float(raw[k][~m].abs().sum()) == 0.0
                if prev is not None:
                    assert not bool((m & ~prev[k]).any())
        assert not any(k.startswith("D_") for k in flat)
        prev = flat
        m = recs[r]["metrics"]
        assert m["fid"] == pytest.approx(0.5 * (m["fid_ab"] + m["fid_ba"]))
        assert m["best_fid"] == min(h["fid"] for h in recs[r]["history"])
    assert recs[2]["macs"] < recs[0]["macs"]
    rd = read_round(s.run_dir, 2)
    assert set(rd["masks"]) <= set(rd["trained_state"])


def test_impgd_random_and_resume(tmp_path):
    s, _ = _run(tmp_path, "d", variant="impgd", rounds=1)
    flat = s.folder.load("round_001/masks_all.safetensors")
    assert any(k.startswith("D_A.") for k in flat) and any(k.startswith("D_B.") for k in flat)
    _run(tmp_path, "x", rounds=1)
    sx, rx = _run(tmp_path, "x", rounds=2)
    _, ry = _run(tmp_path, "y", rounds=2)
    assert [r["metrics"]["fid"] for r in rx] == [r["metrics"]["fid"] for r in ry]
    sr, _ = _run(tmp_path, "rand", ticket="random_mask", rounds=1)
    mi = sx.folder.load("round_001/masks.safetensors")
    mr = sr.folder.load("round_001/masks.safetensors")
    assert sum(int(v.sum()) for v in mi.values()) == sum(int(v.sum()) for v in mr.values())
    assert any(not torch.equal(mi[k], mr[k]) for k in mi)


def test_ticket_and_refusals(tmp_path):
    from sparselth.ticket import load_round

    s, recs = _run(tmp_path, rounds=1)
    t = load_round(s.run_dir, 1)
    assert t.metadata["weight_sparsity"] == pytest.approx(recs[1]["weight_sparsity"])
    with pytest.raises(ValueError, match="divisible"):
        CycleGANTicketConfig(**{**TINY, "image_size": 10})
    with pytest.raises(ValueError, match="variant"):
        CycleGANTicketConfig(**{**TINY, "variant": "impgd-kd"})
    a, b = _data()
    with pytest.raises(ValueError, match="images_b"):
        CycleGANTicketSearch(a, b[:, :, :4], CycleGANTicketConfig(**TINY), _eval, root=tmp_path)
