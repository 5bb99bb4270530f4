"""Stream.get_state / set_state: pause, resume and fork a stream; the layout matches torch's
h_n / c_n; bad states are rejected and leave the stream as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtmobile_rt import NonFiniteInputError, Session
from rtmobile_train.bspc import LayerWeights, encode_bspc

INPUT, HIDDEN, CLASSES, LAYERS = 10, 12, 5, 2


def torch_model(kind: str) -> tuple[torch.nn.Module, torch.nn.Linear, bytes]:
    torch.manual_seed(0 if kind == "gru" else 1)
    cls = torch.nn.GRU if kind == "gru" else torch.nn.LSTM
    rnn = cls(INPUT, HIDDEN, LAYERS, batch_first=True)
    head = torch.nn.Linear(HIDDEN, CLASSES)
    layers = [
        LayerWeights(
            *(
                getattr(rnn, f"{name}_l{k}").detach().numpy()
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
        )
        for k in range(LAYERS)
    ]
    data = encode_bspc(layers, head.weight.detach().numpy(), head.bias.detach().numpy(), kind=kind)
    return rnn, head, data


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_state_matches_torch_and_forks_exactly(kind: str) -> None:
    rnn, _, data = torch_model(kind)
    session = Session(data, threads=1, tuning=None)
    x = np.random.default_rng(0).standard_normal((25, INPUT)).astype(np.float32)
    want = session.run(x)
    stream = session.stream()
    head = stream.push(x[:9])
    state = stream.get_state()
    assert state.dtype == np.float32
    assert state.shape == ((2 if kind == "lstm" else 1) * LAYERS * HIDDEN,)

    # The layout: layer by layer, h then (LSTM) c, as torch's h_n[l] / c_n[l] (tol 1e-5).
    with torch.no_grad():
        _, hn = rnn(torch.from_numpy(x[:9])[None])
    h_n, c_n = (hn, None) if kind == "gru" else hn
    parts = []
    for layer in range(LAYERS):
        parts.append(h_n[layer, 0].numpy())
        if c_n is not None:
            parts.append(c_n[layer, 0].numpy())
    np.testing.assert_allclose(state, np.concatenate(parts), atol=1e-5)

    fork = session.stream()
    fork.set_state(state)
    assert fork.frames_seen == 0
    np.testing.assert_array_equal(np.concatenate([head, fork.push(x[9:])]), want)
    # The original stream is unaffected by its fork and continues the same way.
    np.testing.assert_array_equal(stream.push(x[9:]), want[9:])
    np.testing.assert_array_equal(stream.get_state(), fork.get_state())


def test_bad_states_are_rejected_and_change_nothing() -> None:
    _, _, data = torch_model("gru")
    stream = Session(data, threads=1, tuning=None).stream()
    x = np.random.default_rng(1).standard_normal((4, INPUT)).astype(np.float32)
    stream.push(x)
    before = stream.get_state()
    with pytest.raises(ValueError, match=r"state_size\(\) = 24 floats, got 23"):
        stream.set_state(before[:-1])
    with pytest.raises(ValueError, match="must be 1-d"):
        stream.set_state(before.reshape(2, -1))
    bad = before.copy()
    bad[13] = np.inf
    with pytest.raises(NonFiniteInputError, match=r"layer 1 h\[1\] is infinite"):
        stream.set_state(bad)
    np.testing.assert_array_equal(stream.get_state(), before)
    # With nonfinite="propagate" the value is taken as it is.
    loose = Session(data, threads=1, tuning=None, nonfinite="propagate").stream()
    loose.set_state(bad)
    assert np.isinf(loose.get_state()[13])
    # float64 input is converted; a list works too.
    stream.set_state(before.astype(np.float64).tolist())
    np.testing.assert_array_equal(stream.get_state(), before)
