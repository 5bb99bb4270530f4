"""Speech in, phones out: online fbank -> BSP GRU stream -> greedy decode, chunk by chunk.

The model file says how its features were made (METADATA ``features``: the fbank options and
the context frames), so any exported model can be used with no other configuration. Offline
transcription uses the same extractor fed once, so both give the same phones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import kaldi_native_fbank as knf
import numpy as np

from rtmobile_rt.session import Session
from rtmobile_train.features import ContextStacker, StreamingFbank, compute_fbank
from rtmobile_train.features import FeatureSpec as _FeatureSpec


class TranscribeError(ValueError):
    """The model or the audio cannot be transcribed (no feature config, wrong rate, ...)."""


class FeatureSpec(_FeatureSpec):
    """The model file's feature configuration (METADATA ``features``)."""

    @classmethod
    def from_session(cls, session: Session) -> FeatureSpec:
        features = session.metadata.get("features")
        if features is None:
            raise TranscribeError(
                "the model carries no feature configuration (METADATA 'features'); "
                "export it with rtmobile_train.export to transcribe audio"
            )
        try:
            spec = cls.from_dict(features, "METADATA features")
        except ValueError as e:  # FeatureError: names the field, what it must be and what it is
            raise TranscribeError(str(e)) from e
        try:  # options of the right types that kaldi-native-fbank still refuses (window type, ...)
            knf.OnlineFbank(spec.fbank.knf_options())
        except ValueError as e:
            raise TranscribeError(
                f"METADATA features.fbank is refused by kaldi-native-fbank: {e}"
            ) from e
        if spec.input_dim != session.input_dim:
            raise TranscribeError(
                f"METADATA features give {spec.fbank.num_mel_bins} x "
                f"{spec.left + 1 + spec.right} = {spec.input_dim} inputs but the model takes "
                f"{session.input_dim}"
            )
        return spec


@dataclass
class Phone:
    label: str
    start: float  # seconds, centre of the first frame of the run
    frame: int


@dataclass
class ChunkResult:
    phones: list[Phone]
    latency_s: float  # compute time for the chunk (features + network + decode)
    frames: int


# The decoder's default minimum run length when a model's METADATA names none; the same value
# as rtmobile_train.evaluate.DEFAULT_MIN_FRAMES, with which the model's PER was measured.
DEFAULT_MIN_FRAMES = 3


def decoder_min_frames(session: Session) -> int:
    """METADATA ``decoder.min_frames`` of the model, else :data:`DEFAULT_MIN_FRAMES`."""
    decoder = session.metadata.get("decoder")
    if decoder is None:
        return DEFAULT_MIN_FRAMES
    if not isinstance(decoder, dict):
        raise TranscribeError(f"METADATA decoder must be a mapping, got {decoder!r}")
    value = decoder.get("min_frames", DEFAULT_MIN_FRAMES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TranscribeError(f"METADATA decoder.min_frames must be an int >= 1, got {value!r}")
    return value


@dataclass
class GreedyDecoder:
    """Argmax per frame; a phone is emitted once its argmax run reaches ``min_frames`` frames
    and differs from the last phone emitted (a frame-wise model's shorter blips are dropped).
    Chunk by chunk this gives exactly ``rtmobile_train.evaluate.collapse(argmax, min_frames)``
    over the whole utterance."""

    labels: list[str]
    frame_shift_s: float
    first_frame_centre_s: float
    min_frames: int = DEFAULT_MIN_FRAMES
    _last: int = -1
    _run_label: int = -1
    _run_len: int = 0
    _run_start: int = 0
    _frame: int = 0
    silence: frozenset[str] = field(default_factory=lambda: frozenset({"sil", "<blank>"}))

    def push(self, logits: np.ndarray) -> list[Phone]:
        out = []
        for k in np.argmax(logits, axis=1) if len(logits) else ():
            k = int(k)
            if k == self._run_label:
                self._run_len += 1
            else:
                self._run_label, self._run_len, self._run_start = k, 1, self._frame
            if self._run_len == self.min_frames and k != self._last:
                self._last = k
                t = self.first_frame_centre_s + self._run_start * self.frame_shift_s
                out.append(Phone(self.labels[k], t, self._run_start))
            self._frame += 1
        return out


class StreamingRecognizer:
    """Feed audio chunks of any size (float in [-1, 1] or int16); get phones as they appear."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.spec = FeatureSpec.from_session(session)
        self._fbank = StreamingFbank(self.spec.fbank)
        self._stacker = (
            ContextStacker(self.spec.fbank.num_mel_bins, self.spec.left, self.spec.right)
            if self.spec.left or self.spec.right
            else None
        )
        self._stream = session.stream()
        cfg = self.spec.fbank
        self.decoder = GreedyDecoder(
            session.labels,
            cfg.frame_shift_ms / 1000,
            cfg.window_samples / 2 / cfg.sample_rate,
            decoder_min_frames(session),
        )
        self.samples_seen = 0

    def _frames(self, feats: np.ndarray, final: bool) -> np.ndarray:
        if self._stacker is None:
            return feats
        out = self._stacker.accept(feats)
        if final:
            out = np.concatenate([out, self._stacker.finish()])
        return out

    def accept(self, samples: np.ndarray) -> ChunkResult:
        t0 = time.perf_counter()
        self.samples_seen += len(samples)
        frames = self._frames(self._fbank.accept(samples), final=False)
        phones = self.decoder.push(self._stream.push(frames)) if len(frames) else []
        return ChunkResult(phones, time.perf_counter() - t0, len(frames))

    def finish(self) -> ChunkResult:
        t0 = time.perf_counter()
        frames = self._frames(self._fbank.finish(), final=True)
        phones = self.decoder.push(self._stream.push(frames)) if len(frames) else []
        return ChunkResult(phones, time.perf_counter() - t0, len(frames))


def check_rate(sample_rate: int, spec: FeatureSpec) -> None:
    if sample_rate != spec.fbank.sample_rate:
        raise TranscribeError(
            f"audio is {sample_rate} Hz but the model expects {spec.fbank.sample_rate} Hz"
        )


def transcribe_offline(session: Session, samples: np.ndarray, sample_rate: int) -> list[Phone]:
    """All phones of an utterance from one offline run (the reference for streaming)."""
    spec = FeatureSpec.from_session(session)
    check_rate(sample_rate, spec)
    feats = spec.stack(compute_fbank(samples, spec.fbank))
    cfg = spec.fbank
    decoder = GreedyDecoder(
        session.labels,
        cfg.frame_shift_ms / 1000,
        cfg.window_samples / 2 / cfg.sample_rate,
        decoder_min_frames(session),
    )
    return decoder.push(session.run(feats))


def chunks(samples: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(samples), size):
        yield samples[start : start + size]


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the rate, via soundfile (wav, flac, ...); at least one sample,
    all finite."""
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        if not os.path.exists(path):
            raise TranscribeError(f"{path}: no such file") from e
        reason = str(getattr(e, "error_string", "")).rstrip(".")
        if os.path.isfile(path) and "not a regular file" in reason:
            # What libsndfile says of a regular file in no format it knows once its MP3
            # probe has failed: "File does not exist or is not a regular file (possibly a
            # pipe?)", which is false here.
            reason = ""
        detail = f" ({reason})" if reason else ""
        raise TranscribeError(f"{path}: not a readable WAV/audio file{detail}") from e
    if not len(data):
        raise TranscribeError(f"{path}: the audio has no samples")
    samples = data.mean(axis=1).astype(np.float32)
    if not np.isfinite(samples).all():
        raise TranscribeError(f"{path}: the audio has NaN or infinite samples")
    return samples, int(rate)
