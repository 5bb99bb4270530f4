"""Tests of rtmobile_train.bsp: BSP geometry and the Algorithm-1 projection (numpy only)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rtmobile_train import bsp

pytestmark = pytest.mark.filterwarnings("error")

# (rows, cols, num_r, num_c, col_sparsity, row_sparsity)
CASES = [
    (1, 1, 1, 1, 0.0, 0.0),
    (6, 5, 2, 2, 0.4, 0.5),
    (12, 10, 3, 2, 0.5, 0.25),
    (7, 9, 7, 9, 0.3, 0.3),
    (24, 16, 4, 4, 0.75, 0.5),
    (33, 17, 5, 3, 0.9, 0.1),
    (16, 40, 1, 8, 0.8, 0.0),
    (9, 4, 3, 1, 0.0, 0.6),
]


def _expected_bounds(n: int, parts: int) -> list[int]:
    return [i * n // parts for i in range(parts + 1)]


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(("n", "parts"), [(1, 1), (5, 1), (5, 5), (10, 3), (100, 7), (7, 4)])
@pytest.mark.parametrize("fn", [bsp.strip_bounds, bsp.block_bounds])
def test_bounds(fn, n: int, parts: int) -> None:
    b = fn(n, parts)
    assert isinstance(b, np.ndarray)
    assert b.tolist() == _expected_bounds(n, parts)
    assert len(b) == parts + 1
    assert np.all(np.diff(b) >= 1)  # every strip/block is non-empty


@pytest.mark.parametrize(
    ("fn", "n", "parts", "exc", "match"),
    [
        (bsp.strip_bounds, 0, 1, ValueError, r"rows must be >= 1, got 0"),
        (bsp.strip_bounds, 4, 0, ValueError, r"num_r must be in \[1, rows=4\], got 0"),
        (bsp.strip_bounds, 4, 5, ValueError, r"num_r must be in \[1, rows=4\], got 5"),
        (bsp.block_bounds, -3, 1, ValueError, r"cols must be >= 1, got -3"),
        (bsp.block_bounds, 4, 9, ValueError, r"num_c must be in \[1, cols=4\], got 9"),
        (bsp.strip_bounds, 4.0, 1, TypeError, r"rows must be an int, got float"),
        (bsp.block_bounds, 4, True, TypeError, r"num_c must be an int, got bool"),
    ],
)
def test_bounds_errors(fn, n, parts, exc, match) -> None:
    with pytest.raises(exc, match=match):
        fn(n, parts)


@pytest.mark.parametrize(
    ("n", "s", "k"),
    [
        (10, 0.0, 10),
        (10, 0.9, 1),
        (10, 0.7, 3),
        (10, 0.96, 0),
        (5, 0.5, 2),
        (7, 0.5, 4),
        (0, 0.3, 0),
    ],
)
def test_keep_count(n: int, s: float, k: int) -> None:
    assert bsp.keep_count(n, s) == k


@pytest.mark.parametrize(
    ("s", "exc", "match"),
    [
        (1.0, ValueError, r"sparsity must be in \[0, 1\), got 1.0"),
        (-0.1, ValueError, r"sparsity must be in \[0, 1\)"),
        (math.nan, ValueError, r"sparsity must be finite"),
        (True, TypeError, r"sparsity must be a real number, got bool"),
        ("0.5", TypeError, r"sparsity must be a real number, got str"),
    ],
)
def test_keep_count_errors(s, exc, match) -> None:
    with pytest.raises(exc, match=match):
        bsp.keep_count(10, s)


# ----------------------------------------------------------------------------- projection


def _rand(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("case", CASES)
def test_step_masks_exact_counts(case) -> None:
    rows, cols, num_r, num_c, pc, pr = case
    w = _rand((rows, cols), 1)
    m1, m2 = bsp.bsp_step_masks(w, num_r, num_c, pc, pr)
    keep_c, keep_r = bsp.keep_count(cols, pc), bsp.keep_count(rows, pr)
    sb, cb = bsp.strip_bounds(rows, num_r), bsp.block_bounds(cols, num_c)
    for i in range(num_r):
        strip = m1[sb[i] : sb[i + 1]]
        assert np.all(strip == strip[0]), "step 1 prunes whole columns of a strip"
        assert strip[0].sum() == keep_c
    for j in range(num_c):
        block = m2[:, cb[j] : cb[j + 1]]
        assert np.all(block == block[:, :1]), "step 2 prunes whole rows of a column block"
        assert block[:, 0].sum() == keep_r
    assert np.array_equal(bsp.bsp_mask(w, num_r, num_c, pc, pr), m1 & m2)


def _product_structured(mask: np.ndarray, num_r: int, num_c: int) -> bool:
    sb = bsp.strip_bounds(mask.shape[0], num_r)
    cb = bsp.block_bounds(mask.shape[1], num_c)
    for i in range(num_r):
        for j in range(num_c):
            blk = mask[sb[i] : sb[i + 1], cb[j] : cb[j + 1]]
            rs, cs = np.flatnonzero(blk.any(axis=1)), np.flatnonzero(blk.any(axis=0))
            if blk.sum() != len(rs) * len(cs) or not blk[np.ix_(rs, cs)].all():
                return False
    return True


@pytest.mark.parametrize("case", CASES)
def test_mask_is_bsp_structured(case) -> None:
    rows, cols, num_r, num_c, pc, pr = case
    mask = bsp.bsp_mask(_rand((rows, cols), 2), num_r, num_c, pc, pr)
    assert mask.dtype == np.bool_
    assert mask.shape == (rows, cols)
    assert _product_structured(mask, num_r, num_c)
    assert bsp.is_bsp_structured(mask, num_r, num_c)
    # Per strip at most keep_c columns, per column block at most keep_r rows survive.
    sb, cb = bsp.strip_bounds(rows, num_r), bsp.block_bounds(cols, num_c)
    for i in range(num_r):
        assert mask[sb[i] : sb[i + 1]].any(axis=0).sum() <= bsp.keep_count(cols, pc)
    for j in range(num_c):
        assert mask[:, cb[j] : cb[j + 1]].any(axis=1).sum() <= bsp.keep_count(rows, pr)


def test_is_bsp_structured_rejects_non_product() -> None:
    m = np.array([[1, 0], [0, 1]], dtype=bool)
    assert not bsp.is_bsp_structured(m, 1, 1)
    assert bsp.is_bsp_structured(m, 2, 1)  # each strip is one row
    assert bsp.is_bsp_structured(m, 1, 2)  # each block is one column
    with pytest.raises(ValueError, match=r"mask must be 2-D"):
        bsp.is_bsp_structured(np.ones(3, dtype=bool), 1, 1)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_projection_idempotent(case, dtype) -> None:
    rows, cols, num_r, num_c, pc, pr = case
    w = _rand((rows, cols), 3).astype(dtype)
    z, mask = bsp.bsp_project(w, num_r, num_c, pc, pr)
    assert z.dtype == dtype
    assert np.array_equal(z, np.where(mask, w, 0))
    assert not np.signbit(z[~mask]).any(), "pruned entries are +0"
    z2, mask2 = bsp.bsp_project(z, num_r, num_c, pc, pr)
    assert np.array_equal(z2, z)
    assert not (z != 0)[~mask2].any()


def _brute_top(scores_fn, n: int, k: int) -> tuple[int, ...]:
    """Lexicographically first k-subset maximising the retained energy (exact ints)."""
    best, best_val = (), None
    for sub in itertools.combinations(range(n), k):
        val = scores_fn(sub)
        if best_val is None or val > best_val:
            best, best_val = sub, val
    return best


def _brute_force_mask(w: np.ndarray, num_r, num_c, pc, pr) -> np.ndarray:
    wi = w.astype(np.int64)
    rows, cols = wi.shape
    keep_c, keep_r = bsp.keep_count(cols, pc), bsp.keep_count(rows, pr)
    sb, cb = bsp.strip_bounds(rows, num_r), bsp.block_bounds(cols, num_c)
    m1 = np.zeros(wi.shape, dtype=bool)
    for i in range(num_r):
        strip = wi[sb[i] : sb[i + 1]]
        sub = _brute_top(lambda s, strip=strip: int((strip[:, list(s)] ** 2).sum()), cols, keep_c)
        m1[sb[i] : sb[i + 1], list(sub)] = True
    w1 = np.where(m1, wi, 0)
    m2 = np.zeros(wi.shape, dtype=bool)
    for j in range(num_c):
        blk = w1[:, cb[j] : cb[j + 1]]
        sub = _brute_top(lambda s, blk=blk: int((blk[list(s)] ** 2).sum()), rows, keep_r)
        m2[list(sub), cb[j] : cb[j + 1]] = True
    return m1 & m2


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "case",
    [
        (6, 5, 2, 2, 0.4, 0.5),
        (5, 6, 1, 3, 0.5, 0.4),
        (6, 6, 3, 2, 0.3, 0.3),
        (4, 4, 4, 4, 0.5, 0.5),
    ],
)
@pytest.mark.parametrize("low,high", [(-2, 3), (-1000, 1001)])
def test_matches_brute_force(case, seed: int, low: int, high: int) -> None:
    """Integer weights: small ranges give many exact ties (lower index must win)."""
    rows, cols, num_r, num_c, pc, pr = case
    w = np.random.default_rng(seed).integers(low, high, size=(rows, cols)).astype(np.float32)
    got = bsp.bsp_mask(w, num_r, num_c, pc, pr)
    assert np.array_equal(got, _brute_force_mask(w, num_r, num_c, pc, pr))


def test_tie_break_lower_index_wins() -> None:
    w = np.ones((4, 6), dtype=np.float32)
    m1, m2 = bsp.bsp_step_masks(w, 2, 3, 0.5, 0.5)
    assert m1[:, :3].all() and not m1[:, 3:].any()
    # Step 2 ranks rows on w * m1: inside every column block all rows tie (block 2 is all
    # zero), so the first two rows win everywhere.
    assert m2[:2].all() and not m2[2:].any()


def test_zero_matrix_keeps_first_columns() -> None:
    m1, _ = bsp.bsp_step_masks(np.zeros((3, 5)), 1, 1, 0.6, 0.0)
    assert m1[0].tolist() == [True, True, False, False, False]


@pytest.mark.parametrize(("pc", "pr"), [(0.96, 0.0), (0.0, 0.96), (0.99, 0.99)])
def test_fully_pruned_is_legal(pc: float, pr: float) -> None:
    z, mask = bsp.bsp_project(_rand((10, 10), 4), 2, 2, pc, pr)
    assert not mask.any()
    assert not z.any()


def test_huge_and_tiny_values_are_ranked_exactly() -> None:
    w = np.array([[1e300, -1e300, 3e299], [1e-300, 0.0, 2e-300]])
    m1, _ = bsp.bsp_step_masks(w, 1, 1, 0.4, 0.0)  # keep 2 of 3 columns: 0 and 1 (tie -> lower)
    assert m1[0].tolist() == [True, True, False]
    m1, _ = bsp.bsp_step_masks(w[1:], 1, 1, 0.6, 0.0)  # keep 1: 2e-300 beats 1e-300
    assert m1[0].tolist() == [False, False, True]


def test_integer_input() -> None:
    w = np.arange(12, dtype=np.int32).reshape(3, 4)
    z, mask = bsp.bsp_project(w, 1, 1, 0.5, 0.0)
    assert z.dtype == np.int32
    assert mask[0].tolist() == [False, False, True, True]


@pytest.mark.parametrize(
    ("w", "kw", "exc", "match"),
    [
        (np.ones(4), {}, ValueError, r"w must be 2-D, got shape \(4,\)"),
        (np.array([[1.0, np.nan]]), {}, ValueError, r"w has a non-finite value at \(0, 1\)"),
        (np.array([[1.0, -np.inf]]), {}, ValueError, r"non-finite"),
        (np.array([["a"]]), {}, TypeError, r"real numeric array"),
        (np.ones((2, 2), dtype=complex), {}, TypeError, r"real numeric array"),
        (np.ones((2, 2)), {"num_r": 3}, ValueError, r"num_r must be in \[1, rows=2\], got 3"),
        (np.ones((2, 2)), {"num_c": 0}, ValueError, r"num_c must be in \[1, cols=2\], got 0"),
        (np.ones((2, 2)), {"col_sparsity": 1.0}, ValueError, r"sparsity must be in \[0, 1\)"),
        (np.ones((2, 2)), {"row_sparsity": -0.5}, ValueError, r"sparsity must be in \[0, 1\)"),
        (np.ones((0, 2)), {}, ValueError, r"rows must be >= 1"),
    ],
)
@pytest.mark.parametrize("fn", [bsp.bsp_mask, bsp.bsp_project, bsp.bsp_step_masks])
def test_projection_errors(fn, w, kw, exc, match) -> None:
    args = {"num_r": 1, "num_c": 1, "col_sparsity": 0.5, "row_sparsity": 0.5, **kw}
    with pytest.raises(exc, match=match):
        fn(w, **args)


# ----------------------------------------------------------------------------- rates


@pytest.mark.parametrize(
    ("total", "kept", "rate"), [(100, 10, 10.0), (100, 100, 1.0), (7, 2, 3.5), (5, 0, math.inf)]
)
def test_compression_rate(total: int, kept: int, rate: float) -> None:
    assert bsp.compression_rate(total, kept) == rate


@pytest.mark.parametrize(
    ("total", "kept", "exc", "match"),
    [
        (0, 0, ValueError, r"total_params must be >= 1, got 0"),
        (10, 11, ValueError, r"kept_params must be in \[0, total_params=10\], got 11"),
        (10, -1, ValueError, r"kept_params must be in"),
        (10.0, 1, TypeError, r"total_params must be an int"),
    ],
)
def test_compression_rate_errors(total, kept, exc, match) -> None:
    with pytest.raises(exc, match=match):
        bsp.compression_rate(total, kept)


@pytest.mark.parametrize(
    ("rate", "col_rate", "expected"),
    [
        (10, None, (0.9, 0.0)),
        (10, 5, (0.8, 0.5)),
        (10, 10, (0.9, 0.0)),
        (1, None, (0.0, 0.0)),
        (16, 1, (0.0, 1 - 1 / 16)),
        (245.0, 20.0, (0.95, 1 - 20 / 245)),
    ],
)
def test_sparsities_for_rate(rate, col_rate, expected) -> None:
    pc, pr = bsp.sparsities_for_rate(rate, col_rate)
    assert pc == pytest.approx(expected[0], abs=1e-15)
    assert pr == pytest.approx(expected[1], abs=1e-15)
    assert 0.0 <= pc < 1.0 and 0.0 <= pr < 1.0
    cr = col_rate if col_rate is not None else rate
    assert 1 / ((1 - pc) * (1 - pr)) == pytest.approx(rate)
    assert 1 / (1 - pc) == pytest.approx(cr)


@pytest.mark.parametrize(
    ("rate", "col_rate", "exc", "match"),
    [
        (0.5, None, ValueError, r"rate must be >= 1, got 0.5"),
        (math.inf, None, ValueError, r"rate must be finite"),
        (10, 20, ValueError, r"col_rate must be in \[1, rate=10.0\], got 20.0"),
        (10, 0.5, ValueError, r"col_rate must be in \[1, rate=10.0\], got 0.5"),
        ("10", None, TypeError, r"rate must be a real number, got str"),
    ],
)
def test_sparsities_for_rate_errors(rate, col_rate, exc, match) -> None:
    with pytest.raises(exc, match=match):
        bsp.sparsities_for_rate(rate, col_rate)


def test_rate_drives_projection() -> None:
    """A nominal 8x (col 4x, row 2x) on a 64 x 64 matrix keeps about 1/8 of it."""
    pc, pr = bsp.sparsities_for_rate(8, 4)
    mask = bsp.bsp_mask(_rand((64, 64), 5), 4, 4, pc, pr)
    rate = bsp.compression_rate(mask.size, int(mask.sum()))
    assert 7.0 <= rate <= 10.0


# ----------------------------------------------------------------------------- random matrices


@pytest.mark.parametrize("case", CASES)
def test_random_bsp_matrix(case) -> None:
    rows, cols, num_r, num_c, pc, pr = case
    w = bsp.random_bsp_matrix(np.random.default_rng(7), rows, cols, num_r, num_c, pc, pr, 0.5)
    assert w.dtype == np.float32
    assert w.shape == (rows, cols)
    assert bsp.is_bsp_structured(w != 0, num_r, num_c)
    # Every kept entry is nonzero, so projecting again changes nothing.
    assert np.array_equal(bsp.bsp_project(w, num_r, num_c, pc, pr)[0], w)
    w2 = bsp.random_bsp_matrix(np.random.default_rng(7), rows, cols, num_r, num_c, pc, pr, 0.5)
    assert np.array_equal(w, w2)


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"rng": np.random.RandomState(0)}, TypeError, r"rng must be a numpy.random.Generator"),
        ({"scale": 0.0}, ValueError, r"scale must be in \(0, 1e30\]"),
        ({"scale": 1e-50}, ValueError, r"nonzero in float32"),
        ({"scale": math.inf}, ValueError, r"scale must be finite"),
        ({"rows": 0}, ValueError, r"rows must be >= 1"),
        ({"num_c": 9}, ValueError, r"num_c must be in \[1, cols=8\], got 9"),
    ],
)
def test_random_bsp_matrix_errors(kw, exc, match) -> None:
    args = {
        "rng": np.random.default_rng(0),
        "rows": 8,
        "cols": 8,
        "num_r": 2,
        "num_c": 2,
        "col_sparsity": 0.5,
        "row_sparsity": 0.5,
        "scale": 1.0,
        **kw,
    }
    with pytest.raises(exc, match=match):
        bsp.random_bsp_matrix(**args)


@pytest.mark.parametrize(("rows", "cols", "num_r", "num_c", "col_sparsity", "_rs"), CASES)
def test_kept_by_row_keep_is_the_mask_size_for_every_keep_count(
    rows, cols, num_r, num_c, col_sparsity, _rs
) -> None:
    w = np.random.default_rng(rows * cols).standard_normal((rows, cols)).astype(np.float32)
    kept = bsp.kept_by_row_keep(w, num_r, num_c, col_sparsity)
    assert kept.shape == (rows + 1,) and kept[0] == 0
    for k in range(1, rows + 1):
        m = bsp.bsp_mask(w, num_r, num_c, col_sparsity, 1.0 - k / rows)
        assert int(m.sum()) == int(kept[k]), f"keep {k} rows"


def test_row_sparsity_for_rate_picks_the_nearest_keep_count() -> None:
    w = np.random.default_rng(3).standard_normal((96, 64)).astype(np.float32)
    kept = bsp.kept_by_row_keep(w, 8, 4, 0.75)
    for rate in (4.0, 5.0, 7.5, 12.0, 40.0):
        rs = bsp.row_sparsity_for_rate(w, 8, 4, 0.75, rate)
        k = bsp.keep_count(96, rs)
        best = min(range(1, 97), key=lambda j: (abs(kept[j] - w.size / rate), -j))
        assert k == best, rate
    assert bsp.row_sparsity_for_rate(w, 8, 4, 0.75, 1.0) == 0.0, "rate below the column rate"
    with pytest.raises(ValueError, match="rate must be >= 1"):
        bsp.row_sparsity_for_rate(w, 8, 4, 0.75, 0.5)
