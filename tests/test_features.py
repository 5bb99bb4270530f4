from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtmobile_train.data.corpus import Segment
from rtmobile_train.data.phones import PHONE39_INDEX
from rtmobile_train.features import (
    ContextStacker,
    FbankConfig,
    FeatureError,
    FeatureStats,
    StreamingFbank,
    compute_fbank,
    frame_labels,
    phone_sequence,
    stack_context,
)


def _audio(seconds: float = 1.0, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """A chirp in noise: every mel band gets energy that changes over time."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    return (chirp + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("num_mel_bins", [23, 40, 80])
def test_offline_shape_and_frame_count(num_mel_bins: int) -> None:
    cfg = FbankConfig(num_mel_bins=num_mel_bins)
    x = _audio(1.0)
    f = compute_fbank(x, cfg)
    assert f.shape == (cfg.num_frames(len(x)), num_mel_bins) == (98, num_mel_bins)
    assert f.dtype == np.float32
    assert np.isfinite(f).all()


@pytest.mark.parametrize("n", [0, 1, 399, 400, 559, 560])
def test_frame_count_snip_edges(n: int) -> None:
    cfg = FbankConfig()
    assert len(compute_fbank(np.zeros(n, np.float32) + 1e-3, cfg)) == cfg.num_frames(n)
    assert cfg.num_frames(n) == (0 if n < 400 else 1 + (n - 400) // 160)


@pytest.mark.parametrize("chunk", [1, 7, 160, 399, 400, 1001, "random"])
def test_streaming_equals_offline(chunk: int | str) -> None:
    x = _audio(0.5 if chunk == 1 else 2.0, seed=3)
    offline = compute_fbank(x)
    rng = np.random.default_rng(0)
    s = StreamingFbank()
    out, pos = [], 0
    while pos < len(x):
        k = int(rng.integers(1, 2000)) if chunk == "random" else int(chunk)
        out.append(s.accept(x[pos : pos + k]))
        pos += k
        assert s.num_frames == sum(len(o) for o in out)
    out.append(s.finish())
    np.testing.assert_array_equal(np.concatenate(out), offline)


def test_streaming_emits_frames_as_soon_as_complete() -> None:
    s = StreamingFbank()
    x = _audio(0.1)
    assert len(s.accept(x[:399])) == 0
    assert len(s.accept(x[399:400])) == 1
    assert len(s.accept(x[400:560])) == 1
    with pytest.raises(FeatureError, match="after finish"):
        s.finish()
        s.accept(x)


def test_int16_input_matches_float_input() -> None:
    x = _audio(0.5)
    pcm = np.round(x * 32768).astype(np.int16)
    np.testing.assert_allclose(
        compute_fbank(pcm), compute_fbank(pcm.astype(np.float32) / 32768), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((2, 100), np.float32), "mono 1-D"),
        (np.zeros(100, np.int32), "dtype int32"),
        (np.full(500, np.nan, np.float32), "NaN"),
    ],
)
def test_bad_samples(bad: np.ndarray, match: str) -> None:
    with pytest.raises(FeatureError, match=match):
        compute_fbank(bad)


def test_config_errors_and_round_trip() -> None:
    with pytest.raises(FeatureError, match="sample_rate"):
        FbankConfig(sample_rate=0)
    with pytest.raises(FeatureError, match="frame_shift_ms"):
        FbankConfig(frame_shift_ms=30)
    with pytest.raises(FeatureError, match="8000 Hz"):
        compute_fbank(_audio(0.1), sample_rate=8000)
    cfg = FbankConfig(num_mel_bins=64)
    assert FbankConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(FeatureError, match="FbankConfig has unknown fields"):
        FbankConfig.from_dict({"nfft": 512})


# ------------------------------------------------------------------------------------ context


def _splice_reference(x: np.ndarray, left: int, right: int) -> np.ndarray:
    t = len(x)
    return np.stack(
        [np.concatenate([x[min(max(i + o, 0), t - 1)] for o in range(-left, right + 1)])
         for i in range(t)]
    )  # fmt: skip


@pytest.mark.parametrize(("left", "right"), [(0, 0), (5, 5), (3, 0), (0, 2), (7, 7)])
@pytest.mark.parametrize("t", [1, 4, 30])
def test_stack_context(left: int, right: int, t: int) -> None:
    x = np.random.default_rng(t).standard_normal((t, 3)).astype(np.float32)
    got = stack_context(x, left, right)
    assert got.shape == (t, 3 * (left + 1 + right))
    np.testing.assert_array_equal(got, _splice_reference(x, left, right))


def test_stack_context_paper_input_is_440() -> None:
    assert stack_context(np.zeros((10, 40), np.float32), 5, 5).shape == (10, 440)
    assert stack_context(np.zeros((0, 40), np.float32)).shape == (0, 440)


@pytest.mark.parametrize("chunk", [1, 2, 5, 13, 100])
@pytest.mark.parametrize(("left", "right"), [(5, 5), (2, 0), (0, 3)])
def test_streaming_context_equals_offline(chunk: int, left: int, right: int) -> None:
    x = np.random.default_rng(chunk).standard_normal((37, 4)).astype(np.float32)
    cs = ContextStacker(4, left, right)
    parts = [cs.accept(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    parts.append(cs.finish())
    np.testing.assert_array_equal(np.concatenate(parts), stack_context(x, left, right))


def test_stack_context_errors() -> None:
    with pytest.raises(FeatureError, match=r"\[T, F\]"):
        stack_context(np.zeros(5))
    with pytest.raises(FeatureError, match="non-negative"):
        stack_context(np.zeros((5, 2)), -1, 0)
    with pytest.raises(FeatureError, match=r"\[n, 4\]"):
        ContextStacker(4).accept(np.zeros((2, 3)))


# ------------------------------------------------------------------------------------ stats


def test_stats_match_numpy() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(3.0, 2.0, (n, 5)) for n in (1, 17, 300, 0, 42)]
    st = FeatureStats(5)
    for p in parts:
        st.accumulate(p)
    allx = np.concatenate(parts)
    assert st.count == len(allx)
    np.testing.assert_allclose(st.mean, allx.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(st.var, allx.var(axis=0), rtol=1e-10)
    z = st.normalize(allx)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)


def test_stats_merge_equals_one_pass() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 3)), rng.normal(5, 3, size=(70, 3))
    merged = FeatureStats(3).accumulate(a).merge(FeatureStats(3).accumulate(b))
    one = FeatureStats(3).accumulate(np.concatenate([a, b]))
    np.testing.assert_allclose(merged.mean, one.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.var, one.var, rtol=1e-12)


def test_stats_stable_with_large_offset() -> None:
    # a naive sum-of-squares loses this variance to cancellation
    rng = np.random.default_rng(2)
    x = 1e8 + rng.normal(0, 1e-2, (20000, 2))
    st = FeatureStats(2)
    for i in range(0, len(x), 999):
        st.accumulate(x[i : i + 999])
    np.testing.assert_allclose(st.var, x.var(axis=0), rtol=1e-6)


def test_stats_save_load_tile(tmp_path: Path) -> None:
    st = FeatureStats(4).accumulate(np.random.default_rng(3).normal(size=(20, 4)))
    back = FeatureStats.load(st.save(tmp_path / "stats.npz"))
    assert back.count == st.count
    np.testing.assert_allclose(back.mean, st.mean)
    np.testing.assert_allclose(back.var, st.var)
    tiled = st.tile(11)
    assert tiled.dim == 44
    np.testing.assert_array_equal(tiled.mean[4:8], st.mean)
    np.testing.assert_allclose(tiled.var[40:], st.var)
    d = st.to_dict()
    assert set(d) == {"dim", "count", "mean", "var"}


def test_stats_errors(tmp_path: Path) -> None:
    st = FeatureStats(3)
    with pytest.raises(FeatureError, match="no frames"):
        _ = st.mean
    with pytest.raises(FeatureError, match=r"\[T, 3\]"):
        st.accumulate(np.zeros((4, 2)))
    with pytest.raises(FeatureError, match="merge"):
        st.merge(FeatureStats(2))
    with pytest.raises(FeatureError, match="positive"):
        FeatureStats(0)
    with pytest.raises(FeatureError, match="bad statistics"):
        FeatureStats.from_arrays(np.zeros(3), -np.ones(3), 5)
    (tmp_path / "x.npz").write_bytes(b"junk")
    with pytest.raises(FeatureError, match="not a FeatureStats file"):
        FeatureStats.load(tmp_path / "x.npz")


# ------------------------------------------------------------------------------------ labels

_SEGS = [Segment("sil", 0.0, 0.1), Segment("sh", 0.1, 0.215), Segment("iy", 0.215, 0.3)]


def test_frame_labels_use_frame_centres() -> None:
    cfg = FbankConfig()
    n = cfg.num_frames(int(0.3 * 16000))  # 28 frames, centres at 12.5 ms + 10 ms * i
    lab = frame_labels(_SEGS, n, cfg)
    centres = 0.0125 + 0.01 * np.arange(n)
    want = np.where(centres < 0.1, 0, np.where(centres < 0.215, 1, 2))
    ids = np.array([PHONE39_INDEX[p] for p in ("sil", "sh", "iy")])
    np.testing.assert_array_equal(lab, ids[want])
    assert lab.dtype == np.int64
    assert len(frame_labels(_SEGS, 0, cfg)) == 0


def test_phone_sequence() -> None:
    np.testing.assert_array_equal(
        phone_sequence(_SEGS), [PHONE39_INDEX["sil"], PHONE39_INDEX["sh"], PHONE39_INDEX["iy"]]
    )
    with pytest.raises(FeatureError, match="'ao' is not in the label set"):
        phone_sequence([Segment("ao", 0, 1)])


def test_frame_labels_errors() -> None:
    with pytest.raises(FeatureError, match="beyond the last segment"):
        frame_labels(_SEGS, 40)
    with pytest.raises(FeatureError, match="no segments"):
        frame_labels([], 3)
