"""Auto-tuner: the search writes a tuning file that Sessions apply; bad files are rejected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rtmobile_rt import Session
from rtmobile_rt.cli import main
from rtmobile_rt.demo import random_gru_bspc
from rtmobile_rt.tuning import (
    TuningError,
    cpu_signature,
    model_key,
    rank_block_shapes,
    save_tuning,
    tune,
)


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.bspc"
    path.write_bytes(random_gru_bspc(24, 32, 2, 10, rate=4.0, blocks=(4, 2)))
    return path


def test_tune_writes_a_file_that_sessions_apply(model: Path) -> None:
    record = tune(str(model), objective="offline", allow_f16=True, frames=12, repeats=3)
    assert record["model"] == model_key(str(model)) and record["cpu"] == cpu_signature()
    assert set(record["options"]) <= {"threads", "weights", "frame_tile", "chunk_frames"}
    assert record["choice"] == ("tuned" if record["options"] else "default")
    # the defaults + threads x weights, then the stage-1 choice + 4 tiles x 3 chunk lengths
    stage1 = [t for t in record["trials"] if t["stage"] == "threads x weights"]
    assert stage1[0]["options"] == {} and stage1[0]["reference"]
    assert len(stage1) >= 1 + 2 and len(record["trials"]) == len(stage1) + 1 + 12
    assert all(len(t["samples_us"]) == 3 for t in record["trials"])
    assert record["default_us"]["median_us"] == stage1[0]["median_us"]
    assert "us/frame" in record["summary"]
    path = save_tuning(record, str(model))
    assert path == Path(str(model) + ".tune.json")
    session = Session(model)
    info = session.info
    for name, value in record["options"].items():
        assert info[name] == value
    assert session.tuning["options"] == record["options"]
    # Explicit arguments win over the file; tuning=None ignores it.
    save_tuning({**record, "options": {"frame_tile": 8}}, str(model))
    assert Session(model).info["frame_tile"] == 8
    assert Session(model, frame_tile=3).info["frame_tile"] == 3
    assert Session(model, tuning=None).info["frame_tile"] == 16
    # A record that kept the defaults holds no options: Sessions keep the runtime's defaults.
    save_tuning({**record, "options": {}}, str(model))
    assert Session(model).info["frame_tile"] == 16 and Session(model).tuning["options"] == {}


def test_tuned_settings_keep_results(model: Path) -> None:
    x = np.random.default_rng(0).standard_normal((100, 24)).astype(np.float32)
    base = Session(model, tuning=None).run(x)
    for tile, chunk in ((1, 1), (3, 7), (32, 128)):
        out = Session(model, tuning=None, frame_tile=tile, chunk_frames=chunk).run(x)
        assert np.array_equal(out, base)
    f16 = Session(model, tuning=None, weights="f16").run(x)
    assert np.abs(f16 - base).max() <= 1e-2


def test_foreign_or_broken_tuning_files(model: Path) -> None:
    path = Path(str(model) + ".tune.json")
    record = {
        "version": 1,
        "model": "00000000-1",
        "cpu": cpu_signature(),
        "options": {"frame_tile": 5},
    }
    path.write_text(json.dumps(record))
    assert Session(model).info["frame_tile"] == 16  # made for another model: ignored
    record["model"] = model_key(str(model))
    path.write_text(json.dumps(record))
    assert Session(model).info["frame_tile"] == 5
    path.write_text("{not json")
    with pytest.raises(TuningError, match="cannot read tuning file"):
        Session(model)
    path.write_text(json.dumps({**record, "options": {"frame_tile": "8"}}))
    with pytest.raises(TuningError, match="wrong type"):
        Session(model)
    path.write_text(json.dumps({**record, "options": {"turbo": 1}}))
    with pytest.raises(TuningError, match="options"):
        Session(model)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": "f8"}, "weights must be 'stored', 'f32' or 'f16'"),
        ({"frame_tile": 257}, "frame_tile must be in"),
        ({"chunk_frames": -1}, "chunk_frames must be in"),
        ({"frame_tile": 2.5}, "frame_tile must be an int"),
    ],
)
def test_bad_tuning_options(model: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Session(model, tuning=None, **kwargs)


def test_rank_block_shapes_and_cli(model: Path) -> None:
    rows = rank_block_shapes(24, 32, 1, 8, 4.0, candidates=[(4, 1), (8, 2)], frames=10, repeats=1)
    assert [(r["num_r"], r["num_c"]) for r in rows] in ([(4, 1), (8, 2)], [(8, 2), (4, 1)])
    assert rows[0]["streaming_us"] <= rows[1]["streaming_us"]
    runner = CliRunner()
    result = runner.invoke(main, ["tune", str(model), "--frames", "10", "--max-threads", "1"])
    assert result.exit_code == 0, result.output
    assert "written to" in result.output
    result = runner.invoke(
        main,
        [
            "tune",
            "--search-blocks",
            "--rate",
            "4",
            "--input-dim",
            "16",
            "--hidden",
            "16",
            "--layers",
            "1",
            "--classes",
            "4",
            "--frames",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Num_r" in result.output
    assert runner.invoke(main, ["tune"]).exit_code == 2
