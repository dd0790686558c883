"""Compressed embedding formats: exact masked rows, byte accounting, format choice by bytes,
int8 quantisation error, validation of hand-built formats."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sparselth.sparse import embedding_formats as ef
from sparselth.sparse.embedding_formats import (FORMATS, BitmaskEmbedding, CSREmbedding,
                                                RowCompactEmbedding, choose_format,
                                                compress_embedding, pack_bits, predict_bytes,
                                                unpack_bits)

SHAPES = [(0, 5), (5, 0), (1, 1), (7, 1), (13, 7), (9, 8), (20, 17), (11, 33), (30, 64), (4, 100)]
DTYPES = [torch.float32, torch.float64]


def make(R, d, density=0.4, dtype=torch.float32, seed=0, row_prune=0.2):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(R, d, generator=g, dtype=torch.float64).to(dtype)
    M = torch.rand(R, d, generator=g) < density
    if R:
        M &= torch.rand(R, 1, generator=g) >= row_prune  # some all-pruned rows
    if R > 2:
        M[1] = True  # one all-kept row
    return W, M


def tensor_bytes(fmt):
    return sum(t.numel() * t.element_size() for t in fmt.tensors().values())


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_exact_masked_rows_and_bytes(shape, dtype, fmt):
    W, M = make(*shape, dtype=dtype, seed=shape[0] * 31 + shape[1])
    T = compress_embedding(W, M, fmt)
    assert T.kind == fmt and T.shape == shape and T.dtype == dtype and not T.quantized
    assert torch.equal(T.to_dense(), W * M)
    assert T.stored_bytes == tensor_bytes(T) == predict_bytes(W, M)[fmt]
    assert T.dense_bytes == W.numel() * W.element_size()
    if fmt != "row_compact":
        assert T.nnz == int(M.sum())
    assert isinstance(repr(T), str)


def test_index_dtypes():
    W, M = make(6, 40)
    T = compress_embedding(W, M, "csr")
    assert T.col.dtype == torch.int16 and T.rowptr.dtype == torch.int32
    assert compress_embedding(W, M, "bitmask").bits.shape == (6, 5)
    W2, M2 = make(2, 32768, density=0.01)
    T2 = compress_embedding(W2, M2, "csr")
    assert T2.col.dtype == torch.int32
    assert torch.equal(T2.to_dense(), W2 * M2)
    assert T2.stored_bytes == predict_bytes(W2, M2)["csr"]
    assert compress_embedding(W, M, "row_compact").remap.dtype == torch.int32


def test_all_pruned_and_all_kept():
    W = torch.randn(8, 12)
    none = torch.zeros(8, 12, dtype=torch.bool)
    full = torch.ones(8, 12, dtype=torch.bool)
    for fmt in FORMATS:
        T = compress_embedding(W, none, fmt)
        assert torch.equal(T.to_dense(), torch.zeros(8, 12)) and T.nnz == 0
        T = compress_embedding(W, full, fmt)
        assert torch.equal(T.to_dense(), W)
    rc = compress_embedding(W, none, "row_compact")
    assert (rc.remap == -1).all() and rc.table.shape == (0, 12)
    assert choose_format(W, full) == "row_compact"  # dense rows: a remap is all it adds


def test_mask_none_keeps_nonzeros_and_float_masks():
    W = torch.randn(10, 9)
    W[W.abs() < 0.5] = 0
    T = compress_embedding(W)
    assert torch.equal(T.to_dense(), W)
    M = (torch.rand(10, 9) > 0.5).float()
    assert torch.equal(compress_embedding(W, M, "bitmask").to_dense(), W * M)


def _wins(W, M):
    sizes = predict_bytes(W, M)
    built = {k: compress_embedding(W, M, k).stored_bytes for k in FORMATS}
    assert built == sizes
    return choose_format(W, M), sizes


def test_each_format_wins_where_it_should():
    g = torch.Generator().manual_seed(0)
    R, d = 512, 64
    W = torch.randn(R, d, generator=g)
    # whole rows pruned, kept rows dense: the compact table has no per-entry overhead
    rows = torch.rand(R, 1, generator=g) < 0.3
    name, sizes = _wins(W, rows.expand(R, d).clone())
    assert name == "row_compact", sizes
    # 98% of the entries pruned: 2-byte columns beat an 8-byte bitmask row
    name, sizes = _wins(W, torch.rand(R, d, generator=g) < 0.02)
    assert name == "csr", sizes
    # 50% pruned at random: one bit per entry beats a 2-byte column per kept entry
    name, sizes = _wins(W, torch.rand(R, d, generator=g) < 0.5)
    assert name == "bitmask", sizes
    for M in (rows.expand(R, d), torch.rand(R, d, generator=g) < 0.1):
        T = compress_embedding(W, M)  # "auto" builds the smallest
        assert T.stored_bytes == min(predict_bytes(W, M).values())


def test_bytes_target_at_90_percent():
    # the design target: <= 1.15 x kept values + per-row overhead, >= 6x fewer than dense
    g = torch.Generator().manual_seed(1)
    R, d = 2000, 64
    W = torch.randn(R, d, generator=g)
    M = torch.rand(R, d, generator=g) < 0.1
    T = compress_embedding(W, M)
    kept_value_bytes = int(M.sum()) * 4
    per_row = (d + 7) // 8 + 4
    assert T.stored_bytes <= 1.15 * kept_value_bytes + per_row * R
    assert W.numel() * 4 / T.stored_bytes >= 6


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_int8_quantisation(fmt, dtype):
    W, M = make(40, 33, dtype=dtype, seed=3)
    T = compress_embedding(W, M, fmt, quantize="int8")
    assert T.quantized and T.dtype == dtype and T.scale.dtype == dtype
    assert T.stored_bytes == tensor_bytes(T) == predict_bytes(W, M, "int8")[fmt]
    assert T.stored_bytes < compress_embedding(W, M, fmt).stored_bytes
    deq = T.to_dense()
    exact = W * M
    # error at most half a step of the row's scale; pruned entries stay exactly zero
    row_scale = exact.abs().amax(1, keepdim=True) / 127
    assert ((deq - exact).abs() <= row_scale / 2 + 1e-6 * row_scale + 1e-12).all()
    assert (deq[~M] == 0).all()
    assert choose_format(W, M, quantize="int8") in FORMATS


def test_format_to_device_and_parts_roundtrip():
    W, M = make(12, 10)
    for fmt in FORMATS:
        T = compress_embedding(W, M, fmt)
        T2 = T.to("cpu")
        assert type(T2) is type(T) and torch.equal(T2.to_dense(), T.to_dense())


def test_bad_arguments_name_the_argument():
    W, M = make(5, 4)
    with pytest.raises(ValueError, match="compress_embedding.*weight"):
        compress_embedding(torch.randn(5), None)
    with pytest.raises(ValueError, match="compress_embedding.*mask"):
        compress_embedding(W, M[:, :3])
    with pytest.raises(ValueError, match="compress_embedding: format"):
        compress_embedding(W, M, "coo")
    with pytest.raises(ValueError, match="quantize"):
        compress_embedding(W, M, quantize="int4")
    with pytest.raises(TypeError, match="weight"):
        compress_embedding([[1.0]], None)


def test_hand_built_formats_are_validated():
    d = 6
    with pytest.raises(ValueError, match="remap"):
        RowCompactEmbedding(torch.tensor([0, 2], dtype=torch.int32), torch.randn(2, d))
    with pytest.raises(TypeError, match="remap"):
        RowCompactEmbedding(torch.tensor([0, 1]), torch.randn(2, d))
    with pytest.raises(ValueError, match="int8 values need scale"):
        RowCompactEmbedding(torch.tensor([0], dtype=torch.int32),
                            torch.zeros(1, d, dtype=torch.int8))
    with pytest.raises(ValueError, match="scale is only for int8"):
        RowCompactEmbedding(torch.tensor([0], dtype=torch.int32), torch.zeros(1, d), torch.ones(1))
    rp = torch.tensor([0, 2, 3], dtype=torch.int32)
    col = torch.tensor([1, 4, 0], dtype=torch.int16)
    val = torch.randn(3)
    CSREmbedding(rp, col, val, d)  # valid
    with pytest.raises(ValueError, match="col must be in"):
        CSREmbedding(rp, torch.tensor([1, 6, 0], dtype=torch.int16), val, d)
    with pytest.raises(ValueError, match="strictly increasing"):
        CSREmbedding(rp, torch.tensor([4, 1, 0], dtype=torch.int16), val, d)
    with pytest.raises(ValueError, match="rowptr"):
        CSREmbedding(torch.tensor([0, 2, 4], dtype=torch.int32), col, val, d)
    with pytest.raises(ValueError, match="values"):
        CSREmbedding(rp, col, torch.randn(2), d)
    bits = pack_bits(torch.tensor([[0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool))
    BitmaskEmbedding(rp, bits, val, d)  # valid
    with pytest.raises(ValueError, match="set bits"):
        BitmaskEmbedding(torch.tensor([0, 1, 3], dtype=torch.int32), bits, val, d)
    with pytest.raises(ValueError, match="padding bits"):
        BitmaskEmbedding(rp, bits | torch.tensor([[0], [128]], dtype=torch.uint8), val, d)
    with pytest.raises(ValueError, match="bits must have shape"):
        BitmaskEmbedding(rp, bits[:, :0], val, d)


@given(st.integers(0, 9), st.integers(0, 20))
def test_pack_unpack_roundtrip(R, d):
    M = torch.rand(R, d) < 0.5
    bits = pack_bits(M)
    assert bits.shape == (R, (d + 7) // 8) and bits.dtype == torch.uint8
    assert torch.equal(unpack_bits(bits, d), M)
    if R and d:
        assert int(bits[0, 0]) == sum(1 << f for f in range(min(d, 8)) if M[0, f])


@given(R=st.integers(0, 25), d=st.integers(1, 70), density=st.floats(0, 1),
       row_prune=st.floats(0, 1), seed=st.integers(0, 2 ** 16),
       dtype=st.sampled_from(DTYPES), quantize=st.sampled_from([None, "int8"]))
def test_fuzz_formats(R, d, density, row_prune, seed, dtype, quantize):
    W, M = make(R, d, density, dtype, seed, row_prune)
    sizes = predict_bytes(W, M, quantize)
    dense = None
    for fmt in FORMATS:
        T = compress_embedding(W, M, fmt, quantize)
        assert T.stored_bytes == sizes[fmt]
        if quantize is None:
            assert torch.equal(T.to_dense(), W * M)
        else:
            out = T.to_dense()
            dense = out if dense is None else dense
            torch.testing.assert_close(out, dense, rtol=0, atol=0)  # all formats dequantise alike
    assert compress_embedding(W, M, quantize=quantize).stored_bytes == min(sizes.values())
    assert ef.choose_format(W, M, quantize) in FORMATS


def test_bench_embedding_smoke(tmp_path):
    """The benchmark runs end to end on a tiny table and writes its reports (no timing
    is asserted)."""
    import json
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    if str(repo) not in sys.path:  # bench/ is a folder of the checkout, not a package
        sys.path.insert(0, str(repo))
    from bench import embedding as bench_embedding

    report = bench_embedding.main([
        "--rows", "3000", "--dim", "24", "--sparsity", "0.5", "0.9", "--batch", "256",
        "--id-batches", "2", "--budget", "0.005", "--min-reps", "2", "--max-reps", "3",
        "--copy-mb", "4", "--out", str(tmp_path), "--tag", "smoke", "--no-progress"])
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"embedding-smoke.{ext}").is_file()
    assert not list(tmp_path.glob(".*.tmp*"))
    data = json.loads((tmp_path / "embedding-smoke.json").read_text())
    assert len(data["cases"]) == 4 and data["training"]["steps"]
    for case in data["cases"]:
        assert case["chosen_bytes"] == min(case["stored_bytes"].values())
        assert not case["errors"]
    assert report["args"]["rows"] == 3000


def test_no_public_path_skips_the_format_checks():
    """``validate=False`` (of older code) is ignored: an out-of-range ``remap``, ``col`` or
    ``rowptr`` is refused, since the lookup kernels read them unchecked."""
    d = 4
    table = torch.randn(2, d)
    rp = torch.tensor([0, 1, 2], dtype=torch.int32)
    vals = torch.randn(2)
    bad = [(RowCompactEmbedding, (torch.tensor([0, 10**8], dtype=torch.int32), table), "remap"),
           (CSREmbedding, (rp, torch.tensor([0, 9], dtype=torch.int16), vals, d), "col"),
           (CSREmbedding, (torch.tensor([0, 7, 2], dtype=torch.int32),
                           torch.tensor([0, 1], dtype=torch.int16), vals, d), "rowptr"),
           (BitmaskEmbedding, (rp, torch.tensor([[3], [1]], dtype=torch.uint8), vals, d), "bits")]
    for cls, args, word in bad:
        with pytest.warns(DeprecationWarning, match="ignored"):
            with pytest.raises(ValueError, match=word):
                cls(*args, validate=False)
        with pytest.raises(ValueError, match=word):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            cls._from_parts((2, d), dict(zip(cls._names, tensors)))
