"""Pruning and tickets of row-sharded tables: global magnitude pruning over 2 gloo ranks gives
exactly ``sparselth.prune.magnitude``'s mask of the whole tables (ties included); a ticket
written by 2 ranks reloads on 1 and on 2 ranks (and the reverse), and damaged files are
refused."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
from torch import nn

import sparselth.prune as prune
from sparselth.nn import ShardedMaskedEmbedding, row_partition
from sparselth.prune import ShardedTicket, save_sharded_ticket, sharded_magnitude
from tests._process_group import ProcessGroupPool

SHAPES = ((13, 4), (5, 3))    # two tables; 13 rows split 7 + 6


@pytest.fixture(scope="module")
def pool():
    p = ProcessGroupPool(2)
    yield p
    p.close()


def _tables(seed: int, kind: str, dtype=torch.float64):
    """Whole tables and masks: ``kind`` "ties" draws small integers (many equal |w|, zeros,
    -0.0), "fine" full-precision values that differ only in low bits."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for rows, dim in SHAPES:
        if kind == "ties":
            w = torch.randint(-2, 3, (rows, dim), generator=g).to(dtype)
            w[w == 0] = torch.where(torch.rand(int((w == 0).sum()), generator=g) < 0.5,
                                    -0.0, 0.0).to(dtype)
        else:
            w = (1.0 + torch.randint(0, 4, (rows, dim), generator=g) * 2.0 ** -40).to(dtype)
            w = w * torch.randn(rows, dim, generator=g).sign().to(dtype)
        m = torch.rand(rows, dim, generator=g) > 0.25
        out.append((w, m))
    return out


def _reference(tables, sparsity, fraction, n_tables):
    model = nn.Module()
    masks = {}
    for i, (w, m) in enumerate(tables[:n_tables]):
        emb = nn.Embedding(*w.shape, dtype=w.dtype)
        with torch.no_grad():
            emb.weight.copy_(w)
        setattr(model, f"t{i}", emb)
        masks[f"t{i}.weight"] = m
    got = prune.magnitude(model, sparsity, masks=masks, fraction=fraction)
    return [got[f"t{i}.weight"] for i in range(n_tables)]


def _sharded_masks(seed, kind, sparsity, fraction, n_tables, dtype=torch.float64):
    tables = _tables(seed, kind, dtype)[:n_tables]
    embs = [ShardedMaskedEmbedding.from_dense(w, m) for w, m in tables]
    got = sharded_magnitude(embs if n_tables > 1 else embs[0], sparsity, fraction=fraction)
    return got if n_tables > 1 else [got]


def case_magnitude(seed, kind, sparsity, fraction, n_tables):
    return _sharded_masks(seed, kind, sparsity, fraction, n_tables), dist.get_rank()


@pytest.mark.parametrize("kind", ["ties", "fine"])
@pytest.mark.parametrize("sparsity,fraction", [(0.5, None), (0.9, None), (0.3, None),
                                               (None, 0.2), (1.0, None)])
@pytest.mark.parametrize("n_tables", [1, 2])
def test_two_shards_prune_like_unsharded_magnitude(pool, kind, sparsity, fraction, n_tables):
    results = pool.run(case_magnitude, 0, kind, sparsity, fraction, n_tables)
    ref = _reference(_tables(0, kind), sparsity, fraction, n_tables)
    for i, want in enumerate(ref):
        got = torch.cat([r[0][i] for r in results])
        assert got.dtype == torch.bool and torch.equal(got, want), f"table {i}"


@pytest.mark.parametrize("seed", range(6))
def test_one_rank_prunes_like_magnitude_including_nan_and_inf(seed):
    for kind, dtype in (("ties", torch.float32), ("fine", torch.float64)):
        tables = _tables(seed, kind, dtype)
        if seed % 2:
            tables[0][0][0, :2] = torch.tensor([float("nan"), -float("inf")], dtype=dtype)
            tables[1][0][1, 1] = float("nan")
        for sparsity in (0.0, 0.4, 0.77, 0.95):
            embs = [ShardedMaskedEmbedding.from_dense(w, m) for w, m in tables]
            got = sharded_magnitude(embs, sparsity)
            want = _reference(tables, sparsity, None, 2)
            assert all(torch.equal(a, b) for a, b in zip(got, want)), (kind, sparsity)


