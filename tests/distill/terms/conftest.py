"""Run the term tests on one thread: their tensors are tiny, and on a shared 2-core machine the
second thread's synchronisation costs far more than it saves."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
