"""The phone model shipped inside the package (``rtmobile_train.bundle`` builds it) and the
README's first command, ``rtmobile transcribe``, on it."""

from __future__ import annotations

import re

import numpy as np
from click.testing import CliRunner

from rtmobile_rt import Session
from rtmobile_rt.cli import BUNDLED_AUDIO, BUNDLED_MODEL, main
from rtmobile_rt.transcribe import StreamingRecognizer, read_audio, transcribe_offline
from rtmobile_train.data.phones import PHONES39


def test_bundled_model_is_a_small_fp16_bsp_phone_model() -> None:
    assert BUNDLED_MODEL.is_file() and BUNDLED_AUDIO.is_file()
    assert BUNDLED_MODEL.stat().st_size <= 2 * 1024 * 1024
    session = Session(BUNDLED_MODEL, threads=1)
    info = session.info
    assert info["compression_rate"] > 3.5  # BSP-pruned, not a dense model
    assert {m["dtype"] for m in info["matrices"]} == {"f16"}
    assert session.labels == list(PHONES39)
    meta = session.metadata
    assert "fbank" in meta["features"] and meta["decoder"]["min_frames"] >= 1
    per = meta["per_percent"]  # measured by the bundle builder, quoted in the README
    assert 0 < per["test"] < 100 and 0 < per["test_heldout"] < 100


def test_bundled_sample_streams_the_offline_phones() -> None:
    session = Session(BUNDLED_MODEL, threads=1)
    samples, rate = read_audio(str(BUNDLED_AUDIO))
    offline = [p.label for p in transcribe_offline(session, samples, rate)]
    assert len(offline) >= 5  # a few seconds of speech: phones, not silence only
    for chunk_ms in (10, 25, 40):
        rec = StreamingRecognizer(session)
        step = rate * chunk_ms // 1000
        streamed = []
        for start in range(0, len(samples), step):
            streamed += [
                p.label for p in rec.accept(np.asarray(samples[start : start + step])).phones
            ]
        streamed += [p.label for p in rec.finish().phones]
        assert streamed == offline, chunk_ms


def test_readme_first_command_streams_phones() -> None:
    result = CliRunner().invoke(main, ["transcribe"])
    assert result.exit_code == 0, result.output
    phone_lines = re.findall(r"^\s+\d+\.\d+s\s+(\S+)$", result.output, re.M)
    assert len(phone_lines) >= 3 and set(phone_lines) <= set(PHONES39)
    assert "latency median" in result.output and "real-time factor" in result.output
