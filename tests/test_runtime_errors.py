"""The runtime rejects bad input with the right error and never crashes.

Malformed BSPC files are made by patching a valid ``encode_bspc`` output at offsets computed
from its directory and docs/bspc.md. Where a case targets a structural check, the checksum is
recomputed so that check, not the CRC check, is the one that fires. Every malformed file must
raise ``rtmobile_rt.FormatError`` with a message naming the section and field that is wrong.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

import rtmobile_rt
from rtmobile_rt import FormatError, Session
from rtmobile_train.bsp import random_bsp_matrix, sparsities_for_rate
from rtmobile_train.bspc import (
    LayerWeights,
    SectionEntry,
    encode_bspc,
    read_directory,
    read_header,
    recompute_checksum,
)

pytestmark = pytest.mark.filterwarnings("error")

INPUT_DIM, HIDDEN_DIM, OUTPUT_DIM = 6, 8, 5
LABELS = ("sil", "aa", "ae", "ah", "ao")
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

# Section types and the names the reader uses for them (docs/bspc.md).
MODEL, LABELS_SEC, NORM, MATRIX, VECTOR = 1, 2, 3, 4, 5
SECTION_NAMES = {
    MODEL: "MODEL",
    LABELS_SEC: "LABELS",
    NORM: "NORM",
    MATRIX: "MATRIX",
    VECTOR: "VECTOR",
}

DType = Literal["f32", "f16"]
Source = Literal["bytes", "path"]

# ----------------------------------------------------------------------------- valid models


@cache
def model_bytes(num_layers: int = 1, dtype: DType = "f32", norm: bool = False) -> bytes:
    """A tiny valid GRU model: input 6, hidden 8 per layer, output 5, (2, 2) BSP blocks."""
    rng = np.random.default_rng(1000 + 10 * num_layers + (dtype == "f16") + 2 * norm)
    col_sparsity, row_sparsity = sparsities_for_rate(3.0, 2.0)

    def mat(rows: int, cols: int) -> np.ndarray:
        return random_bsp_matrix(rng, rows, cols, 2, 2, col_sparsity, row_sparsity, scale=0.5)

    def vec(n: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    layers = []
    in_dim = INPUT_DIM
    for _ in range(num_layers):
        g = 3 * HIDDEN_DIM
        layers.append(LayerWeights(mat(g, in_dim), mat(g, HIDDEN_DIM), vec(g), vec(g)))
        in_dim = HIDDEN_DIM
    norm_arg = None
    if norm:
        norm_arg = (rng.standard_normal(INPUT_DIM), rng.uniform(0.5, 2.0, INPUT_DIM), 1e-5)
    return encode_bspc(
        layers,
        mat(OUTPUT_DIM, HIDDEN_DIM),
        vec(OUTPUT_DIM),
        kind="gru",
        blocks=(2, 2),
        dtype=dtype,
        labels=list(LABELS),
        norm=norm_arg,
    )


def base() -> bytes:
    return model_bytes()


# ----------------------------------------------------------------------------- patch helpers


def patch(data: bytes, offset: int, fmt: str, *values: int | float | bytes) -> bytes:
    """Copy of ``data`` with ``struct.pack('<' + fmt, *values)`` written at ``offset``."""
    buf = bytearray(data)
    struct.pack_into("<" + fmt, buf, offset, *values)
    return bytes(buf)


def patch_fixed(data: bytes, offset: int, fmt: str, *values: int | float | bytes) -> bytes:
    """:func:`patch`, then a correct checksum, so the structural check is what fires."""
    return recompute_checksum(patch(data, offset, fmt, *values))


def entry_pos(k: int) -> int:
    """File offset of directory entry ``k``."""
    return 64 + 32 * k


def find_section(data: bytes, stype: int, index: int = 0) -> tuple[int, SectionEntry]:
    """(directory position, entry) of section ``(stype, index)``."""
    for k, e in enumerate(read_directory(data)):
        if e.type == stype and e.index == index:
            return k, e
    raise AssertionError(f"no section ({stype}, {index}) in the model")


def section_offset(data: bytes, stype: int, index: int = 0) -> int:
    return find_section(data, stype, index)[1].offset


def where(data: bytes, stype: int, index: int = 0) -> str:
    """Regex matching the reader's name for a directory entry: ``directory[k] (MATRIX[0])``."""
    k, _ = find_section(data, stype, index)
    return rf"directory\[{k}\] \({SECTION_NAMES[stype]}\[{index}\]\)"


def patch_entry(data: bytes, stype: int, index: int, field: str, value: int) -> bytes:
    """Directory entry field (``type``, ``index``, ``offset``, ``size``, ``reserved``) set."""
    k, _ = find_section(data, stype, index)
    off, fmt = {
        "type": (0, "I"),
        "index": (4, "I"),
        "offset": (8, "Q"),
        "size": (16, "Q"),
        "reserved": (24, "Q"),
    }[field]
    return patch_fixed(data, entry_pos(k) + off, fmt, value)


def swap_indices(data: bytes, stype: int, a: int, b: int) -> bytes:
    """Exchange the ``index`` fields of two directory entries (offsets stay ascending)."""
    ka, _ = find_section(data, stype, a)
    kb, _ = find_section(data, stype, b)
    out = patch(data, entry_pos(ka) + 4, "I", b)
    return patch_fixed(out, entry_pos(kb) + 4, "I", a)


def swap_entries(data: bytes, ka: int, kb: int) -> bytes:
    """Exchange two whole directory entries (their sections then are out of order)."""
    buf = bytearray(data)
    a, b = entry_pos(ka), entry_pos(kb)
    buf[a : a + 32], buf[b : b + 32] = data[b : b + 32], data[a : a + 32]
    return recompute_checksum(bytes(buf))


def with_file_size(data: bytes) -> bytes:
    """Header ``file_size`` set to ``len(data)`` and a correct checksum."""
    return patch_fixed(data, 16, "Q", len(data))


# ----------------------------------------------------------------------------- MATRIX layout

_ARRAY_NAMES = (
    "strip_ptr",
    "col_block_ptr",
    "row_perm",
    "block_col_ptr",
    "col_idx",
    "block_row_ptr",
    "row_idx",
    "values",
)


def _align64(n: int) -> int:
    return (n + 63) // 64 * 64


@dataclass(frozen=True)
class MatrixLayout:
    """A MATRIX section's header and the file offsets of its arrays (docs/bspc.md)."""

    base: int
    rows: int
    cols: int
    num_r: int
    num_c: int
    dtype: int
    value_count: int
    col_index_count: int
    row_index_count: int
    offsets: dict[str, int]

    def pos(self, name: str, k: int) -> int:
        """File offset of element ``k`` of array ``name``."""
        size = 2 if name == "values" and self.dtype == 2 else 4
        return self.offsets[name] + size * k

    def u32(self, data: bytes, name: str) -> np.ndarray:
        counts = {
            "strip_ptr": self.num_r + 1,
            "col_block_ptr": self.num_c + 1,
            "row_perm": self.rows,
            "block_col_ptr": self.num_r * self.num_c + 1,
            "col_idx": self.col_index_count,
            "block_row_ptr": self.num_r * self.num_c + 1,
            "row_idx": self.row_index_count,
        }
        return np.frombuffer(data, "<u4", counts[name], self.offsets[name]).astype(np.int64)


def matrix_layout(data: bytes, index: int) -> MatrixLayout:
    off = section_offset(data, MATRIX, index)
    rows, cols, num_r, num_c, dtype, _, vc, cic, ric = struct.unpack_from("<6I3Q", data, off)
    blocks = num_r * num_c
    esize = 2 if dtype == 2 else 4
    sizes = [
        4 * (num_r + 1),
        4 * (num_c + 1),
        4 * rows,
        4 * (blocks + 1),
        4 * cic,
        4 * (blocks + 1),
        4 * ric,
        esize * vc,
    ]
    offsets: dict[str, int] = {}
    end = 64
    for name, size in zip(_ARRAY_NAMES, sizes, strict=True):
        offsets[name] = off + _align64(end)
        end = _align64(end) + size
    return MatrixLayout(off, rows, cols, num_r, num_c, dtype, vc, cic, ric, offsets)


@dataclass(frozen=True)
class Block:
    b: int  # block number i * num_c + j
    i: int  # strip
    j: int  # column block
    col_begin: int  # first position in col_idx
    col_count: int
    row_begin: int  # first position in row_idx
    row_count: int


