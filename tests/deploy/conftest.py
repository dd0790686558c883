import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _single_thread():
    """Compile times routes; one thread keeps these tests quick on a busy machine (timings are
    never asserted)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
