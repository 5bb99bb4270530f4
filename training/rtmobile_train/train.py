"""Training loop for the three phases of RTMobile: dense training, ADMM, masked retraining.

One :class:`Trainer` runs any phase; the phase only decides what is added around the
optimizer step (paper Sec. III-C / DESIGN "BSP structure"):

* ``dense``: frame-wise cross-entropy, Adam, gradient-norm clipping;
* ``admm``: the loss gets ``ADMM.penalty()`` (W-step); Z/U are updated once per epoch (or
  every ``admm_update_every`` steps), and rho follows the ADMM schedule; the phase ends early
  once the relative residual reaches ``ADMMConfig.stop_residual``;
* ``gradual``: gradual pruning (``pruning.GradualPruning``): the masks tighten on a cubic
  ramp while the network trains, reaching the final rate at the phase's last step;
* ``retrain``: masks fixed; gradients outside them are zeroed before the step and the weights
  re-zeroed after it.

Every phase can decay its learning rate (``TrainConfig.lr_schedule``: cosine, or halving on a
dev-PER plateau), stop once the dev PER has not improved for ``stop_patience`` epochs, keep
the best dev-PER weights, and learn from a teacher's frame posteriors (``distill_weight``).

:func:`run_pipeline` chains the phases with one checkpoint per phase (``dense.pt``,
``admm.pt`` or ``gradual.pt``, ``retrain.pt``), saved every epoch; rerunning it resumes where
it stopped (a run killed mid-epoch redoes that epoch from the same state and RNG).
Batches come from any re-iterable source (see ``batch.py``); a source with ``set_epoch`` gets
called with the epoch number first (as ``DistributedSampler`` wants).

CLI (also under ``torchrun``, see ``distributed.py``)::

    python -m rtmobile_train.train --preset tiny --data synthetic --out runs/tiny
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rtmobile_train import distributed
from rtmobile_train.batch import Batch, as_batch
from rtmobile_train.bspc import MAGIC as BSPC_MAGIC
from rtmobile_train.evaluate import evaluate
from rtmobile_train.features import FeatureSpec
from rtmobile_train.model import PRESETS, GRUPhoneModel, ModelConfig, preset
from rtmobile_train.pruning import (
    ADMM,
    ADMMConfig,
    CompressionReport,
    GradualPruning,
    MaskSet,
    PruneConfig,
    Pruner,
    compression_report,
    make_pruners,
)

__all__ = [
    "CKPT_FORMAT",
    "PHASES",
    "DataBundle",
    "PipelineConfig",
    "PipelineResult",
    "TrainConfig",
    "Trainer",
    "fit_resumable",
    "frame_loss",
    "main",
    "read_checkpoint",
    "run_pipeline",
    "save_checkpoint",
    "seed_everything",
]

log = logging.getLogger("rtmobile_train")

Phase = Literal["dense", "admm", "gradual", "retrain"]
PHASES: tuple[Phase, ...] = ("dense", "admm", "gradual", "retrain")
LRSchedule = Literal["constant", "cosine", "plateau"]
CKPT_FORMAT = "rtmobile-train-checkpoint"
CKPT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer and loop settings for one phase. ``grad_clip`` <= 0 disables clipping;
    ``admm_update_every`` = 0 means one Z/U update per epoch.

    Learning rate (``lr_schedule``): ``constant``; ``cosine`` from ``lr`` at the first epoch
    to ``lr_min`` at the last; ``plateau``: multiplied by ``plateau_factor`` (not below
    ``lr_min``) after every epoch whose ``monitor`` (a key of the eval function's result,
    lower is better) did not improve. ``stop_patience`` > 0 ends the phase after that many
    epochs without improvement; ``keep_best`` restores the best epoch's weights at the end.
    ``distill_weight`` > 0 mixes in the KL divergence to a teacher's frame posteriors at
    ``distill_temperature`` (the trainer's ``teacher``). ``prune_update_every``: steps between
    the mask updates of gradual pruning (0: ten per epoch).
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    seed: int = 0
    admm_update_every: int = 0
    progress: bool = True
    lr_schedule: LRSchedule = "constant"
    lr_min: float = 1e-5
    plateau_factor: float = 0.5
    stop_patience: int = 0
    keep_best: bool = False
    monitor: str = "dev_per"
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    prune_update_every: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"TrainConfig.epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.admm_update_every < 0:
            raise ValueError(
                f"TrainConfig.admm_update_every must be >= 0, got {self.admm_update_every}"
            )
        if self.lr_schedule not in ("constant", "cosine", "plateau"):
            raise ValueError(
                "TrainConfig.lr_schedule must be 'constant', 'cosine' or 'plateau', got "
                f"{self.lr_schedule!r}"
            )
        if not 0 < self.lr_min <= self.lr:
            raise ValueError(f"TrainConfig.lr_min must be in (0, lr={self.lr}], got {self.lr_min}")
        if not 0 < self.plateau_factor < 1:
            raise ValueError(
                f"TrainConfig.plateau_factor must be in (0, 1), got {self.plateau_factor}"
            )
        if self.stop_patience < 0 or self.prune_update_every < 0:
            raise ValueError("TrainConfig.stop_patience and prune_update_every must be >= 0")
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(
                f"TrainConfig.distill_weight must be in [0, 1], got {self.distill_weight}"
            )
        if not self.distill_temperature > 0:
            raise ValueError(
                f"TrainConfig.distill_temperature must be > 0, got {self.distill_temperature}"
            )

    @property
    def uses_monitor(self) -> bool:
        return self.lr_schedule == "plateau" or self.stop_patience > 0 or self.keep_best

    def to_dict(self) -> dict[str, Any]:
        """The settings that decide the result (no ``progress``); options at their defaults
        are left out, so fingerprints of runs made before they existed stay valid."""
        d = asdict(self)
        d.pop("progress")
        for f in fields(self):
            if f.name in _LATER_OPTIONS and d[f.name] == f.default:
                del d[f.name]
        return d


_LATER_OPTIONS = frozenset(
    {
        "lr_schedule", "lr_min", "plateau_factor", "stop_patience", "keep_best", "monitor",
        "distill_weight", "distill_temperature", "prune_update_every",
    }
)  # fmt: skip


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so a run (and every DDP rank's init) is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys).astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])


def frame_loss(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, int, int]:
    """Mean cross-entropy over valid frames, the number of valid frames, and how many of them
    the argmax gets right."""
    valid = batch.valid
    n = int(valid.sum())
    if n == 0:
        raise ValueError("batch has no valid frames (all labels ignored)")
    sel_logits, sel_labels = logits[valid], batch.labels[valid]
    num_classes = logits.shape[-1]
    if int(sel_labels.min()) < 0 or int(sel_labels.max()) >= num_classes:
        raise ValueError(
            f"frame labels must be in [0, {num_classes}) or {-100} (ignored), got "
            f"[{int(sel_labels.min())}, {int(sel_labels.max())}]"
        )
    loss = F.cross_entropy(sel_logits, sel_labels)
    correct = int((sel_logits.argmax(-1) == sel_labels).sum())
    return loss, n, correct


def distill_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, batch: Batch, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) of the frame posteriors at ``temperature`` over the valid frames,
    times temperature^2 (Hinton et al. 2015: keeps its gradient scale as T changes)."""
    valid = batch.valid
    t = float(temperature)
    log_p = F.log_softmax(logits[valid] / t, dim=-1)
    log_q = F.log_softmax(teacher_logits[valid] / t, dim=-1)
    return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean") * (t * t)


