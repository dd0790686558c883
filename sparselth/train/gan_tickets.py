"""GAN lottery tickets (Chen et al. 2021, "GANs Can Play Lottery Tickets Too"; PAPERS.md §2.3-2.4):
iterative magnitude pruning of an SNGAN generator, optionally of its discriminator, in a
resumable run folder of kind ``"gan"``.

One run (round 0 trains the dense pair; round k the k-th ticket)::

    θ0_G, θ0_D = the initial weights (seed ``init_seed``)
    round 0: train G, D from θ0 for the full schedule (SNGANTrainer)
    round k >= 1:
        masks_G <- prune ``rate`` of the surviving G conv weights, smallest |w| of round k-1's
                   final raw G weights, one global threshold over every conv of G
                   (``oneshot``: prune the dense round-0 G to 1 - (1 - rate)^k directly)
        variant impgd / impgd-kd: the same for D's convs (the spectral norm's original weights)
        ticket "imp": G <- θ0_G ⊙ masks_G (``rewind="late"``: the dense run's weights after
                      ``late_iterations``, G and D); "random_init": the same masks on another
                      random init; "random_mask": random masks of the same size on θ0_G
        D <- θ0_D (``d_init="init"``), the trained dense D ("trained") or another random init
             ("seed"), masked for impgd; impgd-kd also distils from the trained dense D
        train the full schedule with the masks fixed; the EMA generator is evaluated

Each round's record holds the common run-folder keys (``weight_sparsity`` = fraction of G's
conv weights pruned, ``metric`` = ``"fid"``, ``metrics`` = the evaluator's numbers at the last
evaluation plus ``best_fid``), the evaluation history and MACs of G per image. Files:
``init.safetensors`` (θ0_G: a G ticket's init state), ``init_d.safetensors``,
``rewind.safetensors`` (late rewinding), ``round_XXX/masks.safetensors`` (G),
``round_XXX/masks_d.safetensors`` (impgd), ``round_XXX/trained.safetensors`` (the EMA
generator: the deployable G), ``round_XXX/raw.safetensors`` (raw G and D weights),
``round_XXX/samples.safetensors`` (images from fixed noise, for sample grids). A round becomes a
:class:`~sparselth.Ticket` with ``sparselth.ticket.load_round(run_dir, k)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from .. import _io
from ..metrics.cost import count_macs
from ..models.gan import SNGANDiscriminator, SNGANGenerator, prunable_weights
from ..prune.run import Config, RunDir, default_run_dir, help_field, loop_rounds, read_round
from ..utils.timing import stopwatch
from .gan import SNGANTrainConfig, SNGANTrainer

__all__ = ["GANTicketConfig", "GANTicketSearch", "global_prune", "random_prune"]

VARIANTS = ("impg", "impgd", "impgd-kd")
D_INITS = ("init", "trained", "seed")
TICKETS = ("imp", "random_init", "random_mask")
Evaluator = Callable[[nn.Module], Dict[str, Any]]


def _counts(masks: Mapping[str, Tensor]) -> Tuple[int, int]:
    return sum(int(m.sum()) for m in masks.values()), sum(m.numel() for m in masks.values())


def global_prune(weights: Mapping[str, Tensor], masks: Mapping[str, Tensor],
                 fraction: float) -> Dict[str, Tensor]:
    """New masks: remove ``int(fraction * survivors)`` surviving entries of smallest ``|w|``
    over all ``weights`` together (ties: the lower position first)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"global_prune: fraction must be in [0, 1), got {fraction!r}")
    names = list(masks)
    alive = torch.cat([masks[n].reshape(-1).bool() for n in names])
    scores = torch.cat([weights[n].detach().abs().reshape(-1).double() for n in names])
    scores[~alive] = math.inf
    k = int(fraction * int(alive.sum()))
    flat = alive.clone()
    if k:
        flat[torch.sort(scores, stable=True).indices[:k]] = False
    out, start = {}, 0
    for n in names:
        size = masks[n].numel()
        out[n] = flat[start:start + size].reshape(masks[n].shape).to(masks[n].dtype)
        start += size
    return out


