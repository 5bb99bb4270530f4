from __future__ import annotations

import pytest

from rtmobile_train.data.phones import (
    FESTIVAL_RADIO_PHONES,
    FESTIVAL_TO_39,
    PHONE39_INDEX,
    PHONES39,
    SILENCE,
    TIMIT61,
    TIMIT_61_TO_39,
    UnknownPhoneError,
    fold_festival,
    fold_timit,
    phone_indices,
)


def test_timit61_is_61_distinct_phones() -> None:
    assert len(TIMIT61) == 61
    assert len(set(TIMIT61)) == 61
    assert set(TIMIT_61_TO_39) == set(TIMIT61)


def test_folding_has_exactly_39_targets() -> None:
    targets = {v for v in TIMIT_61_TO_39.values() if v is not None}
    assert len(targets) == 39
    assert set(PHONES39) == targets
    assert list(PHONES39) == sorted(PHONES39)
    assert [PHONE39_INDEX[p] for p in PHONES39] == list(range(39))


# Lee & Hon (1989) merges, as listed in Kaldi's egs/timit/s5/conf/phones.60-48-39.map.
@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("ao", "aa"), ("ax", "ah"), ("ax-h", "ah"), ("axr", "er"), ("hv", "hh"), ("ix", "ih"),
        ("el", "l"), ("em", "m"), ("en", "n"), ("nx", "n"), ("eng", "ng"), ("zh", "sh"),
        ("ux", "uw"), ("pcl", "sil"), ("tcl", "sil"), ("kcl", "sil"), ("bcl", "sil"),
        ("dcl", "sil"), ("gcl", "sil"), ("h#", "sil"), ("pau", "sil"), ("epi", "sil"),
        ("q", None), ("aa", "aa"), ("dx", "dx"), ("sh", "sh"), ("er", "er"), ("AX-H", "ah"),
    ],
)  # fmt: skip
def test_fold_timit(src: str, dst: str | None) -> None:
    assert fold_timit(src) == dst


def test_unfolded_phones_map_to_themselves() -> None:
    merged = {p for p, q in TIMIT_61_TO_39.items() if q != p}
    assert len(merged) == 61 - 38  # 38 phones survive unchanged; "sil" is new
    assert SILENCE not in TIMIT_61_TO_39


@pytest.mark.parametrize("phone", FESTIVAL_RADIO_PHONES)
def test_every_festival_phone_folds_into_the_39_set(phone: str) -> None:
    assert fold_festival(phone) in PHONE39_INDEX


@pytest.mark.parametrize(("src", "dst"), [("pau", "sil"), ("h#", "sil"), ("brth", "sil"),
                                          ("ax", "ah"), ("axr", "er"), ("hv", "hh")])  # fmt: skip
def test_fold_festival_examples(src: str, dst: str) -> None:
    assert FESTIVAL_TO_39[src] == dst


@pytest.mark.parametrize("bad", ["xx", "", "SIL", "ax-h"])
def test_fold_festival_rejects_unknown(bad: str) -> None:
    with pytest.raises(UnknownPhoneError, match="not a Festival radio phone"):
        fold_festival(bad)


def test_fold_timit_rejects_unknown() -> None:
    with pytest.raises(UnknownPhoneError, match="61 TIMIT phones"):
        fold_timit("sil")


def test_phone_indices() -> None:
    assert phone_indices(["aa", "sil", "z"]) == [0, PHONES39.index("sil"), 38]
    with pytest.raises(UnknownPhoneError, match="'ao' is not in the 39-phone set"):
        phone_indices(["ao"])
