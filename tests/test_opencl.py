"""The OpenCL backend (``Session(..., device="opencl")``) against torch and the CPU backend.

The device keeps every weight matrix in f16 (a file's f32 weights are rounded once, at load)
and computes in f32 or, where the device reports cl_khr_fp16 (``opencl_math="auto"``), with
half-precision products summed in f32, so the parity tolerance is the f16 one: max abs logit
error <= 1e-2 (the same bound as f16 files on the CPU). Streaming in chunks of any size gives
the offline logits to within 1e-5 on any device; with FMA (PoCL, GPUs) they are bit-identical
(docs/opencl.md).

Skipped, with the reason, when the build has no OpenCL backend or the machine has no OpenCL
platform or device (CI installs PoCL, a CPU OpenCL device, so these run there).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import rtmobile_rt
from runtime_models import export, make_model

SHAPES = [  # input, hidden, layers, classes
    (13, 17, 1, 5),
    (40, 64, 2, 41),
    (7, 33, 3, 10),
    (64, 31, 2, 39),
]
PRUNING = [  # (num_r, num_c), compression rate
    ((1, 1), 1.0),
    ((4, 2), 4.0),
    ((8, 4), 10.0),
]


def frames(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def opencl_available() -> None:
    """Skips the module, saying why, unless a Session can open on device='opencl'."""
    model = make_model(4, 8, 1, 3, seed=0)
    try:
        rtmobile_rt.Session(export(model), device="opencl")
    except RuntimeError as e:
        message = str(e)
        if "not available in this build" in message:
            pytest.skip(f"this build has no OpenCL backend ({message})")
        if "device 'opencl'" in message:
            pytest.skip(f"no usable OpenCL platform/device on this machine ({message})")
        raise


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("pruning", PRUNING, ids=lambda p: f"{p[0][0]}x{p[0][1]}@{p[1]:g}")
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_gru_matches_torch(
    shape: tuple[int, int, int, int], pruning: tuple[tuple[int, int], float], dtype: str
) -> None:
    (num_r, num_c), rate = pruning
    model = make_model(*shape, blocks=(num_r, num_c), rate=rate, seed=sum(shape))
    data = export(model, blocks=(num_r, num_c), dtype=dtype)
    session = rtmobile_rt.Session(data, device="opencl")
    assert session.info["isa"].startswith("opencl:")
    x = frames(83, shape[0])  # crosses the 64-frame chunk
    got = session.run(x)
    assert np.abs(got - model.logits(x)).max() <= 1e-2
    if dtype == "f16" and session.info["opencl_math"] == "float":
        # same f16 weights as the CPU: only f32 rounding differs
        cpu = rtmobile_rt.Session(data, threads=1).run(x)
        assert np.abs(got - cpu).max() <= 1e-4


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_lstm_matches_torch(dtype: str) -> None:
    model = make_model(11, 24, 2, 9, kind="lstm", blocks=(6, 2), rate=4.0, seed=3)
    session = rtmobile_rt.Session(export(model, blocks=(6, 2), dtype=dtype), device="opencl")
    x = frames(70, 11)
    assert session.info["kind"] == "lstm"
    assert np.abs(session.run(x) - model.logits(x)).max() <= 1e-2


def test_normalization_is_applied_like_torch() -> None:
    model = make_model(20, 32, 2, 12, blocks=(4, 2), rate=4.0, seed=5, norm=True)
    session = rtmobile_rt.Session(export(model, blocks=(4, 2)), device="opencl")
    x = frames(40, 20) * 3 + 1
    assert np.abs(session.run(x) - model.logits(x)).max() <= 1e-2


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_streaming_equals_offline(kind: str) -> None:
    model = make_model(40, 48, 2, 20, kind=kind, blocks=(8, 2), rate=10.0, seed=9)
    session = rtmobile_rt.Session(export(model, blocks=(8, 2), dtype="f16"), device="opencl")
    x = frames(150, 40, seed=2)
    offline = session.run(x)
    for sizes in ([1] * 150, [7, 64, 1, 65, 13], [150]):
        stream = session.stream()
        bounds = np.cumsum([0, *sizes])
        streamed = np.concatenate([stream.push(x[a:b]) for a, b in itertools.pairwise(bounds)])
        assert stream.frames_seen == 150
        assert np.abs(streamed - offline).max() <= 1e-5


def device_has_fp16() -> bool:
    data = export(make_model(4, 8, 1, 3, seed=0))
    return rtmobile_rt.Session(data, device="opencl").info["opencl_math"] == "half"


def test_opencl_math_option() -> None:
    """'auto' is half exactly where the device has cl_khr_fp16; 'float' always works."""
    model = make_model(24, 40, 2, 12, blocks=(4, 2), rate=4.0, seed=4)
    data = export(model, blocks=(4, 2), dtype="f16")
    fp16 = device_has_fp16()
    maths = ["float", "half"] if fp16 else ["float"]
    x = frames(90, 24, seed=1)
    want = model.logits(x)
    for math in maths:
        session = rtmobile_rt.Session(data, device="opencl", opencl_math=math)
        assert session.info["opencl_math"] == math
        got = session.run(x)
        assert np.abs(got - want).max() <= 1e-2
        stream = session.stream()
        streamed = np.concatenate([stream.push(x[a : a + 13]) for a in range(0, 90, 13)])
        assert np.abs(streamed - got).max() <= 1e-5
    if not fp16:
        with pytest.raises(RuntimeError, match="cl_khr_fp16"):
            rtmobile_rt.Session(data, device="opencl", opencl_math="half")
    with pytest.raises(ValueError, match="opencl_math must be"):
        rtmobile_rt.Session(data, device="opencl", opencl_math="double")
    with pytest.raises(ValueError, match="device 'cpu' computes in float"):
        rtmobile_rt.Session(data, opencl_math="float")
    assert "opencl_math" not in rtmobile_rt.Session(data).info


def test_info_and_bad_options() -> None:
    model = make_model(16, 32, 1, 4, blocks=(4, 2), rate=4.0, seed=1)
    data = export(model, blocks=(4, 2))
    info = rtmobile_rt.Session(data, device="opencl").info
    assert info["isa"].startswith("opencl:") and len(info["isa"]) > len("opencl:")
    assert info["compression_rate"] > 1.5
    with pytest.raises(ValueError, match="isa must be 'auto'"):
        rtmobile_rt.Session(data, device="opencl", isa="scalar")
    with pytest.raises(RuntimeError, match=r"available: cpu, opencl"):
        rtmobile_rt.Session(data, device="vulkan")


def test_bad_device_override_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    data = export(make_model(4, 8, 1, 3, seed=0))
    monkeypatch.setenv("RTM_OPENCL_DEVICE", "99:0")
    with pytest.raises(RuntimeError, match="no platform 99"):
        rtmobile_rt.Session(data, device="opencl")
    monkeypatch.setenv("RTM_OPENCL_DEVICE", "0:0")
    assert rtmobile_rt.Session(data, device="opencl").info["isa"].startswith("opencl:")
