"""Every failure of the runtime commands is exactly one ``Error: ...`` line on stderr and exit
status 2, never a traceback: empty or non-audio wavs, wrong-typed model METADATA, unexpected
exceptions (``--debug`` shows their traceback), and a stdout closed early (quiet, status 141)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner, Result

from rtmobile_rt import cli
from rtmobile_rt.cli import EXIT_BROKEN_PIPE, main
from rtmobile_train.bsp import random_bsp_matrix
from rtmobile_train.bspc import LayerWeights, encode_bspc
from rtmobile_train.data.phones import PHONES39
from rtmobile_train.features import FbankConfig

MEL, HIDDEN = 20, 16
FBANK = FbankConfig(num_mel_bins=MEL).to_dict()
FEATURES = {"fbank": FBANK, "context": [0, 0]}


def model_bytes(metadata: dict[str, Any] | None) -> bytes:
    """A small GRU phone model on 20-d fbank with the given METADATA."""
    rng = np.random.default_rng(0)

    def w(rows: int, cols: int) -> np.ndarray:
        return random_bsp_matrix(rng, rows, cols, 4, 2, 0.5, 0.0, 0.3)

    zeros = np.zeros(3 * HIDDEN, np.float32)
    layer = LayerWeights(w(3 * HIDDEN, MEL), w(3 * HIDDEN, HIDDEN), zeros, zeros)
    return encode_bspc(
        [layer],
        w(len(PHONES39), HIDDEN),
        np.zeros(len(PHONES39), np.float32),
        blocks=(4, 2),
        labels=list(PHONES39),
        metadata=metadata,
    )


def write_model(tmp_path: Path, metadata: dict[str, Any] | None, name: str = "m.bspc") -> Path:
    path = tmp_path / name
    path.write_bytes(model_bytes(metadata))
    return path


def write_wav(tmp_path: Path, samples: np.ndarray, rate: int = 16000, name: str = "a.wav") -> Path:
    path = tmp_path / name
    soundfile.write(path, samples, rate, subtype="FLOAT")
    return path


def speech(seconds: float = 0.5) -> np.ndarray:
    return (0.1 * np.random.default_rng(1).standard_normal(int(16000 * seconds))).astype(np.float32)


def rtm(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="rtmobile")


def assert_error(result: Result, line: str) -> None:
    """Exit status 2, nothing on stdout, and stderr exactly ``Error: line``."""
    assert (result.exit_code, result.stderr) == (2, f"Error: {line}\n"), result.output
    assert result.stdout == "", result.output


def rtm_process(*args: object, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """rtmobile in a process of its own: what C libraries write to fd 2 is seen too."""
    command = [sys.executable, "-m", "rtmobile_rt.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)


# -- audio -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["--stream", "--offline"])
def test_zero_sample_wav(tmp_path: Path, mode: str) -> None:
    model = write_model(tmp_path, {"features": FEATURES})
    wav = write_wav(tmp_path, np.zeros(0, np.float32))
    assert_error(rtm("transcribe", wav, "--model", model, mode), f"{wav}: the audio has no samples")


def test_random_bytes_are_not_audio(tmp_path: Path) -> None:
    model = write_model(tmp_path, {"features": FEATURES})
    noise = tmp_path / "noise.wav"
    noise.write_bytes(np.random.default_rng(1).bytes(5000))
    # A process of its own: libsndfile's MP3 probe writes a warning of its own to fd 2 for
    # these bytes, and its reason ("File does not exist ... (possibly a pipe?)") is false.
    proc = rtm_process("transcribe", noise, "--model", model)
    assert (proc.returncode, proc.stderr) == (2, f"Error: {noise}: not a readable WAV/audio file\n")
    assert proc.stdout == ""
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert_error(
        rtm("transcribe", empty, "--model", model),
        f"{empty}: not a readable WAV/audio file (Format not recognised)",
    )


def test_bad_samples_and_rate(tmp_path: Path) -> None:
    model = write_model(tmp_path, {"features": FEATURES})
    nan = speech()
    nan[100] = np.nan
    wav = write_wav(tmp_path, nan)
    assert_error(
        rtm("transcribe", wav, "--model", model), f"{wav}: the audio has NaN or infinite samples"
    )
    slow = write_wav(tmp_path, speech(), rate=8000, name="slow.wav")
    assert_error(
        rtm("transcribe", slow, "--model", model, "--offline"),
        f"{slow}: audio is 8000 Hz but the model expects 16000 Hz",
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it to read would block until a writer came
    model = write_model(tmp_path, {"features": FEATURES})
    assert_error(rtm("transcribe", fifo, "--model", model), f"{fifo}: not a regular file")
    for command in ("info", "bench", "tune"):
        assert_error(rtm(command, fifo), f"{fifo}: not a regular file")


# -- model METADATA ----------------------------------------------------------------------------

BAD_METADATA = [
    (
        {"features": {"fbank": FBANK, "context": 3}},
        "METADATA features.context must be [left, right], two ints >= 0, got 3",
    ),
    (
        {"features": {"fbank": FBANK, "context": [1, "a"]}},
        "METADATA features.context must be [left, right], two ints >= 0, got [1, 'a']",
    ),
    (
        {"features": 5},
        "METADATA features must be a mapping {'fbank': {...}, 'context': [left, right]}, got 5",
    ),
    (
        {"features": {"fbank": 5, "context": [0, 0]}},
        "METADATA features.fbank must be a mapping of fbank options, got 5",
    ),
    (
        {"features": {"context": [0, 0]}},
        "METADATA features has no 'fbank' entry (the fbank options)",
    ),
    (
        {"features": {"fbank": {**FBANK, "frame_shift_ms": 0}, "context": [0, 0]}},
        "METADATA features.fbank.frame_shift_ms must be > 0 and <= frame_length_ms (25.0), got 0",
    ),
    (
        {"features": {"fbank": {**FBANK, "frame_shift_ms": "10"}, "context": [0, 0]}},
        "METADATA features.fbank.frame_shift_ms must be a finite number, got '10'",
    ),
    (
        {"features": {"fbank": {**FBANK, "sample_rate": 16000.0}, "context": [0, 0]}},
        "METADATA features.fbank.sample_rate must be an int, got 16000.0",
    ),
    (
        {"features": {"fbank": {**FBANK, "num_mel_bins": True}, "context": [0, 0]}},
        "METADATA features.fbank.num_mel_bins must be an int, got True",
    ),
    (
        {"features": {"fbank": {**FBANK, "nfft": 512}, "context": [0, 0]}},
        "METADATA features.fbank has unknown fields ['nfft']",
    ),
    (
        {"features": {"fbank": {**FBANK, "window_type": "foo"}, "context": [0, 0]}},
        "METADATA features.fbank is refused by kaldi-native-fbank: invalid window type: foo",
    ),
    (
        {"features": {"fbank": FBANK, "context": [1, 1]}},
        "METADATA features give 20 x 3 = 60 inputs but the model takes 20",
    ),
    ({"features": FEATURES, "decoder": 4}, "METADATA decoder must be a mapping, got 4"),
    (
        {"features": FEATURES, "decoder": {"min_frames": "3"}},
        "METADATA decoder.min_frames must be an int >= 1, got '3'",
    ),
]


@pytest.mark.parametrize(("metadata", "message"), BAD_METADATA)
@pytest.mark.parametrize("command", ["info", "bench", "transcribe"])
def test_bad_metadata_is_named(
    tmp_path: Path, metadata: dict[str, Any], message: str, command: str
) -> None:
    model = write_model(tmp_path, metadata)
    if command == "transcribe":
        args: tuple[object, ...] = ("transcribe", write_wav(tmp_path, speech()), "--model", model)
    else:
        args = (command, model, *(("--frames", 10, "--repeats", 1) if command == "bench" else ()))
    assert_error(rtm(*args), f"{model}: {message}")


def test_models_without_features_still_inspect_and_time(tmp_path: Path) -> None:
    model = write_model(tmp_path, None)
    result = rtm("info", model)
    assert result.exit_code == 0 and "features    : none recorded" in result.output
    assert rtm("bench", model, "--frames", 10, "--repeats", 1).exit_code == 0
    assert_error(
        rtm("transcribe", write_wav(tmp_path, speech()), "--model", model),
        f"{model}: the model carries no feature configuration (METADATA 'features'); "
        "export it with rtmobile_train.export to transcribe audio",
    )


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("demo", "--rate", "nan"),
        ("demo", "--rate", "inf"),
        ("tune", "--search-blocks", "--rate", "nan"),
        ("tune", "--search-blocks", "--hidden", "0"),
        ("tune", "--search-blocks", "--layers", "65"),
    ],
)
def test_impossible_numbers_are_usage_errors(args: tuple[str, ...]) -> None:
    result = rtm(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and f"'{args[-2]}'" in errors[0], result.output
    assert "finite" in errors[0] or "range" in errors[0], result.output


# -- unexpected errors and --debug -----------------------------------------------------------


def test_unexpected_exception_is_one_line_and_debug_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(cli, "Session", broken)
    model = write_model(tmp_path, None)
    assert_error(
        rtm("info", model),
        "internal error, KeyError: 'boom' (rtmobile --debug COMMAND ... shows where)",
    )
    result = rtm("--debug", "info", model)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):", result.stderr
    assert "KeyError: 'boom'" in lines[-2] and "in broken" in result.stderr
    assert lines[-1] == "Error: internal error, KeyError: 'boom'"


def test_debug_shows_the_cause_of_an_expected_error(tmp_path: Path) -> None:
    model = write_model(tmp_path, {"features": {"fbank": FBANK, "context": 3}})
    message = f"Error: {model}: {BAD_METADATA[0][1]}"
    result = rtm("--debug", "info", model)
    assert result.exit_code == 2 and result.stderr.startswith("Traceback (most recent call last)")
    assert "FeatureError" in result.stderr and result.stderr.endswith(f"\n{message}\n")
    assert "--debug" in rtm("--help").stdout


# -- a stdout closed early ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [("transcribe",), ("transcribe", "--offline"), ("--help",)])
def test_closed_stdout_ends_quietly(args: tuple[str, ...]) -> None:
    """`rtmobile transcribe | head -2`: no message, the status of a tool killed by SIGPIPE."""
    command = [sys.executable, "-m", "rtmobile_rt.cli", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # long before the first line: the reader is gone
        stderr = proc.stderr.read()
        assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE == 141
    assert stderr == b""
