"""Log-mel filterbank features, one code path for offline and streaming, plus labels and CMVN.

Offline extraction is the streaming extractor fed the whole waveform, so a model trained on
offline features sees exactly what the streaming runtime computes chunk by chunk. Features
follow Kaldi's fbank (kaldi-native-fbank): 25 ms Povey window, 10 ms hop, ``snip_edges`` (a
frame exists only once its whole window has arrived, which is what streaming needs), no dither
(so features are deterministic), waveform scaled to the int16 range as Kaldi expects.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import kaldi_native_fbank as knf
import numpy as np

from .data.corpus import Segment
from .data.phones import PHONE39_INDEX

__all__ = [
    "ContextStacker",
    "FbankConfig",
    "FeatureError",
    "FeatureSpec",
    "FeatureStats",
    "StreamingFbank",
    "compute_fbank",
    "frame_labels",
    "phone_sequence",
    "stack_context",
]

_INT16_SCALE = 32768.0


class FeatureError(ValueError):
    """Bad input to feature extraction (wrong rate, shape, dtype, or inconsistent statistics)."""


@dataclass(frozen=True)
class FbankConfig:
    """Filterbank options; stored in model files so the runtime extracts the same features."""

    sample_rate: int = 16000
    num_mel_bins: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0 means Nyquist + high_freq, as in Kaldi
    preemph_coeff: float = 0.97
    window_type: str = "povey"

    def __post_init__(self) -> None:
        _check_fbank(asdict(self), "FbankConfig")

    @property
    def window_samples(self) -> int:
        return round(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def shift_samples(self) -> int:
        return round(self.sample_rate * self.frame_shift_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples (Kaldi snip_edges: whole windows only)."""
        if num_samples < self.window_samples:
            return 0
        return 1 + (num_samples - self.window_samples) // self.shift_samples

    def frame_centers(self, num_frames: int) -> np.ndarray:
        """Centre time in seconds of each frame; a frame is labelled by the phone there."""
        start = np.arange(num_frames, dtype=np.float64) * self.shift_samples
        return (start + self.window_samples / 2) / self.sample_rate

    def knf_options(self) -> knf.FbankOptions:
        o = knf.FbankOptions()
        fo = o.frame_opts
        fo.samp_freq = float(self.sample_rate)
        fo.frame_length_ms = float(self.frame_length_ms)
        fo.frame_shift_ms = float(self.frame_shift_ms)
        fo.dither = 0.0
        fo.snip_edges = True
        fo.preemph_coeff = float(self.preemph_coeff)
        fo.window_type = self.window_type
        fo.remove_dc_offset = True
        o.mel_opts.num_bins = int(self.num_mel_bins)
        o.mel_opts.low_freq = float(self.low_freq)
        o.mel_opts.high_freq = float(self.high_freq)
        o.use_energy = False
        o.use_log_fbank = True
        o.use_power = True
        return o

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "FbankConfig") -> FbankConfig:
        """The config stored as ``d`` (e.g. in a model file); ``where`` names ``d`` in errors."""
        if not isinstance(d, Mapping):
            raise FeatureError(f"{where} must be a mapping of fbank options, got {d!r}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise FeatureError(f"{where} has unknown fields {sorted(unknown)}")
        _check_fbank({**asdict(cls()), **d}, where)
        return cls(**d)


def _check_fbank(values: Mapping[str, Any], where: str) -> None:
    """Name the first bad fbank option: which one, what it must be and what it is."""
    for f in fields(FbankConfig):
        value, kind = values[f.name], type(f.default)
        if kind is str:
            ok, expected = isinstance(value, str), "a string"
        elif isinstance(value, bool):
            ok, expected = False, "an int" if kind is int else "a finite number"
        elif kind is int:
            ok, expected = isinstance(value, numbers.Integral), "an int"
        else:
            ok = isinstance(value, numbers.Real) and math.isfinite(value)
            expected = "a finite number"
        if not ok:
            raise FeatureError(f"{where}.{f.name} must be {expected}, got {value!r}")
    for name in ("sample_rate", "num_mel_bins", "frame_length_ms"):
        if values[name] <= 0:
            raise FeatureError(f"{where}.{name} must be > 0, got {values[name]!r}")
    length, shift = values["frame_length_ms"], values["frame_shift_ms"]
    if not 0 < shift <= length:
        raise FeatureError(
            f"{where}.frame_shift_ms must be > 0 and <= frame_length_ms ({length!r}), got {shift!r}"
        )


@dataclass(frozen=True)
class FeatureSpec:
    """A model's input: fbank frames spliced with ``left``/``right`` neighbours.

    Training checkpoints store it and the exporter writes it to the BSPC METADATA as
    ``{"features": {"fbank": {...}, "context": [left, right]}}``, which is what lets the
    runtime turn audio into the model's input (``rtmobile_rt.transcribe``).
    """

    fbank: FbankConfig = field(default_factory=FbankConfig)
    left: int = 0
    right: int = 0

    def __post_init__(self) -> None:
        for name in ("left", "right"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FeatureError(f"FeatureSpec.{name} must be an int >= 0, got {value!r}")

    @property
    def context(self) -> tuple[int, int]:
        return (self.left, self.right)

    @property
    def input_dim(self) -> int:
        return self.fbank.num_mel_bins * (self.left + 1 + self.right)

    def stack(self, feats: np.ndarray) -> np.ndarray:
        """Fbank [T, num_mel_bins] -> model input [T, input_dim]."""
        return stack_context(feats, self.left, self.right) if self.left or self.right else feats

    def to_dict(self) -> dict[str, Any]:
        return {"fbank": self.fbank.to_dict(), "context": [self.left, self.right]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "feature spec") -> FeatureSpec:
        """The spec stored as ``d`` (a checkpoint's, a model file's METADATA ``features``);
        ``where`` names ``d`` in errors, which say which field is wrong, what it must be and
        what it is."""
        if not isinstance(d, Mapping):
            raise FeatureError(
                f"{where} must be a mapping {{'fbank': {{...}}, 'context': [left, right]}}, "
                f"got {d!r}"
            )
        unknown = set(d) - {"fbank", "context"}
        if unknown:
            raise FeatureError(f"{where} has unknown fields {sorted(unknown)}")
        if "fbank" not in d:
            raise FeatureError(f"{where} has no 'fbank' entry (the fbank options)")
        fbank = FbankConfig.from_dict(d["fbank"], f"{where}.fbank")
        context = d.get("context", (0, 0))
        if (
            not isinstance(context, (list, tuple))
            or len(context) != 2
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in context)
        ):
            raise FeatureError(
                f"{where}.context must be [left, right], two ints >= 0, got {context!r}"
            )
        return cls(fbank, *context)


def _as_samples(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise FeatureError(f"expected mono 1-D samples, got shape {x.shape}")
    if x.dtype == np.int16:
        return x.astype(np.float32)
    if not np.issubdtype(x.dtype, np.floating):
        raise FeatureError(f"expected float samples in [-1, 1] or int16, got dtype {x.dtype}")
    if x.size and not np.isfinite(x).all():
        raise FeatureError("samples contain NaN or inf")
    return (x * _INT16_SCALE).astype(np.float32)


class StreamingFbank:
    """Incremental fbank: feed chunks of any size, get the frames that became complete.

    Float input is in [-1, 1]; int16 input is taken as is. Completed frames are popped from
    the underlying extractor, so memory stays bounded on endless streams.
    """

    def __init__(self, config: FbankConfig | None = None) -> None:
        self.config = config or FbankConfig()
        self._fbank = knf.OnlineFbank(self.config.knf_options())
        self._next = 0  # absolute index of the next frame to hand out
        self._finished = False

    @property
    def num_frames(self) -> int:
        """Frames handed out so far."""
        return self._next

    def _drain(self) -> np.ndarray:
        ready = self._fbank.num_frames_ready
        n = ready - self._next
        out = np.empty((max(n, 0), self.config.num_mel_bins), dtype=np.float32)
        for k in range(n):
            out[k] = self._fbank.get_frame(self._next + k)
        if n > 0:
            self._fbank.pop(n)
            self._next = ready
        return out

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; return the new complete frames, shape [n, num_mel_bins]."""
        if self._finished:
            raise FeatureError("StreamingFbank.accept after finish()")
        x = _as_samples(samples)
        if x.size:
            self._fbank.accept_waveform(float(self.config.sample_rate), x)
        return self._drain()

    def finish(self) -> np.ndarray:
        """End of input; return any last frames (none with snip_edges, kept for clarity)."""
        if not self._finished:
            self._fbank.input_finished()
            self._finished = True
        return self._drain()


def compute_fbank(
    samples: np.ndarray, config: FbankConfig | None = None, *, sample_rate: int | None = None
) -> np.ndarray:
    """Offline log-mel features [T, num_mel_bins] float32: the streaming extractor, fed once."""
    config = config or FbankConfig()
    if sample_rate is not None and sample_rate != config.sample_rate:
        raise FeatureError(
            f"audio is {sample_rate} Hz but features are configured for {config.sample_rate} Hz"
        )
    s = StreamingFbank(config)
    a = s.accept(samples)
    b = s.finish()
    return np.concatenate([a, b]) if len(b) else a


def stack_context(feats: np.ndarray, left: int = 5, right: int = 5) -> np.ndarray:
    """Splice each frame with ``left``/``right`` neighbours ([T, F] -> [T, F*(left+1+right)]),
    repeating the edge frames (Kaldi splice-feats); ±5 on 40-d fbank gives the paper's 440-d."""
    x = np.asarray(feats)
    if x.ndim != 2:
        raise FeatureError(f"expected features [T, F], got shape {x.shape}")
    if left < 0 or right < 0:
        raise FeatureError(f"context must be non-negative, got left={left} right={right}")
    t = x.shape[0]
    if t == 0:
        return np.empty((0, x.shape[1] * (left + 1 + right)), dtype=x.dtype)
    idx = np.clip(np.arange(t)[:, None] + np.arange(-left, right + 1)[None, :], 0, t - 1)
    return x[idx].reshape(t, -1)


class ContextStacker:
    """Streaming ``stack_context``: emits frame i once frame i+right has arrived, and the last
    ``right`` frames at ``finish()``; its output equals ``stack_context`` on the whole input."""

    def __init__(self, dim: int, left: int = 5, right: int = 5) -> None:
        if left < 0 or right < 0 or dim <= 0:
            raise FeatureError(f"bad ContextStacker(dim={dim}, left={left}, right={right})")
        self.dim, self.left, self.right = dim, left, right
        self._buf = np.empty((0, dim), dtype=np.float32)  # frames still needed as context
        self._first = 0  # absolute index of _buf[0]
        self._next = 0  # absolute index of the next frame to emit
        self._total = 0

    def _emit(self, upto: int) -> np.ndarray:
        """Emit frames [_next, upto), with the current buffer as the whole known context."""
        if upto <= self._next:
            return np.empty((0, self.dim * (self.left + 1 + self.right)), dtype=np.float32)
        offs = np.arange(-self.left, self.right + 1)
        rows = np.arange(self._next, upto)[:, None] + offs[None, :]
        rows = np.clip(rows, 0, self._total - 1) - self._first
        out = self._buf[rows].reshape(upto - self._next, -1)
        self._next = upto
        drop = max(0, self._next - self.left - self._first)
        self._buf = self._buf[drop:]
        self._first += drop
        return out

    def accept(self, frames: np.ndarray) -> np.ndarray:
        f = np.asarray(frames, dtype=np.float32)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise FeatureError(f"expected frames [n, {self.dim}], got shape {f.shape}")
        self._buf = np.concatenate([self._buf, f])
        self._total += len(f)
        return self._emit(max(self._next, self._total - self.right))

    def finish(self) -> np.ndarray:
        return self._emit(self._total)


class FeatureStats:
    """Per-dimension mean and variance over a corpus, accumulated utterance by utterance.

    Uses Chan et al.'s pairwise update (count, mean, M2) in float64, so millions of frames with
    large means do not lose the variance to cancellation. The result is stored in the model
    file: the runtime normalises with exactly the statistics the model was trained with.
    """

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise FeatureError(f"FeatureStats dim must be positive, got {dim}")
        self.dim = dim
        self.count = 0
        self._mean = np.zeros(dim, dtype=np.float64)
        self._m2 = np.zeros(dim, dtype=np.float64)

    def _merge(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if n == 0:
            return
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def accumulate(self, feats: np.ndarray) -> FeatureStats:
        """Add frames [T, dim]; returns self so calls can be chained."""
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise FeatureError(f"expected features [T, {self.dim}], got shape {x.shape}")
        if len(x):
            m = x.mean(axis=0)
            self._merge(len(x), m, ((x - m) ** 2).sum(axis=0))
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold in statistics gathered elsewhere (e.g. by another worker)."""
        if other.dim != self.dim:
            raise FeatureError(f"cannot merge FeatureStats of dim {other.dim} into {self.dim}")
        self._merge(other.count, other._mean, other._m2)
        return self

    def _need_data(self) -> None:
        if self.count == 0:
            raise FeatureError("FeatureStats has no frames yet")

    @property
    def mean(self) -> np.ndarray:
        self._need_data()
        return self._mean.copy()

    @property
    def var(self) -> np.ndarray:
        """Population variance (divide by N), as CMVN uses."""
        self._need_data()
        return self._m2 / self.count

    def normalize(self, feats: np.ndarray, *, var_floor: float = 1e-8) -> np.ndarray:
        """(x - mean) / sqrt(max(var, var_floor)), as float32."""
        x = np.asarray(feats)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise FeatureError(f"expected features [T, {self.dim}], got shape {x.shape}")
        scale = 1.0 / np.sqrt(np.maximum(self.var, var_floor))
        return ((x - self.mean) * scale).astype(np.float32)

    def tile(self, copies: int) -> FeatureStats:
        """Statistics of ``copies`` stacked frames (context stacking repeats each dimension)."""
        out = FeatureStats(self.dim * copies)
        out.count = self.count
        out._mean = np.tile(self._mean, copies)
        out._m2 = np.tile(self._m2, copies)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"dim": self.dim, "count": self.count, "mean": self.mean, "var": self.var}

    @classmethod
    def from_arrays(cls, mean: np.ndarray, var: np.ndarray, count: int) -> FeatureStats:
        mean = np.asarray(mean, dtype=np.float64)
        var = np.asarray(var, dtype=np.float64)
        if mean.ndim != 1 or mean.shape != var.shape or count <= 0 or (var < 0).any():
            raise FeatureError(f"bad statistics: mean {mean.shape}, var {var.shape}, count {count}")
        out = cls(len(mean))
        out.count, out._mean, out._m2 = int(count), mean.copy(), var * count
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        np.savez(path, mean=self.mean, var=self.var, count=np.int64(self.count))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureStats:
        try:
            with np.load(path) as z:
                return cls.from_arrays(z["mean"], z["var"], int(z["count"]))
        except (OSError, KeyError, ValueError) as e:
            if isinstance(e, FeatureError):
                raise
            raise FeatureError(f"{path}: not a FeatureStats file ({e})") from e


def frame_labels(
    segments: Sequence[Segment],
    num_frames: int,
    config: FbankConfig | None = None,
    phone_index: Mapping[str, int] = PHONE39_INDEX,
) -> np.ndarray:
    """Phone index per frame [num_frames] int64: the segment that holds the frame's centre.

    Centres past the last segment end (can only happen on inconsistent input) are an error.
    """
    config = config or FbankConfig()
    if not segments:
        raise FeatureError("no segments to label frames from")
    ends = np.array([s.end for s in segments], dtype=np.float64)
    if (np.diff(ends) < 0).any():
        raise FeatureError("segment end times are not non-decreasing")
    centres = config.frame_centers(num_frames)
    if num_frames and centres[-1] > ends[-1] + 1e-9:
        raise FeatureError(
            f"frame centre {centres[-1]:.4f}s lies beyond the last segment end {ends[-1]:.4f}s"
        )
    which = np.searchsorted(ends, centres, side="right")
    which = np.minimum(which, len(segments) - 1)
    ids = np.array(_indices((s.phone for s in segments), phone_index), dtype=np.int64)
    return ids[which]


def phone_sequence(
    segments: Iterable[Segment], phone_index: Mapping[str, int] = PHONE39_INDEX
) -> np.ndarray:
    """Phone indices in order [L] int64: the CTC target of an utterance."""
    return np.array(_indices((s.phone for s in segments), phone_index), dtype=np.int64)


def _indices(phones: Iterable[str], phone_index: Mapping[str, int]) -> list[int]:
    out = []
    for p in phones:
        try:
            out.append(phone_index[p])
        except KeyError:
            raise FeatureError(f"phone {p!r} is not in the label set") from None
    return out
