"""The default pruning recipe, shared by ``rtmobile prune`` and ``reproduce`` (plain values,
no torch: the command line reads them to show its defaults).

The measurements behind the choices are in ``bench/README.md``, section *Table I*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RECIPE", "Recipe"]


@dataclass(frozen=True)
class Recipe:
    """Gradual pruning over ``prune_epochs`` (or ADMM for at most that many epochs: one Z/U
    update per epoch, rho calibrated so the penalty starts at ``rho_init_ratio`` x the loss,
    grown by ``rho_factor`` per update, stopped at relative residual ``stop_residual``), then
    masked retraining for at most ``retrain_epochs``, its learning rate halved after every
    epoch without a better dev PER, stopped after ``stop_patience`` such epochs, the best epoch
    kept."""

    prune_method: str = "gradual"
    prune_epochs: int = 6
    prune_lr: float = 1e-3
    retrain_epochs: int = 14
    retrain_lr: float = 1e-3
    retrain_schedule: str = "plateau"
    stop_patience: int = 3
    admm_updates_per_epoch: int = 1
    rho_init_ratio: float = 0.5
    rho_factor: float = 1.5
    stop_residual: float = 0.05

    def retrain_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """``TrainConfig`` arguments of masked retraining; the best epoch is kept whenever the
        learning rate decays."""
        kw: dict[str, Any] = {
            "epochs": self.retrain_epochs,
            "lr": self.retrain_lr,
            "lr_schedule": self.retrain_schedule,
            "stop_patience": self.stop_patience,
        }
        kw.update(overrides)
        kw.setdefault("keep_best", kw["lr_schedule"] != "constant")
        return kw

    def admm_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """``ADMMConfig`` arguments."""
        kw: dict[str, Any] = {
            "rho_init_ratio": self.rho_init_ratio,
            "rho_factor": self.rho_factor,
            "stop_residual": self.stop_residual,
        }
        kw.update(overrides)
        return kw


RECIPE = Recipe()
