"""The runtime against torch.nn.GRU/LSTM + nn.Linear with the same BSP-pruned weights.

Tolerances: max abs logit error <= 1e-4 with f32 weights, <= 1e-2 with f16 weights (the
runtime computes in f32; the only extra error is the weights' rounding to f16).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import rtmobile_rt
from runtime_models import export, make_model

SHAPES = [  # input, hidden, layers, classes
    (13, 17, 1, 5),
    (40, 64, 2, 41),
    (7, 33, 3, 10),
    (64, 31, 2, 39),
]
PRUNING = [  # (num_r, num_c), compression rate
    ((1, 1), 1.0),
    ((4, 2), 4.0),
    ((8, 4), 10.0),
    ((3, 1), 2.0),
]


def frames(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("pruning", PRUNING, ids=lambda p: f"{p[0][0]}x{p[0][1]}@{p[1]:g}")
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_gru_matches_torch(
    shape: tuple[int, int, int, int], pruning: tuple[tuple[int, int], float], dtype: str
) -> None:
    (num_r, num_c), rate = pruning
    model = make_model(*shape, blocks=(num_r, num_c), rate=rate, seed=sum(shape))
    session = rtmobile_rt.Session(export(model, blocks=(num_r, num_c), dtype=dtype), threads=2)
    x = frames(83, shape[0])
    err = np.abs(session.run(x) - model.logits(x)).max()
    assert err <= (1e-4 if dtype == "f32" else 1e-2), err
    if rate > 1:
        assert session.info["compression_rate"] > 1.5


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_lstm_matches_torch(dtype: str) -> None:
    model = make_model(11, 24, 2, 9, kind="lstm", blocks=(6, 2), rate=4.0, seed=3)
    session = rtmobile_rt.Session(export(model, blocks=(6, 2), dtype=dtype), threads=1)
    x = frames(50, 11)
    assert session.info["kind"] == "lstm"
    err = np.abs(session.run(x) - model.logits(x)).max()
    assert err <= (1e-4 if dtype == "f32" else 1e-2), err


def test_normalization_is_applied_like_torch() -> None:
    model = make_model(20, 32, 2, 12, blocks=(4, 2), rate=4.0, seed=5, norm=True)
    session = rtmobile_rt.Session(export(model, blocks=(4, 2)))
    x = frames(40, 20) * 3 + 1
    assert session.info["has_normalization"]
    assert np.abs(session.run(x) - model.logits(x)).max() <= 1e-4


@pytest.fixture(scope="module")
def pruned_bytes() -> tuple[bytes, np.ndarray, np.ndarray]:
    model = make_model(40, 48, 2, 20, blocks=(8, 2), rate=10.0, seed=9)
    x = frames(150, 40, seed=2)
    return export(model, blocks=(8, 2)), x, model.logits(x)


@pytest.mark.parametrize("isa", rtmobile_rt.available_isas())
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_isa_and_thread_count_agrees(
    pruned_bytes: tuple[bytes, np.ndarray, np.ndarray], isa: str, threads: int
) -> None:
    data, x, _ = pruned_bytes
    reference = rtmobile_rt.Session(data, threads=1, isa="scalar").run(x)
    session = rtmobile_rt.Session(data, threads=threads, isa=isa)
    assert session.info["isa"] == isa and session.info["threads"] == threads
    np.testing.assert_allclose(session.run(x), reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 16, 63, 64, 65, 150])
@pytest.mark.parametrize("isa", rtmobile_rt.available_isas())
def test_streaming_equals_offline_for_any_chunk_size(
    pruned_bytes: tuple[bytes, np.ndarray, np.ndarray], chunk: int, isa: str
) -> None:
    data, x, _ = pruned_bytes
    session = rtmobile_rt.Session(data, threads=2, isa=isa)
    offline = session.run(x)
    stream = session.stream()
    pieces = [stream.push(x[t : t + chunk]) for t in range(0, len(x), chunk)]
    assert stream.frames_seen == len(x)
    # Bit-identical by construction: every output is accumulated in the same order.
    assert np.array_equal(np.concatenate(pieces), offline)


def test_uneven_chunks_reset_and_independent_streams(
    pruned_bytes: tuple[bytes, np.ndarray, np.ndarray],
) -> None:
    data, x, want = pruned_bytes
    session = rtmobile_rt.Session(data, threads=2)
    a, b = session.stream(), session.stream()
    bounds = [0, 1, 4, 5, 37, 38, 100, 150]
    out_a = [a.push(x[s:e]) for s, e in itertools.pairwise(bounds)]
    out_b = b.push(x[::-1].copy())  # a second stream does not disturb the first
    assert np.abs(np.concatenate(out_a) - want).max() <= 1e-4
    assert out_b.shape == (150, 20)
    a.reset()
    assert a.frames_seen == 0
    assert np.array_equal(a.push(x[:10]), session.run(x[:10]))


def test_run_does_not_carry_state_between_calls(
    pruned_bytes: tuple[bytes, np.ndarray, np.ndarray],
) -> None:
    data, x, _ = pruned_bytes
    session = rtmobile_rt.Session(data)
    first = session.run(x)
    assert np.array_equal(session.run(x), first)


def test_info_describes_the_model(pruned_bytes: tuple[bytes, np.ndarray, np.ndarray]) -> None:
    data, _, _ = pruned_bytes
    info = rtmobile_rt.Session(data, threads=1).info
    assert info["kind"] == "gru"
    assert (info["input_dim"], info["hidden_dims"], info["output_dim"]) == (40, [48, 48], 20)
    names = [m["name"] for m in info["matrices"]]
    assert names == ["l0.w_ih", "l0.w_hh", "l1.w_ih", "l1.w_hh", "out.w"]
    dense = 144 * 40 + 144 * 48 + 144 * 48 + 144 * 48 + 20 * 48
    assert info["dense_weights"] == dense
    assert info["compression_rate"] == pytest.approx(dense / info["stored_weights"])
    assert 6 < info["compression_rate"] < 14
    assert info["isa"] in rtmobile_rt.available_isas()
    assert len(info["labels"]) == 20
