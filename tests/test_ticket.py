"""Ticket: round trip, apply_to, refusal of damaged files, atomic writes, no pickle."""

import json
import pickle

import pytest
import torch
from torch import nn

import sparselth._io as sio
from sparselth import prune
from sparselth.prune import IMP, IMPConfig
from sparselth.ticket import FORMAT_VERSION, Ticket, load_round


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5)
    )


def make_ticket():
    model = make_model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    masks = prune.magnitude(model, 0.7)
    prune.apply(model, masks)
    meta = {
        "config": IMPConfig(rounds=3, exclude=("@last",)),
        "seed": 7,
        "metrics": {"acc": 0.8125, "loss": torch.tensor(0.25)},
        "macs": {"macs": 123, "dense": 456},
        "note": ("a", 1),
    }
    return model, masks, init, Ticket.from_model(model, masks, init_state=init, **meta)


def _json(path):
    return json.loads((path / "ticket.json").read_text())


def _write_json(path, doc, rehash=True):
    if rehash:
        body = {k: v for k, v in doc.items() if k != "json_sha256"}
        doc["json_sha256"] = sio.sha256_bytes(sio.canonical_json(body).encode())
    (path / "ticket.json").write_text(json.dumps(doc))


def _tensor_file(path):
    (f,) = path.glob("ticket-*.safetensors")
    return f


def test_round_trip(tmp_path):
    model, masks, init, t = make_ticket()
    t.save(tmp_path / "t")
    u = Ticket.load(tmp_path / "t")
    assert u.masks == masks
    assert set(u.trained_state) == set(prune.state_without_masks(model))
    for k, v in prune.state_without_masks(model).items():
        assert u.trained_state[k].dtype == v.dtype and torch.equal(u.trained_state[k], v)
    for k, v in init.items():
        assert torch.equal(u.init_state[k], v)
    assert u.metadata == t.metadata
    md = u.metadata
    assert md["format_version"] == FORMAT_VERSION and md["seed"] == 7
    assert md["config"]["rounds"] == 3 and md["config"]["exclude"] == ["@last"]
    assert md["metrics"] == {"acc": 0.8125, "loss": 0.25} and md["macs"]["macs"] == 123
    assert md["sparsity"]["overall"] == masks.sparsity()["overall"]
    assert set(md["sparsity"]["layers"]) == {"0.weight", "3.weight"}
    assert isinstance(md["library_version"], str)
    assert Ticket.load(tmp_path / "t" / "ticket.json").masks == masks
    assert "Ticket(2 masks" in repr(u)


def test_apply_to_trained_and_init(tmp_path):
    model, masks, init, t = make_ticket()
    t.save(tmp_path)
    u = Ticket.load(tmp_path)
    fresh = make_model(seed=3)
    u.apply_to(fresh, state="trained")
    x = torch.randn(2, 3, 6, 6)
    model.eval()
    fresh.eval()
    assert torch.equal(fresh(x), model(x))
    assert prune.masks_of(fresh) == masks
    u.apply_to(fresh, state="init")
    for k, v in init.items():
        expect = v * masks[k] if k in masks else v
        assert torch.equal(prune.state_without_masks(fresh)[k], expect)
    with pytest.raises(ValueError, match="does not fit"):
        u.apply_to(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="state must be"):
        u.apply_to(fresh, state="best")
    no_init = Ticket.from_model(model)
    with pytest.raises(ValueError, match="no init_state"):
        no_init.apply_to(fresh, state="init")


def test_dtypes_preserved(tmp_path):
    model = nn.Linear(6, 4).to(torch.bfloat16)
    masks = prune.magnitude(model, 0.5)
    prune.apply(model, masks)
    Ticket.from_model(model).save(tmp_path)
    u = Ticket.load(tmp_path)
    assert u.trained_state["weight"].dtype == torch.bfloat16
    assert torch.equal(u.trained_state["weight"], model.weight.detach())


def test_refuses_corrupted_byte(tmp_path):
    make_ticket()[3].save(tmp_path)
    f = _tensor_file(tmp_path)
    data = bytearray(f.read_bytes())
    data[len(data) - 3] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        Ticket.load(tmp_path)


def test_refuses_truncated(tmp_path):
    make_ticket()[3].save(tmp_path)
    f = _tensor_file(tmp_path)
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        Ticket.load(tmp_path)
    (tmp_path / "ticket.json").write_text((tmp_path / "ticket.json").read_text()[:-40])
    with pytest.raises(ValueError, match="not valid JSON"):
        Ticket.load(tmp_path)


