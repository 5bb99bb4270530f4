"""BSP (block-based structured pruning) geometry and the Z-step projection.

This is Algorithm 1 of the RTMobile paper (Sec. IV-A), numpy only:

* Step 1 cuts the ``rows x cols`` matrix into ``num_r`` horizontal strips and, inside each
  strip, keeps the ``keep_count(cols, col_sparsity)`` columns whose L2 norm over the strip's
  rows is largest.
* Step 2 cuts the column-pruned matrix into ``num_c`` vertical column blocks and, inside each
  block, keeps the ``keep_count(rows, row_sparsity)`` rows whose L2 norm over the block's
  columns is largest.

The result is ``mask1 & mask2``: inside block (strip i, column block j) the support is the
product set ``R_ij x C_ij`` that the BSPC format stores densely.

Ties are broken deterministically: among equal norms the lower index wins. Norms are compared
as sums of squares in float64 after an exact power-of-two rescaling, so the choice does not
depend on overflow or on the rounding of a square root.

A keep count that rounds to 0 is allowed: every column of every strip (or every row of every
column block) is then pruned, and the BSPC writer stores empty blocks.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "block_bounds",
    "bsp_mask",
    "bsp_project",
    "bsp_step_masks",
    "compression_rate",
    "is_bsp_structured",
    "keep_count",
    "kept_by_row_keep",
    "random_bsp_matrix",
    "row_sparsity_for_rate",
    "sparsities_for_rate",
    "strip_bounds",
]


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def _check_sparsity(name: str, value: object) -> float:
    s = _check_real(name, value)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {s}")
    return s


def _even_bounds(n: int, parts: int, n_name: str, parts_name: str) -> np.ndarray:
    n = _check_int(n_name, n)
    parts = _check_int(parts_name, parts)
    if n < 1:
        raise ValueError(f"{n_name} must be >= 1, got {n}")
    if not 1 <= parts <= n:
        raise ValueError(f"{parts_name} must be in [1, {n_name}={n}], got {parts}")
    return (np.arange(parts + 1, dtype=np.int64) * n) // parts


def strip_bounds(rows: int, num_r: int) -> np.ndarray:
    """Bounds ``b`` of the ``num_r`` strips: strip i = ``[b[i], b[i+1])``, b[i]=i*rows//num_r."""
    return _even_bounds(rows, num_r, "rows", "num_r")


def block_bounds(cols: int, num_c: int) -> np.ndarray:
    """Column bounds of the ``num_c`` column blocks, split like :func:`strip_bounds`."""
    return _even_bounds(cols, num_c, "cols", "num_c")


def keep_count(n: int, sparsity: float) -> int:
    """Number of kept items out of ``n``: ``round((1 - sparsity) * n)`` (Python rounding).

    Python's ``round`` rounds halves to even (``round(2.5) == 2``). The result may be 0.
    """
    n = _check_int("n", n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    s = _check_sparsity("sparsity", sparsity)
    return min(n, max(0, round((1.0 - s) * n)))


def _as_matrix(w: object, name: str) -> np.ndarray:
    a = np.asarray(w)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name} has a non-finite value at {tuple(int(x) for x in bad)}")
    return a


