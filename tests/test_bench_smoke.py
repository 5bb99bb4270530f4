"""bench/bench_gru.py --smoke runs end to end and writes well-formed outputs.

Timings are never checked (they are noise at this size); the point is that the full benchmark
cannot rot between the rare full runs: every engine builds, agrees with torch, and reports.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_gru.py"
RATES = ("1x", "10x")
THREADS = (1, 2)
ENGINES = {"rtmobile", "rtmobile-fp16", "torch", "onnxruntime", "scipy-csr", "torch-csr"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bench_smoke")
    out = tmp / "out"
    cmd = [sys.executable, str(BENCH), "--smoke", "--out", str(out)]
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
    # The memory roof is the read stream (the kernels only read weights), not the triad.
    roof_head = "| % DRAM read-stream roofline | % cache read-stream roofline |"
    assert table.count(roof_head) == 2 * len(THREADS)
    engine_rows = sections["All engines: read-stream roofline"]
    # Dense peers once per thread count, rtmobile fp32 + CSR x2 per rate, fp16 at both rates.
    per_mode_threads = 2 + len(RATES) * 4
    assert len(engine_rows) == 2 * len(THREADS) * per_mode_threads


@pytest.mark.slow
def test_results_json_is_complete(smoke_out: Path) -> None:
    results = json.loads((smoke_out / "results.json").read_text())
    assert {"meta", "splits", "roofline", "cases", "summary"} <= results.keys()
    assert results["meta"]["args"]["smoke"] is True
    assert [s["rate"] for s in results["splits"]] == [1.0, 10.0]
    assert {c["engine"] for c in results["cases"]} == ENGINES
    repeats = results["meta"]["args"]["repeats"]
    for case in results["cases"]:
        assert case["threads"] in THREADS
        assert case["nonzeros"] > 0 and case["bytes_per_frame"] > 0
        for mode in ("streaming", "offline"):
            samples = case["samples_us_per_frame"][mode]
            assert len(samples) == repeats, case["case"]
            assert all(math.isfinite(s) and s > 0 for s in samples), case["case"]
    assert len(results["summary"]) == 2 * len(results["cases"])
    assert all(abs(e) <= 2e-2 for e in results["meta"]["verify_max_abs_diff"].values())


@pytest.mark.slow
def test_roofline_is_read_stream(smoke_out: Path) -> None:
    roof = json.loads((smoke_out / "results.json").read_text())["roofline"]
    if roof is None:
        pytest.skip("roofline probe not built here (cmake/ninja/compiler missing)")
    assert roof["memory_roof"] == "read"
    for t in THREADS:
        read, triad = roof["bandwidth_gbs"][str(t)], roof["triad_gbs"][str(t)]
        assert "dram" in read and read.keys() == triad.keys()
        assert all(v > 0 for v in (*read.values(), *triad.values()))
    # Per thread count and level, one read line over the same working set as the triad's.
    lines = {(d["kind"], d["threads"], d["level"]): d for d in roof["raw"] if "level" in d}
    triads = {k[1:]: d for k, d in lines.items() if k[0] == "triad"}
    reads = {k[1:]: d for k, d in lines.items() if k[0] == "read"}
    assert reads.keys() == triads.keys() and {t for t, _ in reads} == set(THREADS)
    for key, d in reads.items():
        assert d["working_set_bytes"] == triads[key]["working_set_bytes"] > 0
        assert d["gbs"] == max(d["samples_gbs"]) > 0


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
