from typing import Any

import numpy as np

__version__: str

class FormatError(ValueError): ...

class Stream:
    def push(self, frames: np.ndarray) -> np.ndarray: ...
    def reset(self) -> None: ...
    @property
    def frames_seen(self) -> int: ...

class Session:
    def __init__(
        self,
        model: str | bytes,
        threads: int = 0,
        isa: str = "auto",
        device: str = "cpu",
        weights: str = "stored",
        frame_tile: int = 0,
        chunk_frames: int = 0,
        opencl_math: str = "auto",
    ) -> None: ...
    def run(self, frames: np.ndarray) -> np.ndarray: ...
    def stream(self) -> Stream: ...
    @property
    def info(self) -> dict[str, Any]: ...

def available_isas() -> list[str]: ...

class _kernels:
    @staticmethod
    def sigmoid(x: np.ndarray, isa: str) -> np.ndarray: ...
    @staticmethod
    def tanh(x: np.ndarray, isa: str) -> np.ndarray: ...
