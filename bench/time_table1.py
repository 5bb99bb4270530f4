"""Streaming time per frame of every finished Table I row, for the PER-vs-time plot.

For each row of a reproduce run folder (``rows/<row>.json``) this times, batch 1, one frame per
call, state carried:

* ``rtmobile``: the row's exported ``model.bspc`` in the C++ runtime (``rtmobile_rt.Session``,
  one thread, the runtime's defaults, no tuning file);
* ``scipy-csr``: the same trained weights, zeros dropped, as ``scipy.sparse.csr_matrix`` in a
  Python GRU step loop (``bench_gru.ScipyCsrEngine``): how an unstructured model (magnitude,
  BBS) runs without a block format. The dense row's CSR holds every weight.

Engines are interleaved round-robin over ``--repeats`` samples of ``--frames`` frames each and
the medians are written to ``rows/<row>.timing.json`` with the machine and its load average;
``python -m rtmobile_train.reproduce`` then puts them in the table and draws
``table1-<model>-time.png``. Never run it while a training run shares the machine.

    python bench/time_table1.py --run runs/table1             # the small-model run
    python bench/time_table1.py --run runs/table1-default-medium
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gru

TIMING_FORMAT = "rtmobile-table1-timing"


def dense_model_of(checkpoint: Path) -> bench_gru.DenseModel:
    """The checkpoint's trained weights in the benchmark's layout (pruned weights are zero)."""
    from rtmobile_train.export import load_checkpoint

    ck = load_checkpoint(checkpoint)
    cfg = ck.model.cfg
    w = {n: m.detach().numpy().astype(np.float32) for n, m in ck.model.matrices().items()}
    b = {n: v.detach().numpy().astype(np.float32) for n, v in ck.model.biases().items()}
    return bench_gru.DenseModel(cfg.input_dim, cfg.hidden_dim, cfg.num_layers, cfg.num_classes,
                                w, b)  # fmt: skip


def time_row(row_dir: Path, *, frames: int, repeats: int, warmup: int, seed: int) -> dict[str, Any]:
    ckpt = row_dir / "retrain.pt"
    if not ckpt.exists():  # the dense row: the run's dense baseline
        ckpt = row_dir.parent.parent / "dense" / "dense.pt"
    model = dense_model_of(ckpt)
    engines: dict[str, Any] = {
        "rtmobile": bench_gru.RtmEngine((row_dir / "model.bspc").read_bytes(), threads=1),
        "scipy-csr": bench_gru.ScipyCsrEngine(model, model.w),
    }
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal((1, model.input_dim)).astype(np.float32) for _ in range(frames)]
    samples: dict[str, list[float]] = {name: [] for name in engines}
    names = list(engines)
    for rep in range(repeats):
        for k in range(len(names)):  # rotate the start so no engine always goes first
            name = names[(rep + k) % len(names)]
            samples[name].append(bench_gru.time_streaming(engines[name], rows, warmup))
    csr: Any = engines["scipy-csr"]
    return {
        "us_per_frame": {n: statistics.median(s) for n, s in samples.items()},
        "samples": samples,
        "nonzeros": int(csr.nonzeros),
        "checkpoint": str(ckpt),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python bench/time_table1.py",
        description="Time every finished Table I row's exported model (streaming, batch 1) "
        "in the runtime and as scipy CSR; writes rows/<row>.timing.json.",
    )
    p.add_argument("--run", type=Path, default=Path("runs/table1"), help="reproduce run folder")
    p.add_argument("--frames", type=int, default=400, help="frames per sample")
    p.add_argument("--warmup", type=int, default=50, help="frames pushed before timing")
    p.add_argument("--repeats", type=int, default=7, help="samples per engine (median)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.frames <= args.warmup or args.repeats < 1:
        p.error("--frames must exceed --warmup, and --repeats must be >= 1")
    rows = sorted((args.run / "rows").glob("*.json"))
    rows = [r for r in rows if not r.name.endswith(".timing.json")]
    if not rows:
        p.error(f"{args.run / 'rows'} holds no finished rows")
    machine = bench_gru.machine_info()
    for path in rows:
        row = json.loads(path.read_text())
        row_dir = args.run / "rows" / row["name"]
        if not (row_dir / "model.bspc").is_file():
            print(f"{row['name']}: no exported model, skipped")
            continue
        res = time_row(row_dir, frames=args.frames, repeats=args.repeats, warmup=args.warmup,
                       seed=args.seed)  # fmt: skip
        res.update(
            format=TIMING_FORMAT,
            name=row["name"],
            fingerprint=row["fingerprint"],
            machine=machine,
            loadavg_end=list(os.getloadavg()),
            date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            command="python bench/time_table1.py " + shlex.join(argv or sys.argv[1:]),
            frames=args.frames,
            repeats=args.repeats,
        )
        out = path.with_name(f"{row['name']}.timing.json")
        out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
        us = res["us_per_frame"]
        print(
            f"{row['name']:24s} rtmobile {us['rtmobile']:8.1f} us/frame   "
            f"scipy-csr {us['scipy-csr']:8.1f} us/frame   ({res['nonzeros']:,} nonzeros)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
