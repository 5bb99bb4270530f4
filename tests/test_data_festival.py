from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtmobile_train.data.corpus import load_audio, read_manifest, validate_segments
from rtmobile_train.data.festival_corpus import (
    DEFAULT_LEXICON,
    PRESETS,
    CorpusConfig,
    CorpusConfigError,
    FestivalNotFoundError,
    generate_corpus,
    plan_corpus,
)
from rtmobile_train.data.phones import PHONE39_INDEX, SILENCE

_INSTALL = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
needs_festival = pytest.mark.skipif(
    shutil.which("festival") is None, reason=f"festival not on PATH (CI: {_INSTALL})"
)
needs_lexicon = pytest.mark.skipif(
    not DEFAULT_LEXICON.is_file(), reason=f"Festival CMU lexicon missing (CI: {_INSTALL})"
)

TINY = PRESETS["tiny"]


def _digest(corpus: Path) -> dict[str, str]:
    """sha256 of the manifest and of every wav, keyed by path relative to the corpus."""
    files = [corpus / "manifest.jsonl", *sorted(corpus.glob("wav/*/*.wav"))]
    return {str(f.relative_to(corpus)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("festival") is None:
        pytest.skip(f"festival not on PATH (CI: {_INSTALL})")
    out = tmp_path_factory.mktemp("festival") / "tiny"
    generate_corpus(out, "tiny", workers=1, progress=False)
    return out


# ------------------------------------------------------------------------------------ plan


@needs_lexicon
def test_plan_is_deterministic_and_seeded() -> None:
    assert plan_corpus(TINY) == plan_corpus(TINY)
    assert plan_corpus(TINY) != plan_corpus(replace(TINY, seed=1))


@needs_lexicon
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_plan_splits(preset: str) -> None:
    cfg = PRESETS[preset]
    plan = plan_corpus(cfg)
    by = {s: [p for p in plan if p.split == s] for s in cfg.splits}
    assert [len(by[s]) for s in ("train", "dev", "test", "test_heldout")] == [
        cfg.n_train, cfg.n_dev, cfg.n_test, cfg.n_test,
    ]  # fmt: skip
    texts = {s: {p.text for p in v} for s, v in by.items()}
    assert len(texts["train"]) == cfg.n_train  # no sentence is spoken twice in training
    assert not texts["train"] & texts["dev"]
    assert not texts["train"] & texts["test"]
    assert not texts["dev"] & texts["test"]
    assert texts["test_heldout"] == texts["test"]  # same sentences, unseen voice
    for s in ("train", "dev", "test"):
        assert {p.voice for p in by[s]} == set(cfg.train_voices)
    assert {p.voice for p in by["test_heldout"]} == {cfg.heldout_voice}
    for p in plan:
        assert cfg.min_words <= len(p.text.split()) <= cfg.max_words
        assert cfg.stretch[0] <= p.stretch <= cfg.stretch[1]
        assert (p.snr_db is None) == (p.noise is None)
    assert len({p.utt_id for p in plan}) == len(plan)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"train_voices": ("nope",)}, "unknown voice 'nope'"),
        ({"heldout_voice": "kal_diphone"}, "also a training voice"),
        ({"train_voices": ()}, "no train_voices"),
        ({"n_train": 0}, "n_train > 0"),
        ({"min_words": 5, "max_words": 3}, "min_words <= max_words"),
        ({"stretch": (1.2, 0.9)}, "stretch range"),
        ({"stretch": (0.0, 1.0)}, "positive"),
        ({"clean_prob": 1.5}, "not a probability"),
        ({"noise_kinds": ("babble",)}, "unknown noise kind"),
        ({"level_dbfs": (-20.0, -1.0)}, "headroom"),
    ],
)
def test_config_errors(change: dict, match: str) -> None:
    with pytest.raises(CorpusConfigError, match=match):
        replace(TINY, **change)


def test_config_dict_round_trip_and_presets(tmp_path: Path) -> None:
    assert CorpusConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(CorpusConfigError, match="unknown CorpusConfig fields"):
        CorpusConfig.from_dict({"speed": 1})
    with pytest.raises(CorpusConfigError, match="unknown preset 'huge'"):
        generate_corpus(tmp_path, "huge")


def test_missing_festival_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not DEFAULT_LEXICON.is_file():
        pytest.skip("needs the lexicon to plan")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FestivalNotFoundError, match="festival is not on PATH; install it with"):
        generate_corpus(tmp_path / "c", "tiny", progress=False)


# ------------------------------------------------------------------------------------ corpus


