"""The Table I reproduction command (``python -m rtmobile_train.reproduce``) end to end.

Runs the real pipeline on the ``tiny`` Festival corpus with the ``tiny`` model, one epoch per
phase and two rows (dense and BSP 4x), then checks the table/JSON/PNG it writes and that
re-running resumes instead of recomputing. The row grammar and batching are tested without
Festival.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rtmobile_rt
import rtmobile_train
from rtmobile_train.data.festival_corpus import DEFAULT_LEXICON, generate_corpus
from rtmobile_train.data.phones import PHONES39
from rtmobile_train.reproduce import (
    DEFAULT_ROWS,
    FrameBatches,
    SplitData,
    main,
    parse_row,
    select_rows,
)

_INSTALL = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
# bsp-6x-c2: columns by 2, then rows pruned until every matrix reaches 6x (target_rate).
ROWS = ("dense", "bsp-4x", "bsp-6x-c2")


def _args(corpus: Path, out: Path, results: Path, *extra: str) -> list[str]:
    return [
        "--corpus", "tiny", "--corpus-dir", str(corpus), "--corpus-workers", "1",
        "--model", "tiny", "--epochs-dense", "1", "--epochs-admm", "1", "--epochs-retrain", "1",
        "--rows", ",".join(ROWS), "--out", str(out), "--results-dir", str(results),
        "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("festival") is None or not DEFAULT_LEXICON.is_file():
        pytest.skip(f"festival or its CMU lexicon is not installed (CI: {_INSTALL})")
    out = tmp_path_factory.mktemp("festival") / "tiny"
    generate_corpus(out, "tiny", workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def first_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("table1")
    paths = {"corpus": corpus, "out": base / "run", "results": base / "results"}
    assert main(_args(corpus, paths["out"], paths["results"])) == 0
    return paths


def _mtimes(run: Path) -> dict[str, int]:
    return {
        str(p.relative_to(run)): p.stat().st_mtime_ns
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.suffix in (".pt", ".json", ".bspc") and p.name != "results.json"
    }


def _table_rows(md: str) -> list[list[str]]:
    """Cells of the first Markdown table in ``md`` (the main table; the trace table follows)."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[start:end]]


