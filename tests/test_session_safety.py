"""What a Session promises once loaded (issue "Hardening"), through the Python API.

The model file is never read again; a FIFO is refused without blocking; memory is bounded
before it is allocated (``memory_limit_mb``); a non-finite input frame never silently poisons a
stream (``nonfinite``). The C++ side is tested in cpp/tests/session_safety_test.cc.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import rtmobile_rt
from rtmobile_rt import MemoryLimitError, NonFiniteInputError, Session
from rtmobile_train.bspc import LayerWeights, encode_bspc

INPUT, HIDDEN, OUTPUT = 10, 48, 7


def model_bytes(seed: int, hidden: int = HIDDEN) -> bytes:
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (0.3 * rng.standard_normal((rows, cols))).astype(np.float32)

    def vec(n: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    g = 3 * hidden
    layer = LayerWeights(mat(g, INPUT), mat(g, hidden), vec(g), vec(g))
    return encode_bspc([layer], mat(OUTPUT, hidden), vec(OUTPUT), kind="gru", blocks=(4, 2))


def frames(t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((t, INPUT)).astype(np.float32)


@pytest.mark.parametrize("change", ["rewrite", "truncate", "replace", "delete"])
def test_file_changes_after_load_change_nothing(tmp_path: Path, change: str) -> None:
    path = tmp_path / "model.bspc"
    path.write_bytes(model_bytes(1))
    session = Session(path, threads=2, tuning=None)
    x = frames(30)
    want = session.run(x)
    stream = session.stream()
    first = stream.push(x[:11])
    if change == "rewrite":  # every byte after the header flipped, in place
        data = bytearray(path.read_bytes())
        data[64:] = bytes(b ^ 0xA5 for b in data[64:])
        with open(path, "r+b") as f:
            f.write(data)
    elif change == "truncate":
        os.truncate(path, 100)
    elif change == "replace":  # `cp other.bspc model.bspc`
        other = tmp_path / "other.bspc"
        other.write_bytes(model_bytes(2))
        shutil.copyfile(other, path)
    else:
        path.unlink()
    np.testing.assert_array_equal(session.run(x), want)
    np.testing.assert_array_equal(np.concatenate([first, stream.push(x[11:])]), want)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            Session(fifo, tuning=None)
        except BaseException as e:  # handed to the main thread
            outcome.append(e)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():  # unblock it before failing, so the test run can end
        with open(fifo, "wb"):
            pass
        pytest.fail("Session(fifo) blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], OSError)
    assert str(outcome[0]) == f"model path '{fifo}' is a FIFO (named pipe), not a regular file"


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"is a directory, not a regular file"):
        rtmobile_rt._core.Session(str(tmp_path))


def test_memory_limit(tmp_path: Path) -> None:
    data = model_bytes(3, hidden=512)
    session = Session(data, threads=1, chunk_frames=64)
    planned = session.info["planned_bytes"]
    assert len(data) < planned < 64 << 20
    # 4096-frame chunks need 4096 x 1536 x 4 bytes of gate buffers alone: 24 MiB.
    with pytest.raises(MemoryLimitError) as excinfo:
        Session(data, threads=1, chunk_frames=4096, memory_limit_mb=8)
    message = str(excinfo.value)
    assert message.startswith("the model needs up to ")
    assert message.endswith(
        "more than the session's memory limit of 8 MiB; raise memory_limit_mb if this model "
        "is expected to be that large"
    )
    assert isinstance(excinfo.value, MemoryError)
    big = Session(data, threads=1, chunk_frames=4096, memory_limit_mb=64)
    assert big.info["planned_bytes"] > 24 << 20
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(ValueError, match=r"memory_limit_mb must be an int >= 0"):
            Session(data, memory_limit_mb=bad)  # type: ignore[arg-type]


def test_nonfinite_raise_keeps_the_stream(tmp_path: Path) -> None:
    session = Session(model_bytes(4), tuning=None)
    assert session.info["nonfinite"] == "raise"
    x = frames(12, seed=5)
    want = session.run(x)
    stream = session.stream()
    first = stream.push(x[:5])
    bad = x[5:].copy()
    bad[2, 3] = np.nan
    with pytest.raises(NonFiniteInputError, match=r"^input frame 2, feature 3 is NaN; nothing"):
        stream.push(bad)
    assert stream.frames_seen == 5
    bad[2, 3] = -np.inf
    with pytest.raises(ValueError, match=r"input frame 2, feature 3 is infinite"):
        session.run(bad)
    np.testing.assert_array_equal(np.concatenate([first, stream.push(x[5:])]), want)


def test_nonfinite_propagate_until_reset() -> None:
    session = Session(model_bytes(4), tuning=None, nonfinite="propagate")
    assert session.info["nonfinite"] == "propagate"
    x = frames(6, seed=6)
    stream = session.stream()
    bad = x.copy()
    bad[1, 0] = np.nan
    assert np.isnan(stream.push(bad)[1:]).all()
    assert np.isnan(stream.push(x[:1])).all()  # the state carries it
    stream.reset()
    np.testing.assert_array_equal(stream.push(x), session.run(x))
    with pytest.raises(ValueError, match=r"nonfinite must be 'raise' or 'propagate', got 'skip'"):
        Session(model_bytes(4), nonfinite="skip")
