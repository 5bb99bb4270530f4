"""Torch model -> BSPC file, and loading training checkpoints back into a model.

The export hands ``bspc.write_bspc`` the weights in torch layout, the fixed masks (so the block
index arrays are the pruner's support, not whatever happens to be nonzero), each matrix's BSP
geometry (``num_r``, ``num_c``) from its pruner (unpruned and non-BSP matrices are one dense
block), the model's feature normalisation and its label names. METADATA carries the feature
spec (``{"features": {"fbank": {...}, "context": [left, right]}}``, so that the runtime can
transcribe audio) and any free-form extra entries (scores, corpus, ...).

CLI (also ``rtmobile export``)::

    python -m rtmobile_train.export runs/small/retrain.pt model.bspc [--dtype f16]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from rtmobile_train.bspc import LayerWeights, write_bspc
from rtmobile_train.evaluate import DEFAULT_MIN_FRAMES
from rtmobile_train.features import FbankConfig, FeatureSpec
from rtmobile_train.model import GRUPhoneModel, ModelConfig
from rtmobile_train.pruning import MaskSet, Pruner, pruner_from_dict
from rtmobile_train.train import read_checkpoint

__all__ = [
    "LoadedCheckpoint",
    "export_bspc",
    "export_checkpoint",
    "layer_weights",
    "load_checkpoint",
    "main",
]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def layer_weights(model: GRUPhoneModel) -> list[LayerWeights]:
    """The GRU layers as ``bspc.LayerWeights`` (torch layout, gate order r, z, n)."""
    mats, biases = model.matrices(), model.biases()
    return [
        LayerWeights(
            w_ih=_np(mats[f"l{k}.w_ih"]),
            w_hh=_np(mats[f"l{k}.w_hh"]),
            b_ih=_np(biases[f"l{k}.b_ih"]),
            b_hh=_np(biases[f"l{k}.b_hh"]),
        )
        for k in range(model.cfg.num_layers)
    ]


def export_bspc(
    model: GRUPhoneModel,
    path: str | os.PathLike[str],
    *,
    masks: MaskSet | Mapping[str, np.ndarray | torch.Tensor] | None = None,
    pruners: Mapping[str, Pruner] | None = None,
    dtype: Literal["f32", "f16"] = "f32",
    labels: Sequence[str] | None = None,
    reorder: bool = True,
    fbank: FbankConfig | None = None,
    context: tuple[int, int] = (0, 0),
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model`` to ``path`` as BSPC (atomically, via ``bspc.write_bspc``).

    ``labels`` default to the model config's label names; a model without them must be given
    labels explicitly (a BSPC file is self-contained, so "0", "1", ... would be a silent loss).
    ``fbank`` and ``context`` (left, right frames spliced around each fbank frame) say how the
    model's input is made from audio; they go to METADATA ``features`` (``FeatureSpec``), and
    without them the file runs on frames but cannot transcribe audio. METADATA ``decoder``
    records the greedy decoder's ``min_frames`` the model was scored with
    (``evaluate.DEFAULT_MIN_FRAMES`` unless ``metadata`` gives its own). ``metadata`` adds
    JSON-serialisable entries of your own (the key ``features`` is reserved).
    """
    names = labels if labels is not None else model.cfg.labels
    if not names:
        raise ValueError("the model config has no label names: pass labels=")
    meta = dict(metadata or {})
    if "features" in meta:
        raise ValueError("metadata key 'features' is reserved: pass features= instead")
    meta.setdefault("decoder", {"min_frames": DEFAULT_MIN_FRAMES})
    if fbank is None and tuple(context) != (0, 0):
        raise ValueError("context= needs fbank= (the features it splices)")
    if fbank is not None:
        features = FeatureSpec(fbank, *context)
        if features.input_dim != model.cfg.input_dim:
            raise ValueError(
                f"features give {features.input_dim} inputs per frame but the model takes "
                f"{model.cfg.input_dim}"
            )
        meta["features"] = features.to_dict()
    if isinstance(masks, MaskSet):
        masks = masks.masks
    np_masks = {
        n: np.asarray(torch.as_tensor(m).cpu(), dtype=bool) for n, m in (masks or {}).items()
    }
    mats = model.matrices()
    blocks = {n: p.blocks(tuple(mats[n].shape)) for n, p in (pruners or {}).items() if n in mats}
    norm = model.normalization()
    write_bspc(
        path,
        layer_weights(model),
        _np(model.out.weight),
        _np(model.out.bias),
        kind="gru",
        blocks=blocks,
        dtype=dtype,
        labels=list(names),
        norm=None if norm is None else (_np(norm[0]), _np(norm[1]), norm[2]),
        masks=np_masks or None,
        reorder=reorder,
        metadata=meta or None,
    )


@dataclass
class LoadedCheckpoint:
    """A training checkpoint rebuilt: the model (weights loaded, eval mode) and its pruning."""

    model: GRUPhoneModel
    phase: str
    epoch: int
    done: bool
    pruners: dict[str, Pruner] = field(default_factory=dict)
    masks: dict[str, np.ndarray] | None = None
    features: FeatureSpec | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def load_checkpoint(path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Read a checkpoint written by ``train.Trainer`` and rebuild its model."""
    state = read_checkpoint(path)
    model = GRUPhoneModel(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    model.eval()
    masks = state.get("masks")
    features = state.get("features")
    return LoadedCheckpoint(
        model=model,
        phase=state["phase"],
        epoch=int(state["epoch"]),
        done=bool(state["done"]),
        pruners={n: pruner_from_dict(d) for n, d in state.get("pruners", {}).items()},
        masks=None if masks is None else {n: m.numpy().astype(bool) for n, m in masks.items()},
        features=None if features is None else FeatureSpec.from_dict(features),
        history=list(state.get("history", [])),
        raw=state,
    )


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    dtype: Literal["f32", "f16"] = "f32",
    reorder: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> list[str]:
    """Export a training checkpoint as BSPC with its feature spec and a ``training`` summary
    (phase, epoch, last loss / frame accuracy / dev PER) in METADATA, plus ``metadata``.

    Returns notes for the user on what the file lacks (masks of an unfinished pruning phase,
    a feature spec in checkpoints written before it was recorded).
    """
    ck = load_checkpoint(checkpoint)
    notes = []
    if ck.phase != "dense" and ck.masks is None:
        notes.append(
            f"{checkpoint} is an unfinished {ck.phase} checkpoint without masks; "
            "exporting the weights as they are"
        )
    if ck.features is None:
        notes.append(
            f"{checkpoint} records no feature configuration: the model runs on frames, "
            "but cannot transcribe audio"
        )
    fbank, context = (ck.features.fbank, ck.features.context) if ck.features else (None, (0, 0))
    last = ck.history[-1] if ck.history else {}
    summary = {k: round(float(last[k]), 4) for k in ("loss", "frame_acc", "dev_per") if k in last}
    export_bspc(
        ck.model,
        output,
        masks=ck.masks,
        pruners=ck.pruners if ck.masks else None,
        dtype=dtype,
        reorder=reorder,
        fbank=fbank,
        context=context,
        metadata={
            "training": {"phase": ck.phase, "epoch": ck.epoch, **summary},
            **(metadata or {}),
        },
    )
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m rtmobile_train.export", description="Export a checkpoint as BSPC."
    )
    p.add_argument("checkpoint")
    p.add_argument("output")
    p.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    p.add_argument("--no-reorder", action="store_true", help="keep rows in their original order")
    args = p.parse_args(argv)
    for note in export_checkpoint(
        args.checkpoint, args.output, dtype=args.dtype, reorder=not args.no_reorder
    ):
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
