"""An open, phone-labelled English corpus synthesised offline with Festival.

TIMIT cannot be shipped, so this generator makes a stand-in anyone can rebuild bit for bit:
pseudo-sentences assembled from Festival's own CMU lexicon, spoken by Festival's English voices
with varied duration, pitch, level and additive noise. Festival reports where every phone ends,
so the labels are exact rather than forced-aligned.

Everything is a pure function of the config (seed included): the plan (sentences, voices,
augmentation) is drawn up front from one random stream, and each utterance is then synthesised
and post-processed independently, so the result does not depend on the worker count or on which
utterances were already cached (bit-identical given the same Festival, numpy and scipy
versions). Each finished utterance is a wav plus a JSON sidecar holding its spec; a re-run
skips every utterance whose sidecar matches the planned spec.

Variation: duration is stretched in Festival (Duration_Stretch for the diphone voices, the
HTS engine's speech rate for the HTS voice); pitch is moved in Festival through the intonation
targets of the diphone voices, and by resampling for the HTS voice (whose Festival module
ignores pitch options), with the phone times rescaled exactly; level and noise are applied in
numpy.

Layout of a corpus folder::

    corpus.json                config, voices, lexicon hash, hours per split
    manifest.jsonl             one Utterance record per line (see corpus.py)
    wav/<split>/<utt_id>.wav   16 kHz mono 16-bit PCM
    wav/<split>/<utt_id>.json  sidecar: the spec it was made from + its manifest record

Run ``python -m rtmobile_train.data.festival_corpus --preset tiny --out data/festival-tiny``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import (
    Segment,
    Utterance,
    from_record,
    merge_silences,
    to_record,
    validate_segments,
    write_manifest,
)
from .phones import SILENCE, fold_festival

__all__ = [
    "DEFAULT_LEXICON",
    "GENERATOR_VERSION",
    "PRESETS",
    "SPLITS",
    "VOICES",
    "CorpusConfig",
    "CorpusConfigError",
    "FestivalError",
    "FestivalNotFoundError",
    "UtteranceSpec",
    "VoiceInfo",
    "available_voices",
    "festival_available",
    "generate_corpus",
    "lexicon_words",
    "make_sentences",
    "plan_corpus",
]

# Bump when synthesis or post-processing changes, so cached utterances are regenerated.
GENERATOR_VERSION = 1
SAMPLE_RATE = 16000
SPLITS = ("train", "dev", "test", "test_heldout")
DEFAULT_LEXICON = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")
FESTIVAL_PACKAGES = ("festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts")
_INSTALL_HINT = "apt-get install " + " ".join(FESTIVAL_PACKAGES)
_NOISES = ("white", "pink", "brown")

# Pitch shifts on the HTS voice are done by resampling (Festival's HTS module ignores pitch
# options); the factor is rounded to a multiple of 1/64 so the polyphase filter stays short.
_PITCH_QUANTUM = 64
# Festival's last segment may end a few tens of ms before the audio does (diphone voices);
# more than this means the labels do not describe the audio.
_END_TOLERANCE_S = 0.1


class CorpusConfigError(ValueError):
    """An inconsistent corpus configuration (unknown voice, empty range, ...)."""


class FestivalNotFoundError(RuntimeError):
    """The festival binary or one of the needed voices is not installed."""


class FestivalError(RuntimeError):
    """Festival failed, or produced output that does not match what was asked for."""


@dataclass(frozen=True)
class VoiceInfo:
    """A Festival voice we know how to drive; ``engine`` decides how pitch is changed."""

    name: str
    engine: str  # "diphone": pitch via intonation targets; "hts": pitch via resampling
    sex: str
    package: str
    tag: str  # short name used in utterance ids
    # ked_diphone's voice file inserts an "r" segment after every "er" and gives it the second
    # half of the er (its diphones have er-r); those two segments are one er phone.
    er_r_hack: bool = False


VOICES: dict[str, VoiceInfo] = {
    v.name: v
    for v in (
        VoiceInfo("kal_diphone", "diphone", "male", "festvox-kallpc16k", "kal"),
        VoiceInfo("ked_diphone", "diphone", "male", "festvox-kdlpc16k", "ked", er_r_hack=True),
        VoiceInfo("cmu_us_slt_arctic_hts", "hts", "female", "festvox-us-slt-hts", "slt"),
    )
}

# Frequent English function words, mixed into the lexicon words so that sentences carry the
# reduced vowels and short words that real speech is full of.
FUNCTION_WORDS: tuple[str, ...] = (
    "the", "a", "an", "of", "and", "to", "in", "is", "that", "it", "was", "for", "on", "are",
    "as", "with", "his", "they", "at", "be", "this", "from", "have", "or", "by", "one", "had",
    "not", "but", "what", "all", "were", "when", "we", "there", "can", "your", "which", "their",
    "said", "if", "do", "will", "each", "about", "how", "up", "out", "them", "then", "she",
    "many", "some", "so", "these", "would", "other", "into", "has", "more", "her", "two",
    "like", "him", "see", "time", "could", "no", "make", "than", "first", "been", "its", "who",
    "now", "people", "my", "made", "over", "did", "down", "only", "way", "find", "use", "may",
    "water", "long", "little", "very", "after", "words", "called", "just", "where", "most",
    "know",
)  # fmt: skip


@dataclass(frozen=True)
class CorpusConfig:
    """What to generate. Two configs that compare equal generate identical corpora."""

    seed: int = 0
    n_train: int = 3600
    n_dev: int = 400
    n_test: int = 400
    train_voices: tuple[str, ...] = ("kal_diphone", "cmu_us_slt_arctic_hts")
    heldout_voice: str | None = "ked_diphone"
    min_words: int = 4
    max_words: int = 12
    function_word_prob: float = 0.35
    comma_prob: float = 0.06
    question_prob: float = 0.1
    stretch: tuple[float, float] = (0.85, 1.2)  # duration factor (>1 is slower)
    pitch_semitones: tuple[float, float] = (-3.0, 3.0)
    level_dbfs: tuple[float, float] = (-32.0, -16.0)  # RMS of the speech (not the pauses)
    snr_db: tuple[float, float] = (5.0, 35.0)
    clean_prob: float = 0.2  # share of utterances without added noise
    noise_kinds: tuple[str, ...] = ("white", "pink", "brown")
    lexicon: str | None = None  # None: Festival's CMU lexicon at DEFAULT_LEXICON

    def __post_init__(self) -> None:
        def bad(msg: str) -> CorpusConfigError:
            return CorpusConfigError(f"bad CorpusConfig: {msg}")

        if self.n_train <= 0 or self.n_dev < 0 or self.n_test < 0:
            raise bad(
                f"need n_train > 0, n_dev >= 0, n_test >= 0 (got {self.n_train}, "
                f"{self.n_dev}, {self.n_test})"
            )
        if not self.train_voices:
            raise bad("no train_voices")
        for v in (*self.train_voices, *([self.heldout_voice] if self.heldout_voice else [])):
            if v not in VOICES:
                raise bad(f"unknown voice {v!r}; known: {sorted(VOICES)}")
        if len(set(self.train_voices)) != len(self.train_voices):
            raise bad(f"duplicate train_voices {self.train_voices}")
        if self.heldout_voice in self.train_voices:
            raise bad(f"held-out voice {self.heldout_voice!r} is also a training voice")
        if not 1 <= self.min_words <= self.max_words:
            raise bad(f"need 1 <= min_words <= max_words (got {self.min_words}, {self.max_words})")
        for name in ("function_word_prob", "comma_prob", "question_prob", "clean_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise bad(f"{name} = {p} is not a probability")
        for name in ("stretch", "pitch_semitones", "level_dbfs", "snr_db"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise bad(f"{name} range ({lo}, {hi}) is empty")
        if self.stretch[0] <= 0:
            raise bad(f"stretch must be positive, got {self.stretch}")
        if self.level_dbfs[1] > -6:
            raise bad(f"level_dbfs up to {self.level_dbfs[1]} leaves no headroom for noise")
        for k in self.noise_kinds:
            if k not in _NOISES:
                raise bad(f"unknown noise kind {k!r}; known: {sorted(_NOISES)}")
        if not self.noise_kinds and self.clean_prob < 1.0:
            raise bad("noise_kinds is empty but clean_prob < 1")

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLITS if self.heldout_voice else SPLITS[:3]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CorpusConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise CorpusConfigError(f"unknown CorpusConfig fields: {sorted(unknown)}")
        conv = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**conv)


PRESETS: dict[str, CorpusConfig] = {
    # About 4.2 h of training audio: 4.19 s per utterance on average (measured on 200).
    "default": CorpusConfig(),
    # About 1.4 h of training audio, ~15 min to generate on 2 cores: trains the model bundled
    # with the package (rtmobile_train.bundle) in well under an hour.
    "small": CorpusConfig(n_train=1200, n_dev=100, n_test=150),
    # A few dozen short utterances: seconds to generate, for tests and CI.
    "tiny": CorpusConfig(n_train=16, n_dev=4, n_test=4, min_words=2, max_words=4),
}


@dataclass(frozen=True)
class UtteranceSpec:
    """Everything needed to produce one utterance; its sidecar stores this to detect staleness."""

    utt_id: str
    split: str
    sentence: int  # index into the sentence list: equal index <=> equal text
    text: str
    voice: str
    stretch: float
    pitch_semitones: float
    level_dbfs: float
    snr_db: float | None
    noise: str | None
    noise_seed: int
    version: int = GENERATOR_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- planning


@lru_cache(maxsize=4)
def _read_lexicon(path: str) -> tuple[tuple[str, ...], str]:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise FestivalNotFoundError(
            f"cannot read the Festival CMU lexicon {path} ({e}); install it with {_INSTALL_HINT}"
        ) from e
    words = sorted(set(re.findall(rb'^\("([a-z]{2,})" ', raw, flags=re.MULTILINE)))
    if len(words) < 1000:
        raise CorpusConfigError(f"{path}: only {len(words)} words; is this a Festival lexicon?")
    return tuple(w.decode("ascii") for w in words), hashlib.sha256(raw).hexdigest()


def lexicon_words(path: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Sorted unique lower-case alphabetic headwords of a Festival lexicon (``.out`` file)."""
    return _read_lexicon(str(path or DEFAULT_LEXICON))[0]


