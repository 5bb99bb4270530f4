"""bench/bench_gru.py --smoke runs end to end and writes well-formed outputs; the roofline's
cache sanity check and byte accounting are right.

Timings are never checked (they are noise at this size); the point is that the full benchmark
cannot rot between the rare full runs: every engine builds, agrees with torch, and reports, with
the bytes its kernels really read.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
BENCH = BENCH_DIR / "bench_gru.py"
RATES = ("1x", "10x")
THREADS = (1, 2)
ENGINES = {"rtmobile", "rtmobile-fp16", "torch", "onnxruntime", "scipy-csr", "torch-csr"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KIB, MIB, GIB = 2**10, 2**20, 2**30


@pytest.fixture(scope="module")
def bg() -> ModuleType:
    """bench/bench_gru.py as a module (it is a script, not a package)."""
    sys.path.insert(0, str(BENCH_DIR))
    try:
        import bench_gru
    finally:
        sys.path.remove(str(BENCH_DIR))
    return bench_gru


def _sections(markdown: str) -> dict[str, list[str]]:
    """Table rows (header and separator dropped) under each '## ' heading."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = line[3:]
            out[current] = []
        elif current and line.startswith("|"):
            out[current].append(line)
    return {k: v[2:] for k, v in out.items()}


def _header(markdown: str, section: str) -> list[str]:
    """The column names of the first table under ``## section``."""
    lines = markdown.split(f"## {section}\n", 1)[1].splitlines()
    return _cells(next(line for line in lines if line.startswith("|")))


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _curve(*steps: tuple[int, int, float]) -> list[tuple[int, float]]:
    """A fake read sweep: powers of 2 from ``lo`` to ``hi`` at ``gbs``, per step."""
    out: list[tuple[int, float]] = []
    for lo, hi, gbs in steps:
        s = lo
        while s <= hi:
            out.append((s, gbs))
            s *= 2
    return out


# ----------------------------------------------------------------------------- cache sanity


def test_knees_keep_the_last_point_of_a_gradual_drop(bg: ModuleType) -> None:
    curve = [(64 * KIB, 150.0), (128 * KIB, 150.0), (256 * KIB, 110.0), (512 * KIB, 70.0)]
    curve += [(1 * MIB, 60.0), (2 * MIB, 60.0), (4 * MIB, 20.0), (8 * MIB, 20.0)]
    assert bg.find_knees(curve) == [256 * KIB, 2 * MIB]


def test_knees_ignore_a_dip_that_recovers(bg: ModuleType) -> None:
    curve = _curve((64 * KIB, 8 * MIB, 80.0), (16 * MIB, 64 * MIB, 20.0))
    curve[3] = (curve[3][0], 30.0)  # one noisy sample inside the cache
    assert bg.find_knees(curve) == [8 * MIB]


def test_implausible_l3_of_a_xeon_vm_is_replaced_by_the_measured_knee(bg: ModuleType) -> None:
    """The issue's machine: sysfs says 480 MiB of L3 on 2 vCPUs; the sweep says 32 MiB."""
    reported = bg.ReportedCaches(l2_per_core=2 * MIB, l3=480 * MIB, cpus=2)
    curve = _curve((64 * KIB, 2 * MIB, 180.0), (4 * MIB, 32 * MIB, 45.0), (64 * MIB, 2 * GIB, 18.0))
    c = bg.choose_cache_sizes(reported, curve)
    assert (c.l3, c.measured_l3, c.l3_source) == (32 * MIB, 32 * MIB, "measured")
    assert (c.l2, c.measured_l2) == (2 * MIB, 2 * MIB)
    assert c.dram_gbs == 18.0
    assert "480 MiB" in c.note and "per CPU" in c.note and "DRAM speed" in c.note


def test_l3_refuted_by_the_sweep_alone(bg: ModuleType) -> None:
    """Plausible per CPU, but half of it already reads at DRAM speed."""
    reported = bg.ReportedCaches(l2_per_core=1 * MIB, l3=256 * MIB, cpus=8)
    curve = _curve((64 * KIB, 1 * MIB, 120.0), (2 * MIB, 16 * MIB, 60.0), (32 * MIB, GIB, 20.0))
    c = bg.choose_cache_sizes(reported, curve)
    assert (c.l3, c.l3_source) == (16 * MIB, "measured")
    assert "per CPU" not in c.note and "64 MiB and 128 MiB" in c.note