# -- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Atomic torch.save (temp file + rename) so a killed run never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(dict(state), tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint written by :class:`Trainer` (weights_only: no pickled code runs)."""
    with open(path, "rb") as f:
        if f.read(len(BSPC_MAGIC)) == BSPC_MAGIC:
            raise ValueError(f"{path}: an exported BSPC model, not a training checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a readable checkpoint ({first})") from e
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not an rtmobile training checkpoint")
    if state.get("version") != CKPT_VERSION:
        raise ValueError(
            f"{path}: checkpoint version {state.get('version')!r}, expected {CKPT_VERSION}"
        )
    return state


# -- the trainer -------------------------------------------------------------------------------


class Trainer:
    """Runs one phase on a model: Adam + clipping, plus ADMM penalty/updates or fixed masks.

    ``features`` (how the model's input frames are made from audio) is stored in every
    checkpoint, so the exported model can transcribe audio; it is not used for training.
    """

    def __init__(
        self,
        model: GRUPhoneModel,
        cfg: TrainConfig,
        *,
        phase: Phase = "dense",
        pruners: Mapping[str, Pruner] | None = None,
        admm_cfg: ADMMConfig | None = None,
        masks: MaskSet | Mapping[str, Any] | None = None,
        features: FeatureSpec | None = None,
        prune_cfg: PruneConfig | None = None,
        steps_per_epoch: int | None = None,
        teacher: torch.nn.Module | None = None,
    ) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; choose one of {PHASES}")
        if phase != "dense" and not pruners:
            raise ValueError(f"phase {phase!r} needs pruners")
        if phase == "retrain" and masks is None:
            raise ValueError("phase 'retrain' needs masks (from ADMM.hard_prune)")
        if phase == "gradual" and (prune_cfg is None or not steps_per_epoch or not cfg.epochs):
            raise ValueError(
                "phase 'gradual' needs prune_cfg, steps_per_epoch >= 1 and epochs >= 1"
            )
        if phase in ("admm", "gradual") and cfg.keep_best:
            raise ValueError(f"keep_best would undo pruning progress in phase {phase!r}")
        if phase == "gradual" and cfg.stop_patience:
            raise ValueError("phase 'gradual' must run to its last step (no stop_patience)")
        if cfg.distill_weight > 0 and teacher is None:
            raise ValueError("TrainConfig.distill_weight > 0 needs a teacher model")
        self.model = model
        self.cfg = cfg
        self.phase: Phase = phase
        self.pruners = dict(pruners or {})
        self.features = features
        self.admm: ADMM | None = None
        self.masks: MaskSet | None = None
        self.gradual: GradualPruning | None = None
        self.teacher = teacher.eval() if teacher is not None and cfg.distill_weight > 0 else None
        if phase == "admm":
            self.admm = ADMM(model.matrices(), self.pruners, admm_cfg)
        if phase == "gradual":
            assert prune_cfg is not None and steps_per_epoch
            every = cfg.prune_update_every or max(1, steps_per_epoch // 10)
            self.gradual = GradualPruning(
                model.matrices(), prune_cfg, total_steps=cfg.epochs * steps_per_epoch,
                update_every=every,
            )  # fmt: skip
            if set(self.gradual.pruners) != set(self.pruners):
                raise ValueError("gradual pruning's prune_cfg targets other matrices than pruners")
        if phase == "retrain":
            assert masks is not None
            self.masks = masks if isinstance(masks, MaskSet) else MaskSet(model.matrices(), masks)
            self.masks.apply()
        self.net = distributed.wrap(model)
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.epoch = 0  # completed epochs
        self.step = 0
        self.history: list[dict[str, float]] = []
        # learning-rate schedule, early stop and best weights (see TrainConfig)
        self.lr = cfg.lr
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        self.stopped = ""  # why the phase ended before cfg.epochs ("" while it has not)
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs or bool(self.stopped)

    def _epoch_lr(self) -> float:
        """The learning rate of the coming epoch."""
        c = self.cfg
        if c.lr_schedule == "cosine":
            progress = self.epoch / max(1, c.epochs - 1)
            return c.lr_min + (c.lr - c.lr_min) * 0.5 * (1.0 + np.cos(np.pi * progress))
        return self.lr  # constant, or where the plateau rule left it

    def _after_eval(self, stats: Mapping[str, float]) -> None:
        """Plateau rule, best weights and early stop, from the epoch's monitored value."""
        c = self.cfg
        if not c.uses_monitor:
            return
        if c.monitor not in stats:
            raise ValueError(
                f"{self.phase}: the learning-rate/stop rule monitors {c.monitor!r}, but the "
                f"evaluation gave {sorted(k for k in stats if k != 'epoch')}"
            )
        value = float(stats[c.monitor])
        if self.best is None or value < self.best:
            self.best, self.best_epoch, self.bad_epochs = value, self.epoch, 0
            if c.keep_best:
                self.best_state = {
                    k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
                }
            return
        self.bad_epochs += 1
        if c.lr_schedule == "plateau":
            self.lr = max(c.lr_min, self.lr * c.plateau_factor)
        if c.stop_patience and self.bad_epochs >= c.stop_patience:
            self.stopped = (
                f"{c.monitor} did not improve for {self.bad_epochs} epochs "
                f"(best {self.best:.4g} at epoch {self.best_epoch})"
            )

    def close(self) -> None:
        """Drop the DDP wrapper: its gradient hooks must not fire in the next phase's backward."""
        self.net = self.model

    # -- one epoch ------------------------------------------------------------------------------
    def train_epoch(self, batches: Iterable[Any]) -> dict[str, float]:
        set_epoch = getattr(batches, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        self.model.train()
        dist_info = distributed.info()
        join = (
            self.net.join()  # type: ignore[operator]
            if isinstance(self.net, torch.nn.parallel.DistributedDataParallel)
            else contextlib.nullcontext()
        )
        lr = self._epoch_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = pen_sum = 0.0
        frames = correct = nbatches = 0
        t0 = time.perf_counter()
        bar = tqdm(
            batches,
            desc=f"{self.phase} epoch {self.epoch + 1}/{self.cfg.epochs}",
            disable=not (self.cfg.progress and dist_info.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        with join:
            for raw in bar:
                batch = as_batch(raw)
                logits, _ = self.net(batch.feats)
                loss, n, ok = frame_loss(logits, batch)
                total = loss
                if self.teacher is not None:
                    with torch.no_grad():
                        teacher_logits, _ = self.teacher(batch.feats)
                    kd = distill_loss(logits, teacher_logits, batch, self.cfg.distill_temperature)
                    a = self.cfg.distill_weight
                    total = (1.0 - a) * loss + a * kd
                proximal = self.admm is not None and self.admm.cfg.w_step == "proximal"
                if self.admm is not None:
                    self.admm.calibrate(float(total.detach()))
                    if proximal:  # the penalty is applied after the step; logged only
                        with torch.no_grad():
                            penalty = self.admm.penalty()
                    else:
                        penalty = self.admm.penalty()
                        total = total + penalty
                    pen_sum += float(penalty.detach()) * n
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                if self.masks is not None:
                    self.masks.mask_grads()
                if self.gradual is not None:
                    self.gradual.masks.mask_grads()
                if self.cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.optimizer.step()
                if proximal:
                    assert self.admm is not None
                    self.admm.proximal_step()
                if self.masks is not None:
                    self.masks.apply()
                if self.gradual is not None:
                    self.gradual.after_step()
                self.step += 1
                if (
                    self.admm is not None
                    and self.cfg.admm_update_every
                    and self.step % self.cfg.admm_update_every == 0
                ):
                    self.admm.update()
                loss_sum += float(loss.detach()) * n
                frames += n
                correct += ok
                nbatches += 1
                bar.set_postfix(loss=f"{loss_sum / frames:.3f}", refresh=False)
        if nbatches == 0:
            raise ValueError(
                f"{self.phase} epoch {self.epoch + 1}: the batch source yielded no batches "
                "(an exhausted generator? pass a re-iterable source)"
            )
        loss_sum, pen_sum, frames, correct = distributed.all_reduce_sum(
            [loss_sum, pen_sum, frames, correct]
        )
        stats = {
            "epoch": float(self.epoch + 1),
            "loss": loss_sum / frames,
            "frame_acc": correct / frames,
            "frames": frames,
            "seconds": time.perf_counter() - t0,
            "lr": lr,
        }
        if self.admm is not None:
            if not self.cfg.admm_update_every:
                self.admm.update()
            res = self.admm.residuals()
            stats["penalty"] = pen_sum / frames
            stats["admm_residual"] = float(np.sqrt(sum(r * r for r in res.values())))
            stats["admm_rel_residual"] = self.admm.relative_residual()
            stats["rho"] = max(self.admm.rho.values())
        if self.gradual is not None:
            stats["prune_fraction"] = self.gradual.fraction
        self.epoch += 1
        return stats

    @torch.no_grad()
    def _eval_projection(
        self, eval_fn: Callable[[GRUPhoneModel], Mapping[str, float]]
    ) -> dict[str, float]:
        """ADMM trace: the evaluation of Pi(W), the model a hard prune now would give."""
        assert self.admm is not None
        saved = {n: w.detach().clone() for n, w in self.admm.params.items()}
        try:
            for n, z in self.admm.projected().items():
                self.admm.params[n].copy_(z)
            return {f"proj_{k}": float(v) for k, v in eval_fn(self.model).items()}
        finally:
            for n, w in saved.items():
                self.admm.params[n].copy_(w)

    def fit(
        self,
        batches: Iterable[Any],
        *,
        ckpt_path: str | os.PathLike[str] | None = None,
        eval_fn: Callable[[GRUPhoneModel], Mapping[str, float]] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``cfg.epochs`` epochs are complete, checkpointing after each one."""
        is_main = distributed.info().is_main
        if self.cfg.uses_monitor and eval_fn is None and not self.done:
            raise ValueError(
                f"{self.phase}: lr_schedule 'plateau', stop_patience and keep_best need an "
                f"evaluation that gives {self.cfg.monitor!r}"
            )
        while not self.done:
            stats = self.train_epoch(batches)
            if eval_fn is not None and is_main:
                stats.update(eval_fn(self.model))
                if self.admm is not None:
                    stats.update(self._eval_projection(eval_fn))
                self._after_eval(stats)
            stop = self.admm.cfg.stop_residual if self.admm is not None else 0.0
            if stop and not self.stopped and stats["admm_rel_residual"] <= stop:
                self.stopped = (
                    f"ADMM relative residual {stats['admm_rel_residual']:.3g} <= {stop:g}"
                )
            self.history.append(stats)
            if is_main:
                log.info(
                    "%s epoch %d/%d: %s",
                    self.phase,
                    self.epoch,
                    self.cfg.epochs,
                    " ".join(f"{k}={v:.4g}" for k, v in stats.items() if k != "epoch"),
                )
                if self.stopped:
                    log.info("%s: stopped after epoch %d: %s", self.phase, self.epoch, self.stopped)
                if ckpt_path is not None:
                    save_checkpoint(ckpt_path, self.state_dict())
        if self.restore_best() and ckpt_path is not None and is_main:
            save_checkpoint(ckpt_path, self.state_dict())  # the checkpoint holds what is used
        if self.masks is not None:
            self.masks.check(self.pruners)
        return self.history

    def restore_best(self) -> bool:
        """With ``keep_best``: load the weights of the epoch with the best monitored value
        (True when that changed the weights)."""
        if not (self.cfg.keep_best and self.best_state is not None):
            return False
        current = self.model.state_dict()
        if all(
            torch.equal(current[k], v.to(current[k].device)) for k, v in self.best_state.items()
        ):
            return False
        self.model.load_state_dict(self.best_state)
        log.info(
            "%s: restored the weights of epoch %d (%s %.4g)",
            self.phase, self.best_epoch, self.cfg.monitor, self.best,
        )  # fmt: skip
        return True

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CKPT_FORMAT,
            "version": CKPT_VERSION,
            "phase": self.phase,
            "epoch": self.epoch,
            "step": self.step,
            "done": self.done,
            "model_config": self.model.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_config": asdict(self.cfg),
            "pruners": {n: p.to_dict() for n, p in self.pruners.items()},
            "admm_config": self.admm.cfg.to_dict() if self.admm else None,
            "admm": self.admm.state_dict() if self.admm else None,
            "masks": self.masks.state_dict() if self.masks else None,
            "gradual": self.gradual.state_dict() if self.gradual else None,
            "features": self.features.to_dict() if self.features else None,
            "history": list(self.history),
            "schedule": {
                "lr": self.lr,
                "best": self.best,
                "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
                "stopped": self.stopped,
                "best_state": self.best_state,
            },
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["phase"] != self.phase:
            raise ValueError(f"checkpoint is for phase {state['phase']!r}, not {self.phase!r}")
        if ModelConfig.from_dict(state["model_config"]) != self.model.cfg:
            raise ValueError("checkpoint was written for a different model config")
        if set(state["pruners"]) != set(self.pruners):
            raise ValueError(
                f"checkpoint prunes {sorted(state['pruners'])}, this run {sorted(self.pruners)}"
            )
        changed = sorted(n for n, p in self.pruners.items() if state["pruners"][n] != p.to_dict())
        if changed:
            raise ValueError(f"checkpoint was written with other pruning settings for {changed}")
        stored = state.get("features")
        if stored is not None:
            features = FeatureSpec.from_dict(stored)
            if self.features is not None and features != self.features:
                raise ValueError("checkpoint was written for other input features")
            self.features = features
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.admm is not None:
            self.admm.load_state_dict(state["admm"])
        if self.phase == "retrain":
            self.masks = MaskSet(self.model.matrices(), state["masks"])
            self.masks.apply()
        if self.gradual is not None:
            self.gradual.load_state_dict(state["gradual"])
        sched = state.get("schedule") or {}
        self.lr = float(sched.get("lr", self.cfg.lr))
        self.best = sched.get("best")
        self.best_epoch = int(sched.get("best_epoch", 0))
        self.bad_epochs = int(sched.get("bad_epochs", 0))
        self.stopped = str(sched.get("stopped", ""))
        self.best_state = sched.get("best_state")
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        _set_rng_state(state["rng"])


def fit_resumable(
    trainer: Trainer,
    batches: Iterable[Any],
    ckpt_path: str | os.PathLike[str],
    *,
    eval_fn: Callable[[GRUPhoneModel], Mapping[str, float]] | None = None,
) -> list[dict[str, float]]:
    """``trainer.fit`` resumed from ``ckpt_path`` when it exists; leaves a checkpoint there even
    after zero epochs (a later phase may start from it)."""
    path = Path(ckpt_path)
    if path.exists():
        trainer.load_state_dict(read_checkpoint(path))
        log.info("%s: resumed from %s at epoch %d/%d", trainer.phase, path, trainer.epoch,
                 trainer.cfg.epochs)  # fmt: skip
    history = trainer.fit(batches, ckpt_path=path, eval_fn=eval_fn)
    trainer.close()
    if not path.exists() and distributed.info().is_main:
        save_checkpoint(path, trainer.state_dict())
    return history


# -- the three phases --------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the whole dense -> prune -> masked retrain run.

    ``method``: how the pruning phase (settings ``admm``) reaches the constraint set: ``admm``
    (W/Z/U steps, then a hard prune) or ``gradual`` (cubic ramp). With
    ``retrain.distill_weight`` > 0 the dense model (as it leaves the dense phase) is the
    teacher of masked retraining.
    """

    dense: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10))
    admm: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10))
    retrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5, lr=5e-4))
    prune: PruneConfig = field(default_factory=PruneConfig)
    admm_schedule: ADMMConfig = field(default_factory=ADMMConfig)
    hard_prune_source: Literal["w", "z"] = "w"
    method: Literal["admm", "gradual"] = "admm"

    def __post_init__(self) -> None:
        if self.method not in ("admm", "gradual"):
            raise ValueError(
                f"PipelineConfig.method must be 'admm' or 'gradual', got {self.method!r}"
            )


