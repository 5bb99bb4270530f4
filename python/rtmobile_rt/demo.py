"""A self-contained demo model: random BSP-pruned GRU weights written to BSPC in memory.

Random weights are fine for timing: the work depends on the block structure, not the values.
"""

from __future__ import annotations

import numpy as np

from rtmobile_train.bsp import random_bsp_matrix, sparsities_for_rate
from rtmobile_train.bspc import LayerWeights, encode_bspc


def random_gru_bspc(
    input_dim: int = 40,
    hidden: int = 256,
    layers: int = 2,
    classes: int = 40,
    rate: float = 10.0,
    blocks: tuple[int, int] = (16, 2),
    dtype: str = "f32",
    seed: int = 0,
) -> bytes:
    """Bytes of a GRU stack + linear model whose weights are BSP-pruned to ``rate``."""
    rng = np.random.default_rng(seed)
    col_sparsity, row_sparsity = sparsities_for_rate(rate)
    scale = 1.0 / np.sqrt(hidden)

    per_matrix: dict[str, tuple[int, int]] = {}

    def matrix(name: str, rows: int, cols: int) -> np.ndarray:
        num_r, num_c = min(blocks[0], rows), min(blocks[1], cols)
        per_matrix[name] = (num_r, num_c)
        return random_bsp_matrix(rng, rows, cols, num_r, num_c, col_sparsity, row_sparsity, scale)

    def bias(n: int) -> np.ndarray:
        return (rng.standard_normal(n) * scale).astype(np.float32)

    weights = []
    in_dim = input_dim
    for layer in range(layers):
        weights.append(
            LayerWeights(
                matrix(f"l{layer}.w_ih", 3 * hidden, in_dim),
                matrix(f"l{layer}.w_hh", 3 * hidden, hidden),
                bias(3 * hidden),
                bias(3 * hidden),
            )
        )
        in_dim = hidden
    out_w = matrix("out.w", classes, hidden)
    return encode_bspc(
        weights,
        out_w,
        bias(classes),
        kind="gru",
        blocks=per_matrix,
        dtype=dtype,  # type: ignore[arg-type]
    )
