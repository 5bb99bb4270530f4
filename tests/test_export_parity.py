"""Real features through a trained, BSP-pruned torch model and through its exported BSPC file.

The chain the Table I numbers rely on: Festival audio -> ``features.py`` fbank (raw: the model
and the BSPC file normalise it themselves) -> ``GRUPhoneModel`` trained by the real pipeline
(dense -> ADMM -> hard prune -> masked retrain, one epoch each, tiny model) -> ``export_bspc``
-> ``rtmobile_rt.Session``. Logits must agree (max abs <= 1e-4 with f32 weights, <= 1e-2
with f16 weights), streaming chunk by chunk must equal the offline run exactly, and greedy
decoding must give the same phones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import rtmobile_rt
from rtmobile_train.data.festival_corpus import DEFAULT_LEXICON, generate_corpus
from rtmobile_train.evaluate import greedy_decode
from rtmobile_train.export import export_bspc, load_checkpoint
from rtmobile_train.features import FeatureStats
from rtmobile_train.model import GRUPhoneModel
from rtmobile_train.pruning import ADMMConfig, PruneConfig
from rtmobile_train.reproduce import MODELS, FrameBatches, SplitData, load_corpus
from rtmobile_train.train import PipelineConfig, TrainConfig, run_pipeline, seed_everything

_INSTALL = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
TOL = {"f32": 1e-4, "f16": 1e-2}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SplitData]:
    if shutil.which("festival") is None or not DEFAULT_LEXICON.is_file():
        pytest.skip(f"festival or its CMU lexicon is not installed (CI: {_INSTALL})")
    corpus = tmp_path_factory.mktemp("festival") / "tiny"
    generate_corpus(corpus, "tiny", workers=1, progress=False)
    return load_corpus(corpus)


@pytest.fixture(scope="module")
def exported(
    data: dict[str, SplitData], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[GRUPhoneModel, dict[str, Path]]]:
    """{"dense" | "bsp": (torch model, {dtype: .bspc path})} from one real pipeline run."""
    out = tmp_path_factory.mktemp("parity")
    choice = MODELS["tiny"]
    stats = FeatureStats(40)
    for f in data["train"].feats:
        stats.accumulate(f)
    seed_everything(0)
    model = GRUPhoneModel(choice.config)
    model.set_normalization(stats.mean, stats.var)
    fast = TrainConfig(epochs=1, lr=1e-2, progress=False)
    # columns by 2, rows to 4x; the output layer pruned per class (one strip per row)
    prune = PruneConfig.for_rate(
        "bsp", 4.0, col_rate=2.0, num_r=choice.num_r, num_c=choice.num_c,
        targets=("l*.w_ih", "l*.w_hh", "out.w"), output_rate=2.0,
    )  # fmt: skip
    cfg = PipelineConfig(
        dense=fast, admm=fast, retrain=fast, prune=prune,
        admm_schedule=ADMMConfig(rho=0.05, rho_factor=2.0, rho_max=1.0),
    )  # fmt: skip
    result = run_pipeline(model, FrameBatches(data["train"], 4, shuffle=True), cfg, out)
    result.masks.check(result.pruners)
    dense = load_checkpoint(out / "dense.pt").model
    models = {}
    for name, m, masks, pruners in (
        ("dense", dense, None, None),
        ("bsp", model, result.masks, result.pruners),
    ):
        m.eval()
        paths = {}
        for dtype in ("f32", "f16"):
            paths[dtype] = out / f"{name}-{dtype}.bspc"
            export_bspc(m, paths[dtype], masks=masks, pruners=pruners, dtype=dtype)  # type: ignore[arg-type]
        models[name] = (m, paths)
    return models


def _utterances(data: dict[str, SplitData]) -> list[np.ndarray]:
    return [f for split in ("test", "test_heldout") for f in data[split].feats]


@torch.no_grad()
def _torch_logits(model: GRUPhoneModel, feats: np.ndarray) -> np.ndarray:
    logits, _ = model(torch.from_numpy(feats)[None])
    return logits[0].numpy()


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("which", ["dense", "bsp"])
def test_runtime_logits_and_phones_match_torch(
    exported: dict[str, tuple[GRUPhoneModel, dict[str, Path]]],
    data: dict[str, SplitData],
    which: str,
    dtype: str,
) -> None:
    model, paths = exported[which]
    session = rtmobile_rt.Session(paths[dtype], threads=1)
    assert session.info["has_normalization"]
    if which == "bsp":
        assert session.info["compression_rate"] > 2
    checked = 0
    for feats in _utterances(data):
        want = _torch_logits(model, feats)
        got = session.run(feats)  # raw fbank: the file carries the normalisation
        assert got.shape == want.shape
        err = float(np.abs(got - want).max())
        assert err <= TOL[dtype], err
        top2 = np.sort(want, axis=-1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        if dtype == "f32":
            assert greedy_decode(torch.from_numpy(got)) == greedy_decode(torch.from_numpy(want))
        else:  # f16 weights may swap near-tied classes; every clear decision must agree
            clear = margin > 2 * TOL[dtype]
            assert np.array_equal(got.argmax(-1)[clear], want.argmax(-1)[clear])
        checked += len(feats)
    assert checked > 500


@pytest.mark.parametrize("chunk", [1, 5, 32, 10_000])
def test_streaming_equals_offline_on_real_features(
    exported: dict[str, tuple[GRUPhoneModel, dict[str, Path]]],
    data: dict[str, SplitData],
    chunk: int,
) -> None:
    model, paths = exported["bsp"]
    session = rtmobile_rt.Session(paths["f32"], threads=2)
    stream = session.stream()
    for feats in _utterances(data):
        offline = session.run(feats)
        stream.reset()
        pieces = [stream.push(feats[t : t + chunk]) for t in range(0, len(feats), chunk)]
        assert stream.frames_seen == len(feats)
        assert np.array_equal(np.concatenate(pieces), offline)
        # and torch, carrying h between the same chunks, agrees with both
        with torch.no_grad():
            h, outs = None, []
            for t in range(0, len(feats), chunk):
                y, h = model(torch.from_numpy(feats[t : t + chunk])[None], h)
                outs.append(y[0].numpy())
        assert np.abs(np.concatenate(outs) - offline).max() <= TOL["f32"]