def test_refuses_tampered_json(tmp_path):
    make_ticket()[3].save(tmp_path)
    doc = _json(tmp_path)
    doc["metadata"]["metrics"]["acc"] = 0.99
    _write_json(tmp_path, doc, rehash=False)
    with pytest.raises(ValueError, match="edited or corrupted"):
        Ticket.load(tmp_path)
    # consistent checksum but a shape that disagrees with the tensor file
    doc = _json(tmp_path)
    doc["tensors"]["masks/0.weight"]["shape"] = [4, 3, 3, 2]
    _write_json(tmp_path, doc)
    with pytest.raises(ValueError, match="masks/0.weight"):
        Ticket.load(tmp_path)
    # a mask name that the tensor file does not hold
    make_ticket()[3].save(tmp_path)
    doc = _json(tmp_path)
    doc["masks"].append("9.weight")
    doc["tensors"]["masks/9.weight"] = {"dtype": "bool", "shape": [1]}
    _write_json(tmp_path, doc)
    with pytest.raises(ValueError, match="missing"):
        Ticket.load(tmp_path)
    # schema violation
    make_ticket()[3].save(tmp_path)
    doc = _json(tmp_path)
    doc["tensor_file"] = "../../etc/passwd"
    _write_json(tmp_path, doc)
    with pytest.raises(ValueError, match="tensor_file"):
        Ticket.load(tmp_path)
    doc["format"] = "something.else"
    _write_json(tmp_path, doc)
    with pytest.raises(ValueError, match="format"):
        Ticket.load(tmp_path)


def test_refuses_newer_format(tmp_path):
    make_ticket()[3].save(tmp_path)
    doc = _json(tmp_path)
    doc["format_version"] = FORMAT_VERSION + 1
    _write_json(tmp_path, doc, rehash=False)
    with pytest.raises(ValueError, match="newer than this sparselth supports"):
        Ticket.load(tmp_path)


def test_refuses_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        Ticket.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="ticket.json"):
        Ticket.load(tmp_path)
    make_ticket()[3].save(tmp_path)
    _tensor_file(tmp_path).unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Ticket.load(tmp_path)


def test_no_pickle(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("pickle used")

    for mod, names in ((torch, ("save", "load")), (pickle, ("dump", "dumps", "load", "loads"))):
        for name in names:
            monkeypatch.setattr(mod, name, boom)
    _, masks, _, t = make_ticket()
    t.save(tmp_path)
    u = Ticket.load(tmp_path)
    assert u.masks == masks
    raw = _tensor_file(tmp_path).read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and json.loads(raw[8 : 8 + header_len])  # safetensors header
    assert not raw.startswith(b"PK") and b"\x80\x02" not in raw[:16]


def test_save_is_atomic_and_replaces(tmp_path, monkeypatch):
    model, masks, _, t = make_ticket()
    t.save(tmp_path)
    prune.apply(model, prune.magnitude(model, 0.9))
    t2 = Ticket.from_model(model, seed=1)

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(sio, "atomic_write_json", crash)
    with pytest.raises(OSError):
        t2.save(tmp_path)
    monkeypatch.undo()
    assert Ticket.load(tmp_path).masks == masks  # the old ticket is intact
    t2.save(tmp_path)
    assert Ticket.load(tmp_path).metadata["seed"] == 1
    assert len(list(tmp_path.glob("ticket-*.safetensors"))) == 1
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError, match="not a directory"):
        t2.save(tmp_path / "ticket.json")


def test_metadata_must_be_json():
    model = make_model()
    with pytest.raises(TypeError, match="JSON"):
        Ticket.from_model(model, prune.magnitude(model, 0.5), extra=object())
    with pytest.raises(ValueError, match="shape"):
        Ticket({"w": torch.ones(2, dtype=torch.bool)}, {"w": torch.ones(3)})


def test_from_run(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def train(m, r):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        x = torch.randn(16, 4)
        for _ in range(2):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()

    imp = IMP(
        model, train, lambda m: {"score": 1.0}, IMPConfig(rounds=2), root=tmp_path, progress=False
    )
    imp.run()
    t = Ticket.from_run(imp.run_dir, note="x")
    assert t.metadata["round"] == 2 and t.metadata["metrics"] == {"score": 1.0}
    assert t.metadata["kind"] == "imp" and t.metadata["metric"] == "score"
    assert t.metadata["note"] == "x" and t.metadata["graph_sparsity"] is None
    assert t.masks == prune.masks_of(model)
    t.save(tmp_path / "ticket")
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    Ticket.load(tmp_path / "ticket").apply_to(fresh)
    assert torch.equal(fresh[0].weight, model[0].weight)
    first = load_round(imp.run_dir, 0)
    assert first.metadata["round"] == 0 and first.sparsity()["overall"] == 0.0
    with pytest.warns(DeprecationWarning, match="from_run"):
        old = Ticket.from_imp(imp.run_dir, round=1)
    assert old.masks == Ticket.from_run(imp.run_dir, 1).masks
