"""Time a finished Table I row's weights in other BSP column-block layouts.

Where BSP prunes no rows (the column rate reaches the rate), Num_c changes no mask: the same
retrained weights can be stored with any Num_c. This re-encodes each row's retrained checkpoint
with its own Num_r and each ``--num-c``, checks the logits against the row's exported file
(bit-identical for the row's own Num_c, within 1e-4 otherwise: only the block sums' order
changes), and times streaming (one frame per push, one thread), interleaved.

    python bench/time_block_layouts.py --run runs/table1 --rows bsp-10x-r24 bsp-10x-nr8-r24
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from rtmobile_rt import Session
from rtmobile_train.bspc import LayerWeights, encode_bspc
from rtmobile_train.export import load_checkpoint


def reencode(checkpoint: Path, num_r: int, num_c: int) -> bytes:
    model = load_checkpoint(checkpoint).model
    w = {n: t.detach().numpy() for n, t in model.matrices().items()}
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    layers = [
        LayerWeights(
            w[f"l{k}.w_ih"], w[f"l{k}.w_hh"], sd[f"gru.bias_ih_l{k}"], sd[f"gru.bias_hh_l{k}"]
        )
        for k in range(model.cfg.num_layers)
    ]
    blocks = {n: (1, 1) if n == "out.w" else (num_r, num_c) for n in w}
    return encode_bspc(
        layers,
        w["out.w"],
        sd["out.bias"],
        blocks=blocks,
        masks={n: a != 0 for n, a in w.items()},
        labels=[str(i) for i in range(model.cfg.num_classes)],
        norm=(sd["feat_mean"], sd["feat_var"], float(sd["norm_eps"])),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--run", type=Path, default=Path("runs/table1"), help="reproduce run folder")
    p.add_argument("--rows", nargs="+", required=True, help="finished BSP rows")
    p.add_argument("--num-c", type=int, nargs="+", default=[4, 1], help="layouts (default 4 1)")
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--repeats", type=int, default=11)
    args = p.parse_args()
    sessions: dict[str, Session] = {}
    for row in args.rows:
        folder = args.run / "rows" / row
        info = json.loads((args.run / "rows" / f"{row}.json").read_text())
        num_r, own_c = info["blocks"]["l0.w_hh"]
        exported = Session(str(folder / "model.bspc"), threads=1, tuning=None)
        x = np.random.default_rng(0).standard_normal((args.frames + 20, exported.input_dim))
        x = x.astype(np.float32)
        want = exported.run(x)
        for num_c in args.num_c:
            s = Session(reencode(folder / "retrain.pt", num_r, num_c), threads=1, tuning=None)
            diff = float(np.abs(s.run(x) - want).max())
            if (num_c == own_c and diff != 0.0) or diff > 1e-4:
                raise SystemExit(f"{row} with Num_c {num_c}: logits differ by {diff:.3g}")
            sessions[f"{row} Num_r {num_r} Num_c {num_c}"] = s
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.repeats):
        for name, s in sessions.items():
            stream = s.stream()
            for t in range(20):
                stream.push(x[t : t + 1])
            t0 = time.perf_counter()
            for t in range(20, len(x)):
                stream.push(x[t : t + 1])
            samples[name].append((time.perf_counter() - t0) / args.frames * 1e6)
    print(f"load average {os.getloadavg()[0]:.2f}; median (min) us/frame, one thread, streaming")
    for name, v in samples.items():
        print(f"{name:45s} {statistics.median(v):7.2f} ({min(v):.2f})")


if __name__ == "__main__":
    main()