@dataclass
class PipelineResult:
    model: GRUPhoneModel
    pruners: dict[str, Pruner]
    masks: MaskSet
    report: CompressionReport
    history: dict[str, list[dict[str, float]]]


def run_pipeline(
    model: GRUPhoneModel,
    batches: Iterable[Any],
    cfg: PipelineConfig,
    out_dir: str | os.PathLike[str],
    *,
    eval_fn: Callable[[GRUPhoneModel], Mapping[str, float]] | None = None,
    features: FeatureSpec | None = None,
) -> PipelineResult:
    """Dense training, pruning (ADMM + hard prune, or gradual), masked retraining; resumes
    from ``out_dir``.

    ``features`` is recorded in the checkpoints (see :class:`Trainer`)."""
    out = Path(out_dir)
    seed_everything(cfg.dense.seed)
    pruners = make_pruners(model, cfg.prune)
    history: dict[str, list[dict[str, float]]] = {}

    def resume(trainer: Trainer, phase: Phase) -> Path:
        path = out / f"{phase}.pt"
        if path.exists():
            trainer.load_state_dict(read_checkpoint(path))
            if distributed.info().is_main:
                log.info("%s: resumed from %s at epoch %d", phase, path, trainer.epoch)
        return path

    dense = Trainer(model, cfg.dense, phase="dense", features=features)
    history["dense"] = dense.fit(batches, ckpt_path=resume(dense, "dense"), eval_fn=eval_fn)
    dense.close()
    teacher = copy.deepcopy(model).eval() if cfg.retrain.distill_weight > 0 else None

    retrain_ckpt = out / "retrain.pt"
    phase: Phase = cfg.method
    pruning = Trainer(
        model, cfg.admm, phase=phase, pruners=pruners, admm_cfg=cfg.admm_schedule,
        features=features, prune_cfg=cfg.prune,
        steps_per_epoch=len(batches) if phase == "gradual" else None,  # type: ignore[arg-type]
    )  # fmt: skip
    pruning_path = resume(pruning, phase)
    if not retrain_ckpt.exists():
        history[phase] = pruning.fit(batches, ckpt_path=pruning_path, eval_fn=eval_fn)
    pruning.close()
    if pruning.gradual is not None:
        masks = pruning.gradual.masks
    else:
        assert pruning.admm is not None
        masks = pruning.admm.hard_prune(cfg.hard_prune_source)

    retrain = Trainer(
        model, cfg.retrain, phase="retrain", pruners=pruners, masks=masks, features=features,
        teacher=teacher,
    )  # fmt: skip
    resume(retrain, "retrain")
    history["retrain"] = retrain.fit(batches, ckpt_path=retrain_ckpt, eval_fn=eval_fn)
    retrain.close()
    assert retrain.masks is not None
    if distributed.info().is_main and not cfg.retrain.epochs:
        save_checkpoint(retrain_ckpt, retrain.state_dict())
    report = compression_report(model, retrain.masks)
    if distributed.info().is_main:
        log.info("compression: %s", report.summary())
    return PipelineResult(model, pruners, retrain.masks, report, history)


