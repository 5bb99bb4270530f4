"""Session and Stream: thin wrappers that convert inputs, then call the C++ core."""

from __future__ import annotations

import json
import os
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from rtmobile_rt import _core
from rtmobile_rt._core import FormatError

ModelSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


def _as_frames(frames: npt.ArrayLike, input_dim: int) -> np.ndarray:
    """Float32, C-contiguous [T, input_dim]; converts numeric input, rejects the rest."""
    array = np.asarray(frames)
    if array.dtype.kind not in "fiu":
        raise TypeError(
            f"frames must be a real numeric array (float32 preferred), got dtype {array.dtype}"
        )
    if array.ndim != 2 or array.shape[1] != input_dim:
        raise ValueError(
            f"frames must have shape [T, {input_dim}] (T frames of {input_dim} features), "
            f"got shape {tuple(array.shape)}"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


class Stream:
    """Streaming inference: the recurrent state is carried from one push() to the next.

    Pushing an utterance in chunks of any size gives exactly the logits of one
    ``Session.run`` over the whole utterance.
    """

    def __init__(self, core: _core.Stream, input_dim: int) -> None:
        self._core = core
        self._input_dim = input_dim

    def push(self, chunk: npt.ArrayLike) -> np.ndarray:
        """Logits [n, C] for the n frames of ``chunk`` [n, F]."""
        return self._core.push(_as_frames(chunk, self._input_dim))

    def reset(self) -> None:
        """Forget the state: the next push starts a new utterance."""
        self._core.reset()

    @property
    def frames_seen(self) -> int:
        return int(self._core.frames_seen)

    def get_state(self) -> np.ndarray:
        """A copy of the recurrent state, float32 [state_size]: layer by layer, the layer's h
        (``hidden_dims[l]`` values), then for an LSTM its c. Pass it to :meth:`set_state` of
        this or another stream of the same model to resume or fork the utterance."""
        return self._core.get_state()

    def set_state(self, state: npt.ArrayLike) -> None:
        """Replace the recurrent state (``frames_seen`` is kept). A wrong length raises
        ``ValueError``; with ``nonfinite="raise"`` a NaN or infinite value raises
        ``NonFiniteInputError``; either way the state is left unchanged."""
        self._core.set_state(np.asarray(state, dtype=np.float32))


class Session:
    """A loaded, validated model with kernels chosen for this CPU.

    ``model`` is a path to a ``.bspc`` file or its bytes. The file is read once, here: the
    session keeps its own copy of everything it uses, so rewriting, truncating or deleting the
    file afterwards does not affect it. A FIFO, device or directory is refused (``OSError``)
    without blocking. ``threads=None`` (with no tuning file) sizes
    the pool from the CPUs this process may use (affinity mask and cgroup quota, at most 4) and
    runs calls of fewer than 16 frames, such as streamed pushes, on the calling thread; an
    explicit count uses the pool for every call large enough to gain from it. ``isa`` is
    ``"auto"`` or one of ``available_isas()``;
    ``device`` is ``"cpu"`` or, where the build and machine have it, ``"opencl"``.
    ``opencl_math`` (device ``"opencl"`` only): ``"auto"`` multiplies in half precision where
    the device reports ``cl_khr_fp16`` and in float otherwise, ``"half"`` requires fp16,
    ``"float"`` forces float; ``info["opencl_math"]`` says which is in use.

    Execution tuning: ``weights`` (``"stored"``, ``"f32"``, or ``"f16"``: half the memory
    traffic, results within the f16 tolerance), ``frame_tile`` and ``chunk_frames`` (0 = the
    defaults). With ``tuning="auto"`` (the default) a tuning file written by ``rtmobile tune``
    for this model and CPU supplies the values the caller left unset; ``tuning=None`` ignores
    tuning files; a path reads that file.
    ``memory_limit_mb`` (0 = 1024) bounds what the session may allocate: the bound is computed
    from the file's headers before anything large is allocated (``info["planned_bytes"]``), and a
    model over it raises ``MemoryLimitError``. ``nonfinite`` is the rule for NaN or infinite
    input: ``"raise"`` (the default) raises ``NonFiniteInputError`` naming the frame and feature
    and processes nothing, so a stream's state stays as it was; ``"propagate"`` skips the check,
    and a non-finite value then stays in a stream's state until ``reset()``.
    A malformed file raises ``FormatError`` naming the section and field that is wrong.
    """

    def __init__(
        self,
        model: ModelSource,
        threads: int | None = None,
        isa: str = "auto",
        device: str = "cpu",
        *,
        weights: str | None = None,
        frame_tile: int | None = None,
        chunk_frames: int | None = None,
        tuning: str | os.PathLike[str] | None = "auto",
        opencl_math: str = "auto",
        memory_limit_mb: int = 0,
        nonfinite: str = "raise",
    ) -> None:
        if isinstance(model, (bytearray, memoryview)):
            model = bytes(model)
        if isinstance(model, os.PathLike):
            model = os.fspath(model)
        if not isinstance(model, (str, bytes)):
            raise TypeError(
                f"model must be a path or the model's bytes, got {type(model).__name__}"
            )
        if isinstance(model, str) and not os.path.exists(model):
            raise FileNotFoundError(f"model file not found: {model!r}")
        self.tuning: dict[str, Any] = {}
        if tuning is not None:
            from rtmobile_rt.tuning import find_tuning

            self.tuning = find_tuning(model, tuning)
        tuned = self.tuning.get("options", {})
        if threads is None:
            threads = int(tuned.get("threads", 0))
        if weights is None:
            weights = str(tuned.get("weights", "stored"))
        if frame_tile is None:
            frame_tile = int(tuned.get("frame_tile", 0))
        if chunk_frames is None:
            chunk_frames = int(tuned.get("chunk_frames", 0))
        if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= 256:
            raise ValueError(f"threads must be an int in [1, 256] or None, got {threads!r}")
        for name, value in (("frame_tile", frame_tile), ("chunk_frames", chunk_frames)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int or None, got {value!r}")
        if (
            isinstance(memory_limit_mb, bool)
            or not isinstance(memory_limit_mb, int)
            or not 0 <= memory_limit_mb < 2**44
        ):
            raise ValueError(
                f"memory_limit_mb must be an int >= 0 (0 = 1024 MiB), got {memory_limit_mb!r}"
            )
        for name, text in (
            ("isa", isa),
            ("device", device),
            ("weights", weights),
            ("opencl_math", opencl_math),
            ("nonfinite", nonfinite),
        ):
            if not isinstance(text, str):
                raise TypeError(f"{name} must be a string, got {type(text).__name__}")
        if "\x00" in isa or "\x00" in device:
            raise ValueError(f"isa and device must not contain NUL characters, got {isa!r}")
        self._core = _core.Session(
            model,
            threads,
            isa,
            device,
            weights,
            frame_tile,
            chunk_frames,
            opencl_math,
            memory_limit_mb,
            nonfinite,
        )
        self._info: dict[str, Any] = self._core.info

    @property
    def info(self) -> dict[str, Any]:
        """Dimensions, per-matrix BSP blocks and nonzeros, compression rate, ISA, threads."""
        return dict(self._info)

    @property
    def input_dim(self) -> int:
        return int(self._info["input_dim"])

    @property
    def output_dim(self) -> int:
        return int(self._info["output_dim"])

    @property
    def labels(self) -> list[str]:
        return list(self._info["labels"])

    @property
    def metadata(self) -> dict[str, Any]:
        """The model file's METADATA (e.g. its feature configuration); {} when absent."""
        text = self._info["metadata"]
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise FormatError(f"METADATA[0]: not valid JSON: {e}") from e
        if not isinstance(value, dict):
            raise FormatError("METADATA[0]: must be a JSON object")
        return value

    def run(self, frames: npt.ArrayLike) -> np.ndarray:
        """Logits [T, C] for ``frames`` [T, F], starting from a zero state."""
        return self._core.run(_as_frames(frames, self.input_dim))

    def stream(self) -> Stream:
        """A new stream with a zero state; streams share this session's weights and threads."""
        return Stream(self._core.stream(), self.input_dim)

    def __repr__(self) -> str:
        i = self._info
        return (
            f"Session({i['kind']} {i['input_dim']}->{i['hidden_dims']}->{i['output_dim']}, "
            f"compression {i['compression_rate']:.1f}x, isa={i['isa']}, threads={i['threads']})"
        )