def test_sharded_magnitude_bad_arguments_name_themselves():
    w, m = _tables(0, "ties")[0]
    emb = ShardedMaskedEmbedding.from_dense(w, m)
    with pytest.raises(TypeError, match="tables"):
        sharded_magnitude(nn.Embedding(3, 2), 0.5)
    with pytest.raises(TypeError, match="tables"):
        sharded_magnitude([], 0.5)
    with pytest.raises(ValueError, match="sparsity"):
        sharded_magnitude(emb, 1.5)
    with pytest.raises(ValueError, match="fraction"):
        sharded_magnitude(emb, fraction=-0.1)
    with pytest.raises(ValueError, match="exactly one of sparsity or fraction"):
        sharded_magnitude(emb, 0.5, fraction=0.5)
    with pytest.raises(ValueError, match="masks"):
        sharded_magnitude(emb, 0.5, masks=[torch.ones(2, 2, dtype=torch.bool)])


# --------------------------------------------------------------------------- tickets


def _ticket_table(seed=1, rows=9, dim=3):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, dim, generator=g)
    return w, torch.rand(rows, dim, generator=g) > 0.4, torch.randn(rows, dim, generator=g)


def case_save(path):
    w, m, init = _ticket_table()
    emb = ShardedMaskedEmbedding.from_dense(w, m)
    s, e = emb.rows
    save_sharded_ticket(emb, path, metadata={"round": 3})
    # saved again: the first save's files go, the new ones are listed
    manifest = save_sharded_ticket(emb, path, init_weight=init[s:e], metadata={"round": 4})
    return str(manifest), emb.rows


def case_load(path):
    t = ShardedTicket.load(path)
    emb = t.to_module()
    ids = torch.tensor([8, 0, 4, 4]) if dist.get_rank() == 0 else torch.tensor([[1], [7]])
    return t.rows, t.mask, t.trained, emb(ids).detach(), ids, t.world_size


def test_ticket_of_two_ranks_reloads_on_one_and_two(pool, tmp_path):
    path = tmp_path / "ticket"
    results = pool.run(case_save, str(path))
    assert [r[1] for r in results] == row_partition(9, 2)
    files = sorted(p.name for p in path.iterdir())
    doc = json.loads((path / "manifest.json").read_text())
    assert files == sorted(["manifest.json"] + [s["file"] for s in doc["shards"]])
    assert [s["rows"] for s in doc["shards"]] == [[0, 5], [5, 9]]
    assert doc["metadata"]["round"] == 4 and doc["init"] is True

    w, m, init = _ticket_table()
    whole = ShardedTicket.load(path)                     # one process: the whole table
    assert whole.rows == (0, 9) and whole.world_size == 2
    assert torch.equal(whole.trained, w) and torch.equal(whole.mask, m)
    assert torch.equal(whole.init, init)
    assert whole.metadata["sparsity"]["zeros"] == int((~m).sum())
    emb = whole.to_module()
    assert torch.equal(emb.weight, w * m) and emb.world_size == 1
    assert torch.equal(whole.to_module(state="init").weight, init * m)
    for rows in [(3, 7), (0, 0), (6, 9)]:                # any other world size's rows
        part = ShardedTicket.load(path, rows=rows)
        assert torch.equal(part.trained, w[rows[0]:rows[1]])
        assert torch.equal(part.mask, m[rows[0]:rows[1]])

    for rank, (rows, mask, trained, out, ids, world) in enumerate(pool.run(case_load,
                                                                             str(path))):
        assert rows == row_partition(9, 2)[rank] and world == 2
        assert torch.equal(trained, w[rows[0]:rows[1]]) and torch.equal(mask, m[rows[0]:rows[1]])
        assert torch.equal(out, (w * m)[ids])


