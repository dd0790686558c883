"""Sparse weight formats: how a pruned weight is stored once a ticket is deployed.

* **CSR** (:func:`csr_from_weight`): any weight of rank >= 2, flattened to
  ``(shape[0], prod(shape[1:]))`` (a conv weight ``(Cout, Cin/g, kh, kw)`` becomes
  ``(Cout, Cin/g*kh*kw)``), storing exactly the entries the mask keeps (a kept weight whose value
  happens to be 0 stays stored, so it keeps training). Consumed by ``sparselth.ops``.
* **Channel-pruned dense** (:class:`ChannelPruned`): the rows and columns (output and input
  channels) that hold any kept weight, as a physically smaller dense weight. Exact for any
  mask; it saves work when whole channels are pruned.
* **Block-sparse** (:class:`BlockSparse`, BSR-like): the ``bh x bw`` blocks that hold any kept
  weight, each stored dense, indexed by a CSR over the grid of blocks.
* **2:4 semi-structured** (:func:`to_semi_structured`): ``torch.sparse.to_sparse_semi_structured``
  on NVIDIA GPUs that support it (compute capability >= 8.0); :func:`semi_structured_available`
  says whether it can run here.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from .csr import CSR, check_structure

Tensor = torch.Tensor

__all__ = ["weight_mask", "csr_from_weight", "csr_to_weight", "ChannelPruned", "BlockSparse",
           "is_n_m", "semi_structured_available", "to_semi_structured"]


def _check_weight(op: str, weight) -> Tensor:
    if not isinstance(weight, Tensor):
        raise TypeError(f"{op}: weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() < 2:
        raise ValueError(f"{op}: weight must have at least 2 dimensions, got shape {tuple(weight.shape)}")
    if not weight.dtype.is_floating_point:
        raise TypeError(f"{op}: weight must be floating point, got {weight.dtype}")
    if weight.layout != torch.strided:
        raise TypeError(f"{op}: weight must be a dense tensor, got layout {weight.layout}")
    return weight


def weight_mask(weight: Tensor, mask: Optional[Tensor] = None, op: str = "weight_mask") -> Tensor:
    """The boolean keep-mask of ``weight``: ``mask != 0`` when given (bool or 0/1, same shape),
    else ``weight != 0``."""
    _check_weight(op, weight)
    if mask is None:
        return weight.detach() != 0
    if not isinstance(mask, Tensor):
        raise TypeError(f"{op}: mask must be a tensor or None, got {type(mask).__name__}")
    if mask.shape != weight.shape:
        raise ValueError(f"{op}: mask must have the weight's shape {tuple(weight.shape)}, "
                         f"got {tuple(mask.shape)}")
    if mask.device != weight.device:
        raise ValueError(f"{op}: mask is on {mask.device} but weight is on {weight.device}")
    if mask.dtype != torch.bool:
        if mask.is_complex():
            raise TypeError(f"{op}: mask must be bool or real 0/1, got {mask.dtype}")
        m = mask.detach()
        if bool(((m != 0) & (m != 1)).any()):
            raise ValueError(f"{op}: a non-boolean mask must hold only 0 and 1")
        return m != 0
    return mask


def csr_from_weight(weight: Tensor, mask: Optional[Tensor] = None, *,
                    index_dtype: Optional[torch.dtype] = None) -> CSR:
    """The CSR of ``weight.reshape(shape[0], -1)`` keeping the entries ``mask`` keeps.

    Args:
        weight: dense weight of rank >= 2 (linear ``(out, in)``, conv ``(Cout, Cin/g, kh, kw)``,
            transposed conv ``(Cin, Cout/g, kh, kw)``).
        mask: bool or 0/1 tensor of ``weight``'s shape; ``None`` keeps the non-zeros.
        index_dtype: ``torch.int32``/``torch.int64`` (default: int32 when it fits).

    Example::

        >>> A = csr_from_weight(conv.weight, mask)      # (Cout, Cin*kh*kw)
    """
    op = "csr_from_weight"
    keep = weight_mask(weight, mask, op)
    cols = math.prod(weight.shape[1:])       # not -1: a weight with no rows must reshape too
    keep = keep.reshape(weight.shape[0], cols)
    w2 = weight.detach().reshape(weight.shape[0], cols)
    row, col = keep.nonzero(as_tuple=True)                 # row-major, so already sorted
    counts = torch.bincount(row, minlength=w2.shape[0])
    rowptr = torch.zeros(w2.shape[0] + 1, dtype=torch.long, device=weight.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    from .csr import _pick_index_dtype
    idx = _pick_index_dtype(w2.shape[0], w2.shape[1], row.numel(), index_dtype)
    return CSR._trusted(rowptr.to(idx), col.to(idx), w2[row, col].clone(), tuple(w2.shape))


def csr_to_weight(A: CSR, shape: Sequence[int]) -> Tensor:
    """The dense weight of ``shape`` whose flattening ``A`` stores (zeros elsewhere)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or shape[0] != A.shape[0] or math.prod(shape[1:]) != A.shape[1]:
        raise ValueError(f"csr_to_weight: shape {shape} does not flatten to the CSR's {A.shape}")
    return A.to_dense().reshape(shape)


