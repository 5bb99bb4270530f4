"""The second-pass pruning recipe: a protected output layer, ADMM with a calibrated rho and a
residual stop rule, gradual pruning, learning-rate decay with early stop and best-epoch
weights, distillation, and resuming a run killed mid-epoch."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from rtmobile_train.batch import Batch
from rtmobile_train.evaluate import evaluate
from rtmobile_train.model import GRUPhoneModel, build_model
from rtmobile_train.pruning import (
    ClassBalancedPruner,
    GradualPruning,
    PruneConfig,
    cubic_fraction,
    make_pruners,
    rate_for_overall,
)
from rtmobile_train.synthetic import SyntheticPhones
from rtmobile_train.train import (
    PipelineConfig,
    TrainConfig,
    Trainer,
    distill_loss,
    read_checkpoint,
    run_pipeline,
    seed_everything,
)

torch.set_num_threads(1)

ALL_MATRICES = ("l*.w_ih", "l*.w_hh", "out.w")


def _data(**kw) -> SyntheticPhones:
    return SyntheticPhones(num_utts=32, batch_size=8, **kw)


def _dev() -> SyntheticPhones:
    return SyntheticPhones(num_utts=16, batch_size=8, part=1, shuffle=False)


def _dev_eval(model: GRUPhoneModel) -> dict[str, float]:
    return {"dev_per": 100.0 * evaluate(model, _dev()).per}


def _fast(epochs: int, **kw) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=1e-2, progress=False, **kw)


def _tiny() -> GRUPhoneModel:
    seed_everything(0)
    model = build_model("tiny")
    model.set_normalization(torch.zeros(8), torch.full((8,), 2.0))
    return model


# -- the output layer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        PruneConfig.for_rate("bsp", 40.0, num_r=4, num_c=2, targets=ALL_MATRICES),
        PruneConfig.for_rate("magnitude", 40.0, targets=ALL_MATRICES),
        PruneConfig.for_rate("row", 40.0, targets=ALL_MATRICES),
        PruneConfig.for_rate("bbs", 40.0, num_banks=4, targets=ALL_MATRICES),
        PruneConfig.for_rate("bsp", 4.0, num_r=4, num_c=2, targets=ALL_MATRICES, output_rate=64),
    ],
    ids=["bsp", "magnitude", "row", "bbs", "bsp-out-64x"],
)
def test_no_method_empties_an_output_class(cfg: PruneConfig) -> None:
    model = _tiny()
    out = model.matrices()["out.w"].detach().clone()
    out[2] = 1e-6  # a class with tiny weights: the one a global ranking would drop first
    pruners = make_pruners(model, cfg)
    assert isinstance(pruners["out.w"], ClassBalancedPruner)
    mask = pruners["out.w"].project(out)
    assert mask.any(axis=1).all(), "an output class lost all its weights"
    pruners["out.w"].check(mask)
    # the same through gradual pruning's every intermediate rate
    gp = GradualPruning(model.matrices(), cfg, total_steps=4, update_every=1)
    for _ in range(4):
        gp.after_step()
        assert gp.masks.masks["out.w"].any(dim=1).all()


def test_output_layer_is_dense_by_default_and_counts_as_kept() -> None:
    model = _tiny()
    pruners = make_pruners(model, PruneConfig.for_rate("bsp", 4.0, num_r=4, num_c=2))
    assert "out.w" not in pruners
    gru = sum(model.matrices()[n].numel() for n in pruners)
    out = model.matrices()["out.w"].numel()
    r = rate_for_overall(4.0, gru, out)
    assert gru / r + out == pytest.approx((gru + out) / 4.0)
    with pytest.raises(ValueError, match="output-layer weights kept"):
        rate_for_overall(100.0, gru, out)
    with pytest.raises(ValueError, match="rate must be"):
        rate_for_overall(0.5, gru, out)


def test_class_balanced_pruner_rejects_bad_masks() -> None:
    p = ClassBalancedPruner(0.75)
    m = p.project(np.arange(40, dtype=np.float32).reshape(5, 8))
    assert (m.sum(axis=1) == 2).all() and m[:, -2:].all()
    m[3, -1] = False
    with pytest.raises(ValueError, match="row 3 keeps 1 weights, expected 2"):
        p.check(m)
    with pytest.raises(ValueError, match="sparsity"):
        ClassBalancedPruner(1.0)


# -- gradual pruning -------------------------------------------------------------------------------


def test_cubic_ramp() -> None:
    xs = [cubic_fraction(t / 10) for t in range(11)]
    assert xs[0] == 0.0 and xs[-1] == 1.0
    assert all(b > a for a, b in itertools.pairwise(xs)), "strictly rising"
    # fast at first, gentle at the end (Zhu & Gupta 2017)
    assert xs[1] - xs[0] > xs[10] - xs[9]
    assert cubic_fraction(0.5) == pytest.approx(0.875)


@pytest.mark.parametrize(
    "cfg",
    [
        PruneConfig.for_rate("bsp", 6.0, num_r=4, num_c=2),
        PruneConfig.for_rate("bsp", 24.0, num_r=4, num_c=2),  # columns by 16, then rows
        PruneConfig.for_rate("magnitude", 8.0),
        PruneConfig.for_rate("bbs", 4.0, num_banks=2),
    ],
    ids=["bsp-6x", "bsp-24x-rows", "magnitude", "bbs"],
)
def test_gradual_schedule_reaches_its_target_rate(cfg: PruneConfig) -> None:
    model = _tiny()
    trainer = Trainer(
        model, _fast(3, prune_update_every=2), phase="gradual",
        pruners=make_pruners(model, cfg), prune_cfg=cfg, steps_per_epoch=4,
    )  # fmt: skip
    hist = trainer.fit(_data())
    fractions = [h["prune_fraction"] for h in hist]
    assert fractions == sorted(fractions) and 0 < fractions[0] < 1 and fractions[-1] == 1.0
    gp = trainer.gradual
    assert gp is not None and gp.step == 12
    gp.masks.check(gp.pruners)  # the final masks are exactly the method's own at its rate
    kept = sum(int(m.sum()) for m in gp.masks.masks.values())
    dense = sum(m.numel() for m in gp.masks.masks.values())
    target = 1.0 / (1.0 - cfg.overall_sparsity)
    assert dense / kept == pytest.approx(target, rel=0.2)  # tiny matrices: coarse keep counts
    for n, m in gp.masks.masks.items():  # pruned weights are zero
        assert not model.matrices()[n].detach()[~m].any()


def test_at_fraction_scales_the_sparsity() -> None:
    cfg = PruneConfig.for_rate("bsp", 40.0, num_r=4, num_c=2)
    assert cfg.at_fraction(1.0).overall_sparsity == pytest.approx(cfg.overall_sparsity)
    half = cfg.at_fraction(0.5)
    assert half.overall_sparsity == pytest.approx(0.5 * cfg.overall_sparsity)
    assert cfg.at_fraction(0.0).col_sparsity == 0.0
    with pytest.raises(ValueError, match="fraction"):
        cfg.at_fraction(1.5)


def test_gradual_phase_needs_its_settings() -> None:
    model = _tiny()
    cfg = PruneConfig.for_rate("bsp", 4.0, num_r=4, num_c=2)
    pruners = make_pruners(model, cfg)
    with pytest.raises(ValueError, match="needs prune_cfg"):
        Trainer(model, _fast(2), phase="gradual", pruners=pruners)
    with pytest.raises(ValueError, match="keep_best would undo"):
        Trainer(model, _fast(2, keep_best=True), phase="gradual", pruners=pruners,
                prune_cfg=cfg, steps_per_epoch=4)  # fmt: skip


# -- ADMM ------------------------------------------------------------------------------------------


def test_admm_trace_and_falling_residual() -> None:
    from rtmobile_train.pruning import ADMMConfig

    model = _tiny()
    cfg = PruneConfig.for_rate("bsp", 4.0, num_r=4, num_c=2)
    trainer = Trainer(
        model, _fast(12), phase="admm", pruners=make_pruners(model, cfg),
        admm_cfg=ADMMConfig(rho_init_ratio=0.5, rho_factor=1.5, rho_max=1.0, stop_residual=0.02),
    )  # fmt: skip
    hist = trainer.fit(_data(), eval_fn=_dev_eval)
    for h in hist:
        for key in ("rho", "loss", "penalty", "admm_residual", "admm_rel_residual", "dev_per",
                    "proj_dev_per", "lr"):  # fmt: skip
            assert key in h, key
    rel = [h["admm_rel_residual"] for h in hist]
    assert rel[-1] < 0.5 * rel[0], rel
    rhos = [h["rho"] for h in hist]
    assert all(b == pytest.approx(1.5 * a) for a, b in itertools.pairwise(rhos))
    # calibrated: the first epoch's penalty is the share of the loss it was asked to be, give
    # or take what one epoch of training moved
    assert 0.05 < hist[0]["penalty"] / hist[0]["loss"] < 2.0
    if trainer.stopped:
        assert rel[-1] <= 0.02 and len(hist) < 12


def test_admm_stops_on_the_residual() -> None:
    from rtmobile_train.pruning import ADMMConfig

    model = _tiny()
    cfg = PruneConfig.for_rate("magnitude", 2.0)
    trainer = Trainer(
        model, _fast(30), phase="admm", pruners=make_pruners(model, cfg),
        admm_cfg=ADMMConfig(rho_init_ratio=1.0, rho_factor=2.0, rho_max=1e3, stop_residual=0.2),
    )  # fmt: skip
    hist = trainer.fit(_data())
    assert trainer.stopped.startswith("ADMM relative residual")
    assert hist[-1]["admm_rel_residual"] <= 0.2 and len(hist) < 30


# -- learning rate, early stop, best weights, distillation -------------------------------------


def test_plateau_halves_the_lr_stops_and_keeps_the_best_epoch(tmp_path: Path) -> None:
    model = _tiny()
    cfg = _fast(10, lr_schedule="plateau", stop_patience=2, keep_best=True, lr_min=1e-4)
    trainer = Trainer(model, cfg)
    snapshots: list[dict[str, torch.Tensor]] = []

    devs = iter([50.0, 40.0, 45.0, 41.0, 30.0])

    def scripted(m: GRUPhoneModel) -> dict[str, float]:
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"dev_per": next(devs)}

    hist = trainer.fit(_data(), eval_fn=scripted, ckpt_path=tmp_path / "dense.pt")
    assert [h["lr"] for h in hist] == [1e-2, 1e-2, 1e-2, 5e-3]
    assert trainer.stopped.startswith("dev_per did not improve for 2 epochs")
    assert len(hist) == 4 and trainer.best == 40.0 and trainer.best_epoch == 2
    saved = read_checkpoint(tmp_path / "dense.pt")["model"]
    for k, v in model.state_dict().items():  # the epoch-2 weights are back, and saved
        assert torch.equal(v, snapshots[1][k]) and torch.equal(saved[k], v)


def test_cosine_schedule_ends_at_lr_min() -> None:
    hist = Trainer(_tiny(), _fast(5, lr_schedule="cosine", lr_min=1e-4)).fit(_data())
    lrs = [h["lr"] for h in hist]
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-4)
    assert lrs == sorted(lrs, reverse=True)


def test_monitor_rules_need_an_evaluation() -> None:
    with pytest.raises(ValueError, match="need an evaluation"):
        Trainer(_tiny(), _fast(2, stop_patience=1)).fit(_data())
    with pytest.raises(ValueError, match="monitors 'dev_per'"):
        Trainer(_tiny(), _fast(2, keep_best=True)).fit(_data(), eval_fn=lambda m: {"x": 1.0})
    for bad, match in (
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"lr_min": 1.0}, "lr_min"),
        ({"plateau_factor": 1.0}, "plateau_factor"),
        ({"distill_weight": 2.0}, "distill_weight"),
        ({"distill_temperature": 0.0}, "distill_temperature"),
    ):
        with pytest.raises(ValueError, match=match):
            _fast(1, **bad)


def test_distillation_loss_and_training() -> None:
    logits = torch.randn(2, 7, 5)
    batch = Batch(torch.zeros(2, 7, 8), torch.zeros(2, 7, dtype=torch.long), torch.tensor([7, 4]))
    assert float(distill_loss(logits, logits, batch, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(logits, torch.randn(2, 7, 5), batch, 1.0)) > 0
    with pytest.raises(ValueError, match="needs a teacher"):
        Trainer(_tiny(), _fast(1, distill_weight=0.5))
    teacher = _tiny()
    Trainer(teacher, _fast(2)).fit(_data())
    student = _tiny()
    hist = Trainer(student, _fast(2, distill_weight=0.5), teacher=teacher).fit(_data())
    assert hist[-1]["loss"] < hist[0]["loss"]


# -- resume after a kill mid-epoch ----------------------------------------------------------------


class _Killed(Exception):
    pass


class _KillAt:
    """Batches of ``data``; raises after ``at`` batches in total (a kill mid-epoch)."""

    def __init__(self, data: SyntheticPhones, at: int) -> None:
        self.data, self.at, self.seen = data, at, 0

    def set_epoch(self, epoch: int) -> None:
        self.data.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[Batch]:
        for b in self.data:
            if self.seen == self.at:
                raise _Killed
            self.seen += 1
            yield b


def _recipe() -> PipelineConfig:
    return PipelineConfig(
        dense=_fast(2),
        admm=_fast(2),
        retrain=_fast(
            3, lr_schedule="plateau", keep_best=True, stop_patience=2, distill_weight=0.3
        ),
        prune=PruneConfig.for_rate("bsp", 6.0, num_r=4, num_c=2),
        method="gradual",
    )


@pytest.mark.parametrize("kill_at", [10, 22], ids=["in-gradual", "in-retrain"])
def test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run(
    kill_at: int, tmp_path: Path
) -> None:
    straight = _tiny()
    run_pipeline(straight, _data(), _recipe(), tmp_path / "straight", eval_fn=_dev_eval)

    out = tmp_path / "killed"
    with pytest.raises(_Killed):  # 4 batches per epoch: dense 0-7, gradual 8-15, retrain 16-
        run_pipeline(_tiny(), _KillAt(_data(), kill_at), _recipe(), out, eval_fn=_dev_eval)
    resumed = _tiny()
    run_pipeline(resumed, _data(), _recipe(), out, eval_fn=_dev_eval)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    a = read_checkpoint(tmp_path / "straight" / "retrain.pt")["history"]
    b = read_checkpoint(out / "retrain.pt")["history"]
    assert [h["dev_per"] for h in a] == [h["dev_per"] for h in b]


def test_default_block_shape_aims_at_12_row_strips() -> None:
    """Presets keep their geometry; other models get strips of about 12 gate rows (at most 32
    strips) and at most 4 column blocks, never more than a matrix's columns."""
    from rtmobile_train.model import ModelConfig
    from rtmobile_train.reproduce import MODELS
    from rtmobile_train.workflow import block_shape

    for choice in MODELS.values():
        assert block_shape(choice.config) == (choice.num_r, choice.num_c)
    assert block_shape(ModelConfig(input_dim=40, hidden_dim=16, num_layers=1)) == (4, 4)
    assert block_shape(ModelConfig(input_dim=40, hidden_dim=100, num_layers=2)) == (25, 4)
    assert block_shape(ModelConfig(input_dim=40, hidden_dim=1024, num_layers=2)) == (32, 4)
    assert block_shape(ModelConfig(input_dim=2, hidden_dim=3, num_layers=1)) == (1, 2)


