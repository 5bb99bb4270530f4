"""Training loop (dense / ADMM / masked retrain), checkpoints, PER scoring and BSPC export."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rtmobile_train import bsp, bspc
from rtmobile_train.batch import IGNORE_INDEX, Batch, as_batch, collate_frames
from rtmobile_train.evaluate import (
    DEFAULT_MIN_FRAMES,
    PERResult,
    collapse,
    evaluate,
    greedy_decode,
    phone_error_rate,
)
from rtmobile_train.export import export_bspc, load_checkpoint
from rtmobile_train.model import build_model
from rtmobile_train.pruning import ADMMConfig, PruneConfig, make_pruners
from rtmobile_train.synthetic import SyntheticPhones
from rtmobile_train.train import (
    PipelineConfig,
    PipelineResult,
    TrainConfig,
    Trainer,
    frame_loss,
    read_checkpoint,
    run_pipeline,
    save_checkpoint,
    seed_everything,
)
from rtmobile_train.train import main as train_main

torch.set_num_threads(1)

# Every weight matrix, the output layer included (pruned per class, whatever the method).
ALL_MATRICES = ("l*.w_ih", "l*.w_hh", "out.w")
PRUNE_CONFIGS = {
    "bsp": PruneConfig(
        method="bsp", num_r=4, num_c=2, col_sparsity=0.5, row_sparsity=0.25, targets=ALL_MATRICES
    ),
    "magnitude": PruneConfig(method="magnitude", sparsity=0.8, targets=ALL_MATRICES),
    "row": PruneConfig(method="row", sparsity=0.5, targets=ALL_MATRICES),
    "bbs": PruneConfig(method="bbs", sparsity=0.75, num_banks=4, targets=ALL_MATRICES),
}


def _data(**kw) -> SyntheticPhones:
    return SyntheticPhones(num_utts=32, batch_size=8, **kw)


def _fast(epochs: int, **kw) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=1e-2, progress=False, **kw)


def _pipeline(method: str, out: Path) -> PipelineResult:
    seed_everything(0)
    model = build_model("tiny")
    model.set_normalization(torch.zeros(8), torch.full((8,), 2.0))
    cfg = PipelineConfig(
        dense=_fast(3), admm=_fast(3), retrain=_fast(2), prune=PRUNE_CONFIGS[method],
        admm_schedule=ADMMConfig(rho=0.05, rho_factor=2.0, rho_max=1.0),
    )  # fmt: skip
    return run_pipeline(model, _data(), cfg, out)


@pytest.fixture(scope="module")
def bsp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineResult, Path]:
    out = tmp_path_factory.mktemp("bsp_run")
    return _pipeline("bsp", out), out


def _distance_to_set(model: nn.Module, pruners: dict) -> float:
    total = 0.0
    for n, w in model.matrices().items():
        if n in pruners:
            v = w.detach()
            keep = torch.from_numpy(pruners[n].project(v))
            total += float((v - torch.where(keep, v, 0)).pow(2).sum())
    return total**0.5


# -- batches and loss ---------------------------------------------------------------------------


def test_as_batch_accepts_tuples_and_mappings_and_rejects_bad_input() -> None:
    feats = torch.randn(2, 5, 3)
    labels = torch.tensor([[0, 1, 1, 2, 2], [1, 1, 0, IGNORE_INDEX, IGNORE_INDEX]])
    lengths = torch.tensor([5, 3])
    for obj in ((feats, labels, lengths), {"features": feats, "targets": labels, "lens": lengths}):
        b = as_batch(obj)
        assert torch.equal(b.labels, labels) and b.valid.sum() == 8
    with pytest.raises(ValueError, match=r"float \[B, T, F\]"):
        as_batch((feats[0], labels, lengths))
    with pytest.raises(ValueError, match="labels must be int frame labels"):
        as_batch((feats, labels.float(), lengths))
    with pytest.raises(ValueError, match=r"lengths must be in \[1, T=5\]"):
        as_batch((feats, labels, torch.tensor([6, 3])))
    with pytest.raises(ValueError, match="no 'lengths' entry"):
        as_batch({"feats": feats, "labels": labels})
    with pytest.raises(TypeError, match="a batch must be"):
        as_batch(feats)
    with pytest.raises(ValueError, match="do not match"):
        collate_frames([(np.zeros((4, 3), np.float32), np.zeros(5, np.int64))])


def test_frame_loss_ignores_padding_and_checks_label_range() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3)
    labels = torch.tensor([[0, 1, 2, 2], [1, 0, IGNORE_INDEX, IGNORE_INDEX]])
    batch = Batch(torch.zeros(2, 4, 1), labels, torch.tensor([4, 2]))
    loss, n, _ = frame_loss(logits, batch)
    flat = torch.cat([logits[0], logits[1, :2]])
    ref = nn.functional.cross_entropy(flat, torch.tensor([0, 1, 2, 2, 1, 0]))
    assert n == 6 and torch.allclose(loss, ref)
    # Labels beyond `lengths` are ignored even if they are not IGNORE_INDEX.
    batch.labels[1, 2:] = 1
    assert frame_loss(logits, batch)[1] == 6
    batch.labels[0, 0] = 3
    with pytest.raises(ValueError, match=r"frame labels must be in \[0, 3\)"):
        frame_loss(logits, batch)


# -- phases -------------------------------------------------------------------------------------


def test_dense_training_loss_decreases() -> None:
    seed_everything(0)
    model = build_model("tiny")
    hist = Trainer(model, _fast(8)).fit(_data())
    losses = [h["loss"] for h in hist]
    assert losses[-1] < 0.5 * losses[0], losses
    assert hist[-1]["frame_acc"] > 0.8


def test_admm_phase_pulls_weights_onto_the_constraint_set() -> None:
    seed_everything(0)
    model = build_model("tiny")
    data = _data()
    Trainer(model, _fast(6)).fit(data)
    pruners = make_pruners(model, PRUNE_CONFIGS["bsp"])
    d0 = _distance_to_set(model, pruners)
    admm = Trainer(
        model, _fast(20), phase="admm", pruners=pruners,
        admm_cfg=ADMMConfig(rho=0.05, rho_factor=1.5, rho_max=20.0),
    )  # fmt: skip
    hist = admm.fit(data)
    res = [h["admm_residual"] for h in hist]
    assert res[-1] < 0.75 * max(res), res  # ||W - Z|| falls once rho has grown
    assert _distance_to_set(model, pruners) < 0.6 * d0
    assert hist[-1]["rho"] == pytest.approx(min(0.05 * 1.5**20, 20.0))


@pytest.mark.parametrize("method", sorted(PRUNE_CONFIGS))
def test_pipeline_gives_exact_structure_and_retrain_keeps_zeros(method: str, tmp_path) -> None:
    res = _pipeline(method, tmp_path)
    mats = res.model.matrices()
    assert set(res.masks.masks) == set(mats), "every weight matrix"
    assert res.masks.masks["out.w"].any(dim=1).all(), "an output class lost all its weights"
    res.masks.check(res.pruners)  # exact structure + zero outside the mask
    for n, m in res.masks.numpy().items():
        res.pruners[n].check(m)
        assert torch.count_nonzero(mats[n].detach()[~torch.from_numpy(m)]) == 0
        if method == "bsp":
            assert bsp.is_bsp_structured(m, *res.pruners[n].blocks(m.shape))
    # The ADMM checkpoint holds the weights just before the hard prune: retraining moved the
    # kept weights but none of the pruned ones.
    admm_w = read_checkpoint(tmp_path / "admm.pt")["model"]["gru.weight_hh_l0"]
    now = mats["l0.w_hh"].detach()
    keep = res.masks.masks["l0.w_hh"]
    assert not torch.equal(now[keep], admm_w[keep])
    assert res.report.matrix_rate > 1.5 and res.report.overall_rate > 1.0
    assert res.report.matrix_kept == sum(int(m.sum()) for m in res.masks.masks.values())
    assert len(res.history["retrain"]) == 2


def test_trainer_resume_is_bit_exact(tmp_path) -> None:
    seed_everything(0)
    straight = build_model("tiny")
    Trainer(straight, _fast(4)).fit(_data())

    seed_everything(0)
    first = build_model("tiny")
    ckpt = tmp_path / "dense.pt"
    Trainer(first, _fast(2)).fit(_data(), ckpt_path=ckpt)
    resumed_model = build_model("tiny")
    resumed = Trainer(resumed_model, _fast(4))
    resumed.load_state_dict(read_checkpoint(ckpt))
    assert resumed.epoch == 2
    hist = resumed.fit(_data(), ckpt_path=ckpt)
    assert [h["epoch"] for h in hist] == [1.0, 2.0, 3.0, 4.0]
    for a, b in zip(
        straight.state_dict().values(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert read_checkpoint(ckpt)["done"] is True


def test_pipeline_resume_skips_finished_phases(bsp_run, tmp_path) -> None:
    res, out = bsp_run
    again = _pipeline("bsp", out)  # every phase checkpoint is done: nothing is retrained
    for a, b in zip(
        res.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert again.history["retrain"] == res.history["retrain"]
    assert "admm" not in again.history


def test_bad_trainer_use_fails_clearly(tmp_path) -> None:
    model = build_model("tiny")
    with pytest.raises(ValueError, match="needs pruners"):
        Trainer(model, _fast(1), phase="admm")
    with pytest.raises(ValueError, match="needs masks"):
        Trainer(model, _fast(1), phase="retrain", pruners=make_pruners(model, PruneConfig(num_r=2)))
    with pytest.raises(ValueError, match="unknown phase"):
        Trainer(model, _fast(1), phase="finetune")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        TrainConfig(epochs=-1)
    gen = (b for b in _data())
    with pytest.raises(ValueError, match="yielded no batches"):
        Trainer(model, _fast(2)).fit(gen)
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        read_checkpoint(bad)
    save_checkpoint(tmp_path / "other.pt", {"format": "something-else"})
    with pytest.raises(ValueError, match="not an rtmobile training checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    dense = Trainer(model, _fast(1))
    save_checkpoint(tmp_path / "d.pt", dense.state_dict())
    admm = Trainer(model, _fast(1), phase="admm", pruners=make_pruners(model, PruneConfig(num_r=2)))
    with pytest.raises(ValueError, match="for phase 'dense', not 'admm'"):
        admm.load_state_dict(read_checkpoint(tmp_path / "d.pt"))


# -- PER ----------------------------------------------------------------------------------------


def test_collapse_and_greedy_decode() -> None:
    assert collapse([3, 3, 1, 1, 3]) == [3, 1, 3]
    assert collapse([]) == []
    path = [0, 0, 1, 1, 1, 0, 2, 2]
    logits = nn.functional.one_hot(torch.tensor(path), 3).float()
    assert greedy_decode(logits, min_frames=1) == [[0, 1, 0, 2]]
    batch = torch.stack([logits, logits.flip(0)])
    assert greedy_decode(batch, [6, 3], min_frames=1) == [[0, 1, 0], [2, 0]]
    with pytest.raises(ValueError, match="2 lengths for 1"):
        greedy_decode(logits[None], [1, 2])
    # Runs shorter than min_frames are dropped, then their neighbours merge.
    assert greedy_decode(logits) == [[1]]  # default min_frames=3
    assert greedy_decode(logits, min_frames=2) == [[0, 1, 2]]
    assert collapse([3, 3, 3, 1, 3, 3, 3], 2) == [3]
    assert collapse([3, 3, 1, 1, 5], 3) == []
    assert collapse([4, 4, 4, 4], 4) == [4]
    with pytest.raises(ValueError, match="min_frames"):
        collapse([1], 0)


def test_per_hand_computed_cases() -> None:
    # one deletion out of 3
    assert phone_error_rate([[1, 2, 3]], [[1, 3]]).per == pytest.approx(1 / 3)
    # one substitution (b -> x) and one insertion (e) against 4 reference phones
    r = phone_error_rate([["a", "b", "c", "d"]], [["a", "x", "c", "d", "e"]])
    assert (r.errors, r.ref_len) == (2, 4) and r.per == 0.5
    # corpus-level: (2 + 0) / (2 + 8), not the mean of per-utterance rates (0.5)
    r = phone_error_rate([[1, 2], list(range(8))], [[3, 4], list(range(8))])
    assert r.per == pytest.approx(0.2) and r.num_utts == 2
    # sil is scored by default (Kaldi TIMIT); ignore drops it from both sides
    ref, hyp = [["sil", "a", "b", "sil"]], [["a", "c"]]
    assert phone_error_rate(ref, hyp).per == pytest.approx(3 / 4)
    assert phone_error_rate(ref, hyp, ignore={"sil"}).per == pytest.approx(1 / 2)
    assert phone_error_rate([[1, 2]], [[]]).per == 1.0
    assert phone_error_rate([[]], [[1]]).errors == 1
    with pytest.raises(ValueError, match="undefined"):
        _ = phone_error_rate([[]], [[]]).per
    with pytest.raises(ValueError, match="2 references but 1"):
        phone_error_rate([[1], [2]], [[1]])


class _Oracle(nn.Module):
    """Emits one-hot logits of the class encoded in its input (input = one-hot labels)."""

    def __init__(self, shift: int = 0) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.roll(x, self.shift, dims=-1), None


def test_evaluate_scores_against_collapsed_frame_labels() -> None:
    labels = [np.array([0, 0, 1, 1, 1, 2, 0, 0]), np.array([2, 2, 2, 1])]
    utts = [(np.eye(3, dtype=np.float32)[lab], lab) for lab in labels]
    batch = collate_frames(utts)
    perfect = evaluate(_Oracle(), [batch], min_frames=1)
    assert perfect == PERResult(errors=0, ref_len=6, num_utts=2, frames=12, frame_correct=12)
    shifted = evaluate(_Oracle(shift=1), [batch], min_frames=1)
    # [0,1,2,0] vs [1,2,0,1]: a deletion + an insertion; [2,1] vs [0,2]: 2 edits.
    assert (shifted.errors, shifted.ref_len) == (4, 6) and shifted.frame_acc == 0.0
    # ignoring class 0 removes its two phones from the reference
    assert evaluate(_Oracle(), [batch], ignore={0}, min_frames=1).ref_len == 4
    # The default decoder drops runs under 3 frames from the hypothesis only: the 1-frame "2"
    # and the 2-frame "0"s of utterance 1 and the 1-frame "1" of utterance 2 are deleted.
    smoothed = evaluate(_Oracle(), [batch])
    assert (smoothed.errors, smoothed.ref_len, smoothed.frame_correct) == (4, 6, 12)


# -- export ---------------------------------------------------------------------------------------


def _matrix_blocks(data: bytes) -> dict[int, tuple[int, int, int, int]]:
    out = {}
    for e in bspc.read_directory(data):
        if e.type == bspc.SECTION_MATRIX:
            rows, cols, num_r, num_c = struct.unpack_from("<4I", data, e.offset)
            out[e.index] = (rows, cols, num_r, num_c)
    return out


def test_export_writes_masks_geometry_norm_and_labels(bsp_run, tmp_path) -> None:
    res, out = bsp_run
    path = tmp_path / "m.bspc"
    export_bspc(res.model, path, masks=res.masks, pruners=res.pruners)
    data = path.read_bytes()
    assert bspc.read_header(data).file_size == len(data)
    types = [e.type for e in bspc.read_directory(data)]
    assert types.count(bspc.SECTION_NORM) == 1
    assert types.count(bspc.SECTION_MATRIX) == 5 and types.count(bspc.SECTION_VECTOR) == 5
    names = bspc.matrix_names(2)
    for mid, (rows, cols, num_r, num_c) in _matrix_blocks(data).items():
        shape = tuple(res.model.matrices()[names[mid]].shape)
        assert (rows, cols) == shape
        assert (num_r, num_c) == res.pruners[names[mid]].blocks(shape)
    assert b"sil" in data and b"iy" in data  # tiny preset's label names
    # The retrain checkpoint rebuilds the same model: the same file comes out.
    ck = load_checkpoint(out / "retrain.pt")
    assert ck.phase == "retrain" and ck.done and ck.masks is not None
    path2 = tmp_path / "m2.bspc"
    export_bspc(ck.model, path2, masks=ck.masks, pruners=ck.pruners)
    assert path2.read_bytes() == data
    export_bspc(ck.model, tmp_path / "m16.bspc", masks=ck.masks, pruners=ck.pruners, dtype="f16")


def test_export_records_the_decoder_setting(bsp_run, tmp_path) -> None:
    """Exports carry METADATA decoder.min_frames (the PER's decoder) unless given their own;
    the runtime's transcription and scoring read it from there."""
    from rtmobile_rt import Session

    res, _ = bsp_run
    export_bspc(res.model, tmp_path / "a.bspc", masks=res.masks, pruners=res.pruners)
    meta = Session(tmp_path / "a.bspc").metadata
    assert meta["decoder"] == {"min_frames": DEFAULT_MIN_FRAMES}
    own = {"decoder": {"min_frames": 5}, "note": "x"}
    export_bspc(res.model, tmp_path / "b.bspc", masks=res.masks, pruners=res.pruners, metadata=own)
    assert Session(tmp_path / "b.bspc").metadata == own


def test_export_needs_labels_and_consistent_masks(tmp_path) -> None:
    model = build_model("tiny", labels=())
    with pytest.raises(ValueError, match="no label names"):
        export_bspc(model, tmp_path / "x.bspc")
    export_bspc(model, tmp_path / "x.bspc", labels=list("abcde"))  # dense, explicit labels
    mask = np.zeros((5, 16), dtype=bool)
    with pytest.raises(ValueError, match="outside masks"):
        export_bspc(model, tmp_path / "y.bspc", masks={"out.w": mask}, labels=list("abcde"))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--num-r", "100"], r"l0\.w_ih: BSP blocks \(num_r=100"),
        (["--method", "bbs", "--num-banks", "3"], "BBS needs equal banks"),
        (["--col-sparsity", "1.5"], r"col_sparsity must be a number in \[0, 1\)"),
        (["--rho", "0"], "rho must be finite and > 0"),
        (["--targets", "l7.*"], "matches no matrix"),
        (["--num-utts", "2"], "make no batch"),
        (["--data", "nodot"], "must be 'synthetic' or 'package.module:function'"),
    ],
)
def test_cli_rejects_bad_settings_before_training(args, match, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        train_main(["--preset", "tiny", "--out", str(tmp_path / "run"), *args])
    assert exc.value.code not in (0, None)
    err = capsys.readouterr().err + str(exc.value.code)
    assert re.search(match, err), err
    assert not (tmp_path / "run").exists()
