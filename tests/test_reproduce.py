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
# bsp-4x: the default recipe (gradual pruning); bsp-6x-c2-admm: ADMM, columns by 2, then rows
# pruned until every GRU matrix reaches its share of 6x (target_rate). Rates are over all
# weights with the output layer dense, so the GRU matrices are pruned harder.
ROWS = ("dense", "bsp-4x", "bsp-6x-c2-admm")
STEM = "table1-tiny-tiny"  # results of corpus tiny, model tiny


def _args(corpus: Path, out: Path, results: Path, *extra: str) -> list[str]:
    return [
        "--corpus", "tiny", "--corpus-dir", str(corpus), "--corpus-workers", "1",
        "--model", "tiny", "--epochs-dense", "1", "--epochs-prune", "1", "--epochs-retrain", "2",
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
    md = (res / f"{STEM}.md").read_text()
    assert md.startswith("# Table I reproduction, `tiny` model")
    for needle in ("Command: `python -m rtmobile_train.reproduce --corpus tiny", "Machine: ",
                   "torch ", "Date: ", "wall time", "Corpus: Festival preset `tiny`",
                   "Runtime check: every exported"):  # fmt: skip
        assert needle in md, needle
    table = _table_rows(md)
    header, sep, *body = table
    assert header[:4] == ["Row", "Method", "Target rate", "Achieved rate¹"]
    assert len(sep) == len(header) and all(len(r) == len(header) for r in body)
    assert [r[0] for r in body] == list(ROWS)
    assert [r[1] for r in body] == ["dense (BSP 1x)", "BSP (ours) (gradual)", "BSP (ours) (admm)"]
    # 4x over all weights = 7.18x on the GRU matrices (the dense output layer counts as kept),
    # all of it by columns (the row rate is achieved / column rate: keep counts are rounded)
    assert body[1][2] == "4x" and body[1][4] == "7.18" and 0.95 <= float(body[1][5]) <= 1.05
    assert body[2][2] == "6x" and body[2][4] == "2"
    assert "Training trace (dev PER" in md and "| bsp-6x-c2-admm | admm, 1 ep |" in md
    assert "| bsp-4x | gradual, 1 ep |" in md

    raw: dict[str, Any] = json.loads((res / f"{STEM}.json").read_text())
    full: dict[str, Any] = json.loads((run / "results.json").read_text())
    assert [r["name"] for r in raw["rows"]] == list(ROWS) == [r["name"] for r in full["rows"]]
    assert "history" in full["rows"][1] and "history" not in raw["rows"][1]
    dense, bsp, bsp_rows = raw["rows"]
    assert dense["achieved_rate"] == 1.0 and dense["params_kept"] == dense["params_dense"]
    assert 3.5 <= bsp["achieved_rate"] <= 4.5
    assert bsp["params_kept"] * bsp["achieved_rate"] == pytest.approx(bsp["params_dense"])
    assert bsp["blocks"]["l0.w_hh"] == [4, 2] and "out.w" not in bsp["blocks"]
    assert bsp["per_matrix"].keys() == {"l0.w_ih", "l0.w_hh", "l1.w_ih", "l1.w_hh"}
    # Rows pruned to the target: the tiny matrices (48 rows) allow coarse keep counts only.
    assert 5.0 <= bsp_rows["achieved_rate"] <= 7.2
    assert bsp_rows["row_rate"] == pytest.approx(bsp_rows["pruned_matrices_rate"] / 2)
    # the traces: gradual reaches its rate in the pruning phase; ADMM records rho, penalty,
    # the relative residual and the dev PER of W and of its projection every epoch
    hist = {r["name"]: r["history"] for r in full["rows"]}
    assert hist["bsp-4x"]["gradual"][-1]["prune_fraction"] == 1.0
    admm = hist["bsp-6x-c2-admm"]["admm"][-1]
    for key in ("rho", "loss", "penalty", "admm_rel_residual", "dev_per", "proj_dev_per"):
        assert key in admm, key
    assert all("lr" in h for h in hist["bsp-4x"]["retrain"])
    for row in raw["rows"]:
        for split in ("dev", "test", "test_heldout"):
            assert 0 <= row["scores"][split]["per"] < 1000
        # The exported model, run by the C++ runtime, scores exactly what torch scored.
        assert row["runtime"]["per"] == pytest.approx(row["scores"]["test"]["per"], abs=1e-9)
        assert row["runtime"]["max_abs_logit_diff"] <= 1e-4
    assert raw["corpus"]["train"]["utterances"] == 16 and raw["corpus"]["train"]["hours"] > 0
    assert raw["machine"]["cores"] >= 1 and raw["wall_seconds"] > 0

    png = (res / f"{STEM}.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000

    session = rtmobile_rt.Session(run / bsp["bspc"])
    assert session.info["compression_rate"] > 2
    assert session.labels == list(PHONES39)


def test_rerun_skips_finished_rows(first_run: dict[str, Path]) -> None:
    run, res = first_run["out"], first_run["results"]
    before = _mtimes(run)
    rows_before = json.loads((res / f"{STEM}.json").read_text())["rows"]
    assert main(_args(first_run["corpus"], run, res)) == 0
    assert _mtimes(run) == before  # no checkpoint, row result or model file was rewritten
    assert json.loads((res / f"{STEM}.json").read_text())["rows"] == rows_before


def test_half_finished_row_resumes_from_its_checkpoints(first_run: dict[str, Path]) -> None:
    run, res = first_run["out"], first_run["results"]
    row_json = run / "rows" / "bsp-4x.json"
    old = json.loads(row_json.read_text())
    ckpts = {p: p.stat().st_mtime_ns for p in (run / "rows" / "bsp-4x").glob("*.pt")}
    assert {p.name for p in ckpts} == {"dense.pt", "gradual.pt", "retrain.pt"}
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
    for opt in ("--corpus", "--model", "--rows", "--epochs-dense", "--epochs-prune",
                "--prune-method", "--epochs-retrain", "--retrain-schedule", "--output-rate",
                "--device"):  # fmt: skip
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


def test_default_rows_are_the_second_pass_sweep() -> None:
    names = [r.name for r in DEFAULT_ROWS]
    assert names == ["dense", "bsp-10x", "bsp-19x", "bsp-43x", "bsp-103x", "magnitude-10x",
                     "magnitude-19x", "bbs-10x", "row-10x"]  # fmt: skip


def _settings(*extra: str) -> Any:
    from rtmobile_train.reproduce import _settings, build_parser

    return _settings(build_parser().parse_args(list(extra)))


def test_rates_count_the_dense_output_layer() -> None:
    s = _settings("--model", "medium")
    mats = s.template.matrices()
    out = mats["out.w"].numel()
    gru = sum(w.numel() for w in mats.values()) - out
    assert (gru, out) == (3_035_136, 39 * 512)
    for row in DEFAULT_ROWS[1:]:
        cfg = s.pipeline(row, steps_per_epoch=10, progress=False)
        assert cfg is not None and cfg.method == "gradual"
        assert "out.w" not in cfg.prune.targets
        # GRU kept + the whole output layer = all weights / the row's rate
        assert gru / row.gru_rate(s) + out == pytest.approx((gru + out) / row.rate)
        if row.method == "bsp":
            col = 1 / (1 - cfg.prune.col_sparsity)
            assert col == pytest.approx(min(row.gru_rate(s), 16))
            rows_pruned = row.gru_rate(s) > 16
            assert cfg.prune.target_rate == (row.gru_rate(s) if rows_pruned else None)
    small = _settings()
    with pytest.raises(ValueError, match="no more than the 4,992 output-layer weights"):
        parse_row("bsp-103x").gru_rate(small)
    # pruned per class at its own rate, the output layer makes room for 103x
    out4 = _settings("--output-rate", "4")
    cfg = out4.pipeline(parse_row("bsp-103x"), steps_per_epoch=10, progress=False)
    assert cfg is not None and "out.w" in cfg.prune.targets
    assert cfg.prune.output_sparsity == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("bsp-4x", ("bsp", 4.0, None, None, None, None, None)),
     ("bsp-20x-c10", ("bsp", 20.0, 10.0, None, None, None, None)),
     ("bsp-10x-nr128-nc1-admm-kd", ("bsp", 10.0, None, "admm", 128, 1, True)),
     ("bsp-10x-gradual", ("bsp", 10.0, None, "gradual", None, None, None)),
     ("bbs-12x", ("bbs", 12.0, None, None, None, None, None)),
     ("magnitude-10x-kd", ("magnitude", 10.0, None, None, None, None, True)),
     ("bsp-10x-r24", ("bsp", 10.0, None, None, None, None, None, 24)),
     ("bsp-10x-nr8-kd-r20", ("bsp", 10.0, None, None, 8, None, True, 20))],
)  # fmt: skip
def test_parse_row(name: str, expected: tuple[Any, ...]) -> None:
    spec = parse_row(name)
    got = (spec.method, spec.rate, spec.col_rate, spec.prune_method, spec.num_r, spec.num_c,
           spec.distill, spec.retrain_epochs)  # fmt: skip
    if len(expected) == 7:
        expected = (*expected, None)
    assert spec.name == name and got == expected


