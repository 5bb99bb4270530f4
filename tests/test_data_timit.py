from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtmobile_train.data.corpus import validate_segments
from rtmobile_train.data.sphere import (
    SphereError,
    UnsupportedSphereError,
    read_sphere,
    read_sphere_header,
    write_sphere,
)
from rtmobile_train.data.timit import (
    TIMIT_CORE_TEST_SPEAKERS,
    TIMIT_DEV_SPEAKERS,
    PhnError,
    TimitError,
    find_timit_root,
    load_timit,
    phn_to_segments,
    read_phn,
)

RATE = 16000


def _pcm(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, n).astype(np.int16)


# ------------------------------------------------------------------------------------ SPHERE


@pytest.mark.parametrize("byte_format", ["01", "10"])
@pytest.mark.parametrize("n", [0, 1, 4097])
def test_sphere_round_trip(tmp_path: Path, byte_format: str, n: int) -> None:
    pcm = _pcm(n)
    p = write_sphere(tmp_path / "x.wav", pcm, RATE, byte_format=byte_format)
    assert p.stat().st_size == 1024 + 2 * n
    x, rate = read_sphere(p)
    assert rate == RATE
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x * 32768.0, pcm.astype(np.float32))


def test_sphere_header_fields(tmp_path: Path) -> None:
    p = write_sphere(
        tmp_path / "x.wav", _pcm(10), RATE, extra_fields={"utterance_id": "aks0 sa1", "x": 1.5}
    )
    hdr = read_sphere_header(p)
    assert hdr.header_size == 1024
    assert hdr.sample_count == 10
    assert hdr.sample_rate == RATE
    assert hdr.sample_coding == "pcm"  # absent field means PCM
    assert hdr.fields["utterance_id"] == "aks0 sa1"  # -sN strings may hold spaces
    assert hdr.fields["x"] == 1.5


def test_sphere_ignores_trailing_bytes(tmp_path: Path) -> None:
    p = write_sphere(tmp_path / "x.wav", _pcm(100), RATE)
    with p.open("ab") as f:
        f.write(b"\0" * 7)
    assert len(read_sphere(p)[0]) == 100


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"sample_coding": "pcm,embedded-shorten-v2.00"}, "pcm,embedded-shorten-v2.00"),
        ({"sample_coding": "ulaw"}, "sample_coding 'ulaw'"),
        ({"sample_n_bytes": 1}, "sample_n_bytes 1"),
        ({"channel_count": 2}, "channel_count 2"),
        ({"sample_byte_format": "shortpack-v0"}, "sample_byte_format"),
    ],
)
def test_sphere_rejects_unsupported_encodings(tmp_path: Path, fields: dict, match: str) -> None:
    p = write_sphere(tmp_path / "SX1.WAV", _pcm(50), RATE, extra_fields=fields)
    with pytest.raises(UnsupportedSphereError, match=match) as e:
        read_sphere(p)
    assert str(p) in str(e.value)  # the error names the file


def test_sphere_rejects_truncated_data(tmp_path: Path) -> None:
    p = write_sphere(tmp_path / "x.wav", _pcm(1000), RATE)
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(
        SphereError, match=r"truncated: header declares 1000 samples \(2000 bytes\)"
    ):
        read_sphere(p)


def test_sphere_rejects_truncated_header(tmp_path: Path) -> None:
    p = write_sphere(tmp_path / "x.wav", _pcm(10), RATE)
    p.write_bytes(p.read_bytes()[:600])
    with pytest.raises(SphereError, match=r"truncated SPHERE header \(600 of 1024 bytes"):
        read_sphere(p)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a NIST SPHERE file"),
        (b"", "not a NIST SPHERE file"),
        (b"NIST_1A\n   abcd\n", "bad SPHERE header size"),
        (b"NIST_1A\n      8\n", "implausible SPHERE header size"),
        (b"NIST_1A\n     64\nsample_count -i 3\n".ljust(64, b" "), "no end_head"),
        (b"NIST_1A\n     64\nsample_count -i x\nend_head\n".ljust(64, b" "), "bad value"),
        (b"NIST_1A\n     64\nsample_count 3\nend_head\n".ljust(64, b" "), "malformed SPHERE"),
        (b"NIST_1A\n     64\nsample_count -q 3\nend_head\n".ljust(64, b" "), "unknown field"),
        (b"NIST_1A\n     64\nsample_rate -i 16000\nend_head\n".ljust(64, b" "), "sample_count"),
    ],
)
def test_sphere_rejects_malformed_headers(tmp_path: Path, blob: bytes, match: str) -> None:
    p = tmp_path / "bad.wav"
    p.write_bytes(blob)
    with pytest.raises(SphereError, match=match):
        read_sphere(p)


