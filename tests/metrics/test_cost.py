"""MAC, parameter and byte counts: masks read by the buffer convention (``prune.apply``,
``torch.nn.utils.prune``, the own masks of ``Masked*`` layers) or given explicitly, shared
parameters, the state of model and RNG left untouched, and bad masks refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselth import prune
from sparselth.metrics import count_macs, count_params, embedding_bytes, state_bytes, tensor_bytes
from sparselth.nn import MaskedLinear


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 6),
                         nn.ReLU(), nn.Linear(6, 3))


def _random_masks(model: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(p.shape, generator=g) > 0.6
            for name, p in model.named_parameters() if name.endswith("weight")}


def _by_hand(model: nn.Module, masks: dict[str, torch.Tensor], batch: int) -> int:
    """MACs of ``_net`` with ``masks``: conv at 25 positions, the linears once per row."""
    nnz = {k: int(v.sum()) for k, v in masks.items()}
    return batch * (25 * nnz["0.weight"] + nnz["2.weight"] + nnz["4.weight"])


def test_prune_count_macs_is_the_metric():
    assert prune.count_macs is count_macs


@pytest.mark.parametrize("how", ["apply", "torch_prune", "explicit", "explicit_float", "Masks"])
def test_masks_from_every_source(how):
    model, x = _net(), torch.randn(2, 3, 5, 5)
    masks = _random_masks(model)
    given = None
    if how == "apply":
        prune.apply(model, masks)
    elif how == "torch_prune":
        prune.to_torch_prune(model, masks)
    elif how == "explicit":
        given = masks
    elif how == "explicit_float":
        given = {k: v.float() for k, v in masks.items()}
    else:
        given = prune.Masks(masks, model=model)
    info = count_macs(model, x, given)
    assert info["total"]["macs"] == _by_hand(model, masks, 2)
    assert info["total"]["macs_dense"] == 2 * (25 * 108 + 100 * 6 + 6 * 3)
    kept = sum(int(v.sum()) for v in masks.values())
    biases = 4 + 6 + 3
    assert info["model_params"] == kept + biases
    assert info["model_params_dense"] == 108 + 600 + 18 + biases
    assert count_params(model, given) == {"params_dense": info["model_params_dense"],
                                          "params": info["model_params"]}
    w = masks["2.weight"]
    assert info["layers"]["2"]["weight_sparsity"] == pytest.approx(1 - int(w.sum()) / w.numel())


def test_own_masks_of_masked_layers_count():
    layer = MaskedLinear(8, 4)
    keep = torch.rand(4, 8, generator=torch.Generator().manual_seed(0)) > 0.5
    layer.set_mask(keep)
    info = count_macs(layer, torch.randn(3, 8))
    assert info["layers"][""]["macs"] == 3 * int(keep.sum())
    assert info["layers"][""]["macs_dense"] == 3 * 32


def test_unmasked_model_counts_dense_and_leaves_state():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    x = torch.randn(5, 4)
    before = torch.random.get_rng_state()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    info = count_macs(model, x)
    assert torch.equal(torch.random.get_rng_state(), before) and model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert info["total"]["macs"] == info["total"]["macs_dense"] == 5 * 16
    assert info["layers"]["0"]["calls"] == 1


def test_embeddings_count_lookups_and_shared_weights_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.out = nn.Linear(4, 10, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, ids):
            return self.out(self.emb(ids))

    info = count_macs(Tied(), torch.tensor([[1, 2, 3]]))
    assert info["layers"]["emb"]["lookups"] == 3 and info["layers"]["emb"]["macs"] == 0
    assert info["layers"]["out"]["macs"] == 3 * 40
    assert info["model_params_dense"] == 40  # the tied table once
    masks = {"out.weight": torch.ones(10, 4, dtype=torch.bool)}  # the second name of it
    assert count_macs(Tied(), torch.tensor([1]), masks)["total"]["macs"] == 40


def test_bad_masks_are_refused():
    model, x = _net(), torch.randn(1, 3, 5, 5)
    with pytest.raises(TypeError, match="mapping"):
        count_macs(model, x, [torch.ones(3)])
    with pytest.raises(TypeError, match=r"masks\['2.weight'\]: expected a torch.Tensor"):
        count_macs(model, x, {"2.weight": [1, 0]})
    with pytest.raises(ValueError, match="no parameter named 'fc.weight'"):
        count_macs(model, x, {"fc.weight": torch.ones(6, 100, dtype=torch.bool)})
    with pytest.raises(ValueError, match="does not match"):
        count_macs(model, x, {"2.weight": torch.ones(100, 6, dtype=torch.bool)})
    with pytest.raises(ValueError, match="other than 0 and 1"):
        count_params(model, {"2.weight": torch.full((6, 100), 0.5)})


def test_bytes():
    t = torch.zeros(3, 5, dtype=torch.float64)
    assert tensor_bytes(t) == 120 and tensor_bytes(nn.Parameter(t)) == 120
    assert tensor_bytes(t.to_sparse()) == 0
    lin = nn.Linear(4, 3)
    lin.register_buffer("scale", torch.ones(2))
    assert state_bytes(lin) == 4 * (12 + 3 + 2)
    w = torch.randn(50, 8)
    keep = torch.zeros(50, 8, dtype=torch.bool)
    keep[:5] = True
    b = embedding_bytes(w, keep)
    assert b["bytes_dense"] == 50 * 8 * 4 and b["bytes_stored"] < b["bytes_dense"]
    assert embedding_bytes(w, None)["bytes_stored"] >= 50 * 8 * 4
