"""The CLI and tuning files: without --threads a command's Session takes the threads of the
model's tuning file (else the runtime's choice); an explicit --threads wins over the file."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from rtmobile_rt.cli import BUNDLED_MODEL, main
from rtmobile_rt.demo import random_gru_bspc
from rtmobile_rt.tuning import cpu_signature, model_key, save_tuning

# Not what the runtime picks by itself on any machine these tests run on (1, 2 or 4).
TUNED_THREADS = 3


def tuned(model: str | bytes, threads: int = TUNED_THREADS) -> Path:
    record = {
        "version": 1,
        "model": model_key(model),
        "cpu": cpu_signature(),
        "options": {"threads": threads},
    }
    return save_tuning(record, model)


def invoke(*args: object) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_applies_the_tuning_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the in-memory model's file lives here
    path = tuned(random_gru_bspc(hidden=32, layers=2, rate=10.0, dtype="f32"))
    assert path.is_relative_to(tmp_path)
    args = ("demo", "--hidden", 32, "--frames", 20)
    assert f"{TUNED_THREADS} thread(s)" in invoke(*args)
    assert "1 thread(s)" in invoke(*args, "--threads", 1)


def test_transcribe_applies_the_tuning_file(tmp_path: Path) -> None:
    model = tmp_path / "phones.bspc"
    shutil.copyfile(BUNDLED_MODEL, model)
    untuned = invoke("transcribe", "--model", model, "--offline")
    assert f"threads={TUNED_THREADS})" not in untuned  # the runtime's own choice
    tuned(str(model))
    assert f"threads={TUNED_THREADS})" in invoke("transcribe", "--model", model, "--offline")
    explicit = invoke("transcribe", "--model", model, "--offline", "--threads", 1)
    assert "threads=1)" in explicit


def test_eval_passes_threads_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workflow = pytest.importorskip("rtmobile_train.workflow")
    seen: list[Any] = []

    def evaluate_bspc(model: Any, corpus: Any, split: str, **kwargs: Any) -> SimpleNamespace:
        seen.append(kwargs["threads"])
        return SimpleNamespace(per=0.1, errors=1, ref_len=10, num_utts=1, frame_acc=0.9)

    monkeypatch.setattr(workflow, "evaluate_bspc", evaluate_bspc)
    model = tmp_path / "m.bspc"
    model.write_bytes(random_gru_bspc(input_dim=12, hidden=16, layers=1, classes=6, rate=4.0))
    invoke("eval", model, "--corpus", tmp_path, "--no-progress")
    invoke("eval", model, "--corpus", tmp_path, "--no-progress", "--threads", 2)
    assert seen == [None, 2]  # None: Session decides (tuning file, else the runtime)


@pytest.mark.parametrize("command", ["demo", "transcribe", "eval"])
def test_threads_help_names_the_tuning_file(command: str) -> None:
    text = " ".join(invoke(command, "--help").split())
    assert "tuning file" in text and "--threads" in text


def test_bench_says_it_ignores_tuning_files(tmp_path: Path) -> None:
    model = tmp_path / "m.bspc"
    model.write_bytes(random_gru_bspc(input_dim=12, hidden=16, layers=1, classes=6, rate=4.0))
    tuned(str(model))
    assert "tuning files are ignored" in " ".join(invoke("bench", "--help").split())
    out = invoke("bench", model, "--frames", 10, "--repeats", 1)
    assert "threads=1)" in out


def test_tune_prints_the_choice_and_the_defaults_time(tmp_path: Path) -> None:
    model = tmp_path / "m.bspc"
    model.write_bytes(random_gru_bspc(24, 32, 2, 10, rate=4.0, blocks=(4, 2)))
    out = invoke("tune", model, "--frames", 10, "--repeats", 3, "--max-threads", 2)
    last = out.strip().splitlines()[-1]
    assert last.endswith(f"written to {model}.tune.json")
    assert "us/frame" in last and "IQR" in last
    assert last.startswith("kept the defaults:") or "(default " in last
    assert "frame_tile x chunk_frames: skipped" in out