# ------------------------------------------------------------------------------------ PHN


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_read_phn(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.phn", "0 100 h#\n100 250 SH\n\n250 400 iy\n")
    assert read_phn(p) == [("h#", 0, 100), ("sh", 100, 250), ("iy", 250, 400)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0 100 h#\n120 200 iy\n", "gap or overlap"),
        ("0 100 h#\n90 200 iy\n", "gap or overlap"),
        ("5 100 h#\n", "not 0"),
        ("0 100 h#\n100 100 iy\n", "bad interval"),
        ("0 100 xx\n", "'xx' is not one of the 61 TIMIT phones"),
        ("0 100\n", "expected 'start end phone'"),
        ("0 1e2 h#\n", "non-integer"),
        ("\n", "no phones"),
    ],
)
def test_read_phn_rejects(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(PhnError, match=match):
        read_phn(_write(tmp_path / "b.phn", text))


def test_phn_folding_deletes_q_and_covers_audio() -> None:
    phones = [("h#", 0, 1600), ("q", 1600, 2000), ("ix", 2000, 3200), ("dcl", 3200, 3500),
              ("d", 3500, 4000), ("h#", 4000, 4790)]  # fmt: skip
    segs = phn_to_segments(phones, RATE, 4800)
    assert [s.phone for s in segs] == ["sil", "ih", "sil", "d", "sil"]
    assert segs[0].end == 2000 / RATE  # q's time goes to the phone before it
    assert segs[-1].end == 4800 / RATE  # the last phone reaches the end of the audio
    validate_segments(segs, 4800 / RATE)


def test_phn_leading_q_goes_to_next_phone() -> None:
    segs = phn_to_segments([("q", 0, 100), ("aa", 100, 300)], RATE, 300)
    assert [(s.phone, s.start) for s in segs] == [("aa", 0.0)]


def test_phn_beyond_audio_is_an_error() -> None:
    with pytest.raises(PhnError, match="beyond the audio"):
        phn_to_segments([("h#", 0, 500)], RATE, 400, where="x.phn")


# ------------------------------------------------------------------------------------ tree

_SENTS = ("SA1", "SA2", "SI1027", "SX37")
_PHN = "0 1200 h#\n1200 1500 q\n1500 2600 ix\n2600 3000 dcl\n3000 3400 d\n3400 4700 h#\n"


def _make_tree(root: Path, *, upper: bool = True, speakers: dict[str, list[str]]) -> Path:
    """A TIMIT-shaped tree: root/TIMIT/{TRAIN,TEST}/DRn/SPK/SENT.{WAV,PHN}, tiny audio."""
    case = str.upper if upper else str.lower
    base = root / case("timit")
    for part, spks in speakers.items():
        for k, spk in enumerate(spks):
            d = base / case(part) / case(f"dr{k % 8 + 1}") / case(spk)
            d.mkdir(parents=True)
            for j, sent in enumerate(_SENTS):
                write_sphere(d / case(f"{sent}.wav"), _pcm(4800, seed=k * 10 + j), RATE)
                (d / case(f"{sent}.phn")).write_text(_PHN)
    return base


_TREE_SPEAKERS = {
    "train": ["FCJF0", "MDAC0", "MJSW1"],
    "test": [*sorted(TIMIT_DEV_SPEAKERS | TIMIT_CORE_TEST_SPEAKERS), "MZZZ9"],
}


@pytest.fixture(scope="module")
def timit_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ldc")
    _make_tree(root, speakers=_TREE_SPEAKERS)
    return root


@pytest.mark.parametrize(
    ("split", "speakers"),
    [
        ("train", set(_TREE_SPEAKERS["train"])),
        ("dev", TIMIT_DEV_SPEAKERS),
        ("test", TIMIT_CORE_TEST_SPEAKERS),
        ("complete_test", set(_TREE_SPEAKERS["test"])),
    ],
)
def test_load_timit_standard_splits(timit_tree: Path, split: str, speakers: set[str]) -> None:
    utts = load_timit(timit_tree, split)
    assert {u.speaker.upper() for u in utts} == speakers
    assert len(utts) == 2 * len(speakers)  # SI + SX; both SA sentences left out
    assert not any("_sa" in u.utt_id for u in utts)
    for u in utts:
        assert u.split == split
        assert u.audio_format == "sphere"
        assert u.num_samples == 4800
        assert [s.phone for s in u.segments] == ["sil", "ih", "sil", "d", "sil"]
        validate_segments(u.segments, u.duration)
    x, rate = read_sphere(utts[0].audio_path)
    assert (len(x), rate) == (4800, RATE)


def test_hardcoded_speaker_lists() -> None:
    assert len(TIMIT_DEV_SPEAKERS) == 50
    assert len(TIMIT_CORE_TEST_SPEAKERS) == 24
    assert not TIMIT_DEV_SPEAKERS & TIMIT_CORE_TEST_SPEAKERS
    # the core test set has 2 men and 1 woman from each of the 8 dialect regions
    assert sum(s.startswith("F") for s in TIMIT_CORE_TEST_SPEAKERS) == 8


def test_load_timit_lower_case_tree(tmp_path: Path) -> None:
    _make_tree(tmp_path, upper=False, speakers={"train": ["fcjf0"], "test": ["mzzz9"]})
    utts = load_timit(tmp_path, "train")
    assert [u.utt_id for u in utts] == ["fcjf0_si1027", "fcjf0_sx37"]
    assert find_timit_root(tmp_path) == tmp_path / "timit"


def test_load_timit_strict_needs_all_standard_speakers(tmp_path: Path) -> None:
    _make_tree(tmp_path, speakers={"train": ["FCJF0"], "test": ["MDAB0", "FAKS0"]})
    with pytest.raises(TimitError, match="missing 23 of its 24 standard speakers"):
        load_timit(tmp_path, "test")
    assert [u.speaker for u in load_timit(tmp_path, "test", strict=False)] == ["mdab0"] * 2


def test_load_timit_errors(tmp_path: Path) -> None:
    with pytest.raises(TimitError, match="not a directory"):
        load_timit(tmp_path / "nope")
    with pytest.raises(TimitError, match="no TIMIT tree"):
        load_timit(tmp_path)
    _make_tree(tmp_path, speakers={"train": ["FCJF0"], "test": ["MZZZ9"]})
    with pytest.raises(TimitError, match="unknown TIMIT split 'core'"):
        load_timit(tmp_path, "core")
    (tmp_path / "TIMIT/TRAIN/DR1/FCJF0/SX37.WAV").unlink()
    with pytest.raises(TimitError, match=r"no matching \.WAV"):
        load_timit(tmp_path, "train")


def test_load_timit_rejects_shorten_coded_copy(tmp_path: Path) -> None:
    base = _make_tree(tmp_path, speakers={"train": ["FCJF0"], "test": ["MZZZ9"]})
    wav = base / "TRAIN/DR1/FCJF0/SI1027.WAV"
    write_sphere(
        wav, _pcm(4800), RATE, extra_fields={"sample_coding": "pcm,embedded-shorten-v2.00"}
    )
    with pytest.raises(UnsupportedSphereError, match=r"SI1027\.WAV: sample_coding 'pcm,embedded"):
        load_timit(tmp_path, "train")
