"""Auto-tuning: measure execution configurations of a model on this machine, keep the best.

The search is offline and per (model, CPU): it times the configurations a Session exposes
(threads, weight precision, SpMM frame tile, chunk length) and writes a small JSON tuning file
next to the model (``model.bspc.tune.json``) or, if that directory is not writable, into the
user cache (``$XDG_CACHE_HOME/rtmobile/tune/``). ``Session(path)`` then applies it. f16 weights
are only considered with ``allow_f16=True``: they change results within the f16 tolerance.

A second helper, :func:`rank_block_shapes`, times random BSP models of one size and
compression with different (Num_r, Num_c) to guide the choice of block shape for training.
"""

from __future__ import annotations

import json
import os
import platform
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


def _median_us_per_frame(step: Callable[[], None], frames: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        samples.append((time.perf_counter() - t0) / frames * 1e6)
    return statistics.median(samples)


def measure(
    model: str | bytes,
    options: dict[str, Any],
    *,
    frames: int = 200,
    repeats: int = 5,
) -> dict[str, float]:
    """Median µs per frame: streaming (one frame per push) and offline (one run)."""
    from rtmobile_rt.session import Session

    session = Session(model, tuning=None, **options)
    x = np.random.default_rng(0).standard_normal((frames, session.input_dim)).astype(np.float32)
    stream = session.stream()

    def streaming() -> None:
        for t in range(frames):
            stream.push(x[t : t + 1])

    session.run(x[: min(frames, 20)])  # warm-up: page in weights, wake threads
    return {
        "streaming_us": _median_us_per_frame(streaming, frames, repeats),
        "offline_us": _median_us_per_frame(lambda: session.run(x), frames, repeats),
    }


def tune(
    model: str | bytes,
    *,
    objective: str = "streaming",
    max_threads: int | None = None,
    allow_f16: bool = False,
    frames: int = 200,
    repeats: int = 5,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Search the execution configuration for ``model``; returns the tuning record.

    Stage 1 picks threads and weight precision by the objective (``"streaming"``: µs per
    frame pushed one at a time; ``"offline"``: µs per frame of a whole-utterance run).
    Stage 2 picks the SpMM frame tile and chunk length by offline time, which is all they
    affect.
    """
    if objective not in ("streaming", "offline"):
        raise ValueError(f"objective must be 'streaming' or 'offline', got {objective!r}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    top = max(1, min(max_threads or cores, cores, 8))
    key = f"{objective}_us"
    weights = ["stored", "f16"] if allow_f16 else ["stored"]
    trials: list[dict[str, Any]] = []

    def trial(options: dict[str, Any]) -> dict[str, float]:
        result = measure(model, options, frames=frames, repeats=repeats)
        trials.append({"options": dict(options), **result})
        if progress is not None:
            progress(
                f"{options} -> streaming {result['streaming_us']:.1f} us/frame, "
                f"offline {result['offline_us']:.1f} us/frame"
            )
        return result

    best: dict[str, Any] = {}
    best_time = float("inf")
    for threads in range(1, top + 1):
        for w in weights:
            t = trial({"threads": threads, "weights": w})[key]
            if t < best_time:
                best, best_time = {"threads": threads, "weights": w}, t
    best_offline = float("inf")
    tile_chunk: dict[str, Any] = {}
    for frame_tile in (4, 8, 16, 32):
        for chunk_frames in (32, 64, 128):
            option = {"frame_tile": frame_tile, "chunk_frames": chunk_frames}
            t = trial({**best, **option})["offline_us"]
            if t < best_offline:
                tile_chunk, best_offline = option, t
    return {
        "version": TUNING_VERSION,
        "model": model_key(model),
        "cpu": cpu_signature(),
        "objective": objective,
        "options": {**best, **tile_chunk},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "trials": trials,
    }


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
    fastest first: which block shape to train with for speed at a target compression."""
    from rtmobile_rt.demo import random_gru_bspc

    rows = []
    for num_r, num_c in candidates:
        data = random_gru_bspc(input_dim, hidden, layers, classes, rate=rate, blocks=(num_r, num_c))
        result = measure(data, {"threads": threads}, frames=frames, repeats=repeats)
        rows.append({"num_r": num_r, "num_c": num_c, **result})
    return sorted(rows, key=lambda r: r["streaming_us"])


def format_trials(trials: Sequence[dict[str, Any]]) -> str:
    lines = ["| options | streaming us/frame | offline us/frame |", "|---|--:|--:|"]
    for t in trials:
        lines.append(f"| {t['options']} | {t['streaming_us']:.1f} | {t['offline_us']:.1f} |")
    return "\n".join(lines)
