"""Multi-process data-parallel training on CPUs: torch.distributed DDP with the gloo backend.

Launch any training entry point with ``torchrun --nproc_per_node=N -m rtmobile_train.train ...``;
torchrun sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT and :func:`init_from_env` joins the
group. Without those variables everything runs single-process and these helpers are no-ops.

Why this keeps ranks identical: DDP broadcasts rank 0's parameters when it wraps the model and
all-reduces (averages) gradients every step, so every rank applies the same Adam step; the ADMM
penalty, Z/U updates and masks are deterministic functions of those identical weights, so they
stay identical too without extra communication.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "info",
    "init_from_env",
    "is_main",
    "shutdown",
    "wrap",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(backend: str = "gloo") -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set: launch with torchrun")
        dist.init_process_group(backend=backend)
    return info()


def info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def is_main() -> bool:
    return info().is_main


def barrier() -> None:
    if info().world_size > 1:
        dist.barrier()


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum a few scalars over all ranks (float64, so counts stay exact)."""
    if info().world_size == 1:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def wrap(model: nn.Module) -> nn.Module:
    """DistributedDataParallel(model) when running multi-process, else the model itself."""
    if info().world_size == 1:
        return model
    return nn.parallel.DistributedDataParallel(model)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
