"""Auto-tuning: measure execution configurations of a model on this machine, keep the best.

The search is offline and per (model, CPU): it times the configurations a Session exposes
(threads, weight precision, SpMM frame tile, chunk length) and writes a small JSON tuning file
next to the model (``model.bspc.tune.json``) or, if that directory is not writable, into the
user cache (``$XDG_CACHE_HOME/rtmobile/tune/``). ``Session(path)`` then applies it. f16 weights
are only considered with ``allow_f16=True``: they change results within the f16 tolerance.
Candidates are timed interleaved, and the runtime's defaults are kept unless a candidate beats
them by more than the measured spread (see :func:`tune`); the file then holds ``options: {}``.

A second helper, :func:`rank_block_shapes`, times random BSP models of one size and
compression with different (Num_r, Num_c) to guide the choice of block shape for training.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rtmobile_rt import _core

TUNING_VERSION = 1
_OPTION_TYPES = {"threads": int, "weights": str, "frame_tile": int, "chunk_frames": int}


class TuningError(ValueError):
    """A tuning file exists but is unusable (malformed JSON or wrong fields)."""


def cpu_signature() -> str:
    """What the tuning depends on: CPU model, best ISA and usable cores."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} | {_core.available_isas()[0]} | {cores} cores"


def model_key(model: str | bytes) -> str:
    """The file's stored CRC-32 and size: identifies the model without parsing it."""
    if isinstance(model, bytes):
        head, size = model[:64], len(model)
    else:
        with open(model, "rb") as f:
            head = f.read(64)
        size = os.path.getsize(model)
    crc = struct.unpack_from("<I", head, 36)[0] if len(head) >= 40 else 0
    return f"{crc:08x}-{size}"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rtmobile" / "tune"


def tuning_paths(model: str | bytes) -> list[Path]:
    """Where a tuning file for this model may live, in lookup order."""
    paths = []
    if isinstance(model, str):
        paths.append(Path(model + ".tune.json"))
    paths.append(cache_dir() / f"{model_key(model)}.json")
    return paths