def random_prune(masks: Mapping[str, Tensor], fraction: float,
                 generator: torch.Generator) -> Dict[str, Tensor]:
    """New masks with ``int(fraction * survivors)`` survivors removed uniformly at random."""
    noise = {n: torch.rand(m.shape, generator=generator) for n, m in masks.items()}
    return global_prune(noise, masks, fraction)


@dataclass(frozen=True)
class GANTicketConfig(Config):
    """One GAN-ticket run. Defaults: a CPU-sized SNGAN for 28x28 grey images; the paper's
    CIFAR-10 configuration is ``image_size=32, channels=3, bottom_width=4, g_ch=256,
    d_ch=128, iterations=50000, n_critic=5, d_batch=64, g_batch=128``."""

    run_prefix: ClassVar[str] = "gan"

    dataset: str = help_field("dataset name (recorded; the images are passed to the driver)", "")
    image_size: int = help_field("image side", 28)
    channels: int = help_field("image channels", 1)
    latent_dim: int = help_field("noise dimension", 128)
    bottom_width: int = help_field("G's first feature-map side", 7)
    g_ch: int = help_field("G channels", 64)
    d_ch: int = help_field("D channels", 64)
    iterations: int = help_field("G iterations per round (the full schedule)", 2000)
    n_critic: int = help_field("D steps per G step", 5)
    d_batch: int = help_field("real (and fake) images per D step", 64)
    g_batch: int = help_field("samples per G step", 128)
    lr: float = help_field("Adam learning rate (both nets)", 2e-4)
    ema_decay: float = help_field("EMA decay of G's parameters", 0.999)
    kd_weight: float = help_field("weight of the distillation term (impgd-kd)", 1.0)
    variant: str = help_field("'impg' (prune G), 'impgd' (G and D), 'impgd-kd' (and distil "
                              "from the dense D)", "impg")
    d_init: str = help_field("D at the start of a ticket round: 'init' (θ0_D), 'trained' (the "
                             "dense trained D), 'seed' (another random init)", "init")
    ticket: str = help_field("'imp', 'random_init' (IMP masks, other init) or 'random_mask' "
                             "(random masks of the same size)", "imp")
    rewind: str = help_field("'init' (θ0) or 'late' (the dense run after late_iterations)",
                             "init")
    late_iterations: int = help_field("G iterations of the late-rewinding point", 0)
    oneshot: bool = help_field("prune the dense G to the round's sparsity at once", False)
    transfer_from: str = help_field("a finished GAN-ticket run folder whose round-k masks round k "
                                    "trains here (ticket transfer); '' = search here", "")
    rate: float = help_field("fraction of the surviving weights pruned per round", 0.2)
    rounds: int = help_field("pruning rounds after the dense round 0", 10)
    eval_every: int = help_field("evaluate every this many G iterations (and at the end)", 500)
    samples: int = help_field("images from fixed noise saved per round (sample grids)", 64)
    init_seed: int = help_field("seed of θ0 (the reference generates θ0 with seed 1)", 1)
    seed: int = help_field("seed of the batches and noise of training", 1)

    def __post_init__(self):
        fn = "GANTicketConfig"
        for name in ("image_size", "channels", "latent_dim", "bottom_width", "g_ch", "d_ch",
                     "iterations", "n_critic", "d_batch", "g_batch", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
        for name, allowed in (("variant", VARIANTS), ("d_init", D_INITS), ("ticket", TICKETS),
                              ("rewind", ("init", "late"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{fn}: {name} must be one of {allowed}, got "
                                 f"{getattr(self, name)!r}")
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"{fn}: rate must be in (0, 1), got {self.rate!r}")
        if self.rewind == "late" and not 0 < self.late_iterations < self.iterations:
            raise ValueError(f"{fn}: rewind='late' needs 0 < late_iterations < iterations, got "
                             f"{self.late_iterations!r}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 0:
            raise ValueError(f"{fn}: rounds must be an int >= 0, got {self.rounds!r}")

    def train_config(self) -> SNGANTrainConfig:
        return SNGANTrainConfig(iterations=self.iterations, n_critic=self.n_critic,
                                d_batch=self.d_batch, g_batch=self.g_batch, lr=self.lr,
                                ema_decay=self.ema_decay, kd_weight=self.kd_weight,
                                seed=self.seed)

    def build(self, seed: int) -> Tuple[SNGANGenerator, SNGANDiscriminator]:
        """G and D initialised from ``seed``."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            G = SNGANGenerator(self.latent_dim, self.g_ch, self.bottom_width, self.image_size,
                               self.channels)
            D = SNGANDiscriminator(self.d_ch, self.channels)
        return G, D


class GANTicketSearch:
    """Run a :class:`GANTicketConfig` on ``images`` (``(n, C, H, W)`` in [-1, 1]); ``evaluate``
    maps the EMA generator (eval mode) to metrics including ``"fid"`` (lower is better)."""

    def __init__(self, images: Tensor, config: GANTicketConfig, evaluate: Evaluator, *,
                 run_dir: Any = None, root: Any = None, progress: bool = True):
        fn = "GANTicketSearch"
        if not isinstance(config, GANTicketConfig):
            raise TypeError(f"{fn}: config must be a GANTicketConfig, got "
                            f"{type(config).__name__}")
        want = (config.channels, config.image_size, config.image_size)
        if not isinstance(images, Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(f"{fn}: images must be (n, {want[0]}, {want[1]}, {want[2]}) in "
                             f"[-1, 1], got "
                             f"{tuple(images.shape) if isinstance(images, Tensor) else images!r}")
        if not callable(evaluate):
            raise TypeError(f"{fn}: evaluate must be a callable G -> metrics")
        if run_dir is None and root is None:
            raise ValueError(f"{fn}: pass run_dir= or root= (the run folder)")
        self.images, self.config, self.evaluate, self.progress = images, config, evaluate, progress
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(root, config)
        self.folder = RunDir(self.run_dir, "gan", "GAN tickets")
        self.records: List[Dict[str, Any]] = []
        self.settings = {"images": int(images.shape[0])}

    # ------------------------------------------------------------------ helpers
    def _fixed_noise(self) -> Tensor:
        return torch.randn(self.config.samples, self.config.latent_dim,
                           generator=torch.Generator().manual_seed(12345))

    def _masks_for(self, r: int, G0: nn.Module, D0: nn.Module) -> Tuple[Dict, Dict]:
        c = self.config
        g_names, d_names = prunable_weights(G0), prunable_weights(D0)
        g_params, d_params = dict(G0.named_parameters()), dict(D0.named_parameters())
        ones_g = {n: torch.ones_like(g_params[n]) for n in g_names}
        ones_d = {n: torch.ones_like(d_params[n]) for n in d_names}
        if r == 0:
            return ones_g, {}
        prune_d = c.variant != "impg"
        if c.transfer_from:
            return self._transferred(r, ones_g, ones_d, prune_d)
        if c.ticket == "random_mask":
            gen = torch.Generator().manual_seed(c.seed + 7919 * r)
            prev = self.folder.load(f"round_{r - 1:03d}/masks.safetensors")
            mg = random_prune(prev, c.rate, gen)
            md = random_prune(self.folder.load(f"round_{r - 1:03d}/masks_d.safetensors")
                              if r > 1 else ones_d, c.rate, gen) if prune_d else {}
            return mg, md
        src = 0 if c.oneshot else r - 1
        raw = self.folder.load(f"round_{src:03d}/raw.safetensors")
        g_w = {n: raw[f"G.{n}"] for n in g_names}
        d_w = {n: raw[f"D.{n}"] for n in d_names}
        if c.oneshot:
            frac = 1 - (1 - c.rate) ** r
            mg = global_prune(g_w, ones_g, frac)
            md = global_prune(d_w, ones_d, frac) if prune_d else {}
            return mg, md
        mg = global_prune(g_w, self.folder.load(f"round_{r - 1:03d}/masks.safetensors"), c.rate)
        md = {}
        if prune_d:
            prev_d = self.folder.load(f"round_{r - 1:03d}/masks_d.safetensors") if r > 1 \
                else ones_d
            md = global_prune(d_w, prev_d, c.rate)
        return mg, md

    def _transferred(self, r: int, ones_g: Dict, ones_d: Dict, prune_d: bool) -> Tuple[Dict, Dict]:
        src = read_round(self.config.transfer_from, r)
        mg = {n: src["masks"][n].to(ones_g[n].dtype) for n in ones_g} \
            if set(src["masks"]) == set(ones_g) and all(
                src["masks"][n].shape == ones_g[n].shape for n in ones_g) else None
        if mg is None:
            raise ValueError(f"GANTicketSearch: the masks of {self.config.transfer_from} do not "
                             "fit this generator (same architecture needed for transfer)")
        md = {}
        if prune_d:
            files = src["progress"]["files"]
            rel = f"round_{r:03d}/masks_d.safetensors"
            if rel not in files:
                raise ValueError(f"GANTicketSearch: {self.config.transfer_from} has no D masks "
                                 f"for round {r} (variant impgd needed)")
            md = {n: t.to(ones_d[n].dtype) for n, t in _io.load_safetensors(
                Path(self.config.transfer_from) / rel, sha256=files[rel]).items()}
        return mg, md

    def _start_weights(self, r: int, G: nn.Module, D: nn.Module) -> Optional[nn.Module]:
        """Load the round's starting weights into G and D; returns the KD teacher or None."""
        c = self.config
        late = c.rewind == "late" and r > 0
        start = self.folder.load("rewind.safetensors") if late else None
        if c.ticket == "random_init" and r > 0:
            Gr, _ = c.build(c.init_seed + 1000)
            G.load_state_dict(Gr.state_dict())
        elif late:
            G.load_state_dict({k[2:]: v for k, v in start.items() if k.startswith("G.")})
        else:
            G.load_state_dict(self.folder.load("init.safetensors"))
        teacher = None
        dense_d = None
        if r > 0 and (c.d_init == "trained" or c.variant == "impgd-kd"):
            raw = self.folder.load("round_000/raw.safetensors")
            dense_d = {k[2:]: v for k, v in raw.items() if k.startswith("D.")}
        if r > 0 and c.d_init == "trained":
            D.load_state_dict(dense_d)
        elif r > 0 and c.d_init == "seed":
            D.load_state_dict(c.build(c.init_seed + 2000)[1].state_dict())
        elif late:
            D.load_state_dict({k[2:]: v for k, v in start.items() if k.startswith("D.")})
        else:
            D.load_state_dict(self.folder.load("init_d.safetensors"))
        if c.variant == "impgd-kd" and r > 0:
            teacher = c.build(c.init_seed)[1]
            teacher.load_state_dict(dense_d)
            for p in teacher.parameters():
                p.requires_grad_(False)
        return teacher

    def _run_round(self, r: int) -> Dict[str, Any]:
        c = self.config
        clock = stopwatch()
        G, D = c.build(c.init_seed)
        mg, md = self._masks_for(r, G, D)
        teacher = self._start_weights(r, G, D)
        trainer = SNGANTrainer(G, D, self.images, c.train_config(), g_masks=mg, d_masks=md,
                               teacher=teacher)
        desc = f"round {r}"
        if r == 0 and c.rewind == "late":
            trainer.train(c.late_iterations, evaluate=self.evaluate, eval_every=c.eval_every,
                          progress=self.progress, desc=desc)
            self.folder.save("rewind.safetensors",
                             {**{f"G.{k}": v for k, v in G.state_dict().items()},
                              **{f"D.{k}": v for k, v in D.state_dict().items()}})
        history = trainer.train(evaluate=self.evaluate, eval_every=c.eval_every,
                                progress=self.progress, desc=desc)
        with trainer.ema.swapped_in(G):
            ema_state = {k: v.clone() for k, v in G.state_dict().items()}
            G.eval()
            samples = G(self._fixed_noise())
            G.train()
        d = f"round_{r:03d}"
        self.folder.save(f"{d}/masks.safetensors", {k: v.bool() for k, v in mg.items()})
        if md:
            self.folder.save(f"{d}/masks_d.safetensors", {k: v.bool() for k, v in md.items()})
        self.folder.save(f"{d}/trained.safetensors", ema_state)
        self.folder.save(f"{d}/raw.safetensors",
                         {**{f"G.{k}": v for k, v in G.state_dict().items()},
                          **{f"D.{k}": v for k, v in D.state_dict().items()}})
        self.folder.save(f"{d}/samples.safetensors", {"images": samples.detach()})
        kept, total = _counts(mg)
        kept_d, total_d = _counts(md) if md else (None, None)
        fids = [h["fid"] for h in history if "fid" in h]
        last = {k: v for k, v in history[-1].items() if isinstance(v, (int, float))
                and k not in ("iteration",)} if history else {}
        rec = {"round": r, "weight_sparsity": 1 - kept / total, "graph_sparsity": None,
               "remaining": kept / total, "d_sparsity": None if md == {} else 1 - kept_d / total_d,
               "metric": "fid", "metrics": {**last, "best_fid": min(fids) if fids else None},
               "history": history, **self._macs(G, mg), "seconds": clock()}
        self.records.append(rec)
        self.folder.commit(r + 1, self.records, f"{d}/rng.safetensors")
        return rec

    def _macs(self, G: nn.Module, masks: Mapping[str, Tensor]) -> Dict[str, int]:
        """MACs of G per image: dense, and with the conv weights' masks (kept entries only)."""
        info = count_macs(G, torch.zeros(1, self.config.latent_dim),
                          masks={k: v.bool() for k, v in masks.items()})
        return {"macs": int(info["total"]["macs"]), "macs_dense": int(info["total"]["macs_dense"])}

    # ------------------------------------------------------------------ run
    def run(self) -> List[Dict[str, Any]]:
        def init_files() -> Dict[str, Dict[str, Tensor]]:
            G, D = self.config.build(self.config.init_seed)
            return {"init.safetensors": G.state_dict(), "init_d.safetensors": D.state_dict()}

        return run_ticket_rounds(self, "GAN tickets", "SNGANGenerator", init_files)


def run_ticket_rounds(search: Any, desc: str, model: str,
                      init_files: Callable[[], Dict[str, Dict[str, Tensor]]]
                      ) -> List[Dict[str, Any]]:
    """The round loop of a GAN ticket search (``search``: its ``config``, ``folder``,
    ``settings``, ``records``, ``_run_round``, ``progress``): resume the run folder, or create it
    and save ``init_files()`` (file name -> tensors), then run the rounds left under a progress
    bar showing the remaining weights and the best FID; the records of rounds 0..rounds."""
    c = search.config
    prog = search.folder.resume(c, search.settings)
    if prog is None:
        search.folder.create(c, search.settings, model=model)
        for rel, tensors in init_files().items():
            search.folder.save(rel, tensors)
        start = 0
    else:
        search.records = list(prog["records"])
        start = int(prog["next_round"])
        search.folder.restore_rng(prog)

    def postfix(rec: Dict[str, Any]) -> Dict[str, str]:
        fid = rec["metrics"].get("best_fid")
        return {"remaining": f"{rec['remaining']:.3f}",
                "best_fid": "-" if fid is None else f"{fid:.2f}"}

    loop_rounds(desc, start, c.rounds, search._run_round, postfix, search.progress)
    return search.records[:c.rounds + 1]
