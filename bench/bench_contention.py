"""Streaming under contention: each engine quiet, then beside CPU-bound background processes.

A phone always has other work running. This benchmark times streaming (one frame per call,
state carried) of the paper-size GRU (440 -> 2 x 960 -> 40, random weights, BSP at the given
rates as in ``bench_gru.py``) for:

  * ``rtmobile default``: ``Session(model)`` with nothing set (the thread count the runtime
    picks; tuning files ignored) -- what a new user gets;
  * ``rtmobile tN``: an explicit thread count, for each ``--threads``;
  * ``onnxruntime tN``: the dense ONNX GRU with ``intra_op_num_threads = N``.

Each repeat times every engine quiet and then under load, ``--hogs`` background processes
(``python -c 'while True: pass'``) started for that half and killed after it, engine order
rotated per repeat, 0.2 s idle before each sample so the previous engine's threads
have stopped spinning; the table quotes medians and the slowdown (loaded / quiet median). Run it
on an otherwise idle machine: the background load must be the only one.

    python bench/bench_contention.py                       # bench/results/contention.md + .json
    python bench/bench_contention.py --smoke --out /tmp/c  # tiny model, seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gru as bg  # the model, split and engines are shared


@dataclass
class Entry:
    name: str
    rate: float
    threads: str  # "default" or the count
    engine: bg.Engine
    samples: dict[str, list[float]] = field(default_factory=lambda: {"quiet": [], "loaded": []})

    def median(self, cond: str) -> float:
        return statistics.median(self.samples[cond])


class Hogs:
    """``n`` CPU-bound processes for the duration of a ``with`` block."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Hogs:
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        time.sleep(0.3)  # let them start spinning
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs.clear()


def build(args: argparse.Namespace, log: Callable[[str], None]) -> list[Entry]:
    dims = bg.SMOKE_DIMS if args.smoke else bg.PAPER_DIMS
    model = bg.random_dense_model(*dims, seed=0)
    entries: list[Entry] = []
    for rate in args.rates:
        split, masks = bg.make_split(model, rate, True)
        data, _ = bg.encode(model, bg.pruned(model, masks), masks, "f32")
        log(f"rate {rate:g}x: achieved {split.achieved:.2f}x, {split.nonzeros:,} nonzeros")
        default = bg.RtmEngine(data, None)  # Session(model): the runtime picks the threads
        entries.append(
            Entry(
                f"rtmobile default ({default.info['threads']} threads in the pool)",
                rate,
                "default",
                default,
            )
        )
        for t in args.threads:
            entries.append(Entry(f"rtmobile t{t}", rate, str(t), bg.RtmEngine(data, t)))
    onnx = bg.onnx_gru_model(model)
    for t in args.threads:
        entries.append(Entry(f"onnxruntime dense t{t}", 1.0, str(t), bg.OrtEngine(onnx, model, t)))
    return entries


def settle() -> None:
    """Idle between samples: the previous engine's pool threads (onnxruntime's spin after a
    run) must have gone to sleep, or they compete with the next engine."""
    time.sleep(0.2)


def measure(entries: list[Entry], args: argparse.Namespace, log: Callable[[str], None]) -> None:
    dims = bg.SMOKE_DIMS if args.smoke else bg.PAPER_DIMS
    x = np.random.default_rng(1).standard_normal((args.warmup + args.frames, dims[0]))
    rows = [r[None].astype(np.float32) for r in x]
    t0 = time.perf_counter()
    for rep in range(args.repeats):
        k = rep % len(entries)
        order = entries[k:] + entries[:k]
        for e in order:
            settle()
            e.samples["quiet"].append(bg.time_streaming(e.engine, rows, args.warmup))
        with Hogs(args.hogs):
            for e in order:
                settle()
                e.samples["loaded"].append(bg.time_streaming(e.engine, rows, args.warmup))
        log(f"repeat {rep + 1}/{args.repeats}, {time.perf_counter() - t0:.0f} s")


def render(entries: list[Entry], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        "# Streaming under contention",
        "",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs; load average before "
        f"{' '.join(f'{v:.2f}' for v in m['loadavg_start'] or [])}; {meta['date']}.",
        f"Command: `{meta['command']}`.",
        f"Load: {meta['hogs']} CPU-bound background process(es) during the loaded half of "
        f"each of {meta['repeats']} repeats; {meta['frames']} timed frames per sample after "
        f"{meta['warmup']} warm-up frames. Medians in us per frame (streaming, one frame per "
        "call).",
        "",
        "| engine | rate | quiet us/frame | loaded us/frame | slowdown |",
        "|---|--:|--:|--:|--:|",
    ]
    for e in entries:
        q, lo = e.median("quiet"), e.median("loaded")
        lines.append(f"| {e.name} | {e.rate:g}x | {q:.1f} | {lo:.1f} | {lo / q:.2f}x |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny model; checks the plumbing")
    p.add_argument("--rates", type=float, nargs="+", default=[10.0], help="(default 10)")
    p.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="explicit counts (default 1 2)"
    )
    p.add_argument("--hogs", type=int, default=1, help="background processes (default 1)")
    p.add_argument("--repeats", type=int, default=None, help="(default 7; smoke 2)")
    p.add_argument("--frames", type=int, default=None, help="timed frames (default 300; smoke 20)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up frames (default 20)")
    p.add_argument("--out", type=Path, default=None, help="default bench/results (smoke: temp)")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.smoke else 7
    if args.frames is None:
        args.frames = 20 if args.smoke else 300
    if args.out is None:
        args.out = Path(tempfile.mkdtemp()) if args.smoke else bg.BENCH_DIR / "results"
    if min(args.threads) < 1 or args.hogs < 1 or args.repeats < 1 or args.frames < 1:
        p.error("--threads, --hogs, --repeats and --frames must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(f"[bench_contention] {msg}", file=sys.stderr, flush=True)

    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(
            ["python", "bench/bench_contention.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": bg.machine_info(),
        "hogs": args.hogs,
        "repeats": args.repeats,
        "frames": args.frames,
        "warmup": args.warmup,
    }
    entries = build(args, log)
    measure(entries, args, log)
    meta["loadavg_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    table = render(entries, meta)
    (args.out / "contention.md").write_text(table)
    results = {
        "meta": meta,
        "entries": [
            {
                "name": e.name,
                "rate": e.rate,
                "threads": e.threads,
                "engine_info": getattr(e.engine, "info", None),
                "samples_us_per_frame": e.samples,
            }
            for e in entries
        ],
    }
    (args.out / "contention.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