def test_plausible_l3_is_kept_and_measured_too(bg: ModuleType) -> None:
    reported = bg.ReportedCaches(l2_per_core=1 * MIB, l3=32 * MIB, cpus=2)
    curve = _curve((64 * KIB, 1 * MIB, 95.0), (2 * MIB, 16 * MIB, 80.0))
    curve += [(32 * MIB, 30.0), *_curve((64 * MIB, GIB, 21.0))]
    c = bg.choose_cache_sizes(reported, curve)
    assert (c.l2, c.l3, c.l3_source, c.note) == (1 * MIB, 32 * MIB, "sysfs", "")
    assert c.measured_l3 == 32 * MIB and c.measured_l2 is None  # L2 -> L3 drop under 25%
    # One noisy sample at half the L3 does not refute it (the quarter still reads fast).
    noisy = [(s, 15.0 if s == 16 * MIB else g) for s, g in curve]
    assert bg.choose_cache_sizes(reported, noisy).l3_source == "sysfs"


def test_l3_per_core_limit_and_missing_l3(bg: ModuleType) -> None:
    curve = _curve((64 * KIB, 512 * KIB, 100.0), (1 * MIB, 8 * MIB, 50.0), (16 * MIB, GIB, 15.0))
    # Per-CPU limit alone (the sweep agrees that 8 MiB is the last fast size).
    c = bg.choose_cache_sizes(bg.ReportedCaches(512 * KIB, 300 * MIB, 4), curve)
    assert (c.l3, c.l3_source) == (8 * MIB, "measured") and "per CPU" in c.note
    # No L3 in sysfs: the measured one.
    c = bg.choose_cache_sizes(bg.ReportedCaches(512 * KIB, 0, 4), curve)
    assert (c.l3, c.l3_source) == (8 * MIB, "measured")
    # Refuted L3 and no knee beyond the L2s: no L3 at all.
    flat = _curve((64 * KIB, 512 * KIB, 100.0), (1 * MIB, GIB, 15.0))
    c = bg.choose_cache_sizes(bg.ReportedCaches(512 * KIB, 480 * MIB, 2), flat)
    assert (c.l3, c.l3_source, c.measured_l2) == (0, "none", 512 * KIB)


def test_short_sweep_leaves_l3_unverified(bg: ModuleType) -> None:
    reported = bg.ReportedCaches(l2_per_core=2 * MIB, l3=480 * MIB, cpus=64)
    curve = _curve((64 * KIB, 2 * MIB, 180.0), (4 * MIB, 512 * MIB, 40.0))
    c = bg.choose_cache_sizes(reported, curve)
    assert (c.l3, c.l3_source) == (480 * MIB, "sysfs (unverified)")
    assert bg.choose_cache_sizes(reported, curve[:2]).l3_source == "sysfs (unverified)"


# ----------------------------------------------------------------------------- byte accounting


def test_offline_reads_batched_matrices_once_per_tile(bg: ModuleType) -> None:
    mb = {"l0.w_ih": 1600, "l0.w_hh": 1000, "out.w": 320}
    tiled = bg.Traffic(mb, "test", frame_tile=16, chunk_frames=64)
    assert tiled.batched_reads(1000) == 15 * 4 + 3  # 15 chunks of 64, then 40 = 16 + 16 + 8
    assert tiled.batched_reads(48) == 3 and tiled.batched_reads(1) == 1
    assert bg.Traffic(mb, "peer").batched_reads(1000) == 1

    stream = bg.phases(tiled, "streaming", 1)
    assert [(p.bytes_per_frame, p.working_set) for p in stream] == [(2920.0, 2920)]
    off = {p.what: p for p in bg.phases(tiled, "offline", 64)}
    assert off["l0.w_hh"].bytes_per_frame == 1000  # the recurrence: every frame
    assert off["l0.w_ih"].bytes_per_frame == 1600 * 4 / 64  # once per 16-frame tile
    assert off["out.w"].bytes_per_frame == 320 * 4 / 64
    assert off["l0.w_ih"].working_set == 1600


