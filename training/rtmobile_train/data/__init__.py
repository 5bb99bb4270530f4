"""Data sources for phone recognition: the Festival corpus generator, the TIMIT loader, the
shared utterance/manifest records, the phone sets, and the torch dataset layer."""

from __future__ import annotations

from .corpus import (
    ManifestError,
    Segment,
    SegmentError,
    Utterance,
    load_audio,
    read_manifest,
    write_manifest,
)
from .phones import PHONE39_INDEX, PHONES39, SILENCE, TIMIT61, TIMIT_61_TO_39

__all__ = [
    "PHONE39_INDEX",
    "PHONES39",
    "SILENCE",
    "TIMIT61",
    "TIMIT_61_TO_39",
    "ManifestError",
    "Segment",
    "SegmentError",
    "Utterance",
    "load_audio",
    "read_manifest",
    "write_manifest",
]