def check_channel_index(op: str, name: str, index, length: Optional[int], bound: int) -> None:
    """Raise unless ``index`` (named ``name``) is a 1-D int64 strictly increasing tensor of
    ``length`` (None: any) channels in ``[0, bound)``: the kept-channel lists of
    :class:`ChannelPruned`, checked when they come from outside (a state dict)."""
    if not isinstance(index, Tensor) or index.dtype != torch.int64 or index.dim() != 1:
        got = f"{index.dtype}, {index.dim()}-D" if isinstance(index, Tensor) else \
            type(index).__name__
        raise TypeError(f"{op}: {name} must be a 1-D int64 tensor, got {got}")
    if length is not None and index.numel() != length:
        raise ValueError(f"{op}: {name} must have {length} entries (one per kept channel of the "
                         f"stored weight), got {index.numel()}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= bound):
        raise ValueError(f"{op}: {name} must lie in [0, {bound}), got min {int(index.min())} "
                         f"max {int(index.max())}")
    if index.numel() > 1 and not bool((index[1:] > index[:-1]).all()):
        raise ValueError(f"{op}: {name} must be strictly increasing")


def _kept(keep: Tensor, dim: int) -> Tensor:
    dims = tuple(d for d in range(keep.dim()) if d != dim)
    return keep.any(dim=dims).nonzero(as_tuple=True)[0] if dims else keep.nonzero(as_tuple=True)[0]


class ChannelPruned:
    """A weight cut down to its live output rows and input channels.

    ``weight[out_index][:, in_index]`` is stored densely (``mask`` zeros inside the kept block
    stay as zeros, and ``block_mask`` records them when the block is not all kept). Output
    channels with no kept weight produce only their bias. When the mask keeps nothing, one
    (zero) entry is kept, so the smaller layer still has a channel to run on.

    Args:
        weight: ``(out, in, *kernel)`` (``groups == 1``).
        mask: bool/0-1 mask of ``weight``'s shape, or ``None`` for ``weight != 0``.
    """

    def __init__(self, weight: Tensor, mask: Optional[Tensor] = None):
        op = "ChannelPruned"
        keep = weight_mask(weight, mask, op)
        self.shape = tuple(weight.shape)
        self.out_index = _kept(keep, 0)
        self.in_index = _kept(keep, 1)
        if self.out_index.numel() == 0 and self.shape[0] and self.shape[1]:
            # all pruned: keep one zero entry, since dense kernels refuse zero channels
            self.out_index = self.in_index = torch.zeros(1, dtype=torch.long,
                                                         device=weight.device)
        sub = weight.detach().index_select(0, self.out_index).index_select(1, self.in_index)
        kb = keep.index_select(0, self.out_index).index_select(1, self.in_index)
        self.weight = (sub * kb).contiguous()
        self.block_mask = None if bool(kb.all()) else kb

    @property
    def all_out(self) -> bool:
        return self.out_index.numel() == self.shape[0]

    @property
    def all_in(self) -> bool:
        return self.in_index.numel() == self.shape[1]

    def to_dense(self) -> Tensor:
        full_in = self.weight.new_zeros((self.weight.shape[0],) + self.shape[1:])
        full_in.index_copy_(1, self.in_index, self.weight)
        return self.weight.new_zeros(self.shape).index_copy_(0, self.out_index, full_in)

    def __repr__(self) -> str:
        return (f"ChannelPruned(shape={self.shape}, kept_out={self.out_index.numel()}, "
                f"kept_in={self.in_index.numel()}, dense_block={self.block_mask is None})")


class BlockSparse:
    """BSR-like storage: the ``bh x bw`` blocks of a 2-D weight holding any kept entry.

    Attributes: ``blocks`` ``(nblocks, bh, bw)`` (masked entries zero), ``rowptr`` over block
    rows, ``col`` block-column of each block, ``shape`` (padded up to whole blocks internally),
    ``block``.

    Example::

        >>> B = BlockSparse.from_dense(linear.weight, mask, block=(4, 4))
        >>> y = B.linear(x, linear.bias)          # == F.linear(x, W * mask, b)
    """

    def __init__(self, blocks: Tensor, rowptr: Tensor, col: Tensor, shape: Tuple[int, int],
                 block: Tuple[int, int]):
        self.check_parts("BlockSparse", blocks, rowptr, col, shape, block)
        self.blocks, self.rowptr, self.col = blocks, rowptr, col
        self.shape, self.block = tuple(shape), tuple(block)

    @classmethod
    def _trusted(cls, blocks: Tensor, rowptr: Tensor, col: Tensor, shape: Tuple[int, int],
                 block: Tuple[int, int]) -> "BlockSparse":
        """From parts known to be valid (built here, or checked once): no O(blocks) check."""
        out = cls.__new__(cls)
        out.blocks, out.rowptr, out.col = blocks, rowptr, col
        out.shape, out.block = tuple(shape), tuple(block)
        return out

    @staticmethod
    def check_parts(op: str, blocks, rowptr, col, shape: Sequence[int], block: Sequence[int],
                    names: Sequence[str] = ("blocks", "rowptr", "col")) -> None:
        """Raise (naming the tensor by ``names``) unless ``rowptr``/``col`` are a valid CSR
        over the grid of ``block`` blocks of ``shape`` and ``blocks`` holds one ``block``-shaped
        block of a floating dtype per entry of ``col``."""
        (m, n), (bh, bw) = (int(v) for v in shape), (int(v) for v in block)
        if bh < 1 or bw < 1 or m < 0 or n < 0:
            raise ValueError(f"{op}: block must be positive and shape non-negative, got "
                             f"block {tuple(block)} shape {tuple(shape)}")
        check_structure(op, rowptr, col, None, (-(-m // bh), -(-n // bw)),
                        (names[1], names[2], ""))
        if not isinstance(blocks, Tensor) or not blocks.dtype.is_floating_point:
            raise TypeError(f"{op}: {names[0]} must be a floating tensor, got "
                            f"{blocks.dtype if isinstance(blocks, Tensor) else type(blocks).__name__}")
        if tuple(blocks.shape) != (col.numel(), bh, bw):
            raise ValueError(f"{op}: {names[0]} must have shape ({col.numel()}, {bh}, {bw}) (one "
                             f"block per entry of {names[2]}), got {tuple(blocks.shape)}")

    @classmethod
    def from_dense(cls, weight: Tensor, mask: Optional[Tensor] = None,
                   block: Sequence[int] = (4, 4)) -> "BlockSparse":
        op = "BlockSparse.from_dense"
        keep = weight_mask(weight, mask, op)
        if weight.dim() != 2:
            raise ValueError(f"{op}: weight must be 2-D, got shape {tuple(weight.shape)}")
        if (not isinstance(block, (tuple, list)) or len(block) != 2
                or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in block)):
            raise ValueError(f"{op}: block must be a pair of positive ints, got {block!r}")
        bh, bw = block
        m, n = weight.shape
        M, N = -(-m // bh) * bh, -(-n // bw) * bw
        w = torch.zeros(M, N, dtype=weight.dtype, device=weight.device)
        w[:m, :n] = weight.detach() * keep
        k = torch.zeros(M, N, dtype=torch.bool, device=weight.device)
        k[:m, :n] = keep
        grid = k.view(M // bh, bh, N // bw, bw).any(dim=(1, 3))
        br, bc = grid.nonzero(as_tuple=True)
        blocks = w.view(M // bh, bh, N // bw, bw).permute(0, 2, 1, 3)[br, bc].contiguous()
        rowptr = torch.zeros(M // bh + 1, dtype=torch.long, device=weight.device)
        torch.cumsum(torch.bincount(br, minlength=M // bh), 0, out=rowptr[1:])
        return cls._trusted(blocks, rowptr, bc, (m, n), (bh, bw))

    @property
    def nblocks(self) -> int:
        return self.blocks.shape[0]

    def block_rows(self) -> Tensor:
        counts = self.rowptr[1:] - self.rowptr[:-1]
        return torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts,
                                       output_size=self.nblocks)

    def to_dense(self) -> Tensor:
        (m, n), (bh, bw) = self.shape, self.block
        M, N = (self.rowptr.numel() - 1) * bh, -(-n // bw) * bw
        out = self.blocks.new_zeros(M // bh, N // bw, bh, bw)
        out[self.block_rows(), self.col] = self.blocks
        return out.permute(0, 2, 1, 3).reshape(M, N)[:m, :n]

    def linear(self, x: Tensor, bias: Optional[Tensor] = None,
               blocks: Optional[Tensor] = None) -> Tensor:
        """``x @ W^T + bias`` with ``W`` stored block-sparse (``blocks`` overrides the stored
        values, e.g. with a trainable parameter of the same shape)."""
        blocks = self.blocks if blocks is None else blocks
        (m, n), (bh, bw) = self.shape, self.block
        if x.shape[-1] != n:
            raise ValueError(f"BlockSparse.linear: input must have {n} features, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, n)
        N = -(-n // bw) * bw
        if N != n:
            x2 = torch.nn.functional.pad(x2, (0, N - n))
        xb = x2.view(x2.shape[0], N // bw, bw).index_select(1, self.col)        # (B, nb, bw)
        part = torch.einsum("bnk,nmk->bnm", xb, blocks)                           # (B, nb, bh)
        nbr = self.rowptr.numel() - 1
        out = x2.new_zeros(x2.shape[0], nbr, bh).index_add_(1, self.block_rows(), part)
        out = out.reshape(x2.shape[0], nbr * bh)[:, :m]
        if bias is not None:
            out = out + bias
        return out.reshape(*lead, m)

    def __repr__(self) -> str:
        nbr = self.rowptr.numel() - 1
        total = nbr * -(-self.shape[1] // self.block[1])
        return (f"BlockSparse(shape={self.shape}, block={self.block}, blocks={self.nblocks}/"
                f"{total})")


def is_n_m(mask: Tensor, n: int = 2, m: int = 4) -> bool:
    """Whether every group of ``m`` consecutive entries along the last (flattened) dimension of
    ``mask`` keeps at most ``n`` (the pattern 2:4 sparse tensor cores need)."""
    if mask.shape[-1] % m:
        return False
    keep = (mask != 0).reshape(-1, m)
    return bool((keep.sum(1) <= n).all())


def semi_structured_available(device=None) -> bool:
    """Whether ``torch.sparse.to_sparse_semi_structured`` can run on ``device`` (default: the
    current CUDA device): an NVIDIA GPU of compute capability >= 8.0 and a torch build with it."""
    if not torch.cuda.is_available() or not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return False
    device = torch.device(device) if device is not None else torch.device("cuda")
    if device.type != "cuda" or torch.version.hip is not None:
        return False
    return torch.cuda.get_device_capability(device)[0] >= 8


def to_semi_structured(weight: Tensor, mask: Optional[Tensor] = None):
    """``weight * mask`` as a ``torch.sparse.SparseSemiStructuredTensor`` (2:4) for ``F.linear``.

    Raises ``RuntimeError`` where no supported GPU is present and ``ValueError`` when the mask
    is not 2:4 along the input dimension.
    """
    op = "to_semi_structured"
    keep = weight_mask(weight, mask, op)
    if weight.dim() != 2:
        raise ValueError(f"{op}: weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    if not semi_structured_available(weight.device):
        raise RuntimeError(f"{op}: 2:4 semi-structured sparsity needs an NVIDIA GPU with compute "
                           f"capability >= 8.0 (weight is on {weight.device})")
    if not is_n_m(keep, 2, 4):
        raise ValueError(f"{op}: the mask must keep at most 2 of every 4 consecutive inputs")
    return torch.sparse.to_sparse_semi_structured((weight.detach() * keep).contiguous())
