"""CycleGAN training as GAN-LTH runs it (PAPERS.md §2.5), with masks for tickets.

One iteration on a batch of domain-A and one of domain-B images:

- generators (one Adam over both): LSGAN ``MSE(D_B(G_AB(a)), 1) + MSE(D_A(G_BA(b)), 1)``, cycle
  ``10 (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1)``, identity ``5 (|G_AB(b) - b|_1 +
  |G_BA(a) - a|_1)`` (means);
- each discriminator: ``(MSE(D(real), 1) + MSE(D(fake from a 50-image replay buffer), 0)) / 2``;
- Adam (lr 2e-4, betas (0.5, 0.999)) for all, the learning rate decaying linearly to 0 from
  ``decay_start`` to the last iteration.

``masks`` maps ``"G_AB" | "G_BA" | "D_A" | "D_B"`` to ``{parameter name: 0/1 tensor}``; masked
weights are zeroed at the start and after every step and their gradients masked, so a ticket's
pruned weights stay exactly 0. All draws come from one generator seeded by ``config.seed``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gan import ExactMasks

__all__ = ["CycleGANTrainConfig", "CycleGANTrainer", "ReplayBuffer"]

NETS = ("G_AB", "G_BA", "D_A", "D_B")


class ReplayBuffer:
    """The image pool of CycleGAN: until ``size`` images are stored every fake is stored and
    returned; then each fake, with probability 1/2, replaces a random stored image, which is
    returned in its place (else the fake itself is returned)."""

    def __init__(self, size: int = 50, generator: Optional[torch.Generator] = None):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"ReplayBuffer: size must be an int >= 0, got {size!r}")
        self.size, self.gen, self.images = size, generator, []

    def push_and_pop(self, fakes: Tensor) -> Tensor:
        if self.size == 0:
            return fakes
        out = []
        for img in fakes.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif float(torch.rand((), generator=self.gen)) > 0.5:
                i = int(torch.randint(self.size, (), generator=self.gen))
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)


@dataclass
class CycleGANTrainConfig:
    iterations: int = 1000
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_cycle: float = 10.0
    lambda_identity: float = 5.0
    buffer_size: int = 50
    decay_start: int = 500
    seed: int = 1

    def __post_init__(self):
        for name in ("iterations", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"CycleGANTrainConfig: {name} must be a positive int, got {v!r}")
        if not 0 <= self.decay_start <= self.iterations:
            raise ValueError(f"CycleGANTrainConfig: decay_start must be in [0, iterations], got "
                             f"{self.decay_start!r}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def lr_at(self, iteration: int) -> float:
        """The learning rate of iteration ``iteration`` (0-based): constant, then linear to 0."""
        if iteration < self.decay_start:
            return self.lr
        span = max(1, self.iterations - self.decay_start)
        return self.lr * max(0.0, 1.0 - (iteration - self.decay_start) / span)


class CycleGANTrainer:
    """Train ``nets`` (``{"G_AB", "G_BA", "D_A", "D_B"}``) on unpaired ``images_a`` and
    ``images_b`` (``(n, C, H, W)`` in [-1, 1])."""

    def __init__(self, nets: Mapping[str, nn.Module], images_a: Tensor, images_b: Tensor,
                 config: CycleGANTrainConfig = CycleGANTrainConfig(), *,
                 masks: Optional[Mapping[str, Mapping[str, Tensor]]] = None):
        fn = "CycleGANTrainer"
        if set(nets) != set(NETS):
            raise ValueError(f"{fn}: nets must have exactly the keys {NETS}, got {sorted(nets)}")
        for name, x in (("images_a", images_a), ("images_b", images_b)):
            if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point() \
                    or x.shape[0] < 1:
                raise ValueError(f"{fn}: {name} must be a non-empty float (n, C, H, W) tensor")
        if images_a.shape[1:] != images_b.shape[1:]:
            raise ValueError(f"{fn}: images_a {tuple(images_a.shape[1:])} and images_b "
                             f"{tuple(images_b.shape[1:])} must have one image shape")
        if not isinstance(config, CycleGANTrainConfig):
            raise TypeError(f"{fn}: config must be a CycleGANTrainConfig")
        self.nets, self.a, self.b, self.config = dict(nets), images_a, images_b, config
        unknown = sorted(set(masks or {}) - set(NETS))
        if unknown:
            raise ValueError(f"{fn}: masks has an unknown net {unknown[0]!r}")
        self.masks = {net: ExactMasks(fn, f"masks[{net!r}]", self.nets[net], (masks or {}).get(net))
                      for net in NETS}
        betas = (config.beta1, config.beta2)
        g_params = list(self.nets["G_AB"].parameters()) + list(self.nets["G_BA"].parameters())
        self.opt_g = torch.optim.Adam(g_params, lr=config.lr, betas=betas)
        self.opt_da = torch.optim.Adam(self.nets["D_A"].parameters(), lr=config.lr, betas=betas)
        self.opt_db = torch.optim.Adam(self.nets["D_B"].parameters(), lr=config.lr, betas=betas)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.buf_a = ReplayBuffer(config.buffer_size, self.gen)
        self.buf_b = ReplayBuffer(config.buffer_size, self.gen)
        self.iteration = 0
        self.history: List[Dict[str, Any]] = []
        self._apply_masks()

    def _apply_masks(self) -> None:
        for m in self.masks.values():
            m.apply()

    def _mask_grads(self, nets) -> None:
        for net in nets:
            self.masks[net].mask_grads()

    def _batch(self, x: Tensor) -> Tensor:
        return x[torch.randint(x.shape[0], (self.config.batch_size,), generator=self.gen)]

    def step(self) -> Dict[str, float]:
        c, n = self.config, self.nets
        lr = c.lr_at(self.iteration)
        for opt in (self.opt_g, self.opt_da, self.opt_db):
            for group in opt.param_groups:
                group["lr"] = lr
        for net in n.values():
            net.train()
        a, b = self._batch(self.a), self._batch(self.b)
        for d in ("D_A", "D_B"):
            n[d].requires_grad_(False)
        fake_b, fake_a = n["G_AB"](a), n["G_BA"](b)
        pred_b, pred_a = n["D_B"](fake_b), n["D_A"](fake_a)
        gan = F.mse_loss(pred_b, torch.ones_like(pred_b)) + F.mse_loss(pred_a,
                                                                        torch.ones_like(pred_a))
        cycle = F.l1_loss(n["G_BA"](fake_b), a) + F.l1_loss(n["G_AB"](fake_a), b)
        identity = F.l1_loss(n["G_AB"](b), b) + F.l1_loss(n["G_BA"](a), a)
        g_loss = gan + c.lambda_cycle * cycle + c.lambda_identity * identity
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self._mask_grads(("G_AB", "G_BA"))
        self.opt_g.step()
        for d in ("D_A", "D_B"):
            n[d].requires_grad_(True)
        d_losses = {}
        for d, opt, real, fake, buf in (("D_A", self.opt_da, a, fake_a, self.buf_a),
                                        ("D_B", self.opt_db, b, fake_b, self.buf_b)):
            pr, pf = n[d](real), n[d](buf.push_and_pop(fake))
            loss = 0.5 * (F.mse_loss(pr, torch.ones_like(pr))
                          + F.mse_loss(pf, torch.zeros_like(pf)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            self._mask_grads((d,))
            opt.step()
            d_losses[d] = float(loss.detach())
        self._apply_masks()
        self.iteration += 1
        return {"g_loss": float(g_loss.detach()), "cycle": float(cycle.detach()),
                "d_a": d_losses["D_A"], "d_b": d_losses["D_B"]}

    def train(self, iterations: Optional[int] = None, *,
              evaluate: Optional[Callable[[Mapping[str, nn.Module]], Dict[str, Any]]] = None,
              eval_every: int = 0, progress: bool = False, desc: str = "CycleGAN"
              ) -> List[Dict[str, Any]]:
        """Up to ``iterations`` (default: the config's) iterations in total; ``evaluate(nets in
        eval mode)`` every ``eval_every`` iterations and at the end, into :attr:`history`."""
        from tqdm.auto import tqdm

        total = self.config.iterations if iterations is None else iterations
        bar = tqdm(total=total, initial=min(self.iteration, total), desc=desc,
                   disable=not progress)
        while self.iteration < total:
            losses = self.step()
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            if evaluate is not None and (self.iteration == total or
                                         (eval_every and self.iteration % eval_every == 0)):
                for net in self.nets.values():
                    net.eval()
                try:
                    with torch.no_grad():
                        res = dict(evaluate(self.nets))
                finally:
                    for net in self.nets.values():
                        net.train()
                self.history.append({"iteration": self.iteration, **losses, **res})
        bar.close()
        return self.history