def _scaled_squares(a: np.ndarray) -> np.ndarray:
    """Squares of ``a`` in float64 after an exact power-of-two rescaling to max |a| < 1."""
    x = a.astype(np.float64)
    amax = float(np.max(np.abs(x))) if x.size else 0.0
    if amax > 0.0:
        x = np.ldexp(x, -math.frexp(amax)[1])
    return x * x


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores; among equal scores the lower index wins."""
    return np.argsort(-scores, kind="stable")[:k]


def bsp_step_masks(
    w: np.ndarray, num_r: int, num_c: int, col_sparsity: float, row_sparsity: float
) -> tuple[np.ndarray, np.ndarray]:
    """The two masks of Algorithm 1: ``(column mask of step 1, row mask of step 2)``.

    Step 1 keeps exactly ``keep_count(cols, col_sparsity)`` columns in every strip; step 2
    keeps exactly ``keep_count(rows, row_sparsity)`` rows in every column block, ranked by
    their norms on ``w * mask1``. The BSP mask is their intersection (:func:`bsp_mask`).
    """
    a = _as_matrix(w, "w")
    mask1, sq1 = _column_step(a, num_r, col_sparsity)
    cb = block_bounds(a.shape[1], num_c)
    keep_r = keep_count(a.shape[0], row_sparsity)
    mask2 = np.zeros(a.shape, dtype=bool)
    for j in range(len(cb) - 1):
        c0, c1 = int(cb[j]), int(cb[j + 1])
        mask2[_top_k(sq1[:, c0:c1].sum(axis=1), keep_r), c0:c1] = True
    return mask1, mask2


def _column_step(a: np.ndarray, num_r: int, col_sparsity: float) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 on a validated matrix: ``(mask1, scaled squares of a * mask1)``, the latter being
    what step 2 ranks rows on."""
    rows, cols = a.shape
    sb = strip_bounds(rows, num_r)
    keep_c = keep_count(cols, col_sparsity)
    sq = _scaled_squares(a)
    mask1 = np.zeros((rows, cols), dtype=bool)
    for i in range(len(sb) - 1):
        r0, r1 = int(sb[i]), int(sb[i + 1])
        mask1[r0:r1, _top_k(sq[r0:r1].sum(axis=0), keep_c)] = True
    return mask1, np.where(mask1, sq, 0.0)


def kept_by_row_keep(w: np.ndarray, num_r: int, num_c: int, col_sparsity: float) -> np.ndarray:
    """Kept weights of the BSP mask for every step-2 keep count, after step 1 at ``col_sparsity``.

    Entry ``k`` (``0 <= k <= rows``) is ``bsp_mask(...).sum()`` when every column block keeps
    its ``k`` best rows. Step 2 ranks rows on the column-pruned matrix whatever ``k`` is, so
    the count is a prefix sum over that ranking: one pass gives every ``k``.
    """
    a = _as_matrix(w, "w")
    rows = a.shape[0]
    mask1, sq1 = _column_step(a, num_r, col_sparsity)
    cb = block_bounds(a.shape[1], num_c)
    kept = np.zeros(rows + 1, dtype=np.int64)
    for j in range(len(cb) - 1):
        c0, c1 = int(cb[j]), int(cb[j + 1])
        order = _top_k(sq1[:, c0:c1].sum(axis=1), rows)  # step 2's full ranking
        kept[1:] += np.cumsum(mask1[order, c0:c1].sum(axis=1))
    return kept


def row_sparsity_for_rate(
    w: np.ndarray, num_r: int, num_c: int, col_sparsity: float, rate: float
) -> float:
    """Step 2's row sparsity that brings ``w``'s BSP compression closest to ``rate``.

    Step 2 ranks rows on the column-pruned matrix, so some of the rows it drops are already
    empty in that column block, and a nominal split ``col_rate x row_rate`` falls short of its
    product (e.g. 16 x 2.7 gave 32.8x, not 43x, on a trained 128-unit GRU). Among the keep
    counts ``1 <= k <= rows`` this picks the one whose kept weights are nearest
    ``w.size / rate`` (ties: the larger ``k``) and returns ``1 - k / rows``, for which
    ``keep_count`` gives back ``k``.
    """
    a = _as_matrix(w, "w")
    r = _check_real("rate", rate)
    if r < 1.0:
        raise ValueError(f"rate must be >= 1, got {r}")
    rows = a.shape[0]
    if rows == 0:
        return 0.0
    kept = kept_by_row_keep(a, num_r, num_c, col_sparsity)[1:]
    miss = np.abs(kept - a.size / r)
    k = 1 + int(np.flatnonzero(miss == miss.min())[-1])
    return 1.0 - k / rows


