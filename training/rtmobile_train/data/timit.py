"""Loader for a user's own LDC TIMIT copy (NIST SPHERE .WAV + .PHN), folded to 39 phones.

TIMIT is licensed and cannot be shipped; this module reads the standard LDC layout
``<root>/{TRAIN,TEST}/DR<n>/<speaker>/<sentence>.{WAV,PHN}`` (any letter case) and yields the
standard splits: the 462-speaker training set, the 50-speaker development set and the 24-speaker
core test set, SA sentences excluded (they are read by every speaker, so they would leak text
between splits and inflate accuracy).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .corpus import Segment, Utterance, validate_segments
from .phones import TIMIT61, fold_timit
from .sphere import SphereError, UnsupportedSphereError, read_sphere, read_sphere_header

__all__ = [
    "TIMIT_CORE_TEST_SPEAKERS",
    "TIMIT_DEV_SPEAKERS",
    "TIMIT_SPLITS",
    "PhnError",
    "SphereError",
    "TimitError",
    "UnsupportedSphereError",
    "find_timit_root",
    "load_timit",
    "phn_to_segments",
    "read_phn",
    "read_sphere",
]

# The 24-speaker core test set (TIMIT documentation, testset/core; 2 men + 1 woman per dialect
# region), as in Kaldi egs/timit/s5/conf/test_spk.list.
TIMIT_CORE_TEST_SPEAKERS: frozenset[str] = frozenset(
    {
        "MDAB0", "MWBT0", "FELC0", "MTAS1", "MWEW0", "FPAS0", "MJMP0", "MLNT0", "FPKT0", "MLLL0",
        "MTLS0", "FJLM0", "MBPM0", "MKLT0", "FNLP0", "MCMJ0", "MJDH0", "FMGD0", "MGRT0", "MNJM0",
        "FDHC0", "MJLN0", "MPAM0", "FMLD0",
    }
)  # fmt: skip

# The standard 50-speaker development set (Halberstadt 1998), drawn from TEST minus the core
# test speakers, as in Kaldi egs/timit/s5/conf/dev_spk.list.
TIMIT_DEV_SPEAKERS: frozenset[str] = frozenset(
    {
        "FAKS0", "FDAC1", "FJEM0", "MGWT0", "MJAR0", "MMDB1", "MMDM2", "MPDF0", "FCMH0", "FKMS0",
        "MBDG0", "MBWM0", "MCSH0", "FADG0", "FDMS0", "FEDW0", "MGJF0", "MGLB0", "MRTK0", "MTAA0",
        "MTDT0", "MTHC0", "MWJG0", "FNMR0", "FREW0", "FSEM0", "MBNS0", "MMJR0", "MDLS0", "MDLF0",
        "MDVC0", "MERS0", "FMAH0", "FDRW0", "MRCS0", "MRJM4", "FCAL1", "MMWH0", "FJSJ0", "MAJC0",
        "MJSW0", "MREB0", "FGJD0", "FJMG0", "MROA0", "MTEB0", "MJFC0", "MRJR0", "FMML0", "MRWS1",
    }
)  # fmt: skip

# split name -> (TIMIT part, speaker filter or None for all speakers of that part)
TIMIT_SPLITS: dict[str, tuple[str, frozenset[str] | None]] = {
    "train": ("TRAIN", None),
    "dev": ("TEST", TIMIT_DEV_SPEAKERS),
    "test": ("TEST", TIMIT_CORE_TEST_SPEAKERS),
    "complete_test": ("TEST", None),
}

_TIMIT61 = frozenset(TIMIT61)


class TimitError(ValueError):
    """A TIMIT tree that is missing, incomplete or inconsistent."""


class PhnError(TimitError):
    """A malformed .PHN transcription file."""


def read_phn(path: str | os.PathLike[str]) -> list[tuple[str, int, int]]:
    """Read a .PHN file: (phone, start_sample, end_sample) per line, contiguous and ordered."""
    path = Path(path)
    out: list[tuple[str, int, int]] = []
    text = path.read_text(encoding="latin-1")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise PhnError(f"{path}:{lineno}: expected 'start end phone', got {line!r}")
        try:
            start, end = int(parts[0]), int(parts[1])
        except ValueError:
            raise PhnError(f"{path}:{lineno}: non-integer sample times in {line!r}") from None
        phone = parts[2].lower()
        if phone not in _TIMIT61:
            raise PhnError(f"{path}:{lineno}: {parts[2]!r} is not one of the 61 TIMIT phones")
        if not 0 <= start < end:
            raise PhnError(f"{path}:{lineno}: bad interval [{start}, {end})")
        if out and start != out[-1][2]:
            raise PhnError(
                f"{path}:{lineno}: starts at sample {start} but the previous phone ends at "
                f"{out[-1][2]} (gap or overlap)"
            )
        if not out and start != 0:
            raise PhnError(f"{path}:{lineno}: first phone starts at sample {start}, not 0")
        out.append((phone, start, end))
    if not out:
        raise PhnError(f"{path}: no phones")
    return out


def phn_to_segments(
    phones: list[tuple[str, int, int]], sample_rate: int, num_samples: int, *, where: str = ""
) -> list[Segment]:
    """Fold TIMIT-61 intervals to 39-set segments in seconds covering [0, num_samples).

    The deleted glottal stop q gives its time to the phone before it (to the one after when it
    comes first), so frame labels stay gap-free. The last phone is stretched to the end of the
    audio, since .PHN files may stop a few samples short of it.
    """
    if phones[-1][2] > num_samples:
        raise PhnError(
            f"{where}: phones end at sample {phones[-1][2]} beyond the audio ({num_samples})"
        )
    folded: list[list] = []  # [phone39, start, end] in samples
    pending_start: int | None = None
    for p, a, b in phones:
        q = fold_timit(p)
        if q is None:
            if folded:
                folded[-1][2] = b
            else:
                pending_start = a
            continue
        if pending_start is not None:
            a, pending_start = pending_start, None
        folded.append([q, a, b])
    if not folded:
        raise PhnError(f"{where}: no phones left after deleting q")
    folded[-1][2] = num_samples
    return [Segment(p, a / sample_rate, b / sample_rate) for p, a, b in folded]


def _child(parent: Path, name: str) -> Path | None:
    """Case-insensitive lookup of a direct child, since TIMIT copies differ in letter case."""
    for c in parent.iterdir():
        if c.name.lower() == name.lower():
            return c
    return None


def find_timit_root(root: str | os.PathLike[str]) -> Path:
    """The folder holding TRAIN and TEST: ``root`` itself or up to two levels below it."""
    root = Path(root)
    if not root.is_dir():
        raise TimitError(f"{root}: not a directory")
    frontier = [root]
    for _ in range(3):
        nxt: list[Path] = []
        for d in frontier:
            if _child(d, "TRAIN") is not None and _child(d, "TEST") is not None:
                return d
            nxt.extend(sorted(c for c in d.iterdir() if c.is_dir()))
        frontier = nxt
    raise TimitError(f"{root}: no TIMIT tree (folders TRAIN and TEST) at or below this path")


def _iter_part(part_dir: Path) -> Iterator[tuple[str, str, Path, Path]]:
    """(speaker, sentence, wav, phn) for every non-SA sentence under one part (TRAIN/TEST)."""
    for dr in sorted(d for d in part_dir.iterdir() if d.is_dir()):
        for spk in sorted(d for d in dr.iterdir() if d.is_dir()):
            files = {f.name.lower(): f for f in spk.iterdir() if f.is_file()}
            for name in sorted(files):
                if not name.endswith(".phn"):
                    continue
                sent = name[: -len(".phn")]
                if sent.startswith("sa"):
                    continue
                wav = files.get(sent + ".wav")
                if wav is None:
                    raise TimitError(f"{files[name]}: no matching .WAV file next to it")
                yield spk.name.upper(), sent.upper(), wav, files[name]


def load_timit(
    root: str | os.PathLike[str], split: str = "train", *, strict: bool = True
) -> list[Utterance]:
    """Utterances of one standard split: "train", "dev", "test" (core) or "complete_test".

    With ``strict`` every speaker of the hard-coded dev/core lists must be present, so that a
    partial copy cannot silently give a non-standard test set.
    """
    if split not in TIMIT_SPLITS:
        raise TimitError(f"unknown TIMIT split {split!r}; choose from {sorted(TIMIT_SPLITS)}")
    base = find_timit_root(root)
    part, speakers = TIMIT_SPLITS[split]
    part_dir = _child(base, part)
    assert part_dir is not None  # find_timit_root checked it
    out: list[Utterance] = []
    seen: set[str] = set()
    for spk, sent, wav, phn in _iter_part(part_dir):
        if speakers is not None and spk not in speakers:
            continue
        seen.add(spk)
        hdr = read_sphere_header(wav)
        if hdr.sample_coding.strip().lower() != "pcm":  # fail at load time, not mid-training
            raise UnsupportedSphereError(
                f"{wav}: sample_coding {hdr.sample_coding!r} is not supported; only uncompressed "
                "'pcm' is read (decompress shorten-coded TIMIT first, e.g. with sph2pipe)"
            )
        try:
            rate, count = hdr.sample_rate, hdr.sample_count
        except KeyError as e:
            raise SphereError(
                f"{wav}: SPHERE header lacks the required field {e.args[0]}"
            ) from None
        segs = phn_to_segments(read_phn(phn), rate, count, where=str(phn))
        validate_segments(segs, count / rate, where=str(phn))
        out.append(
            Utterance(
                utt_id=f"{spk}_{sent}".lower(),
                split=split,
                speaker=spk.lower(),
                audio_path=wav.resolve(),
                segments=tuple(segs),
                sample_rate=rate,
                num_samples=count,
                audio_format="sphere",
                meta={"timit_part": part.lower()},
            )
        )
    if strict and speakers is not None and seen != speakers:
        missing = sorted(speakers - seen)
        raise TimitError(
            f"{base}: TIMIT split {split!r} is missing {len(missing)} of its {len(speakers)} "
            f"standard speakers (e.g. {', '.join(missing[:5])}); pass strict=False for a "
            "partial copy"
        )
    if not out:
        raise TimitError(f"{base}: no utterances found for TIMIT split {split!r}")
    return out
