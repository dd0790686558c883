"""ShardedEmbedding / ShardedMaskedEmbedding: lookups and gradients over 2 gloo ranks equal the
unsharded MaskedEmbedding's exactly (integer-valued loss weights keep every gradient sum exact);
world size 1 is the unsharded module; bad arguments name themselves."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from sparselth.nn import (CompressedEmbedding, MaskedEmbedding, ShardedEmbedding,
                          ShardedMaskedEmbedding, row_owner, row_partition, sharded_state_names)
from tests._process_group import ProcessGroupPool

ROWS, DIM = 11, 3     # 11 rows over 2 ranks: [0, 6) and [6, 11)


@pytest.fixture(scope="module")
def pool():
    p = ProcessGroupPool(2)
    yield p
    p.close()


def _table(seed: int, rows: int = ROWS, dim: int = DIM):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, dim, generator=g, dtype=torch.float64)
    mask = torch.rand(rows, dim, generator=g) > 0.3
    return weight, mask


def _batches(case: str, dtype: torch.dtype, seed: int):
    """The ids of rank 0 and rank 1 and their integer loss weights."""
    g = torch.Generator().manual_seed(seed)
    if case == "mixed":
        ids = [torch.randint(0, ROWS, (7,), generator=g),
               torch.randint(0, ROWS, (2, 5), generator=g)]
    elif case == "repeated":
        ids = [torch.full((6,), 7), torch.tensor([7, 0, 7, 0, 10, 10])]
    elif case == "one_shard":
        ids = [torch.tensor([1, 5, 0, 5]), torch.tensor([[2, 2], [3, 4]])]
    elif case == "empty_rank1":
        ids = [torch.randint(0, ROWS, (9,), generator=g), torch.empty(0, dtype=torch.int64)]
    elif case == "empty_both":
        ids = [torch.empty(0, dtype=torch.int64), torch.empty(0, 4, dtype=torch.int64)]
    else:
        raise AssertionError(case)
    ids = [i.to(dtype) for i in ids]
    coef = [torch.randint(-3, 4, tuple(i.shape) + (DIM,), generator=g).double() for i in ids]
    return ids, coef


def case_lookup_and_grad(case: str, dtype: torch.dtype, sparse_grad: bool, padding_idx):
    """On each rank: (sharded rows, unsharded rows, this rank's gradient rows, the unsharded
    gradient of the sum of both ranks' losses)."""
    rank = dist.get_rank()
    weight, mask = _table(0)
    ids, coef = _batches(case, dtype, 1)
    emb = ShardedMaskedEmbedding.from_dense(weight, mask, sparse_grad=sparse_grad,
                                            padding_idx=padding_idx)
    out = emb(ids[rank])
    (out * coef[rank]).sum().backward()
    grad = emb.weight.grad
    grad = grad.to_dense() if grad.is_sparse else grad

    ref = MaskedEmbedding.from_dense(nn.Embedding(ROWS, DIM, padding_idx=padding_idx,
                                                  dtype=torch.float64), mask)
    with torch.no_grad():
        ref.weight.copy_(weight)
    loss = sum((ref(i) * c).sum() for i, c in zip(ids, coef))
    ref_out = ref(ids[rank]).detach()
    loss.backward()
    return out.detach(), ref_out, grad, ref.weight.grad, emb.rows


@pytest.mark.parametrize("case", ["mixed", "repeated", "one_shard", "empty_rank1",
                                  "empty_both"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_two_shards_equal_unsharded(pool, case, dtype):
    results = pool.run(case_lookup_and_grad, case, dtype, False, None)
    for rank, (out, ref_out, _, _, _) in enumerate(results):
        assert out.shape == ref_out.shape, rank
        assert torch.equal(out, ref_out), f"rank {rank}: rows differ"
    full_grad = torch.cat([r[2] for r in results])     # reassembled from the shards
    assert [r[4] for r in results] == row_partition(ROWS, 2)
    assert torch.equal(full_grad, results[0][3])


@pytest.mark.parametrize("padding_idx", [None, 7, -2])
def test_two_shards_sparse_grad_and_padding(pool, padding_idx):
    results = pool.run(case_lookup_and_grad, "repeated", torch.int64, True, padding_idx)
    for out, ref_out, *_ in results:
        assert torch.equal(out, ref_out)
    assert torch.equal(torch.cat([r[2] for r in results]), results[0][3])
    if padding_idx is not None:
        assert results[0][3][padding_idx % ROWS].abs().sum() == 0


def case_compressed():
    rank = dist.get_rank()
    weight, mask = _table(2, rows=9, dim=5)
    emb = ShardedMaskedEmbedding.from_dense(weight, mask).to_compressed()
    ids = torch.tensor([[8, 0, 4], [4, 5, 8]]) if rank == 0 else torch.tensor([1, 1, 7])
    return emb(ids), (weight * mask)[ids], type(emb.shard).__name__


def test_two_compressed_shards_equal_masked_table(pool):
    for out, ref, kind in pool.run(case_compressed):
        assert kind == "CompressedEmbedding"
        assert torch.equal(out, ref)


def case_out_of_range():
    rank = dist.get_rank()
    emb = ShardedMaskedEmbedding(ROWS, DIM)
    ids = torch.tensor([0, ROWS]) if rank == 1 else torch.tensor([1, 2])
    with pytest.raises(ValueError, match="ids must be in") as e:
        emb(ids)
    ok = emb(torch.tensor([3, 9])).shape    # the group is still usable afterwards
    return str(e.value), tuple(ok)


def test_out_of_range_id_on_one_rank_raises_on_every_rank(pool):
    (msg0, shape0), (msg1, shape1) = pool.run(case_out_of_range)
    assert "rank(s) [1]" in msg0 and f"[0, {ROWS}]" in msg1
    assert shape0 == shape1 == (2, DIM)


def case_shapes():
    emb = ShardedMaskedEmbedding(10, 4)
    return emb.rows, tuple(emb.weight.shape), emb.world_size, emb.table_sparsity()


def test_shard_shapes_follow_row_partition(pool):
    assert [r[:3] for r in pool.run(case_shapes)] == [((0, 5), (5, 4), 2), ((5, 10), (5, 4), 2)]


def case_ddp():
    """A model with a sharded table and a dense layer under DDP, the shard on DDP's ignore
    list: (dense gradient, the mean of the unsharded per-rank gradients, shard gradient, the
    unsharded gradient of the sum of the ranks' losses)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank = dist.get_rank()
    weight, mask = _table(5)
    ids, _ = _batches("mixed", torch.int64, 6)
    torch.manual_seed(0)
    fc = nn.Linear(DIM, 1, dtype=torch.float64)
    model = nn.Sequential(ShardedMaskedEmbedding.from_dense(weight, mask), fc)
    names = sharded_state_names(model)
    DDP._set_params_and_buffers_to_ignore_for_model(model, names)
    ddp = DDP(model)
    ddp(ids[rank]).sum().backward()

    ref = nn.Sequential(MaskedEmbedding.from_dense(nn.Embedding(ROWS, DIM, dtype=torch.float64),
                                                   mask), nn.Linear(DIM, 1, dtype=torch.float64))
    with torch.no_grad():
        ref[0].weight.copy_(weight)
        ref[1].load_state_dict(fc.state_dict())
    fc_grads = []
    for i in ids:
        ref[1].zero_grad()
        ref(i).sum().backward()
        fc_grads.append(ref[1].weight.grad.clone())
    return (names, fc.weight.grad, sum(fc_grads) / 2, model[0].weight.grad,
            ref[0].weight.grad[slice(*model[0].rows)])


def test_sharded_table_inside_ddp(pool):
    for names, fc_grad, fc_ref, grad, ref in pool.run(case_ddp):
        assert names == ["0.shard.weight", "0.shard.weight_mask"]
        torch.testing.assert_close(fc_grad, fc_ref)          # all-reduced by DDP
        torch.testing.assert_close(grad, ref)                # routed by the table, not DDP


# --------------------------------------------------------------------------- one process


def test_row_partition_uneven_and_more_ranks_than_rows():
    assert row_partition(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert row_partition(2, 3) == [(0, 1), (1, 2), (2, 2)]
    assert row_partition(0, 2) == [(0, 0), (0, 0)]
    for rows, world in [(1, 1), (7, 3), (100, 7), (5, 8)]:
        parts = row_partition(rows, world)
        sizes = [e - s for s, e in parts]
        assert parts[0][0] == 0 and parts[-1][1] == rows and max(sizes) - min(sizes) <= 1
        assert all(parts[k][1] == parts[k + 1][0] for k in range(world - 1))
        ids = torch.arange(rows)
        owner = row_owner(ids, parts)
        assert all(parts[o][0] <= i < parts[o][1] for i, o in zip(ids.tolist(), owner.tolist()))


@pytest.mark.parametrize("sparse_grad", [False, True])
def test_world_size_one_is_the_unsharded_module(sparse_grad):
    torch.manual_seed(3)
    ref = MaskedEmbedding(ROWS, DIM, sparse_grad=sparse_grad, padding_idx=2)
    torch.manual_seed(3)
    emb = ShardedMaskedEmbedding(ROWS, DIM, sparse_grad=sparse_grad, padding_idx=2)
    assert torch.equal(emb.weight, ref.weight) and emb.rows == (0, ROWS)
    mask = _table(0)[1]
    ref.set_mask(mask)
    emb.set_mask(mask)
    ids = torch.tensor([[2, 5, 5], [10, 0, 2]], dtype=torch.int32)
    out, ref_out = emb(ids), ref(ids)
    assert torch.equal(out, ref_out)
    out.sum().backward()
    ref_out.sum().backward()
    g, rg = emb.weight.grad, ref.weight.grad
    assert torch.equal(g.to_dense() if sparse_grad else g, rg.to_dense() if sparse_grad else rg)
    assert emb.table_sparsity() == pytest.approx(ref.sparsity)
    deploy = emb.to_compressed()
    assert isinstance(deploy.shard, CompressedEmbedding)
    assert torch.equal(deploy(ids), ref_out.detach())


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="num_rows"):
        row_partition(-1, 2)
    with pytest.raises(ValueError, match="world_size"):
        row_partition(4, 0)
    with pytest.raises(TypeError, match="num_rows"):
        row_partition(4.0, 2)
    with pytest.raises(TypeError, match="num_embeddings"):
        ShardedMaskedEmbedding("10", 4)
    with pytest.raises(ValueError, match="embedding_dim"):
        ShardedMaskedEmbedding(10, -1)
    with pytest.raises(TypeError, match="shard"):
        ShardedEmbedding(nn.Linear(3, 4), 3)
    with pytest.raises(TypeError, match="shard"):
        ShardedEmbedding(nn.EmbeddingBag(3, 4), 3)
    with pytest.raises(ValueError, match="shard has 5 rows"):
        ShardedEmbedding(nn.Embedding(5, 4), 10)
    with pytest.raises(TypeError, match="exchange"):
        ShardedEmbedding(nn.Embedding(5, 4), 5, exchange=object())
    with pytest.raises(ValueError, match="group"):
        ShardedMaskedEmbedding(10, 4, group=object())
    with pytest.raises(ValueError, match="padding_idx"):
        ShardedMaskedEmbedding(10, 4, padding_idx=10)
    with pytest.raises(TypeError, match="padding_idx"):
        ShardedMaskedEmbedding(10, 4, padding_idx=1.0)
    with pytest.raises(ValueError, match="weight"):
        ShardedMaskedEmbedding.from_dense(torch.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        ShardedMaskedEmbedding.from_dense(torch.zeros(3, 2), torch.ones(2, 2, dtype=torch.bool))
    emb = ShardedMaskedEmbedding(10, 4)
    with pytest.raises(TypeError, match="ids"):
        emb(torch.zeros(3))
    with pytest.raises(TypeError, match="ids"):
        emb([1, 2])
    with pytest.raises(ValueError, match="ids must be in"):
        emb(torch.tensor([10]))