def test_num_c_changes_no_mask_without_row_pruning() -> None:
    """At rates the column rate covers, BSP prunes no rows, so Num_c 1 and 4 give the same
    mask and `rtmobile prune` defaults to one column block (faster); with row pruning they
    differ and the preset's Num_c stays."""
    from rtmobile_train.pruning import make_pruners
    from rtmobile_train.workflow import MODELS, bsp_prunes_rows, prune_config_for_rate

    torch.manual_seed(0)
    net = GRUPhoneModel(MODELS["small"].config)
    assert not bsp_prunes_rows(net, 10.0)
    assert bsp_prunes_rows(net, 19.0)
    assert bsp_prunes_rows(net, 10.0, col_rate=5.0)

    def masks(rate: float, num_c: int) -> dict[str, np.ndarray]:
        cfg = prune_config_for_rate(net, "bsp", rate, num_r=32, num_c=num_c)
        pruners = make_pruners(net, cfg)
        mats = net.matrices()
        return {n: p.project(mats[n].detach()) != 0 for n, p in pruners.items()}

    for name, m in masks(10.0, 4).items():
        np.testing.assert_array_equal(m, masks(10.0, 1)[name])
    at19 = masks(19.0, 4), masks(19.0, 1)
    assert any((at19[0][n] != at19[1][n]).any() for n in at19[0])
