"""The `rtmobile demo` and `rtmobile info` commands, through click's runner."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rtmobile_rt import Session
from rtmobile_rt.cli import main
from rtmobile_rt.demo import random_gru_bspc


def test_demo_runs_and_reports_timing() -> None:
    result = CliRunner().invoke(main, ["demo", "--hidden", "32", "--frames", "40"])
    assert result.exit_code == 0, result.output
    assert "us/frame" in result.output
    assert "real-time factor" in result.output
    assert "streaming output identical to offline: True" in result.output


def test_demo_rejects_bad_numbers() -> None:
    result = CliRunner().invoke(main, ["demo", "--frames", "0"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ")


def test_info_describes_a_file(tmp_path: Path) -> None:
    path = tmp_path / "m.bspc"
    path.write_bytes(random_gru_bspc(input_dim=12, hidden=16, layers=1, classes=6, rate=4.0))
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "gru" in result.output and "l0.w_hh" in result.output and "checksum" in result.output
    assert "memory      : up to 0." in result.output  # the planned bytes of a 1-thread session
    # Bytes one frame reads per matrix (packed weights with panel padding, plus indices): at
    # least 4 bytes per stored f32 value.
    session = Session(str(path), threads=1)
    for m in session.info["matrices"]:
        assert m["read_bytes"] >= 4 * m["packed_values"] >= 4 * m["stored_values"]
        assert f"read/frame {m['read_bytes']:>10,} B" in result.output


def test_info_memory_limit(tmp_path: Path) -> None:
    path = tmp_path / "m.bspc"
    path.write_bytes(random_gru_bspc(input_dim=40, hidden=1024, layers=1, classes=6, rate=2.0))
    result = CliRunner().invoke(main, ["info", str(path), "--memory-limit-mb", "1"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert lines[0] == (
        f"Error: model file '{path}' is {path.stat().st_size} bytes, more than the session's "
        "memory limit of 1 MiB; raise memory_limit_mb to load it"
    )
    fits = CliRunner().invoke(main, ["info", str(path)])
    assert fits.exit_code == 0, fits.output


def test_info_on_a_broken_file_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.bspc"
    path.write_bytes(b"not a model at all, just some bytes" * 3)
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 2
    assert "not a valid BSPC model" in result.output and "magic" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(main, ["info", str(tmp_path / "missing.bspc")])
    assert missing.exit_code == 2 and "not found" in missing.output
