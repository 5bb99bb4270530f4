"""Corpus records shared by every data source: utterances with phone segments, and a manifest.

The Festival generator and the TIMIT loader both produce ``Utterance`` records, so the dataset
layer, the feature statistics and the evaluation code need to know only this one shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .phones import PHONE39_INDEX, SILENCE

__all__ = [
    "ManifestError",
    "Segment",
    "SegmentError",
    "Utterance",
    "from_record",
    "load_audio",
    "merge_silences",
    "read_manifest",
    "to_record",
    "validate_segments",
    "write_manifest",
]

MANIFEST_VERSION = 1
AUDIO_FORMATS = ("wav", "sphere")


class ManifestError(ValueError):
    """A manifest file that cannot be read or whose records are malformed."""


class SegmentError(ValueError):
    """Phone segments that are not a gap-free, time-ordered cover of an utterance."""


@dataclass(frozen=True)
class Segment:
    """One phone (a 39-set label) spanning [start, end) seconds."""

    phone: str
    start: float
    end: float


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance; ``audio_path`` is absolute once loaded from a manifest."""

    utt_id: str
    split: str
    speaker: str
    audio_path: Path
    segments: tuple[Segment, ...]
    sample_rate: int = 16000
    num_samples: int = 0
    audio_format: str = "wav"
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def phones(self) -> list[str]:
        return [s.phone for s in self.segments]


def validate_segments(
    segments: Sequence[Segment],
    duration: float | None = None,
    *,
    tol: float = 1e-6,
    where: str = "",
) -> None:
    """Check that segments are known phones, non-empty, contiguous, start at 0 and end at
    ``duration`` (when given). Raises SegmentError naming ``where``."""
    ctx = f" in {where}" if where else ""
    if not segments:
        raise SegmentError(f"no phone segments{ctx}")
    if abs(segments[0].start) > tol:
        raise SegmentError(f"first segment starts at {segments[0].start}s, not 0{ctx}")
    prev_end = 0.0
    for i, s in enumerate(segments):
        if s.phone not in PHONE39_INDEX:
            raise SegmentError(f"segment {i} has phone {s.phone!r}, not in the 39 set{ctx}")
        if not s.end > s.start:
            raise SegmentError(f"segment {i} ({s.phone}) is empty: [{s.start}, {s.end}){ctx}")
        if abs(s.start - prev_end) > tol:
            raise SegmentError(
                f"segment {i} ({s.phone}) starts at {s.start}s but the previous ends at "
                f"{prev_end}s{ctx}"
            )
        prev_end = s.end
    if duration is not None and abs(prev_end - duration) > tol:
        raise SegmentError(f"segments end at {prev_end}s but the audio lasts {duration}s{ctx}")


def merge_silences(segments: Iterable[Segment]) -> list[Segment]:
    """Join adjacent silence segments: two silences in a row are one pause, not two phones."""
    out: list[Segment] = []
    for s in segments:
        if out and s.phone == SILENCE and out[-1].phone == SILENCE:
            out[-1] = Segment(SILENCE, out[-1].start, s.end)
        else:
            out.append(s)
    return out


def to_record(utt: Utterance, base: Path) -> dict[str, Any]:
    """The JSON form of ``utt`` with its audio path relative to ``base``."""
    try:
        audio = os.path.relpath(utt.audio_path, base)
    except ValueError:  # different drive (Windows)
        audio = str(utt.audio_path)
    return {
        "id": utt.utt_id,
        "split": utt.split,
        "speaker": utt.speaker,
        "audio": Path(audio).as_posix(),
        "format": utt.audio_format,
        "sample_rate": utt.sample_rate,
        "num_samples": utt.num_samples,
        "text": utt.text,
        "segments": [[s.phone, s.start, s.end] for s in utt.segments],
        "meta": utt.meta,
    }


def from_record(rec: dict[str, Any], base: Path, where: str = "record") -> Utterance:
    """Inverse of ``to_record``; ``where`` names the source in error messages."""
    try:
        fmt = rec.get("format", "wav")
        if fmt not in AUDIO_FORMATS:
            raise ManifestError(f"{where}: unknown audio format {fmt!r}")
        return Utterance(
            utt_id=str(rec["id"]),
            split=str(rec["split"]),
            speaker=str(rec["speaker"]),
            audio_path=(base / rec["audio"]).resolve(),
            segments=tuple(Segment(str(p), float(a), float(b)) for p, a, b in rec["segments"]),
            sample_rate=int(rec["sample_rate"]),
            num_samples=int(rec["num_samples"]),
            audio_format=fmt,
            text=str(rec.get("text", "")),
            meta=dict(rec.get("meta", {})),
        )
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ManifestError):
            raise
        raise ManifestError(f"{where}: malformed record ({type(e).__name__}: {e})") from e


def write_manifest(path: str | os.PathLike[str], utterances: Iterable[Utterance]) -> Path:
    """Write a JSON-lines manifest (audio paths relative to its folder), atomically."""
    path = Path(path)
    base = path.parent.resolve()
    lines = [json.dumps({"manifest_version": MANIFEST_VERSION})]
    lines += [json.dumps(to_record(u, base), sort_keys=True) for u in utterances]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(
    path: str | os.PathLike[str], splits: str | Sequence[str] | None = None
) -> list[Utterance]:
    """Read a manifest written by ``write_manifest``, optionally keeping only some splits.

    ``path`` may be the manifest itself or a corpus folder holding ``manifest.jsonl``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest")
    keep = {splits} if isinstance(splits, str) else (set(splits) if splits is not None else None)
    base = path.parent.resolve()
    out: list[Utterance] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: not JSON ({e})") from e
            if lineno == 1:
                if rec.get("manifest_version") != MANIFEST_VERSION:
                    raise ManifestError(
                        f"{where}: expected manifest_version {MANIFEST_VERSION}, got "
                        f"{rec.get('manifest_version')!r}"
                    )
                continue
            utt = from_record(rec, base, where)
            if keep is None or utt.split in keep:
                out.append(utt)
    if keep is not None:
        missing = keep - {u.split for u in out}
        if missing:
            raise ManifestError(f"{path}: no utterances in split(s) {sorted(missing)}")
    return out


def load_audio(utt: Utterance) -> np.ndarray:
    """Samples of ``utt`` as float32 in [-1, 1), checked against the recorded rate and length."""
    if utt.audio_format == "sphere":
        from .sphere import read_sphere

        samples, rate = read_sphere(utt.audio_path)
    else:
        import soundfile as sf

        try:
            samples, rate = sf.read(str(utt.audio_path), dtype="float32", always_2d=False)
        except RuntimeError as e:  # soundfile's LibsndfileError is a RuntimeError
            raise ManifestError(f"{utt.audio_path}: cannot read audio ({e})") from e
        if samples.ndim != 1:
            raise ManifestError(f"{utt.audio_path}: expected mono audio, got {samples.shape}")
    if rate != utt.sample_rate:
        raise ManifestError(
            f"{utt.audio_path}: sample rate {rate} Hz but the manifest says {utt.sample_rate} Hz"
        )
    if utt.num_samples and len(samples) != utt.num_samples:
        raise ManifestError(
            f"{utt.audio_path}: has {len(samples)} samples but the manifest says {utt.num_samples}"
        )
    return np.asarray(samples, dtype=np.float32)
