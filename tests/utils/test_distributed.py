"""sparselth.utils.distributed on one process (the identity the drivers rely on without
torchrun), the shard arithmetic, checksums and argument errors; the collectives on two
processes are exercised in tests/prune/test_distributed.py."""

from __future__ import annotations

import pytest
import torch

from sparselth.utils import distributed
from sparselth.utils.distributed import digest, shard


def test_one_process_is_the_identity(monkeypatch):
    for var in distributed.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    assert distributed.init_from_env() is False   # no torchrun: nothing to join
    assert distributed.world() == (0, 1, True)
    assert not distributed.is_distributed()
    t = {"a": torch.arange(3), "m": torch.tensor([True, False])}
    assert distributed.broadcast_tensors(t) == t
    assert distributed.broadcast_masks(t) == t
    assert distributed.broadcast_json({"x": [1]}) == {"x": [1]}
    assert distributed.on_main(lambda a, b=0: a + b, 2, b=3) == 5
    assert distributed.tensors_from_main(lambda: t) == t
    distributed.check_same(t, "anything")
    distributed.check_same([torch.zeros(2)], "a list")
    distributed.barrier()
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    distributed.all_reduce_gradients([p])
    assert torch.equal(p.grad, torch.full((2,), 3.0))
    assert torch.equal(distributed.all_reduce_sum(torch.tensor([1.5])), torch.tensor([1.5]))
    assert distributed.show_progress(True) and not distributed.show_progress(False)
    assert distributed.main_only(lambda: 7)() == 7
    distributed.shutdown()


def test_init_from_env_needs_every_variable(monkeypatch):
    for var in distributed.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        distributed.init_from_env()
    with pytest.raises(TypeError, match="backend"):
        distributed.init_from_env(backend=3)
    with pytest.raises(ValueError, match="timeout_s"):
        distributed.init_from_env(timeout_s=0)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 64, 101])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_cover_every_index_once_and_balance(n, world_size):
    parts = [range(n)[shard(n, r, world_size)] for r in range(world_size)]
    assert [i for p in parts for i in p] == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_defaults_and_errors():
    assert shard(5) == slice(0, 5)   # one process takes everything
    assert shard(5, 1, 2) == slice(2, 5)
    with pytest.raises(ValueError, match="rank"):
        shard(5, 2, 2)
    with pytest.raises(ValueError, match="world_size"):
        shard(5, 0, 0)
    with pytest.raises(ValueError, match="n must be"):
        shard(-1, 0, 1)


def test_digest_sees_values_dtype_shape_and_name():
    a = torch.arange(6, dtype=torch.float32)
    assert digest("w", a) == digest("w", a.clone())
    assert digest("w", a) == digest("w", a[::1])
    assert digest("w", a.reshape(2, 3).t().contiguous().t()) == digest("w", a.reshape(2, 3))
    b = a.clone()
    b[3] = torch.nextafter(b[3], torch.tensor(10.0))   # one ulp
    others = [digest("w", b), digest("v", a), digest("w", a.double()),
              digest("w", a.reshape(2, 3)), digest("w", a.to(torch.int32))]
    assert digest("w", a) not in others
    assert 0 <= digest("w", a) < 2**63
    assert digest("m", torch.tensor(True)) != digest("m", torch.tensor(False))


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="masks"):
        distributed.broadcast_masks([torch.ones(2, dtype=torch.bool)])
    with pytest.raises(TypeError, match="tensors"):
        distributed.check_same(torch.ones(2), "x")
    with pytest.raises(TypeError, match="what"):
        distributed.check_same({}, 3)