def bsp_mask(
    w: np.ndarray, num_r: int, num_c: int, col_sparsity: float, row_sparsity: float
) -> np.ndarray:
    """Boolean BSP mask of ``w`` (Algorithm 1): step-1 column mask AND step-2 row mask."""
    mask1, mask2 = bsp_step_masks(w, num_r, num_c, col_sparsity, row_sparsity)
    return mask1 & mask2


def bsp_project(
    w: np.ndarray, num_r: int, num_c: int, col_sparsity: float, row_sparsity: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(w with pruned entries set to +0, mask)``; the result keeps ``w``'s dtype."""
    a = _as_matrix(w, "w")
    mask = bsp_mask(a, num_r, num_c, col_sparsity, row_sparsity)
    return np.where(mask, a, np.zeros((), dtype=a.dtype)), mask


def is_bsp_structured(mask: np.ndarray, num_r: int, num_c: int) -> bool:
    """True iff inside every block the support of ``mask`` is a product set ``R x C``."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    m = m != 0
    sb = strip_bounds(m.shape[0], num_r)
    cb = block_bounds(m.shape[1], num_c)
    for i in range(len(sb) - 1):
        for j in range(len(cb) - 1):
            blk = m[sb[i] : sb[i + 1], cb[j] : cb[j + 1]]
            if not np.array_equal(blk, np.outer(blk.any(axis=1), blk.any(axis=0))):
                return False
    return True


def compression_rate(total_params: int, kept_params: int) -> float:
    """Dense over kept parameter count, as in the paper; ``inf`` when nothing is kept."""
    total = _check_int("total_params", total_params)
    kept = _check_int("kept_params", kept_params)
    if total < 1:
        raise ValueError(f"total_params must be >= 1, got {total}")
    if not 0 <= kept <= total:
        raise ValueError(f"kept_params must be in [0, total_params={total}], got {kept}")
    return math.inf if kept == 0 else total / kept


def sparsities_for_rate(rate: float, col_rate: float | None = None) -> tuple[float, float]:
    """``(col_sparsity, row_sparsity)`` for a nominal overall compression ``rate``.

    A compression rate ``c`` keeps ``1/c`` of the items, i.e. sparsity ``1 - 1/c``. The
    column rate defaults to ``rate`` (column pruning only, row rate 1); otherwise the row
    rate is ``rate / col_rate``. The achieved rate of :func:`bsp_mask` is only nominally
    ``col_rate * row_rate``: keep counts are rounded and step 2 may prune rows whose
    columns were already pruned.
    """
    r = _check_real("rate", rate)
    if r < 1.0:
        raise ValueError(f"rate must be >= 1, got {r}")
    c = r if col_rate is None else _check_real("col_rate", col_rate)
    if not 1.0 <= c <= r:
        raise ValueError(f"col_rate must be in [1, rate={r}], got {c}")
    row_rate = max(1.0, r / c)
    return 1.0 - 1.0 / c, 1.0 - 1.0 / row_rate


def random_bsp_matrix(
    rng: np.random.Generator,
    rows: int,
    cols: int,
    num_r: int,
    num_c: int,
    col_sparsity: float,
    row_sparsity: float,
    scale: float = 1.0,
) -> np.ndarray:
    """A float32 BSP matrix: a N(0, scale^2) matrix projected with :func:`bsp_project`.

    Every kept entry is nonzero, so the support equals the BSP mask.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    sc = _check_real("scale", scale)
    if not 0.0 < sc <= 1e30 or np.float32(sc) == 0:
        raise ValueError(f"scale must be in (0, 1e30] and nonzero in float32, got {sc}")
    rows = _check_int("rows", rows)
    cols = _check_int("cols", cols)
    strip_bounds(rows, num_r)
    block_bounds(cols, num_c)
    w = (rng.standard_normal((rows, cols)) * sc).astype(np.float32)
    w[w == 0] = np.float32(sc)
    out, _ = bsp_project(w, num_r, num_c, col_sparsity, row_sparsity)
    return out
