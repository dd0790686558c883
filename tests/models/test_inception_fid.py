"""The FID Inception network: the published network's size and parameter names, its inputs,
and the checks on its weights file."""

from __future__ import annotations

import pytest
import torch

from sparselth._io import sha256_file
from sparselth.models import FIDInceptionV3, fid_inception
from sparselth.models.inception_fid import FID_WEIGHTS_ENV


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return FIDInceptionV3(resize=False).eval()   # small inputs keep the test fast


def test_size_and_names_of_the_published_network(net):
    # torchvision's inception_v3 (27,161,264 parameters with its auxiliary classifier and 1000
    # classes) without the auxiliary head and with the FID file's 1008 classes
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    sd = net.state_dict()
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert sd["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert sd["fc.weight"].shape == (1008, 2048)
    assert net.Mixed_5b.branch1x1.bn.eps == 1e-3


def test_features_and_probabilities(net):
    x = torch.rand(2, 1, 80, 80)
    f = net(x)
    assert f.shape == (2, 2048) and bool((f >= 0).all())
    assert torch.allclose(net(x.expand(-1, 3, -1, -1)), f)      # grey = three equal channels
    p = net.class_probs(x)
    assert p.shape == (2, 1008) and torch.allclose(p.sum(1), torch.ones(2, dtype=p.dtype))
    with pytest.raises(ValueError, match="images"):
        net(torch.rand(2, 2, 8, 8))


def test_weights_file_checks(tmp_path, net, monkeypatch):
    monkeypatch.delenv(FID_WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=FID_WEIGHTS_ENV):
        fid_inception()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fid_inception(tmp_path / "none.pth")
    path = tmp_path / "w.pth"
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    assert not sha256_file(path).startswith("6726825d")
    with pytest.raises(ValueError, match="sha256"):
        fid_inception(path)
    monkeypatch.setenv(FID_WEIGHTS_ENV, str(path))
    loaded = fid_inception(check_hash=False)
    assert loaded.resize and not loaded.training
    loaded.resize = False
    x = torch.rand(1, 3, 80, 80)
    assert torch.equal(loaded(x), net(x))
    torch.save({"fc.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="does not fit"):
        fid_inception(path, check_hash=False)
    path.write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read"):
        fid_inception(path, check_hash=False)