def test_writes_table_json_and_plot(first_run: dict[str, Path]) -> None:
    res, run = first_run["results"], first_run["out"]
    md = (res / "table1.md").read_text()
    assert md.startswith("# Table I reproduction")
    for needle in ("Command: `python -m rtmobile_train.reproduce --corpus tiny", "Machine: ",
                   "torch ", "Date: ", "wall time", "Corpus: Festival preset `tiny`",
                   "Runtime check: every exported"):  # fmt: skip
        assert needle in md, needle
    table = _table_rows(md)
    header, sep, *body = table
    assert header[:3] == ["Method", "Target rate", "Achieved rate¹"]
    assert len(sep) == len(header) and all(len(r) == len(header) for r in body)
    assert [r[0] for r in body] == ["dense (BSP 1x)", "BSP (ours)", "BSP (ours)"]
    assert body[1][1] == "4x" and body[1][3] == "4" and body[1][4] == "1"
    assert body[2][1] == "6x" and body[2][3] == "2"
    assert "Training trace (dev PER" in md and "| bsp-6x-c2 |" in md

    raw: dict[str, Any] = json.loads((res / "table1.json").read_text())
    full: dict[str, Any] = json.loads((run / "results.json").read_text())
    assert [r["name"] for r in raw["rows"]] == list(ROWS) == [r["name"] for r in full["rows"]]
    assert "history" in full["rows"][1] and "history" not in raw["rows"][1]
    dense, bsp, bsp_rows = raw["rows"]
    assert dense["achieved_rate"] == 1.0 and dense["params_kept"] == dense["params_dense"]
    assert 3.5 <= bsp["achieved_rate"] <= 4.5
    assert bsp["params_kept"] * bsp["achieved_rate"] == pytest.approx(bsp["params_dense"])
    assert bsp["blocks"]["l0.w_hh"] == [4, 2]
    # Rows pruned to the target: the tiny matrices (48 or 5 rows) allow coarse keep counts only.
    assert 5.0 <= bsp_rows["achieved_rate"] <= 7.2
    assert bsp_rows["row_rate"] == pytest.approx(bsp_rows["achieved_rate"] / 2)
    for row in raw["rows"]:
        for split in ("dev", "test", "test_heldout"):
            assert 0 <= row["scores"][split]["per"] < 1000
        # The exported model, run by the C++ runtime, scores exactly what torch scored.
        assert row["runtime"]["per"] == pytest.approx(row["scores"]["test"]["per"], abs=1e-9)
        assert row["runtime"]["max_abs_logit_diff"] <= 1e-4
    assert raw["corpus"]["train"]["utterances"] == 16 and raw["corpus"]["train"]["hours"] > 0
    assert raw["machine"]["cores"] >= 1 and raw["wall_seconds"] > 0

    png = (res / "table1.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000

    session = rtmobile_rt.Session(run / bsp["bspc"])
    assert session.info["compression_rate"] > 2
    assert session.labels == list(PHONES39)


def test_rerun_skips_finished_rows(first_run: dict[str, Path]) -> None:
    run, res = first_run["out"], first_run["results"]
    before = _mtimes(run)
    rows_before = json.loads((res / "table1.json").read_text())["rows"]
    assert main(_args(first_run["corpus"], run, res)) == 0
    assert _mtimes(run) == before  # no checkpoint, row result or model file was rewritten
    assert json.loads((res / "table1.json").read_text())["rows"] == rows_before


def test_half_finished_row_resumes_from_its_checkpoints(first_run: dict[str, Path]) -> None:
    run, res = first_run["out"], first_run["results"]
    row_json = run / "rows" / "bsp-4x.json"
    old = json.loads(row_json.read_text())
    ckpts = {p: p.stat().st_mtime_ns for p in (run / "rows" / "bsp-4x").glob("*.pt")}
    row_json.unlink()  # as if killed after retraining, before the row was scored
    assert main(_args(first_run["corpus"], run, res)) == 0
    new = json.loads(row_json.read_text())
    assert {p: p.stat().st_mtime_ns for p in ckpts} == ckpts  # nothing was retrained
    assert new["scores"] == old["scores"] and new["params_kept"] == old["params_kept"]


def test_changed_base_settings_are_refused(
    first_run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(first_run["corpus"], first_run["out"], first_run["results"])
    args[args.index("--epochs-dense") + 1] = "2"
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert "other base settings" in capsys.readouterr().err


def test_help_runs_as_a_module() -> None:
    src = str(Path(rtmobile_train.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "rtmobile_train.reproduce", "--help"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for opt in ("--corpus", "--model", "--rows", "--epochs-dense", "--epochs-admm",
                "--epochs-retrain", "--device"):  # fmt: skip
        assert opt in proc.stdout


# -- without Festival ------------------------------------------------------------------------------


def test_missing_matplotlib_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "matplotlib" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(SystemExit) as e:
        main(["--corpus", "tiny", "--corpus-dir", str(tmp_path / "corpus"), "--out",
              str(tmp_path / "run"), "--results-dir", str(tmp_path / "results")])  # fmt: skip
    assert e.value.code == 2
    assert "needs matplotlib" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing was generated or trained"


def test_default_rows_follow_the_paper() -> None:
    names = [r.name for r in DEFAULT_ROWS]
    assert names[:6] == ["dense", "bsp-10x", "bsp-19x", "bsp-29x", "bsp-43x", "bsp-103x"]
    for method in ("magnitude", "row", "bbs"):
        assert f"{method}-8x" in names and f"{method}-16x" in names
    for row in DEFAULT_ROWS:
        if row.method == "bsp":
            assert row.col_rate == (10 if row.rate == 10 else 16)
            # column x row is the row's rate (19x: the paper's 16 x 1.25 = 20, 0.48M of 9.6M)
            assert row.nominal_rate == pytest.approx(row.rate, rel=0.06)
            cfg = row.prune_config(32, 4, 4)
            assert cfg is not None and cfg.col_sparsity == pytest.approx(1 - 1 / row.col_rate)
            # Rows are pruned to the row's own rate (the nominal split falls short of it).
            assert cfg.target_rate == (None if row.rate == row.col_rate else row.rate)


@pytest.mark.parametrize(
    ("name", "method", "col", "row"),
    [("bsp-4x", "bsp", 4, 1), ("bsp-64x", "bsp", 16, 4), ("bsp-20x-c10", "bsp", 10, 2),
     ("bbs-12x", "bbs", 1, 1), ("bsp-19x", "bsp", 16, 1.25)],
)  # fmt: skip
def test_parse_row(name: str, method: str, col: float, row: float) -> None:
    spec = parse_row(name)
    assert (spec.name, spec.method, spec.col_rate, spec.row_rate) == (name, method, col, row)


@pytest.mark.parametrize("bad", ["bsp", "bsp-0.5x", "magnitude-8x-c2", "lstm-8x", "bsp-8x-c9"])
def test_parse_row_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_row(bad)


def test_select_rows() -> None:
    assert [r.name for r in select_rows(None)] == [r.name for r in DEFAULT_ROWS]
    assert [r.name for r in select_rows("bbs-*, bsp-10x")] == ["dense", "bsp-10x", "bbs-8x",
                                                               "bbs-16x"]  # fmt: skip
    assert [r.name for r in select_rows("bsp-4x")] == ["dense", "bsp-4x"]
    with pytest.raises(ValueError, match="matches no default row"):
        select_rows("lstm-*")


def test_frame_batches_cover_every_utterance_once_per_epoch() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=37)
    split = SplitData(
        "train", [f"u{i}" for i in range(37)],
        [rng.standard_normal((n, 3)).astype(np.float32) for n in lengths],
        [np.full(n, i % 39) for i, n in enumerate(lengths)], 0.0,
    )  # fmt: skip
    fb = FrameBatches(split, 4, shuffle=True, seed=1, bucket=2)
    assert len(fb) == 10

    def epoch(e: int) -> list[list[int]]:
        fb.set_epoch(e)
        return [[int(b.labels[k, 0]) for k in range(len(b.lengths))] for b in fb]

    a, b = epoch(0), epoch(1)
    assert a == epoch(0) and a != b  # deterministic per epoch, different across epochs
    assert sorted(x for batch in a for x in batch) == sorted(i % 39 for i in range(37))
    stacked = FrameBatches(split, 8, context=1)
    first = next(iter(stacked))
    assert first.feats.shape[-1] == 9 and int(first.lengths[0]) == int(lengths.max())
