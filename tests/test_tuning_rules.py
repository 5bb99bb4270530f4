"""Auto-tuner decisions with the timing replaced: the defaults are kept on a tie, a clearly
faster configuration wins, candidates are timed interleaved, and every stage ranks by the
objective asked for."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rtmobile_rt import tuning
from rtmobile_rt.demo import random_gru_bspc

Times = Callable[[dict[str, Any], str], float]


@pytest.fixture()
def model(tmp_path: Path) -> str:
    path = tmp_path / "m.bspc"
    path.write_bytes(random_gru_bspc(24, 32, 2, 10, rate=4.0, blocks=(4, 2)))
    return str(path)


@pytest.fixture(autouse=True)
def _four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stage 1 tries threads 1..min(cores, 8): make it 1..4 whatever machine runs the tests.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


class FakeTimer:
    """Stands in for ``tuning._make_sampler``: samples are ``times(options, mode)`` plus
    uniform noise of +-``noise`` us; it logs which sampler was called, in order."""

    def __init__(self, times: Times, noise: float = 0.3) -> None:
        self.times, self.noise = times, noise
        self.created: list[tuple[dict[str, Any], str]] = []
        self.calls: list[str] = []

    def __call__(
        self, model: str | bytes, options: dict[str, Any], frames: int, mode: str
    ) -> Callable[[], float]:
        self.created.append((dict(options), mode))
        rng = random.Random(len(self.created))
        key = repr(sorted(options.items()))

        def sample() -> float:
            self.calls.append(key)
            return self.times(options, mode) + rng.uniform(-self.noise, self.noise)

        return sample


def fake(monkeypatch: pytest.MonkeyPatch, times: Times, noise: float = 0.3) -> FakeTimer:
    timer = FakeTimer(times, noise)
    monkeypatch.setattr(tuning, "_make_sampler", timer)
    return timer


def test_a_tie_keeps_the_defaults(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    timer = fake(monkeypatch, lambda options, mode: 44.0)
    record = tuning.tune(model, allow_f16=True, repeats=9)
    assert record["options"] == {} and record["choice"] == "default"
    assert record["summary"].startswith("kept the defaults: no candidate beat the default's")
    assert "streaming 44." in record["summary"]
    # threads 1..4 x (stored, f16), and the defaults: threads auto (0), nothing set
    assert len(timer.created) == 1 + 4 * 2
    assert timer.created[0] == ({}, "streaming")
    reference = [t for t in record["trials"] if t["reference"]]
    assert [t["options"] for t in reference] == [{}]
    assert abs(record["default_us"]["median_us"] - 44.0) < 0.3
    assert 0 < record["default_us"]["iqr_us"] < 0.6


def test_the_issues_noise_does_not_pin_threads(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reported case: threads 2 at 43.86 against 44.01 us, with +-0.4 us of noise. Even
    # with no minimum gain, the IQR alone keeps the defaults.
    fake(monkeypatch, lambda o, mode: 43.86 if o.get("threads") == 2 else 44.01, noise=0.4)
    record = tuning.tune(model, repeats=9, min_gain=0.0)
    assert record["options"] == {}, record["summary"]


def test_a_clearly_faster_candidate_is_chosen(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, lambda o, mode: 30.8 if o.get("threads") == 2 else 44.0, noise=0.1)
    record = tuning.tune(model, repeats=7)
    assert record["options"] == {"threads": 2, "weights": "stored"}
    assert record["choice"] == "tuned"
    assert abs(record["best_us"]["median_us"] - 30.8) < 0.1
    assert abs(record["default_us"]["median_us"] - 44.0) < 0.1
    summary = record["summary"]
    assert summary.startswith("best: {'threads': 2, 'weights': 'stored'} streaming 30.")
    assert "(default 44." in summary
    table = tuning.format_trials(record["trials"])
    assert "| threads x weights | default (reference) | streaming | 44." in table
    assert len(table.splitlines()) == 2 + 1 + 4


def test_a_gain_below_min_gain_keeps_the_defaults(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 % faster with no noise at all: real, but below the 2 % floor.
    fake(monkeypatch, lambda o, mode: 43.56 if o.get("threads") == 2 else 44.0, noise=0.0)
    assert tuning.tune(model, repeats=5)["options"] == {}
    chosen = tuning.tune(model, repeats=5, min_gain=0.0)["options"]
    assert chosen == {"threads": 2, "weights": "stored"}


def test_candidates_are_timed_interleaved(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    timer = fake(monkeypatch, lambda options, mode: 44.0)
    rounds = 6
    record = tuning.tune(model, repeats=rounds)
    configs = {repr(sorted(o.items())) for o, _ in timer.created}
    n = len(configs)
    assert n == 5 and len(timer.calls) == rounds * n
    orders = [timer.calls[i * n : (i + 1) * n] for i in range(rounds)]
    for order in orders:
        assert set(order) == configs  # every round samples every candidate once
    assert len({tuple(o) for o in orders}) > 1  # in a fresh order, not one fixed sequence
    for t in record["trials"]:
        assert len(t["samples_us"]) == rounds


def test_streaming_is_not_ranked_by_offline_time(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def times(options: dict[str, Any], mode: str) -> float:
        if mode == "offline":  # offline would pick threads 4 and a small tile
            return 10.0 if options.get("threads") == 4 or options.get("frame_tile") == 4 else 44.0
        return 35.0 if options.get("threads") == 1 else 44.0

    timer = fake(monkeypatch, times)
    record = tuning.tune(model, objective="streaming", repeats=5)
    assert record["options"] == {"threads": 1, "weights": "stored"}
    assert {mode for _, mode in timer.created} == {"streaming"}
    assert {t["objective"] for t in record["trials"]} == {"streaming"}
    assert "skipped" in record["stages"][1]  # frame tile and chunk length: not for one frame
    assert "frame_tile" not in record["options"] and len(record["trials"]) == 5


def test_offline_ranks_both_stages_by_offline_time(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def times(options: dict[str, Any], mode: str) -> float:
        if mode == "streaming":
            return 10.0 if options.get("threads") == 1 else 44.0
        if options.get("frame_tile") == 8 and options.get("chunk_frames") == 32:
            return 20.0
        return 30.0 if options.get("threads") == 3 else 44.0

    timer = fake(monkeypatch, times, noise=0.1)
    record = tuning.tune(model, objective="offline", repeats=5)
    assert record["options"] == {
        "threads": 3,
        "weights": "stored",
        "frame_tile": 8,
        "chunk_frames": 32,
    }
    assert {mode for _, mode in timer.created} == {"offline"}
    stage2 = [t for t in record["trials"] if t["stage"] == "frame_tile x chunk_frames"]
    assert len(stage2) == 1 + len(tuning.TILE_CHUNK_GRID)
    assert stage2[0]["reference"] and stage2[0]["options"] == {"threads": 3, "weights": "stored"}
    assert abs(record["best_us"]["median_us"] - 20.0) < 0.1
    assert abs(record["default_us"]["median_us"] - 44.0) < 0.1


def test_offline_stage_two_alone_keeps_threads_auto(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake(monkeypatch, lambda o, mode: 20.0 if o.get("frame_tile") == 32 else 44.0, noise=0.1)
    record = tuning.tune(model, objective="offline", repeats=5)
    assert "threads" not in record["options"]
    assert record["options"]["frame_tile"] == 32 and record["choice"] == "tuned"


def test_interleave_and_iqr() -> None:
    log: list[int] = []
    samplers = [lambda i=i: log.append(i) or float(i) for i in range(3)]
    samples = tuning.interleave(samplers, 4, seed=1)
    assert samples == [[0.0] * 4, [1.0] * 4, [2.0] * 4]
    assert all(sorted(log[k : k + 3]) == [0, 1, 2] for k in range(0, 12, 3))
    assert tuning.iqr([5.0]) == 0.0
    assert tuning.iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == 2.0
    with pytest.raises(ValueError, match="rounds"):
        tuning.interleave(samplers, 0)


def test_measure_keeps_its_medians(model: str) -> None:
    result = tuning.measure(model, {"threads": 1}, frames=10, repeats=3)
    assert set(result) == {"streaming_us", "offline_us"}
    assert result["streaming_us"] > 0 and result["offline_us"] > 0
