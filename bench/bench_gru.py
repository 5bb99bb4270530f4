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

Roofline (a read-stream roofline): bench/cpp/roofline.cc (built here with cmake + ninja, -O3
-march=native) measures a read-only stream (the sum of one array, 4 concurrent streams per
thread) and, for reference, a STREAM-like triad, each over the same working sets (DRAM:
3 x ``--triad-mb`` MB; also working sets sized for this CPU's L2 and L3), and the FMA peak, at
each thread count. The kernels only read their weights, and a read stream runs at or above the
triad (no stores, no uncounted write-allocate traffic), so the triad is no bound for them:
bound = min(peak, read bandwidth x intensity), intensity = 2 x nonzeros / bytes of weights +
indices read per frame. "% DRAM read-stream roofline" uses the DRAM read stream; "% cache
read-stream roofline" uses the read stream of the smallest cache level that holds the weights
(<= 75% of t x L2, then of L3). A % over 100 is printed with the level whose bandwidth made its
bound: the weights came from a faster level, or an offline engine that batches the input
projections read W_ih and W_out less than once per frame.

Outputs (``--out``): table2.md, fig4.png, results.json (all raw samples).

    python bench/bench_gru.py                      # full run (minutes; use a quiet machine)
    python bench/bench_gru.py --smoke --out /tmp/b # tiny model, seconds; checks the plumbing
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
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


def bspc_bytes_per_frame(stats: dict[str, Any]) -> int:
    """Weights + u32 row/column indices the runtime reads for one frame (BSPC accounting)."""
    mats = stats["matrices"]
    items = mats.values() if isinstance(mats, dict) else mats
    total = 0
    for m in items:
        size = 2 if m["dtype"] == "f16" else 4
        total += m["stored"] * size + 4 * (m["col_index_count"] + m["row_index_count"])
    return total


# ----------------------------------------------------------------------------- engines


class Engine(Protocol):
    """What the timing loop needs: streaming steps with carried state, and offline runs."""

    def reset(self) -> None: ...

    def step(self, frame: np.ndarray) -> np.ndarray: ...

    def run(self, frames: np.ndarray) -> np.ndarray: ...


class RtmEngine:
    """rtmobile_rt.Session: run() offline, one Stream pushed one frame at a time."""

    def __init__(self, data: bytes, threads: int) -> None:
        import inspect

        import rtmobile_rt

        # Time the runtime's defaults, not a tuning file that happens to be on this machine.
        params = inspect.signature(rtmobile_rt.Session).parameters
        extra: dict[str, Any] = {"tuning": None} if "tuning" in params else {}
        self.session = rtmobile_rt.Session(data, threads=threads, **extra)
        self._stream = self.session.stream()
        self.info = {k: v for k, v in self.session.info.items() if k not in ("matrices", "labels")}

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
        self.bytes_per_frame = sum(
            int(a.data.nbytes + a.indices.nbytes + a.indptr.nbytes) for a in self.m.values()
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
        self.bytes_per_frame = 0
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
            self.bytes_per_frame += sum(
                int(x.numel() * x.element_size())
                for x in (t.values(), t.col_indices(), t.crow_indices())
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
    bytes_per_frame: int
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


# ----------------------------------------------------------------------------- roofline


@dataclass
class Roofline:
    """Measured peak and bandwidths per thread count, and the cache capacities used.

    ``bw`` is the read-stream bandwidth per level, the memory roof (the kernels only read their
    weights); ``triad`` the STREAM-like triad per level, reported for reference only.
    """

    peak: dict[int, float]
    peak_isa: dict[int, str]
    bw: dict[int, dict[str, float]]
    triad: dict[int, dict[str, float]]
    l2_bytes: int
    l3_bytes: int
    raw: list[dict[str, Any]]
    compiler: str

    def level_for(self, nbytes: int, threads: int) -> str:
        if self.l2_bytes and nbytes <= 0.75 * threads * self.l2_bytes and "l2" in self.bw[threads]:
            return "l2"
        if self.l3_bytes and nbytes <= 0.75 * self.l3_bytes and "l3" in self.bw[threads]:
            return "l3"
        return "dram"

    def bound(self, flops: float, nbytes: int, threads: int, level: str) -> float:
        """GFLOP/s bound: min(peak, read bandwidth of `level` x arithmetic intensity)."""
        return min(self.peak[threads], self.bw[threads][level] * flops / max(1, nbytes))

    def limit(self, flops: float, nbytes: int, threads: int, level: str) -> str:
        """What made bound(): `level` (its read bandwidth) or "FMA peak"."""
        memory = self.bw[threads][level] * flops / max(1, nbytes)
        return level if memory <= self.peak[threads] else "FMA peak"


def cache_sizes() -> tuple[int, int]:
    """(L2 per core, L3) in bytes from sysfs; 0 where unknown."""
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
        n = int(size.rstrip("KMG")) * mult
        if kind in ("Unified", "Data") and level == 2:
            l2 = n
        elif kind == "Unified" and level == 3:
            l3 = n
    return l2, l3


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


def measure_roofline(
    args: argparse.Namespace, threads: Sequence[int], log: Callable[[str], None]
) -> Roofline | None:
    """Run the probe at each thread count; None (with a warning) if it cannot be built.

    The memory roof is the probe's read stream; its triad is kept for reference.
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
    l2, l3 = cache_sizes()
    peak: dict[int, float] = {}
    isa: dict[int, str] = {}
    bw: dict[int, dict[str, float]] = {}
    triad: dict[int, dict[str, float]] = {}
    raw: list[dict[str, Any]] = []
    for t in threads:
        levels: list[tuple[str, int]] = []
        if l2:
            levels.append(("l2", max(48, t * l2 // 2 // 1024)))
        if l3 and (not l2 or l3 // 2 > t * l2):
            levels.append(("l3", l3 // 2 // 1024))
        cmd = [
            str(exe),
            "--threads",
            str(t),
            "--dram-mb",
            f"{args.triad_mb:g}",
            "--reps",
            str(args.roofline_reps),
            "--fma-ms",
            f"{args.fma_ms:g}",
        ]
        if levels:
            cmd += ["--cache-kb", ",".join(str(kb) for _, kb in levels)]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise fail(f"{shlex.join(cmd)} exited {p.returncode}: {p.stderr}")
        lines = [json.loads(s) for s in p.stdout.splitlines() if s.strip()]
        names = ["dram", *(n for n, _ in levels)]
        for kind, out in (("read", bw), ("triad", triad)):
            got = [d for d in lines if d["kind"] == kind]
            if len(got) != len(names):
                raise fail(
                    f"{shlex.join(cmd)} printed {len(got)} {kind} lines for {len(names)} "
                    f"levels ({', '.join(names)}); is {exe} out of date?"
                )
            out[t] = {}
            for name, d in zip(names, got, strict=True):
                d["name"] = name
                out[t][name] = float(d["gbs"])
        fmas = [d for d in lines if d["kind"] == "fma"]
        best = max(fmas, key=lambda d: float(d["gflops"]))
        peak[t], isa[t] = float(best["gflops"]), str(best["isa"])
        raw += lines
        log(
            f"roofline t={t}: read "
            + ", ".join(f"{k} {v:.1f}" for k, v in bw[t].items())
            + " GB/s (triad "
            + ", ".join(f"{k} {v:.1f}" for k, v in triad[t].items())
            + f" GB/s), FMA peak {peak[t]:.1f} GFLOP/s ({isa[t]})"
        )
    return Roofline(peak, isa, bw, triad, l2, l3, raw, compiler)


# ----------------------------------------------------------------------------- reporting


def machine_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
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


def gflops(nonzeros: int, us: float | None) -> float | None:
    return None if us is None else 2.0 * nonzeros / (us * 1e3)


def fmt_pct(p: float | None, limit: str, always: bool = False) -> str:
    """A % of roofline, with what made its bound (`limit`) when over 100 or `always`."""
    if p is None:
        return "n/a"
    text = f"{p:.0f}"
    return f"{text} ({limit})" if always or float(text) > 100.0 else text


def roofline_limits(roof: Roofline | None, c: Case, level: str) -> tuple[str, str]:
    """What made the DRAM and the cache-aware bounds of roofline_cols: a level or FMA peak."""
    if roof is None or c.threads not in roof.peak:
        return "n/a", "n/a"
    flops = 2.0 * c.nonzeros
    return (
        roof.limit(flops, c.bytes_per_frame, c.threads, "dram"),
        roof.limit(flops, c.bytes_per_frame, c.threads, level),
    )


def roofline_cols(
    roof: Roofline | None, c: Case, us: float | None
) -> tuple[float | None, float | None, str, float | None, float | None]:
    """(DRAM bound, % of it, cache level, cache-aware bound, % of it) for one case.

    Bounds are GFLOP/s of the read-stream roofline: min(FMA peak, read bandwidth x intensity).
    """
    if roof is None or us is None or c.threads not in roof.peak:
        return None, None, "n/a", None, None
    flops = 2.0 * c.nonzeros
    real = gflops(c.nonzeros, us)
    assert real is not None
    b_dram = roof.bound(flops, c.bytes_per_frame, c.threads, "dram")
    level = roof.level_for(c.bytes_per_frame, c.threads)
    b_cache = roof.bound(flops, c.bytes_per_frame, c.threads, level)
    return b_dram, 100.0 * real / b_dram, level, b_cache, 100.0 * real / b_cache


def find(cases: list[Case], engine: str, rate: float, threads: int) -> Case | None:
    for c in cases:
        if c.engine == engine and c.rate == rate and c.threads == threads:
            return c
    return None


def med(c: Case | None, mode: str) -> float | None:
    return None if c is None else c.median(mode)


def render_table(
    cases: list[Case],
    splits: list[Split],
    roof: Roofline | None,
    args: argparse.Namespace,
    meta: dict[str, Any],
) -> str:
    dims = meta["model"]
    out: list[str] = []
    w = out.append
    w("# RTMobile Table II / Fig. 4 on this CPU")
    w("")
    if args.smoke:
        w("**Smoke run: tiny model, few frames. The numbers only check the plumbing.**")
        w("")
    m, v = meta["machine"], meta["versions"]
    w(f"* Date: {meta['date']}")
    w(
        f"* Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable), "
        f"L2 {roof.l2_bytes // 1024 if roof else '?'} KiB/core, "
        f"L3 {roof.l3_bytes // 1024 if roof else '?'} KiB; {m['platform']}; load average "
        f"{', '.join(f'{x:.2f}' for x in (m['loadavg_start'] or []))} at start, "
        f"{', '.join(f'{x:.2f}' for x in (meta.get('loadavg_end') or []))} at end"
    )
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
            bws = ", ".join(f"{k} {val:.1f}" for k, val in roof.bw[t].items())
            tri = ", ".join(f"{k} {val:.1f}" for k, val in roof.triad[t].items())
            parts.append(
                f"{t} thread(s): read {bws} GB/s, FMA peak {roof.peak[t]:.1f} GFLOP/s "
                f"({roof.peak_isa[t]}); triad {tri} GB/s"
            )
        w(
            f"* Roofline probe ({roof.compiler or 'c++'}, -O3 -march=native): "
            + "; ".join(parts)
            + ". The read stream is the memory roof; the triad is for reference only."
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
        "% read-stream roofline: bound = min(FMA peak, read-stream bandwidth x intensity), "
        "intensity = 2 x nonzeros / bytes of weights + indices read per frame (the kernels only "
        "read their weights, so the read stream, not the triad, is the memory roof). The DRAM "
        "column uses the DRAM read stream; the cache column the read stream of the smallest "
        "level holding the weights, named in parentheses. A % over 100 names the level whose "
        "bandwidth made its bound: the weights came from a faster level, or (offline) the "
        "batched input projections read W_ih and W_out less than once per frame."
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
                "| x rtmobile dense | % DRAM read-stream roofline "
                "| % cache read-stream roofline |"
            )
            sep = "|--:" * 15 + "|"
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
                if c is not None:
                    _, p_dram, level, _, p_cache = roofline_cols(roof, c, us)
                    lim_dram, lim_cache = roofline_limits(roof, c, level)
                else:
                    p_dram, p_cache, lim_dram, lim_cache = None, None, "n/a", "n/a"
                row = (
                    f"| {r:g}x | {2 * s.nonzeros / 1e9:.6f} | {fmt_us(us)} | {fmt_us(f16)} "
                    f"| {fmt_us(sc)} | {fmt_us(tc)} | {fmt_g(real)} | {fmt_g(eff)} "
                    f"| {fmt_x(med(td, mode), us)} | {fmt_x(med(od, mode), us)} "
                    f"| {fmt_x(sc, us)} | {fmt_x(tc, us)} | {fmt_x(med(rd, mode), us)} "
                    f"| {fmt_pct(p_dram, lim_dram)} | {fmt_pct(p_cache, lim_cache, always=True)} |"
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
    w("## All engines: read-stream roofline")
    w("")
    w(
        "Bytes = weights + indices read per frame (BSPC: values + u32 row/column indices; CSR: "
        "values + indices + row pointers; dense: 4 bytes a weight). Intensity = 2 x nonzeros / "
        "bytes. Bound = min(FMA peak, read-stream bandwidth x intensity), of DRAM and of the "
        "cache level holding the weights. A % over 100 names the level whose read bandwidth "
        "made its bound (FMA peak where the peak did)."
    )
    w("")
    w(
        "| mode | threads | engine | rate | frames | us/frame (median) | min - max | GOP/s "
        "| eff. GOP/s | MB/frame | flop/B | DRAM read bound GOP/s | % | cache level "
        "| cache read bound GOP/s | % |"
    )
    w("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|")
    for mode in args.modes:
        for t in args.threads:
            for c in cases:
                if c.threads != t or not c.samples[mode]:
                    continue
                us = c.median(mode)
                b_dram, p_dram, level, b_cache, p_cache = roofline_cols(roof, c, us)
                lim_dram, lim_cache = roofline_limits(roof, c, level)
                w(
                    f"| {mode} | {t} | {LABEL[c.engine]} | {c.rate:g}x | {c.frames[mode]} "
                    f"| {fmt_us(us)} | {fmt_us(min(c.samples[mode]))} - "
                    f"{fmt_us(max(c.samples[mode]))} | {fmt_g(gflops(c.nonzeros, us))} "
                    f"| {fmt_g(gflops(c.dense_params, us))} | {c.bytes_per_frame / 1e6:.3f} "
                    f"| {2 * c.nonzeros / c.bytes_per_frame:.3f} | {fmt_g(b_dram)} "
                    f"| {fmt_pct(p_dram, lim_dram)} | {level} | {fmt_g(b_cache)} "
                    f"| {fmt_pct(p_cache, lim_cache)} |"
                )
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
            b_dram, p_dram, level, b_cache, p_cache = roofline_cols(roof, c, us)
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
                    "roofline_dram_gops": b_dram,
                    "pct_roofline_dram": p_dram,
                    "cache_level": level,
                    "roofline_cache_gops": b_cache,
                    "pct_roofline_cache": p_cache,
                }
            )
    return rows


# ----------------------------------------------------------------------------- main


# Defaults of the options that --smoke changes: (full run, smoke run).
RUN_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "rates": (list(PAPER_RATES), list(SMOKE_RATES)),
    "repeats": (7, 2),
    "stream_frames": (200, 16),
    "offline_frames": (1000, 48),
    "warmup_frames": (20, 2),
    "max_sample_seconds": (3.0, 0.5),
    "triad_mb": (64.0, 4.0),
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
        "--triad-mb",
        type=float,
        default=None,
        help="MB per triad array for the DRAM bandwidth, three arrays; the read stream "
        f"reads one array of the same 3 x MB {dflt('triad_mb')}",
    )
    p.add_argument(
        "--roofline-reps",
        type=int,
        default=None,
        help=f"best-of repeats of the read, triad and FMA timings {dflt('roofline_reps')}",
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
    if not (args.max_sample_seconds > 0 and args.triad_mb > 0 and args.fma_ms > 0):
        p.error("--max-sample-seconds, --triad-mb and --fma-ms must be > 0")
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
                    Case("torch", 1.0, t, dense, dense, 4 * dense, TorchDenseEngine(model))
                )
            if "onnxruntime" in args.engines:
                cases.append(
                    Case(
                        "onnxruntime",
                        1.0,
                        t,
                        dense,
                        dense,
                        4 * dense,
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
            nbytes = bspc_bytes_per_frame(stats)
            if int(stats["nonzero_weights"]) != split.nonzeros:
                raise fail(
                    f"BSPC at {rate:g}x holds {stats['nonzero_weights']} nonzeros, "
                    f"the masks {split.nonzeros}"
                )
            for t in args.threads:
                cases.append(Case(eng, rate, t, split.nonzeros, dense, nbytes, RtmEngine(data, t)))
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
                cases.append(Case(eng, rate, t, split.nonzeros, dense, impl.bytes_per_frame, impl))
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

    args.out.mkdir(parents=True, exist_ok=True)
    table = render_table(cases, splits, roof, args, meta)
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
        "roofline": None
        if roof is None
        else {
            "peak_gflops": roof.peak,
            "peak_isa": roof.peak_isa,
            "memory_roof": "read",
            "bandwidth_gbs": roof.bw,
            "triad_gbs": roof.triad,
            "l2_bytes": roof.l2_bytes,
            "l3_bytes": roof.l3_bytes,
            "compiler": roof.compiler,
            "raw": roof.raw,
        },
        "cases": [
            {
                "case": c.key,
                "engine": c.engine,
                "label": LABEL[c.engine],
                "rate": c.rate,
                "threads": c.threads,
                "nonzeros": c.nonzeros,
                "dense_params": c.dense_params,
                "bytes_per_frame": c.bytes_per_frame,
                "engine_info": getattr(c.impl, "info", None),
                "frames": c.frames,
                "samples_us_per_frame": c.samples,
            }
            for c in cases
        ],
        "summary": summary_rows(cases, roof),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table)
    log(f"wrote {args.out}/table2.md, fig4.png, results.json in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
