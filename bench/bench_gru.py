"""RTMobile Table II / Fig. 4 on this CPU: the BSP GRU runtime against dense and CSR peers.

Model: the paper's 2-layer GRU (input 440, hidden 960, about 9.6M weights) with a linear output
to 40 classes and random weights (speed depends on the sparsity structure, not the values).
Every weight matrix (both GRU layers and the output layer) is BSP-pruned with the paper's block
shape, Num_r = 32 strips x Num_c = 4 column blocks, to the paper's compression rates. The
column/row split follows Table I of the paper (row rate = rate / column rate):

    rate  1x   10x  19x   29x   43x   80x  103x  153x  245x   301x
    col   1    10   16    16    16    20   16    20    20     20
    row   1    1    1.19  1.81  2.69  4    6.44  7.65  12.25  15.05

(Table I's own row column does not always multiply out to its overall rate, e.g. 16 x 5 for
43x; we keep its column rates and derive the row rate.) Because Algorithm 1's step 2 ranks rows
on the column-pruned matrix, the kept rows concentrate where the kept columns are and the
achieved rate falls short of col x row; by default the row rate is therefore calibrated (binary
search on this model's weights) so that the achieved rate (all dense weights / nonzeros) is as
close as the keep-count rounding allows to the nominal rate. ``--no-calibrate`` uses rate / col.

Engines (all fp32 unless named; each at every ``--threads`` value):
  * rtmobile fp32 at every rate (rate 1x is our own dense path), rtmobile fp16 weights at
    ``--fp16-rates`` (default dense and 10x);
  * torch.nn.GRU + nn.Linear, dense (torch.set_num_threads);
  * ONNX Runtime: a GRU node (linear_before_reset=1, gates reordered to z,r,h) + MatMul/Add,
    dense, intra_op_num_threads = threads; checked against torch at startup;
  * scipy.sparse.csr_matrix and torch.sparse_csr_tensor (int32 indices) at each rate, holding
    the same nonzeros as the rtmobile model of that rate, inside a Python GRU step loop
    (scipy is single-threaded whatever ``--threads`` says).

Metrics, per engine, rate and thread count: streaming latency (batch 1, one frame per call,
state carried) and offline throughput (one call over T frames), both in us per frame.
GOP/frame = 2 x nonzero weights / 1e9; "GOP/s" is real work (nonzeros), "eff. GOP/s" the dense
equivalent (9.6M weights) per second. Samples are interleaved round-robin across engines (per
thread count, start rotated every repeat) so that ratios come from the same time window; the
tables quote medians. A case whose sample would exceed ``--max-sample-seconds`` is timed on
fewer frames (the "frames" column of the all-engines table says how many).

Roofline (a read-stream roofline at each case's own working set): bench/cpp/roofline.cc (built
here with cmake + ninja, -O3 -march=native) measures a read-only stream (the sum of one array, 4
concurrent streams per thread), a STREAM-like triad for reference, and the FMA peak, at each
thread count. The kernels only read their weights, and a read stream runs at or above the triad
(no stores, no uncounted write-allocate traffic), so the read stream is the memory roof.

  * Caches, checked: the read bandwidth is swept over working sets of powers of 2 from 64 KiB to
    4 x the L3 sysfs reports (at least 1 GiB; ``--sweep-max-mb``). Where the bandwidth drops
    (a "knee": a working set at least 1.25x faster than every larger one) gives the measured
    sizes. The sysfs L3 is implausible when it is over 64 MiB per CPU or when working sets of a
    quarter to a half of it already read at DRAM speed (a 2-vCPU Xeon VM reported 480 MiB, and
    both old probes sat inside it: "L3" = "DRAM" = 18 GB/s); then the measured knee is used,
    and the table says so. Both reported and measured sizes are in the table.
  * Bytes, as the kernels read them: rtmobile's own count for each session
    (``Session.info['matrices'][i]['read_bytes']``: values including the zero rows that pad each
    piece to whole panels (16 rows, an 8-row panel for a short tail), plus the index arrays one
    product reads; fp16 and each thread partition from its own session); CSR: values + column
    indices + row pointers; dense: 4 bytes a weight. Streaming reads every matrix every frame.
    Offline reads each W_hh every frame (the recurrence) but W_ih and W_out batched: rtmobile once
    per ``frame_tile`` (16) frames within each ``chunk_frames`` chunk, the peers once per call
    (torch.nn.GRU on CPU, ONNX Runtime's GRU and the CSR loops compute the input projections of
    all T frames in one GEMM/SpMM, and the output layer too; a GEMM's re-reads of cached weight
    blocks are not counted, which can only raise their bound).
  * Bandwidth at the working set: streaming reads the whole model per frame, so its working set
    is the whole model; offline each phase (a W_hh, reused frame after frame; a W_ih or W_out)
    has its own, and the memory time per frame is the sum of bytes / bandwidth over the phases.
    Each working set (within 1.1%; at least 8 KiB per thread) is measured by the probe after the
    timings. bound = min(FMA peak, flops / memory time) = min(peak, bandwidth x intensity),
    intensity = 2 x nonzeros / bytes read. "% roofline" is real GOP/s over that bound (marked
    ``!`` over 100: a byte count or a probe would be wrong); "% DRAM roofline" reads every byte
    at the DRAM read stream, measured over at least 4 x the L3 used (``--dram-mb``), and names
    the cache level holding the working set when it is over 100.

Contention (``--contention``, on by default, off with ``--smoke`` unless given): runs
bench/bench_contention.py at these thread counts and adds its "Streaming under contention"
table (each engine quiet, then beside a CPU-bound process) to table2.md and results.json.

Outputs (``--out``): table2.md, fig4.png, results.json (all raw samples).

    python bench/bench_gru.py                      # full run (minutes; use a quiet machine)
    python bench/bench_gru.py --smoke --out /tmp/b # tiny model, seconds; checks the plumbing
    python bench/bench_gru.py --smoke --contention # ... and the contention section
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import hashlib
import io
import itertools
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

PAPER_DIMS = (440, 960, 2, 40)  # input, hidden, layers, classes
SMOKE_DIMS = (20, 32, 2, 8)
BLOCKS = (32, 4)  # Num_r, Num_c (the paper: Num_r <= 32, Num_c <= 4)
PAPER_RATES = (1.0, 10.0, 19.0, 29.0, 43.0, 80.0, 103.0, 153.0, 245.0, 301.0)
SMOKE_RATES = (1.0, 10.0)
# Column compression rate per overall rate, after Table I of the paper.
PAPER_COL_RATE = {
    1.0: 1.0,
    10.0: 10.0,
    19.0: 16.0,
    29.0: 16.0,
    43.0: 16.0,
    80.0: 20.0,
    103.0: 16.0,
    153.0: 20.0,
    245.0: 20.0,
    301.0: 20.0,
}
# Table II, mobile CPU column: rate -> (GOP, us/frame, GOP/s), for reference only.
PAPER_TABLE2_CPU = {
    1.0: (0.58, 7130.00, 81.35),
    10.0: (0.058, 1210.20, 47.93),
    19.0: (0.033, 709.33, 46.52),
    29.0: (0.0207, 464.73, 44.43),
    43.0: (0.0143, 344.77, 41.48),
    80.0: (0.008, 218.01, 36.70),
    103.0: (0.006, 202.72, 29.59),
    153.0: (0.0039, 170.74, 22.84),
    245.0: (0.0028, 151.28, 18.51),
    301.0: (0.002, 145.93, 13.71),
}

ENGINE_IDS = ("rtmobile", "rtmobile-fp16", "torch", "onnxruntime", "scipy-csr", "torch-csr")
LABEL = {
    "rtmobile": "rtmobile fp32",
    "rtmobile-fp16": "rtmobile fp16",
    "torch": "torch.nn.GRU dense",
    "onnxruntime": "onnxruntime GRU dense",
    "scipy-csr": "scipy CSR",
    "torch-csr": "torch CSR",
}
MODES = ("streaming", "offline")
VERIFY_TOL = 1e-3
FP16_TOL = 2e-2  # relative to max |logit|: fp16 weights round to 11 significant bits


def fail(msg: str) -> SystemExit:
    """A SystemExit carrying an error line, so a wrong engine is never timed."""
    return SystemExit(f"bench_gru: error: {msg}")


# ----------------------------------------------------------------------------- model and masks


@dataclass
class DenseModel:
    """Dense GRU stack + linear weights in torch layout (gate order r, z, n)."""

    input_dim: int
    hidden: int
    layers: int
    classes: int
    w: dict[str, np.ndarray]
    b: dict[str, np.ndarray]

    @property
    def matrix_names(self) -> list[str]:
        return [*(f"l{k}.w_{s}" for k in range(self.layers) for s in ("ih", "hh")), "out.w"]

    @property
    def dense_params(self) -> int:
        return sum(int(self.w[n].size) for n in self.matrix_names)


def random_dense_model(
    input_dim: int, hidden: int, layers: int, classes: int, seed: int
) -> DenseModel:
    """N(0, 1/hidden) weights with no exact zeros, so pruned support == BSP mask."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / math.sqrt(hidden)

    def mat(rows: int, cols: int) -> np.ndarray:
        m = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
        m[m == 0] = np.float32(scale)
        return m

    def vec(n: int) -> np.ndarray:
        return (rng.standard_normal(n) * scale).astype(np.float32)

    w: dict[str, np.ndarray] = {}
    b: dict[str, np.ndarray] = {}
    in_dim = input_dim
    for k in range(layers):
        w[f"l{k}.w_ih"], w[f"l{k}.w_hh"] = mat(3 * hidden, in_dim), mat(3 * hidden, hidden)
        b[f"l{k}.b_ih"], b[f"l{k}.b_hh"] = vec(3 * hidden), vec(3 * hidden)
        in_dim = hidden
    w["out.w"], b["out.b"] = mat(classes, hidden), vec(classes)
    return DenseModel(input_dim, hidden, layers, classes, w, b)


def blocks_for(shape: tuple[int, ...]) -> tuple[int, int]:
    return min(BLOCKS[0], shape[0]), min(BLOCKS[1], shape[1])


def col_rate_for(rate: float) -> float:
    """Table I's column rate for the paper's rates; for others the nearest such rule."""
    if rate in PAPER_COL_RATE:
        return PAPER_COL_RATE[rate]
    if rate <= 16.0:
        return rate
    return 16.0 if rate < 80.0 else 20.0


@dataclass
class Split:
    """How one nominal rate was cut into column and row pruning, and what it achieved."""

    rate: float
    col_rate: float
    row_rate_nominal: float
    row_rate: float
    nonzeros: int
    dense: int

    @property
    def achieved(self) -> float:
        return self.dense / max(1, self.nonzeros)


