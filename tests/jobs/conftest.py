"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def _restore_process_state():
    """A train job's run() exports RANK/WORLD_SIZE/MASTER_* and sets torch's thread count, as a job
    process should; tests that call it in this interpreter put both back."""
    import torch

    env, threads = dict(os.environ), torch.get_num_threads()
    yield
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(threads)