def read_tuning(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TuningError(f"cannot read tuning file {path}: {e}") from e
    if not isinstance(data, dict) or data.get("version") != TUNING_VERSION:
        raise TuningError(f"tuning file {path}: not a version-{TUNING_VERSION} tuning file")
    options = data.get("options")
    if not isinstance(options, dict) or set(options) - set(_OPTION_TYPES):
        raise TuningError(f"tuning file {path}: 'options' must hold only {sorted(_OPTION_TYPES)}")
    for name, value in options.items():
        if not isinstance(value, _OPTION_TYPES[name]) or isinstance(value, bool):
            raise TuningError(f"tuning file {path}: option {name}={value!r} has the wrong type")
    return data


def find_tuning(model: str | bytes, where: str | os.PathLike[str]) -> dict[str, Any]:
    """The tuning that applies to ``model`` here: ``where`` is ``"auto"`` or a file path.

    With ``"auto"``, a file is used only if it was made for this model and this CPU; a file
    that exists but is malformed raises :class:`TuningError` rather than being ignored.
    """
    if where != "auto":
        return read_tuning(Path(where))
    if isinstance(model, str) and not os.path.isfile(model):
        return {}  # not a model file: the runtime's loader reports what is wrong with it
    key, cpu = model_key(model), cpu_signature()
    for path in tuning_paths(model):
        if path.is_file():
            data = read_tuning(path)
            if data.get("model") == key and data.get("cpu") == cpu:
                return data
    return {}


#: Objectives :func:`tune` can minimise, and the sample each one times: a block of ``frames``
#: frames pushed one per ``Stream.push`` call, or run in one ``Session.run`` call.
OBJECTIVES = ("streaming", "offline")

#: The (frame_tile, chunk_frames) grid of the offline objective's second stage.
TILE_CHUNK_GRID = tuple((tile, chunk) for tile in (4, 8, 16, 32) for chunk in (32, 64, 128))

#: Smallest gain, as a fraction of the reference's median, that may replace the reference.
MIN_GAIN = 0.02

RULE = (
    "in each stage a candidate replaces the reference (stage 1: the runtime's defaults, options "
    "{}; stage 2: the stage-1 choice) only if its median is lower than the reference's median "
    "by more than max(the larger of their interquartile ranges, min_gain x the reference's "
    "median); the lowest such median wins"
)


class _Bench:
    """One configuration, loaded and warmed up, that times one block of frames per call."""

    def __init__(self, model: str | bytes, options: dict[str, Any], frames: int) -> None:
        from rtmobile_rt.session import Session

        self.session = Session(model, tuning=None, **options)
        self.frames = frames
        self.x = (
            np.random.default_rng(0)
            .standard_normal((frames, self.session.input_dim))
            .astype(np.float32)
        )
        self.stream = self.session.stream()
        warm = min(frames, 20)
        self.session.run(self.x[:warm])  # warm-up: page in weights, wake threads
        for t in range(warm):
            self.stream.push(self.x[t : t + 1])

    def sample(self, mode: str) -> float:
        """µs per frame of one timed block: ``frames`` pushes of one frame, or one run."""
        x, stream, frames = self.x, self.stream, self.frames
        if mode == "streaming":
            t0 = time.perf_counter()
            for t in range(frames):
                stream.push(x[t : t + 1])
        elif mode == "offline":
            t0 = time.perf_counter()
            self.session.run(x)
        else:
            raise ValueError(f"mode must be one of {OBJECTIVES}, got {mode!r}")
        return (time.perf_counter() - t0) / frames * 1e6


def _make_sampler(
    model: str | bytes, options: dict[str, Any], frames: int, mode: str
) -> Callable[[], float]:
    """A loaded, warmed-up configuration: each call times one block of ``frames`` frames in
    ``mode`` and returns µs per frame (the seam the tests replace)."""
    bench = _Bench(model, options, frames)
    return lambda: bench.sample(mode)


def iqr(samples: Sequence[float]) -> float:
    """Interquartile range (0 for fewer than two samples): the spread :func:`tune` uses."""
    if len(samples) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q3 - q1


def interleave(
    samplers: Sequence[Callable[[], float]], rounds: int, *, seed: int = 0
) -> list[list[float]]:
    """All samples of each sampler: ``rounds`` rounds, each calling every sampler once in a
    fresh (seeded) random order, so drift on a shared machine hits all of them alike."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    order = list(range(len(samplers)))
    rng = random.Random(seed)
    samples: list[list[float]] = [[] for _ in samplers]
    for _ in range(rounds):
        rng.shuffle(order)
        for i in order:
            samples[i].append(samplers[i]())
    return samples


def _summary(samples: Sequence[float]) -> dict[str, Any]:
    return {
        "median_us": statistics.median(samples),
        "iqr_us": iqr(samples),
        "samples_us": [round(s, 3) for s in samples],
    }


def measure(
    model: str | bytes,
    options: dict[str, Any],
    *,
    frames: int = 200,
    repeats: int = 5,
) -> dict[str, float]:
    """Median µs per frame of one configuration: streaming (one frame per push) and offline
    (one run), each over ``repeats`` samples of ``frames`` frames, the two modes alternating."""
    bench = _Bench(model, options, frames)
    streaming, offline = interleave(
        [lambda: bench.sample("streaming"), lambda: bench.sample("offline")], repeats
    )
    return {"streaming_us": statistics.median(streaming), "offline_us": statistics.median(offline)}


def _label(options: dict[str, Any]) -> str:
    return "default" if not options else str(options)


def _us(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _timing(t: dict[str, Any]) -> str:
    return f"{_us(t['median_us'])} us/frame, IQR {_us(t['iqr_us'])}"


def _stage(
    model: str | bytes,
    name: str,
    reference: dict[str, Any],
    candidates: Sequence[dict[str, Any]],
    *,
    objective: str,
    frames: int,
    rounds: int,
    seed: int,
    min_gain: float,
    trials: list[dict[str, Any]],
    progress: Callable[[str], None] | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Time ``reference`` and ``candidates`` interleaved by ``objective``; returns the chosen
    options, its trial and the reference's trial (the same trial when the reference is kept)."""
    configs = [reference, *(c for c in candidates if c != reference)]
    if progress is not None:
        progress(
            f"{name}: {len(configs)} configurations, {rounds} interleaved rounds of "
            f"{frames} frames, {objective}"
        )
    samplers = [_make_sampler(model, options, frames, objective) for options in configs]
    results = interleave(samplers, rounds, seed=seed)
    stage_trials = []
    for i, (options, samples) in enumerate(zip(configs, results, strict=True)):
        t = {"stage": name, "options": dict(options), "objective": objective}
        t.update(_summary(samples), reference=i == 0)
        stage_trials.append(t)
        if progress is not None:
            progress(f"  {_label(options)} -> {objective} {_timing(t)} ({len(samples)} samples)")
    trials.extend(stage_trials)
    ref = stage_trials[0]
    best = ref
    for t in stage_trials[1:]:
        margin = max(ref["iqr_us"], t["iqr_us"], min_gain * ref["median_us"])
        if t["median_us"] < ref["median_us"] - margin and t["median_us"] < best["median_us"]:
            best = t
    return dict(best["options"]), best, ref


def _time(trial: dict[str, Any]) -> dict[str, float]:
    return {"median_us": trial["median_us"], "iqr_us": trial["iqr_us"]}


def describe(record: dict[str, Any]) -> str:
    """One line: the choice, its time and the default's for the record's objective."""
    objective = record.get("objective", "streaming")
    default = record.get("default_us")
    if default is None:  # a record written before the times were kept
        return f"options {_label(record.get('options', {}))}"
    gain = f"{100 * record.get('min_gain', MIN_GAIN):g}%"
    if not record.get("options"):
        return (
            f"kept the defaults: no candidate beat the default's {objective} {_timing(default)}, "
            f"by more than the larger IQR and {gain}"
        )
    return (
        f"best: {record['options']} {objective} {_timing(record['best_us'])} "
        f"(default {_timing(default)})"
    )


def tune(
    model: str | bytes,
    *,
    objective: str = "streaming",
    max_threads: int | None = None,
    allow_f16: bool = False,
    frames: int = 200,
    repeats: int = 9,
    progress: Callable[[str], None] | None = None,
    min_gain: float = MIN_GAIN,
    seed: int = 0,
) -> dict[str, Any]:
    """Search the execution configuration for ``model``; returns the tuning record.

    Every stage ranks by ``objective``: ``"streaming"`` times blocks of ``frames`` frames
    pushed one per call; ``"offline"`` times one ``run`` over ``frames`` frames. Candidates are
    timed interleaved: ``repeats`` rounds, each taking one sample of every candidate in a fresh
    (seeded) random order, so drift on a shared machine hits all of them alike. Per candidate
    the record keeps every sample, the median and the interquartile range (IQR).

    Stage 1 tries threads 1..N (N: ``max_threads``, else the usable cores, at most 8) and
    weight precision (``"f16"`` only with ``allow_f16``) against the runtime's defaults
    (options ``{}``: threads auto, stored weights, default frame tile and chunk length).
    Stage 2, for ``"offline"`` only, tries the SpMM frame tile and chunk length on top of the
    stage-1 choice. For ``"streaming"`` stage 2 is skipped (the record says so): a push of one
    frame is one chunk and one tile whatever the two settings are, so they cannot change it.

    Decision rule, in each stage: a candidate replaces the stage's reference (stage 1: the
    defaults; stage 2: the stage-1 choice) only if its median is lower than the reference's
    median by more than ``max(larger of the two IQRs, min_gain * reference median)`` (the IQR
    for noise; ``min_gain``, 2 % by default, so that a real but negligible gain does not pin a
    configuration the runtime's defaults may later improve on); of those, the lowest median
    wins. Otherwise the reference is kept, so on a tie the record's ``options`` are ``{}``
    (``"choice": "default"``) and Sessions keep the runtime's defaults.
    ``record["default_us"]`` and ``record["best_us"]`` are the default's time (stage 1) and
    the choice's time (in the stage that chose it) for the objective: median and IQR, µs per
    frame; ``record["summary"]`` says it in one line. ``seed`` fixes the round orders.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be 'streaming' or 'offline', got {objective!r}")
    if repeats < 1 or frames < 1:
        raise ValueError(f"frames and repeats must be >= 1, got {frames} and {repeats}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    top = max(1, min(max_threads or cores, cores, 8))
    weights = ["stored", "f16"] if allow_f16 else ["stored"]
    trials: list[dict[str, Any]] = []
    common: dict[str, Any] = {
        "objective": objective,
        "frames": frames,
        "rounds": repeats,
        "min_gain": min_gain,
        "trials": trials,
        "progress": progress,
    }

    stage1 = [{"threads": t, "weights": w} for t in range(1, top + 1) for w in weights]
    best, best_trial, default_trial = _stage(
        model, "threads x weights", {}, stage1, seed=seed, **common
    )
    stages: list[dict[str, Any]] = [{"name": "threads x weights", "reference": {}, "chosen": best}]
    if objective == "offline":
        grid = [{**best, "frame_tile": f, "chunk_frames": c} for f, c in TILE_CHUNK_GRID]
        best, best_trial, _ = _stage(
            model, "frame_tile x chunk_frames", best, grid, seed=seed + 1, **common
        )
        stages.append(
            {"name": "frame_tile x chunk_frames", "reference": stages[0]["chosen"], "chosen": best}
        )
    else:
        stages.append(
            {
                "name": "frame_tile x chunk_frames",
                "skipped": "streaming pushes one frame per call: one chunk of one tile whatever "
                "frame_tile and chunk_frames are, so they cannot change the objective",
            }
        )
        if progress is not None:
            progress(f"frame_tile x chunk_frames: skipped ({stages[-1]['skipped']})")
    record: dict[str, Any] = {
        "version": TUNING_VERSION,
        "model": model_key(model),
        "cpu": cpu_signature(),
        "objective": objective,
        "options": best,
        "choice": "tuned" if best else "default",
        "rule": RULE,
        "min_gain": min_gain,
        "default_us": _time(default_trial),
        "best_us": _time(best_trial),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "frames": frames,
        "rounds": repeats,
        "stages": stages,
        "trials": trials,
    }
    record["summary"] = describe(record)
    return record


def save_tuning(record: dict[str, Any], model: str | bytes, out: Path | None = None) -> Path:
    """Write next to the model (or to ``out``); fall back to the user cache if unwritable."""
    candidates = [out] if out is not None else tuning_paths(model)
    text = json.dumps(record, indent=2) + "\n"
    last_error: OSError | None = None
    for path in candidates:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
            return path
        except OSError as e:
            last_error = e
    raise OSError(f"cannot write the tuning file: {last_error}")


def rank_block_shapes(
    input_dim: int,
    hidden: int,
    layers: int,
    classes: int,
    rate: float,
    *,
    candidates: Iterable[tuple[int, int]] = ((8, 1), (16, 2), (32, 4), (32, 1), (64, 4)),
    threads: int = 1,
    frames: int = 200,
    repeats: int = 5,
) -> list[dict[str, Any]]:
    """Streaming µs per frame of random BSP models at ``rate`` for each (Num_r, Num_c),
    fastest first: which block shape to train with for speed at a target compression.

    All shapes are timed interleaved (``repeats`` rounds over all of them, streaming and
    offline, in a fresh order each round); each row has the medians (``streaming_us``,
    ``offline_us``) and the interquartile ranges (``streaming_iqr_us``, ``offline_iqr_us``)."""
    from rtmobile_rt.demo import random_gru_bspc

    shapes = list(candidates)
    samplers = []
    for num_r, num_c in shapes:
        data = random_gru_bspc(input_dim, hidden, layers, classes, rate=rate, blocks=(num_r, num_c))
        bench = _Bench(data, {"threads": threads}, frames)
        samplers += [lambda b=bench: b.sample("streaming"), lambda b=bench: b.sample("offline")]
    samples = interleave(samplers, repeats)
    rows = []
    for i, (num_r, num_c) in enumerate(shapes):
        streaming, offline = samples[2 * i], samples[2 * i + 1]
        rows.append(
            {
                "num_r": num_r,
                "num_c": num_c,
                "streaming_us": statistics.median(streaming),
                "offline_us": statistics.median(offline),
                "streaming_iqr_us": iqr(streaming),
                "offline_iqr_us": iqr(offline),
            }
        )
    return sorted(rows, key=lambda r: r["streaming_us"])


def format_trials(trials: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of a tuning record's trials (also reads the older records that kept
    a streaming and an offline median per trial)."""
    lines = [
        "| stage | options | objective | median us/frame | IQR | samples |",
        "|---|---|---|--:|--:|--:|",
    ]
    for t in trials:
        options = _label(t["options"])
        if "median_us" not in t:  # older records: both medians, no spread
            for mode in OBJECTIVES:
                lines.append(f"| | {options} | {mode} | {t[mode + '_us']:.1f} | | |")
            continue
        mark = " (reference)" if t.get("reference") else ""
        lines.append(
            f"| {t.get('stage', '')} | {options}{mark} | {t['objective']} | "
            f"{t['median_us']:.1f} | {t['iqr_us']:.1f} | {len(t.get('samples_us', []))} |"
        )
    return "\n".join(lines)