class _RowProfile:
    """nnz of one matrix as a function of the step-2 row sparsity, for a fixed column mask.

    Step 2's row ranking does not depend on the row sparsity, so ``bsp.kept_by_row_keep`` gives
    the nonzeros for every keep count at once; calibrating the row rate then costs no extra mask
    passes.
    """

    def __init__(self, w: np.ndarray, col_sparsity: float) -> None:
        from rtmobile_train.bsp import kept_by_row_keep

        num_r, num_c = blocks_for(w.shape)
        self.rows = w.shape[0]
        self.kept = kept_by_row_keep(w, num_r, num_c, col_sparsity)

    def nnz(self, row_sparsity: float) -> int:
        from rtmobile_train.bsp import keep_count

        return int(self.kept[keep_count(self.rows, row_sparsity)])


def make_split(model: DenseModel, rate: float, calibrate: bool) -> tuple[Split, dict[str, Any]]:
    """Choose the row rate for ``rate`` and return the split with the final BSP masks."""
    from rtmobile_train.bsp import bsp_mask, sparsities_for_rate

    col = col_rate_for(rate)
    row_nominal = max(1.0, rate / col)
    row = row_nominal
    if calibrate and rate > 1.0:
        col_sparsity, _ = sparsities_for_rate(col * 1.0, col_rate=col)
        profiles = [_RowProfile(model.w[n], col_sparsity) for n in model.matrix_names]
        target = model.dense_params / rate

        def nnz(r: float) -> int:
            _, rs = sparsities_for_rate(col * r, col_rate=col)
            return sum(p.nnz(rs) for p in profiles)

        lo, hi = 1.0, max(2.0, 4.0 * row_nominal)
        while nnz(hi) > target and hi < 1e6:
            hi *= 2.0
        best = min((lo, hi), key=lambda r: abs(nnz(r) - target))
        if nnz(lo) > target:
            for _ in range(60):
                mid = math.sqrt(lo * hi)
                if abs(nnz(mid) - target) < abs(nnz(best) - target):
                    best = mid
                if nnz(mid) > target:
                    lo = mid
                else:
                    hi = mid
        else:
            best = 1.0
        row = best
    col_sparsity, row_sparsity = sparsities_for_rate(col * row, col_rate=col)
    masks: dict[str, np.ndarray] = {}
    for n in model.matrix_names:
        num_r, num_c = blocks_for(model.w[n].shape)
        masks[n] = bsp_mask(model.w[n], num_r, num_c, col_sparsity, row_sparsity)
    nonzeros = int(sum(int(m.sum()) for m in masks.values()))
    return Split(rate, col, row_nominal, row, nonzeros, model.dense_params), masks


