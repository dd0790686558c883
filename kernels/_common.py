"""Host-side pieces shared by the Triton launchers: dtypes, accumulation type, the checks every
launcher makes, and the launch itself (interpreter or GPU)."""
import triton
import triton.language as tl

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)


@triton.jit
def _probe():
    pass


# True when Triton runs kernels in its interpreter (TRITON_INTERPRET=1 when it was imported):
# then CPU tensors work, and launchers use small fixed tiles instead of autotuning.
INTERPRETED = not isinstance(_probe, triton.runtime.JITFunction)


def acc_dtype(dtype: torch.dtype):
    """Accumulate in float64 for float64, in float32 otherwise."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def check_csr_index(op: str, rowptr, col, num_rows: int) -> None:
    """``rowptr`` (num_rows + 1,) and ``col`` 1-D, both int32 or both int64."""
    if rowptr.dim() != 1 or col.dim() != 1:
        raise ValueError(f"{op}: rowptr and col must be 1-D, got shapes "
                         f"{tuple(rowptr.shape)} and {tuple(col.shape)}")
    if rowptr.dtype not in INDEX_DTYPES or col.dtype != rowptr.dtype:
        raise TypeError(f"{op}: rowptr and col must both be int32 or both int64, "
                        f"got {rowptr.dtype} and {col.dtype}")
    if num_rows < 0 or rowptr.numel() != num_rows + 1:
        raise ValueError(f"{op}: rowptr.numel() must be num_rows + 1 = {num_rows + 1}, "
                         f"got {rowptr.numel()}")


def check_device(op: str, device: torch.device, **tensors) -> None:
    """Every given tensor (None skipped) on ``device``; CPU only in the interpreter."""
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError(f"{op}: {name} is on {t.device}, expected {device}")
    if device.type == "cpu" and not INTERPRETED:
        raise RuntimeError(f"{op}: Triton needs GPU tensors, or TRITON_INTERPRET=1 set before "
                           "triton is imported to run CPU tensors in the interpreter")


def launch(kernel, grid, device: torch.device, *args, **meta) -> None:
    """``kernel[grid](*args, **meta)``, on ``device``'s GPU unless interpreted."""
    if INTERPRETED:
        kernel[grid](*args, **meta)
    else:
        with torch.cuda.device(device):
            kernel[grid](*args, **meta)
