"""RTMobile runtime: run BSP-pruned GRU/LSTM speech models stored in BSPC files.

>>> import rtmobile_rt
>>> session = rtmobile_rt.Session("model.bspc")          # doctest: +SKIP
>>> logits = session.run(frames)                          # doctest: +SKIP
>>> stream = session.stream(); stream.push(chunk)         # doctest: +SKIP
"""

from __future__ import annotations

from rtmobile_rt._core import (
    FormatError,
    MemoryLimitError,
    NonFiniteInputError,
    __version__,
    available_isas,
)
from rtmobile_rt.session import Session, Stream

__all__ = [
    "FormatError",
    "MemoryLimitError",
    "NonFiniteInputError",
    "Session",
    "Stream",
    "__version__",
    "available_isas",
]
