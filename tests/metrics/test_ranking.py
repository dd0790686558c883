"""Recall@K, Precision@K and NDCG@K by full ranking: hand-computed cases, a naive oracle,
batching, exclusion, users without ground truth, K larger than the item count, and the peak
memory of a call bounded by the batch budget."""

from __future__ import annotations

import math
import weakref

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sparselth import CSR
from sparselth.metrics import metrics_from_hits, ranking_metrics
from sparselth.metrics.ranking import user_batches


def _csr(rows: dict[int, list[int]], U: int, I: int) -> CSR:
    r = [u for u, items in rows.items() for _ in items]
    c = [i for items in rows.values() for i in items]
    ei = torch.tensor([r, c], dtype=torch.long).reshape(2, -1)
    return CSR.from_edge_index(ei, num_nodes=U, num_cols=I)


def _emb(scores: torch.Tensor):
    """user_emb @ item_emb.T == scores (item_emb = identity)."""
    return scores, torch.eye(scores.shape[1], dtype=scores.dtype)


def _dcg(hits):
    return sum(h / math.log2(r + 2) for r, h in enumerate(hits))


def test_hand_computed():
    # 3 users, 6 items. Scores rank items 0 > 1 > 2 > 3 > 4 > 5 for every user.
    scores = torch.tensor([[6.0, 5, 4, 3, 2, 1]] * 3)
    ue, ie = _emb(scores)
    train = _csr({0: [0], 1: [], 2: [1, 2]}, 3, 6)
    test = _csr({0: [1, 4], 1: [], 2: [0, 5]}, 3, 6)
    m = ranking_metrics(ue, ie, test, exclude=train, ks=(2, 3))
    # user 0: train item 0 excluded -> ranking 1,2,3,4,5: hits at ranks 1 (item 1) and 4
    # user 1: no test items -> skipped
    # user 2: items 1,2 excluded -> ranking 0,3,4,5: hit at rank 1 (item 0), rank 4 (item 5)
    assert m["users"] == 2
    r2 = (1 / 2 + 1 / 2) / 2
    r3 = r2
    assert m["recall@2"] == pytest.approx(r2)
    assert m["recall@3"] == pytest.approx(r3)
    assert m["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    ndcg2 = _dcg([1, 0]) / _dcg([1, 1])
    assert m["ndcg@2"] == pytest.approx(ndcg2)
    ndcg3 = _dcg([1, 0, 0]) / _dcg([1, 1])
    assert m["ndcg@3"] == pytest.approx(ndcg3)
    # without exclusion user 0's top-2 is items 0, 1 -> one hit; user 2's top-2 is 0, 1 -> one
    m0 = ranking_metrics(ue, ie, test, exclude=None, ks=(2,))
    assert m0["recall@2"] == pytest.approx(0.5)
    assert m0["ndcg@2"] == pytest.approx(((_dcg([0, 1]) + _dcg([1, 0])) / _dcg([1, 1])) / 2)


def test_k_larger_than_items_and_excluded_truth():
    scores = torch.tensor([[1.0, 3.0, 2.0]])
    ue, ie = _emb(scores)
    test = _csr({0: [0, 1]}, 1, 3)
    m = ranking_metrics(ue, ie, test, ks=(5,))
    # ranking 1, 2, 0: hits at ranks 1 and 3; precision still divides by K = 5
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["precision@5"] == pytest.approx(2 / 5)
    assert m["ndcg@5"] == pytest.approx(_dcg([1, 0, 1]) / _dcg([1, 1]))
    # a test item that is also excluded can never be a hit, even with K > #items
    ex = _csr({0: [1]}, 1, 3)
    m = ranking_metrics(ue, ie, test, exclude=[ex, None], ks=(5,))
    assert m["recall@5"] == pytest.approx(0.5)
    assert m["ndcg@5"] == pytest.approx(_dcg([0, 1]) / _dcg([1, 1]))
    # every item excluded: no hits, no error
    m = ranking_metrics(ue, ie, test, exclude=_csr({0: [0, 1, 2]}, 1, 3), ks=(2,))
    assert m["recall@2"] == 0.0


def test_metrics_from_hits():
    hits = torch.tensor([[True, False, True], [False, False, False]])
    out = metrics_from_hits(hits, torch.tensor([4, 1]), ks=(1, 3))
    assert out["recall@3"].tolist() == pytest.approx([0.5, 0.0])
    assert out["precision@1"].tolist() == pytest.approx([1.0, 0.0])
    assert out["ndcg@3"][0].item() == pytest.approx(_dcg([1, 0, 1]) / _dcg([1, 1, 1]))
    with pytest.raises(ValueError, match="metrics_from_hits: hits"):
        metrics_from_hits(hits.float(), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="metrics_from_hits: num_truth"):
        metrics_from_hits(hits, torch.tensor([1]))


def _naive(scores, truth: dict, exclude: dict, ks):
    """Per-user python loops: the obviously correct definition."""
    U, I = scores.shape
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "precision", "ndcg")}
    n = 0
    for u in range(U):
        T = set(truth.get(u, []))
        if not T:
            continue
        n += 1
        cand = [i for i in range(I) if i not in set(exclude.get(u, []))]
        cand.sort(key=lambda i: -float(scores[u, i]))
        for k in ks:
            top = cand[:k]
            hits = [1 if i in T else 0 for i in top]
            sums[f"recall@{k}"] += sum(hits) / len(T)
            sums[f"precision@{k}"] += sum(hits) / k
            sums[f"ndcg@{k}"] += _dcg(hits) / _dcg([1] * min(len(T), k))
    return {k: v / max(n, 1) for k, v in sums.items()}, n


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 9), st.integers(1, 13), st.integers(0, 10_000),
    st.sampled_from([torch.float32, torch.float64]), st.sampled_from([1, 7, 1 << 20]),
)
def test_against_naive(U, I, seed, dtype, max_scores):
    g = torch.Generator().manual_seed(seed)
    # distinct scores (no ties) so the ranking is unique
    scores = torch.randperm(U * I, generator=g).reshape(U, I).to(dtype)
    r = torch.rand(U, I, generator=g)
    truth = {u: [i for i in range(I) if r[u, i] < 0.3] for u in range(U)}
    excl = {u: [i for i in range(I) if 0.3 <= r[u, i] < 0.5] for u in range(U)}
    ref, n = _naive(scores, truth, excl, (1, 3, 20))
    if n == 0:
        m = ranking_metrics(*_emb(scores), _csr(truth, U, I), _csr(excl, U, I), ks=(1, 3, 20))
        assert m["users"] == 0
        return
    m = ranking_metrics(*_emb(scores), _csr(truth, U, I), _csr(excl, U, I), ks=(20, 1, 3),
                        max_scores=max_scores)
    assert m["users"] == n
    for k, v in ref.items():
        assert m[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_batching_and_per_user():
    g = torch.Generator().manual_seed(0)
    ue, ie = torch.randn(57, 8, generator=g), torch.randn(41, 8, generator=g)
    truth = _csr({u: [(u * 7 + j) % 41 for j in range(u % 4)] for u in range(57)}, 57, 41)
    excl = _csr({u: [(u * 3 + 1) % 41] for u in range(57)}, 57, 41)
    full = ranking_metrics(ue, ie, truth, excl)
    small = ranking_metrics(ue, ie, truth, excl, max_scores=41 * 5)
    for k in full:
        assert full[k] == pytest.approx(small[k])
    per = ranking_metrics(ue, ie, truth, excl, reduction="none")
    assert per["recall@20"].shape == (full["users"],)
    assert per["users"].tolist() == [u for u in range(57) if u % 4]
    assert float(per["ndcg@10"].mean()) == pytest.approx(full["ndcg@10"])


def test_errors():
    ue, ie = torch.randn(3, 4), torch.randn(5, 4)
    truth = _csr({0: [1]}, 3, 5)
    with pytest.raises(ValueError, match="ranking_metrics: user_emb and item_emb"):
        ranking_metrics(ue, torch.randn(5, 3), truth)
    with pytest.raises(ValueError, match=r"ranking_metrics: truth has shape \(3, 4\)"):
        ranking_metrics(ue, ie, _csr({0: [1]}, 3, 4))
    with pytest.raises(ValueError, match=r"ranking_metrics: exclude has shape"):
        ranking_metrics(ue, ie, truth, _csr({0: [1]}, 2, 5))
    with pytest.raises(TypeError, match="ranking_metrics: truth must be a CSR"):
        ranking_metrics(ue, ie, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="ranking_metrics: ks"):
        ranking_metrics(ue, ie, truth, ks=(0,))
    with pytest.raises(ValueError, match="ranking_metrics: reduction"):
        ranking_metrics(ue, ie, truth, reduction="sum")


class _LiveBytes(TorchDispatchMode):
    """The peak bytes of tensor storages created while active and still alive (storages
    that existed before, e.g. the inputs and their views, are not counted)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = self.largest = 0
        self.refs: dict[int, list[int]] = {}  # storage pointer -> [bytes, live tensors]
        self.outside: set[int] = set()

    def _release(self, key: int) -> None:
        entry = self.refs[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor):
                key = t.untyped_storage().data_ptr()
                if key not in self.refs:
                    self.outside.add(key)
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            key, nbytes = st.data_ptr(), st.nbytes()
            if nbytes == 0 or key in self.outside:
                continue
            if key not in self.refs:
                self.refs[key] = [nbytes, 0]
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                self.largest = max(self.largest, nbytes)
            self.refs[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out


def _big_truth(U, I, per_user, seed):
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(U).repeat_interleave(per_user)
    cols = torch.randint(0, I, (U * per_user,), generator=g)
    return CSR.from_edge_index(torch.stack([rows, cols]), num_nodes=U, num_cols=I)


def test_peak_memory_is_bounded_by_the_batch_budget(monkeypatch):
    """Many stored entries (truth and exclusions) and a small byte budget: every batch stays
    within it (no array over all stored entries, no batch sized by the score count alone)
    and the chunked results equal the one-batch results exactly."""
    import sparselth.metrics.ranking as ranking

    U, I, d = 800, 1000, 4
    g = torch.Generator().manual_seed(0)
    # integer-valued embeddings: every score is exact, whatever the batch shape
    ue = torch.randint(-1000, 1000, (U, d), generator=g).float()
    ie = torch.randint(-1000, 1000, (I, d), generator=g).float()
    truth, excl = _big_truth(U, I, 100, 1), _big_truth(U, I, 60, 2)
    budget = 1 << 18  # 256 KiB: about two dozen users per batch
    assert truth.nnz * 8 > 2 * budget  # one int64 array over the truth exceeds the budget
    whole = ranking_metrics(ue, ie, truth, excl, ks=(5, 20), reduction="none",
                            max_bytes=1 << 40, max_scores=1 << 40)

    monkeypatch.setattr(ranking, "BATCH_BYTES", budget, raising=False)
    with _LiveBytes() as mem:
        chunked = ranking_metrics(ue, ie, truth, excl, ks=(5, 20), reduction="none")
    # O(U) arrays (degrees, user ids, per-batch costs, per-user results) come on top
    per_user_overhead = 8 * (6 + 2 * 3 * 2)
    assert mem.peak <= budget + U * per_user_overhead + 64 * 1024, mem.peak
    assert mem.largest <= budget
    assert torch.equal(chunked["users"], whole["users"])
    for k in whole:
        assert torch.equal(chunked[k], whole[k]), k


def test_user_batches():
    cost = torch.tensor([3, 3, 3, 10, 1, 1, 1, 1])
    assert user_batches(cost, 6) == [(0, 2), (2, 3), (3, 4), (4, 8)]
    assert user_batches(cost, 6, max_rows=3) == [(0, 2), (2, 3), (3, 4), (4, 7), (7, 8)]
    assert user_batches(cost, 100) == [(0, 8)]
    assert user_batches(torch.zeros(0, dtype=torch.int64), 5) == []
    with pytest.raises(ValueError, match="max_bytes"):
        ranking_metrics(torch.ones(2, 2), torch.ones(3, 2), _csr({0: [1]}, 2, 3), max_bytes=0)
