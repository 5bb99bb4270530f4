"""Writer of the BSPC v1.0 model format (see ``docs/bspc.md``, the binding spec). numpy only.

This module is the one versioned writer of the format; the C++ runtime owns reading. The
small parsing helpers here (:func:`read_header`, :func:`read_directory`,
:func:`recompute_checksum`) exist so tests can craft malformed files.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import struct
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from .bsp import block_bounds, compression_rate, strip_bounds

__all__ = [
    "ACTIVATION_SIGMOID_TANH",
    "ALIGNMENT",
    "DIRECTORY_OFFSET",
    "DIR_ENTRY_SIZE",
    "DTYPE_F16",
    "DTYPE_F32",
    "F16_MAX",
    "GATE_ORDER_GRU_RZN",
    "GATE_ORDER_LSTM_IFGO",
    "HEADER_SIZE",
    "MAGIC",
    "MATRIX_HEADER_SIZE",
    "MAX_DIM",
    "MAX_LAYERS",
    "MAX_SECTIONS",
    "MODEL_FLAG_NORM",
    "MODEL_KIND_GRU",
    "MODEL_KIND_LSTM",
    "SECTION_LABELS",
    "SECTION_MATRIX",
    "SECTION_METADATA",
    "SECTION_MODEL",
    "SECTION_NORM",
    "SECTION_VECTOR",
    "VECTOR_HEADER_SIZE",
    "VERSION_MAJOR",
    "VERSION_MINOR",
    "FileHeader",
    "LayerWeights",
    "SectionEntry",
    "encode_bspc",
    "encode_bspc_with_stats",
    "matrix_names",
    "read_directory",
    "read_header",
    "recompute_checksum",
    "write_bspc",
]

MAGIC = b"BSPC\r\n\x1a\n"
VERSION_MAJOR = 1
VERSION_MINOR = 0

HEADER_SIZE = 64
DIRECTORY_OFFSET = 64
DIR_ENTRY_SIZE = 32
ALIGNMENT = 64
MAX_SECTIONS = 4096
MAX_LAYERS = 64
MAX_DIM = 1 << 24
MATRIX_HEADER_SIZE = 64
VECTOR_HEADER_SIZE = 16

SECTION_MODEL = 1
SECTION_LABELS = 2
SECTION_NORM = 3
SECTION_MATRIX = 4
SECTION_VECTOR = 5
SECTION_METADATA = 6

DTYPE_F32 = 1
DTYPE_F16 = 2

MODEL_KIND_GRU = 1
MODEL_KIND_LSTM = 2
GATE_ORDER_GRU_RZN = 1
GATE_ORDER_LSTM_IFGO = 2
ACTIVATION_SIGMOID_TANH = 1
MODEL_FLAG_NORM = 1

F16_MAX = 65504.0
_F32_MAX = float(np.finfo(np.float32).max)
_U32_MAX = (1 << 32) - 1

_FILE_HEADER = struct.Struct("<8sHHIQQII24x")
_DIR_ENTRY = struct.Struct("<IIQQQ")
_MODEL_HEADER = struct.Struct("<8I")
_MATRIX_HEADER = struct.Struct("<6I3Q16x")
_VECTOR_HEADER = struct.Struct("<IIQ")
assert _FILE_HEADER.size == HEADER_SIZE
assert _DIR_ENTRY.size == DIR_ENTRY_SIZE
assert _MATRIX_HEADER.size == MATRIX_HEADER_SIZE
assert _VECTOR_HEADER.size == VECTOR_HEADER_SIZE

_KINDS = {
    "gru": (MODEL_KIND_GRU, 3, GATE_ORDER_GRU_RZN),
    "lstm": (MODEL_KIND_LSTM, 4, GATE_ORDER_LSTM_IFGO),
}
_DTYPES = {
    "f32": (DTYPE_F32, np.dtype("<f4"), _F32_MAX),
    "f16": (DTYPE_F16, np.dtype("<f2"), F16_MAX),
}


@dataclass
class LayerWeights:
    """One recurrent layer in torch.nn.GRU / nn.LSTM layout (gates r,z,n or i,f,g,o).

    Shapes: ``w_ih`` ``G*H x in``, ``w_hh`` ``G*H x H``, ``b_ih`` and ``b_hh`` ``G*H``.
    """

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray


class FileHeader(NamedTuple):
    """The 64-byte file header, parsed without validation."""

    magic: bytes
    version_major: int
    version_minor: int
    header_size: int
    file_size: int
    directory_offset: int
    section_count: int
    checksum: int


class SectionEntry(NamedTuple):
    """One 32-byte directory entry (the reserved field is not kept)."""

    type: int
    index: int
    offset: int
    size: int


def matrix_names(num_layers: int) -> list[str]:
    """Matrix names in id order: ``l{l}.w_ih`` = 2l, ``l{l}.w_hh`` = 2l+1, ``out.w`` = 2L."""
    names = [f"l{layer}.{m}" for layer in range(num_layers) for m in ("w_ih", "w_hh")]
    return [*names, "out.w"]


def _bias_names(num_layers: int) -> list[str]:
    names = [f"l{layer}.{b}" for layer in range(num_layers) for b in ("b_ih", "b_hh")]
    return [*names, "out.b"]


# ----------------------------------------------------------------------------- validation


def _real_array(x: object, name: str, ndim: int) -> np.ndarray:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}")
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged nested lists and the like
        raise TypeError(f"{name} must be a numeric array: {e}") from e
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must have a real numeric dtype, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def _check_values(a: np.ndarray, name: str, limit: float, what: str) -> None:
    """Finite and ``|a| <= limit``, else ValueError naming the first bad entry."""
    x = a.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"{name}: non-finite value {float(x[idx])!r} at {idx}")
    big = np.abs(x) > limit
    if big.any():
        idx = tuple(int(v) for v in np.argwhere(big)[0])
        raise ValueError(
            f"{name}: value {float(x[idx])!r} at {idx} is outside the {what} range "
            f"(|x| <= {limit:g})"
        )


def _check_dim(name: str, value: int) -> None:
    if not 1 <= value <= MAX_DIM:
        raise ValueError(f"{name} must be in [1, 2^24], got {value}")


def _check_shape(a: np.ndarray, name: str, expected: tuple[int, ...], how: str) -> None:
    if a.shape != expected:
        raise ValueError(f"{name}: expected shape {expected} ({how}), got {a.shape}")


def _parse_blocks(
    blocks: object, names: Sequence[str], shapes: Mapping[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    def one(value: object, where: str) -> tuple[int, int]:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"{where} must be a (num_r, num_c) pair, got {value!r}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{where} must hold two ints, got {value!r}")
        return int(value[0]), int(value[1])

    if isinstance(blocks, Mapping):
        unknown = sorted(str(k) for k in blocks if k not in names)
        if unknown:
            raise ValueError(
                f"blocks: unknown matrix name(s) {unknown}; valid names: {list(names)}"
            )
        out = {n: one(blocks[n], f"blocks[{n!r}]") if n in blocks else (1, 1) for n in names}
    else:
        pair = one(blocks, "blocks")
        out = dict.fromkeys(names, pair)
    for n, (num_r, num_c) in out.items():
        rows, cols = shapes[n]
        try:
            strip_bounds(rows, num_r)
            block_bounds(cols, num_c)
        except ValueError as e:
            raise ValueError(f"blocks for {n} ({rows} x {cols}): {e}") from e
    return out


def _parse_labels(labels: object, output_dim: int) -> list[bytes]:
    if labels is None:
        return [str(k).encode() for k in range(output_dim)]
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a sequence of str, got {type(labels).__name__}")
    if len(labels) != output_dim:
        raise ValueError(f"labels: got {len(labels)} labels, output_dim is {output_dim}")
    out: list[bytes] = []
    seen: dict[str, int] = {}
    for k, s in enumerate(labels):
        if not isinstance(s, str):
            raise TypeError(f"labels[{k}] must be a str, got {type(s).__name__}")
        if not s:
            raise ValueError(f"labels[{k}] is empty")
        if s in seen:
            raise ValueError(f"labels[{k}] {s!r} duplicates labels[{seen[s]}]")
        seen[s] = k
        try:
            out.append(s.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise ValueError(f"labels[{k}] {s!r} is not encodable as UTF-8: {e}") from e
    if sum(len(b) for b in out) > _U32_MAX:
        raise ValueError("labels: total UTF-8 size exceeds 2^32 - 1 bytes")
    return out


def _parse_norm(norm: object, input_dim: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    if norm is None:
        return None
    if not isinstance(norm, (tuple, list)) or len(norm) != 3:
        raise TypeError("norm must be a (mean, var, eps) tuple")
    mean = _real_array(norm[0], "norm.mean", 1)
    var = _real_array(norm[1], "norm.var", 1)
    eps = norm[2]
    for a, n in ((mean, "norm.mean"), (var, "norm.var")):
        if a.shape != (input_dim,):
            raise ValueError(f"{n}: length {a.shape[0]} != input_dim {input_dim}")
        _check_values(a, n, _F32_MAX, "f32")
    if np.any(var < 0):
        k = int(np.argmax(var < 0))
        raise ValueError(f"norm.var[{k}] = {float(var[k])!r} is negative")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"norm eps must be a real number, got {type(eps).__name__}")
    e = float(eps)
    if not (math.isfinite(e) and 0.0 < e <= _F32_MAX) or np.float32(e) == 0:
        raise ValueError(f"norm eps must be finite and > 0 (also in f32), got {e!r}")
    return mean, var, e


# ----------------------------------------------------------------------------- encoding


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


class _Section:
    """Appends arrays, each at a 64-aligned section-relative offset."""

    def __init__(self, head: bytes) -> None:
        self.buf = bytearray(head)

    def array(self, a: np.ndarray) -> None:
        self.buf.extend(bytes(_align(len(self.buf)) - len(self.buf)))
        self.buf.extend(a.tobytes())


def _stored_order(pattern: np.ndarray, col_counts: np.ndarray) -> np.ndarray:
    """Strip-local stored order: most work first, equal patterns adjacent, then by index."""
    n = pattern.shape[0]
    work = pattern.astype(np.int64) @ col_counts.astype(np.int64)
    _, first, inverse = np.unique(pattern, axis=0, return_index=True, return_inverse=True)
    group_first = first[np.asarray(inverse).reshape(-1)]
    return np.lexsort((np.arange(n), group_first, -work))


def _encode_matrix(
    w: np.ndarray,
    support: np.ndarray,
    num_r: int,
    num_c: int,
    dtype: str,
    reorder: bool,
) -> tuple[bytes, dict[str, Any]]:
    dtype_id, np_dtype, _ = _DTYPES[dtype]
    rows, cols = w.shape
    sb = strip_bounds(rows, num_r)
    cb = block_bounds(cols, num_c)
    wc = w.astype(np_dtype)
    row_perm = np.empty(rows, dtype=np.int64)
    block_cols: list[np.ndarray] = []
    block_rows: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for i in range(num_r):
        r0, r1 = int(sb[i]), int(sb[i + 1])
        sup = support[r0:r1]
        pattern = np.zeros((r1 - r0, num_c), dtype=bool)
        strip_cols = []
        for j in range(num_c):
            blk = sup[:, cb[j] : cb[j + 1]]
            strip_cols.append(np.flatnonzero(blk.any(axis=0)) + int(cb[j]))
            pattern[:, j] = blk.any(axis=1)
        if reorder:
            order = _stored_order(pattern, np.array([len(c) for c in strip_cols]))
        else:
            order = np.arange(r1 - r0)
        row_perm[r0:r1] = r0 + order
        stored_pattern = pattern[order]
        stored_w = wc[r0 + order]
        for j in range(num_c):
            r_b = np.flatnonzero(stored_pattern[:, j])
            c_b = strip_cols[j]
            block_rows.append(r_b)
            block_cols.append(c_b)
            values.append(stored_w[np.ix_(r_b, c_b)].ravel(order="F"))

    col_counts = np.array([len(c) for c in block_cols], dtype=np.int64)
    row_counts = np.array([len(r) for r in block_rows], dtype=np.int64)
    col_index_count = int(col_counts.sum())
    row_index_count = int(row_counts.sum())
    value_count = int(np.dot(col_counts, row_counts))
    if col_index_count > _U32_MAX or row_index_count > _U32_MAX:
        raise ValueError("matrix index counts exceed the u32 range of the block pointers")

    u32 = np.dtype("<u4")
    sec = _Section(
        _MATRIX_HEADER.pack(
            rows, cols, num_r, num_c, dtype_id, 0, value_count, col_index_count, row_index_count
        )
    )
    sec.array(sb.astype(u32))
    sec.array(cb.astype(u32))
    sec.array(row_perm.astype(u32))
    sec.array(np.concatenate([[0], np.cumsum(col_counts)]).astype(u32))
    sec.array(np.concatenate([np.zeros(0, np.int64), *block_cols]).astype(u32))
    sec.array(np.concatenate([[0], np.cumsum(row_counts)]).astype(u32))
    sec.array(np.concatenate([np.zeros(0, np.int64), *block_rows]).astype(u32))
    sec.array(np.concatenate([np.zeros(0, np_dtype), *values]).astype(np_dtype))
    stats = {
        "rows": rows,
        "cols": cols,
        "num_r": num_r,
        "num_c": num_c,
        "dtype": dtype,
        "dense": rows * cols,
        "stored": value_count,
        "nonzero": int(np.count_nonzero(support)),
        "col_index_count": col_index_count,
        "row_index_count": row_index_count,
        "section_bytes": len(sec.buf),
    }
    return bytes(sec.buf), stats


def _vector_section(b: np.ndarray) -> bytes:
    return _VECTOR_HEADER.pack(len(b), DTYPE_F32, 0) + b.astype("<f4").tobytes()


def encode_bspc_with_stats(
    layers: Sequence[LayerWeights],
    out_weight: np.ndarray,
    out_bias: np.ndarray,
    *,
    kind: Literal["gru", "lstm"] = "gru",
    blocks: tuple[int, int] | Mapping[str, tuple[int, int]] = (1, 1),
    dtype: Literal["f32", "f16"] = "f32",
    labels: Sequence[str] | None = None,
    norm: tuple[np.ndarray, np.ndarray, float] | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    reorder: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Like :func:`encode_bspc`, and also returns size statistics.

    The stats dict has ``matrices`` (per name: ``id``, ``rows``, ``cols``, ``num_r``,
    ``num_c``, ``dtype``, ``dense``, ``stored``, ``nonzero``, ``col_index_count``,
    ``row_index_count``, ``section_bytes``) and totals over the weight matrices
    ``dense_weights``, ``stored_weights``, ``nonzero_weights``, ``compression_rate``
    (dense / stored), plus ``bias_params`` (biases, counted separately), ``file_size``,
    ``kind``, ``dtype``, ``input_dim``, ``hidden_dims``, ``output_dim``.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'gru' or 'lstm', got {kind!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'f32' or 'f16', got {dtype!r}")
    if not isinstance(reorder, bool):
        raise TypeError(f"reorder must be a bool, got {type(reorder).__name__}")
    model_kind, gates, gate_order = _KINDS[kind]
    dtype_limit = _DTYPES[dtype][2]

    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of LayerWeights, got {type(layers).__name__}")
    num_layers = len(layers)
    if not 1 <= num_layers <= MAX_LAYERS:
        raise ValueError(f"number of layers must be in [1, {MAX_LAYERS}], got {num_layers}")

    names = matrix_names(num_layers)
    bnames = _bias_names(num_layers)
    mats: dict[str, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    hidden: list[int] = []
    input_dim = in_dim = 0
    for li, lw in enumerate(layers):
        if not isinstance(lw, LayerWeights):
            raise TypeError(f"layers[{li}] must be a LayerWeights, got {type(lw).__name__}")
        w_ih = _real_array(lw.w_ih, f"l{li}.w_ih", 2)
        w_hh = _real_array(lw.w_hh, f"l{li}.w_hh", 2)
        b_ih = _real_array(lw.b_ih, f"l{li}.b_ih", 1)
        b_hh = _real_array(lw.b_hh, f"l{li}.b_hh", 1)
        h = w_hh.shape[1]
        _check_dim(f"l{li}.w_hh: hidden size H (= number of columns)", h)
        how = f"{gates}*H x H for {kind}, H={h}"
        _check_shape(w_hh, f"l{li}.w_hh", (gates * h, h), how)
        if li == 0:
            input_dim = in_dim = w_ih.shape[1]
            _check_dim("l0.w_ih: input_dim (= number of columns)", in_dim)
            how = f"{gates}*H x input_dim for {kind}, H={h}"
        else:
            in_dim = hidden[-1]
            how = f"{gates}*H x H_prev for {kind}, H={h}, H_prev={in_dim}"
        _check_shape(w_ih, f"l{li}.w_ih", (gates * h, in_dim), how)
        for b, bn in ((b_ih, "b_ih"), (b_hh, "b_hh")):
            _check_shape(b, f"l{li}.{bn}", (gates * h,), f"{gates}*H for {kind}, H={h}")
        mats[f"l{li}.w_ih"], mats[f"l{li}.w_hh"] = w_ih, w_hh
        biases[f"l{li}.b_ih"], biases[f"l{li}.b_hh"] = b_ih, b_hh
        hidden.append(h)
    ow = _real_array(out_weight, "out.w", 2)
    ob = _real_array(out_bias, "out.b", 1)
    output_dim = ow.shape[0]
    _check_dim("out.w: output_dim (= number of rows)", output_dim)
    _check_shape(ow, "out.w", (output_dim, hidden[-1]), f"output_dim x H_last, H_last={hidden[-1]}")
    _check_shape(ob, "out.b", (output_dim,), "output_dim")
    mats["out.w"], biases["out.b"] = ow, ob

    for n in names:
        _check_values(mats[n], n, dtype_limit, dtype)
    for n in bnames:
        _check_values(biases[n], n, _F32_MAX, "f32")

    block_cfg = _parse_blocks(blocks, names, {n: mats[n].shape for n in names})
    label_bytes = _parse_labels(labels, output_dim)
    norm_v = _parse_norm(norm, input_dim)

    supports: dict[str, np.ndarray] = {n: mats[n] != 0 for n in names}
    if masks is not None:
        if not isinstance(masks, Mapping):
            raise TypeError(
                f"masks must be a mapping name -> bool array, got {type(masks).__name__}"
            )
        unknown = sorted(str(k) for k in masks if k not in names)
        if unknown:
            raise ValueError(f"masks: unknown matrix name(s) {unknown}; valid names: {names}")
        for n, m in masks.items():
            m = np.asarray(m)
            if m.dtype != np.bool_:
                raise TypeError(f"masks[{n!r}] must be a bool array, got dtype {m.dtype}")
            if m.shape != mats[n].shape:
                raise ValueError(f"masks[{n!r}]: shape {m.shape} != {n} shape {mats[n].shape}")
            outside = supports[n] & ~m
            if outside.any():
                r, c = (int(v) for v in np.argwhere(outside)[0])
                raise ValueError(
                    f"{n}: {int(outside.sum())} nonzero weight(s) outside masks[{n!r}], "
                    f"first at ({r}, {c}) = {float(mats[n][r, c])!r}"
                )
            supports[n] = m

    sections: list[tuple[int, int, bytes]] = []
    flags = MODEL_FLAG_NORM if norm_v is not None else 0
    model = _MODEL_HEADER.pack(
        model_kind, num_layers, input_dim, output_dim, gate_order, ACTIVATION_SIGMOID_TANH, flags, 0
    )
    sections.append((SECTION_MODEL, 0, model + np.array(hidden, dtype="<u4").tobytes()))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in label_bytes])]).astype("<u4")
    sections.append(
        (
            SECTION_LABELS,
            0,
            struct.pack("<I", output_dim) + offsets.tobytes() + b"".join(label_bytes),
        )
    )
    if norm_v is not None:
        mean, var, eps = norm_v
        payload = struct.pack("<If", input_dim, eps) + mean.astype("<f4").tobytes()
        sections.append((SECTION_NORM, 0, payload + var.astype("<f4").tobytes()))

    mstats: dict[str, dict[str, Any]] = {}
    for mid, n in enumerate(names):
        num_r, num_c = block_cfg[n]
        payload, st = _encode_matrix(mats[n], supports[n], num_r, num_c, dtype, reorder)
        sections.append((SECTION_MATRIX, mid, payload))
        mstats[n] = {"id": mid, **st}
    for vid, n in enumerate(bnames):
        sections.append((SECTION_VECTOR, vid, _vector_section(biases[n])))
    if metadata is not None:
        sections.append((SECTION_METADATA, 0, _metadata_section(metadata)))

    data = _assemble(sections)
    dense = sum(s["dense"] for s in mstats.values())
    stored = sum(s["stored"] for s in mstats.values())
    stats: dict[str, Any] = {
        "kind": kind,
        "dtype": dtype,
        "input_dim": input_dim,
        "hidden_dims": hidden,
        "output_dim": output_dim,
        "matrices": mstats,
        "dense_weights": dense,
        "stored_weights": stored,
        "nonzero_weights": sum(s["nonzero"] for s in mstats.values()),
        "compression_rate": compression_rate(dense, stored),
        "bias_params": sum(int(b.size) for b in biases.values()),
        "file_size": len(data),
    }
    return data, stats


def _metadata_section(metadata: Mapping[str, Any]) -> bytes:
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    try:
        text = json.dumps(dict(metadata), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata must be JSON-serialisable without NaN/inf: {e}") from e
    return text.encode("utf-8")


def _assemble(sections: Sequence[tuple[int, int, bytes]]) -> bytes:
    count = len(sections)
    if not 1 <= count <= MAX_SECTIONS:
        raise ValueError(f"section count {count} outside [1, {MAX_SECTIONS}]")
    placed: list[tuple[int, int, int, bytes]] = []
    pos = _align(DIRECTORY_OFFSET + DIR_ENTRY_SIZE * count)
    for stype, index, payload in sections:
        pos = _align(pos)
        placed.append((stype, index, pos, payload))
        pos += len(payload)
    buf = bytearray(pos)
    for k, (stype, index, off, payload) in enumerate(placed):
        _DIR_ENTRY.pack_into(
            buf, DIRECTORY_OFFSET + k * DIR_ENTRY_SIZE, stype, index, off, len(payload), 0
        )
        buf[off : off + len(payload)] = payload
    crc = zlib.crc32(memoryview(buf)[HEADER_SIZE:])
    _FILE_HEADER.pack_into(
        buf, 0, MAGIC, VERSION_MAJOR, VERSION_MINOR, HEADER_SIZE, pos, DIRECTORY_OFFSET, count, crc
    )
    return bytes(buf)


def encode_bspc(
    layers: Sequence[LayerWeights],
    out_weight: np.ndarray,
    out_bias: np.ndarray,
    *,
    kind: Literal["gru", "lstm"] = "gru",
    blocks: tuple[int, int] | Mapping[str, tuple[int, int]] = (1, 1),
    dtype: Literal["f32", "f16"] = "f32",
    labels: Sequence[str] | None = None,
    norm: tuple[np.ndarray, np.ndarray, float] | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    reorder: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> bytes:
    """Encode a GRU/LSTM stack plus output layer as a BSPC v1.0 file.

    ``blocks`` is one ``(num_r, num_c)`` for every matrix or a mapping from matrix name
    (``l{l}.w_ih``, ``l{l}.w_hh``, ``out.w``) to it; absent names get ``(1, 1)``. A block's
    kept rows/columns are those with any support in it; the support is ``masks[name]`` if
    given (weights outside it must be zero) else ``w != 0``, taken before the dtype cast.
    ``labels`` default to ``"0", "1", ...``; ``norm`` is ``(mean, var, eps)``. Biases are
    always f32. ``metadata`` is a JSON-serialisable mapping (e.g. the feature configuration)
    stored in the optional METADATA section. Raises ValueError/TypeError naming the offending
    input.
    """
    data, _ = encode_bspc_with_stats(
        layers,
        out_weight,
        out_bias,
        kind=kind,
        blocks=blocks,
        dtype=dtype,
        labels=labels,
        norm=norm,
        masks=masks,
        reorder=reorder,
        metadata=metadata,
    )
    return data


def write_bspc(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
    """Encode with :func:`encode_bspc` and write ``path`` atomically (temp file + os.replace)."""
    data = encode_bspc(*args, **kwargs)
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- parsing helpers


def read_header(data: bytes) -> FileHeader:
    """Parse the file header fields without validating them."""
    if len(data) < HEADER_SIZE:
        raise ValueError(f"data has {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    return FileHeader(*_FILE_HEADER.unpack_from(data, 0))


def read_directory(data: bytes) -> list[SectionEntry]:
    """Parse the section directory at offset 64 (``section_count`` entries), unvalidated."""
    count = read_header(data).section_count
    end = DIRECTORY_OFFSET + DIR_ENTRY_SIZE * count
    if end > len(data):
        raise ValueError(f"directory of {count} entries ends at {end}, past the data ({len(data)})")
    entries = []
    for k in range(count):
        stype, index, off, size, _ = _DIR_ENTRY.unpack_from(
            data, DIRECTORY_OFFSET + k * DIR_ENTRY_SIZE
        )
        entries.append(SectionEntry(stype, index, off, size))
    return entries


def recompute_checksum(data: bytes) -> bytes:
    """Copy of ``data`` with the header checksum set to ``zlib.crc32(data[64:])``."""
    if len(data) < HEADER_SIZE:
        raise ValueError(f"data has {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    buf = bytearray(data)
    struct.pack_into("<I", buf, 36, zlib.crc32(memoryview(buf)[HEADER_SIZE:]))
    return bytes(buf)
