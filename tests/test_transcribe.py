"""Streaming transcription gives the same phones as an offline run, for any chunk size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from rtmobile_rt import Session
from rtmobile_rt.cli import main
from rtmobile_rt.transcribe import (
    StreamingRecognizer,
    TranscribeError,
    chunks,
    transcribe_offline,
)
from rtmobile_train.bsp import random_bsp_matrix
from rtmobile_train.bspc import LayerWeights, encode_bspc
from rtmobile_train.data.phones import PHONES39
from rtmobile_train.features import FbankConfig

MEL, LEFT, RIGHT, HIDDEN = 20, 2, 1, 48


def model_bytes(metadata: dict | None) -> bytes:
    rng = np.random.default_rng(4)
    dim = MEL * (LEFT + 1 + RIGHT)

    def w(rows: int, cols: int) -> np.ndarray:
        return random_bsp_matrix(rng, rows, cols, 4, 2, 0.5, 0.0, 0.3)

    layer = LayerWeights(
        w(3 * HIDDEN, dim),
        w(3 * HIDDEN, HIDDEN),
        np.zeros(3 * HIDDEN, np.float32),
        np.zeros(3 * HIDDEN, np.float32),
    )
    mean = np.full(dim, 8.0, np.float32)
    var = np.full(dim, 9.0, np.float32)
    return encode_bspc(
        [layer],
        w(len(PHONES39), HIDDEN),
        np.zeros(len(PHONES39), np.float32),
        blocks=(4, 2),
        labels=list(PHONES39),
        norm=(mean, var, 1e-5),
        metadata=metadata,
    )


FEATURES = {
    "features": {"fbank": FbankConfig(num_mel_bins=MEL).to_dict(), "context": [LEFT, RIGHT]}
}


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    return (tone + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("chunk", [160, 320, 640, 999, 16000])
def test_streaming_equals_offline(audio: np.ndarray, chunk: int) -> None:
    session = Session(model_bytes(FEATURES), threads=1)
    offline = transcribe_offline(session, audio, 16000)
    recognizer = StreamingRecognizer(session)
    streamed = []
    for piece in chunks(audio, chunk):
        streamed += recognizer.accept(piece).phones
    streamed += recognizer.finish().phones
    assert len(offline) > 3
    assert [(p.label, p.frame) for p in streamed] == [(p.label, p.frame) for p in offline]
    assert all(p.label in PHONES39 for p in offline)


def test_model_without_feature_config_is_rejected(audio: np.ndarray) -> None:
    session = Session(model_bytes(None))
    with pytest.raises(TranscribeError, match="feature configuration"):
        StreamingRecognizer(session)
    with pytest.raises(TranscribeError, match="16000 Hz"):
        transcribe_offline(Session(model_bytes(FEATURES)), audio, 8000)


def test_cli_transcribe(tmp_path: Path, audio: np.ndarray) -> None:
    model = tmp_path / "m.bspc"
    model.write_bytes(model_bytes(FEATURES))
    wav = tmp_path / "a.wav"
    soundfile.write(wav, audio, 16000)
    runner = CliRunner()
    result = runner.invoke(main, ["transcribe", str(wav), "--model", str(model), "--show-sil"])
    assert result.exit_code == 0, result.output
    assert "real-time factor" in result.output and "latency median" in result.output
    offline = runner.invoke(main, ["transcribe", str(wav), "--model", str(model), "--offline"])
    assert offline.exit_code == 0, offline.output

    bad = tmp_path / "bare.bspc"
    bad.write_bytes(model_bytes(None))
    result = runner.invoke(main, ["transcribe", str(wav), "--model", str(bad)])
    assert result.exit_code == 2 and "feature configuration" in result.output
    assert "Traceback" not in result.output
    missing = runner.invoke(main, ["transcribe", str(tmp_path / "none.wav"), "--model", str(model)])
    assert missing.exit_code == 2 and "not found" in missing.output
    notaudio = tmp_path / "x.wav"
    notaudio.write_bytes(b"nope")
    result = runner.invoke(main, ["transcribe", str(notaudio), "--model", str(model)])
    assert result.exit_code == 2 and "not a readable WAV/audio file" in result.output


@pytest.mark.parametrize("min_frames", [1, 2, 3, 4])
def test_streaming_decoder_equals_offline_collapse(min_frames: int) -> None:
    """GreedyDecoder fed in chunks emits exactly evaluate.collapse(argmax, min_frames), with
    each phone stamped at the first frame of its run."""
    from rtmobile_rt.transcribe import GreedyDecoder
    from rtmobile_train.evaluate import collapse

    rng = np.random.default_rng(min_frames)
    # Runs of 1-6 frames over 5 labels: plenty of short blips and repeated labels.
    path = np.concatenate([np.full(rng.integers(1, 7), rng.integers(0, 5)) for _ in range(300)])
    logits = np.eye(5, dtype=np.float32)[path]
    decoder = GreedyDecoder(list("abcde"), 0.01, 0.0125, min_frames)
    phones, start = [], 0
    while start < len(path):
        size = int(rng.integers(0, 9))
        phones += decoder.push(logits[start : start + size])
        start += size
    assert [p.label for p in phones] == ["abcde"[k] for k in collapse(path.tolist(), min_frames)]
    for p in phones:
        f = p.frame
        assert path[f] == "abcde".index(p.label) and (f == 0 or path[f - 1] != path[f])
        assert p.start == pytest.approx(0.0125 + 0.01 * f)


def test_decoder_min_frames_from_metadata(tmp_path: Path) -> None:
    from rtmobile_rt.transcribe import DEFAULT_MIN_FRAMES, decoder_min_frames

    features = {"fbank": FbankConfig(num_mel_bins=MEL).to_dict(), "context": [LEFT, RIGHT]}
    assert decoder_min_frames(Session(model_bytes({"features": features}))) == DEFAULT_MIN_FRAMES
    meta = {"features": features, "decoder": {"min_frames": 5}}
    assert decoder_min_frames(Session(model_bytes(meta))) == 5
    bad = {"features": features, "decoder": {"min_frames": 0}}
    with pytest.raises(TranscribeError, match="min_frames"):
        decoder_min_frames(Session(model_bytes(bad)))
