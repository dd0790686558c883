import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run the test with one torch thread (the demos' default), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
