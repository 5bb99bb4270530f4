"""Shared fixtures: tiny torch GRU/LSTM models BSP-pruned and exported to BSPC bytes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _single_torch_thread() -> None:
    # Small models: one torch thread is faster and keeps timings of other tests sane.
    torch.set_num_threads(1)
