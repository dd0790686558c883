import os

# Triton kernels run on CPU tensors through the interpreter; it is read once, at import.
os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=30, deadline=None, database=None)
settings.load_profile("ci")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (end-to-end runs are deterministic and do not wait on
    descheduled threads of a shared machine); the previous count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