def pruned(model: DenseModel, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {n: np.where(masks[n], model.w[n], np.float32(0)) for n in model.matrix_names}


def encode(
    model: DenseModel, w: dict[str, np.ndarray], masks: dict[str, np.ndarray], dtype: str
) -> tuple[bytes, dict[str, Any]]:
    """BSPC bytes of the pruned model, plus the writer's size statistics."""
    from rtmobile_train.bspc import LayerWeights, encode_bspc_with_stats

    layers = [
        LayerWeights(w[f"l{k}.w_ih"], w[f"l{k}.w_hh"], model.b[f"l{k}.b_ih"], model.b[f"l{k}.b_hh"])
        for k in range(model.layers)
    ]
    return encode_bspc_with_stats(
        layers,
        w["out.w"],
        model.b["out.b"],
        kind="gru",
        blocks={n: blocks_for(w[n].shape) for n in model.matrix_names},
        dtype=dtype,  # type: ignore[arg-type]
        masks=masks,
    )


# ----------------------------------------------------------------------------- engines


class Engine(Protocol):
    """What the timing loop needs: streaming steps with carried state, and offline runs."""

    def reset(self) -> None: ...

    def step(self, frame: np.ndarray) -> np.ndarray: ...

    def run(self, frames: np.ndarray) -> np.ndarray: ...


class RtmEngine:
    """rtmobile_rt.Session: run() offline, one Stream pushed one frame at a time."""

    def __init__(self, data: bytes, threads: int | None) -> None:
        """``threads=None``: the runtime's own thread choice (what ``Session(model)`` does)."""
        import inspect

        import rtmobile_rt

        # Time the runtime's defaults, not a tuning file that happens to be on this machine.
        params = inspect.signature(rtmobile_rt.Session).parameters
        extra: dict[str, Any] = {"tuning": None} if "tuning" in params else {}
        self.session = rtmobile_rt.Session(data, threads=threads, **extra)
        self._stream = self.session.stream()
        self.info = {k: v for k, v in self.session.info.items() if k not in ("matrices", "labels")}
        # Per matrix: shape, dtype, stored/packed values and read_bytes of this session.
        self.matrices: list[dict[str, Any]] = list(self.session.info["matrices"])

    def reset(self) -> None:
        self._stream.reset()

    def step(self, frame: np.ndarray) -> np.ndarray:
        return self._stream.push(frame)

    def run(self, frames: np.ndarray) -> np.ndarray:
        return self.session.run(frames)


class TorchDenseEngine:
    """torch.nn.GRU + nn.Linear; streaming steps one frame with the hidden state."""

    def __init__(self, model: DenseModel) -> None:
        import torch

        self.torch = torch
        self.gru = torch.nn.GRU(model.input_dim, model.hidden, model.layers, batch_first=True)
        self.linear = torch.nn.Linear(model.hidden, model.classes)
        with torch.no_grad():
            for k in range(model.layers):
                for s in ("ih", "hh"):
                    getattr(self.gru, f"weight_{s}_l{k}").copy_(
                        torch.from_numpy(model.w[f"l{k}.w_{s}"])
                    )
                    getattr(self.gru, f"bias_{s}_l{k}").copy_(
                        torch.from_numpy(model.b[f"l{k}.b_{s}"])
                    )
            self.linear.weight.copy_(torch.from_numpy(model.w["out.w"]))
            self.linear.bias.copy_(torch.from_numpy(model.b["out.b"]))
        self.gru.eval()
        self.linear.eval()
        self._h: Any = None

    def reset(self) -> None:
        self._h = None

    def step(self, frame: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out, self._h = self.gru(self.torch.from_numpy(frame)[None], self._h)
            return self.linear(out)[0].numpy()

    def run(self, frames: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out, _ = self.gru(self.torch.from_numpy(frames)[None])
            return self.linear(out)[0].numpy()


def onnx_gru_model(model: DenseModel) -> bytes:
    """A 2-layer (``model.layers``) ONNX GRU graph with torch semantics, serialized.

    Inputs x [T, 1, F] and h0_l{k} [1, 1, H]; outputs logits [T, 1, C] and h_l{k}. ONNX orders
    the gates z, r, h where torch has r, z, n; linear_before_reset=1 is torch's n-gate form.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, f, c = model.hidden, model.input_dim, model.classes

    def zrh(a: np.ndarray) -> np.ndarray:
        r, z, n = a[:h], a[h : 2 * h], a[2 * h :]
        return np.concatenate([z, r, n])

    inits: list[Any] = []
    nodes: list[Any] = []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 1, f])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["T", 1, c])]
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
    x = "x"
    for k in range(model.layers):
        w = zrh(model.w[f"l{k}.w_ih"])[None]
        r = zrh(model.w[f"l{k}.w_hh"])[None]
        bias = np.concatenate([zrh(model.b[f"l{k}.b_ih"]), zrh(model.b[f"l{k}.b_hh"])])[None]
        inits += [
            numpy_helper.from_array(np.ascontiguousarray(w, dtype=np.float32), f"W{k}"),
            numpy_helper.from_array(np.ascontiguousarray(r, dtype=np.float32), f"R{k}"),
            numpy_helper.from_array(np.ascontiguousarray(bias, dtype=np.float32), f"B{k}"),
        ]
        inputs.append(helper.make_tensor_value_info(f"h0_l{k}", TensorProto.FLOAT, [1, 1, h]))
        outputs.append(helper.make_tensor_value_info(f"h_l{k}", TensorProto.FLOAT, [1, 1, h]))
        nodes.append(
            helper.make_node(
                "GRU",
                [x, f"W{k}", f"R{k}", f"B{k}", "", f"h0_l{k}"],
                [f"Y{k}", f"h_l{k}"],
                hidden_size=h,
                linear_before_reset=1,
            )
        )
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", "axis1"], [f"Y{k}s"]))
        x = f"Y{k}s"
    inits += [
        numpy_helper.from_array(np.ascontiguousarray(model.w["out.w"].T), "Wout_t"),
        numpy_helper.from_array(model.b["out.b"], "bout"),
    ]
    nodes += [
        helper.make_node("MatMul", [x, "Wout_t"], ["lin"]),
        helper.make_node("Add", ["lin", "bout"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "rtmobile_bench_gru", inputs, outputs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


class OrtEngine:
    """ONNX Runtime CPU session of :func:`onnx_gru_model`; streaming feeds the state back."""

    def __init__(self, onnx_bytes: bytes, model: DenseModel, threads: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        self._names = [f"h0_l{k}" for k in range(model.layers)]
        self._outs = ["logits", *(f"h_l{k}" for k in range(model.layers))]
        self._zero = [np.zeros((1, 1, model.hidden), np.float32) for _ in self._names]
        self._h = list(self._zero)

    def reset(self) -> None:
        self._h = list(self._zero)

    def step(self, frame: np.ndarray) -> np.ndarray:
        feed = {"x": frame[:, None, :], **dict(zip(self._names, self._h, strict=True))}
        out = self.sess.run(self._outs, feed)
        self._h = out[1:]
        return out[0][:, 0, :]

    def run(self, frames: np.ndarray) -> np.ndarray:
        feed = {"x": frames[:, None, :], **dict(zip(self._names, self._zero, strict=True))}
        return self.sess.run(self._outs[:1], feed)[0][:, 0, :]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class ScipyCsrEngine:
    """scipy.sparse CSR weights in a Python GRU loop; offline batches the input projection."""

    def __init__(self, model: DenseModel, w: dict[str, np.ndarray]) -> None:
        import scipy.sparse as sp

        self.h_dim, self.layers = model.hidden, model.layers
        self.m = {n: sp.csr_matrix(w[n]) for n in model.matrix_names}
        self.b = model.b
        # A CSR product reads every value, its column index and the row pointers.
        self.traffic = Traffic(
            {n: int(a.data.nbytes + a.indices.nbytes + a.indptr.nbytes) for n, a in self.m.items()},
            "CSR values + indices + row pointers; offline W_ih, W_out once per call (one SpMM)",
        )
        self.nonzeros = sum(int(a.nnz) for a in self.m.values())
        self.reset()

    def reset(self) -> None:
        self._h = [np.zeros(self.h_dim, np.float32) for _ in range(self.layers)]

    def _cell(self, gi: np.ndarray, h: np.ndarray, k: int) -> np.ndarray:
        H = self.h_dim
        gh = self.m[f"l{k}.w_hh"] @ h + self.b[f"l{k}.b_hh"]
        r = _sigmoid(gi[:H] + gh[:H])
        z = _sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
        n = np.tanh(gi[2 * H :] + r * gh[2 * H :])
        return n + z * (h - n)

    def step(self, frame: np.ndarray) -> np.ndarray:
        x = frame[0]
        for k in range(self.layers):
            gi = self.m[f"l{k}.w_ih"] @ x + self.b[f"l{k}.b_ih"]
            x = self._h[k] = self._cell(gi, self._h[k], k)
        return (self.m["out.w"] @ x + self.b["out.b"])[None]

    def run(self, frames: np.ndarray) -> np.ndarray:
        x = frames
        for k in range(self.layers):
            gi_all = (self.m[f"l{k}.w_ih"] @ x.T).T + self.b[f"l{k}.b_ih"]
            h = np.zeros(self.h_dim, np.float32)
            hs = np.empty((len(frames), self.h_dim), np.float32)
            for t in range(len(frames)):
                h = hs[t] = self._cell(gi_all[t], h, k)
            x = hs
        return (self.m["out.w"] @ x.T).T + self.b["out.b"]


class TorchCsrEngine:
    """torch.sparse_csr_tensor weights (int32 indices) in a Python GRU loop."""

    def __init__(self, model: DenseModel, w: dict[str, np.ndarray]) -> None:
        import scipy.sparse as sp
        import torch

        self.torch = torch
        self.h_dim, self.layers = model.hidden, model.layers
        self.m: dict[str, Any] = {}
        matrix_bytes: dict[str, int] = {}
        self.nonzeros = 0
        for n in model.matrix_names:
            a = sp.csr_matrix(w[n])
            t = torch.sparse_csr_tensor(
                torch.from_numpy(a.indptr.astype(np.int32)),
                torch.from_numpy(a.indices.astype(np.int32)),
                torch.from_numpy(a.data.astype(np.float32)),
                size=a.shape,
                check_invariants=True,
            )
            self.m[n] = t
            self.nonzeros += int(a.nnz)
            matrix_bytes[n] = sum(
                int(x.numel() * x.element_size())
                for x in (t.values(), t.col_indices(), t.crow_indices())
            )
        self.traffic = Traffic(
            matrix_bytes,
            "CSR values + int32 indices + row pointers; offline W_ih, W_out once per call",
        )
        self.b = {n: torch.from_numpy(v) for n, v in model.b.items()}
        self.reset()

    def reset(self) -> None:
        self._h = [self.torch.zeros(self.h_dim) for _ in range(self.layers)]

    def _cell(self, gi: Any, h: Any, k: int) -> Any:
        torch, H = self.torch, self.h_dim
        gh = self.m[f"l{k}.w_hh"] @ h + self.b[f"l{k}.b_hh"]
        r = torch.sigmoid(gi[:H] + gh[:H])
        z = torch.sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
        n = torch.tanh(gi[2 * H :] + r * gh[2 * H :])
        return n + z * (h - n)

    def step(self, frame: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(frame[0])
            for k in range(self.layers):
                gi = self.m[f"l{k}.w_ih"] @ x + self.b[f"l{k}.b_ih"]
                x = self._h[k] = self._cell(gi, self._h[k], k)
            return (self.m["out.w"] @ x + self.b["out.b"])[None].numpy()

    def run(self, frames: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(frames)
            for k in range(self.layers):
                gi_all = (self.m[f"l{k}.w_ih"] @ x.T.contiguous()).T + self.b[f"l{k}.b_ih"]
                h = torch.zeros(self.h_dim)
                hs = []
                for t in range(len(frames)):
                    h = self._cell(gi_all[t], h, k)
                    hs.append(h)
                x = torch.stack(hs)
            return ((self.m["out.w"] @ x.T.contiguous()).T + self.b["out.b"]).numpy()


# ----------------------------------------------------------------------------- cases and timing


@dataclass
class Case:
    """One engine on one model at one thread count, with its raw samples per mode."""

    engine: str
    rate: float
    threads: int
    nonzeros: int
    dense_params: int
    traffic: Traffic
    impl: Engine
    frames: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})

    @property
    def key(self) -> str:
        return f"{self.engine}@{self.rate:g}x/t{self.threads}"

    def median(self, mode: str) -> float | None:
        s = self.samples.get(mode) or []
        return statistics.median(s) if s else None


def time_streaming(engine: Engine, rows: Sequence[np.ndarray], warmup: int) -> float:
    """us per frame over rows[warmup:], each pushed alone after a warm-up on rows[:warmup]."""
    engine.reset()
    for r in rows[:warmup]:
        engine.step(r)
    timed = rows[warmup:]
    t0 = time.perf_counter()
    for r in timed:
        engine.step(r)
    return (time.perf_counter() - t0) / len(timed) * 1e6


def time_offline(engine: Engine, frames: np.ndarray) -> float:
    t0 = time.perf_counter()
    engine.run(frames)
    return (time.perf_counter() - t0) / len(frames) * 1e6


def set_torch_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def measure(
    cases: list[Case], args: argparse.Namespace, x: np.ndarray, log: Callable[[str], None]
) -> None:
    """Warm up, size every case's sample, then take interleaved round-robin repeats."""
    rows = [x[t : t + 1] for t in range(len(x))]
    by_threads: dict[int, list[Case]] = {}
    for c in cases:
        by_threads.setdefault(c.threads, []).append(c)
    warm = args.warmup_frames
    for threads, group in by_threads.items():
        set_torch_threads(threads)
        for c in group:
            if "streaming" in args.modes:
                probe = min(args.stream_frames, 10)
                est = time_streaming(c.impl, rows[: warm + probe], warm)
                n = args.stream_frames
                if est * 1e-6 * n > args.max_sample_seconds:
                    n = max(min(n, 10), int(args.max_sample_seconds / (est * 1e-6)))
                c.frames["streaming"] = n
            if "offline" in args.modes:
                probe = min(args.offline_frames, 64)
                est = time_offline(c.impl, x[:probe])
                n = args.offline_frames
                if est * 1e-6 * n > args.max_sample_seconds:
                    n = max(min(n, 64), int(args.max_sample_seconds / (est * 1e-6)))
                c.frames["offline"] = n
    t_start = time.perf_counter()
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rep in range(args.repeats):
            for threads, group in by_threads.items():
                set_torch_threads(threads)
                k = rep % len(group)
                for c in group[k:] + group[:k]:
                    for mode in args.modes:
                        n = c.frames[mode]
                        if mode == "streaming":
                            s = time_streaming(c.impl, rows[: warm + n], warm)
                        else:
                            s = time_offline(c.impl, x[:n])
                        c.samples[mode].append(s)
            log(f"repeat {rep + 1}/{args.repeats} done, {time.perf_counter() - t_start:.1f} s")
    finally:
        if gc_was_enabled:
            gc.enable()


def verify(cases: list[Case], model: DenseModel, frames: np.ndarray) -> dict[str, float]:
    """Check every engine against its reference on a few frames; abort on disagreement.

    Dense peers against torch.nn.GRU (this catches a wrong ONNX gate order), the CSR engines
    and rtmobile against each other at every rate, streaming against offline, fp16 loosely.
    """
    errs: dict[str, float] = {}
    first = min(c.threads for c in cases)
    mine = [c for c in cases if c.threads == first]

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

    def streamed(c: Case) -> np.ndarray:
        c.impl.reset()
        out = np.concatenate([c.impl.step(frames[t : t + 1]) for t in range(len(frames))])
        c.impl.reset()
        return out

    torch_ref = TorchDenseEngine(model).run(frames)
    refs: dict[float, np.ndarray] = {1.0: torch_ref}
    for c in mine:
        if c.engine in ("rtmobile", "scipy-csr") and c.rate not in refs:
            refs[c.rate] = c.impl.run(frames)
    for c in mine:
        ref = refs.get(c.rate)
        if ref is None:
            continue
        off, stream = c.impl.run(frames), streamed(c)
        e = max(diff(off, ref), diff(stream, ref))
        errs[c.key] = e
        tol = VERIFY_TOL
        if c.engine == "rtmobile-fp16":
            tol = FP16_TOL * max(1.0, float(np.max(np.abs(ref))))
        if not e <= tol:
            what = (
                "the ONNX graph's gates (z,r,h order, linear_before_reset=1) or weights"
                if c.engine == "onnxruntime"
                else "the engine's weights or its GRU step"
            )
            raise fail(
                f"{LABEL[c.engine]} at {c.rate:g}x disagrees with the reference "
                f"({'torch.nn.GRU dense' if c.rate == 1.0 else 'the other engines'}) by "
                f"max |diff| = {e:.3g} > {tol:.3g} on {len(frames)} frames; check {what}"
            )
    return errs


# ----------------------------------------------------------------------------- bytes read


@dataclass(frozen=True)
class Phase:
    """One stream of weight reads in a frame: bytes per frame, and the bytes it cycles through
    between two reads of the same weight (the working set whose read bandwidth it gets)."""

    what: str
    bytes_per_frame: float
    working_set: int


@dataclass(frozen=True)
class Traffic:
    """What one engine reads from its weights, as its kernels read them.

    ``matrix_bytes``: bytes one product with each matrix reads (weights, padding and indices).
    Streaming reads every matrix once per frame. Offline reads each W_hh once per frame (the
    recurrence) but the input projections W_ih and the output layer W_out in batches: rtmobile
    once per ``frame_tile`` frames within each ``chunk_frames`` chunk, the peers once per call
    (one GEMM/SpMM over all T frames; ``frame_tile`` None).
    """

    matrix_bytes: dict[str, int]
    source: str
    frame_tile: int | None = None
    chunk_frames: int | None = None

    def batched_reads(self, frames: int) -> int:
        """How often an offline call over ``frames`` frames reads W_ih and W_out."""
        if self.frame_tile is None:
            return 1
        chunk = self.chunk_frames or frames
        return sum(-(-min(chunk, frames - c0) // self.frame_tile) for c0 in range(0, frames, chunk))


def rtm_traffic(engine: RtmEngine) -> Traffic:
    """The runtime's own count: per matrix ``read_bytes`` (packed values including the zero
    rows padding each piece to whole panels, 16 rows or 8 for a short tail, plus the index
    arrays one product reads) of this very session (its dtype and its thread partition)."""
    mb = {str(m["name"]): int(m.get("read_bytes", 0)) for m in engine.matrices}
    if not mb or min(mb.values()) <= 0:
        raise fail(
            "rtmobile_rt reports no read_bytes per matrix (Session.info['matrices']); "
            "rebuild and reinstall the runtime"
        )
    tile, chunk = int(engine.info["frame_tile"]), int(engine.info["chunk_frames"])
    return Traffic(
        mb,
        f"runtime read_bytes; W_ih, W_out once per {tile}-frame tile (chunks of {chunk})",
        frame_tile=tile,
        chunk_frames=chunk,
    )


def dense_traffic(model: DenseModel) -> Traffic:
    return Traffic(
        {n: 4 * int(model.w[n].size) for n in model.matrix_names},
        "4 bytes a dense weight; offline W_ih, W_out once per call (one GEMM over T frames)",
    )


def phases(traffic: Traffic, mode: str, frames: int) -> list[Phase]:
    """The weight reads of one frame: streaming reads the whole model every frame (one phase,
    its working set the whole model); offline (``frames`` per call) reads each W_hh every frame
    (working set: that matrix, reused frame after frame) and W_ih, W_out batched."""
    mb = traffic.matrix_bytes
    if mode == "streaming":
        total = sum(mb.values())
        return [Phase("every matrix", float(total), total)]
    reads = traffic.batched_reads(frames)
    return [
        Phase(n, float(b) if n.endswith("w_hh") else b * reads / frames, b) for n, b in mb.items()
    ]


def bytes_per_frame(traffic: Traffic, mode: str, frames: int) -> float:
    return sum(p.bytes_per_frame for p in phases(traffic, mode, frames))


# ----------------------------------------------------------------------------- caches


# A working set counts as held by a faster level when it reads at least this many times faster
# than every larger working set of the sweep.
KNEE_RATIO = 1.25
# More L3 than this per logical CPU is not a real cache (a VM's sysfs may report its host's
# whole package, or garbage: 480 MiB on a 2-vCPU Xeon VM).
MAX_L3_PER_CPU = 64 * 1024 * 1024


@dataclass(frozen=True)
class ReportedCaches:
    """Cache sizes as sysfs reports them (0 where unknown)."""

    l2_per_core: int
    l3: int
    cpus: int


@dataclass(frozen=True)
class CacheChoice:
    """The cache sizes the roofline uses, and why.

    ``measured_*``: knees of the read-bandwidth sweep (``find_knees``), None where none was seen;
    ``l2``/``l3``: the sizes used (L2 per core); ``l3_source``: "sysfs", "sysfs (unverified)",
    "measured" or "none"; ``note``: a sentence for the table when sysfs was not used as is.
    """

    reported: ReportedCaches
    measured_l2: int | None
    measured_l3: int | None
    l2: int
    l3: int
    l3_source: str
    note: str
    dram_gbs: float | None
    knees: tuple[int, ...]


def find_knees(curve: Sequence[tuple[int, float]], ratio: float = KNEE_RATIO) -> list[int]:
    """Working sets after which the read bandwidth falls, ascending.

    A point is in a faster level than everything after it when its bandwidth is at least
    ``ratio`` times that of every larger working set; of a run of such points (a gradual
    transition) the largest is the knee. A dip that recovers (noise) makes no knee, since a
    later point reads as fast again; nor does the next-to-last point, which only one (maybe
    noisy) sample follows.
    """
    pts = sorted(curve)
    knees: list[int] = []
    prev = -2
    for i in range(len(pts) - 2):
        later = max(g for _, g in pts[i + 1 :])
        if pts[i][1] >= ratio * later:
            if prev == i - 1 and knees:
                knees[-1] = pts[i][0]
            else:
                knees.append(pts[i][0])
            prev = i
    return knees


def choose_cache_sizes(
    reported: ReportedCaches, curve: Sequence[tuple[int, float]], threads: int = 1
) -> CacheChoice:
    """Sanity-check the sysfs cache sizes against a read-bandwidth sweep at ``threads`` threads
    (working set bytes, GB/s), and return the sizes to use.

    The DRAM bandwidth is that of the sweep's two largest working sets. The last knee beyond 2 x
    ``threads`` x the reported L2 is the measured L3 (the last-level cache); the last knee
    within that, divided by ``threads``, the measured L2 per core. The reported L3 is
    implausible when it exceeds ``MAX_L3_PER_CPU`` per CPU, or when the sweep reaches 2 x past
    it and the working sets of a quarter to a half of it (beyond the L2s) all read within
    ``KNEE_RATIO`` of the DRAM bandwidth; then the measured knee is used (no L3 at all when the
    sweep shows none). A sweep too short to reach 2 x the reported L3 cannot refute it:
    "sysfs (unverified)". The L2 is sysfs's, or the measured one where sysfs has none.
    """
    rep = reported
    pts = sorted((int(s), float(g)) for s, g in curve if g > 0)
    knees = tuple(find_knees(pts))
    l2_all = rep.l2_per_core * threads
    beyond_l2 = [k for k in knees if k > 2 * l2_all]
    within_l2 = [k for k in knees if k <= 2 * l2_all]
    measured_l3 = beyond_l2[-1] if beyond_l2 else None
    measured_l2 = within_l2[-1] // threads if within_l2 and l2_all else None
    # Noise only ever slows a best-of sample: the faster of the two largest working sets.
    dram = max(g for _, g in pts[-2:]) if pts else None
    largest = pts[-1][0] if pts else 0

    def choice(l3: int, source: str, note: str = "") -> CacheChoice:
        l2 = rep.l2_per_core or (measured_l2 or 0)
        return CacheChoice(rep, measured_l2, measured_l3, l2, l3, source, note, dram, knees)

    def mib(n: int) -> str:
        return f"{n / 2**20:g} MiB"

    if len(pts) < 3 or dram is None:
        return choice(rep.l3, "sysfs (unverified)", "no bandwidth sweep to check sysfs against")
    if rep.l3 <= 0:
        if measured_l3:
            return choice(
                measured_l3, "measured", f"sysfs reports no L3; measured {mib(measured_l3)}"
            )
        return choice(0, "none", "sysfs reports no L3 and the sweep shows none")
    why: list[str] = []
    if rep.l3 > MAX_L3_PER_CPU * max(1, rep.cpus):
        why.append(
            f"that is {mib(rep.l3 // max(1, rep.cpus))} per CPU (more than {mib(MAX_L3_PER_CPU)})"
        )
    if largest >= 2 * rep.l3:
        # Working sets of a quarter to a half of the reported L3, beyond the L2s: a real L3
        # holds them. Up to two grid points, so that one noisy sample refutes nothing.
        inside = [(s, g) for s, g in pts if 2 * l2_all < s <= rep.l3 // 2 and 4 * s >= rep.l3]
        best = max((g for _, g in inside), default=math.inf)
        if best < KNEE_RATIO * dram:
            why.append(
                f"working sets of {' and '.join(mib(s) for s, _ in inside)} already read at "
                f"DRAM speed (at best {best:.1f} GB/s; {dram:.1f} at {mib(largest)})"
            )
    elif not why:
        return choice(
            rep.l3,
            "sysfs (unverified)",
            f"the sweep ends at {mib(largest)}, short of 2 x the reported L3",
        )
    if not why:
        return choice(rep.l3, "sysfs")
    use = measured_l3 or 0
    note = f"sysfs reports L3 {mib(rep.l3)}, but {' and '.join(why)}; " + (
        f"using the measured knee, {mib(use)}" if use else "the sweep shows no L3: none used"
    )
    return choice(use, "measured" if use else "none", note)


def cache_sizes() -> ReportedCaches:
    """(L2 per core, L3) in bytes as sysfs reports them for cpu0; 0 where unknown."""
    l2 = l3 = 0
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in sorted(base.glob("index*")):
        try:
            level = int((d / "level").read_text())
            kind = (d / "type").read_text().strip()
            size = (d / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        mult = {"K": 1024, "M": 1024 * 1024, "G": 1024**3}.get(size[-1:], 1)
        try:
            n = int(size.rstrip("KMG")) * mult
        except ValueError:
            continue
        if kind in ("Unified", "Data") and level == 2:
            l2 = n
        elif kind == "Unified" and level == 3:
            l3 = n
    return ReportedCaches(l2, l3, os.cpu_count() or 1)


def mem_available() -> int:
    """Bytes of MemAvailable in /proc/meminfo (0 if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pow2_sizes(lo: int, hi: int) -> list[int]:
    out, s = [], lo
    while s <= hi:
        out.append(s)
        s *= 2
    return out


def grid_bytes(n: float) -> int:
    """A working set rounded to a 2^(1/32) grid (within 1.1%): sizes that close share a probe."""
    return max(8, round(2.0 ** (round(math.log2(max(n, 8.0)) * 32) / 32)))


# ----------------------------------------------------------------------------- roofline


@dataclass
class Roofline:
    """Measured FMA peak and read bandwidths per thread count, and the cache sizes used.

    ``sweep``: read bandwidth over powers of two (working set bytes, GB/s) per thread count;
    ``dram``: the read bandwidth at ``dram_bytes`` (>= 4 x the sanity-checked L3), the DRAM
    roof; ``triad``: a STREAM-like triad there, for reference only; ``at``: the read bandwidth
    measured at each case's own working sets (keys: ``grid_bytes`` of them).
    """

    peak: dict[int, float]
    peak_isa: dict[int, str]
    sweep: dict[int, list[tuple[int, float]]]
    caches: CacheChoice
    sweep_threads: int
    dram_bytes: int
    dram: dict[int, float]
    triad: dict[int, float]
    at: dict[int, dict[int, float]]
    raw: list[dict[str, Any]]
    compiler: str
    exe: Path
    reps: int

    def bandwidth(self, threads: int, ws: int) -> float:
        """Read GB/s at working set ``ws``: measured there, else interpolated on the sweep."""
        got = self.at.get(threads, {}).get(grid_bytes(ws))
        if got is not None:
            return got
        pts = self.sweep[threads]
        if ws <= pts[0][0]:
            return pts[0][1]
        for (s0, g0), (s1, g1) in itertools.pairwise(pts):
            if ws <= s1:
                f = math.log(ws / s0) / math.log(s1 / s0)
                return math.exp(math.log(g0) + f * (math.log(g1) - math.log(g0)))
        return pts[-1][1]

    def memory_seconds(self, threads: int, ph: Sequence[Phase]) -> float:
        """Seconds per frame to read ``ph``, each phase at its working set's bandwidth."""
        return sum(p.bytes_per_frame / (self.bandwidth(threads, p.working_set) * 1e9) for p in ph)

    def level(self, threads: int, ws: int) -> str:
        """The cache level that holds ``ws`` by the sizes used (L2 counts every thread's)."""
        c = self.caches
        if c.l2 and ws <= threads * c.l2:
            return "L2"
        if c.l3 and ws <= c.l3:
            return "L3"
        return "DRAM"


def cpu_tag() -> str:
    """Short hash of the CPU model and flags: a -march=native build is only valid there."""
    text = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                text += line
                if line.startswith("flags"):
                    break
    except OSError:
        text = platform.processor()
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def build_roofline(build_dir: Path, log: Callable[[str], None]) -> Path:
    """Configure and build bench/cpp with cmake + ninja; returns the roofline binary."""
    if shutil.which("cmake") is None or shutil.which("ninja") is None:
        raise RuntimeError("cmake and ninja are needed to build bench/cpp/roofline.cc")
    build_dir.mkdir(parents=True, exist_ok=True)
    for cmd in (
        [
            "cmake",
            "-S",
            str(BENCH_DIR / "cpp"),
            "-B",
            str(build_dir),
            "-G",
            "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        ["cmake", "--build", str(build_dir)],
    ):
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed:\n{p.stdout}{p.stderr}")
    log(f"roofline probe built in {build_dir}")
    return build_dir / "roofline"


def run_probe(
    exe: Path,
    threads: int,
    reps: int,
    read: Sequence[int] = (),
    triad: Sequence[int] = (),
    fma_ms: float = 0.0,
) -> list[dict[str, Any]]:
    """One run of the probe at one thread count; its JSON lines, in the order asked."""
    cmd = [str(exe), "--threads", str(threads), "--reps", str(reps), "--fma-ms", f"{fma_ms:g}"]
    if read:
        cmd += ["--read-bytes", ",".join(str(int(b)) for b in read)]
    if triad:
        cmd += ["--triad-bytes", ",".join(str(int(b)) for b in triad)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise fail(f"{shlex.join(cmd)} exited {p.returncode}: {p.stderr}")
    lines = [json.loads(s) for s in p.stdout.splitlines() if s.strip()]
    for kind, want in (("read", len(read)), ("triad", len(triad))):
        got = sum(d["kind"] == kind for d in lines)
        if got != want:
            raise fail(
                f"{shlex.join(cmd)} printed {got} {kind} lines for {want} working sets; "
                f"is {exe} out of date?"
            )
    return lines


SWEEP_MIN = 64 * 1024


def sweep_sizes(args: argparse.Namespace, reported: ReportedCaches) -> list[int]:
    """Powers of 2 from 64 KiB up to --sweep-max-mb, else to 4 x the reported L3 and at least
    1 GiB (smoke: 64 MiB, at most 1 GiB), the last rounded up to a power of 2; halved until it
    is at most a quarter of the available memory."""
    if args.sweep_max_mb is not None:
        want = int(args.sweep_max_mb * 2**20)
    elif args.smoke:
        want = min(max(4 * reported.l3, 64 * 2**20), 2**30)
    else:
        want = max(4 * reported.l3, 2**30)
    top = SWEEP_MIN
    while top < want:
        top *= 2
    avail = mem_available()
    while avail and top > max(avail // 4, 2**20):
        top //= 2
    return pow2_sizes(SWEEP_MIN, max(top, 2**20))


def measure_roofline(
    args: argparse.Namespace, threads: Sequence[int], log: Callable[[str], None]
) -> Roofline | None:
    """Build the probe; sweep the read bandwidth and take the FMA peak at each thread count;
    check the cache sizes against the sweep; measure the DRAM read stream (and triad) at >= 4 x
    the L3 used. None (with a warning) if the probe cannot be built.

    The bandwidth at each case's own working sets is measured later (``probe_working_sets``).
    """
    if args.roofline == "off":
        return None
    build_dir = args.build_dir or BENCH_DIR / "build" / f"roofline-{cpu_tag()}"
    try:
        exe = build_roofline(build_dir, log)
    except (RuntimeError, OSError) as e:
        if args.roofline == "require":
            raise fail(f"roofline probe: {e}") from e
        log(f"warning: no roofline ({e}); the % of roofline columns will read n/a")
        return None
    compiler = ""
    cache = build_dir / "CMakeCache.txt"
    if cache.exists():
        for line in cache.read_text().splitlines():
            if line.startswith("CMAKE_CXX_COMPILER:"):
                cxx = line.split("=", 1)[1]
                v = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
                compiler = v.stdout.splitlines()[0] if v.stdout else cxx
    reported = cache_sizes()
    sizes = sweep_sizes(args, reported)
    log(
        f"sysfs: L2 {reported.l2_per_core // 1024} KiB/core, L3 {reported.l3 // 1024} KiB; "
        f"read sweep 64 KiB .. {sizes[-1] // 2**20} MiB ({len(sizes)} sizes) at "
        f"{', '.join(map(str, threads))} thread(s)"
    )
    peak: dict[int, float] = {}
    isa: dict[int, str] = {}
    sweep: dict[int, list[tuple[int, float]]] = {}
    raw: list[dict[str, Any]] = []
    for t in threads:
        lines = run_probe(exe, t, args.roofline_reps, read=sizes, fma_ms=args.fma_ms)
        for d in lines:
            d["probe"] = "sweep"
        reads = [d for d in lines if d["kind"] == "read"]
        sweep[t] = [(int(d["working_set_bytes"]), float(d["gbs"])) for d in reads]
        best = max((d for d in lines if d["kind"] == "fma"), key=lambda d: float(d["gflops"]))
        peak[t], isa[t] = float(best["gflops"]), str(best["isa"])
        raw += lines
        log(
            f"roofline t={t}: FMA peak {peak[t]:.1f} GFLOP/s ({isa[t]}); read sweep "
            + ", ".join(f"{s // 1024}K {g:.0f}" for s, g in sweep[t])
            + " GB/s"
        )
    t0 = min(threads)
    caches = choose_cache_sizes(reported, sweep[t0], t0)
    log(
        f"caches used: L2 {caches.l2 // 1024} KiB/core, L3 {caches.l3 // 1024} KiB "
        f"({caches.l3_source}); measured knees "
        + (", ".join(f"{k // 1024} KiB" for k in caches.knees) or "none")
        + (f"; {caches.note}" if caches.note else "")
    )
    dram_bytes = max(4 * caches.l3, 4 * max(threads) * caches.l2, int(args.dram_mb * 2**20), 2**20)
    avail = mem_available()
    if avail and dram_bytes > avail // 4:
        log(f"warning: DRAM working set {dram_bytes >> 20} MiB capped at a quarter of free memory")
        dram_bytes = max(2**20, avail // 4)
    dram: dict[int, float] = {}
    triad: dict[int, float] = {}
    for t in threads:
        lines = run_probe(exe, t, args.roofline_reps, read=[dram_bytes], triad=[dram_bytes])
        for d in lines:
            d["probe"] = "dram"
            if d["kind"] == "read":
                dram[t] = float(d["gbs"])
            else:
                triad[t] = float(d["gbs"])
        raw += lines
        log(
            f"roofline t={t}: DRAM ({dram_bytes >> 20} MiB) read {dram[t]:.1f} GB/s, "
            f"triad {triad[t]:.1f} GB/s"
        )
    return Roofline(
        peak,
        isa,
        sweep,
        caches,
        t0,
        dram_bytes,
        dram,
        triad,
        {},
        raw,
        compiler,
        exe,
        args.roofline_reps,
    )


def probe_working_sets(
    roof: Roofline | None, cases: list[Case], modes: Sequence[str], log: Callable[[str], None]
) -> None:
    """Measure the read bandwidth at every working set of every case (rounded to within 1.1%)."""
    if roof is None:
        return
    want: dict[int, set[int]] = {}
    for c in cases:
        for mode in modes:
            if mode in c.frames:
                for p in phases(c.traffic, mode, c.frames[mode]):
                    want.setdefault(c.threads, set()).add(grid_bytes(p.working_set))
    for t, sizes_set in sorted(want.items()):
        sizes = sorted(sizes_set)
        lines = run_probe(roof.exe, t, roof.reps, read=sizes)
        got = [d for d in lines if d["kind"] == "read"]
        roof.at[t] = {}
        for s, d in zip(sizes, got, strict=True):
            d["probe"] = "working_set"
            d["requested_bytes"] = s
            roof.at[t][s] = float(d["gbs"])
        roof.raw += lines
        log(f"roofline t={t}: read bandwidth at {len(sizes)} working sets of the cases")


# ----------------------------------------------------------------------------- reporting


def lscpu() -> dict[str, str]:
    """``lscpu``'s "key: value" lines (empty where lscpu is missing)."""
    try:
        env = {**os.environ, "LC_ALL": "C"}
        p = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, env=env)
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in p.stdout.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() not in out:
            out[k.strip()] = v.strip()
    return out


def machine_info() -> dict[str, Any]:
    """CPU model (lscpu's "Model name", else /proc/cpuinfo), cores, memory, load average."""
    info = lscpu()
    model = info.get("Model name", "")
    if not model:
        model = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass

    def num(key: str) -> int | None:
        try:
            return int(info[key])
        except (KeyError, ValueError):
            return None

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    mem = 0
    with contextlib.suppress(ValueError, OSError, AttributeError):
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": model,
        "lscpu_model_name": info.get("Model name"),
        "sockets": num("Socket(s)"),
        "cores_per_socket": num("Core(s) per socket"),
        "threads_per_core": num("Thread(s) per core"),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "hypervisor": info.get("Hypervisor vendor"),
        "memory_gib": round(mem / 2**30, 1) if mem else None,
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def versions() -> dict[str, str]:
    import matplotlib
    import onnx
    import onnxruntime
    import scipy
    import torch

    import rtmobile_rt

    git = ""
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        git = rev + ("+dirty" if dirty else "") if rev else ""
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "rtmobile": rtmobile_rt.__version__,
        "rtmobile_isa": rtmobile_rt.available_isas()[0],
        "git": git,
    }


def fmt_us(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.0f}" if v >= 1000 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_x(num: float | None, den: float | None) -> str:
    if num is None or den is None or den <= 0:
        return "n/a"
    return f"{num / den:.2f}x"


def fmt_g(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def fmt_size(n: float) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


def gflops(nonzeros: int, us: float | None) -> float | None:
    return None if us is None else 2.0 * nonzeros / (us * 1e3)


@dataclass(frozen=True)
class RoofCols:
    """The roofline numbers of one case and mode.

    ``bound``: min(FMA peak, read bandwidth at the case's working sets x intensity), in GFLOP/s;
    ``bw``: that bandwidth (offline: bytes / the sum over phases of bytes / bandwidth at the
    phase's working set); ``working_set``/``level``: of the phase that reads the most bytes;
    ``dram_*``: the same with the DRAM read stream for every byte.
    """

    bytes_per_frame: float
    working_set: int
    level: str
    bw: float | None = None
    bound: float | None = None
    pct: float | None = None
    limit: str = "n/a"
    dram_bound: float | None = None
    dram_pct: float | None = None
    dram_limit: str = "n/a"


def roof_cols(roof: Roofline | None, c: Case, mode: str, us: float | None) -> RoofCols:
    ph = phases(c.traffic, mode, c.frames.get(mode, 1))
    nbytes = sum(p.bytes_per_frame for p in ph)
    top = max(ph, key=lambda p: p.bytes_per_frame)
    if roof is None or c.threads not in roof.peak:
        return RoofCols(nbytes, top.working_set, "n/a")
    level = roof.level(c.threads, top.working_set)
    flops = 2.0 * c.nonzeros
    peak = roof.peak[c.threads]
    seconds = roof.memory_seconds(c.threads, ph)
    memory = flops / seconds / 1e9
    dram_memory = roof.dram[c.threads] * flops / max(1.0, nbytes)
    real = gflops(c.nonzeros, us)
    bound, dram_bound = min(peak, memory), min(peak, dram_memory)
    return RoofCols(
        nbytes,
        top.working_set,
        level,
        bw=nbytes / seconds / 1e9,
        bound=bound,
        pct=None if real is None else 100.0 * real / bound,
        limit="memory" if memory <= peak else "FMA peak",
        dram_bound=dram_bound,
        dram_pct=None if real is None else 100.0 * real / dram_bound,
        dram_limit="memory" if dram_memory <= peak else "FMA peak",
    )


def fmt_pct_ws(r: RoofCols) -> str:
    """% of the working-set roofline; "(FMA)" where the FMA peak made the bound, "!" over 100."""
    if r.pct is None:
        return "n/a"
    text = f"{r.pct:.0f}"
    if r.limit == "FMA peak":
        text += " (FMA)"
    return text + (" !" if float(f"{r.pct:.0f}") > 100 else "")


def fmt_pct_dram(r: RoofCols) -> str:
    """% of the DRAM roofline; over 100 names the cache level that holds the working set."""
    if r.dram_pct is None:
        return "n/a"
    text = f"{r.dram_pct:.0f}"
    if r.dram_limit == "FMA peak":
        return text + " (FMA)"
    return text + (f" ({r.level})" if float(text) > 100 and r.level != "DRAM" else "")


def find(cases: list[Case], engine: str, rate: float, threads: int) -> Case | None:
    for c in cases:
        if c.engine == engine and c.rate == rate and c.threads == threads:
            return c
    return None


def med(c: Case | None, mode: str) -> float | None:
    return None if c is None else c.median(mode)


def machine_lines(meta: dict[str, Any], roof: Roofline | None) -> list[str]:
    """The table's machine description: lscpu model, cores, caches reported and measured."""
    m = meta["machine"]
    cores = ""
    if m.get("sockets") and m.get("cores_per_socket"):
        cores = (
            f"{m['sockets']} socket(s) x {m['cores_per_socket']} core(s) x "
            f"{m.get('threads_per_core') or 1} thread(s) = "
        )
    load_end = meta.get("loadavg_end") or []
    vm = f", {m['hypervisor']} VM" if m.get("hypervisor") else ""
    out = [
        f"* Machine: {m['cpu']} (lscpu model name), {cores}{m['logical_cpus']} logical CPUs "
        f"({m['usable_cpus']} usable){vm}, {m.get('memory_gib') or '?'} GiB RAM; {m['platform']}",
        f"* Load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in m['loadavg_start'] or [])}"
        f" before the run, {', '.join(f'{x:.2f}' for x in load_end)} after the timings",
    ]
    rep = cache_sizes() if roof is None else roof.caches.reported
    if roof is None:
        out.append(
            f"* Caches (sysfs, not checked: no roofline probe): L2 {fmt_size(rep.l2_per_core)}"
            f"/core, L3 {fmt_size(rep.l3)}"
        )
        return out
    c = roof.caches

    def opt(n: int | None, per: str = "") -> str:
        return "none seen" if n is None else fmt_size(n) + per

    out.append(
        f"* Caches: sysfs reports L2 {fmt_size(rep.l2_per_core)}/core, L3 {fmt_size(rep.l3)}; "
        f"measured (knees of the {roof.sweep_threads}-thread read sweep, to a power of 2): L2 "
        f"{opt(c.measured_l2, '/core')}, L3 {opt(c.measured_l3)}; used: L2 {fmt_size(c.l2)}/core, "
        f"L3 {fmt_size(c.l3)} ({c.l3_source})" + (f". **{c.note}.**" if c.note else "")
    )
    return out


def render_table(
    cases: list[Case],
    splits: list[Split],
    roof: Roofline | None,
    args: argparse.Namespace,
    meta: dict[str, Any],
    contention: str | None = None,
) -> str:
    dims = meta["model"]
    out: list[str] = []
    w = out.append
    w("# RTMobile Table II / Fig. 4 on this CPU")
    w("")
    if args.smoke:
        w("**Smoke run: tiny model, few frames. The numbers only check the plumbing.**")
        w("")
    v = meta["versions"]
    w(f"* Date: {meta['date']}")
    out.extend(machine_lines(meta, roof))
    w(
        f"* Versions: python {v['python']}, numpy {v['numpy']}, torch {v['torch']}, "
        f"onnxruntime {v['onnxruntime']}, onnx {v['onnx']}, scipy {v['scipy']}, "
        f"rtmobile {v['rtmobile']} (isa {v['rtmobile_isa']}), git {v['git'] or 'n/a'}"
    )
    w(f"* Command: `{meta['command']}`")
    w(
        f"* Model: {dims['layers']}-layer GRU {dims['input_dim']} -> {dims['hidden']} -> "
        f"{dims['classes']}, {dims['dense_params']:,} weights, random (seed {args.seed}); BSP "
        f"blocks Num_r={BLOCKS[0]}, Num_c={BLOCKS[1]} on every matrix"
    )
    w(
        f"* Method: median of {args.repeats} repeats, engines interleaved round-robin per "
        f"thread count; streaming = batch 1, one frame per call, state carried, "
        f"{args.stream_frames} frames after {args.warmup_frames} warm-up frames; offline = "
        f"one call over T={args.offline_frames} frames. us = microseconds per frame."
    )
    if roof is not None:
        parts = []
        for t in sorted(roof.peak):
            sw = ", ".join(f"{fmt_size(s)} {g:.0f}" for s, g in roof.sweep[t])
            parts.append(
                f"{t} thread(s): FMA peak {roof.peak[t]:.1f} GFLOP/s ({roof.peak_isa[t]}); "
                f"DRAM read {roof.dram[t]:.1f} GB/s (triad {roof.triad[t]:.1f}); read sweep "
                f"{sw} GB/s"
            )
        w(
            f"* Roofline probe ({roof.compiler or 'c++'}, -O3 -march=native, best of "
            f"{roof.reps}; DRAM working set {fmt_size(roof.dram_bytes)}): " + "; ".join(parts)
        )
    else:
        w("* Roofline probe: not run (n/a)")
    w("")
    w("## BSP splits (Table I shape)")
    w("")
    w(
        "| rate | col rate | row rate = rate/col | row rate used | achieved rate | nonzeros "
        "| GOP/frame |"
    )
    w("|--:|--:|--:|--:|--:|--:|--:|")
    for s in splits:
        w(
            f"| {s.rate:g}x | {s.col_rate:g} | {s.row_rate_nominal:.2f} | {s.row_rate:.2f} "
            f"| {s.achieved:.1f}x | {s.nonzeros:,} | {2 * s.nonzeros / 1e9:.6f} |"
        )
    w("")
    w(
        "Row rate used: calibrated so the achieved rate (dense weights / nonzeros, all five "
        "matrices) is as close to the nominal rate as keep-count rounding allows"
        + (" (--no-calibrate: rate/col as is)." if not args.calibrate else ".")
        + " GOP/frame = 2 x nonzeros / 1e9. The paper's Table II GOP column (0.58 for the "
        "dense 9.6M-weight model) is about 30x that; it does not say what it counts, so we "
        "compare times and speedups with it, not GOP/s."
    )
    w("")
    w(
        "Roofline: bound = min(FMA peak, read bandwidth at the case's working set x "
        "intensity), intensity = 2 x nonzeros / bytes the kernels actually read per frame. "
        "Bytes: rtmobile's own count (`Session.info['matrices'][i]['read_bytes']`: values "
        "including the zero rows padding each piece to whole 16- or 8-row panels, plus its "
        "index arrays); "
        "CSR: values + column indices + row pointers; dense: 4 bytes a weight. Streaming reads "
        "every matrix every frame (working set: the whole model). Offline reads each W_hh every "
        "frame (working set: that matrix) but W_ih and W_out batched: rtmobile once per "
        "`frame_tile` frames, the peers once per call (one GEMM/SpMM over all T frames); the "
        "memory time is the sum over these phases of bytes / read bandwidth at the phase's "
        'working set, each measured by the probe. "% roofline" uses that bound ((FMA): the '
        "peak made it; `!`: over 100, which would mean a byte count or a probe is wrong); "
        '"% DRAM roofline" reads every byte at the DRAM read stream (over 100 names the '
        "cache level that holds the working set)."
    )
    w("")
    paper = args.model == "paper"
    for mode in args.modes:
        for t in args.threads:
            td = find(cases, "torch", 1.0, t)
            od = find(cases, "onnxruntime", 1.0, t)
            rd = find(cases, "rtmobile", 1.0, t)
            what = (
                "batch 1, one frame per call"
                if mode == "streaming"
                else (f"T={args.offline_frames} frames per call")
            )
            w(f"## {mode.capitalize()} ({what}), {t} thread{'s' if t > 1 else ''}")
            w("")
            w(
                f"Dense peers: {LABEL['torch']} {fmt_us(med(td, mode))} us/frame, "
                f"{LABEL['onnxruntime']} {fmt_us(med(od, mode))} us/frame."
            )
            w("")
            head = (
                "| rate | GOP | rtmobile fp32 us | rtmobile fp16 us | scipy CSR us | torch CSR us "
                "| GOP/s | eff. GOP/s | x torch dense | x ORT dense | x scipy CSR | x torch CSR "
                "| x rtmobile dense | MB read/frame | % roofline | % DRAM roofline |"
            )
            sep = "|--:" * 16 + "|"
            if paper:
                head += " paper CPU us | paper x dense |"
                sep += "--:|--:|"
            w(head)
            w(sep)
            for s in splits:
                r = s.rate
                c = find(cases, "rtmobile", r, t)
                us = med(c, mode)
                f16 = med(find(cases, "rtmobile-fp16", r, t), mode)
                sc = med(find(cases, "scipy-csr", r, t), mode)
                tc = med(find(cases, "torch-csr", r, t), mode)
                real = gflops(s.nonzeros, us)
                eff = gflops(s.dense, us)
                if c is not None and us is not None:
                    rc = roof_cols(roof, c, mode, us)
                    mb, p_ws, p_dram = (
                        f"{rc.bytes_per_frame / 1e6:.3f}",
                        fmt_pct_ws(rc),
                        (fmt_pct_dram(rc)),
                    )
                else:
                    mb, p_ws, p_dram = "n/a", "n/a", "n/a"
                row = (
                    f"| {r:g}x | {2 * s.nonzeros / 1e9:.6f} | {fmt_us(us)} | {fmt_us(f16)} "
                    f"| {fmt_us(sc)} | {fmt_us(tc)} | {fmt_g(real)} | {fmt_g(eff)} "
                    f"| {fmt_x(med(td, mode), us)} | {fmt_x(med(od, mode), us)} "
                    f"| {fmt_x(sc, us)} | {fmt_x(tc, us)} | {fmt_x(med(rd, mode), us)} "
                    f"| {mb} | {p_ws} | {p_dram} |"
                )
                if paper:
                    p = PAPER_TABLE2_CPU.get(r)
                    row += (
                        f" {p[1]:.1f} | {PAPER_TABLE2_CPU[1.0][1] / p[1]:.2f}x |"
                        if p
                        else " n/a | n/a |"
                    )
                w(row)
            w("")
    w("## All engines: roofline at each case's working set")
    w("")
    w(
        "Bytes read per frame as above (rtmobile: its sessions' `read_bytes`, per dtype and "
        "thread partition). Working set: of the phase that reads the most bytes (streaming: "
        "the whole model; offline: usually a W_hh), with the cache level that holds it by the "
        "sizes used; read GB/s: the probe's read stream there (offline: over all phases, "
        "time-weighted). Bound = min(FMA peak, read GB/s x flop/B); DRAM bound the same at the "
        "DRAM read stream."
    )
    w("")
    w(
        "| mode | threads | engine | rate | frames | us/frame (median) | min - max | GOP/s "
        "| eff. GOP/s | MB read/frame | flop/B | working set (level) | read GB/s at working set "
        "| bound GOP/s | % roofline | DRAM bound GOP/s | % DRAM roofline |"
    )
    w("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|")
    over: list[str] = []
    for mode in args.modes:
        for t in args.threads:
            for c in cases:
                if c.threads != t or not c.samples[mode]:
                    continue
                us = c.median(mode)
                rc = roof_cols(roof, c, mode, us)
                if rc.pct is not None and float(f"{rc.pct:.0f}") > 100:
                    over.append(f"{c.key} {mode} ({rc.pct:.0f}%)")
                w(
                    f"| {mode} | {t} | {LABEL[c.engine]} | {c.rate:g}x | {c.frames[mode]} "
                    f"| {fmt_us(us)} | {fmt_us(min(c.samples[mode]))} - "
                    f"{fmt_us(max(c.samples[mode]))} | {fmt_g(gflops(c.nonzeros, us))} "
                    f"| {fmt_g(gflops(c.dense_params, us))} | {rc.bytes_per_frame / 1e6:.3f} "
                    f"| {2 * c.nonzeros / rc.bytes_per_frame:.3f} "
                    f"| {fmt_size(rc.working_set)} ({rc.level}) | {fmt_g(rc.bw, 1)} "
                    f"| {fmt_g(rc.bound)} | {fmt_pct_ws(rc)} | {fmt_g(rc.dram_bound)} "
                    f"| {fmt_pct_dram(rc)} |"
                )
    w("")
    if roof is not None:
        w(
            f"Cases over 100% of their roofline: {len(over)}"
            + (
                f" ({', '.join(over)}): their bytes or bandwidth are not what the kernels see."
                if over
                else "."
            )
        )
        w("")
    if contention is not None:
        out.append(contention.rstrip("\n"))
        w("")
    return "\n".join(out)


def plot(cases: list[Case], args: argparse.Namespace, path: Path) -> None:
    """Speedup vs compression rate, one line per engine, one panel per mode and thread count.

    The baseline is torch.nn.GRU dense at the same mode and thread count (rtmobile fp32 1x
    when torch is not run), so every engine is compared with the same reference.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes, threads = list(args.modes), list(args.threads)
    fig, axes = plt.subplots(
        len(modes), len(threads), figsize=(5.5 * len(threads), 4.2 * len(modes)), squeeze=False
    )
    styles = {
        "torch": ("gray", "x", "none"),
        "rtmobile": ("tab:red", "o", "-"),
        "rtmobile-fp16": ("tab:orange", "s", "none"),
        "onnxruntime": ("tab:blue", "D", "none"),
        "scipy-csr": ("tab:green", "^", "-"),
        "torch-csr": ("tab:purple", "v", "-"),
    }
    base_engine = "torch" if any(c.engine == "torch" for c in cases) else "rtmobile"
    for i, mode in enumerate(modes):
        for j, t in enumerate(threads):
            ax = axes[i][j]
            base = med(find(cases, base_engine, 1.0, t), mode)
            if base is not None:
                ax.axhline(1.0, color="gray", lw=1, ls=":")
                for eng, (color, marker, ls) in styles.items():
                    pts = sorted(
                        (c.rate, base / m)
                        for c in cases
                        if c.engine == eng and c.threads == t and (m := c.median(mode))
                    )
                    if pts:
                        xs, ys = zip(*pts, strict=True)
                        ax.plot(xs, ys, color=color, marker=marker, ls=ls, label=LABEL[eng])
            if args.model == "paper":
                pr = sorted(PAPER_TABLE2_CPU)
                ax.plot(
                    pr,
                    [PAPER_TABLE2_CPU[1.0][1] / PAPER_TABLE2_CPU[r][1] for r in pr],
                    color="black",
                    ls="--",
                    lw=1,
                    label="paper CPU (over its own dense)",
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("compression rate")
            ax.set_ylabel(f"speedup over {LABEL[base_engine]}" + (" 1x" * (base_engine != "torch")))
            ax.set_title(f"{mode}, {t} thread{'s' if t > 1 else ''}")
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle("RTMobile Fig. 4 on this CPU" + (" (smoke run)" if args.smoke else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_rows(cases: list[Case], roof: Roofline | None) -> list[dict[str, Any]]:
    rows = []
    for c in cases:
        for mode in MODES:
            if not c.samples[mode]:
                continue
            us = c.median(mode)
            rc = roof_cols(roof, c, mode, us)
            rows.append(
                {
                    "case": c.key,
                    "engine": c.engine,
                    "label": LABEL[c.engine],
                    "rate": c.rate,
                    "threads": c.threads,
                    "mode": mode,
                    "frames": c.frames[mode],
                    "median_us_per_frame": us,
                    "gops": gflops(c.nonzeros, us),
                    "effective_gops": gflops(c.dense_params, us),
                    "bytes_per_frame": rc.bytes_per_frame,
                    "flop_per_byte": 2 * c.nonzeros / rc.bytes_per_frame,
                    "working_set_bytes": rc.working_set,
                    "cache_level": rc.level,
                    "read_gbs_at_working_set": rc.bw,
                    "roofline_gops": rc.bound,
                    "pct_roofline": rc.pct,
                    "roofline_limit": rc.limit,
                    "roofline_dram_gops": rc.dram_bound,
                    "pct_roofline_dram": rc.dram_pct,
                    "roofline_dram_limit": rc.dram_limit,
                }
            )
    return rows


def roofline_json(roof: Roofline) -> dict[str, Any]:
    c = roof.caches
    return {
        "memory_roof": "read stream at each working set",
        "peak_gflops": roof.peak,
        "peak_isa": roof.peak_isa,
        "caches": {
            "reported_l2_per_core_bytes": c.reported.l2_per_core,
            "reported_l3_bytes": c.reported.l3,
            "measured_l2_per_core_bytes": c.measured_l2,
            "measured_l3_bytes": c.measured_l3,
            "l2_per_core_bytes": c.l2,
            "l3_bytes": c.l3,
            "l3_source": c.l3_source,
            "note": c.note,
            "knees_bytes": list(c.knees),
            "sweep_threads": roof.sweep_threads,
        },
        "sweep_gbs": {t: [[s, g] for s, g in pts] for t, pts in roof.sweep.items()},
        "dram_bytes": roof.dram_bytes,
        "dram_read_gbs": roof.dram,
        "dram_triad_gbs": roof.triad,
        "working_set_gbs": {t: {str(s): g for s, g in d.items()} for t, d in roof.at.items()},
        "reps": roof.reps,
        "compiler": roof.compiler,
        "raw": roof.raw,
    }


def run_contention(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[str, Any]:
    """bench_contention.py's benchmark at this run's thread counts (its own defaults otherwise;
    --smoke passed on): its table, heading demoted to a section, and its results."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    import bench_contention

    with tempfile.TemporaryDirectory(prefix="bench_gru_contention_") as tmp:
        argv = ["--threads", *map(str, args.threads), "--out", tmp]
        if args.smoke:
            argv.insert(0, "--smoke")
        log(f"contention: python bench/bench_contention.py {shlex.join(argv[:-2])}")
        with contextlib.redirect_stdout(io.StringIO()):  # its table goes into ours
            bench_contention.main(argv)
        md = (Path(tmp) / "contention.md").read_text()
        data = json.loads((Path(tmp) / "contention.json").read_text())
        # The temporary folder is no part of the command to rerun.
        md = md.replace(f" --out {shlex.quote(tmp)}", "")
        data["meta"]["command"] = data["meta"]["command"].replace(f" --out {shlex.quote(tmp)}", "")
    head = "# Streaming under contention"
    if md.startswith(head):
        md = "#" + md
    md = md.replace(
        "Command: `python bench/bench_contention.py",
        "Command (run by bench_gru.py): `python bench/bench_contention.py",
        1,
    )
    return md, data


# ----------------------------------------------------------------------------- main


# Defaults of the options that --smoke changes: (full run, smoke run).
RUN_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "rates": (list(PAPER_RATES), list(SMOKE_RATES)),
    "repeats": (7, 2),
    "stream_frames": (200, 16),
    "offline_frames": (1000, 48),
    "warmup_frames": (20, 2),
    "max_sample_seconds": (3.0, 0.5),
    "dram_mb": (512.0, 64.0),
    "roofline_reps": (10, 2),
    "fma_ms": (200.0, 20.0),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog="The module docstring (bench/bench_gru.py) and bench/README.md give the BSP "
        "split table and the method.",
    )

    def dflt(name: str) -> str:
        full, smoke = RUN_DEFAULTS[name]
        show = (lambda v: " ".join(f"{x:g}" for x in v)) if isinstance(full, list) else str
        return f"(default {show(full)}; with --smoke {show(smoke)})"

    p.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny model (input {SMOKE_DIMS[0]}, hidden {SMOKE_DIMS[1]}, {SMOKE_DIMS[3]} "
        "classes) with the smoke defaults below; runs in seconds and checks the plumbing only",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder for table2.md, fig4.png, results.json (default bench/results; "
        "with --smoke a new temporary folder)",
    )
    p.add_argument(
        "--rates",
        type=float,
        nargs="+",
        metavar="RATE",
        default=None,
        help=f"nominal compression rates {dflt('rates')}",
    )
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        metavar="T",
        default=[1, 2],
        help="thread counts; every engine runs at each (default 1 2)",
    )
    p.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINE_IDS,
        metavar="ENGINE",
        default=list(ENGINE_IDS),
        help=f"engines to run, of: {' '.join(ENGINE_IDS)} (default all)",
    )
    p.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        metavar="MODE",
        default=list(MODES),
        help="streaming (one frame per call, state carried) and/or offline (T frames "
        "per call) (default both)",
    )
    p.add_argument(
        "--fp16-rates",
        type=float,
        nargs="*",
        metavar="RATE",
        default=[1.0, 10.0],
        help="rates at which rtmobile also runs with fp16 weights (default 1 10)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"interleaved repeats per case and mode; tables quote medians {dflt('repeats')}",
    )
    p.add_argument(
        "--stream-frames",
        type=int,
        default=None,
        help=f"timed frames per streaming sample {dflt('stream_frames')}",
    )
    p.add_argument(
        "--offline-frames",
        type=int,
        default=None,
        help=f"T, frames per offline call {dflt('offline_frames')}",
    )
    p.add_argument(
        "--warmup-frames",
        type=int,
        default=None,
        help=f"frames pushed before each timed streaming sample {dflt('warmup_frames')}",
    )
    p.add_argument(
        "--max-sample-seconds",
        type=float,
        default=None,
        help=f"a case slower than this per sample is timed on fewer frames (at least "
        f"10 streaming, 64 offline) {dflt('max_sample_seconds')}",
    )
    p.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="use row rate = rate / col rate as is, instead of calibrating the row "
        "rate so that the achieved rate matches the nominal one",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights and frames (default 0)"
    )
    p.add_argument(
        "--roofline",
        choices=("auto", "require", "off"),
        default="auto",
        help="auto: build and run bench/cpp/roofline.cc, n/a columns if it cannot be "
        "built; require: abort instead; off: skip it (default auto)",
    )
    p.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="cmake build folder of the roofline probe (default "
        "bench/build/roofline-<hash of this CPU's model and flags>)",
    )
    p.add_argument(
        "--dram-mb",
        type=float,
        default=None,
        help="least working set (MiB) of the DRAM read stream and triad; it is also at least "
        "4 x the L3 in use (after the sanity check) and 4 x the L2s of the threads "
        f"{dflt('dram_mb')}",
    )
    p.add_argument(
        "--sweep-max-mb",
        type=float,
        default=None,
        help="largest working set (MiB, rounded up to a power of 2) of the read-bandwidth "
        "sweep that checks the cache sizes (powers of 2 from 64 KiB; default max(4 x the L3 "
        "sysfs reports, 1024), with --smoke max(4 x L3, 64) up to 1024; never more than a "
        "quarter of the free memory)",
    )
    p.add_argument(
        "--contention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run bench/bench_contention.py (streaming quiet vs beside a CPU hog) at "
        "these --threads and add its table to table2.md and results.json (default on; off "
        "with --smoke unless given)",
    )
    p.add_argument(
        "--roofline-reps",
        type=int,
        default=None,
        help=f"best-of repeats of every read, triad and FMA timing {dflt('roofline_reps')}",
    )
    p.add_argument(
        "--fma-ms",
        type=float,
        default=None,
        help=f"milliseconds per FMA-peak timing {dflt('fma_ms')}",
    )
    args = p.parse_args(argv)
    args.model = "smoke" if args.smoke else "paper"
    for k, (full, smoke) in RUN_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, smoke if args.smoke else full)
    if args.out is None:
        args.out = (
            Path(tempfile.mkdtemp(prefix="bench_gru_")) if args.smoke else BENCH_DIR / "results"
        )
    for name in ("repeats", "stream_frames", "offline_frames", "roofline_reps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_frames < 0:
        p.error("--warmup-frames must be >= 0")
    if any(t < 1 for t in args.threads):
        p.error("--threads must be >= 1")
    if any(not r >= 1 for r in args.rates):
        p.error("--rates must be >= 1")
    if not (args.max_sample_seconds > 0 and args.dram_mb > 0 and args.fma_ms > 0):
        p.error("--max-sample-seconds, --dram-mb and --fma-ms must be > 0")
    if args.sweep_max_mb is not None and not args.sweep_max_mb >= 1:
        p.error("--sweep-max-mb must be >= 1")
    if args.contention is None:
        args.contention = not args.smoke
    args.rates = sorted(set(args.rates))
    args.threads = list(dict.fromkeys(args.threads))
    args.modes = list(dict.fromkeys(args.modes))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings(
        "ignore", message="Sparse CSR tensor support is in beta", category=UserWarning
    )

    def log(msg: str) -> None:
        print(f"[bench_gru] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(
            ["python", "bench/bench_gru.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine_info(),
        "versions": versions(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    dims = SMOKE_DIMS if args.smoke else PAPER_DIMS
    model = random_dense_model(*dims, seed=args.seed)
    meta["model"] = {
        "input_dim": dims[0],
        "hidden": dims[1],
        "layers": dims[2],
        "classes": dims[3],
        "dense_params": model.dense_params,
        "blocks": list(BLOCKS),
    }
    rng = np.random.default_rng(args.seed + 1)
    n_frames = max(args.offline_frames, args.warmup_frames + args.stream_frames, 8)
    x = rng.standard_normal((n_frames, dims[0])).astype(np.float32)

    roof = measure_roofline(args, args.threads, log)

    cases: list[Case] = []
    splits: list[Split] = []
    dense = model.dense_params
    if "torch" in args.engines or "onnxruntime" in args.engines:
        onnx_bytes = onnx_gru_model(model) if "onnxruntime" in args.engines else b""
        for t in args.threads:
            if "torch" in args.engines:
                cases.append(
                    Case(
                        "torch", 1.0, t, dense, dense, dense_traffic(model), TorchDenseEngine(model)
                    )
                )
            if "onnxruntime" in args.engines:
                cases.append(
                    Case(
                        "onnxruntime",
                        1.0,
                        t,
                        dense,
                        dense,
                        dense_traffic(model),
                        OrtEngine(onnx_bytes, model, t),
                    )
                )
    for rate in args.rates:
        split, masks = make_split(model, rate, args.calibrate)
        splits.append(split)
        log(
            f"rate {rate:g}x: col {split.col_rate:g}, row {split.row_rate:.3f} "
            f"(nominal {split.row_rate_nominal:.3f}), achieved {split.achieved:.2f}x, "
            f"{split.nonzeros:,} nonzeros"
        )
        w = pruned(model, masks)
        dtypes = [("rtmobile", "f32")] if "rtmobile" in args.engines else []
        if "rtmobile-fp16" in args.engines and rate in args.fp16_rates:
            dtypes.append(("rtmobile-fp16", "f16"))
        for eng, dtype in dtypes:
            data, stats = encode(model, w, masks, dtype)
            if int(stats["nonzero_weights"]) != split.nonzeros:
                raise fail(
                    f"BSPC at {rate:g}x holds {stats['nonzero_weights']} nonzeros, "
                    f"the masks {split.nonzeros}"
                )
            for t in args.threads:
                rtm = RtmEngine(data, t)
                cases.append(Case(eng, rate, t, split.nonzeros, dense, rtm_traffic(rtm), rtm))
        for eng, cls in (("scipy-csr", ScipyCsrEngine), ("torch-csr", TorchCsrEngine)):
            if eng not in args.engines:
                continue
            impl = cls(model, w)  # one instance for all thread counts: torch's are global
            if impl.nonzeros != split.nonzeros:
                raise fail(
                    f"{LABEL[eng]} at {rate:g}x holds {impl.nonzeros} nonzeros, "
                    f"the masks {split.nonzeros}"
                )
            for t in args.threads:
                cases.append(Case(eng, rate, t, split.nonzeros, dense, impl.traffic, impl))
        del w, masks
    if not cases:
        raise fail("no engine selected")

    set_torch_threads(min(args.threads))
    errs = verify(cases, model, x[:8])
    log(f"engines agree: max |diff| {max(errs.values(), default=0.0):.2e} over {len(errs)} cases")
    log(
        f"setup {time.perf_counter() - t0:.1f} s; timing {len(cases)} cases x {len(args.modes)} "
        f"modes x {args.repeats} repeats"
    )
    measure(cases, args, x, log)
    meta["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    meta["verify_max_abs_diff"] = errs
    probe_working_sets(roof, cases, args.modes, log)
    contention_md, contention = run_contention(args, log) if args.contention else (None, None)

    args.out.mkdir(parents=True, exist_ok=True)
    table = render_table(cases, splits, roof, args, meta, contention_md)
    (args.out / "table2.md").write_text(table)
    plot(cases, args, args.out / "fig4.png")
    results = {
        "meta": meta,
        "splits": [
            {**vars(s), "achieved": s.achieved, "gop_per_frame": 2 * s.nonzeros / 1e9}
            for s in splits
        ],
        "paper_table2_cpu": {
            f"{r:g}": {"gop": g, "us_per_frame": us, "gops": gs}
            for r, (g, us, gs) in PAPER_TABLE2_CPU.items()
        },
        "roofline": None if roof is None else roofline_json(roof),
        "cases": [
            {
                "case": c.key,
                "engine": c.engine,
                "label": LABEL[c.engine],
                "rate": c.rate,
                "threads": c.threads,
                "nonzeros": c.nonzeros,
                "dense_params": c.dense_params,
                "bytes_per_frame": {
                    mode: bytes_per_frame(c.traffic, mode, n) for mode, n in c.frames.items()
                },
                "bytes_source": c.traffic.source,
                "matrix_read_bytes": c.traffic.matrix_bytes,
                "phases": {
                    mode: [vars(p) for p in phases(c.traffic, mode, n)]
                    for mode, n in c.frames.items()
                },
                "engine_info": getattr(c.impl, "info", None),
                "matrices": getattr(c.impl, "matrices", None),
                "frames": c.frames,
                "samples_us_per_frame": c.samples,
            }
            for c in cases
        ],
        "summary": summary_rows(cases, roof),
        "contention": contention,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table)
    log(f"wrote {args.out}/table2.md, fig4.png, results.json in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
