"""NIST SPHERE (.WAV in LDC's TIMIT) reading and writing, uncompressed 16-bit PCM only.

LDC ships TIMIT as SPHERE files whose header is plain text. Some copies are shorten-compressed
("sample_coding -s26 pcm,embedded-shorten-v2.00"); decoding shorten is out of scope, so such
files are rejected with an error that names the file and the coding rather than read as noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SphereError",
    "SphereHeader",
    "UnsupportedSphereError",
    "read_sphere",
    "read_sphere_header",
    "write_sphere",
]

_MAGIC = b"NIST_1A\n"
_BYTE_FORMATS = {"01": "<", "10": ">"}
_MAX_HEADER = 1 << 20  # a real header is 1024 bytes; refuse absurd sizes before reading them


class SphereError(ValueError):
    """A file that is not a well-formed NIST SPHERE file (bad magic, header, or truncated)."""


class UnsupportedSphereError(SphereError):
    """A well-formed SPHERE file in an encoding we do not decode (shorten, u-law, 8-bit...)."""


@dataclass(frozen=True)
class SphereHeader:
    """Parsed header fields; ``fields`` keeps every field with its typed value."""

    header_size: int
    fields: dict[str, int | float | str]

    def _get(self, name: str, default: int | float | str | None = None) -> int | float | str:
        if name in self.fields:
            return self.fields[name]
        if default is None:
            raise KeyError(name)
        return default

    @property
    def sample_count(self) -> int:
        return int(self._get("sample_count"))

    @property
    def sample_rate(self) -> int:
        return int(self._get("sample_rate"))

    @property
    def sample_n_bytes(self) -> int:
        return int(self._get("sample_n_bytes"))

    @property
    def channel_count(self) -> int:
        return int(self._get("channel_count", 1))

    @property
    def sample_byte_format(self) -> str:
        return str(self._get("sample_byte_format", ""))

    @property
    def sample_coding(self) -> str:
        # The SPHERE spec: an absent sample_coding means uncompressed PCM.
        return str(self._get("sample_coding", "pcm"))


def _parse_header(head: bytes, path: Path, header_size: int) -> dict[str, int | float | str]:
    fields: dict[str, int | float | str] = {}
    text = head.decode("latin-1")
    for lineno, line in enumerate(text.split("\n")[2:], 3):
        line = line.rstrip("\r")
        if line.strip() == "end_head":
            return fields
        if not line.strip() or line.startswith(";"):
            continue
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            raise SphereError(f"{path}: malformed SPHERE header line {lineno}: {line!r}")
        name, kind, value = parts
        try:
            if kind == "-i":
                fields[name] = int(value.strip())
            elif kind == "-r":
                fields[name] = float(value.strip())
            elif kind.startswith("-s") and kind[2:].isdigit():
                fields[name] = value[: int(kind[2:])]
            else:
                raise SphereError(f"{path}: unknown field type {kind!r} on header line {lineno}")
        except ValueError as e:
            if isinstance(e, SphereError):
                raise
            raise SphereError(f"{path}: bad value on SPHERE header line {lineno}: {line!r}") from e
    raise SphereError(f"{path}: no end_head within the {header_size}-byte SPHERE header")


def read_sphere_header(path: str | os.PathLike[str]) -> SphereHeader:
    """Parse the header of a SPHERE file, checking the magic and the declared header size."""
    path = Path(path)
    with path.open("rb") as f:
        start = f.read(16)
        if not start.startswith(_MAGIC):
            raise SphereError(
                f"{path}: not a NIST SPHERE file (expected {_MAGIC!r} at the start, "
                f"found {start[:8]!r})"
            )
        size_line = start[len(_MAGIC) :].split(b"\n", 1)[0]
        try:
            header_size = int(size_line.strip())
        except ValueError:
            raise SphereError(f"{path}: bad SPHERE header size {size_line!r}") from None
        if not 16 <= header_size <= _MAX_HEADER:
            raise SphereError(f"{path}: implausible SPHERE header size {header_size}")
        f.seek(0)
        head = f.read(header_size)
    if len(head) < header_size:
        raise SphereError(
            f"{path}: truncated SPHERE header ({len(head)} of {header_size} bytes present)"
        )
    return SphereHeader(header_size, _parse_header(head, path, header_size))


def read_sphere(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a mono 16-bit PCM SPHERE file as float32 samples in [-1, 1) and its sample rate.

    Bytes after the declared ``sample_count`` samples are ignored; fewer bytes is an error.
    """
    path = Path(path)
    hdr = read_sphere_header(path)
    coding = hdr.sample_coding.strip().lower()
    if coding != "pcm":
        raise UnsupportedSphereError(
            f"{path}: sample_coding {hdr.sample_coding!r} is not supported; only uncompressed "
            "'pcm' is read (decompress shorten-coded TIMIT first, e.g. with sph2pipe)"
        )
    try:
        count, rate, nbytes = hdr.sample_count, hdr.sample_rate, hdr.sample_n_bytes
    except KeyError as e:
        raise SphereError(f"{path}: SPHERE header lacks the required field {e.args[0]}") from None
    if nbytes != 2:
        raise UnsupportedSphereError(f"{path}: sample_n_bytes {nbytes}; only 16-bit PCM is read")
    if hdr.channel_count != 1:
        raise UnsupportedSphereError(
            f"{path}: channel_count {hdr.channel_count}; only mono files are read"
        )
    order = _BYTE_FORMATS.get(hdr.sample_byte_format)
    if order is None:
        raise UnsupportedSphereError(
            f"{path}: sample_byte_format {hdr.sample_byte_format!r}; expected '01' "
            "(little-endian) or '10' (big-endian)"
        )
    if count < 0 or rate <= 0:
        raise SphereError(f"{path}: bad sample_count {count} or sample_rate {rate}")
    want = count * nbytes
    with path.open("rb") as f:
        f.seek(hdr.header_size)
        data = f.read(want)
    if len(data) < want:
        raise SphereError(
            f"{path}: truncated: header declares {count} samples ({want} bytes) but only "
            f"{len(data)} bytes follow the {hdr.header_size}-byte header"
        )
    pcm = np.frombuffer(data, dtype=np.dtype(f"{order}i2"))
    return (pcm.astype(np.float32) / 32768.0), rate