@needs_festival
def test_tiny_corpus_contents(tiny: Path) -> None:
    utts = read_manifest(tiny)
    cfg = TINY
    assert len(utts) == cfg.n_train + cfg.n_dev + 2 * cfg.n_test
    info = json.loads((tiny / "corpus.json").read_text())
    assert info["splits"]["train"]["utterances"] == cfg.n_train
    for u in utts:
        wav = sf.info(str(u.audio_path))
        assert (wav.samplerate, wav.channels, wav.subtype) == (16000, 1, "PCM_16")
        assert wav.frames == u.num_samples
        # labels: 39-set phones, contiguous, monotone, from 0 to exactly the end of the audio
        validate_segments(u.segments, u.duration, tol=1e-9)
        starts = [s.start for s in u.segments]
        assert starts == sorted(starts)
        assert all(s.phone in PHONE39_INDEX for s in u.segments)
        assert u.segments[0].phone == SILENCE
        assert any(s.phone != SILENCE for s in u.segments)
        assert u.speaker == u.meta["voice"]


@needs_festival
def test_tiny_corpus_splits_and_voices(tiny: Path) -> None:
    by = {s: read_manifest(tiny, s) for s in TINY.splits}
    text = {s: {u.text for u in v} for s, v in by.items()}
    assert not text["train"] & (text["dev"] | text["test"])
    assert not text["dev"] & text["test"]
    assert text["test_heldout"] == text["test"]
    assert TINY.heldout_voice not in {u.speaker for u in by["train"] + by["dev"]}
    assert {u.speaker for u in by["test_heldout"]} == {TINY.heldout_voice}


@needs_festival
def test_level_and_noise_are_applied(tiny: Path) -> None:
    for u in read_manifest(tiny):
        x = load_audio(u).astype(np.float64)
        speech = np.zeros(len(x), bool)
        for s in u.segments:
            if s.phone != SILENCE:
                speech[round(s.start * 16000) : round(s.end * 16000)] = True
        pause = ~speech
        level = 10 * np.log10(np.mean(x[speech] ** 2))
        want = u.meta["level_dbfs"] + 20 * np.log10(u.meta["peak_scale"])
        pause_db = 10 * np.log10(np.mean(x[pause] ** 2))
        if u.meta["noise"] is None:
            assert level == pytest.approx(want, abs=0.1)
            assert pause_db < want - 20  # pauses: only Festival's near-silence and speech tails
        else:
            # the noise fills the pauses at about the planned SNR below the speech
            assert pause_db > want - u.meta["snr_db"] - 10


@needs_festival
def test_ked_er_r_split_is_undone(tiny: Path) -> None:
    for u in read_manifest(tiny, "test_heldout"):
        raw = u.meta["festival_phones"]
        n_r = sum(s.phone == "r" for s in u.segments)
        assert n_r == raw.count("r") - raw.count("er")


@needs_festival
def test_same_seed_gives_identical_corpus(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_corpus(again, "tiny", workers=2, chunk_size=3, progress=False)
    assert _digest(again) == _digest(tiny)


@needs_festival
def test_other_seed_gives_other_corpus(tiny: Path, tmp_path: Path) -> None:
    cfg = replace(TINY, seed=7, n_train=2, n_dev=0, n_test=1)
    other = generate_corpus(tmp_path / "other", cfg, progress=False)
    a = {u.text for u in read_manifest(other)}
    assert not a & {u.text for u in read_manifest(tiny)}


@needs_festival
def test_rerun_skips_done_and_redoes_missing(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "resume"
    shutil.copytree(tiny, work)
    wavs = sorted(work.glob("wav/*/*.wav"))
    keep_mtime = {w: w.stat().st_mtime_ns for w in wavs[3:]}
    for w in wavs[:2]:  # interrupted: utterance missing entirely
        w.unlink()
        w.with_suffix(".json").unlink()
    side = wavs[2].with_suffix(".json")  # stale: made from another spec
    data = json.loads(side.read_text())
    data["spec"]["stretch"] += 0.1
    side.write_text(json.dumps(data))
    (work / "manifest.jsonl").unlink()

    generate_corpus(work, "tiny", progress=False)
    assert _digest(work) == _digest(tiny)
    assert {w: w.stat().st_mtime_ns for w in wavs[3:]} == keep_mtime

    # with everything cached, Festival is not needed at all
    monkeypatch.setenv("PATH", str(tmp_path))
    generate_corpus(work, "tiny", progress=False)
    assert _digest(work) == _digest(tiny)
