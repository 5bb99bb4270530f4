"""The one batch shape training and evaluation consume, and adapters onto it.

Training code takes *any* iterable of batches so that it does not depend on the data layer's
classes: a :class:`Batch`, a ``(feats, labels, lengths)`` tuple, or a mapping with those keys
(``features``/``targets``/``lens`` are accepted too) all work.

* ``feats``: float ``[B, T, F]`` raw features (the model normalises them itself);
* ``labels``: int ``[B, T]`` frame labels (39-phone indices); padding is ``IGNORE_INDEX``;
* ``lengths``: int ``[B]`` valid frames per utterance, ``1 <= length <= T``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["IGNORE_INDEX", "Batch", "as_batch", "collate_frames"]

IGNORE_INDEX = -100  # torch.nn.functional.cross_entropy's default ignore_index

_KEYS = {
    "feats": ("feats", "features", "x"),
    "labels": ("labels", "targets", "y"),
    "lengths": ("lengths", "lens", "length"),
}


@dataclass
class Batch:
    feats: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        """Bool ``[B, T]``: frames inside their utterance whose label is not ignored."""
        t = torch.arange(self.labels.shape[1], device=self.labels.device)
        return (t[None, :] < self.lengths[:, None]) & (self.labels != IGNORE_INDEX)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.feats.to(device), self.labels.to(device), self.lengths.to(device))


def _pick(d: Mapping[str, Any], field: str) -> Any:
    for k in _KEYS[field]:
        if k in d:
            return d[k]
    raise ValueError(f"batch mapping has no {field!r} entry (looked for keys {_KEYS[field]})")


def as_batch(obj: Any) -> Batch:
    """Validate and convert one batch from any supported form (see the module docstring)."""
    if isinstance(obj, Batch):
        feats, labels, lengths = obj.feats, obj.labels, obj.lengths
    elif isinstance(obj, Mapping):
        feats, labels, lengths = (_pick(obj, f) for f in ("feats", "labels", "lengths"))
    elif isinstance(obj, Sequence) and len(obj) == 3:
        feats, labels, lengths = obj
    else:
        raise TypeError(
            "a batch must be a Batch, a (feats, labels, lengths) tuple or a mapping with those "
            f"keys; got {type(obj).__name__}"
        )
    feats = torch.as_tensor(feats)
    labels = torch.as_tensor(labels)
    lengths = torch.as_tensor(lengths)
    if feats.dim() != 3 or not feats.is_floating_point():
        raise ValueError(
            f"batch feats must be a float [B, T, F] tensor, got {feats.dtype} {tuple(feats.shape)}"
        )
    b, t = feats.shape[:2]
    if labels.shape != (b, t) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f"batch labels must be int frame labels of shape [B, T] = {(b, t)}, got "
            f"{labels.dtype} {tuple(labels.shape)}"
        )
    if lengths.shape != (b,) or lengths.is_floating_point():
        raise ValueError(
            f"batch lengths must be an int [B] = [{b}] tensor, got "
            f"{lengths.dtype} {tuple(lengths.shape)}"
        )
    if b and (int(lengths.min()) < 1 or int(lengths.max()) > t):
        raise ValueError(f"batch lengths must be in [1, T={t}], got {lengths.tolist()}")
    return Batch(feats.float(), labels.long(), lengths.long())


def collate_frames(utts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Batch:
    """Pad (features [T, F], frame labels [T]) pairs into a Batch (labels padded with -100)."""
    if not utts:
        raise ValueError("cannot collate an empty list of utterances")
    lengths = [len(lab) for _, lab in utts]
    t_max, dim = max(lengths), utts[0][0].shape[1]
    feats = torch.zeros(len(utts), t_max, dim)
    labels = torch.full((len(utts), t_max), IGNORE_INDEX, dtype=torch.long)
    for k, (f, lab) in enumerate(utts):
        if f.shape != (len(lab), dim):
            raise ValueError(
                f"utterance {k}: features {f.shape} do not match {len(lab)} labels "
                f"of dimension {dim}"
            )
        feats[k, : len(lab)] = torch.as_tensor(f, dtype=torch.float32)
        labels[k, : len(lab)] = torch.as_tensor(lab, dtype=torch.long)
    return Batch(feats, labels, torch.tensor(lengths, dtype=torch.long))