def write_sphere(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    sample_rate: int = 16000,
    *,
    byte_format: str = "01",
    extra_fields: dict[str, int | float | str] | None = None,
    header_size: int = 1024,
) -> Path:
    """Write mono 16-bit PCM as a SPHERE file shaped like LDC's TIMIT files.

    ``samples`` is int16, or float in [-1, 1] (scaled by 32768 and clipped). ``extra_fields``
    are added to the header verbatim (tests use it to fake e.g. a shorten ``sample_coding``).
    """
    path = Path(path)
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"write_sphere: expected 1-D samples, got shape {x.shape}")
    if x.dtype != np.int16:
        x = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    if byte_format not in _BYTE_FORMATS:
        raise ValueError(f"write_sphere: byte_format must be '01' or '10', not {byte_format!r}")
    fields: dict[str, int | float | str] = {
        "database_id": "TIMIT",
        "channel_count": 1,
        "sample_count": len(x),
        "sample_rate": int(sample_rate),
        "sample_min": int(x.min()) if len(x) else 0,
        "sample_max": int(x.max()) if len(x) else 0,
        "sample_n_bytes": 2,
        "sample_byte_format": byte_format,
        "sample_sig_bits": 16,
    }
    fields.update(extra_fields or {})
    lines = ["NIST_1A", f"{header_size:7d}"]
    for k, v in fields.items():
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise ValueError(f"write_sphere: field {k} has unsupported type {type(v).__name__}")
        if isinstance(v, int):
            lines.append(f"{k} -i {v}")
        elif isinstance(v, float):
            lines.append(f"{k} -r {v!r}")
        else:
            lines.append(f"{k} -s{len(v)} {v}")
    lines.append("end_head")
    head = ("\n".join(lines) + "\n").encode("latin-1")
    if len(head) > header_size:
        raise ValueError(f"write_sphere: header needs {len(head)} bytes > {header_size}")
    head += b" " * (header_size - len(head))
    path.write_bytes(head + x.astype(np.dtype(f"{_BYTE_FORMATS[byte_format]}i2")).tobytes())
    return path
