"""Small models and tickets shared by the deploy tests."""

from __future__ import annotations

import copy

import torch
from torch import nn

import sparselth
from sparselth import Ticket

# tiny timing budgets: the tests check routes and reports, never timings
FAST = {"budget_s": 0.005, "e2e_budget_s": 0.01}
PRUNABLE = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(37, 64)
        self.fc2 = nn.Linear(64, 48)
        self.fc3 = nn.Linear(48, 48, bias=False)
        self.fc4 = nn.Linear(48, 10)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        x = torch.tanh(self.fc3(x))
        return self.fc4(x)


class ConvNet(nn.Module):
    """Convs with stride, padding, dilation, groups, a non-square kernel, no bias; conv
    transposes with stride, output_padding, groups, dilation."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, 3, padding=1)
        self.c2 = nn.Conv2d(12, 16, (3, 2), stride=2, padding=(1, 0), bias=False)
        self.c3 = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=4)
        self.t1 = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
        self.t2 = nn.ConvTranspose2d(8, 4, 3, padding=2, dilation=2, groups=2)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        x = torch.relu(self.t1(x))
        x = self.t2(x)
        return self.fc(x.mean((2, 3)))


def make_masks(model, sparsities, seed=0, channel_layers=()):
    """Element masks with the given per-layer sparsity (default 0.5; 1.0: all pruned); layers
    named in ``channel_layers`` also lose whole channels of the weight's dims 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, PRUNABLE):
            continue
        s = sparsities.get(name, 0.5)
        m = torch.rand(mod.weight.shape, generator=g) >= s
        if s >= 1.0:
            m[:] = False
        if name in channel_layers:
            m[::2] = False
            m[:, ::3] = False
        out[f"{name}.weight"] = m
    return out


def make_ticket(model, masks, seed=1):
    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    sparselth.prune.apply(m, masks)
    return Ticket.from_model(m, sparselth.prune.masks_of(m))


def masked_output(model, ticket, *inputs):
    """The masked dense model's output: what a compiled model must reproduce."""
    ref = copy.deepcopy(model)
    ticket.apply_to(ref)
    ref.eval()
    with torch.no_grad():
        return ref(*inputs)


def assert_matches_ticket(compiled, model, ticket, *inputs):
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), masked_output(model, ticket, *inputs),
                                   rtol=1e-4, atol=1e-5)
