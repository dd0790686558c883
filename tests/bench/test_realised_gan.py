"""bench.realised's GAN generator cases (``--gan``): the plan, cases that build and verify on a
tiny generator (compiled ticket = masked generator, channel generator = channel-masked
generator, equal MACs), the summary table and the published protocol. No timing is
asserted."""

from __future__ import annotations

import json
import shlex

import pytest
import torch

from bench import common, realised
from bench import realised_cases as rc
from bench import realised_gan as rg

TINY = rc.Settings(quick=True, budget_s=0.005, e2e_budget_s=0.01)


def _args(argv: str):
    return realised.build_parser().parse_args(shlex.split(argv))


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_plan_has_both_kinds_at_both_batches_and_sizes_of_the_paper():
    names = [p.name for p in rg.plan_gan(rc.Settings())]
    assert len(names) == 8 and all(n.startswith("SNGAN-G ch256 32px") for n in names)
    for b in (1, 16):
        for s in ("70%", "90%"):
            assert f"SNGAN-G ch256 32px b{b} unstructured {s}" in names
            assert f"SNGAN-G ch256 32px b{b} channel = MACs of {s}" in names
    assert rg.SIZES["full"] == dict(latent_dim=128, ch=256, bottom_width=4, image_size=32,
                                    channels=3)                       # PAPERS.md §2.1
    assert {p.group for p in rg.plan_gan(TINY)} == {"gan"}


def test_unstructured_ticket_is_global_magnitude_over_the_conv_weights():
    from sparselth.models import prunable_weights

    G = rg.generator(TINY)
    ticket = rg.unstructured_ticket(G, 0.7)
    assert set(ticket.masks) == set(prunable_weights(G))
    kept = torch.cat([m.flatten() for m in ticket.masks.values()])
    assert abs(float(kept.float().mean()) - 0.3) < 1e-3
    params = dict(G.named_parameters())
    w = torch.cat([params[n].detach().abs().flatten() for n in ticket.masks])
    assert float(w[kept].min()) >= float(w[~kept].max())       # one global threshold


def test_cases_build_verify_and_match_macs():
    from sparselth.models import channel_masks, hidden_channels

    u = rg.unstructured_case(TINY, name="u", batch=2, sparsity=0.9, target=rg.TARGET)
    c = rg.channel_case(TINY, name="c", batch=2, sparsity=0.9, target=None)
    with torch.no_grad():
        assert common.wrong_result("u", u.sparse["compiled"](), u.dense()) is None
        # the channel generator is the dense one with the removed channels masked
        G = rg.generator(TINY)
        for n, m in channel_masks(G, hidden_channels(G, c.info["keep"], "bn")).items():
            G.get_parameter(n).mul_(m)
        want = G(rg._noise(G, 2, TINY.seed))
        assert common.wrong_result("c", c.sparse["channel-pruned"](), want) is None
        assert common.wrong_result("c", c.dense(), want) is not None
    # equal MACs per image, within one hidden channel per block
    assert c.info["hidden"] == [round(c.info["keep"] * 64)] * 2
    assert abs(c.info["macs_per_image"] - c.info["macs_per_image_target"]) < 0.05 * \
        c.info["macs_per_image_target"]
    assert u.macs[0] == c.macs[0]                 # the same dense generator at batch 2
    assert abs(u.macs[1] - c.macs[1]) < 0.05 * u.macs[1]
    assert 8 < u.macs[0] / u.macs[1] < 11          # 90 % of the conv weights (Linear kept)
    assert u.info["ticket_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert u.target == rg.TARGET and "compile:" in u.route


def test_summary_pairs_the_two_tickets():
    def row(kind, batch, s, speedup, realised_savings):
        return {"group": "gan", "speedup": speedup, "realised_savings": realised_savings,
                "info": {"kind": kind, "batch": batch, "sparsity": s, "hidden": [20],
                         "ch": 256}}

    lines = rg.summary([row("unstructured", 1, 0.7, 2.5, 0.8), row("channel", 1, 0.7, 2.0, 0.6),
                        {"group": "mlp"}])
    table = "\n".join(lines)
    assert "| 1 | 70% | 2.5x | 0.800 | 2x | 0.600 | 20 of 256 | unstructured |" in table
    assert rg.summary([{"group": "mlp"}]) == []


def test_published_gan_protocol_selects_only_the_generator_cases():
    args = _args(realised.PUBLISHED["realised-gan-t1"])
    assert realised.output_name(args) == "realised-gan-t1"
    assert {p.group for p in realised.selected(args)} == {"gan"}
    assert len(realised.run_protocol(args)["cases"]) == 8
    # without --gan the table is the one of the other published results
    assert not any(p.group == "gan" for p in realised.selected(_args("--threads 1")))


def test_compare_shows_an_earlier_run(tmp_path):
    earlier = {"wall_s": 1.0, "results": [{"case": "a", "speedup": 2.0,
                                           "realised_savings": 0.5}]}
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    report = {"earlier": realised.earlier_run(path),
              "results": [{"case": "a", "speedup": 2.2, "realised_savings": 0.55}]}
    text = "\n".join(realised.stability(report))
    assert "| 1 | a | 2x | 2.2x | 0.500 | 0.550 | +10.0% |" in text
