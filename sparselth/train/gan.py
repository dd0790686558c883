"""SNGAN training as GAN-LTH runs it (PAPERS.md §2.2), with masks for tickets.

- :func:`hinge_d_loss` / :func:`hinge_g_loss`: ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``
  and ``-mean(D(G(z)))``.
- :func:`kd_d_loss`: IMPGD-KD's distillation term, ``KL([σ(t), 1-σ(t)] || [σ(s), 1-σ(s)])``
  of a frozen dense discriminator's scores ``t`` and the student's ``s`` (mean over samples).
- :class:`ParamEMA`: the exponential moving average of G's parameters (decay 0.999), the
  generator that is evaluated; buffers (BatchNorm statistics) are those of the live G.
- :class:`SNGANTrainer`: one *G iteration* = ``n_critic`` discriminator steps on real batches
  of ``d_batch`` images and as many fakes, then one generator step on ``g_batch`` samples;
  Adam (lr 2e-4, betas (0, 0.9)) for both, constant lr. ``g_masks`` / ``d_masks`` (parameter
  name -> 0/1 tensor) keep pruned weights at exactly 0: the weights are multiplied by their
  mask at the start and after every step, and the gradients are masked (IMPGD's
  ``train_with_mask``). ``teacher`` adds :func:`kd_d_loss` over the real and the fake batch.

Every draw (batches, noise) comes from one ``torch.Generator`` seeded by ``config.seed``; with
the same initial weights and masks, two runs give the same weights. ``state_dict`` /
``load_state_dict`` carry everything (nets, optimisers, EMA, iteration, RNG), so a run folder can
resume a round mid-way.

Example::

    >>> trainer = SNGANTrainer(G, D, images, SNGANTrainConfig(iterations=2000))
    >>> trainer.train(evaluate=lambda g: {"fid": fid_of(g)}, eval_every=500)
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SNGANTrainConfig", "SNGANTrainer", "ParamEMA", "ExactMasks", "hinge_d_loss",
           "hinge_g_loss",
           "kd_d_loss"]


def hinge_d_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()


def hinge_g_loss(fake_scores: Tensor) -> Tensor:
    return -fake_scores.mean()


def kd_d_loss(student_scores: Tensor, teacher_scores: Tensor) -> Tensor:
    """``KL(p_t || p_s)`` of the two-class distributions ``[σ(score), 1 - σ(score)]``, mean over
    the samples (the teacher's scores carry no gradient)."""
    t = teacher_scores.detach()
    log_ps = torch.stack([F.logsigmoid(student_scores), F.logsigmoid(-student_scores)], -1)
    log_pt = torch.stack([F.logsigmoid(t), F.logsigmoid(-t)], -1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean()


class ParamEMA:
    """``avg <- decay * avg + (1 - decay) * param`` over a model's parameters."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ParamEMA: decay must be in [0, 1), got {decay!r}")
        self.decay = decay
        self.avg = {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            self.avg[n].mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` with the averaged parameters while inside the block (restored after)."""
        params = dict(model.named_parameters())
        live = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self.avg[n])
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(live[n])


@dataclass
class SNGANTrainConfig:
    """The reference defaults (CIFAR-10); ``iterations`` counts generator steps."""

    iterations: int = 50_000
    n_critic: int = 5
    d_batch: int = 64
    g_batch: int = 128
    lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    ema_decay: float = 0.999
    kd_weight: float = 1.0
    seed: int = 1

    def __post_init__(self):
        for name in ("iterations", "n_critic", "d_batch", "g_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "iterations"
                                                                      else 1):
                raise ValueError(f"SNGANTrainConfig: {name} must be a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"SNGANTrainConfig: lr must be > 0, got {self.lr!r}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class ExactMasks:
    """0/1 masks on some parameters of one model, kept exact while it trains: the masked
    weights are zeroed (:meth:`apply`: at the start and after every optimiser step) and their
    gradients masked (:meth:`mask_grads`: before the step). ``fn`` and ``name`` start the
    errors (the caller and the argument)."""

    def __init__(self, fn: str, name: str, model: nn.Module,
                 masks: Optional[Mapping[str, Tensor]]):
        self.params = dict(model.named_parameters())
        self.masks: Dict[str, Tensor] = {}
        for k, m in (masks or {}).items():
            if k not in self.params:
                raise ValueError(f"{fn}: {name} names {k!r}, not a parameter of the model")
            if not isinstance(m, Tensor) or m.shape != self.params[k].shape:
                raise ValueError(f"{fn}: {name}[{k!r}] must be a tensor of shape "
                                 f"{tuple(self.params[k].shape)}")
            self.masks[k] = (m != 0).to(self.params[k].dtype)

    @torch.no_grad()
    def apply(self) -> None:
        for k, m in self.masks.items():
            self.params[k].mul_(m)

    def mask_grads(self) -> None:
        for k, m in self.masks.items():
            if self.params[k].grad is not None:
                self.params[k].grad.mul_(m)


class SNGANTrainer:
    """Hinge-loss SNGAN training of ``G`` and ``D`` on ``images`` (``(n, C, H, W)`` in [-1, 1])."""

    def __init__(self, G: nn.Module, D: nn.Module, images: Tensor,
                 config: SNGANTrainConfig = SNGANTrainConfig(), *,
                 g_masks: Optional[Mapping[str, Tensor]] = None,
                 d_masks: Optional[Mapping[str, Tensor]] = None,
                 teacher: Optional[nn.Module] = None):
        fn = "SNGANTrainer"
        if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
            raise ValueError(f"{fn}: images must be a float (n, C, H, W) tensor in [-1, 1]")
        if images.shape[0] < 1:
            raise ValueError(f"{fn}: images is empty")
        if not isinstance(config, SNGANTrainConfig):
            raise TypeError(f"{fn}: config must be an SNGANTrainConfig, got "
                            f"{type(config).__name__}")
        self.G, self.D, self.images, self.config = G, D, images, config
        self.teacher = teacher.eval() if teacher is not None else None
        self.g_masks = ExactMasks(fn, "g_masks", G, g_masks)
        self.d_masks = ExactMasks(fn, "d_masks", D, d_masks)
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(G.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=config.lr, betas=betas)
        self.gen = torch.Generator().manual_seed(config.seed)
        self._apply_masks()
        self.ema = ParamEMA(G, config.ema_decay)
        self.iteration = 0
        self._perm, self._pos = torch.empty(0, dtype=torch.long), 0
        self.history: List[Dict[str, Any]] = []

    # ------------------------------------------------------------------ masks
    def _apply_masks(self) -> None:
        self.g_masks.apply()
        self.d_masks.apply()

    # ------------------------------------------------------------------ data
    def _real_batch(self) -> Tensor:
        n, b = self.images.shape[0], self.config.d_batch
        idx = []
        while len(idx) < b:
            if self._pos >= self._perm.numel():
                self._perm, self._pos = torch.randperm(n, generator=self.gen), 0
            take = self._perm[self._pos:self._pos + b - len(idx)]
            self._pos += take.numel()
            idx.extend(take.tolist())
        return self.images[torch.tensor(idx)]

    def _noise(self, n: int) -> Tensor:
        return torch.randn(n, self.G.latent_dim, generator=self.gen)

    # ------------------------------------------------------------------ steps
    def step(self) -> Dict[str, float]:
        """One G iteration (``n_critic`` D steps, one G step, EMA update)."""
        c = self.config
        self.G.train()
        self.D.train()
        d_loss = torch.zeros(())
        for _ in range(c.n_critic):
            real = self._real_batch()
            with torch.no_grad():
                fake = self.G(self._noise(real.shape[0]))
            real_s, fake_s = self.D(real), self.D(fake)
            d_loss = hinge_d_loss(real_s, fake_s)
            if self.teacher is not None:
                with torch.no_grad():
                    t_real, t_fake = self.teacher(real), self.teacher(fake)
                d_loss = d_loss + c.kd_weight * (kd_d_loss(real_s, t_real)
                                                 + kd_d_loss(fake_s, t_fake))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_masks.mask_grads()
            self.opt_d.step()
        for p in self.D.parameters():
            p.requires_grad_(False)
        try:
            g_loss = hinge_g_loss(self.D(self.G(self._noise(c.g_batch))))
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
        finally:
            for p in self.D.parameters():
                p.requires_grad_(True)
        self.g_masks.mask_grads()
        self.opt_g.step()
        self._apply_masks()
        self.ema.update(self.G)
        self.iteration += 1
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}

    def train(self, iterations: Optional[int] = None, *,
              evaluate: Optional[Callable[[nn.Module], Dict[str, Any]]] = None,
              eval_every: int = 0, progress: bool = False, desc: str = "SNGAN"
              ) -> List[Dict[str, Any]]:
        """Run up to ``iterations`` (default: the config's) G iterations in total; every
        ``eval_every`` iterations and at the end, ``evaluate(G with the EMA weights, eval
        mode)`` is recorded in :attr:`history` with the iteration and the last losses."""
        from tqdm.auto import tqdm

        total = self.config.iterations if iterations is None else iterations
        bar = tqdm(total=total, initial=min(self.iteration, total), desc=desc,
                   disable=not progress)
        losses: Dict[str, float] = {}
        while self.iteration < total:
            losses = self.step()
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            last = self.iteration == total
            if evaluate is not None and (last or (eval_every and self.iteration % eval_every == 0)):
                rec = {"iteration": self.iteration, **losses, **self.evaluate(evaluate)}
                self.history.append(rec)
                bar.set_postfix({k: (f"{v:.3g}" if isinstance(v, float) else v)
                                 for k, v in rec.items() if k != "iteration"}, refresh=False)
        bar.close()
        return self.history

    def evaluate(self, fn: Callable[[nn.Module], Dict[str, Any]]) -> Dict[str, Any]:
        """``fn`` on G with the EMA weights, in eval mode (G's mode and weights restored)."""
        was = self.G.training
        with self.ema.swapped_in(self.G) as g:
            g.eval()
            try:
                return dict(fn(g))
            finally:
                g.train(was)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        """Everything a resumed run needs: tensors only, keyed by name (safetensors-ready
        except the optimiser states, which :func:`torch.optim.Optimizer.state_dict` gives)."""
        return {"G": {k: v.clone() for k, v in self.G.state_dict().items()},
                "D": {k: v.clone() for k, v in self.D.state_dict().items()},
                "ema": {k: v.clone() for k, v in self.ema.avg.items()},
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "iteration": self.iteration, "rng": self.gen.get_state(),
                "perm": self._perm.clone(), "pos": self._pos,
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        for k, v in state["ema"].items():
            self.ema.avg[k].copy_(v)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.iteration = int(state["iteration"])
        self.gen.set_state(state["rng"])
        self._perm, self._pos = state["perm"].clone(), int(state["pos"])
        self.history = [dict(h) for h in state["history"]]
