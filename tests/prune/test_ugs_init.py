"""UGS from pre-trained weights (``UGSConfig.init``): the checkpoint's first-layer weight is
θ0 of the first layer in every round, shapes are checked, the run is told apart from the
random-init one, and run folders written before the option resume."""

from __future__ import annotations

import json

import pytest
import torch

from sparselth._io import save_safetensors
from sparselth.models import FIRST_LAYER_KEY, GCN
from sparselth.prune.run import ticket_parts
from sparselth.prune.ugs import UGS, UGSConfig, load_pretrained_first_layer
from sparselth.train import NodeClassificationTask


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny graphs: threads only contend


def _gcn(data, adj):
    return lambda: GCN(adj, data.num_features, data.num_classes, hidden=16)


def _cfg(**kw):
    base = dict(rounds=2, mask_epochs=3, fix_epochs=3, seed=1, lr=0.01)
    base.update(kw)
    return UGSConfig(**base)


def _checkpoint(path, shape=(16, 12), key=FIRST_LAYER_KEY, value=0.125, meta=True):
    w = torch.full(shape, value)
    md = {"kind": "graphcl-node", "first_layer_key": json.dumps(key)} if meta else None
    save_safetensors(path, {key: w, "encoder.conv.bias": torch.zeros(shape[0])}, md)
    return w


def test_every_round_rewinds_to_the_pretrained_weight(data, adj, tmp_path):
    w = _checkpoint(tmp_path / "enc.safetensors")
    task = NodeClassificationTask(data)
    pre = UGS(_gcn(data, adj), task, _cfg(init=str(tmp_path / "enc.safetensors")),
              run_dir=tmp_path / "pre", progress=False)
    recs = pre.run()
    rnd = UGS(_gcn(data, adj), task, _cfg(), run_dir=tmp_path / "rnd", progress=False)
    rnd_recs = rnd.run()
    p, r = ticket_parts(tmp_path / "pre"), ticket_parts(tmp_path / "rnd")
    torch.testing.assert_close(p["init_state"]["conv1.lin.weight"], w, rtol=0, atol=0)
    # same seed: every other part of θ0 is the random-init run's
    torch.testing.assert_close(p["init_state"]["conv2.lin.weight"],
                               r["init_state"]["conv2.lin.weight"], rtol=0, atol=0)
    assert [x["init"] for x in recs] == ["pretrained"] * 3
    assert [x["init"] for x in rnd_recs] == ["random"] * 3
    assert recs[0]["init_sha256"] and rnd_recs[0]["init_sha256"] is None
    assert _cfg(init="x").run_name() != _cfg().run_name()


def test_shape_and_key_checks(data, adj, tmp_path):
    model = _gcn(data, adj)()
    _checkpoint(tmp_path / "wide.safetensors", shape=(32, 12))
    with pytest.raises(ValueError, match=r"shape \(32, 12\).*conv1\.lin\.weight.*\(16, 12\)"):
        load_pretrained_first_layer(model, tmp_path / "wide.safetensors", "conv1.lin.weight")
    save_safetensors(tmp_path / "none.safetensors", {"other": torch.ones(3)})
    with pytest.raises(ValueError, match="no first-layer weight"):
        load_pretrained_first_layer(model, tmp_path / "none.safetensors", "conv1.lin.weight")
    # without metadata the reference's key is found too
    w = _checkpoint(tmp_path / "ref.safetensors", key="gcn.fc.weight", meta=False, value=0.5)
    load_pretrained_first_layer(model, tmp_path / "ref.safetensors", "conv1.lin.weight")
    torch.testing.assert_close(model.conv1.lin.weight.detach(), w, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no checkpoint file"):
        UGS(_gcn(data, adj), NodeClassificationTask(data),
            _cfg(init=str(tmp_path / "missing.safetensors")), run_dir=tmp_path / "m",
            progress=False).run()
    with pytest.raises(ValueError, match="init must be a str"):
        UGSConfig(init=None)


def test_resume_checks_the_checkpoint_and_old_folders_resume(data, adj, tmp_path):
    ck = tmp_path / "enc.safetensors"
    _checkpoint(ck)
    task = NodeClassificationTask(data)
    UGS(_gcn(data, adj), task, _cfg(rounds=1, init=str(ck)), run_dir=tmp_path / "pre",
        progress=False).run()
    _checkpoint(ck, value=0.25)          # the file changed under the run
    with pytest.raises(ValueError, match="init_sha256"):
        UGS(_gcn(data, adj), task, _cfg(init=str(ck)), run_dir=tmp_path / "pre",
            progress=False).run()
    # a folder written before the option existed (no 'init' in its config) resumes
    UGS(_gcn(data, adj), task, _cfg(rounds=1), run_dir=tmp_path / "old", progress=False).run()
    cfg_path = tmp_path / "old" / "config.json"
    doc = json.loads(cfg_path.read_text())
    del doc["config"]["init"]
    cfg_path.write_text(json.dumps(doc))
    recs = UGS(_gcn(data, adj), task, _cfg(rounds=2), run_dir=tmp_path / "old",
               progress=False).run()
    assert len(recs) == 3