def test_ticket_of_one_rank_reloads_on_two(pool, tmp_path):
    w, m, _ = _ticket_table()
    save_sharded_ticket(ShardedMaskedEmbedding.from_dense(w, m), tmp_path / "one")
    for rank, (rows, mask, trained, out, ids, world) in enumerate(
            pool.run(case_load, str(tmp_path / "one"))):
        assert rows == row_partition(9, 2)[rank] and world == 1
        assert torch.equal(out, (w * m)[ids])


def case_bad_init_on_rank_1(path):
    w, m, init = _ticket_table()
    emb = ShardedMaskedEmbedding.from_dense(w, m)
    s, e = emb.rows
    bad = init[s:e] if dist.get_rank() == 0 else init[:2]
    with pytest.raises((ValueError, RuntimeError)) as err:
        save_sharded_ticket(emb, path, init_weight=bad)
    return type(err.value).__name__, str(err.value)


def test_a_bad_argument_on_one_rank_stops_every_rank(pool, tmp_path):
    (kind0, msg0), (kind1, msg1) = pool.run(case_bad_init_on_rank_1, str(tmp_path / "b"))
    assert kind0 == "RuntimeError" and "rank(s) [1]" in msg0
    assert kind1 == "ValueError" and "init_weight" in msg1
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_corrupted_or_edited_files_are_refused(pool, tmp_path):
    path = tmp_path / "t"
    pool.run(case_save, str(path))
    w, m, _ = _ticket_table()
    assert torch.equal(ShardedTicket.load(path).trained, w)
    doc = json.loads((path / "manifest.json").read_text())
    second = path / doc["shards"][1]["file"]
    data = bytearray(second.read_bytes())
    data[-3] ^= 0xFF
    second.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        ShardedTicket.load(path)
    with pytest.raises(ValueError, match="checksum"):
        ShardedTicket.load(path, rows=(4, 6))
    assert torch.equal(ShardedTicket.load(path, rows=(0, 5)).trained, w[:5])  # not read
    second.write_bytes(bytes(data[:-10]))
    with pytest.raises(ValueError, match="bytes"):
        ShardedTicket.load(path)
    second.unlink()
    with pytest.raises(FileNotFoundError):
        ShardedTicket.load(path)
    doc["shards"][0]["rows"] = [0, 4]
    (path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="json_sha256"):
        ShardedTicket.load(path)
    with pytest.raises(FileNotFoundError):
        ShardedTicket.load(tmp_path / "nothing")


def test_ticket_bad_arguments_name_themselves(tmp_path):
    w, m, init = _ticket_table()
    emb = ShardedMaskedEmbedding.from_dense(w, m)
    with pytest.raises(TypeError, match="table"):
        save_sharded_ticket(nn.Embedding(3, 2), tmp_path / "x")
    with pytest.raises(TypeError, match="path"):
        save_sharded_ticket(emb, 3)
    with pytest.raises(ValueError, match="init_weight"):
        save_sharded_ticket(emb, tmp_path / "x", init_weight=init[:4])
    with pytest.raises(TypeError, match="metadata"):
        save_sharded_ticket(emb, tmp_path / "x", metadata={"a": object()})
    save_sharded_ticket(emb, tmp_path / "x")
    with pytest.raises(ValueError, match="rows"):
        ShardedTicket.load(tmp_path / "x", rows=(5, 10))
    with pytest.raises(TypeError, match="path"):
        ShardedTicket.load(None)
    t = ShardedTicket.load(tmp_path / "x", rows=(0, 4))
    with pytest.raises(ValueError, match="rows"):
        t.apply_to(emb)
    with pytest.raises(ValueError, match="state"):
        ShardedTicket.load(tmp_path / "x").apply_to(emb, state="best")
    with pytest.raises(ValueError, match="init"):
        ShardedTicket.load(tmp_path / "x").apply_to(emb, state="init")
    with pytest.raises(TypeError, match="table"):
        t.apply_to(nn.Embedding(4, 3))