def find_block(data: bytes, index: int, min_cols: int = 1, min_rows: int = 1) -> Block:
    """The first block of MATRIX[index] keeping at least ``min_cols`` columns and rows."""
    m = matrix_layout(data, index)
    bcp, brp = m.u32(data, "block_col_ptr"), m.u32(data, "block_row_ptr")
    for b in range(m.num_r * m.num_c):
        nc, nr = int(bcp[b + 1] - bcp[b]), int(brp[b + 1] - brp[b])
        if nc >= min_cols and nr >= min_rows:
            return Block(b, b // m.num_c, b % m.num_c, int(bcp[b]), nc, int(brp[b]), nr)
    raise AssertionError(f"MATRIX[{index}] has no block with >= {min_cols} cols, {min_rows} rows")


# ----------------------------------------------------------------------------- case builders


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    match: str


CASES: list[Case] = []


def case(name: str, match: str) -> Callable[[Callable[[], bytes]], Callable[[], bytes]]:
    def register(fn: Callable[[], bytes]) -> Callable[[], bytes]:
        CASES.append(Case(name, fn, match))
        return fn

    return register


def add(name: str, build: Callable[[], bytes], match: str) -> None:
    CASES.append(Case(name, build, match))


# --- file header (not covered by the checksum)

add("magic-one-byte", lambda: patch(base(), 3, "B", ord("X")), r"header\.magic: not a BSPC file")
add("magic-zero", lambda: patch(base(), 0, "8s", bytes(8)), r"header\.magic")
add("magic-png", lambda: patch(base(), 0, "8s", b"\x89PNG\r\n\x1a\n"), r"header\.magic")
add("major-2", lambda: patch(base(), 8, "H", 2), r"header\.version_major: unsupported version 2\.0")
add(
    "major-2-minor-3",
    lambda: patch(base(), 8, "HH", 2, 3),
    r"header\.version_major: unsupported version 2\.3",
)
add("major-0", lambda: patch(base(), 8, "H", 0), r"header\.version_major: unsupported version 0")
add("major-max", lambda: patch(base(), 8, "H", 0xFFFF), r"header\.version_major")
add("header-size-0", lambda: patch(base(), 12, "I", 0), r"header\.header_size: must be 64, found 0")
add(
    "header-size-128",
    lambda: patch(base(), 12, "I", 128),
    r"header\.header_size: must be 64, found 128",
)
add("file-size-plus-1", lambda: patch(base(), 16, "Q", len(base()) + 1), r"header\.file_size")
add("file-size-max", lambda: patch(base(), 16, "Q", U64_MAX), r"header\.file_size")
add(
    "directory-offset-0",
    lambda: patch(base(), 24, "Q", 0),
    r"header\.directory_offset: must be 64, found 0",
)
add(
    "directory-offset-128",
    lambda: patch(base(), 24, "Q", 128),
    r"header\.directory_offset: must be 64, found 128",
)
add("directory-offset-max", lambda: patch(base(), 24, "Q", U64_MAX), r"header\.directory_offset")
add(
    "section-count-0",
    lambda: patch(base(), 32, "I", 0),
    r"header\.section_count: 0 outside \[1, 4096\]",
)
add(
    "section-count-u32-max",
    lambda: patch(base(), 32, "I", U32_MAX),
    rf"header\.section_count: {U32_MAX} outside \[1, 4096\]",
)
add("section-count-4097", lambda: patch(base(), 32, "I", 4097), r"header\.section_count: 4097")
add(
    "section-count-4096-past-end",
    lambda: patch(base(), 32, "I", 4096),
    r"directory: 4096 entries need 131136 bytes but the file has",
)
add("header-reserved", lambda: patch(base(), 63, "B", 1), r"header\.reserved: must be zero")


@case("section-count-plus-2", r"directory\[0\] \(MODEL\[0\]\)\.offset: \d+ overlaps the directory")
def _section_count_plus_2() -> bytes:
    # Two more entries than written: the directory now reaches into the first section.
    data = base()
    return patch(data, 32, "I", read_header(data).section_count + 2)


# --- checksum (payload changed, CRC not recomputed)


@case("checksum-payload-byte", r"header\.checksum: stored CRC-32 0x[0-9a-f]+ but the payload")
def _checksum_payload() -> bytes:
    m = matrix_layout(base(), 0)
    data = bytearray(base())
    data[m.offsets["values"]] ^= 0x01
    return bytes(data)


@case("checksum-directory-byte", r"header\.checksum")
def _checksum_directory() -> bytes:
    data = bytearray(base())
    data[entry_pos(0) + 4] ^= 0x80
    return bytes(data)


@case("checksum-last-byte", r"header\.checksum")
def _checksum_last() -> bytes:
    data = bytearray(base())
    data[-1] ^= 0xFF
    return bytes(data)


add(
    "checksum-field",
    lambda: patch(base(), 36, "I", read_header(base()).checksum ^ 1),
    r"header\.checksum",
)

# --- directory

for _stype, _idx in ((MODEL, 0), (LABELS_SEC, 0), (MATRIX, 0), (MATRIX, 2), (VECTOR, 2)):
    _n = f"{SECTION_NAMES[_stype]}{_idx}"
    add(
        f"dir-size-u64-max-{_n}",
        lambda s=_stype, i=_idx: patch_entry(base(), s, i, "size", U64_MAX),
        where(base(), _stype, _idx) + r"\.size: section \[\d+, \d+\+18446744073709551615\) "
        r"reaches past the end of the file",
    )
    add(
        f"dir-size-wraps-to-zero-{_n}",
        # offset + size == 2**64: a sum computed in u64 would wrap to 0 and pass.
        lambda s=_stype, i=_idx: patch_entry(
            base(), s, i, "size", 2**64 - section_offset(base(), s, i)
        ),
        where(base(), _stype, _idx) + r"\.size: .* reaches past the end of the file",
    )
    add(
        f"dir-offset-near-u64-max-{_n}",
        lambda s=_stype, i=_idx: patch_entry(base(), s, i, "offset", 2**64 - 64),
        where(base(), _stype, _idx) + r"\.size: section \[18446744073709551552, ",
    )
    add(
        f"dir-offset-misaligned-{_n}",
        lambda s=_stype, i=_idx: patch_entry(
            base(), s, i, "offset", section_offset(base(), s, i) + 4
        ),
        where(base(), _stype, _idx) + r"\.offset: \d+ is not a multiple of 64",
    )
    add(
        f"dir-type-unknown-{_n}",
        lambda s=_stype, i=_idx: patch_entry(base(), s, i, "type", 7),
        rf"directory\[{find_section(base(), _stype, _idx)[0]}\] \(UNKNOWN\[{_idx}\]\)"
        r"\.type: unknown section type 7",
    )
    add(
        f"dir-reserved-{_n}",
        lambda s=_stype, i=_idx: patch_entry(base(), s, i, "reserved", 1),
        where(base(), _stype, _idx) + r"\.reserved: must be zero",
    )

add(
    "dir-type-0",
    lambda: patch_entry(base(), MODEL, 0, "type", 0),
    r"directory\[0\] \(UNKNOWN\[0\]\)\.type: unknown section type 0",
)
add(
    "dir-type-u32-max",
    lambda: patch_entry(base(), VECTOR, 1, "type", U32_MAX),
    rf"\(UNKNOWN\[1\]\)\.type: unknown section type {U32_MAX}",
)
add(
    "dir-duplicate-vector",
    lambda: patch_entry(base(), VECTOR, 1, "index", 0),
    r"directory\[\d+\] \(VECTOR\[0\]\): duplicate section VECTOR\[0\]",
)
add(
    "dir-duplicate-matrix",
    lambda: patch_entry(base(), MATRIX, 2, "index", 1),
    r"\(MATRIX\[1\]\): duplicate section MATRIX\[1\]",
)
add(
    "dir-duplicate-model",
    lambda: patch_entry(base(), LABELS_SEC, 0, "type", MODEL),
    r"directory\[1\] \(MODEL\[0\]\): duplicate section MODEL\[0\]",
)
add(
    "dir-first-offset-in-directory",
    lambda: patch_entry(base(), MODEL, 0, "offset", 64),
    r"directory\[0\] \(MODEL\[0\]\)\.offset: 64 overlaps the directory",
)
add(
    "dir-offset-0",
    lambda: patch_entry(base(), MODEL, 0, "offset", 0),
    r"directory\[0\] \(MODEL\[0\]\)\.offset: 0 overlaps",
)
add(
    "dir-overlap-same-offset",
    lambda: patch_entry(base(), MATRIX, 1, "offset", section_offset(base(), MATRIX, 0)),
    where(base(), MATRIX, 1) + r"\.offset: \d+ overlaps the directory or the previous section",
)
add(
    "dir-overlap-size-grown",
    lambda: patch_entry(
        base(),
        MATRIX,
        0,
        "size",
        section_offset(base(), MATRIX, 1) - section_offset(base(), MATRIX, 0) + 64,
    ),
    where(base(), MATRIX, 1) + r"\.offset: \d+ overlaps .* previous ends at \d+",
)
add(
    "dir-out-of-order",
    lambda: swap_entries(base(), 2, 3),
    r"directory\[3\] \(MATRIX\[0\]\)\.offset: \d+ overlaps",
)
add(
    "dir-missing-model",
    lambda: patch_entry(base(), MODEL, 0, "index", 1),
    r"directory: required section MODEL\[0\] is missing",
)
add(
    "dir-missing-labels",
    lambda: patch_entry(base(), LABELS_SEC, 0, "type", NORM),
    r"directory: required section LABELS\[0\] is missing",
)
add(
    "dir-matrix-index-unused",
    lambda: patch_entry(base(), MATRIX, 2, "index", 3),
    r"MATRIX\[3\]: index 3 unused by a 1-layer model \(ids 0\.\.2\)",
)
add(
    "dir-vector-index-unused",
    lambda: patch_entry(base(), VECTOR, 1, "index", 99),
    r"VECTOR\[99\]: index 99 unused",
)
add(
    "dir-labels-index-1",
    lambda: patch_entry(base(), LABELS_SEC, 0, "index", 1),
    r"LABELS\[1\]: index must be 0",  # the directory's indices are checked before presence
)

# --- MODEL section


def model_patch(pos: int, value: int, data: bytes | None = None) -> Callable[[], bytes]:
    def build() -> bytes:
        d = base() if data is None else data
        return patch_fixed(d, section_offset(d, MODEL) + pos, "I", value)

    return build


add("model-kind-0", model_patch(0, 0), r"MODEL\[0\]\.model_kind: unknown value 0")
add("model-kind-3", model_patch(0, 3), r"MODEL\[0\]\.model_kind: unknown value 3")
add(
    "model-kind-lstm-gru-order",
    model_patch(0, 2),
    r"MODEL\[0\]\.gate_order: 1 is not valid for this model kind \(expected 2",
)
add("model-gate-order-2", model_patch(16, 2), r"MODEL\[0\]\.gate_order: 2 is not valid")
add("model-num-layers-0", model_patch(4, 0), r"MODEL\[0\]\.num_layers: 0 outside \[1, 64\]")
add("model-num-layers-65", model_patch(4, 65), r"MODEL\[0\]\.num_layers: 65 outside")
add("model-num-layers-u32-max", model_patch(4, U32_MAX), r"MODEL\[0\]\.num_layers")
add(
    "model-num-layers-2-size",
    model_patch(4, 2),
    r"MODEL\[0\]: section is 36 bytes but num_layers 2 implies 40",
)
add("model-input-dim-0", model_patch(8, 0), r"MODEL\[0\]\.input_dim: 0 outside")
add("model-input-dim-too-big", model_patch(8, 2**24 + 1), r"MODEL\[0\]\.input_dim: 16777217")
add("model-output-dim-0", model_patch(12, 0), r"MODEL\[0\]\.output_dim: 0 outside")
add("model-output-dim-u32-max", model_patch(12, U32_MAX), r"MODEL\[0\]\.output_dim")
add("model-activation-2", model_patch(20, 2), r"MODEL\[0\]\.activation: unknown value 2")
add("model-flags-bit-1", model_patch(24, 2), r"MODEL\[0\]\.flags: unknown bits set \(0x2\)")
add("model-reserved", model_patch(28, 1), r"MODEL\[0\]\.reserved: must be zero")
add("model-hidden-0", model_patch(32, 0), r"MODEL\[0\]\.hidden_dim\[0\]: 0 outside")
add("model-hidden-u32-max", model_patch(32, U32_MAX), r"MODEL\[0\]\.hidden_dim\[0\]")
add(
    "model-size-short",
    lambda: patch_entry(base(), MODEL, 0, "size", 28),
    r"MODEL\[0\]: section is 28 bytes, shorter than 32",
)
add(
    "model-size-long",
    lambda: patch_entry(base(), MODEL, 0, "size", 40),
    r"MODEL\[0\]: section is 40 bytes but num_layers 1 implies 36",
)

# --- shapes: MODEL dims against MATRIX / VECTOR / LABELS

add(
    "shape-input-dim",
    model_patch(8, INPUT_DIM + 1),
    r"MATRIX\[0\] \(l0\.w_ih\): shape 24x6 but the model needs 24x7",
)
add(
    "shape-hidden-dim",
    model_patch(32, HIDDEN_DIM + 1),
    r"MATRIX\[0\] \(l0\.w_ih\): shape 24x6 but the model needs 27x6",
)
add(
    "shape-hidden-dim-layer-1",
    lambda: model_patch(36, HIDDEN_DIM + 1, model_bytes(2))(),
    r"MATRIX\[2\] \(l1\.w_ih\): shape 24x8 but the model needs 27x8",
)
add(
    "shape-swapped-matrices",
    lambda: swap_indices(base(), MATRIX, 0, 1),
    r"MATRIX\[0\] \(l0\.w_ih\): shape 24x8 but the model needs 24x6",
)
add(
    "shape-swapped-output-matrix",
    lambda: swap_indices(base(), MATRIX, 1, 2),
    r"MATRIX\[1\] \(l0\.w_hh\): shape 5x8 but the model needs 24x8",
)
add(
    "shape-swapped-biases",
    lambda: swap_indices(base(), VECTOR, 0, 2),
    r"VECTOR\[0\] \(bias of l0\.w_ih\): length 5 but the model needs 24",
)
add(
    "shape-output-dim-vs-labels",
    model_patch(12, OUTPUT_DIM + 1),
    r"LABELS\[0\]\.count: 5 labels but MODEL output_dim is 6",
)

# --- LABELS section


def labels_patch(pos: int, fmt: str, *values: int | bytes) -> Callable[[], bytes]:
    return lambda: patch_fixed(base(), section_offset(base(), LABELS_SEC) + pos, fmt, *values)


_BLOB = 4 + 4 * (OUTPUT_DIM + 1)  # section-relative offset of the label bytes
_LABEL_AT = [_BLOB + sum(len(s) for s in LABELS[:k]) for k in range(OUTPUT_DIM)]
_BLOB_SIZE = sum(len(s) for s in LABELS)

add(
    "labels-count-4",
    labels_patch(0, "I", 4),
    r"LABELS\[0\]\.count: 4 labels but MODEL output_dim is 5",
)
add(
    "labels-count-u32-max",
    labels_patch(0, "I", U32_MAX),
    rf"LABELS\[0\]\.count: {U32_MAX} labels but MODEL output_dim is 5",
)
add("labels-offsets-0", labels_patch(4, "I", 1), r"LABELS\[0\]\.offsets\[0\]: must be 0")
add(
    "labels-offsets-decreasing",
    labels_patch(4 + 4 * 2, "I", 0),
    rf"LABELS\[0\]\.offsets\[2\]: 0 is smaller than the previous {len(LABELS[0])}",
)
add(
    "labels-offsets-last",
    labels_patch(4 + 4 * OUTPUT_DIM, "I", _BLOB_SIZE + 1),
    rf"LABELS\[0\]: section is {_BLOB + _BLOB_SIZE} bytes but the offsets imply "
    rf"{_BLOB + _BLOB_SIZE + 1}",
)
add(
    "labels-offsets-last-u32-max",
    labels_patch(4 + 4 * OUTPUT_DIM, "I", U32_MAX),
    rf"LABELS\[0\]: section is {_BLOB + _BLOB_SIZE} bytes but the offsets imply "
    rf"{_BLOB + U32_MAX}",
)
add(
    "labels-size-short",
    lambda: patch_entry(base(), LABELS_SEC, 0, "size", 3),
    r"LABELS\[0\]: section is 3 bytes, shorter than 4",
)
add(
    "labels-size-offsets-cut",
    lambda: patch_entry(base(), LABELS_SEC, 0, "size", 12),
    r"LABELS\[0\]: section is 12 bytes, too short for 5 offsets",
)
for _name, _k, _raw in (
    ("ff", 0, b"\xffil"),  # never valid in UTF-8
    ("lone-continuation", 1, b"\x80a"),
    ("overlong-nul", 1, b"\xc0\x80"),
    ("overlong-3-byte", 0, b"\xe0\x80\xaf"),
    ("surrogate", 0, b"\xed\xa0\x80"),
    ("bad-continuation", 1, b"\xc3("),
    ("cut-at-label-end", 1, b"a\xc3"),
    ("cut-4-byte", 0, b"\xf0\x9f\x98"),
    ("five-byte-lead", 0, b"\xf8\x88\x80"),
):
    add(
        f"labels-utf8-{_name}",
        labels_patch(_LABEL_AT[_k], f"{len(_raw)}s", _raw),
        rf"LABELS\[0\]: label {_k} is not valid UTF-8",
    )


@case("labels-utf8-above-10ffff", r"LABELS\[0\]: label 0 is not valid UTF-8")
def _label_above_max_code_point() -> bytes:
    # offsets[1] = 4 makes label 0 four bytes long; U+110000 is past the last code point.
    data = labels_patch(4 + 4, "I", 4)()
    pos = section_offset(data, LABELS_SEC) + _LABEL_AT[0]
    return patch_fixed(data, pos, "4s", b"\xf4\x90\x80\x80")


# A two-byte character split across labels 1 and 2: label 1 ends inside the sequence.
add(
    "labels-utf8-split-across-labels",
    labels_patch(_LABEL_AT[1], "4s", b"a\xc3\xa9e"),
    r"LABELS\[0\]: label 1 is not valid UTF-8",
)

# --- NORM section and the MODEL flag


def norm_patch(pos: int, fmt: str, value: int | float) -> Callable[[], bytes]:
    def build() -> bytes:
        d = model_bytes(norm=True)
        return patch_fixed(d, section_offset(d, NORM) + pos, fmt, value)

    return build


add(
    "norm-flag-without-section",
    model_patch(24, 1),
    r"directory: MODEL\[0\]\.flags says a NORM section is present but it is missing",
)
add(
    "norm-section-without-flag",
    lambda: model_patch(24, 0, model_bytes(norm=True))(),
    r"directory: a NORM section is present but MODEL\[0\]\.flags bit 0 is not set",
)
add("norm-dim", norm_patch(0, "I", INPUT_DIM - 1), r"NORM\[0\]\.dim: 5 but MODEL input_dim is 6")
add("norm-dim-u32-max", norm_patch(0, "I", U32_MAX), r"NORM\[0\]\.dim: 4294967295")
add("norm-eps-0", norm_patch(4, "f", 0.0), r"NORM\[0\]\.eps: must be finite and > 0")
add("norm-eps-negative", norm_patch(4, "f", -1.0), r"NORM\[0\]\.eps: must be finite and > 0")
add("norm-eps-nan", norm_patch(4, "f", float("nan")), r"NORM\[0\]\.eps")
add("norm-eps-inf", norm_patch(4, "f", float("inf")), r"NORM\[0\]\.eps")
add("norm-mean-nan", norm_patch(8 + 4 * 2, "f", float("nan")), r"NORM\[0\]\.mean\[2\]: not finite")
add("norm-mean-inf", norm_patch(8 + 4 * 5, "f", -float("inf")), r"NORM\[0\]\.mean\[5\]")
add(
    "norm-var-negative",
    norm_patch(8 + 4 * (INPUT_DIM + 3), "f", -1.0),
    r"NORM\[0\]\.var\[3\]: must be finite and >= 0, found -1",
)
add("norm-var-nan", norm_patch(8 + 4 * INPUT_DIM, "f", float("nan")), r"NORM\[0\]\.var\[0\]")
add(
    "norm-var-inf",
    norm_patch(8 + 4 * (2 * INPUT_DIM - 1), "f", float("inf")),
    r"NORM\[0\]\.var\[5\]",
)
add(
    "norm-size",
    lambda: patch_entry(model_bytes(norm=True), NORM, 0, "size", 8),
    r"NORM\[0\]: section is 8 bytes but dim 6 implies 56",
)

# --- VECTOR sections (biases)


def vector_patch(index: int, pos: int, fmt: str, value: int | float) -> Callable[[], bytes]:
    return lambda: patch_fixed(base(), section_offset(base(), VECTOR, index) + pos, fmt, value)


for _vid in range(3):
    add(
        f"vector{_vid}-nan",
        vector_patch(_vid, 16 + 4 * 3, "f", float("nan")),
        rf"VECTOR\[{_vid}\]\.values\[3\]: not finite",
    )
add("vector-inf", vector_patch(1, 16, "f", float("inf")), r"VECTOR\[1\]\.values\[0\]: not finite")
add(
    "vector-minus-inf-last",
    vector_patch(2, 16 + 4 * (OUTPUT_DIM - 1), "f", -float("inf")),
    r"VECTOR\[2\]\.values\[4\]: not finite",
)
add(
    "vector-dtype-f16",
    vector_patch(0, 4, "I", 2),
    r"VECTOR\[0\]\.dtype: unknown value 2 \(only 1 = f32 is defined\)",
)
add("vector-dtype-0", vector_patch(0, 4, "I", 0), r"VECTOR\[0\]\.dtype: unknown value 0")
add("vector-reserved", vector_patch(0, 12, "I", 1), r"VECTOR\[0\]\.reserved: must be zero")
add(
    "vector-length-plus-1",
    vector_patch(0, 0, "I", 25),
    r"VECTOR\[0\]: section is 112 bytes but length 25 implies 116",
)
add(
    "vector-length-u32-max",
    vector_patch(0, 0, "I", U32_MAX),
    r"VECTOR\[0\]: section is 112 bytes but length 4294967295 implies 17179869196",
)
add(
    "vector-size-short",
    lambda: patch_entry(base(), VECTOR, 2, "size", 15),
    r"VECTOR\[2\]: section is 15 bytes, shorter than its 16-byte header",
)

# --- MATRIX sections: header


def matrix_header_patch(
    pos: int, fmt: str, value: int, index: int = 0, data: Callable[[], bytes] = base
) -> Callable[[], bytes]:
    def build() -> bytes:
        d = data()
        return patch_fixed(d, section_offset(d, MATRIX, index) + pos, fmt, value)

    return build


add("matrix-rows-0", matrix_header_patch(0, "I", 0), r"MATRIX\[0\]\.rows: 0 outside")
add("matrix-rows-too-big", matrix_header_patch(0, "I", 2**24 + 1), r"MATRIX\[0\]\.rows: 16777217")
add("matrix-cols-0", matrix_header_patch(4, "I", 0), r"MATRIX\[0\]\.cols: 0 outside")
add("matrix-cols-u32-max", matrix_header_patch(4, "I", U32_MAX), r"MATRIX\[0\]\.cols")
add("matrix-num-r-0", matrix_header_patch(8, "I", 0), r"MATRIX\[0\]\.num_r: 0 outside")
add(
    "matrix-num-r-above-rows",
    matrix_header_patch(8, "I", 25),
    r"MATRIX\[0\]\.num_r: 25 outside \[1, rows=24\]",
)
add("matrix-num-c-0", matrix_header_patch(12, "I", 0), r"MATRIX\[0\]\.num_c: 0 outside")
add(
    "matrix-num-c-above-cols",
    matrix_header_patch(12, "I", 7),
    r"MATRIX\[0\]\.num_c: 7 outside \[1, cols=6\]",
)
add("matrix-dtype-0", matrix_header_patch(16, "I", 0), r"MATRIX\[0\]\.dtype: unknown value 0")
add(
    "matrix-dtype-3",
    matrix_header_patch(16, "I", 3),
    r"MATRIX\[0\]\.dtype: unknown value 3 \(1 = f32, 2 = f16\)",
)
add("matrix-dtype-u32-max", matrix_header_patch(16, "I", U32_MAX), r"MATRIX\[0\]\.dtype")
add("matrix-reserved0", matrix_header_patch(20, "I", 1), r"MATRIX\[0\]\.reserved: must be zero")
add("matrix-reserved1", matrix_header_patch(63, "B", 1), r"MATRIX\[0\]\.reserved: must be zero")
for _field, _pos, _limit in (
    ("value_count", 24, "rows\\*cols = 144"),
    ("col_index_count", 32, "num_r\\*cols = 12"),
    ("row_index_count", 40, "num_c\\*rows = 48"),
):
    # 2**62 and 2**63 times the element size wrap a u64 to 0; U64_MAX - 1 wraps to -8.
    for _value in (U64_MAX, U64_MAX - 1, 2**63, 2**62, 2**48):
        add(
            f"matrix-{_field}-{_value:#x}",
            matrix_header_patch(_pos, "Q", _value),
            rf"MATRIX\[0\]\.{_field}: {_value} exceeds {_limit}",
        )
add(
    "matrix-value-count-plus-1",
    lambda: matrix_header_patch(24, "Q", matrix_layout(base(), 0).value_count + 1)(),
    r"MATRIX\[0\]: section is \d+ bytes but its header implies \d+",
)
add(
    "matrix-col-index-count-plus-1",
    # col_idx may grow inside its 64-byte padding: then the pointer array no longer matches.
    lambda: matrix_header_patch(32, "Q", matrix_layout(base(), 0).col_index_count + 1)(),
    r"MATRIX\[0\](: section is \d+ bytes but its header implies \d+|"
    r"\.block_col_ptr\[4\]: must equal \d+, found \d+)",
)
add(
    "matrix-size-short",
    lambda: patch_entry(base(), MATRIX, 0, "size", 63),
    r"MATRIX\[0\]: section is 63 bytes, shorter than its 64-byte header",
)
add(
    "matrix-size-minus-4",
    lambda: patch_entry(base(), MATRIX, 2, "size", find_section(base(), MATRIX, 2)[1].size - 4),
    r"MATRIX\[2\]: section is \d+ bytes but its header implies \d+",
)


@case("matrix-f16-reinterpreted", r"MATRIX\[0\]\.value_count: \d+ but the blocks hold \d+ values")
def _f16_reinterpreted() -> bytes:
    # f32 values read as twice as many f16 values: the section size still matches.
    m = matrix_layout(base(), 0)
    assert 2 * m.value_count <= m.rows * m.cols
    data = patch(base(), m.base + 16, "I", 2)
    return patch_fixed(data, m.base + 24, "Q", 2 * m.value_count)


# --- MATRIX sections: index arrays


def matrix_array_patch(
    name: str,
    k: int | Callable[[MatrixLayout], int],
    value: int | Callable[[MatrixLayout], int],
    index: int = 0,
) -> Callable[[], bytes]:
    def build() -> bytes:
        m = matrix_layout(base(), index)
        kk = k(m) if callable(k) else k
        v = value(m) if callable(value) else value
        return patch_fixed(base(), m.pos(name, kk), "I", v)

    return build


add(
    "strip-ptr-0",
    matrix_array_patch("strip_ptr", 0, 1),
    r"MATRIX\[0\]\.strip_ptr\[0\]: must be 0, found 1",
)
add(
    "strip-ptr-short-of-rows",
    matrix_array_patch("strip_ptr", 2, 23),
    r"MATRIX\[0\]\.strip_ptr\[2\]: must equal 24, found 23",
)
add(
    "strip-ptr-past-rows",
    matrix_array_patch("strip_ptr", 2, 25),
    r"MATRIX\[0\]\.strip_ptr\[2\]: must equal 24, found 25",
)
add(
    "strip-ptr-decreasing",
    matrix_array_patch("strip_ptr", 1, 30),
    r"MATRIX\[0\]\.strip_ptr\[2\]: 24 is smaller than the previous entry 30",
)
add(
    "strip-ptr-out",
    matrix_array_patch("strip_ptr", 2, 4, index=2),
    r"MATRIX\[2\]\.strip_ptr\[2\]: must equal 5, found 4",
)
add(
    "col-block-ptr-last",
    matrix_array_patch("col_block_ptr", 2, 5),
    r"MATRIX\[0\]\.col_block_ptr\[2\]: must equal 6, found 5",
)
add(
    "col-block-ptr-decreasing",
    matrix_array_patch("col_block_ptr", 1, U32_MAX),
    r"MATRIX\[0\]\.col_block_ptr\[2\]: 6 is smaller than the previous entry 4294967295",
)
add(
    "block-col-ptr-last",
    matrix_array_patch("block_col_ptr", 4, lambda m: m.col_index_count + 1),
    r"MATRIX\[0\]\.block_col_ptr\[4\]: must equal (\d+), found (?!\1)\d+",
)
add(
    "block-col-ptr-u32-max",
    matrix_array_patch("block_col_ptr", 1, U32_MAX),
    r"MATRIX\[0\]\.block_col_ptr\[2\]: \d+ is smaller than the previous entry 4294967295",
)
add(
    "block-row-ptr-0",
    matrix_array_patch("block_row_ptr", 0, 1),
    r"MATRIX\[0\]\.block_row_ptr\[0\]: must be 0, found 1",
)
add(
    "block-row-ptr-last",
    matrix_array_patch("block_row_ptr", 4, U32_MAX),
    r"MATRIX\[0\]\.block_row_ptr\[4\]: must equal \d+, found 4294967295",
)
add(
    "row-perm-equals-rows",
    matrix_array_patch("row_perm", 0, 24),
    r"MATRIX\[0\]\.row_perm\[0\]: row 24 outside strip 0 rows \[0, 12\)",
)
add(
    "row-perm-u32-max",
    matrix_array_patch("row_perm", 23, U32_MAX),
    r"MATRIX\[0\]\.row_perm\[23\]: row 4294967295 outside strip 1 rows \[12, 24\)",
)
add(
    "row-perm-out-matrix",
    matrix_array_patch("row_perm", 4, 5, index=2),
    r"MATRIX\[2\]\.row_perm\[4\]: row 5 outside strip 1 rows \[2, 5\)",
)


@case("row-perm-duplicate", r"MATRIX\[0\]\.row_perm\[1\]: row \d+ appears twice")
def _row_perm_duplicate() -> bytes:
    m = matrix_layout(base(), 0)
    perm = m.u32(base(), "row_perm")
    return patch_fixed(base(), m.pos("row_perm", 1), "I", int(perm[0]))


@case("row-perm-crosses-strips", r"MATRIX\[0\]\.row_perm\[\d+\]: .*strip")
def _row_perm_crosses_strips() -> bytes:
    # docs/bspc.md: "a strip's rows stay inside the strip". Swap the first stored row of
    # strip 0 with the last stored row of strip 1: still a permutation, but not strip-local.
    m = matrix_layout(base(), 0)
    perm = m.u32(base(), "row_perm")
    data = patch(base(), m.pos("row_perm", 0), "I", int(perm[-1]))
    return patch_fixed(data, m.pos("row_perm", m.rows - 1), "I", int(perm[0]))


def _col_idx_case(index: int, other_block: bool) -> Callable[[], bytes]:
    def build() -> bytes:
        m = matrix_layout(base(), index)
        blk = find_block(base(), index)
        cbp = m.u32(base(), "col_block_ptr")
        if other_block:  # a column of the neighbouring column block
            value = int(cbp[blk.j + 1]) if blk.j + 1 < m.num_c else int(cbp[blk.j]) - 1
        else:
            value = U32_MAX
        return patch_fixed(base(), m.pos("col_idx", blk.col_begin), "I", value)

    return build


for _mid in (0, 1, 2):
    add(
        f"col-idx-other-block-m{_mid}",
        _col_idx_case(_mid, True),
        rf"MATRIX\[{_mid}\]\.col_idx\[\d+\]: column \d+ outside column block \d range "
        r"\[\d+, \d+\)",
    )
    add(
        f"col-idx-u32-max-m{_mid}",
        _col_idx_case(_mid, False),
        rf"MATRIX\[{_mid}\]\.col_idx\[\d+\]: column 4294967295 outside column block",
    )


@case(
    "col-idx-repeated",
    r"MATRIX\[0\]\.col_idx\[\d+\]: column \d+ not above the previous \d+ "
    r"\(block \d must list columns strictly increasing\)",
)
def _col_idx_repeated() -> bytes:
    m = matrix_layout(base(), 0)
    blk = find_block(base(), 0, min_cols=2)
    col = m.u32(base(), "col_idx")
    return patch_fixed(base(), m.pos("col_idx", blk.col_begin + 1), "I", int(col[blk.col_begin]))


@case("col-idx-decreasing", r"MATRIX\[1\]\.col_idx\[\d+\]: column \d+ not above the previous")
def _col_idx_decreasing() -> bytes:
    m = matrix_layout(base(), 1)
    blk = find_block(base(), 1, min_cols=2)
    col = m.u32(base(), "col_idx")
    a, b = blk.col_begin, blk.col_begin + 1
    data = patch(base(), m.pos("col_idx", a), "I", int(col[b]))
    return patch_fixed(data, m.pos("col_idx", b), "I", int(col[a]))


def _row_idx_case(index: int, big: bool) -> Callable[[], bytes]:
    def build() -> bytes:
        m = matrix_layout(base(), index)
        blk = find_block(base(), index)
        sp = m.u32(base(), "strip_ptr")
        value = U32_MAX if big else int(sp[blk.i + 1] - sp[blk.i])
        return patch_fixed(base(), m.pos("row_idx", blk.row_begin + blk.row_count - 1), "I", value)

    return build


for _mid in (0, 1, 2):
    add(
        f"row-idx-strip-height-m{_mid}",
        _row_idx_case(_mid, False),
        rf"MATRIX\[{_mid}\]\.row_idx\[\d+\]: row (\d+) outside strip \d height \1",
    )
    add(
        f"row-idx-u32-max-m{_mid}",
        _row_idx_case(_mid, True),
        rf"MATRIX\[{_mid}\]\.row_idx\[\d+\]: row 4294967295 outside strip \d height \d+",
    )


@case(
    "row-idx-repeated",
    r"MATRIX\[0\]\.row_idx\[\d+\]: row \d+ not above the previous \d+ "
    r"\(block \d must list rows strictly increasing\)",
)
def _row_idx_repeated() -> bytes:
    m = matrix_layout(base(), 0)
    blk = find_block(base(), 0, min_rows=2)
    rows = m.u32(base(), "row_idx")
    return patch_fixed(base(), m.pos("row_idx", blk.row_begin + 1), "I", int(rows[blk.row_begin]))


# --- MATRIX sections: values


def values_patch(
    fmt: str, raw: int | float, k: int | None = None, dtype: DType = "f32", index: int = 0
) -> Callable[[], bytes]:
    """Values element ``k`` (default: the last) of MATRIX[index] overwritten with ``raw``."""

    def build() -> bytes:
        d = model_bytes(dtype=dtype)
        m = matrix_layout(d, index)
        kk = m.value_count - 1 if k is None else k
        return patch_fixed(d, m.pos("values", kk), fmt, raw)

    return build


for _mid in (0, 1, 2):
    add(
        f"values-f32-nan-m{_mid}",
        values_patch("f", float("nan"), 0, index=_mid),
        rf"MATRIX\[{_mid}\]\.values\[0\]: not finite",
    )
add("values-f32-inf", values_patch("f", float("inf"), 7), r"MATRIX\[0\]\.values\[7\]: not finite")
add(
    "values-f32-minus-inf-last",
    values_patch("f", -float("inf")),
    r"MATRIX\[0\]\.values\[\d+\]: not finite",
)
add(
    "values-f32-nan-payload",
    values_patch("I", 0x7F800001, 3),
    r"MATRIX\[0\]\.values\[3\]: not finite",
)
for _name, _bits in (
    ("inf", 0x7C00),
    ("minus-inf", 0xFC00),
    ("nan", 0x7E00),
    ("nan-signalling", 0x7C01),
    ("nan-all-ones", 0xFFFF),
):
    add(
        f"values-f16-{_name}",
        values_patch("H", _bits, 2, dtype="f16"),
        r"MATRIX\[0\]\.values\[2\]: not finite \(f16 inf/NaN\)",
    )
    add(
        f"values-f16-{_name}-out-last",
        values_patch("H", _bits, None, dtype="f16", index=2),
        r"MATRIX\[2\]\.values\[\d+\]: not finite \(f16 inf/NaN\)",
    )

CASE_IDS = [c.name for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "duplicate case names"


# ----------------------------------------------------------------------------- loading


def load(data: bytes, source: Source, tmp_path: Path) -> Session:
    if source == "bytes":
        return Session(data, threads=1)
    path = tmp_path / "model.bspc"
    path.write_bytes(data)
    return Session(path, threads=1)


def frames(t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((t, INPUT_DIM)).astype(np.float32)


# ----------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_malformed_file_raises_format_error(c: Case) -> None:
    data = c.build()
    assert data != model_bytes() and data != model_bytes(norm=True)
    with pytest.raises(FormatError, match=c.match) as excinfo:
        Session(data, threads=1)
    assert isinstance(excinfo.value, ValueError)
    assert type(excinfo.value) is FormatError


_PATH_CASES = [
    c
    for c in CASES
    if c.name
    in {
        "magic-one-byte",
        "major-2",
        "section-count-u32-max",
        "checksum-payload-byte",
        "dir-size-u64-max-MATRIX0",
        "labels-utf8-surrogate",
        "norm-section-without-flag",
        "matrix-value_count-0xffffffffffffffff",
        "row-perm-duplicate",
        "values-f16-nan",
    }
]


@pytest.mark.parametrize("source", ["bytes", "path"])
@pytest.mark.parametrize("c", _PATH_CASES, ids=[c.name for c in _PATH_CASES])
def test_malformed_file_from_bytes_and_path(c: Case, source: Source, tmp_path: Path) -> None:
    assert len(_PATH_CASES) == 10
    with pytest.raises(FormatError, match=c.match):
        load(c.build(), source, tmp_path)


def test_format_error_is_a_value_error() -> None:
    assert issubclass(FormatError, ValueError)
    assert FormatError is rtmobile_rt.FormatError


@pytest.mark.parametrize("minor", [1, 7, 0xFFFF])
@pytest.mark.parametrize("source", ["bytes", "path"])
def test_higher_minor_version_is_accepted(minor: int, source: Source, tmp_path: Path) -> None:
    reference = Session(base(), threads=1).run(frames(5))
    session = load(patch(base(), 10, "H", minor), source, tmp_path)
    np.testing.assert_array_equal(session.run(frames(5)), reference)


def test_unknown_section_type_is_skipped_from_minor_1() -> None:
    """docs/bspc.md: minors only add optional sections, which an older reader skips; at minor 0
    an unknown type is an error (the dir-type-unknown cases)."""
    rng = np.random.default_rng(5)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (0.3 * rng.standard_normal((rows, cols))).astype(np.float32)

    g = 3 * HIDDEN_DIM
    layer = LayerWeights(mat(g, INPUT_DIM), mat(g, HIDDEN_DIM), np.zeros(g, np.float32),
                         np.zeros(g, np.float32))  # fmt: skip
    data = encode_bspc([layer], mat(OUTPUT_DIM, HIDDEN_DIM), np.zeros(OUTPUT_DIM, np.float32),
                       metadata={"note": "x"})  # fmt: skip
    reference = Session(data, threads=1).run(frames(4))
    k, _ = find_section(data, 6)
    renamed = patch_entry(data, 6, 0, "type", 99)
    with pytest.raises(FormatError, match=rf"directory\[{k}\] \(UNKNOWN\[0\]\)\.type: unknown"):
        Session(renamed, threads=1)
    session = Session(recompute_checksum(patch(renamed, 10, "H", 1)), threads=1)
    np.testing.assert_array_equal(session.run(frames(4)), reference)
    assert session.metadata == {}  # skipped, not read as METADATA


def test_valid_utf8_label_is_accepted() -> None:
    data = labels_patch(_LABEL_AT[1], "2s", b"\xc3\xa9")()  # "aa" -> "é"
    assert Session(data, threads=1).labels == ["sil", "é", "ae", "ah", "ao"]


# ----------------------------------------------------------------------------- truncation


def _cut_points(data: bytes) -> list[int]:
    """Every section boundary (start and end), the directory end, and a sample of others."""
    entries = read_directory(data)
    points = {0, 1, 8, 36, 63, 64, 65, entry_pos(len(entries)) - 1, entry_pos(len(entries))}
    for e in entries:
        points.update({e.offset, e.offset + 1, e.offset + e.size - 1, e.offset + e.size})
    points.update(range(97, len(data), 397))
    points.update({len(data) - 1})
    return sorted(p for p in points if p < len(data))


_CUTS = _cut_points(base())
_BOUNDARIES = {e.offset for e in read_directory(base())} | {
    e.offset + e.size for e in read_directory(base())
}


def _expected_truncation_error(data: bytes, cut: int) -> str:
    """The error the reader owes a file cut at ``cut`` whose header says ``file_size == cut``."""
    if cut < 64:
        return rf"header: file is {cut} bytes, shorter than the 64-byte header"
    entries = read_directory(data)
    dir_end = entry_pos(len(entries))
    if cut < dir_end:
        return rf"directory: {len(entries)} entries need {dir_end} bytes but the file has {cut}"
    for k, e in enumerate(entries):
        if e.offset + e.size > cut:
            return (
                rf"directory\[{k}\] \({SECTION_NAMES[e.type]}\[{e.index}\]\)\.size: "
                rf"section \[{e.offset}, {e.offset}\+{e.size}\) reaches past the end of the "
                rf"file \({cut} bytes\)"
            )
    raise AssertionError("cut does not truncate any section")


def test_cut_points_cover_every_section_boundary() -> None:
    assert _BOUNDARIES - {len(base())} <= set(_CUTS)
    assert {0, 63} <= set(_CUTS)


@pytest.mark.parametrize("cut", _CUTS, ids=[f"cut{c}" for c in _CUTS])
def test_truncated_file(cut: int) -> None:
    data = base()[:cut]
    if cut < 64:
        match = rf"header: file is {cut} bytes, shorter than the 64-byte header"
    else:
        match = rf"header\.file_size: header says {len(base())} bytes but the data has {cut}"
    with pytest.raises(FormatError, match=match):
        Session(data, threads=1)


@pytest.mark.parametrize("cut", [c for c in _CUTS if c >= 64], ids=lambda c: f"cut{c}")
def test_truncated_file_with_consistent_header(cut: int) -> None:
    # file_size and checksum rewritten to match the cut: the cut section itself is reported.
    data = with_file_size(base()[:cut])
    with pytest.raises(FormatError, match=_expected_truncation_error(base(), cut)):
        Session(data, threads=1)


@pytest.mark.parametrize("cut", [0, 63, 64, _CUTS[len(_CUTS) // 2], len(base()) - 1])
def test_truncated_file_from_path(cut: int, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"header: file is|header\.file_size"):
        load(base()[:cut], "path", tmp_path)


def test_padded_file() -> None:
    with pytest.raises(FormatError, match=r"header\.file_size: .*truncated or padded"):
        Session(base() + bytes(64), threads=1)


# ----------------------------------------------------------------------------- API: model arg


def test_valid_model_sources(tmp_path: Path) -> None:
    path = tmp_path / "m.bspc"
    path.write_bytes(base())
    reference = Session(base(), threads=1).run(frames(4))
    for model in (bytearray(base()), memoryview(base()), path, str(path)):
        np.testing.assert_array_equal(Session(model, threads=1).run(frames(4)), reference)


def test_nonexistent_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.bspc"
    for model in (missing, str(missing)):
        with pytest.raises(FileNotFoundError, match=r"nope\.bspc"):
            Session(model)


def test_directory_path(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not a regular file") as excinfo:
        Session(tmp_path)
    assert not isinstance(excinfo.value, (FileNotFoundError, FormatError))


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_path() -> None:
    with pytest.raises(OSError, match="not a regular file"):
        Session("/dev/null")


def test_empty_file_path(tmp_path: Path) -> None:
    path = tmp_path / "empty.bspc"
    path.write_bytes(b"")
    with pytest.raises(FormatError, match=r"header: file is 0 bytes"):
        Session(path)


@pytest.mark.parametrize(
    "model",
    [1, 1.5, None, [1, 2], (b"BSPC",), np.zeros(4, np.uint8), {"path": "x"}],
    ids=lambda m: type(m).__name__,
)
def test_wrong_model_type(model: object) -> None:
    with pytest.raises(TypeError, match="model must be a path or the model's bytes"):
        Session(model)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "threads", [-1, 1.5, True, False, "2", 257, 2**31 - 1, -(2**40), 2**31, 2**63], ids=repr
)
def test_bad_threads(threads: object) -> None:
    # 2**31 and above do not fit the C++ int: they must still be a ValueError with a short
    # message, not pybind11's "incompatible constructor arguments" TypeError.
    with pytest.raises(ValueError, match="threads must be") as excinfo:
        Session(base(), threads=threads)  # type: ignore[arg-type]
    assert not isinstance(excinfo.value, FormatError)
    assert len(str(excinfo.value)) < 200


@pytest.mark.parametrize("threads", [None, 0, 1, 3])
def test_good_threads(threads: int | None) -> None:
    session = Session(base(), threads=threads)
    assert session.info["threads"] >= 1
    np.testing.assert_allclose(
        session.run(frames(9)), Session(base(), threads=1).run(frames(9)), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("isa", ["nosuch", "", "AVX2 ", "auto2"])
def test_unknown_isa(isa: str) -> None:
    available = rtmobile_rt.available_isas()
    assert available
    with pytest.raises(RuntimeError, match="available: " + ", ".join(available)) as excinfo:
        Session(base(), isa=isa)
    assert not isinstance(excinfo.value, ValueError)
    assert repr(isa) in str(excinfo.value)


@pytest.mark.parametrize("isa", ["scalar\x00junk", "auto\x00"], ids=["scalar-nul", "auto-nul"])
def test_isa_with_nul_byte_is_rejected(isa: str) -> None:
    # A name with an embedded NUL is not an available ISA, even if its C-string prefix is.
    with pytest.raises(ValueError, match="NUL"):
        Session(base(), isa=isa)


def test_isa_not_a_string() -> None:
    with pytest.raises(TypeError, match="isa must be a string"):
        Session(base(), isa=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("isa", ["auto", *rtmobile_rt.available_isas()])
def test_every_available_isa_loads(isa: str) -> None:
    session = Session(base(), threads=1, isa=isa)
    assert session.run(frames(3)).shape == (3, OUTPUT_DIM)


# ----------------------------------------------------------------------------- API: frames


@pytest.fixture(scope="module")
def session() -> Session:
    return Session(model_bytes(num_layers=2, norm=True), threads=1)


def _runners(session: Session) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    return {"run": session.run, "push": lambda x: session.stream().push(x)}


_BAD_SHAPES = [
    (INPUT_DIM,),
    (3, INPUT_DIM - 1),
    (3, INPUT_DIM + 1),
    (0,),
    (2, 3, INPUT_DIM),
    (1, 1, 1),
    (),
    (INPUT_DIM, 3),
]


@pytest.mark.parametrize("how", ["run", "push"])
@pytest.mark.parametrize("shape", _BAD_SHAPES, ids=str)
def test_frames_wrong_shape(session: Session, how: str, shape: tuple[int, ...]) -> None:
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=rf"shape \[T, {INPUT_DIM}\].*got shape") as excinfo:
        _runners(session)[how](x)
    assert str(tuple(shape)) in str(excinfo.value)


_BAD_DTYPES: dict[str, Callable[[], object]] = {
    "str": lambda: np.full((2, INPUT_DIM), "a"),
    "bytes": lambda: np.full((2, INPUT_DIM), b"a"),
    "object": lambda: np.array([[object()] * INPUT_DIM] * 2, dtype=object),
    "complex64": lambda: np.zeros((2, INPUT_DIM), np.complex64),
    "complex128": lambda: np.zeros((2, INPUT_DIM), np.complex128),
    "bool": lambda: np.zeros((2, INPUT_DIM), bool),
    "datetime64": lambda: np.zeros((2, INPUT_DIM), "datetime64[s]"),
    "python-str": lambda: "frames",
    "none": lambda: None,
}


@pytest.mark.parametrize("how", ["run", "push"])
@pytest.mark.parametrize("kind", list(_BAD_DTYPES))
def test_frames_wrong_dtype(session: Session, how: str, kind: str) -> None:
    with pytest.raises(TypeError, match="frames must be a real numeric array"):
        _runners(session)[how](_BAD_DTYPES[kind]())  # type: ignore[arg-type]


def _converted_inputs(x: np.ndarray) -> dict[str, object]:
    """Inputs equal in value to ``x`` (float32 [T, F]) but not float32 C-contiguous."""
    wide = np.zeros((2 * x.shape[0], 3 * INPUT_DIM), np.float32)
    wide[::2, ::3] = x
    side = np.zeros((x.shape[0], 2 * INPUT_DIM), np.float32)
    side[:, INPUT_DIM:] = x
    return {
        "float64": x.astype(np.float64),
        "transposed": np.ascontiguousarray(x.T).T,
        "strided": wide[::2, ::3],
        "column-slice": side[:, INPUT_DIM:],
        "reversed": np.ascontiguousarray(x[::-1])[::-1],
        "list": x.tolist(),
        "big-endian": x.astype(">f4"),
    }


@pytest.mark.parametrize("how", ["run", "push"])
def test_converted_inputs_give_same_logits(session: Session, how: str) -> None:
    run = _runners(session)[how]
    x = frames(11, seed=3)
    reference = run(x)
    assert reference.dtype == np.float32 and reference.shape == (11, OUTPUT_DIM)
    for name, value in _converted_inputs(x).items():
        if isinstance(value, np.ndarray) and name not in ("float64", "big-endian"):
            assert not value.flags.c_contiguous, name
        np.testing.assert_array_equal(run(value), reference, err_msg=name)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["run", "push"])
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64])
def test_integer_inputs_give_same_logits(session: Session, how: str, dtype: type) -> None:
    run = _runners(session)[how]
    x = np.random.default_rng(4).integers(0, 5, (7, INPUT_DIM)).astype(dtype)
    np.testing.assert_array_equal(run(x), run(x.astype(np.float32)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_empty_input(session: Session, dtype: type) -> None:
    x = np.zeros((0, INPUT_DIM), dtype)
    out = session.run(x)
    assert out.shape == (0, OUTPUT_DIM) and out.dtype == np.float32
    stream = session.stream()
    out = stream.push(x)
    assert out.shape == (0, OUTPUT_DIM) and out.dtype == np.float32
    assert stream.frames_seen == 0
    # An empty push in the middle of a stream changes nothing.
    y = frames(6, seed=5)
    stream.push(y[:2])
    stream.push(x)
    stream.push(y[2:2])
    np.testing.assert_array_equal(stream.push(y[2:]), session.run(y)[2:])
    assert stream.frames_seen == 6


def test_stream_chunks_with_converted_dtypes_match_run(session: Session) -> None:
    x = frames(10, seed=6)
    stream = session.stream()
    parts = [
        stream.push(x[:3].astype(np.float64)),
        stream.push(np.asfortranarray(x[3:7])),
        stream.push(x[7:].tolist()),
    ]
    np.testing.assert_array_equal(np.concatenate(parts), session.run(x))


def test_bad_input_does_not_disturb_stream(session: Session) -> None:
    x = frames(8, seed=7)
    stream = session.stream()
    first = stream.push(x[:4])
    for bad in (np.zeros((2, INPUT_DIM + 1), np.float32), np.zeros((2, INPUT_DIM), complex)):
        with pytest.raises((ValueError, TypeError)):
            stream.push(bad)
    assert stream.frames_seen == 4
    np.testing.assert_array_equal(np.concatenate([first, stream.push(x[4:])]), session.run(x))


# ----------------------------------------------------------------------------- fuzzing


def _structural_positions(data: bytes) -> np.ndarray:
    """Byte positions outside the float payloads (values arrays, biases, NORM floats)."""
    mask = np.ones(len(data), bool)
    for e in read_directory(data):
        if e.type == MATRIX:
            m = matrix_layout(data, e.index)
            mask[m.offsets["values"] : e.offset + e.size] = False
        elif e.type == VECTOR:
            mask[e.offset + 16 : e.offset + e.size] = False
        elif e.type == NORM:
            mask[e.offset + 8 : e.offset + e.size] = False
    return np.flatnonzero(mask)


# Where a FormatError may point: every message starts with the file part it is about.
_LOCATION = re.compile(r"^(header|directory|file|MODEL|LABELS|NORM|MATRIX|VECTOR|METADATA)\b")


def _load_or_format_error(data: bytes) -> bool:
    """True if the model loads and runs to finite logits; False on a FormatError that names
    where the damage is; anything else propagates."""
    try:
        session = Session(data, threads=1)
    except FormatError as e:
        assert _LOCATION.match(str(e)), f"message names no part of the file: {e}"
        return False
    out = session.run(frames(3))
    assert out.shape == (3, session.output_dim) and np.isfinite(out).all()
    stream = session.stream()
    assert stream.push(frames(2)).shape == (2, session.output_dim)
    return True


def _padding_positions(data: bytes) -> np.ndarray:
    """Byte positions of the zero padding: between sections and between a matrix's arrays."""
    mask = np.zeros(len(data), bool)
    entries = sorted(read_directory(data), key=lambda e: e.offset)
    end = entry_pos(len(entries))
    for e in entries:
        mask[end : e.offset] = True
        end = e.offset + e.size
        if e.type == MATRIX:
            m = matrix_layout(data, e.index)
            counts = [
                m.num_r + 1,
                m.num_c + 1,
                m.rows,
                m.num_r * m.num_c + 1,
                m.col_index_count,
                m.num_r * m.num_c + 1,
                m.row_index_count,
            ]
            for name, following, count in zip(_ARRAY_NAMES, _ARRAY_NAMES[1:], counts, strict=False):
                mask[m.offsets[name] + 4 * count : m.offsets[following]] = True
    mask[end:] = True
    return np.flatnonzero(mask)


_FUZZ_MODELS: dict[str, Callable[[], bytes]] = {
    "gru1-f32": base,
    "gru1-f32-norm": lambda: model_bytes(norm=True),
    "gru2-f16": lambda: model_bytes(num_layers=2, dtype="f16"),
}


@pytest.mark.parametrize("region", ["anywhere", "structural"])
@pytest.mark.parametrize("model", list(_FUZZ_MODELS))
def test_fuzz_single_byte_corruption(model: str, region: str) -> None:
    """Random single-byte flips, checksum fixed so they reach the deep checks: each one either
    loads and runs to finite logits or is a FormatError naming the part of the file, never
    anything else; padding is never accepted; the structural bytes are mostly rejected."""
    data = _FUZZ_MODELS[model]()
    seed = 2024 + 10 * list(_FUZZ_MODELS).index(model) + (region == "structural")
    rng = np.random.default_rng(seed)
    positions = np.arange(len(data)) if region == "anywhere" else _structural_positions(data)
    padding = set(_padding_positions(data).tolist())
    accepted: list[int] = []
    for _ in range(150):
        pos = int(rng.choice(positions))
        buf = bytearray(data)
        buf[pos] ^= int(rng.integers(1, 256))
        corrupted = recompute_checksum(bytes(buf))
        try:
            if _load_or_format_error(corrupted):
                accepted.append(pos)
        except Exception as e:  # pragma: no cover - reported with the reproducer
            pytest.fail(f"byte {pos} -> {buf[pos]:#04x}: {type(e).__name__}: {e}")
    assert not padding.intersection(accepted), "a nonzero padding byte was accepted"
    if region == "structural":
        # Structural bytes that may change and stay valid: label text, a kept column or row
        # index moved to another valid one. Most flips break a rule.
        assert len(accepted) < 150 // 3, f"{len(accepted)} of 150 structural flips accepted"


@pytest.mark.parametrize("model", list(_FUZZ_MODELS))
def test_every_padding_byte_is_checked(model: str) -> None:
    data = _FUZZ_MODELS[model]()
    positions = _padding_positions(data)
    assert len(positions) > 64  # the layout does have padding to check
    for pos in positions.tolist():
        buf = bytearray(data)
        buf[pos] = 0x01
        with pytest.raises(FormatError, match=r"padding .*must be zero|must be zero padding"):
            Session(recompute_checksum(bytes(buf)), threads=1)


def test_every_header_and_directory_byte() -> None:
    data = base()
    end = entry_pos(read_header(data).section_count)
    for pos in range(end):
        for flip in (0x01, 0x80, 0xFF):
            buf = bytearray(data)
            buf[pos] ^= flip
            for fixed in (False, True):
                candidate = recompute_checksum(bytes(buf)) if fixed else bytes(buf)
                try:
                    loaded = _load_or_format_error(candidate)
                except Exception as e:  # pragma: no cover - reported with the reproducer
                    pytest.fail(f"byte {pos} ^ {flip:#04x}: {type(e).__name__}: {e}")
                # Every header and directory byte is checked, except the minor version, and
                # the checksum field once the checksum is recomputed.
                allowed = pos in (10, 11) or (fixed and 36 <= pos < 40)
                assert loaded == allowed, f"byte {pos} ^ {flip:#04x} (checksum fixed: {fixed})"


def test_os_error_types_are_distinct(tmp_path: Path) -> None:
    # Sanity: a FormatError from a path is not an OSError (callers can tell I/O from content).
    path = tmp_path / "bad.bspc"
    path.write_bytes(patch(base(), 0, "8s", bytes(8)))
    with pytest.raises(FormatError) as excinfo:
        Session(os.fspath(path))
    assert not isinstance(excinfo.value, OSError)


def test_unknown_device_is_rejected() -> None:
    with pytest.raises(RuntimeError, match="device 'tpu' is not available"):
        Session(base(), device="tpu")


def test_metadata_section_round_trips_and_is_validated() -> None:
    rng = np.random.default_rng(1)
    layers = [
        LayerWeights(
            rng.standard_normal((24, 5)).astype(np.float32),
            rng.standard_normal((24, 8)).astype(np.float32),
            np.zeros(24, np.float32),
            np.zeros(24, np.float32),
        )
    ]
    out_w, out_b = rng.standard_normal((3, 8)).astype(np.float32), np.zeros(3, np.float32)
    meta = {"features": {"num_mel_bins": 40, "context": [5, 5]}, "name": "é"}
    data = encode_bspc(layers, out_w, out_b, metadata=meta)
    assert Session(data).metadata == meta
    assert Session(encode_bspc(layers, out_w, out_b)).metadata == {}
    with pytest.raises(ValueError, match="JSON"):
        encode_bspc(layers, out_w, out_b, metadata={"x": float("nan")})
    # Corrupt the metadata text into invalid UTF-8: the reader names the section.
    entry = next(e for e in read_directory(data) if e.type == 6)
    bad = bytearray(data)
    bad[entry.offset] = 0xFF
    with pytest.raises(FormatError, match=r"METADATA\[0\]: not valid UTF-8"):
        Session(recompute_checksum(bytes(bad)))