def make_sentences(
    rng: np.random.Generator,
    words: Sequence[str],
    n: int,
    *,
    min_words: int,
    max_words: int,
    function_word_prob: float = 0.35,
    comma_prob: float = 0.06,
    question_prob: float = 0.1,
) -> list[str]:
    """``n`` distinct pseudo-sentences: random lexicon and function words, with punctuation
    that makes Festival insert phrase breaks and question intonation."""
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 10 * n + 100:
            raise CorpusConfigError(
                f"cannot draw {n} distinct sentences of {min_words}-{max_words} words"
            )
        k = int(rng.integers(min_words, max_words + 1))
        toks: list[str] = []
        for i in range(k):
            if rng.random() < function_word_prob:
                w = FUNCTION_WORDS[int(rng.integers(len(FUNCTION_WORDS)))]
            else:
                w = words[int(rng.integers(len(words)))]
            if i < k - 1 and rng.random() < comma_prob:
                w += ","
            toks.append(w)
        s = " ".join(toks) + ("?" if rng.random() < question_prob else ".")
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def plan_corpus(config: CorpusConfig) -> list[UtteranceSpec]:
    """Every utterance of the corpus, drawn from the config's seed.

    Train, dev and test get disjoint sentences; test_heldout speaks the test sentences in the
    held-out voice, so the seen/unseen voice comparison differs only in the voice.
    """
    rng = np.random.default_rng(config.seed)
    words = lexicon_words(config.lexicon)
    sents = make_sentences(
        rng,
        words,
        config.n_train + config.n_dev + config.n_test,
        min_words=config.min_words,
        max_words=config.max_words,
        function_word_prob=config.function_word_prob,
        comma_prob=config.comma_prob,
        question_prob=config.question_prob,
    )
    ranges = {
        "train": range(0, config.n_train),
        "dev": range(config.n_train, config.n_train + config.n_dev),
        "test": range(config.n_train + config.n_dev, len(sents)),
    }
    ranges["test_heldout"] = ranges["test"]
    specs: list[UtteranceSpec] = []
    for split in config.splits:
        for i, s in enumerate(ranges[split]):
            if split == "test_heldout":
                assert config.heldout_voice is not None
                voice = config.heldout_voice
            else:  # round-robin keeps the voices balanced in every split
                voice = config.train_voices[i % len(config.train_voices)]
            clean = rng.random() < config.clean_prob
            noise = (
                None if clean else config.noise_kinds[int(rng.integers(len(config.noise_kinds)))]
            )
            specs.append(
                UtteranceSpec(
                    utt_id=f"{split}_{i:05d}_{VOICES[voice].tag}",
                    split=split,
                    sentence=s,
                    text=sents[s],
                    voice=voice,
                    stretch=round(float(rng.uniform(*config.stretch)), 4),
                    pitch_semitones=round(float(rng.uniform(*config.pitch_semitones)), 3),
                    level_dbfs=round(float(rng.uniform(*config.level_dbfs)), 2),
                    snr_db=None if clean else round(float(rng.uniform(*config.snr_db)), 2),
                    noise=noise,
                    noise_seed=int(rng.integers(2**31)),
                )
            )
    return specs