# ----------------------------------------------------------------------------- smoke run


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bench_smoke")
    out = tmp / "out"
    cmd = [sys.executable, str(BENCH), "--smoke", "--contention", "--out", str(out)]
    cmd += ["--build-dir", str(tmp / "build")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"bench_gru --smoke failed:\n{proc.stderr[-6000:]}"
    return out


def test_help_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    for opt in ("--smoke", "--out", "--rates", "--threads", "--engines", "--roofline"):
        assert opt in proc.stdout
    for opt in ("--contention", "--no-contention", "--sweep-max-mb", "--dram-mb"):
        assert opt in proc.stdout


@pytest.mark.slow
def test_table_has_every_row(smoke_out: Path) -> None:
    table = (smoke_out / "table2.md").read_text()
    assert "Smoke run" in table
    assert "Command: `python bench/bench_gru.py --smoke" in table
    sections = _sections(table)
    splits = sections["BSP splits (Table I shape)"]
    assert [_cells(r)[0] for r in splits] == list(RATES)
    for mode in ("Streaming", "Offline"):
        for t in THREADS:
            name = next(
                k
                for k in sections
                if k.startswith(mode) and k.endswith(f", {t} thread{'s' * (t > 1)}")
            )
            rows = sections[name]
            assert [_cells(r)[0] for r in rows] == list(RATES), name
            width = len(_cells(rows[0]))
            assert all(len(_cells(r)) == width for r in rows)
            # rtmobile fp32 us/frame is a positive number in every row.
            assert all(float(_cells(r)[2]) > 0 for r in rows)
            head = _header(table, name)
            assert head[-3:] == ["MB read/frame", "% roofline", "% DRAM roofline"], name
    engines = "All engines: roofline at each case's working set"
    head = _header(table, engines)
    for col in ("MB read/frame", "working set (level)", "read GB/s at working set"):
        assert col in head
    assert head[-4:] == ["bound GOP/s", "% roofline", "DRAM bound GOP/s", "% DRAM roofline"]
    # Dense peers once per thread count, rtmobile fp32 + CSR x2 per rate, fp16 at both rates.
    per_mode_threads = 2 + len(RATES) * 4
    assert len(sections[engines]) == 2 * len(THREADS) * per_mode_threads


@pytest.mark.slow
def test_table_states_the_machine(smoke_out: Path) -> None:
    table = (smoke_out / "table2.md").read_text()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next(
        (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")),
        None,
    )
    machine = next(ln for ln in table.splitlines() if ln.startswith("* Machine: "))
    if model:
        assert machine.startswith(f"* Machine: {model} (lscpu model name)")
    assert "logical CPUs" in machine
    caches = next(ln for ln in table.splitlines() if ln.startswith("* Caches: "))
    assert "sysfs reports L2" in caches and "measured" in caches and "used: L2" in caches
    load = next(ln for ln in table.splitlines() if ln.startswith("* Load average"))
    assert "before the run" in load and "after the timings" in load


@pytest.mark.slow
def test_contention_section(smoke_out: Path) -> None:
    table = (smoke_out / "table2.md").read_text()
    rows = _sections(table)["Streaming under contention"]
    names = [_cells(r)[0] for r in rows]
    assert any(n.startswith("rtmobile default") for n in names)
    assert {"rtmobile t1", "rtmobile t2", "onnxruntime dense t1", "onnxruntime dense t2"} <= set(
        names
    )
    data = json.loads((smoke_out / "results.json").read_text())["contention"]
    assert [e["name"] for e in data["entries"]] == names
    for e in data["entries"]:
        for cond in ("quiet", "loaded"):
            assert e["samples_us_per_frame"][cond] and min(e["samples_us_per_frame"][cond]) > 0
    assert "--out" not in data["meta"]["command"]


@pytest.mark.slow
def test_results_json_is_complete(smoke_out: Path) -> None:
    results = json.loads((smoke_out / "results.json").read_text())
    assert {"meta", "splits", "roofline", "cases", "summary", "contention"} <= results.keys()
    assert results["meta"]["args"]["smoke"] is True
    assert [s["rate"] for s in results["splits"]] == [1.0, 10.0]
    assert {c["engine"] for c in results["cases"]} == ENGINES
    repeats = results["meta"]["args"]["repeats"]
    for case in results["cases"]:
        assert case["threads"] in THREADS
        assert case["nonzeros"] > 0
        assert set(case["bytes_per_frame"]) == {"streaming", "offline"}
        assert all(b > 0 for b in case["bytes_per_frame"].values())
        for mode in ("streaming", "offline"):
            samples = case["samples_us_per_frame"][mode]
            assert len(samples) == repeats, case["case"]
            assert all(math.isfinite(s) and s > 0 for s in samples), case["case"]
    assert len(results["summary"]) == 2 * len(results["cases"])
    assert all(abs(e) <= 2e-2 for e in results["meta"]["verify_max_abs_diff"].values())


def _offline_bytes(matrix_bytes: dict[str, int], reads: int, frames: int) -> float:
    return sum(b if n.endswith("w_hh") else b * reads / frames for n, b in matrix_bytes.items())


@pytest.mark.slow
def test_bytes_are_what_the_kernels_read(smoke_out: Path) -> None:
    """rtmobile: its own session's read_bytes (streaming: all of them every frame; offline:
    W_hh every frame, W_ih and W_out once per frame_tile); dense peers 4 bytes a weight; CSR
    values + indices + row pointers, offline W_ih and W_out once per call."""
    results = json.loads((smoke_out / "results.json").read_text())
    dense = results["meta"]["model"]["dense_params"]
    seen: set[str] = set()
    for case in results["cases"]:
        got = case["bytes_per_frame"]
        frames = case["frames"]["offline"]
        mb: dict[str, int] = case["matrix_read_bytes"]
        if case["engine"].startswith("rtmobile"):
            mats: Sequence[dict[str, Any]] = case["matrices"]
            read = {m["name"]: m["read_bytes"] for m in mats}
            assert read == mb and all(b > 0 for b in read.values())
            assert got["streaming"] == sum(read.values())
            # read_bytes covers the padded panels: at least the packed values' bytes.
            size = 2 if case["engine"] == "rtmobile-fp16" else 4
            assert all(m["read_bytes"] >= size * m["packed_values"] for m in mats)
            assert all(m["dtype"] == ("f16" if size == 2 else "f32") for m in mats)
            tile = case["engine_info"]["frame_tile"]
            chunk = case["engine_info"]["chunk_frames"]
            reads = sum(-(-min(chunk, frames - c0) // tile) for c0 in range(0, frames, chunk))
            assert got["offline"] == pytest.approx(_offline_bytes(read, reads, frames))
        elif case["engine"] in ("torch", "onnxruntime"):
            assert got["streaming"] == 4 * dense
            assert got["offline"] == pytest.approx(_offline_bytes(mb, 1, frames))
        else:
            assert got["streaming"] == sum(mb.values()) > 0
            assert got["offline"] == pytest.approx(_offline_bytes(mb, 1, frames))
        seen.add(case["engine"])
        summary = [
            s for s in results["summary"] if s["case"] == case["case"] and s["mode"] == "offline"
        ]
        assert summary[0]["bytes_per_frame"] == pytest.approx(got["offline"])
    assert seen == ENGINES


@pytest.mark.slow
def test_roofline_is_read_stream_at_working_sets(smoke_out: Path) -> None:
    results = json.loads((smoke_out / "results.json").read_text())
    roof = results["roofline"]
    if roof is None:
        pytest.skip("roofline probe not built here (cmake/ninja/compiler missing)")
    caches = roof["caches"]
    assert caches["reported_l3_bytes"] >= 0 and caches["l3_source"]
    assert roof["dram_bytes"] >= 4 * caches["l3_bytes"]
    for t in THREADS:
        sweep = roof["sweep_gbs"][str(t)]
        sizes = [s for s, _ in sweep]
        assert sizes[0] == 64 * KIB and all(b == 2 * a for a, b in itertools.pairwise(sizes))
        assert all(g > 0 for _, g in sweep)
        assert roof["dram_read_gbs"][str(t)] > 0 and roof["dram_triad_gbs"][str(t)] > 0
        assert roof["peak_gflops"][str(t)] > 0
    # Every case's working sets were probed at its thread count.
    for case in results["cases"]:
        probed = roof["working_set_gbs"][str(case["threads"])]
        for mode, phases in case["phases"].items():
            for p in phases:
                key = round(2.0 ** (round(math.log2(max(p["working_set"], 8)) * 32) / 32))
                assert str(max(8, key)) in probed, (case["case"], mode, p)
    for row in results["summary"]:
        assert row["roofline_gops"] <= row["roofline_dram_gops"] * 1e6  # both present
        assert 0 < row["roofline_gops"] <= roof["peak_gflops"][str(row["threads"])] + 1e-9
        assert row["read_gbs_at_working_set"] > 0 and row["pct_roofline"] > 0


@pytest.mark.slow
def test_figure_is_a_png(smoke_out: Path) -> None:
    data = (smoke_out / "fig4.png").read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000


CONTENTION = Path(__file__).resolve().parents[1] / "bench" / "bench_contention.py"


def test_contention_smoke(tmp_path: Path) -> None:
    """bench_contention.py --smoke: every engine timed quiet and loaded, the hog cleaned up."""
    out = tmp_path / "c"
    cmd = [sys.executable, str(CONTENTION), "--smoke", "--repeats", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = (out / "contention.md").read_text()
    assert "| rtmobile default (" in table and "| onnxruntime dense t1 |" in table
    data = json.loads((out / "contention.json").read_text())
    names = [e["name"] for e in data["entries"]]
    assert any(n.startswith("rtmobile default") for n in names)
    assert {"rtmobile t1", "rtmobile t2", "onnxruntime dense t2"} <= set(names)
    for e in data["entries"]:
        for cond in ("quiet", "loaded"):
            samples = e["samples_us_per_frame"][cond]
            assert len(samples) == 1 and all(s > 0 for s in samples), (e["name"], cond)
    # No background process outlives the benchmark.
    hogs = subprocess.run(["pgrep", "-f", "while True: pass"], capture_output=True, text=True)
    assert hogs.stdout.strip() == ""
