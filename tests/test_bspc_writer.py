"""Tests of the BSPC writer (rtmobile_train.bspc) against a test-local reference decoder.

The decoder below is written from docs/bspc.md with its own literal constants; it checks every
layout rule of the spec while it reconstructs dense matrices in the original row order.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtmobile_train import bsp, bspc
from rtmobile_train.bspc import LayerWeights

pytestmark = pytest.mark.filterwarnings("error")

# ----------------------------------------------------------------------------- reference decoder


@dataclass
class DecodedMatrix:
    rows: int
    cols: int
    num_r: int
    num_c: int
    dtype: int
    strip_ptr: np.ndarray
    col_block_ptr: np.ndarray
    row_perm: np.ndarray
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (row_idx, col_idx, values R x C)
    dense: np.ndarray  # original row order, float64
    array_offsets: list[int]


@dataclass
class Decoded:
    header: dict[str, int]
    entries: list[tuple[int, int, int, int]]
    model: dict[str, Any]
    labels: list[str]
    norm: tuple[np.ndarray, np.ndarray, float] | None
    matrices: dict[int, DecodedMatrix] = field(default_factory=dict)
    vectors: dict[int, np.ndarray] = field(default_factory=dict)


def _u32(buf: bytes, off: int, n: int) -> np.ndarray:
    assert off + 4 * n <= len(buf)
    return np.frombuffer(buf, dtype="<u4", count=n, offset=off).astype(np.int64)


def _decode_matrix(sec: bytes) -> DecodedMatrix:
    assert len(sec) >= 64
    rows, cols, num_r, num_c, dt, res0 = struct.unpack_from("<6I", sec, 0)
    value_count, col_count, row_count = struct.unpack_from("<3Q", sec, 24)
    assert res0 == 0 and sec[48:64] == bytes(16)
    assert rows >= 1 and cols >= 1 and 1 <= num_r <= rows and 1 <= num_c <= cols
    assert dt in (1, 2)
    nb = num_r * num_c
    pos = 64
    offsets = []

    def take(n: int, dtype: str) -> np.ndarray:
        nonlocal pos
        start = (pos + 63) // 64 * 64
        assert sec[pos:start] == bytes(start - pos), "padding bytes must be zero"
        offsets.append(start)
        item = np.dtype(dtype).itemsize
        assert start + n * item <= len(sec)
        a = np.frombuffer(sec, dtype=dtype, count=n, offset=start)
        pos = start + n * item
        return a

    strip_ptr = take(num_r + 1, "<u4").astype(np.int64)
    col_block_ptr = take(num_c + 1, "<u4").astype(np.int64)
    row_perm = take(rows, "<u4").astype(np.int64)
    block_col_ptr = take(nb + 1, "<u4").astype(np.int64)
    col_idx = take(col_count, "<u4").astype(np.int64)
    block_row_ptr = take(nb + 1, "<u4").astype(np.int64)
    row_idx = take(row_count, "<u4").astype(np.int64)
    values = take(value_count, "<f4" if dt == 1 else "<f2").astype(np.float64)
    assert pos == len(sec), "section size must be exactly the end of values"

    assert strip_ptr[0] == 0 and strip_ptr[-1] == rows and np.all(np.diff(strip_ptr) >= 0)
    assert col_block_ptr[0] == 0 and col_block_ptr[-1] == cols
    assert np.all(np.diff(col_block_ptr) >= 0)
    assert sorted(row_perm.tolist()) == list(range(rows))
    for i in range(num_r):
        part = row_perm[strip_ptr[i] : strip_ptr[i + 1]]
        assert np.all((part >= strip_ptr[i]) & (part < strip_ptr[i + 1])), "rows stay in strip"
    for ptr, total in ((block_col_ptr, col_count), (block_row_ptr, row_count)):
        assert ptr[0] == 0 and ptr[-1] == total and np.all(np.diff(ptr) >= 0)
    assert np.all(np.isfinite(values))

    dense = np.zeros((rows, cols))
    blocks = []
    vpos = 0
    for b in range(nb):
        i, j = divmod(b, num_c)
        cb = col_idx[block_col_ptr[b] : block_col_ptr[b + 1]]
        rb = row_idx[block_row_ptr[b] : block_row_ptr[b + 1]]
        assert np.all(np.diff(cb) > 0) and np.all(np.diff(rb) > 0), "strictly increasing"
        assert np.all((cb >= col_block_ptr[j]) & (cb < col_block_ptr[j + 1]))
        assert np.all((rb >= 0) & (rb < strip_ptr[i + 1] - strip_ptr[i]))
        n = len(rb) * len(cb)
        vals = values[vpos : vpos + n].reshape(len(cb), len(rb)).T  # column-major R x C
        vpos += n
        orig_rows = row_perm[strip_ptr[i] + rb]
        dense[np.ix_(orig_rows, cb)] = vals
        blocks.append((rb, cb, vals))
    assert vpos == value_count
    return DecodedMatrix(
        rows, cols, num_r, num_c, dt, strip_ptr, col_block_ptr, row_perm, blocks, dense, offsets
    )


def decode(data: bytes) -> Decoded:
    """Decode a whole BSPC file, asserting every rule of docs/bspc.md on the way."""
    assert len(data) >= 64
    magic, vmaj, vmin, hsize, fsize, doff, count, crc = struct.unpack_from("<8sHHIQQII", data, 0)
    assert magic == b"BSPC\r\n\x1a\n"
    assert (vmaj, vmin, hsize, doff) == (1, 0, 64, 64)
    assert fsize == len(data)
    assert 1 <= count <= 4096
    assert data[40:64] == bytes(24)
    assert crc == zlib.crc32(data[64:])
    dir_end = 64 + 32 * count
    entries = []
    for k in range(count):
        t, idx, off, size, res = struct.unpack_from("<IIQQQ", data, 64 + 32 * k)
        assert res == 0
        assert off % 64 == 0 and off >= dir_end and off + size <= fsize
        entries.append((t, idx, off, size))
    assert len({(t, i) for t, i, _, _ in entries}) == count, "(type, index) unique"
    by_off = sorted(entries, key=lambda e: e[2])
    assert by_off == entries, "sections in ascending offset order"
    end = dir_end
    for _, _, off, size in by_off:
        assert off >= end, "sections must not overlap"
        assert data[end:off] == bytes(off - end), "padding between sections is zero"
        end = off + size
    assert end == fsize

    secs = {(t, i): data[off : off + size] for t, i, off, size in entries}
    assert {t for t, _, _, _ in entries} <= {1, 2, 3, 4, 5}

    m = secs[(1, 0)]
    kind, layers, in_dim, out_dim, gate_order, act, flags, res = struct.unpack_from("<8I", m, 0)
    assert len(m) == 32 + 4 * layers and res == 0 and act == 1 and flags in (0, 1)
    assert (kind, gate_order) in ((1, 1), (2, 2))
    hidden = _u32(m, 32, layers).tolist()
    model = {
        "kind": kind,
        "num_layers": layers,
        "input_dim": in_dim,
        "output_dim": out_dim,
        "gate_order": gate_order,
        "flags": flags,
        "hidden": hidden,
    }

    lab = secs[(2, 0)]
    (n,) = struct.unpack_from("<I", lab, 0)
    assert n == out_dim
    offs = _u32(lab, 4, n + 1)
    assert offs[0] == 0 and np.all(np.diff(offs) >= 0)
    blob = lab[4 + 4 * (n + 1) :]
    assert len(blob) == offs[-1]
    labels = [blob[offs[k] : offs[k + 1]].decode("utf-8") for k in range(n)]

    norm = None
    assert ((3, 0) in secs) == bool(flags & 1)
    if flags & 1:
        ns = secs[(3, 0)]
        dim, eps = struct.unpack_from("<If", ns, 0)
        assert dim == in_dim and len(ns) == 8 + 8 * dim and eps > 0
        mean = np.frombuffer(ns, "<f4", dim, 8)
        var = np.frombuffer(ns, "<f4", dim, 8 + 4 * dim)
        assert np.all(var >= 0)
        norm = (mean, var, eps)

    gates = 3 if kind == 1 else 4
    dec = Decoded(
        {"file_size": fsize, "section_count": count, "checksum": crc},
        entries,
        model,
        labels,
        norm,
    )
    ins = [in_dim, *hidden[:-1]]
    shapes = {}
    for li, h in enumerate(hidden):
        shapes[2 * li] = (gates * h, ins[li])
        shapes[2 * li + 1] = (gates * h, h)
    shapes[2 * layers] = (out_dim, hidden[-1])
    assert {i for t, i in secs if t == 4} == set(shapes)
    assert {i for t, i in secs if t == 5} == set(shapes)
    for mid, shape in shapes.items():
        mat = _decode_matrix(secs[(4, mid)])
        assert (mat.rows, mat.cols) == shape
        dec.matrices[mid] = mat
        v = secs[(5, mid)]
        length, vdt, vres = struct.unpack_from("<IIQ", v, 0)
        assert vdt == 1 and vres == 0 and len(v) == 16 + 4 * length
        assert length == shape[0]
        dec.vectors[mid] = np.frombuffer(v, "<f4", length, 16)
    return dec


# ----------------------------------------------------------------------------- model fixtures


def make_model(
    seed: int = 0,
    kind: str = "gru",
    input_dim: int = 6,
    hidden: tuple[int, ...] = (8, 5),
    output_dim: int = 4,
    num_r: int = 1,
    num_c: int = 1,
    pc: float = 0.0,
    pr: float = 0.0,
) -> tuple[list[LayerWeights], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = 3 if kind == "gru" else 4

    def mat(r: int, c: int) -> np.ndarray:
        return bsp.random_bsp_matrix(rng, r, c, min(num_r, r), min(num_c, c), pc, pr, 0.3)

    layers = []
    prev = input_dim
    for h in hidden:
        layers.append(
            LayerWeights(
                mat(g * h, prev),
                mat(g * h, h),
                rng.standard_normal(g * h).astype(np.float32),
                rng.standard_normal(g * h).astype(np.float32),
            )
        )
        prev = h
    ow = mat(output_dim, prev)
    ob = rng.standard_normal(output_dim).astype(np.float32)
    return layers, ow, ob


def all_weights(layers, ow) -> list[np.ndarray]:
    out = []
    for lw in layers:
        out += [lw.w_ih, lw.w_hh]
    return [*out, ow]


def all_biases(layers, ob) -> list[np.ndarray]:
    out = []
    for lw in layers:
        out += [lw.b_ih, lw.b_hh]
    return [*out, ob]


# ----------------------------------------------------------------------------- round trips

ROUND_TRIP_CASES = [
    # kind, hidden, num_r, num_c, pc, pr, dtype
    ("gru", (8, 5), 1, 1, 0.0, 0.0, "f32"),
    ("gru", (8, 5), 4, 2, 0.5, 0.3, "f32"),
    ("gru", (16,), 8, 3, 0.75, 0.5, "f16"),
    ("lstm", (6, 7, 3), 3, 2, 0.4, 0.2, "f32"),
    ("lstm", (10,), 5, 5, 0.9, 0.9, "f16"),
    ("gru", (4,), 1000, 1000, 0.3, 0.3, "f32"),  # clipped to one block per element
]


@pytest.mark.parametrize("case", ROUND_TRIP_CASES)
@pytest.mark.parametrize("reorder", [True, False])
def test_round_trip(case, reorder: bool) -> None:
    kind, hidden, num_r, num_c, pc, pr, dtype = case
    layers, ow, ob = make_model(3, kind, 6, hidden, 4, num_r, num_c, pc, pr)
    names = bspc.matrix_names(len(hidden))
    weights = all_weights(layers, ow)
    blocks = {
        n: (min(num_r, w.shape[0]), min(num_c, w.shape[1]))
        for n, w in zip(names, weights, strict=True)
    }
    data, stats = bspc.encode_bspc_with_stats(
        layers, ow, ob, kind=kind, blocks=blocks, dtype=dtype, reorder=reorder
    )
    dec = decode(data)
    assert dec.model["kind"] == (1 if kind == "gru" else 2)
    assert dec.model["gate_order"] == (1 if kind == "gru" else 2)
    assert dec.model["hidden"] == list(hidden)
    assert dec.model["input_dim"] == 6 and dec.model["output_dim"] == 4
    assert dec.model["flags"] == 0 and dec.norm is None
    assert dec.labels == ["0", "1", "2", "3"]
    for mid, w in enumerate(weights):
        mat = dec.matrices[mid]
        assert (mat.num_r, mat.num_c) == blocks[names[mid]]
        assert mat.dtype == (1 if dtype == "f32" else 2)
        assert mat.strip_ptr.tolist() == bsp.strip_bounds(w.shape[0], mat.num_r).tolist()
        assert mat.col_block_ptr.tolist() == bsp.block_bounds(w.shape[1], mat.num_c).tolist()
        if dtype == "f32":
            assert np.array_equal(mat.dense, w.astype(np.float64))
        else:
            assert np.array_equal(mat.dense, w.astype(np.float16).astype(np.float64))
            np.testing.assert_allclose(mat.dense, w, rtol=2.0**-11, atol=2.0**-24)
        if not reorder:
            assert mat.row_perm.tolist() == list(range(w.shape[0]))
        st = stats["matrices"][names[mid]]
        assert st["id"] == mid
        assert (st["rows"], st["cols"]) == w.shape
        assert st["dense"] == w.size
        assert st["stored"] == sum(len(r) * len(c) for r, c, _ in mat.blocks)
        assert st["nonzero"] == np.count_nonzero(w)
        assert st["stored"] == st["nonzero"], "random BSP matrices store exactly their support"
    for vid, b in enumerate(all_biases(layers, ob)):
        assert np.array_equal(dec.vectors[vid], b)
    assert stats["dense_weights"] == sum(w.size for w in weights)
    assert stats["stored_weights"] == sum(s["stored"] for s in stats["matrices"].values())
    assert stats["bias_params"] == sum(b.size for b in all_biases(layers, ob))
    assert stats["file_size"] == len(data)
    assert stats["compression_rate"] == bsp.compression_rate(
        stats["dense_weights"], stats["stored_weights"]
    )
    assert (
        bspc.encode_bspc(layers, ow, ob, kind=kind, blocks=blocks, dtype=dtype, reorder=reorder)
        == data
    ), "encoding is deterministic and encode_bspc returns the same bytes"


@pytest.mark.parametrize("seed", range(4))
def test_round_trip_unstructured_support(seed: int) -> None:
    """Any support is representable: blocks store R_b x C_b densely, zeros included."""
    rng = np.random.default_rng(seed)
    layers, ow, ob = make_model(seed)
    layers = [
        replace(lw, w_ih=lw.w_ih * (rng.random(lw.w_ih.shape) < 0.3).astype(np.float32))
        for lw in layers
    ]
    data = bspc.encode_bspc(layers, ow, ob, blocks=(3, 2))
    dec = decode(data)
    for mid, w in enumerate(all_weights(layers, ow)):
        assert np.array_equal(dec.matrices[mid].dense, w)
        mat = dec.matrices[mid]
        sb, cb = mat.strip_ptr, mat.col_block_ptr
        for b, (rb, c_b, _) in enumerate(mat.blocks):
            i, j = divmod(b, mat.num_c)
            orig = mat.row_perm[sb[i] : sb[i + 1]]
            sup = w[orig][:, cb[j] : cb[j + 1]] != 0  # stored order
            assert rb.tolist() == np.flatnonzero(sup.any(axis=1)).tolist()
            assert (c_b - cb[j]).tolist() == np.flatnonzero(sup.any(axis=0)).tolist()


def test_dense_matrix_stores_everything() -> None:
    layers, ow, ob = make_model(1)
    layers[0].w_ih[2, 3] = 0.0  # a zero inside a dense matrix is still covered by R x C
    data, stats = bspc.encode_bspc_with_stats(layers, ow, ob)
    dec = decode(data)
    for mid, w in enumerate(all_weights(layers, ow)):
        mat = dec.matrices[mid]
        assert len(mat.blocks) == 1
        rb, cb, _ = mat.blocks[0]
        assert rb.tolist() == list(range(w.shape[0]))
        assert cb.tolist() == list(range(w.shape[1]))
        assert mat.row_perm.tolist() == list(range(w.shape[0]))
    assert stats["stored_weights"] == stats["dense_weights"]
    assert stats["compression_rate"] == 1.0


def test_fully_pruned_matrix() -> None:
    layers, ow, ob = make_model(2)
    layers[1] = replace(layers[1], w_hh=np.zeros_like(layers[1].w_hh))
    data, stats = bspc.encode_bspc_with_stats(layers, ow, ob, blocks={"l1.w_hh": (3, 5)})
    mat = decode(data).matrices[3]
    assert stats["matrices"]["l1.w_hh"]["stored"] == 0
    assert all(len(r) == 0 and len(c) == 0 for r, c, _ in mat.blocks)
    assert not mat.dense.any()
    assert stats["matrices"]["l0.w_ih"]["num_r"] == 1, "names absent from blocks get (1, 1)"


def test_all_zero_model_has_infinite_rate() -> None:
    layers, ow, ob = make_model(2, hidden=(3,))
    layers = [replace(lw, w_ih=lw.w_ih * 0, w_hh=lw.w_hh * 0) for lw in layers]
    _, stats = bspc.encode_bspc_with_stats(layers, ow * 0, ob)
    assert stats["stored_weights"] == 0 and math.isinf(stats["compression_rate"])


def test_hand_made_layout() -> None:
    """A 5 x 4 output matrix with known permutation, indices and column-major values."""
    w = np.zeros((5, 4), dtype=np.float32)
    w[0, 0] = 1  # pattern {0}, work 2
    w[1, 2] = 2  # pattern {1}, work 2
    w[2, 1] = 3  # pattern {0}, work 2
    w[3, 0], w[3, 3] = 4, 5  # pattern {0, 1}, work 4
    # row 4 is empty: work 0
    layers = [LayerWeights(np.ones((3, 2)), np.ones((3, 1)), np.zeros(3), np.zeros(3))]
    w_out = np.zeros((5, 1), dtype=np.float32)
    dec = decode(bspc.encode_bspc(layers, w_out, np.zeros(5), blocks={"out.w": (1, 1)}))
    assert dec.matrices[2].blocks[0][0].size == 0

    # Put w in as the 5 x 4 output layer of a model with hidden size 4.
    layers = [LayerWeights(np.ones((12, 2)), np.ones((12, 4)), np.zeros(12), np.zeros(12))]
    dec = decode(bspc.encode_bspc(layers, w, np.zeros(5), blocks={"out.w": (1, 2)}))
    mat = dec.matrices[2]
    assert mat.row_perm.tolist() == [3, 0, 2, 1, 4]
    (r0, c0, v0), (r1, c1, v1) = mat.blocks
    assert c0.tolist() == [0, 1] and r0.tolist() == [0, 1, 2]
    assert c1.tolist() == [2, 3] and r1.tolist() == [0, 3]
    assert v0.tolist() == [[4, 0], [1, 0], [0, 3]]
    assert v1.tolist() == [[0, 5], [2, 0]]
    sec = dict(((t, i), (o, s)) for t, i, o, s in dec.entries)
    off, _ = sec[(4, 2)]
    data = bspc.encode_bspc(layers, w, np.zeros(5), blocks={"out.w": (1, 2)})
    values_off = off + mat.array_offsets[-1]
    raw = np.frombuffer(data, "<f4", 10, values_off)
    assert raw.tolist() == [4, 1, 0, 0, 0, 3, 0, 2, 5, 0], "block order, column-major"

    # Two strips: strip 0 = rows 0-1, strip 1 = rows 2-4; row_idx are strip-local.
    dec = decode(bspc.encode_bspc(layers, w, np.zeros(5), blocks={"out.w": (2, 2)}))
    mat = dec.matrices[2]
    assert mat.row_perm.tolist() == [0, 1, 3, 2, 4]
    assert [b[0].tolist() for b in mat.blocks] == [[0], [1], [0, 1], [0]]
    assert [b[1].tolist() for b in mat.blocks] == [[0], [2], [0, 1], [3]]
    assert np.array_equal(mat.dense, w)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("num_r", "num_c"), [(1, 4), (2, 3), (6, 6)])
def test_reorder_properties(seed: int, num_r: int, num_c: int) -> None:
    rng = np.random.default_rng(seed)
    w = np.zeros((24, 12), dtype=np.float32)
    # Rows with a random subset of a few random column patterns, to create shared patterns.
    proto = (rng.random((4, 12)) < 0.4).astype(np.float32)
    pick = rng.integers(0, 5, size=24)
    for r in range(24):
        if pick[r] < 4:
            w[r] = proto[pick[r]] * rng.uniform(0.5, 1.5, 12)
    layers = [LayerWeights(np.ones((36, 3)), np.ones((36, 12)), np.zeros(36), np.zeros(36))]
    dec = decode(bspc.encode_bspc(layers, w, np.zeros(24), blocks={"out.w": (num_r, num_c)}))
    mat = dec.matrices[2]
    assert np.array_equal(mat.dense, w)
    for i in range(num_r):
        s0, s1 = mat.strip_ptr[i], mat.strip_ptr[i + 1]
        n = s1 - s0
        blocks = mat.blocks[i * num_c : (i + 1) * num_c]
        pattern = np.zeros((n, num_c), dtype=bool)
        for j, (rb, _, _) in enumerate(blocks):
            pattern[rb, j] = True
        work = pattern @ np.array([len(c) for _, c, _ in blocks])
        assert np.all(np.diff(work) <= 0), "most work first"
        keys = [tuple(p) for p in pattern]
        seen: list[tuple[bool, ...]] = []
        for k in keys:  # identical patterns are contiguous
            if not seen or seen[-1] != k:
                assert k not in seen
                seen.append(k)
        orig = mat.row_perm[s0:s1]
        firsts = []
        for k in seen:
            members = orig[[a == k for a in keys]]
            assert np.all(np.diff(members) > 0), "ties inside a pattern by original index"
            firsts.append((-int(work[keys.index(k)]), int(members[0])))
        assert firsts == sorted(firsts), "equal-work groups ordered by first original row"


# ----------------------------------------------------------------------------- metadata


def test_labels_norm_and_masks_round_trip() -> None:
    layers, ow, ob = make_model(4, input_dim=6, output_dim=4)
    labels = ["sil", "æ", "ʃ", "aa"]
    mean = np.linspace(-1, 1, 6)
    var = np.linspace(0, 2, 6)
    mask = np.ones(layers[0].w_hh.shape, dtype=bool)
    mask[:, 2] = False
    w_hh = layers[0].w_hh.copy()
    w_hh[:, 2] = 0
    w_hh[0, 0] = 0  # zero inside the mask: stored as an explicit zero
    layers[0] = replace(layers[0], w_hh=w_hh)
    data, stats = bspc.encode_bspc_with_stats(
        layers,
        ow,
        ob,
        labels=labels,
        norm=(mean, var, 1e-5),
        masks={"l0.w_hh": mask},
        blocks={"l0.w_hh": (2, 2)},
    )
    dec = decode(data)
    assert dec.labels == labels
    assert dec.model["flags"] == 1
    assert dec.norm is not None
    assert np.array_equal(dec.norm[0], mean.astype(np.float32))
    assert np.array_equal(dec.norm[1], var.astype(np.float32))
    assert dec.norm[2] == np.float32(1e-5)
    mat = dec.matrices[1]
    assert np.array_equal(mat.dense, w_hh)
    st = stats["matrices"]["l0.w_hh"]
    assert st["stored"] == mask.sum()
    assert st["nonzero"] == mask.sum(), "nonzero counts the support (the mask)"
    assert all(2 not in c.tolist() for _, c, _ in mat.blocks)


def test_alignment_and_checksum() -> None:
    layers, ow, ob = make_model(5, hidden=(7, 9), num_r=3, num_c=2, pc=0.5, pr=0.3)
    data = bspc.encode_bspc(
        layers, ow, ob, blocks=(3, 2), norm=(np.zeros(6), np.ones(6), 1e-3), dtype="f16"
    )
    dec = decode(data)
    assert all(off % 64 == 0 for _, _, off, _ in dec.entries)
    for mat in dec.matrices.values():
        assert mat.array_offsets[0] == 64
        assert all(o % 64 == 0 for o in mat.array_offsets)
    (crc,) = struct.unpack_from("<I", data, 36)
    assert crc == zlib.crc32(data[64:])
    assert bspc.recompute_checksum(data) == data

    hdr = bspc.read_header(data)
    assert hdr.magic == bspc.MAGIC
    assert (hdr.version_major, hdr.version_minor) == (bspc.VERSION_MAJOR, bspc.VERSION_MINOR)
    assert hdr.file_size == len(data) and hdr.checksum == crc
    assert hdr.section_count == len(dec.entries)
    assert [tuple(e) for e in bspc.read_directory(data)] == dec.entries
    types = [e.type for e in bspc.read_directory(data)]
    assert types.count(bspc.SECTION_MODEL) == 1 and types.count(bspc.SECTION_NORM) == 1
    assert types.count(bspc.SECTION_MATRIX) == types.count(bspc.SECTION_VECTOR) == 5

    # Crafting a malformed file: flip a value byte, then fix the checksum.
    ent = next(e for e in bspc.read_directory(data) if e.type == bspc.SECTION_MATRIX)
    bad = bytearray(data)
    bad[ent.offset + 4] ^= 0xFF  # cols field of MATRIX[0]
    fixed = bspc.recompute_checksum(bytes(bad))
    assert fixed[:36] == bytes(bad[:36]) and fixed[40:] == bytes(bad[40:])
    assert struct.unpack_from("<I", fixed, 36)[0] == zlib.crc32(fixed[64:]) != crc


def test_spec_constants() -> None:
    magic = bytes([0x42, 0x53, 0x50, 0x43, 0x0D, 0x0A, 0x1A, 0x0A])
    assert magic == bspc.MAGIC
    assert (bspc.VERSION_MAJOR, bspc.VERSION_MINOR) == (1, 0)
    sections = (
        bspc.SECTION_MODEL,
        bspc.SECTION_LABELS,
        bspc.SECTION_NORM,
        bspc.SECTION_MATRIX,
        bspc.SECTION_VECTOR,
    )
    assert sections == (1, 2, 3, 4, 5)
    assert (bspc.DTYPE_F32, bspc.DTYPE_F16) == (1, 2)
    assert bspc.matrix_names(2) == ["l0.w_ih", "l0.w_hh", "l1.w_ih", "l1.w_hh", "out.w"]


@pytest.mark.parametrize("data", [b"", b"BSPC\r\n\x1a\n" + bytes(40)])
def test_helpers_reject_short_data(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"shorter than the 64-byte header"):
        bspc.read_directory(data)
    with pytest.raises(ValueError, match=r"shorter than the 64-byte header"):
        bspc.recompute_checksum(data)


def test_read_directory_rejects_truncated_directory() -> None:
    layers, ow, ob = make_model(0)
    data = bspc.encode_bspc(layers, ow, ob)
    with pytest.raises(ValueError, match=r"directory of \d+ entries ends at \d+, past the data"):
        bspc.read_directory(data[:100])


def test_write_bspc_atomic(tmp_path: Path) -> None:
    layers, ow, ob = make_model(6)
    target = tmp_path / "model.bspc"
    target.write_bytes(b"old")
    bspc.write_bspc(target, layers, ow, ob, labels=["a", "b", "c", "d"], dtype="f16")
    assert target.read_bytes() == bspc.encode_bspc(
        layers, ow, ob, labels=["a", "b", "c", "d"], dtype="f16"
    )
    assert os.listdir(tmp_path) == ["model.bspc"], "no temporary file left behind"
    with pytest.raises(ValueError, match=r"labels: got 1 labels, output_dim is 4"):
        bspc.write_bspc(str(target), layers, ow, ob, labels=["x"])
    assert decode(target.read_bytes()).labels == ["a", "b", "c", "d"], "old file kept on error"
    assert os.listdir(tmp_path) == ["model.bspc"]


def test_f16_limit_is_inclusive() -> None:
    layers, ow, ob = make_model(7, hidden=(3,))
    ow = ow.copy()
    ow[0, 0] = -65504.0
    dec = decode(bspc.encode_bspc(layers, ow, ob, dtype="f16"))
    assert dec.matrices[2].dense[0, 0] == -65504.0


def test_integer_and_float64_inputs() -> None:
    layers, ow, ob = make_model(8, hidden=(3,))
    ow64 = ow.astype(np.float64) + 1e-12  # not representable in f32: rounded on write
    dec = decode(bspc.encode_bspc(layers, ow64, ob.astype(np.int64)))
    assert np.array_equal(dec.matrices[2].dense, ow64.astype(np.float32))
    assert np.array_equal(dec.vectors[2], ob.astype(np.int64).astype(np.float32))


# ----------------------------------------------------------------------------- bad input


def _base() -> dict[str, Any]:
    layers, ow, ob = make_model(9, input_dim=6, hidden=(8, 5), output_dim=4)
    return {"layers": layers, "out_weight": ow, "out_bias": ob}


def _set_layer(args: dict[str, Any], li: int, **kw: Any) -> dict[str, Any]:
    layers = list(args["layers"])
    layers[li] = replace(layers[li], **kw)
    return {**args, "layers": layers}


def _poke(a: np.ndarray, idx: tuple[int, ...], value: float) -> np.ndarray:
    a = a.astype(np.float64)
    a[idx] = value
    return a


BAD_INPUTS = [
    # (id, mutate(args) -> args, exception, message regex)
    (
        "kind",
        lambda a: {**a, "kind": "rnn"},
        ValueError,
        r"kind must be 'gru' or 'lstm', got 'rnn'",
    ),
    ("dtype", lambda a: {**a, "dtype": "f64"}, ValueError, r"dtype must be 'f32' or 'f16'"),
    ("reorder", lambda a: {**a, "reorder": 1}, TypeError, r"reorder must be a bool, got int"),
    ("no-layers", lambda a: {**a, "layers": []}, ValueError, r"number of layers must be in"),
    (
        "too-many-layers",
        lambda a: {
            **a,
            "layers": [LayerWeights(np.ones((3, 1)), np.ones((3, 1)), np.ones(3), np.ones(3))] * 65,
            "out_weight": np.ones((4, 1)),
        },
        ValueError,
        r"number of layers must be in \[1, 64\], got 65",
    ),
    ("layers-str", lambda a: {**a, "layers": "gru"}, TypeError, r"layers must be a sequence"),
    (
        "layer-type",
        lambda a: {**a, "layers": [tuple(vars(a["layers"][0]).values())]},
        TypeError,
        r"layers\[0\] must be a LayerWeights, got tuple",
    ),
    (
        "w_hh-shape",
        lambda a: _set_layer(a, 0, w_hh=np.ones((24, 7))),
        ValueError,
        r"l0.w_hh: expected shape \(21, 7\) \(3\*H x H for gru, H=7\), got \(24, 7\)",
    ),
    (
        "w_ih-rows",
        lambda a: _set_layer(a, 0, w_ih=np.ones((21, 6))),
        ValueError,
        r"l0.w_ih: expected shape \(24, 6\)",
    ),
    (
        "w_ih-cols-layer1",
        lambda a: _set_layer(a, 1, w_ih=np.ones((15, 7))),
        ValueError,
        r"l1.w_ih: expected shape \(15, 8\) \(3\*H x H_prev for gru, H=5, H_prev=8\)",
    ),
    ("w_ih-1d", lambda a: _set_layer(a, 0, w_ih=np.ones(24)), ValueError, r"l0.w_ih must be 2-D"),
    (
        "b_ih-len",
        lambda a: _set_layer(a, 0, b_ih=np.ones(23)),
        ValueError,
        r"l0.b_ih: expected shape \(24,\) \(3\*H for gru, H=8\), got \(23,\)",
    ),
    (
        "b_hh-2d",
        lambda a: _set_layer(a, 1, b_hh=np.ones((15, 1))),
        ValueError,
        r"l1.b_hh must be 1-D",
    ),
    (
        "lstm-shapes",
        lambda a: {**a, "kind": "lstm"},
        ValueError,
        r"l0.w_hh: expected shape \(32, 8\)",
    ),
    (
        "hidden-zero",
        lambda a: _set_layer(a, 0, w_hh=np.ones((0, 0))),
        ValueError,
        r"l0.w_hh: hidden size H .* must be in \[1, 2\^24\], got 0",
    ),
    (
        "out-cols",
        lambda a: {**a, "out_weight": np.ones((4, 8))},
        ValueError,
        r"out.w: expected shape \(4, 5\) \(output_dim x H_last, H_last=5\), got \(4, 8\)",
    ),
    (
        "out-bias",
        lambda a: {**a, "out_bias": np.ones(5)},
        ValueError,
        r"out.b: expected shape \(4,\) \(output_dim\), got \(5,\)",
    ),
    (
        "nan-weight",
        lambda a: _set_layer(a, 1, w_hh=_poke(a["layers"][1].w_hh, (2, 3), np.nan)),
        ValueError,
        r"l1.w_hh: non-finite value nan at \(2, 3\)",
    ),
    (
        "inf-bias",
        lambda a: {**a, "out_bias": _poke(a["out_bias"], (1,), -np.inf)},
        ValueError,
        r"out.b: non-finite value -inf at \(1,\)",
    ),
    (
        "str-weight",
        lambda a: {**a, "out_weight": np.full((4, 5), "x")},
        TypeError,
        r"out.w must have a real numeric dtype",
    ),
    (
        "complex-weight",
        lambda a: {**a, "out_weight": np.ones((4, 5), dtype=complex)},
        TypeError,
        r"out.w must have a real numeric dtype",
    ),
    (
        "f16-overflow",
        lambda a: {**a, "dtype": "f16", "out_weight": _poke(a["out_weight"], (0, 1), 70000.0)},
        ValueError,
        r"out.w: value 70000.0 at \(0, 1\) is outside the f16 range \(\|x\| <= 65504\)",
    ),
    (
        "f32-overflow",
        lambda a: {**a, "out_weight": _poke(a["out_weight"], (3, 4), -1e39)},
        ValueError,
        r"out.w: value -1e\+39 at \(3, 4\) is outside the f32 range",
    ),
    (
        "f32-overflow-bias",
        lambda a: _set_layer(a, 0, b_ih=_poke(a["layers"][0].b_ih, (0,), 1e300)),
        ValueError,
        r"l0.b_ih: value 1e\+300 at \(0,\) is outside the f32 range",
    ),
    (
        "labels-count",
        lambda a: {**a, "labels": ["a", "b"]},
        ValueError,
        r"labels: got 2 labels, output_dim is 4",
    ),
    (
        "labels-empty",
        lambda a: {**a, "labels": ["a", "", "c", "d"]},
        ValueError,
        r"labels\[1\] is empty",
    ),
    (
        "labels-dup",
        lambda a: {**a, "labels": ["a", "b", "c", "a"]},
        ValueError,
        r"labels\[3\] 'a' duplicates labels\[0\]",
    ),
    (
        "labels-type",
        lambda a: {**a, "labels": ["a", "b", 3, "d"]},
        TypeError,
        r"labels\[2\] must be a str, got int",
    ),
    ("labels-str", lambda a: {**a, "labels": "abcd"}, TypeError, r"labels must be a sequence"),
    (
        "labels-utf8",
        lambda a: {**a, "labels": ["a", "b", "\ud800", "d"]},
        ValueError,
        r"labels\[2\] .* is not encodable as UTF-8",
    ),
    (
        "norm-tuple",
        lambda a: {**a, "norm": (np.zeros(6), np.ones(6))},
        TypeError,
        r"norm must be a \(mean, var, eps\) tuple",
    ),
    (
        "norm-mean-len",
        lambda a: {**a, "norm": (np.zeros(5), np.ones(6), 1e-5)},
        ValueError,
        r"norm.mean: length 5 != input_dim 6",
    ),
    (
        "norm-var-2d",
        lambda a: {**a, "norm": (np.zeros(6), np.ones((6, 1)), 1e-5)},
        ValueError,
        r"norm.var must be 1-D",
    ),
    (
        "norm-var-neg",
        lambda a: {**a, "norm": (np.zeros(6), _poke(np.ones(6), (4,), -0.5), 1e-5)},
        ValueError,
        r"norm.var\[4\] = -0.5 is negative",
    ),
    (
        "norm-mean-nan",
        lambda a: {**a, "norm": (_poke(np.zeros(6), (2,), np.nan), np.ones(6), 1e-5)},
        ValueError,
        r"norm.mean: non-finite value nan at \(2,\)",
    ),
    *[
        (
            f"norm-eps-{eps}",
            (lambda e: lambda a: {**a, "norm": (np.zeros(6), np.ones(6), e)})(eps),
            ValueError,
            r"norm eps must be finite and > 0",
        )
        for eps in (0.0, -1e-5, math.nan, math.inf, 1e-50)
    ],
    (
        "norm-eps-type",
        lambda a: {**a, "norm": (np.zeros(6), np.ones(6), "1e-5")},
        TypeError,
        r"norm eps must be a real number, got str",
    ),
    (
        "blocks-zero",
        lambda a: {**a, "blocks": (0, 1)},
        ValueError,
        r"blocks for l0.w_ih \(24 x 6\): num_r must be in \[1, rows=24\], got 0",
    ),
    (
        "blocks-num_c",
        lambda a: {**a, "blocks": (1, 7)},
        ValueError,
        r"blocks for l0.w_ih \(24 x 6\): num_c must be in \[1, cols=6\], got 7",
    ),
    (
        "blocks-named",
        lambda a: {**a, "blocks": {"out.w": (5, 1)}},
        ValueError,
        r"blocks for out.w \(4 x 5\): num_r must be in \[1, rows=4\], got 5",
    ),
    (
        "blocks-unknown",
        lambda a: {**a, "blocks": {"l2.w_ih": (1, 1)}},
        ValueError,
        r"blocks: unknown matrix name\(s\) \['l2.w_ih'\]",
    ),
    ("blocks-triple", lambda a: {**a, "blocks": (1, 1, 1)}, TypeError, r"blocks must be a"),
    (
        "blocks-float",
        lambda a: {**a, "blocks": {"out.w": (1.0, 1)}},
        TypeError,
        r"blocks\['out.w'\] must hold two ints",
    ),
    (
        "masks-unknown",
        lambda a: {**a, "masks": {"w": np.ones((4, 5), dtype=bool)}},
        ValueError,
        r"masks: unknown matrix name\(s\) \['w'\]",
    ),
    (
        "masks-shape",
        lambda a: {**a, "masks": {"out.w": np.ones((5, 4), dtype=bool)}},
        ValueError,
        r"masks\['out.w'\]: shape \(5, 4\) != out.w shape \(4, 5\)",
    ),
    (
        "masks-dtype",
        lambda a: {**a, "masks": {"out.w": np.ones((4, 5))}},
        TypeError,
        r"masks\['out.w'\] must be a bool array, got dtype float64",
    ),
    (
        "masks-type",
        lambda a: {**a, "masks": [np.ones((4, 5), dtype=bool)]},
        TypeError,
        r"masks must be a mapping",
    ),
    (
        "masks-outside",
        lambda a: {**a, "masks": {"out.w": _poke(np.ones((4, 5)), (1, 2), 0) != 0}},
        ValueError,
        r"out.w: 1 nonzero weight\(s\) outside masks\['out.w'\], first at \(1, 2\)",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "exc", "match"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input(mutate, exc, match) -> None:
    args = mutate(_base())
    layers, ow, ob = args.pop("layers"), args.pop("out_weight"), args.pop("out_bias")
    with pytest.raises(exc, match=match):
        bspc.encode_bspc(layers, ow, ob, **args)


def test_base_is_valid() -> None:
    """The unmutated inputs of test_bad_input encode fine (so each failure is the mutation's)."""
    args = _base()
    decode(bspc.encode_bspc(args["layers"], args["out_weight"], args["out_bias"]))
    decode(
        bspc.encode_bspc(
            args["layers"],
            args["out_weight"],
            args["out_bias"],
            labels=["a", "b", "c", "d"],
            norm=(np.zeros(6), np.ones(6), 1e-5),
            masks={"out.w": np.ones((4, 5), dtype=bool)},
            blocks={"out.w": (4, 5)},
        )
    )
