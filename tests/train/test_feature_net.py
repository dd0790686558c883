"""The proxy FID/IS feature network: it learns a separable task, its file round-trips with the
hash of its weights, a modified file is refused, and its FID tells real halves from noise."""

from __future__ import annotations

import pytest
import torch

from sparselth.data import synthetic_images
from sparselth.metrics import feature_stats, fid_score, inception_score
from sparselth.models import ImageFeatureNet
from sparselth.train import load_feature_net, save_feature_net, train_feature_net


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = synthetic_images(600, num_classes=4, image_size=12, noise=0.3, seed=0)
    xt, yt = synthetic_images(200, num_classes=4, image_size=12, noise=0.3, seed=0,
                              sample_seed=1)
    lo, hi = x.min(), x.max()
    x, xt = (x - lo) / (hi - lo), ((xt - lo) / (hi - lo)).clamp(0, 1)
    net, info = train_feature_net(x, y, xt, yt, name="templates", epochs=6, batch_size=32,
                                  lr=3e-3, width=8, feature_dim=16, seed=0)
    torch.set_num_threads(threads)
    return net, info, xt


def test_learns_and_reports(trained):
    net, info, _ = trained
    assert info["test_acc"] > 0.9 and info["config"]["feature_dim"] == 16
    assert not net.training


def test_file_round_trip_and_tamper(tmp_path, trained):
    net, info, xt = trained
    digest = save_feature_net(tmp_path / "f.safetensors", net, info)
    back = load_feature_net(tmp_path / "f.safetensors")
    assert torch.equal(back(xt[:5]), net(xt[:5])) and back.info["test_acc"] == info["test_acc"]
    assert feature_stats(back, xt).network_hash == digest
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(tmp_path / "f.safetensors"), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(tmp_path / "f.safetensors")
    tensors["fc.bias"] = tensors["fc.bias"] + 1
    save_file(tensors, tmp_path / "g.safetensors", metadata=meta)
    with pytest.raises(ValueError, match="recorded hash"):
        load_feature_net(tmp_path / "g.safetensors")
    save_file(tensors, tmp_path / "h.safetensors")
    with pytest.raises(ValueError, match="not an ImageFeatureNet"):
        load_feature_net(tmp_path / "h.safetensors")
    with pytest.raises(TypeError, match="net"):
        save_feature_net(tmp_path / "x", torch.nn.Linear(2, 2))


def test_proxy_fid_separates_real_from_noise(trained):
    net, _, xt = trained
    a = feature_stats(net, xt[:100], split="test-a")
    b = feature_stats(net, xt[100:], split="test-b")
    noise = feature_stats(net, torch.rand_like(xt[:100]), split="noise")
    halves, far = fid_score(a, b)["fid"], fid_score(a, noise)["fid"]
    assert halves < 0.2 * far
    probs = net.class_probs(xt)
    assert inception_score(probs.double(), splits=2)["is"] > 2.5     # 4 balanced classes


def test_refuses_bad_training_input():
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="labels"):
        train_feature_net(x, torch.zeros(3, dtype=torch.long), x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="epochs"):
        train_feature_net(x, torch.zeros(4, dtype=torch.long), x,
                          torch.zeros(4, dtype=torch.long), epochs=0)
    with pytest.raises(ValueError, match="x must be"):
        ImageFeatureNet(channels=3)(x)
