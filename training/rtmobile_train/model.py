"""Unidirectional GRU phone recognizer (the model RTMobile prunes and the runtime executes).

Training target: **frame-wise cross-entropy** over the 39 folded phones, no blank.

Why not CTC: both corpora we train on (TIMIT's ``.PHN`` files and the synthesised corpus) carry
exact phone boundaries, so every frame has a known label and CTC's alignment search buys nothing.
Frame-wise training is what the paper's baseline used (PyTorch-Kaldi trains its TIMIT GRU with
frame-level cross-entropy against Kaldi alignments); it converges fast and stably on two CPU
cores; and a unidirectional frame classifier streams with zero lookahead: the label of frame
``t`` is emitted at frame ``t``, whereas a unidirectional CTC model learns to delay its spikes
by several frames.
Greedy decoding is argmax per frame, then collapse repeated labels (see ``evaluate.py``).

The model normalises its own input with stored mean/variance (``set_normalization``) so that the
exported BSPC file carries the same normalisation and the runtime is fed raw features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from rtmobile_train.data.phones import PHONES39

__all__ = [
    "PRESETS",
    "GRUPhoneModel",
    "ModelConfig",
    "build_model",
    "param_count",
    "preset",
]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the recognizer. ``labels`` (optional) names the output classes in index order."""

    input_dim: int
    hidden_dim: int
    num_layers: int
    num_classes: int = 39
    dropout: float = 0.0
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("input_dim", "hidden_dim", "num_layers", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        labels = tuple(self.labels)
        object.__setattr__(self, "labels", labels)
        if labels:
            if len(labels) != self.num_classes:
                raise ValueError(
                    f"ModelConfig.labels has {len(labels)} names but num_classes is "
                    f"{self.num_classes}"
                )
            if len(set(labels)) != len(labels):
                raise ValueError("ModelConfig.labels contains duplicate names")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}")
        known["labels"] = tuple(known.get("labels", ()))
        return cls(**known)


# paper: 2 GRU layers, ~9.6M parameters (Sec. V-A). The paper gives no layer sizes; input 440
# (40-d fbank spliced over 11 frames, the classic Kaldi TIMIT DNN input, which costs 5 frames of
# lookahead) with hidden 960 gives 9,610,599 parameters (see param_count).
# small: 40-d fbank, no splicing (zero lookahead), trains in minutes on two cores.
# tiny: unit tests only. Labels are the 39 folded phones in data.phones' (sorted) index order.
PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(input_dim=440, hidden_dim=960, num_layers=2, labels=PHONES39),
    "medium": ModelConfig(input_dim=440, hidden_dim=512, num_layers=2, labels=PHONES39),
    "small": ModelConfig(input_dim=40, hidden_dim=128, num_layers=2, labels=PHONES39),
    "tiny": ModelConfig(
        input_dim=8,
        hidden_dim=16,
        num_layers=2,
        num_classes=5,
        labels=("sil", "aa", "iy", "s", "t"),
    ),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A preset config with fields overridden (e.g. ``preset("small", labels=phones)``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def param_count(cfg: ModelConfig) -> int:
    """Number of parameters (weights and biases) of the model ``cfg`` describes."""
    h, total, in_dim = cfg.hidden_dim, 0, cfg.input_dim
    for _ in range(cfg.num_layers):
        total += 3 * h * in_dim + 3 * h * h + 2 * 3 * h
        in_dim = h
    return total + cfg.num_classes * h + cfg.num_classes


class GRUPhoneModel(nn.Module):
    """``nn.GRU`` stack (batch_first, torch gate order r,z,n) + linear layer to phone logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.gru = nn.GRU(
            input_size=cfg.input_dim,
            hidden_size=cfg.hidden_dim,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.out = nn.Linear(cfg.hidden_dim, cfg.num_classes)
        self.register_buffer("feat_mean", torch.zeros(cfg.input_dim))
        self.register_buffer("feat_var", torch.ones(cfg.input_dim))
        self.register_buffer("norm_eps", torch.tensor(1e-5))
        self.register_buffer("norm_enabled", torch.tensor(False))

    # -- normalisation -------------------------------------------------------------------------
    def set_normalization(
        self,
        mean: Sequence[float] | torch.Tensor,
        var: Sequence[float] | torch.Tensor,
        eps: float = 1e-5,
    ) -> None:
        """Store per-dimension feature stats; forward() then feeds (x-mean)/sqrt(var+eps)."""
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        var_t = torch.as_tensor(var, dtype=torch.float32).reshape(-1)
        dim = self.cfg.input_dim
        if mean_t.numel() != dim or var_t.numel() != dim:
            raise ValueError(
                f"normalization stats must have {dim} entries, got mean {mean_t.numel()}, "
                f"var {var_t.numel()}"
            )
        if not (torch.isfinite(mean_t).all() and torch.isfinite(var_t).all()):
            raise ValueError("normalization stats must be finite")
        if (var_t < 0).any():
            raise ValueError("normalization variance must be >= 0")
        if not (eps > 0 and math.isfinite(eps)):
            raise ValueError(f"normalization eps must be finite and > 0, got {eps!r}")
        self.feat_mean.copy_(mean_t)
        self.feat_var.copy_(var_t)
        self.norm_eps.fill_(eps)
        self.norm_enabled.fill_(True)

    def normalization(self) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """(mean, var, eps) if set, else None (the BSPC writer's ``norm`` argument)."""
        if not bool(self.norm_enabled):
            return None
        return self.feat_mean.clone(), self.feat_var.clone(), float(self.norm_eps)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.norm_enabled):
            return x
        return (x - self.feat_mean) * torch.rsqrt(self.feat_var + self.norm_eps)

    # -- compute ------------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, F] raw features -> (logits [B, T, C], h_n [L, B, H]).

        Padding at the end of a sequence needs no packing: the GRU is causal, so padded frames
        cannot change the outputs of the valid ones, and the loss ignores them.
        Passing ``h0`` = the previous chunk's ``h_n`` streams chunk by chunk.
        """
        if x.dim() != 3 or x.shape[-1] != self.cfg.input_dim:
            raise ValueError(f"expected input [B, T, {self.cfg.input_dim}], got {tuple(x.shape)}")
        y, h = self.gru(self.normalize(x), h0)
        return self.out(y), h

    # -- weight access ------------------------------------------------------------------------
    def matrices(self) -> dict[str, nn.Parameter]:
        """Every weight matrix under its BSPC name: ``l{k}.w_ih``, ``l{k}.w_hh``, ``out.w``."""
        mats: dict[str, nn.Parameter] = {}
        for k in range(self.cfg.num_layers):
            mats[f"l{k}.w_ih"] = getattr(self.gru, f"weight_ih_l{k}")
            mats[f"l{k}.w_hh"] = getattr(self.gru, f"weight_hh_l{k}")
        mats["out.w"] = self.out.weight
        return mats

    def biases(self) -> dict[str, nn.Parameter]:
        b: dict[str, nn.Parameter] = {}
        for k in range(self.cfg.num_layers):
            b[f"l{k}.b_ih"] = getattr(self.gru, f"bias_ih_l{k}")
            b[f"l{k}.b_hh"] = getattr(self.gru, f"bias_hh_l{k}")
        b["out.b"] = self.out.bias
        return b

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(cfg: ModelConfig | str, **overrides: Any) -> GRUPhoneModel:
    """Model from a config or a preset name."""
    if isinstance(cfg, str):
        cfg = preset(cfg, **overrides)
    elif overrides:
        cfg = replace(cfg, **overrides)
    return GRUPhoneModel(cfg)
