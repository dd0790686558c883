"""CycleGAN lottery tickets (GAN-LTH's CycleGAN experiments, PAPERS.md §2.5): each generator is
pruned on its own (one global magnitude threshold within a generator, ``rate`` of its survivors
per round), rewound to its initial weights, and both discriminators are reloaded from their
initial weights every round (IMPG); ``variant="impgd"`` prunes each discriminator the same way.

Run folder of kind ``"gan"`` (prefix ``cyclegan_``): ``init.safetensors`` / ``round_XXX/
masks.safetensors`` / ``round_XXX/trained.safetensors`` hold generator A->B (a ticket of
:class:`~sparselth.models.CycleGANGenerator`); ``init_all.safetensors``, ``round_XXX/
masks_all.safetensors`` and ``round_XXX/raw.safetensors`` hold all four nets (keys
``"<net>.<parameter>"``). A round's record: ``weight_sparsity`` of the generators' conv weights,
``metrics`` with the evaluator's numbers at the last evaluation, ``fid`` = mean of ``fid_ab``
and ``fid_ba``, and ``best_fid`` (the best evaluation by that mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Mapping

import torch
from torch import Tensor, nn

from ..metrics.cost import count_macs
from ..models.gan import CycleGANGenerator, PatchGANDiscriminator, prunable_weights
from ..prune.run import Config, RunDir, default_run_dir, help_field
from ..utils.timing import stopwatch
from .cyclegan import CycleGANTrainConfig, CycleGANTrainer
from .gan_tickets import global_prune, random_prune, run_ticket_rounds

__all__ = ["CycleGANTicketConfig", "CycleGANTicketSearch"]


@dataclass(frozen=True)
class CycleGANTicketConfig(Config):
    """One CycleGAN-ticket run. Defaults: a CPU-sized task on 28x28 grey images; the paper's
    generator is ``ngf=64, n_res=9`` on 256x256 RGB, batch 1, 200 epochs (decay from 100)."""

    run_prefix: ClassVar[str] = "cyclegan"

    dataset: str = help_field("task name (recorded; the images are passed to the driver)", "")
    image_size: int = help_field("image side (divisible by 4)", 28)
    channels: int = help_field("image channels", 1)
    ngf: int = help_field("generator base channels", 16)
    n_res: int = help_field("generator residual blocks", 3)
    ndf: int = help_field("discriminator base channels", 16)
    d_layers: int = help_field("PatchGAN layers (3: the 70x70 PatchGAN)", 2)
    iterations: int = help_field("iterations per round", 1000)
    batch_size: int = help_field("images per domain per iteration", 4)
    lr: float = help_field("Adam learning rate", 2e-4)
    decay_start: int = help_field("iteration where the linear lr decay starts", 500)
    variant: str = help_field("'impg' (prune the generators) or 'impgd' (and the "
                              "discriminators)", "impg")
    ticket: str = help_field("'imp' or 'random_mask' (random masks of the same size)", "imp")
    rate: float = help_field("fraction of the surviving weights pruned per round", 0.2)
    rounds: int = help_field("pruning rounds after the dense round 0", 10)
    eval_every: int = help_field("evaluate every this many iterations (and at the end)", 250)
    init_seed: int = help_field("seed of the initial weights", 1)
    seed: int = help_field("seed of the batches and the replay buffers", 1)

    def __post_init__(self):
        fn = "CycleGANTicketConfig"
        for name in ("image_size", "channels", "ngf", "ndf", "d_layers", "iterations",
                     "batch_size", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
        if self.image_size % 4:
            raise ValueError(f"{fn}: image_size must be divisible by 4, got {self.image_size}")
        if self.variant not in ("impg", "impgd"):
            raise ValueError(f"{fn}: variant must be 'impg' or 'impgd', got {self.variant!r}")
        if self.ticket not in ("imp", "random_mask"):
            raise ValueError(f"{fn}: ticket must be 'imp' or 'random_mask', got {self.ticket!r}")
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"{fn}: rate must be in (0, 1), got {self.rate!r}")
        if not 0 <= self.decay_start <= self.iterations:
            raise ValueError(f"{fn}: decay_start must be in [0, iterations], got "
                             f"{self.decay_start!r}")

    def train_config(self) -> CycleGANTrainConfig:
        return CycleGANTrainConfig(iterations=self.iterations, batch_size=self.batch_size,
                                   lr=self.lr, decay_start=self.decay_start, seed=self.seed)

    def build(self, seed: int) -> Dict[str, nn.Module]:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return {"G_AB": CycleGANGenerator(self.channels, self.ngf, self.n_res),
                    "G_BA": CycleGANGenerator(self.channels, self.ngf, self.n_res),
                    "D_A": PatchGANDiscriminator(self.channels, self.ndf, self.d_layers),
                    "D_B": PatchGANDiscriminator(self.channels, self.ndf, self.d_layers)}


def _flat(nets: Mapping[str, nn.Module]) -> Dict[str, Tensor]:
    return {f"{k}.{n}": v for k, net in nets.items() for n, v in net.state_dict().items()}


def _split(flat: Mapping[str, Tensor], net: str) -> Dict[str, Tensor]:
    return {k[len(net) + 1:]: v for k, v in flat.items() if k.startswith(net + ".")}


class CycleGANTicketSearch:
    """Run a :class:`CycleGANTicketConfig` on unpaired ``images_a`` / ``images_b`` (in [-1, 1]);
    ``evaluate(nets)`` returns at least ``"fid_ab"`` and ``"fid_ba"`` (lower is better)."""

    def __init__(self, images_a: Tensor, images_b: Tensor, config: CycleGANTicketConfig,
                 evaluate: Callable[[Mapping[str, nn.Module]], Dict[str, Any]], *,
                 run_dir: Any = None, root: Any = None, progress: bool = True):
        fn = "CycleGANTicketSearch"
        if not isinstance(config, CycleGANTicketConfig):
            raise TypeError(f"{fn}: config must be a CycleGANTicketConfig")
        want = (config.channels, config.image_size, config.image_size)
        for name, x in (("images_a", images_a), ("images_b", images_b)):
            if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != want:
                raise ValueError(f"{fn}: {name} must be (n, {want[0]}, {want[1]}, {want[2]})")
        if not callable(evaluate):
            raise TypeError(f"{fn}: evaluate must be a callable nets -> metrics")
        if run_dir is None and root is None:
            raise ValueError(f"{fn}: pass run_dir= or root= (the run folder)")
        self.a, self.b, self.config, self.evaluate = images_a, images_b, config, evaluate
        self.progress = progress
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(root, config)
        self.folder = RunDir(self.run_dir, "gan", "CycleGAN tickets")
        self.records: List[Dict[str, Any]] = []
        self.settings = {"images_a": int(images_a.shape[0]), "images_b": int(images_b.shape[0])}

    def _masks_for(self, r: int, nets: Mapping[str, nn.Module]) -> Dict[str, Dict[str, Tensor]]:
        c = self.config
        pruned = ("G_AB", "G_BA") + (("D_A", "D_B") if c.variant == "impgd" else ())
        out = {}
        prev_all = self.folder.load(f"round_{r - 1:03d}/masks_all.safetensors") if r else {}
        raw = self.folder.load(f"round_{r - 1:03d}/raw.safetensors") if r else {}
        gen = torch.Generator().manual_seed(c.seed + 7919 * r)
        for net in pruned:
            params = dict(nets[net].named_parameters())
            names = prunable_weights(nets[net])
            prev = _split(prev_all, net) or {n: torch.ones_like(params[n]) for n in names}
            prev = {n: prev[n].to(params[n].dtype) for n in names}
            if r == 0:
                out[net] = prev
            elif c.ticket == "random_mask":
                out[net] = random_prune(prev, c.rate, gen)
            else:
                out[net] = global_prune(_split(raw, net), prev, c.rate)
        return out

    def _run_round(self, r: int) -> Dict[str, Any]:
        c = self.config
        clock = stopwatch()
        nets = c.build(c.init_seed)
        init = self.folder.load("init_all.safetensors")
        for k, net in nets.items():
            net.load_state_dict(_split(init, k))
        masks = self._masks_for(r, nets)
        trainer = CycleGANTrainer(nets, self.a, self.b, c.train_config(), masks=masks)
        history = trainer.train(evaluate=self._evaluate, eval_every=c.eval_every,
                                progress=self.progress, desc=f"round {r}")
        d = f"round_{r:03d}"
        flat_masks = {f"{k}.{n}": m.bool() for k, mk in masks.items() for n, m in mk.items()}
        self.folder.save(f"{d}/masks_all.safetensors", flat_masks)
        self.folder.save(f"{d}/masks.safetensors", {n: m.bool() for n, m in masks["G_AB"].items()})
        self.folder.save(f"{d}/trained.safetensors", nets["G_AB"].state_dict())
        self.folder.save(f"{d}/raw.safetensors", _flat(nets))
        kept = sum(int(m.sum()) for k in ("G_AB", "G_BA") for m in masks[k].values())
        total = sum(m.numel() for k in ("G_AB", "G_BA") for m in masks[k].values())
        best = min(history, key=lambda h: h["fid"]) if history else {}
        last = {k: v for k, v in history[-1].items() if isinstance(v, (int, float))
                and k != "iteration"} if history else {}
        x = self.a[:1]
        info = count_macs(nets["G_AB"], x, masks={n: m.bool() for n, m in masks["G_AB"].items()})
        rec = {"round": r, "weight_sparsity": 1 - kept / total, "graph_sparsity": None,
               "remaining": kept / total, "metric": "fid",
               "metrics": {**last, "best_fid": best.get("fid"),
                           "best_fid_ab": best.get("fid_ab"), "best_fid_ba": best.get("fid_ba")},
               "history": history, "macs": int(info["total"]["macs"]),
               "macs_dense": int(info["total"]["macs_dense"]), "seconds": clock()}
        self.records.append(rec)
        self.folder.commit(r + 1, self.records, f"{d}/rng.safetensors")
        return rec

    def _evaluate(self, nets: Mapping[str, nn.Module]) -> Dict[str, Any]:
        res = dict(self.evaluate(nets))
        for k in ("fid_ab", "fid_ba"):
            if k not in res:
                raise ValueError(f"CycleGANTicketSearch: evaluate must return {k!r}")
        res["fid"] = 0.5 * (res["fid_ab"] + res["fid_ba"])
        return res

    def run(self) -> List[Dict[str, Any]]:
        def init_files() -> Dict[str, Dict[str, Tensor]]:
            nets = self.config.build(self.config.init_seed)
            return {"init_all.safetensors": _flat(nets),
                    "init.safetensors": nets["G_AB"].state_dict()}

        return run_ticket_rounds(self, "CycleGAN tickets", "CycleGANGenerator", init_files)

