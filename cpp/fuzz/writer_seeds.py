"""Seeds for bspc_fuzz written by the product's writer, rtmobile_train.bspc.write_bspc.

The C++ seed writer (make_seeds.cc) uses the tests' independent encoder; these come from the
writer that makes real model files, with its own choices (row order by block pattern, label
and metadata encoding), so the fuzzer starts from both. Small models keep each file a few KB.

Usage: python cpp/fuzz/writer_seeds.py OUTPUT_DIR   (needs numpy and rtmobile_train)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rtmobile_train.bspc import LayerWeights, write_bspc

GATES = {"gru": 3, "lstm": 4}


def bsp_weight(
    rng: np.random.Generator, rows: int, cols: int, blocks: tuple[int, int], keep: float
) -> np.ndarray:
    """Random weights on a BSP support: per strip kept columns, per column block kept rows."""
    num_r, num_c = blocks
    strip_of_row = np.arange(rows) * num_r // rows
    block_of_col = np.arange(cols) * num_c // cols
    cols_kept = rng.random((num_r, cols)) < keep
    rows_kept = rng.random((rows, num_c)) < keep
    support = cols_kept[strip_of_row, :] & rows_kept[:, block_of_col]
    # Multiples of 2^-10 in [-0.5, 0.5]: exact in f16 as in f32.
    values = rng.integers(-512, 513, size=(rows, cols)).astype(np.float32) / 1024
    return np.where(support, values, np.float32(0))


def model(
    seed: int,
    kind: str,
    input_dim: int,
    hidden: list[int],
    output_dim: int,
    blocks: tuple[int, int],
    keep: float,
) -> tuple[list[LayerWeights], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = GATES[kind]
    layers = []
    in_dim = input_dim
    for h in hidden:
        layers.append(
            LayerWeights(
                w_ih=bsp_weight(rng, g * h, in_dim, blocks, keep),
                w_hh=bsp_weight(rng, g * h, h, blocks, keep),
                b_ih=rng.standard_normal(g * h).astype(np.float32) * 0.1,
                b_hh=rng.standard_normal(g * h).astype(np.float32) * 0.1,
            )
        )
        in_dim = h
    out_w = bsp_weight(rng, output_dim, in_dim, (1, 1), 1.0)
    out_b = rng.standard_normal(output_dim).astype(np.float32) * 0.1
    return layers, out_w, out_b


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)

    layers, w, b = model(1, "gru", 8, [12, 8], 5, (3, 2), 0.6)
    norm = (np.linspace(-1, 1, 8, dtype=np.float32), np.linspace(0.5, 2, 8, dtype=np.float32), 1e-5)
    write_bspc(
        out / "writer_gru_f16_norm_metadata.bspc",
        layers,
        w,
        b,
        kind="gru",
        blocks=(3, 2),
        dtype="f16",
        labels=["sil", "aa", "b", "ch", "d"],
        norm=norm,
        metadata={"features": {"sample_rate": 16000, "mel_bins": 8}},
    )
    layers, w, b = model(2, "lstm", 6, [10], 4, (4, 2), 0.5)
    write_bspc(out / "writer_lstm_f32_bsp.bspc", layers, w, b, kind="lstm", blocks=(4, 2))
    layers, w, b = model(3, "gru", 5, [7], 3, (1, 1), 1.0)
    write_bspc(
        out / "writer_gru_f32_dense_plain_order.bspc", layers, w, b, kind="gru", reorder=False
    )
    print(f"writer_seeds: 3 seeds in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
