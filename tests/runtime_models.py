"""Test helper: a torch RNN + Linear with BSP masks applied, and its BSPC export."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rtmobile_train.bsp import bsp_mask, sparsities_for_rate
from rtmobile_train.bspc import LayerWeights, encode_bspc


@dataclass
class TorchModel:
    rnn: nn.RNNBase
    linear: nn.Linear
    norm: tuple[np.ndarray, np.ndarray, float] | None = None

    @torch.no_grad()
    def logits(self, frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frames.astype(np.float32))
        if self.norm is not None:
            mean, var, eps = self.norm
            x = (x - torch.from_numpy(mean)) / torch.sqrt(torch.from_numpy(var) + eps)
        out, _ = self.rnn(x.unsqueeze(0))
        return self.linear(out)[0].numpy()


def make_model(
    input_dim: int,
    hidden: int,
    layers: int,
    classes: int,
    *,
    kind: str = "gru",
    blocks: tuple[int, int] = (1, 1),
    rate: float = 1.0,
    seed: int = 0,
    norm: bool = False,
) -> TorchModel:
    """A torch model whose weight matrices are projected onto the BSP set (biases kept)."""
    torch.manual_seed(seed)
    rnn_cls = nn.GRU if kind == "gru" else nn.LSTM
    rnn = rnn_cls(input_dim, hidden, layers, batch_first=True)
    linear = nn.Linear(hidden, classes)
    col_sparsity, row_sparsity = sparsities_for_rate(rate)
    with torch.no_grad():
        params = [getattr(rnn, f"weight_{w}_l{k}") for k in range(layers) for w in ("ih", "hh")]
        for p in [*params, linear.weight]:
            w = p.detach().numpy()
            num_r, num_c = min(blocks[0], w.shape[0]), min(blocks[1], w.shape[1])
            mask = bsp_mask(w, num_r, num_c, col_sparsity, row_sparsity)
            p.mul_(torch.from_numpy(mask.astype(np.float32)))
    norm_stats = None
    if norm:
        rng = np.random.default_rng(seed)
        norm_stats = (
            rng.normal(size=input_dim).astype(np.float32),
            rng.uniform(0.5, 2.0, size=input_dim).astype(np.float32),
            1e-5,
        )
    return TorchModel(rnn, linear, norm_stats)


def export(model: TorchModel, *, blocks: tuple[int, int] = (1, 1), dtype: str = "f32") -> bytes:
    rnn, lin = model.rnn, model.linear
    layers = [
        LayerWeights(
            getattr(rnn, f"weight_ih_l{k}").detach().numpy(),
            getattr(rnn, f"weight_hh_l{k}").detach().numpy(),
            getattr(rnn, f"bias_ih_l{k}").detach().numpy(),
            getattr(rnn, f"bias_hh_l{k}").detach().numpy(),
        )
        for k in range(rnn.num_layers)
    ]
    per_matrix: dict[str, tuple[int, int]] = {}
    for name, w in [
        *((f"l{k}.w_ih", layers[k].w_ih) for k in range(len(layers))),
        *((f"l{k}.w_hh", layers[k].w_hh) for k in range(len(layers))),
        ("out.w", lin.weight.detach().numpy()),
    ]:
        per_matrix[name] = (min(blocks[0], w.shape[0]), min(blocks[1], w.shape[1]))
    return encode_bspc(
        layers,
        lin.weight.detach().numpy(),
        lin.bias.detach().numpy(),
        kind="gru" if isinstance(rnn, torch.nn.GRU) else "lstm",
        blocks=per_matrix,
        dtype=dtype,  # type: ignore[arg-type]
        norm=model.norm,
    )