def test_row_variants_override_the_settings() -> None:
    s = _settings()
    cfg = s.pipeline(parse_row("bsp-10x-nr128-nc1-admm-kd"), steps_per_epoch=100, progress=False)
    assert cfg is not None and cfg.method == "admm"
    assert (cfg.prune.num_r, cfg.prune.num_c) == (128, 1)
    assert cfg.retrain.distill_weight == 0.5 and cfg.admm.admm_update_every == 100
    plain = s.pipeline(parse_row("bsp-10x"), steps_per_epoch=100, progress=False)
    assert plain is not None and plain.retrain.distill_weight == 0.0
    assert (plain.prune.num_r, plain.prune.num_c) == (32, 4)
    assert plain.retrain.lr_schedule == "plateau" and plain.retrain.keep_best
    # the control: the dense model trained on for a pruned row's whole budget, nothing pruned
    ft = s.pipeline(parse_row("dense-ft"), steps_per_epoch=100, progress=False)
    assert ft is not None and ft.admm.epochs == 0
    assert ft.retrain.epochs == plain.admm.epochs + plain.retrain.epochs
    assert ft.retrain.lr_schedule == plain.retrain.lr_schedule and ft.retrain.keep_best
    assert ft.prune.method == "magnitude" and ft.prune.sparsity == 0.0
    # -r<N>: this row's retraining budget; the fingerprint of a row without it is unchanged
    longer = s.pipeline(parse_row("bsp-10x-r24"), steps_per_epoch=100, progress=False)
    assert longer is not None and longer.retrain.epochs == 24
    assert longer.admm.epochs == plain.admm.epochs
    assert "retrain_epochs" not in parse_row("bsp-10x").settings()


