"""LUT-free sigmoid/tanh of every ISA against float64 numpy: max abs error <= 1e-6 on
[-50, 50], NaN in -> NaN out, infinities saturate to the limits."""

from __future__ import annotations

import numpy as np
import pytest

import rtmobile_rt
from rtmobile_rt._core import _kernels

ISAS = rtmobile_rt.available_isas()


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


@pytest.mark.parametrize("isa", ISAS)
def test_sigmoid_and_tanh_accuracy(isa: str) -> None:
    x = np.linspace(-50, 50, 2_000_001, dtype=np.float32)
    x = np.concatenate([x, np.float32([1e-30, -1e-30, 3e-8, -3e-8])])
    assert np.abs(_kernels.sigmoid(x, isa) - _sigmoid64(x)).max() <= 1e-6
    assert np.abs(_kernels.tanh(x, isa) - np.tanh(x.astype(np.float64))).max() <= 1e-6


@pytest.mark.parametrize("isa", ISAS)
def test_whole_float_range(isa: str) -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    with np.errstate(over="ignore"):
        want_s, want_t = _sigmoid64(x), np.tanh(x.astype(np.float64))
    assert np.abs(_kernels.sigmoid(x, isa) - want_s).max() <= 1e-6
    assert np.abs(_kernels.tanh(x, isa) - want_t).max() <= 1e-6


@pytest.mark.parametrize("isa", ISAS)
def test_special_values(isa: str) -> None:
    x = np.float32([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38, -1e38] + [0.25] * 9)
    s, t = _kernels.sigmoid(x, isa), _kernels.tanh(x, isa)
    assert np.isnan(s[0]) and np.isnan(t[0])
    assert s[1] == 1.0 and 0.0 <= s[2] < 1e-37
    assert t[1] == 1.0 and t[2] == -1.0
    assert s[3] == 0.5 and t[3] == 0.0
    assert s[5] == 1.0 and t[6] == -1.0
    assert not np.isnan(s[1:]).any() and not np.isnan(t[1:]).any()


def test_unknown_isa_is_rejected() -> None:
    with pytest.raises(RuntimeError, match="not available"):
        _kernels.sigmoid(np.zeros(3, np.float32), "nosuch")
