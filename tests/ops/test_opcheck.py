"""``torch.library.opcheck`` on the custom ops (schema, fake implementation, autograd
registration, dispatch): one case per op."""
import pytest
import torch

import sparselth
from sparselth.testing import random_csr, test_backends


def test_spgemm():
    A = random_csr(8, 6, 0.4, dtype=torch.float64, power_law=True, seed=1)
    B = random_csr(6, 5, 0.4, dtype=torch.float64, seed=2)
    At, Bt = A.t(), B.t()
    a_val = A.val.clone().requires_grad_(True)
    b_val = B.val.clone().requires_grad_(True)
    grad = torch.randn(8, 5, dtype=torch.float64)
    for b in test_backends():
        args = (A.rowptr, A.col, a_val, B.rowptr, B.col, b_val, At.rowptr, At.col,
                A.csr_to_csc_perm(), Bt.rowptr, Bt.col, B.csr_to_csc_perm(), 5, torch.float64, b)
        torch.library.opcheck(torch.ops.sparselth.spgemm.default, args)
        torch.library.opcheck(torch.ops.sparselth.spgemm_sampled.default,
                              (A.rowptr, A.col, B.rowptr, B.col, B.val, grad, b))
    if "cpp" not in sparselth.backends():
        pytest.skip("the C++ extension is not built")
    torch.library.opcheck(torch.ops.sparselth.spgemm_kernel.default,
                          (A.rowptr, A.col, A.val, B.rowptr, B.col, None, 5, torch.float64))
    torch.library.opcheck(torch.ops.sparselth.spgemm_sampled_kernel.default,
                          (A.rowptr, A.col, B.rowptr, B.col, B.val, grad))
