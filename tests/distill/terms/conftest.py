"""Run the term tests on one thread: their tensors are tiny, and on a shared 2-core machine the
second thread's synchronisation costs far more than it saves."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every term test runs on one thread (tests/conftest.py)."""