@pytest.mark.parametrize(
    "bad",
    ["bsp", "bsp-0.5x", "magnitude-8x-c2", "lstm-8x", "bsp-8x-c9", "row-8x-nr4", "bsp-8x-nr0",
     "bsp-8x-oneshot", "bsp-8x-r0", "bsp-8x-r"],
)  # fmt: skip
def test_parse_row_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_row(bad)


def test_select_rows() -> None:
    assert [r.name for r in select_rows(None)] == [r.name for r in DEFAULT_ROWS]
    assert [r.name for r in select_rows("bbs-*, bsp-10x")] == ["dense", "bsp-10x", "bbs-10x"]
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


def test_timing_goes_into_the_table_and_the_time_plot(first_run: dict[str, Path]) -> None:
    run, res = first_run["out"], first_run["results"]
    script = Path(__file__).resolve().parents[1] / "bench" / "time_table1.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--run", str(run), "--frames", "40", "--warmup", "5",
         "--repeats", "2"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name in ROWS:
        timing = json.loads((run / "rows" / f"{name}.timing.json").read_text())
        assert timing["us_per_frame"]["rtmobile"] > 0 and timing["us_per_frame"]["scipy-csr"] > 0
        assert len(timing["samples"]["rtmobile"]) == 2
    # CSR holds the row's kept weights (a kept weight that is exactly 0 is dropped)
    row = json.loads((run / "rows" / "bsp-4x.json").read_text())
    nonzeros = json.loads((run / "rows" / "bsp-4x.timing.json").read_text())["nonzeros"]
    assert 0.98 * row["params_kept"] <= nonzeros <= row["params_kept"]
    assert main(_args(first_run["corpus"], run, res)) == 0
    md = (res / f"{STEM}.md").read_text()
    header, _, *body = _table_rows(md)
    col = header.index("µs/frame runtime⁴")
    assert all(float(r[col]) > 0 for r in body)
    assert "Measured by `python bench/time_table1.py" in md
    png = (res / f"{STEM}-time.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "timing" in json.loads((res / f"{STEM}.json").read_text())["rows"][1]


def test_row_fingerprint_ignores_fields_at_their_default() -> None:
    # a field added later at a neutral default must not invalidate every finished row
    assert parse_row("bsp-10x").settings() == {"name": "bsp-10x", "method": "bsp", "rate": 10.0}
    assert parse_row("bsp-10x-nr128-admm").settings() == {
        "name": "bsp-10x-nr128-admm", "method": "bsp", "rate": 10.0, "prune_method": "admm",
        "num_r": 128,
    }  # fmt: skip
