"""Phone sets: TIMIT's 61 phones, the standard 61->39 folding, and Festival's phones onto the 39.

All corpora in this project are scored on the 39-phone set of Lee & Hon (1989), exactly as the
Kaldi TIMIT recipe (egs/timit/s5/conf/phones.60-48-39.map) folds them, so PER numbers on our
Festival corpus and on a user's TIMIT copy are comparable in kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

__all__ = [
    "FESTIVAL_RADIO_PHONES",
    "FESTIVAL_TO_39",
    "PHONE39_INDEX",
    "PHONES39",
    "SILENCE",
    "TIMIT61",
    "TIMIT_61_TO_39",
    "UnknownPhoneError",
    "fold_festival",
    "fold_timit",
    "phone_indices",
]

SILENCE = "sil"


class UnknownPhoneError(ValueError):
    """A phone label that is not in the phone set it was claimed to belong to."""


# The 61 TIMIT phone labels as they appear in .PHN files (60 + the glottal stop q).
TIMIT61: tuple[str, ...] = (
    "aa", "ae", "ah", "ao", "aw", "ax", "ax-h", "axr", "ay", "b", "bcl", "ch", "d", "dcl",
    "dh", "dx", "eh", "el", "em", "en", "eng", "epi", "er", "ey", "f", "g", "gcl", "h#",
    "hh", "hv", "ih", "ix", "iy", "jh", "k", "kcl", "l", "m", "n", "ng", "nx", "ow", "oy",
    "p", "pau", "pcl", "q", "r", "s", "sh", "t", "tcl", "th", "uh", "uw", "ux", "v", "w",
    "y", "z", "zh",
)  # fmt: skip

# Lee & Hon (1989) folding as in Kaldi's phones.60-48-39.map (third column); q maps to None
# (deleted). Phones not listed here map onto themselves.
_TIMIT_FOLDS: dict[str, str | None] = {
    "ao": "aa",
    "ax": "ah",
    "ax-h": "ah",
    "axr": "er",
    "hv": "hh",
    "ix": "ih",
    "el": "l",
    "em": "m",
    "en": "n",
    "nx": "n",
    "eng": "ng",
    "zh": "sh",
    "ux": "uw",
    "pcl": SILENCE,
    "tcl": SILENCE,
    "kcl": SILENCE,
    "bcl": SILENCE,
    "dcl": SILENCE,
    "gcl": SILENCE,
    "h#": SILENCE,
    "pau": SILENCE,
    "epi": SILENCE,
    "q": None,
}

TIMIT_61_TO_39: Mapping[str, str | None] = MappingProxyType(
    {p: _TIMIT_FOLDS.get(p, p) for p in TIMIT61}
)

# Sorted so that the label index of a phone never depends on dict order or on the corpus.
PHONES39: tuple[str, ...] = tuple(sorted({p for p in TIMIT_61_TO_39.values() if p is not None}))
PHONE39_INDEX: Mapping[str, int] = MappingProxyType({p: i for i, p in enumerate(PHONES39)})

# Festival's English voices (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts) all use the
# "radio" phone set (festival/lib/radio_phones.scm). Its names are TIMIT names, plus the
# silences pau, h# and brth (breath).
FESTIVAL_RADIO_PHONES: tuple[str, ...] = (
    "aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "b", "ch", "d", "dh", "dx", "eh", "el",
    "em", "en", "er", "ey", "f", "g", "hh", "hv", "ih", "iy", "jh", "k", "l", "m", "n", "nx",
    "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh", "uw", "v", "w", "y", "z", "zh",
    "pau", "h#", "brth",
)  # fmt: skip

FESTIVAL_TO_39: Mapping[str, str] = MappingProxyType(
    {
        p: SILENCE if p == "brth" else TIMIT_61_TO_39[p]  # type: ignore[misc]
        for p in FESTIVAL_RADIO_PHONES
    }
)


def fold_timit(phone: str) -> str | None:
    """Fold one TIMIT-61 label onto the 39 set; None means the phone is deleted (q)."""
    try:
        return TIMIT_61_TO_39[phone.lower()]
    except KeyError:
        raise UnknownPhoneError(f"{phone!r} is not one of the 61 TIMIT phones") from None


def fold_festival(phone: str) -> str:
    """Fold one Festival "radio" phone onto the 39 set."""
    try:
        return FESTIVAL_TO_39[phone]
    except KeyError:
        raise UnknownPhoneError(
            f"{phone!r} is not a Festival radio phone (known: {', '.join(FESTIVAL_RADIO_PHONES)})"
        ) from None


def phone_indices(phones: Iterable[str]) -> list[int]:
    """Map 39-set phone names to their label indices (positions in PHONES39)."""
    out = []
    for p in phones:
        try:
            out.append(PHONE39_INDEX[p])
        except KeyError:
            raise UnknownPhoneError(f"{p!r} is not in the 39-phone set") from None
    return out
