"""The GAN generator cases of ``bench.realised`` (``--gan``): which kind of generator ticket
to deploy, an unstructured one compiled with ``sparselth.compile`` or a channel ticket of
the same MACs run as a smaller dense generator.

For each batch (1 and 16) the SNGAN generator of the paper's CIFAR-10 run (PAPERS.md §2.1:
latent 128, ch 256, bottom 4, 32x32; ``--quick``: latent 16, ch 64, 16x16) is measured
against itself with its weights masked and run dense:

- **unstructured**: global magnitude over the generator's conv weights at 70 % and 90 %
  (one-shot GAN IMP: :func:`sparselth.train.gan_tickets.global_prune`), compiled for that
  batch (routes per layer, the compiled output checked against the masked model);
- **channel**: the hidden channels of every up-block pruned by ``|BN gamma|``
  (:func:`sparselth.models.channel_prune_generator`) at the keep fraction whose MACs per
  image equal the unstructured ticket's (:func:`sparselth.models.keep_for_macs`); checked
  against the generator with those channels masked.

The weights are the reference initialisation (no trained CIFAR-10 generator is stored
here): the per-layer sparsities of the global ranking are those of an IMP ticket's first
round, and the channel ranking does not change the speed. MACs and bytes follow
``bench.realised_cases`` (every Linear / Conv2d counted; nearest upsampling, BatchNorm,
ReLU and tanh are elementwise work and not counted).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch

from sparselth.utils.records import format_number
from sparselth.utils.timing import stopwatch

from .realised_cases import (Case, Plan, Settings, _check, _compile_summary, _routes_text,
                             layer_model_costs)

GROUP = "gan"
SPARSITIES = (0.7, 0.9)
BATCHES = (1, 16)
# the paper's CIFAR-10 SNGAN generator (PAPERS.md §2.1) and the --quick one
SIZES = {"full": dict(latent_dim=128, ch=256, bottom_width=4, image_size=32, channels=3),
         "quick": dict(latent_dim=16, ch=64, bottom_width=4, image_size=16, channels=3)}
# the targets for the compiled unstructured ticket
TARGET = [("speedup", ">", 1.0), ("realised", ">=", 0.5)]


def generator(cfg: Settings):
    """The SNGAN generator of this run (seeded; eval mode: BatchNorm's running statistics)."""
    from sparselth.models import SNGANGenerator

    torch.manual_seed(cfg.seed)
    return SNGANGenerator(**SIZES["quick" if cfg.quick else "full"]).eval()


def unstructured_ticket(G, sparsity: float):
    """One-shot GAN IMP: ``sparsity`` of all conv weights of ``G`` by global magnitude."""
    import sparselth
    from sparselth.models import prunable_weights
    from sparselth.train.gan_tickets import global_prune

    params = dict(G.named_parameters())
    names = prunable_weights(G)
    masks = global_prune({n: params[n] for n in names},
                         {n: torch.ones_like(params[n], dtype=torch.bool) for n in names},
                         sparsity)
    return sparselth.Ticket.from_model(G, {n: m.bool() for n, m in masks.items()})


def _noise(G, batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, G.latent_dim, generator=torch.Generator().manual_seed(seed))


def _size_info(G) -> dict[str, Any]:
    return {"latent_dim": G.latent_dim, "ch": G.ch, "bottom_width": G.bottom_width,
            "image_size": G.image_size}


def unstructured_case(cfg: Settings, *, name: str, batch: int, sparsity: float,
                      target) -> Case:
    """The unstructured ticket compiled with ``sparselth.compile`` against the masked dense
    generator."""
    import sparselth

    G = generator(cfg)
    ticket = unstructured_ticket(G, sparsity)
    z = _noise(G, batch, cfg.seed).to(cfg.device)
    elapsed = stopwatch()
    compiled, report = sparselth.compile(G, ticket, device=cfg.device, example_inputs=z,
                                         backend=cfg.backend, budget_s=cfg.budget_s,
                                         e2e_budget_s=cfg.e2e_budget_s)
    compile_s = elapsed()
    dense = ticket.apply_to(copy.deepcopy(G))
    sparselth.prune.remove(dense)
    dense = dense.to(cfg.device).eval()
    costs = layer_model_costs(dense, compiled, z)
    t = costs["total"]
    info = {"kind": "unstructured", "batch": batch, "sparsity": sparsity,
            "ticket": "global magnitude over the conv weights (one-shot GAN IMP)",
            "ticket_sparsity": report.meta.get("ticket_sparsity"), "compile_s": compile_s,
            **_size_info(G), "cost_layers": costs["layers"], **_compile_summary(report)}
    return Case(name, GROUP, lambda: dense(z), {"compiled": lambda: compiled(z)},
                (t["macs_dense"], t["macs"]), (t["bytes_dense"], t["bytes"]),
                _routes_text(report.routes), target, info)


def channel_case(cfg: Settings, *, name: str, batch: int, sparsity: float, target) -> Case:
    """The channel-pruned generator whose MACs per image equal those of the unstructured
    ticket at ``sparsity``, against the dense generator."""
    import sparselth
    from sparselth.metrics import count_macs
    from sparselth.models import (channel_masks, channel_prune_generator, hidden_channels,
                                  keep_for_macs)

    G = generator(cfg)
    z1 = _noise(G, 1, cfg.seed)
    target_macs = int(count_macs(G, z1, masks=unstructured_ticket(G, sparsity).masks)
                      ["total"]["macs"])
    keep = keep_for_macs(G, target_macs)
    small = channel_prune_generator(G, keep, "bn").to(cfg.device).eval()
    masked = copy.deepcopy(G)
    with torch.no_grad():
        for n, m in channel_masks(G, hidden_channels(G, keep, "bn")).items():
            masked.get_parameter(n).mul_(m)
    G = G.to(cfg.device)
    z = _noise(G, batch, cfg.seed).to(cfg.device)
    with torch.no_grad():
        _check(name, small(z), masked.to(cfg.device)(z))
    dense_costs = layer_model_costs(G, G, z)["total"]
    small_costs = layer_model_costs(small, small, z)["total"]
    info = {"kind": "channel", "batch": batch, "sparsity": sparsity, "keep": keep,
            "hidden": small.hidden, "score": "bn", "macs_per_image_target": target_macs,
            "macs_per_image": int(count_macs(small.cpu(), z1)["total"]["macs_dense"]),
            "ticket": f"channel: {small.hidden[0]} of {G.ch} hidden channels per up-block",
            **_size_info(G)}
    small = small.to(cfg.device)
    return Case(name, GROUP, lambda: G(z), {"channel-pruned": lambda: small(z)},
                (dense_costs["macs_dense"], small_costs["macs_dense"]),
                (dense_costs["bytes_dense"], small_costs["bytes_dense"]),
                f"dense generator, hidden {small.hidden}", target, info)


def plan_gan(cfg: Settings) -> list[Plan]:
    """The generator cases: per batch, the unstructured tickets at 70 % and 90 % compiled and
    the channel tickets of equal MACs."""
    size = SIZES["quick" if cfg.quick else "full"]
    px, ch = size["image_size"], size["ch"]
    out: list[Plan] = []

    def add(name: str, fn: Callable[..., Case], **kw: Any) -> None:
        out.append(Plan(name, GROUP, lambda s, fn=fn, kw=kw: fn(s, name=name, **kw)))

    for batch in BATCHES:
        for s in SPARSITIES:
            add(f"SNGAN-G ch{ch} {px}px b{batch} unstructured {s:.0%}", unstructured_case,
                batch=batch, sparsity=s, target=TARGET)
            add(f"SNGAN-G ch{ch} {px}px b{batch} channel = MACs of {s:.0%}", channel_case,
                batch=batch, sparsity=s, target=None)
    return out


# --------------------------------------------------------------------------- report


def summary(results: list[dict[str, Any]]) -> list[str]:
    """Markdown: per batch and MAC budget, the unstructured and the channel ticket side by
    side (speed-up over the dense generator, realised savings) and the faster one."""
    rows = [r for r in results if r["group"] == GROUP]
    if not rows:
        return []
    by = {(r["info"]["batch"], r["info"]["sparsity"], r["info"]["kind"]): r for r in rows}
    lines = ["## GAN generator: which ticket to deploy", "",
             ("Speed-up over the dense generator and realised savings (speed-up / MAC promise) "
              "of the unstructured ticket compiled by `sparselth.compile` and of the channel "
              "ticket with the same MACs per image run as a smaller dense generator."), "",
             "| batch | MACs of | unstructured: speed-up | realised | channel: speed-up | "
             "realised | hidden kept | faster |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for batch in BATCHES:
        for s in SPARSITIES:
            u, c = by.get((batch, s, "unstructured")), by.get((batch, s, "channel"))
            if u is None and c is None:
                continue
            faster = "-"
            if u is not None and c is not None:
                faster = "unstructured" if u["speedup"] > c["speedup"] else "channel"
            hidden = f"{c['info']['hidden'][0]} of {c['info']['ch']}" if c else "-"
            lines.append(f"| {batch} | {s:.0%} | {_x(u, 'speedup')} | {_n(u)} | "
                         f"{_x(c, 'speedup')} | {_n(c)} | {hidden} | {faster} |")
    return lines + [""]


def _x(r: dict[str, Any] | None, key: str) -> str:
    v = None if r is None else r.get(key)
    return "-" if v is None or not math.isfinite(v) else f"{v:.3g}x"


def _n(r: dict[str, Any] | None) -> str:
    return "-" if r is None else format_number(r["realised_savings"])