# ----------------------------------------------------------------------------- festival


def festival_available() -> bool:
    """Whether a ``festival`` binary is on PATH."""
    return shutil.which("festival") is not None


def _run_festival(script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("festival")
    if exe is None:
        raise FestivalNotFoundError(f"festival is not on PATH; install it with {_INSTALL_HINT}")
    with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        proc = subprocess.run(
            [exe, "-b", path], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise FestivalError(f"festival timed out after {timeout:.0f}s") from e
    finally:
        os.unlink(path)
    if proc.returncode != 0 or "SIOD ERROR" in proc.stderr or "SIOD ERROR" in proc.stdout:
        tail = (proc.stderr + proc.stdout).strip()[-800:]
        raise FestivalError(f"festival failed (exit {proc.returncode}): {tail}")
    return proc


@lru_cache(maxsize=1)
def available_voices() -> tuple[str, ...]:
    """Voices Festival can load (from its voice-locations list)."""
    proc = _run_festival("(print (mapcar car voice-locations))\n", timeout=60)
    return tuple(re.findall(r"[A-Za-z0-9_]+", proc.stdout))


def _festival_version() -> str:
    exe = shutil.which("festival")
    if exe is None:
        return "unknown"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return (proc.stdout or proc.stderr).strip()


def _scheme_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# One Festival process speaks a batch of utterances in one voice. Duration and (for diphone
# voices) intonation targets are scaled from the voice's own defaults, read after loading it.
_SCHEME_PRELUDE = """
(voice_{voice})
(set! rtm_base_stretch (Parameter.get 'Duration_Stretch))
(if (not rtm_base_stretch) (set! rtm_base_stretch 1.0))
(set! rtm_base_lr (if (symbol-bound? 'int_lr_params) int_lr_params nil))
(set! rtm_base_hts (if (symbol-bound? 'hts_engine_params) hts_engine_params nil))
(define (rtm_scale_lr p)
  (mapcar
   (lambda (kv)
     (if (or (eq? (car kv) 'target_f0_mean) (eq? (car kv) 'target_f0_std))
         (list (car kv) (* p (car (cdr kv))))
         kv))
   rtm_base_lr))
(define (rtm_say text stretch f0 wav segs)
  (Parameter.set 'Duration_Stretch (* stretch rtm_base_stretch))
  (if rtm_base_lr (set! int_lr_params (rtm_scale_lr f0)))
  (if rtm_base_hts
      (set! hts_engine_params (append rtm_base_hts (list (list "-r" (/ 1.0 stretch))))))
  (let ((u (eval (list 'Utterance 'Text text))))  ; Utterance does not evaluate its args
    (utt.synth u)
    (utt.save.wave u wav 'riff)
    (utt.save.segs u segs)))
"""


def _pitch_factor(spec: UtteranceSpec) -> tuple[float, Fraction]:
    """(f0 factor given to Festival, factor applied by resampling)."""
    p = 2.0 ** (spec.pitch_semitones / 12.0)
    if VOICES[spec.voice].engine == "hts":
        return 1.0, Fraction(round(p * _PITCH_QUANTUM), _PITCH_QUANTUM)
    return p, Fraction(1)


def _read_segs(path: Path) -> list[tuple[str, float]]:
    """(phone, end time) pairs from Festival's utt.save.segs (xlabel) file."""
    out = []
    lines = path.read_text(encoding="latin-1").splitlines()
    if "#" not in lines:  # the header ends with a line holding only "#" (phones may be "h#")
        raise FestivalError(f"{path}: not an xlabel segment file")
    for line in lines[lines.index("#") + 1 :]:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise FestivalError(f"{path}: bad segment line {line!r}")
        out.append((parts[2], float(parts[0])))
    if not out:
        raise FestivalError(f"{path}: no segments")
    return out


def _undo_er_r(raw: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Join each "er" with the "r" the ked voice inserted after it (see VoiceInfo)."""
    out: list[tuple[str, float]] = []
    i = 0
    while i < len(raw):
        if raw[i][0] == "er" and i + 1 < len(raw) and raw[i + 1][0] == "r":
            out.append(("er", raw[i + 1][1]))
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return out


# ----------------------------------------------------------------------------- post-processing


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal(n)
    if kind == "white" or n < 2:
        return w
    spec = np.fft.rfft(w)
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    spec /= np.sqrt(f) if kind == "pink" else f  # power 1/f (pink) or 1/f^2 (brown)
    return np.fft.irfft(spec, n)


def _finish(spec: UtteranceSpec, raw_wav: Path, segs_file: Path) -> tuple[np.ndarray, dict]:
    """Resample, label, set level, add noise: int16 audio and the manifest metadata."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        x, rate = sf.read(str(raw_wav), dtype="float64", always_2d=False)
    except RuntimeError as e:
        raise FestivalError(f"{spec.utt_id}: festival wrote no readable audio ({e})") from e
    if x.ndim != 1 or len(x) == 0:
        raise FestivalError(f"{spec.utt_id}: festival wrote empty or multi-channel audio")
    _, resample_pitch = _pitch_factor(spec)
    # Reading the samples as if recorded at rate*p raises pitch (and speed) by p.
    ratio = Fraction(SAMPLE_RATE) / (rate * resample_pitch)
    if ratio != 1:
        x = resample_poly(x, ratio.numerator, ratio.denominator)
    n = len(x)
    duration = n / SAMPLE_RATE
    time_scale = 1.0 / float(resample_pitch)

    raw = _read_segs(segs_file)
    labelled = _undo_er_r(raw) if VOICES[spec.voice].er_r_hack else raw
    segs: list[Segment] = []
    start = 0.0
    for phone, end in labelled:
        end = min(end * time_scale, duration)
        if end > start:  # Festival can emit zero-length segments; they carry no frames
            segs.append(Segment(fold_festival(phone), start, end))
            start = end
    if not segs or duration - segs[-1].end > _END_TOLERANCE_S:
        raise FestivalError(
            f"{spec.utt_id}: segments end at {segs[-1].end if segs else 0:.3f}s but the audio "
            f"lasts {duration:.3f}s"
        )
    segs[-1] = Segment(segs[-1].phone, segs[-1].start, duration)
    segs = merge_silences(segs)
    validate_segments(segs, duration, where=spec.utt_id)

    # Level: the speech (non-silence) RMS, so pauses do not dilute the target.
    speech = np.zeros(n, dtype=bool)
    for s in segs:
        if s.phone != SILENCE:
            speech[round(s.start * SAMPLE_RATE) : round(s.end * SAMPLE_RATE)] = True
    rms = math.sqrt(float(np.mean(x[speech] ** 2))) if speech.any() else 0.0
    if rms == 0.0:
        raise FestivalError(f"{spec.utt_id}: synthesised speech is silent")
    x = x * (10.0 ** (spec.level_dbfs / 20.0) / rms)
    if spec.noise is not None and spec.snr_db is not None:
        noise = _noise(spec.noise, n, np.random.default_rng(spec.noise_seed))
        p_speech = float(np.mean(x[speech] ** 2))
        noise *= math.sqrt(p_speech / (10.0 ** (spec.snr_db / 10.0)) / float(np.mean(noise**2)))
        x = x + noise
    peak = float(np.max(np.abs(x)))
    peak_scale = min(1.0, 0.99 / peak) if peak > 0 else 1.0
    pcm = np.clip(np.round(x * peak_scale * 32768.0), -32768, 32767).astype(np.int16)

    meta = {
        "voice": spec.voice,
        "engine": VOICES[spec.voice].engine,
        "sentence": spec.sentence,
        "stretch": spec.stretch,
        "pitch_semitones": spec.pitch_semitones,
        "pitch_resample_factor": float(resample_pitch),
        "level_dbfs": spec.level_dbfs,
        "snr_db": spec.snr_db,
        "noise": spec.noise,
        "peak_scale": round(peak_scale, 6),
        "festival_phones": [p for p, _ in raw],
        "festival_rate": int(rate),
    }
    return pcm, {"segments": segs, "meta": meta}


def _paths(out_dir: Path, spec: UtteranceSpec) -> tuple[Path, Path]:
    d = out_dir / "wav" / spec.split
    return d / f"{spec.utt_id}.wav", d / f"{spec.utt_id}.json"


def _write_utterance(out_dir: Path, spec: UtteranceSpec, pcm: np.ndarray, info: dict) -> dict:
    import soundfile as sf

    wav, side = _paths(out_dir, spec)
    wav.parent.mkdir(parents=True, exist_ok=True)
    utt = Utterance(
        utt_id=spec.utt_id,
        split=spec.split,
        speaker=spec.voice,
        audio_path=wav,
        segments=tuple(info["segments"]),
        sample_rate=SAMPLE_RATE,
        num_samples=len(pcm),
        audio_format="wav",
        text=spec.text,
        meta=info["meta"],
    )
    tmp = wav.with_name(wav.name + ".tmp")
    sf.write(str(tmp), pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, wav)
    record = to_record(utt, out_dir)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps({"spec": spec.to_dict(), "record": record}, sort_keys=True))
    os.replace(tmp, side)  # the sidecar is written last: its presence means "done"
    return record


def _synthesize_job(out_dir: str, specs: list[UtteranceSpec]) -> list[str]:
    """Speak ``specs`` (all one voice) in one Festival process and finish each utterance."""
    voice = specs[0].voice
    assert all(s.voice == voice for s in specs)
    with tempfile.TemporaryDirectory(prefix="rtm_festival_") as tmp:
        lines = [_SCHEME_PRELUDE.format(voice=voice)]
        for i, s in enumerate(specs):
            f0, res = _pitch_factor(s)
            stretch = s.stretch * float(res)  # resampling by res shortens by res: pre-stretch
            lines.append(
                f"(rtm_say {_scheme_string(s.text)} {stretch!r} {f0!r} "
                f"{_scheme_string(f'{tmp}/{i}.wav')} {_scheme_string(f'{tmp}/{i}.segs')})"
            )
        _run_festival("\n".join(lines) + "\n", timeout=60 + 10 * len(specs))
        done = []
        for i, s in enumerate(specs):
            wav, segs = Path(tmp, f"{i}.wav"), Path(tmp, f"{i}.segs")
            if not (wav.is_file() and segs.is_file()):
                raise FestivalError(f"{s.utt_id}: festival produced no output for {s.text!r}")
            pcm, info = _finish(s, wav, segs)
            _write_utterance(Path(out_dir), s, pcm, info)
            done.append(s.utt_id)
    return done


def _cached_record(out_dir: Path, spec: UtteranceSpec) -> dict | None:
    wav, side = _paths(out_dir, spec)
    if not (side.is_file() and wav.is_file()):
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("spec") != spec.to_dict():
        return None
    rec = data.get("record")
    return rec if isinstance(rec, dict) else None


# ----------------------------------------------------------------------------- driver


def _chunks(specs: list[UtteranceSpec], size: int) -> list[list[UtteranceSpec]]:
    by_voice: dict[str, list[UtteranceSpec]] = {}
    for s in specs:
        by_voice.setdefault(s.voice, []).append(s)
    return [v[i : i + size] for v in by_voice.values() for i in range(0, len(v), size)]


def generate_corpus(
    out_dir: str | os.PathLike[str],
    config: CorpusConfig | str = "tiny",
    *,
    workers: int = 1,
    chunk_size: int = 16,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate (or complete) a corpus in ``out_dir``; returns the manifest path.

    ``config`` is a CorpusConfig or a preset name. Utterances already on disk with a matching
    spec are kept, so an interrupted run resumes. ``workers`` > 1 runs Festival jobs in a
    process pool. Festival is needed only when something is left to synthesise.
    """
    if isinstance(config, str):
        if config not in PRESETS:
            raise CorpusConfigError(f"unknown preset {config!r}; choose from {sorted(PRESETS)}")
        config = PRESETS[config]
    if workers < 1 or chunk_size < 1:
        raise CorpusConfigError(f"workers ({workers}) and chunk_size ({chunk_size}) must be >= 1")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_corpus(config)
    todo = [s for s in plan if _cached_record(out, s) is None]

    if todo:
        if not festival_available():
            raise FestivalNotFoundError(f"festival is not on PATH; install it with {_INSTALL_HINT}")
        have = set(available_voices())
        missing = sorted({s.voice for s in todo} - have)
        if missing:
            pkgs = " ".join(VOICES[v].package for v in missing)
            raise FestivalNotFoundError(
                f"Festival voice(s) {missing} not installed (have {sorted(have)}); "
                f"install with apt-get install {pkgs}"
            )

    from tqdm import tqdm

    jobs = _chunks(todo, chunk_size)
    bar = tqdm(
        total=len(plan), initial=len(plan) - len(todo), unit="utt", disable=not progress,
        desc=f"festival corpus {out.name}",
    )  # fmt: skip
    done = len(plan) - len(todo)

    def advance(k: int) -> None:
        nonlocal done
        done += k
        bar.update(k)
        if on_progress is not None:
            on_progress(done, len(plan))

    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                advance(len(_synthesize_job(str(out), job)))
        else:
            # spawn: the parent may hold threads (torch), which fork would copy half-broken.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futs = [pool.submit(_synthesize_job, str(out), job) for job in jobs]
                for fut in as_completed(futs):
                    advance(len(fut.result()))
    finally:
        bar.close()

    utts: list[Utterance] = []
    for s in plan:
        rec = _cached_record(out, s)
        if rec is None:
            raise FestivalError(f"{s.utt_id}: missing after synthesis")
        utts.append(from_record(rec, out, where=str(_paths(out, s)[1])))
    manifest = write_manifest(out / "manifest.jsonl", utts)
    _write_summary(out, config, utts)
    return manifest


def _write_summary(out: Path, config: CorpusConfig, utts: list[Utterance]) -> None:
    summary: dict[str, dict[str, float]] = {}
    for u in utts:
        d = summary.setdefault(u.split, {"utterances": 0, "hours": 0.0})
        d["utterances"] += 1
        d["hours"] += u.duration / 3600.0
    for d in summary.values():
        d["hours"] = round(d["hours"], 4)
    info = {
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "voices": {v: asdict(VOICES[v]) for v in sorted({u.speaker for u in utts})},
        "lexicon": str(config.lexicon or DEFAULT_LEXICON),
        "lexicon_sha256": _read_lexicon(str(config.lexicon or DEFAULT_LEXICON))[1],
        "festival": _festival_version(),
        "sample_rate": SAMPLE_RATE,
        "splits": summary,
    }
    tmp = out / "corpus.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "corpus.json")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="corpus folder (created; resumed if present)")
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-dev", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    cfg = PRESETS[args.preset]
    over = {
        k: v
        for k, v in (
            ("seed", args.seed), ("n_train", args.n_train), ("n_dev", args.n_dev),
            ("n_test", args.n_test),
        )
        if v is not None
    }  # fmt: skip
    cfg = replace(cfg, **over)
    try:
        manifest = generate_corpus(
            args.out, cfg, workers=args.workers, progress=not args.no_progress
        )
    except (FestivalNotFoundError, FestivalError, CorpusConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = json.loads((manifest.parent / "corpus.json").read_text())
    for split, d in info["splits"].items():
        print(f"{split:13s} {d['utterances']:6d} utterances {d['hours']:8.3f} h")
    print(f"manifest: {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