# -- command line -------------------------------------------------------------------------------


@dataclass
class DataBundle:
    """What a data factory (``--data pkg.module:function``) returns for this rank.

    ``factory(rank=..., world_size=..., seed=...)`` must give every rank the same number of
    batches per epoch (or DDP's join handles the tail); ``norm`` is (mean, var) of the raw
    training features.
    """

    train: Iterable[Any]
    valid: Iterable[Any] | None = None
    input_dim: int | None = None
    labels: Sequence[str] | None = None
    norm: tuple[Any, Any] | None = None


def _synthetic_bundle(
    *, rank: int, world_size: int, seed: int, cfg: ModelConfig, batch_size: int, num_utts: int
) -> DataBundle:
    from rtmobile_train.synthetic import SyntheticPhones

    common = {"input_dim": cfg.input_dim, "num_classes": cfg.num_classes, "seed": seed}
    train = SyntheticPhones(
        num_utts=num_utts, batch_size=batch_size, rank=rank, world_size=world_size, **common
    )
    valid = SyntheticPhones(
        num_utts=max(batch_size, num_utts // 4),
        batch_size=batch_size,
        part=1,
        shuffle=False,
        **common,
    )
    return DataBundle(train, valid, cfg.input_dim)


def _load_factory(spec: str) -> Callable[..., DataBundle]:
    mod, sep, fn = spec.partition(":")
    if not sep or not mod or not fn:
        raise SystemExit(f"--data must be 'synthetic' or 'package.module:function', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"--data {spec}: cannot load the factory ({e})") from None
    return factory  # type: ignore[no-any-return]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rtmobile_train.train",
        description="Dense training -> ADMM pruning -> masked retraining of a GRU phone model.",
    )
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model preset")
    p.add_argument("--hidden", type=int, help="override the preset's hidden size")
    p.add_argument("--data", default="synthetic", help="'synthetic' or 'package.module:function'")
    p.add_argument("--out", required=True, type=Path, help="checkpoint directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="synthetic data only")
    p.add_argument("--num-utts", type=int, default=64, help="synthetic data only")
    p.add_argument("--dense-epochs", type=int, default=10)
    p.add_argument("--admm-epochs", type=int, default=10)
    p.add_argument("--retrain-epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--retrain-lr", type=float, default=5e-4)
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--method", default="bsp", choices=["bsp", "magnitude", "row", "bbs"])
    p.add_argument("--targets", nargs="+", default=list(PruneConfig().targets))
    p.add_argument("--num-r", type=int, default=PruneConfig.num_r)
    p.add_argument("--num-c", type=int, default=PruneConfig.num_c)
    p.add_argument("--col-sparsity", type=float, default=PruneConfig.col_sparsity)
    p.add_argument("--row-sparsity", type=float, default=PruneConfig.row_sparsity)
    p.add_argument("--sparsity", type=float, default=PruneConfig.sparsity)
    p.add_argument("--num-banks", type=int, default=PruneConfig.num_banks)
    for f in fields(ADMMConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    p.add_argument("--export", type=Path, help="write the pruned model as BSPC here")
    p.add_argument(
        "--save-rank-weights",
        action="store_true",
        help="every rank writes its final state_dict to OUT/rank<r>.pt (DDP check)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def _setup(
    args: argparse.Namespace, dist_info: distributed.DistInfo
) -> tuple[GRUPhoneModel, DataBundle, PipelineConfig]:
    """Model, data and configs from the command line; raises ValueError on a bad setting."""
    seed_everything(args.seed)
    cfg = preset(args.preset, **({"hidden_dim": args.hidden} if args.hidden else {}))
    if args.data == "synthetic":
        bundle = _synthetic_bundle(
            rank=dist_info.rank,
            world_size=dist_info.world_size,
            seed=args.seed,
            cfg=cfg,
            batch_size=args.batch_size,
            num_utts=args.num_utts,
        )
    else:
        bundle = _load_factory(args.data)(
            rank=dist_info.rank, world_size=dist_info.world_size, seed=args.seed
        )
    if bundle.input_dim is not None:
        cfg = replace(cfg, input_dim=bundle.input_dim)
    if bundle.labels is not None:
        cfg = replace(cfg, labels=tuple(bundle.labels), num_classes=len(bundle.labels))
    model = GRUPhoneModel(cfg)
    if bundle.norm is not None:
        model.set_normalization(*bundle.norm)
    common = {"seed": args.seed, "grad_clip": args.grad_clip, "progress": not args.no_progress}
    pcfg = PipelineConfig(
        dense=TrainConfig(epochs=args.dense_epochs, lr=args.lr, **common),
        admm=TrainConfig(epochs=args.admm_epochs, lr=args.lr, **common),
        retrain=TrainConfig(epochs=args.retrain_epochs, lr=args.retrain_lr, **common),
        prune=PruneConfig(
            method=args.method,
            targets=tuple(args.targets),
            sparsity=args.sparsity,
            num_r=args.num_r,
            num_c=args.num_c,
            col_sparsity=args.col_sparsity,
            row_sparsity=args.row_sparsity,
            num_banks=args.num_banks,
        ),
        admm_schedule=ADMMConfig(**{f.name: getattr(args, f.name) for f in fields(ADMMConfig)}),
    )
    make_pruners(model, pcfg.prune)  # fail on a bad block geometry now, not after training
    return model, bundle, pcfg


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dist_info = distributed.init_from_env()
    try:
        try:
            model, bundle, pcfg = _setup(args, dist_info)
        except ValueError as e:
            parser.error(str(e))
        eval_fn = None
        if bundle.valid is not None:
            valid = bundle.valid

            def eval_fn(m: GRUPhoneModel) -> dict[str, float]:
                r = evaluate(m, valid)
                return {"valid_per": r.per, "valid_frame_acc": r.frame_acc}

        result = run_pipeline(model, bundle.train, pcfg, args.out, eval_fn=eval_fn)
        if args.save_rank_weights:
            torch.save(model.state_dict(), args.out / f"rank{dist_info.rank}.pt")
        if args.export and dist_info.is_main:
            from rtmobile_train.export import export_bspc  # export imports this module

            export_bspc(model, args.export, masks=result.masks, pruners=result.pruners)
            log.info("wrote %s", args.export)
        distributed.barrier()
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
