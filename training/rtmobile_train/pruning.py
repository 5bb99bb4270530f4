"""Pruning methods behind one interface, the ADMM driver, hard pruning and masked retraining.

Every method is a :class:`Pruner`: ``project(w) -> mask`` is the Euclidean projection of ``w``
onto the method's constraint set, expressed as the support to keep (keeping ``w``'s values on
it is the projection). The same training code runs any of them:

* :class:`BSPPruner` — the paper's block-based structured pruning (Algorithm 1, ``bsp.bsp_mask``).
  Its two-step column/row selection is the paper's projection; it is exact for either step alone
  and the standard heuristic for the product set.
* Baselines from the paper's Table I: :class:`MagnitudePruner` (unstructured, ESE-like),
  :class:`RowPruner` (whole rows), :class:`BankBalancedPruner` (BBS: every row cut into equal
  banks, the same number of largest-magnitude weights kept per bank).

ADMM (paper Sec. III-C), per pruned matrix W_i with pruner Pi_i:

* W-step: minimise ``loss + sum_i rho_i/2 ||W_i - Z_i + U_i||_F^2``. Two ways
  (``ADMMConfig.w_step``):

  - ``"gradient"`` (default): the penalty is added to the loss and the optimizer (Adam) steps
    on the sum (:meth:`ADMM.penalty`), the textbook form. Adam moves each weight by about its
    learning rate per step, which bounds how fast W is pulled towards Z: the network adapts
    while it is pulled.
  - ``"proximal"``: forward-backward splitting: an optimizer step on the loss alone, then the
    exact proximal operator of the quadratic with step ``tau``: ``W <- W - f (W - Z + U)``,
    ``f = tau rho / (1 + tau rho)`` (:meth:`ADMM.proximal_step`). It reaches the constraint set
    whatever the optimizer, but pulls by a fraction of the distance per step: with ``tau = 1``
    on the Festival ``small`` corpus (75 steps per epoch, rho 0.004 -> 0.256) it drove the
    residual from 40 to 0.3 in 4 epochs, faster than the network could adapt (frame accuracy
    0.86 -> 0.28 at BSP 4x, where ``"gradient"`` ended ADMM at 0.69).
* Z-step: ``Z_i = Pi_i(W_i + U_i)``; U-step: ``U_i = U_i + W_i - Z_i`` (:meth:`ADMM.update`);
* rho grows by ``rho_factor`` every ``rho_every`` Z/U updates up to ``rho_max``, so W is pulled
  ever harder onto the constraint set and the final hard prune costs little accuracy. U is the
  scaled dual (y / rho), so it is rescaled by old rho / new rho whenever rho changes.

Which matrices are pruned: by default the GRU ``W_ih``/``W_hh`` of all layers, the paper's "GRU
weight matrices". The output layer stays dense unless ``PruneConfig.targets`` names it; then it
is pruned per class (``ClassBalancedPruner``) at its own rate, so no phone class can lose all
its weights (BSP's step 2 emptied 7 of 39 classes at 10x). Biases are never pruned.

Gradual pruning (Zhu & Gupta 2017, :class:`GradualPruning`) is the other way to reach the
constraint set: the masks are recomputed from the current weights every few steps at a
sparsity that follows a cubic ramp ``s_t = s_f (1 - (1 - t/T)^3)``, so the network adapts while
ever more blocks are removed.

Compression rate (paper Table I): dense / kept parameters. :func:`compression_report` gives it
two ways: over the pruned matrices only (weights, no biases: what the pruner controls) and
overall (every parameter of the model, biases and unpruned matrices counted as kept).
"""

from __future__ import annotations

import fnmatch
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from rtmobile_train import bsp

__all__ = [
    "ADMM",
    "DEFAULT_TARGETS",
    "MAX_COL_RATE",
    "METHODS",
    "OUTPUT_MATRIX",
    "PRUNERS",
    "ADMMConfig",
    "BSPPruner",
    "BankBalancedPruner",
    "ClassBalancedPruner",
    "CompressionReport",
    "GradualPruning",
    "MagnitudePruner",
    "MaskSet",
    "PruneConfig",
    "Pruner",
    "RowPruner",
    "compression_report",
    "cubic_fraction",
    "make_pruners",
    "pruner_from_dict",
    "rate_for_overall",
]


def _as_matrix(w: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().numpy()
    a = np.asarray(w)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {a.shape}")
    return a


def _check_sparsity(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores; ties go to the lower index (as in ``bsp``)."""
    return np.argsort(-scores, kind="stable")[:k]


class Pruner(ABC):
    """A constraint set S for one weight matrix.

    ``project(w)`` returns the boolean support of the projection of ``w`` onto S; ``check(mask)``
    raises ``ValueError`` unless ``mask`` has the exact structure and kept count that
    ``project`` produces. ``blocks`` is the BSPC (num_r, num_c) geometry the mask fits.
    """

    kind: ClassVar[str]

    @abstractmethod
    def project(self, w: np.ndarray | torch.Tensor) -> np.ndarray: ...

    @abstractmethod
    def check(self, mask: np.ndarray) -> None: ...

    def blocks(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(num_r, num_c) for export; non-block methods are stored as one dense block."""
        del shape
        return (1, 1)

    def validate_shape(self, shape: tuple[int, int]) -> None:
        """Raise ValueError if this pruner cannot be applied to a matrix of ``shape``."""
        del shape

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}  # type: ignore[call-overload]


@dataclass(frozen=True)
class MagnitudePruner(Pruner):
    """Unstructured: keep the ``keep_count(size, sparsity)`` largest |w| (ESE-like)."""

    sparsity: float
    kind: ClassVar[str] = "magnitude"

    def __post_init__(self) -> None:
        _check_sparsity("MagnitudePruner.sparsity", self.sparsity)

    def project(self, w: np.ndarray | torch.Tensor) -> np.ndarray:
        a = _as_matrix(w)
        keep = bsp.keep_count(a.size, self.sparsity)
        mask = np.zeros(a.size, dtype=bool)
        mask[_top_k(np.abs(a.astype(np.float64)).ravel(), keep)] = True
        return mask.reshape(a.shape)

    def check(self, mask: np.ndarray) -> None:
        m = np.asarray(mask, dtype=bool)
        want = bsp.keep_count(m.size, self.sparsity)
        if int(m.sum()) != want:
            raise ValueError(f"magnitude mask keeps {int(m.sum())} weights, expected {want}")


@dataclass(frozen=True)
class RowPruner(Pruner):
    """Whole rows: keep the ``keep_count(rows, sparsity)`` rows of largest L2 norm."""

    sparsity: float
    kind: ClassVar[str] = "row"

    def __post_init__(self) -> None:
        _check_sparsity("RowPruner.sparsity", self.sparsity)

    def project(self, w: np.ndarray | torch.Tensor) -> np.ndarray:
        a = _as_matrix(w).astype(np.float64)
        mask = np.zeros(a.shape, dtype=bool)
        mask[_top_k((a * a).sum(axis=1), bsp.keep_count(a.shape[0], self.sparsity))] = True
        return mask

    def check(self, mask: np.ndarray) -> None:
        m = np.asarray(mask, dtype=bool)
        full, empty = m.all(axis=1), ~m.any(axis=1)
        if not np.all(full | empty):
            bad = int(np.flatnonzero(~(full | empty))[0])
            raise ValueError(f"row mask: row {bad} is partly kept")
        want = bsp.keep_count(m.shape[0], self.sparsity)
        if int(full.sum()) != want:
            raise ValueError(f"row mask keeps {int(full.sum())} rows, expected {want}")

    def blocks(self, shape: tuple[int, int]) -> tuple[int, int]:
        # A row-pruned matrix is BSP with one strip and one column block.
        del shape
        return (1, 1)


@dataclass(frozen=True)
class BankBalancedPruner(Pruner):
    """BBS: each row is cut into ``num_banks`` equal banks; every bank keeps the same number
    (``keep_count(bank_size, sparsity)``) of its largest-magnitude weights."""

    sparsity: float
    num_banks: int
    kind: ClassVar[str] = "bbs"

    def __post_init__(self) -> None:
        _check_sparsity("BankBalancedPruner.sparsity", self.sparsity)
        _check_count("BankBalancedPruner.num_banks", self.num_banks)

    def validate_shape(self, shape: tuple[int, int]) -> None:
        if shape[1] % self.num_banks:
            raise ValueError(
                f"BBS needs equal banks: {shape[1]} columns are not divisible by "
                f"num_banks={self.num_banks}"
            )

    def _banks(self, a: np.ndarray) -> np.ndarray:
        self.validate_shape(a.shape)
        rows, cols = a.shape
        return a.reshape(rows, self.num_banks, cols // self.num_banks)

    def project(self, w: np.ndarray | torch.Tensor) -> np.ndarray:
        a = _as_matrix(w)
        banks = np.abs(self._banks(a).astype(np.float64))
        keep = bsp.keep_count(banks.shape[2], self.sparsity)
        order = np.argsort(-banks, axis=2, kind="stable")[:, :, :keep]
        mask = np.zeros(banks.shape, dtype=bool)
        np.put_along_axis(mask, order, True, axis=2)
        return mask.reshape(a.shape)

    def check(self, mask: np.ndarray) -> None:
        banks = self._banks(np.asarray(mask, dtype=bool))
        want = bsp.keep_count(banks.shape[2], self.sparsity)
        counts = banks.sum(axis=2)
        if not np.all(counts == want):
            r, b = (int(x) for x in np.argwhere(counts != want)[0])
            raise ValueError(
                f"BBS mask: row {r} bank {b} keeps {int(counts[r, b])} weights, expected {want}"
            )


@dataclass(frozen=True)
class ClassBalancedPruner(Pruner):
    """The output layer's pruner: every row (one output class) keeps its own
    ``max(1, keep_count(cols, sparsity))`` largest-magnitude weights, so no class is ever
    emptied, whatever the rate. Exported as BSP with one strip per row and one column block."""

    sparsity: float
    kind: ClassVar[str] = "per_class"

    def __post_init__(self) -> None:
        _check_sparsity("ClassBalancedPruner.sparsity", self.sparsity)

    def keep(self, cols: int) -> int:
        return max(1, bsp.keep_count(cols, self.sparsity))

    def project(self, w: np.ndarray | torch.Tensor) -> np.ndarray:
        a = np.abs(_as_matrix(w).astype(np.float64))
        order = np.argsort(-a, axis=1, kind="stable")[:, : self.keep(a.shape[1])]
        mask = np.zeros(a.shape, dtype=bool)
        np.put_along_axis(mask, order, True, axis=1)
        return mask

    def check(self, mask: np.ndarray) -> None:
        m = np.asarray(mask, dtype=bool)
        want = self.keep(m.shape[1])
        counts = m.sum(axis=1)
        if not np.all(counts == want):
            r = int(np.flatnonzero(counts != want)[0])
            raise ValueError(
                f"per-class mask: row {r} keeps {int(counts[r])} weights, expected {want}"
            )

    def blocks(self, shape: tuple[int, int]) -> tuple[int, int]:
        return (shape[0], 1)


@dataclass(frozen=True)
class BSPPruner(Pruner):
    """Block-based structured pruning (paper Algorithm 1) via ``bsp.bsp_mask``.

    With ``target_rate`` set (and ``row_sparsity`` 0), every projection picks step 2's row
    keep count that brings the matrix's compression closest to ``target_rate``
    (``bsp.row_sparsity_for_rate``): a nominal split ``col_rate x row_rate`` falls well short
    of its product, because step 2 also drops rows that step 1 had already emptied.
    """

    num_r: int
    num_c: int
    col_sparsity: float
    row_sparsity: float
    target_rate: float | None = None
    kind: ClassVar[str] = "bsp"

    def __post_init__(self) -> None:
        _check_count("BSPPruner.num_r", self.num_r)
        _check_count("BSPPruner.num_c", self.num_c)
        _check_sparsity("BSPPruner.col_sparsity", self.col_sparsity)
        _check_sparsity("BSPPruner.row_sparsity", self.row_sparsity)
        _check_target_rate(self.target_rate, self.col_sparsity, self.row_sparsity)

    @classmethod
    def from_rate(
        cls, rate: float, num_r: int, num_c: int, col_rate: float | None = None
    ) -> BSPPruner:
        """Pruner for compression ``rate`` (paper Table I): columns pruned by ``col_rate``
        (default ``rate``), rows by whatever brings each matrix to ``rate``."""
        col_s, row_s = bsp.sparsities_for_rate(rate, col_rate)
        if row_s == 0.0:
            return cls(num_r, num_c, col_s, 0.0)
        return cls(num_r, num_c, col_s, 0.0, target_rate=rate)

    def validate_shape(self, shape: tuple[int, int]) -> None:
        rows, cols = shape
        if self.num_r > rows or self.num_c > cols:
            raise ValueError(
                f"BSP blocks (num_r={self.num_r}, num_c={self.num_c}) do not fit a "
                f"{rows}x{cols} matrix (need num_r <= rows, num_c <= cols)"
            )

    def project(self, w: np.ndarray | torch.Tensor) -> np.ndarray:
        a = _as_matrix(w)
        self.validate_shape(a.shape)
        return bsp.bsp_mask(a, self.num_r, self.num_c, self.col_sparsity, self.row_sparsity_of(a))

    def row_sparsity_of(self, w: np.ndarray) -> float:
        """Step 2's row sparsity for ``w``: fixed, or matched to ``target_rate``."""
        if self.target_rate is None:
            return self.row_sparsity
        return bsp.row_sparsity_for_rate(
            w, self.num_r, self.num_c, self.col_sparsity, self.target_rate
        )

    def check(self, mask: np.ndarray) -> None:
        m = np.asarray(mask, dtype=bool)
        self.validate_shape(m.shape)
        if not bsp.is_bsp_structured(m, self.num_r, self.num_c):
            raise ValueError("BSP mask: some block's support is not a product set R x C")
        rows, cols = m.shape
        keep_c = bsp.keep_count(cols, self.col_sparsity)
        # With target_rate the row keep count depends on the weights it was projected from.
        keep_r = rows if self.target_rate is not None else bsp.keep_count(rows, self.row_sparsity)
        # Step 1 keeps exactly keep_c columns per strip and step 2 keep_r rows per column
        # block; step 2 can empty a kept column (and a block with no kept column hides its
        # kept rows), so the visible counts are upper bounds.
        sb = bsp.strip_bounds(rows, self.num_r)
        for i in range(self.num_r):
            n = int(m[sb[i] : sb[i + 1]].any(axis=0).sum())
            if n > keep_c:
                raise ValueError(f"BSP mask: strip {i} keeps {n} columns, at most {keep_c}")
        cb = bsp.block_bounds(cols, self.num_c)
        for j in range(self.num_c):
            n = int(m[:, cb[j] : cb[j + 1]].any(axis=1).sum())
            if n > keep_r:
                raise ValueError(f"BSP mask: column block {j} keeps {n} rows, at most {keep_r}")

    def blocks(self, shape: tuple[int, int]) -> tuple[int, int]:
        self.validate_shape(shape)
        return (self.num_r, self.num_c)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if d["target_rate"] is None:  # keeps the dicts (and fingerprints) of fixed splits as before
            del d["target_rate"]
        return d


def _check_target_rate(target_rate: float | None, col_sparsity: float, row_sparsity: float) -> None:
    if target_rate is None:
        return
    if not (isinstance(target_rate, (int, float)) and math.isfinite(target_rate)):
        raise ValueError(f"target_rate must be a finite number, got {target_rate!r}")
    if row_sparsity != 0.0:
        raise ValueError("give a BSP row_sparsity or a target_rate, not both")
    if target_rate < 1.0 / (1.0 - col_sparsity) - 1e-9:
        raise ValueError(
            f"target_rate {target_rate:g} is below the column rate "
            f"{1.0 / (1.0 - col_sparsity):g}: row pruning cannot lower the compression"
        )


PRUNERS: dict[str, type[Pruner]] = {
    cls.kind: cls
    for cls in (BSPPruner, MagnitudePruner, RowPruner, BankBalancedPruner, ClassBalancedPruner)
}
# What PruneConfig.method may name: the per-class pruner is only ever the output layer's.
METHODS: tuple[str, ...] = ("bsp", "magnitude", "row", "bbs")
OUTPUT_MATRIX = "out.w"


def pruner_from_dict(d: Mapping[str, Any]) -> Pruner:
    """Inverse of ``Pruner.to_dict`` (for checkpoints)."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in PRUNERS:
        raise ValueError(f"unknown pruner kind {kind!r}; choose one of {sorted(PRUNERS)}")
    return PRUNERS[kind](**d)


# -- configuration -----------------------------------------------------------------------------

# The GRU matrices. The output layer is left dense by default: it is 1.5% of the small model's
# weights, but BSP 10x on it alone moved dev PER 24.0 -> 41.0 and step 2 emptied 7 of 39 phone
# classes. Naming it in ``targets`` prunes it per class (``ClassBalancedPruner``) at
# ``output_sparsity``, so no class ever loses all its weights.
DEFAULT_TARGETS: tuple[str, ...] = ("l*.w_ih", "l*.w_hh")
# Largest BSP column rate of a default split; the rest of the rate is taken by rows. The paper's
# Table I prunes columns by 10-20x and rows for the rest.
MAX_COL_RATE = 16.0


@dataclass(frozen=True)
class PruneConfig:
    """One pruning method for a set of matrices (names as in ``GRUPhoneModel.matrices()``).

    ``method``: ``bsp`` (uses num_r, num_c, col_sparsity, and row_sparsity or target_rate:
    see ``BSPPruner``), ``magnitude`` and ``row`` (use sparsity), ``bbs`` (sparsity,
    num_banks). ``targets`` are fnmatch patterns. The output layer (``out.w``), when a target
    names it, is pruned per class at ``output_sparsity`` (default: the method's overall
    sparsity), whatever the method: no output class is ever emptied.
    """

    method: Literal["bsp", "magnitude", "row", "bbs"] = "bsp"
    targets: tuple[str, ...] = DEFAULT_TARGETS
    sparsity: float = 0.9
    num_r: int = 8
    num_c: int = 4
    col_sparsity: float = 0.9
    row_sparsity: float = 0.0
    num_banks: int = 4
    target_rate: float | None = None
    output_sparsity: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown pruning method {self.method!r}; choose one of {sorted(METHODS)}"
            )
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets:
            raise ValueError("PruneConfig.targets is empty: nothing would be pruned")
        if self.output_sparsity is not None:
            _check_sparsity("PruneConfig.output_sparsity", self.output_sparsity)
        self.pruner()  # validates the method's own fields

    def pruner(self) -> Pruner:
        if self.method == "bsp":
            return BSPPruner(
                self.num_r, self.num_c, self.col_sparsity, self.row_sparsity, self.target_rate
            )
        if self.target_rate is not None:
            raise ValueError(f"only BSP takes a target_rate, not {self.method!r}")
        if self.method == "bbs":
            return BankBalancedPruner(self.sparsity, self.num_banks)
        return PRUNERS[self.method](self.sparsity)  # type: ignore[call-arg]

    @property
    def overall_sparsity(self) -> float:
        """The share of a pruned matrix's weights the method removes (nominally, for BSP)."""
        if self.method != "bsp":
            return self.sparsity
        if self.target_rate is not None:
            return 1.0 - 1.0 / self.target_rate
        return 1.0 - (1.0 - self.col_sparsity) * (1.0 - self.row_sparsity)

    def output_pruner(self) -> ClassBalancedPruner:
        s = self.overall_sparsity if self.output_sparsity is None else self.output_sparsity
        return ClassBalancedPruner(s)

    def at_fraction(self, fraction: float) -> PruneConfig:
        """This method and geometry at ``fraction`` (in [0, 1]) of the final sparsity, for
        gradual pruning: every sparsity is scaled by ``fraction``; BSP prunes columns up to its
        final column rate and rows for the rest of the intermediate rate."""
        if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0):
            raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
        out_s = None if self.output_sparsity is None else self.output_sparsity * fraction
        if self.method != "bsp":
            return replace(self, sparsity=self.sparsity * fraction, output_sparsity=out_s)
        rate = 1.0 / (1.0 - self.overall_sparsity * fraction)
        col_rate = min(rate, 1.0 / (1.0 - self.col_sparsity))
        p = BSPPruner.from_rate(rate, self.num_r, self.num_c, col_rate)
        return replace(
            self, col_sparsity=p.col_sparsity, row_sparsity=p.row_sparsity,
            target_rate=p.target_rate, output_sparsity=out_s,
        )  # fmt: skip

    @classmethod
    def for_rate(
        cls,
        method: str,
        rate: float,
        *,
        col_rate: float | None = None,
        num_r: int = 8,
        num_c: int = 4,
        num_banks: int = 4,
        targets: tuple[str, ...] = DEFAULT_TARGETS,
        output_rate: float | None = None,
    ) -> PruneConfig:
        """The config for a nominal compression ``rate`` (dense / kept weights) of the
        targeted matrices.

        BSP prunes columns by a column rate (step 1 of Algorithm 1; default ``min(rate,
        MAX_COL_RATE)``, the paper's Table I split) and, where that is below ``rate``, rows by
        whatever brings each matrix to ``rate`` (``target_rate``; about ``rate / col_rate``);
        the other methods keep ``1/rate`` of the weights (sparsity ``1 - 1/rate``).
        ``output_rate``: the output layer's own rate when ``targets`` name it (default ``rate``).
        """
        out_s = None
        if output_rate is not None:
            if not (math.isfinite(output_rate) and output_rate >= 1):
                raise ValueError(f"output_rate must be a finite number >= 1, got {output_rate!r}")
            out_s = 1.0 - 1.0 / output_rate
        if method == "bsp":
            col = min(rate, MAX_COL_RATE) if col_rate is None else col_rate
            p = BSPPruner.from_rate(rate, num_r, num_c, col)
            return cls(
                "bsp", targets, num_r=num_r, num_c=num_c, col_sparsity=p.col_sparsity,
                target_rate=p.target_rate, output_sparsity=out_s,
            )  # fmt: skip
        if col_rate is not None:
            raise ValueError(f"only BSP splits the rate into a column rate, not {method!r}")
        if not (math.isfinite(rate) and rate >= 1):
            raise ValueError(f"rate must be a finite number >= 1, got {rate!r}")
        return cls(
            method, targets, sparsity=1.0 - 1.0 / rate, num_banks=num_banks,  # type: ignore[arg-type]
            output_sparsity=out_s,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = list(self.targets)
        for name in ("target_rate", "output_sparsity"):  # absent when unset: stable fingerprints
            if d[name] is None:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PruneConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown PruneConfig fields: {unknown}")
        return cls(**{**d, "targets": tuple(d.get("targets", DEFAULT_TARGETS))})


def rate_for_overall(
    rate: float, pruned_weights: int, other_weights: int, other_kept: float | None = None
) -> float:
    """The rate the pruned matrices need so that ALL weights (``pruned_weights`` pruned by the
    method, plus ``other_weights`` of which ``other_kept`` (default: all) are kept, e.g. a
    dense output layer or one pruned at its own rate) compress ``rate``-fold."""
    if not (math.isfinite(rate) and rate >= 1):
        raise ValueError(f"rate must be a finite number >= 1, got {rate!r}")
    kept_other = other_weights if other_kept is None else other_kept
    total = pruned_weights + other_weights
    budget = total / rate - kept_other
    if budget <= 0:
        raise ValueError(
            f"{rate:g}x over all {total:,} weights keeps {total / rate:,.0f}, no more than the "
            f"{kept_other:,.0f} output-layer weights kept: prune the output layer (harder), "
            "or ask for a lower rate"
        )
    return pruned_weights / budget


def make_pruners(
    matrices: Mapping[str, torch.Tensor] | nn.Module, cfg: PruneConfig
) -> dict[str, Pruner]:
    """{matrix name: pruner} for the matrices matching ``cfg.targets``; shapes are checked now
    so a bad geometry fails before training, not at the first Z-step. The output layer gets
    ``cfg.output_pruner()`` (per class), never the method's own pruner."""
    if isinstance(matrices, nn.Module):
        matrices = matrices.matrices()  # type: ignore[operator]
    pruner = cfg.pruner()
    chosen: dict[str, Pruner] = {}
    for pattern in cfg.targets:
        hits = [n for n in matrices if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ValueError(f"prune target {pattern!r} matches no matrix of {sorted(matrices)}")
        for name in hits:
            p = cfg.output_pruner() if name == OUTPUT_MATRIX else pruner
            try:
                p.validate_shape(tuple(matrices[name].shape))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            chosen[name] = p
    return {n: chosen[n] for n in matrices if n in chosen}


# -- ADMM ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ADMMConfig:
    """Penalty schedule: rho starts at ``rho``, is multiplied by ``rho_factor`` after every
    ``rho_every`` Z/U updates, and is capped at ``rho_max``.

    ``rho_init_ratio`` > 0 calibrates the start instead (ADMM-NN): at the first step rho is set
    so the penalty is that share of the loss (``rho_max`` then caps at ``rho_max / rho``
    times that start). ``stop_residual`` > 0 ends the ADMM phase once the relative primal
    residual ``||W - Z|| / ||W||`` over all pruned matrices is at or below it.
    """

    rho: float = 1e-3
    rho_factor: float = 2.0
    rho_every: int = 1
    rho_max: float = 1.0
    w_step: Literal["proximal", "gradient"] = "gradient"
    tau: float = 1.0  # proximal step size: each step pulls W by tau rho / (1 + tau rho)
    rho_init_ratio: float = 0.0
    stop_residual: float = 0.0

    def __post_init__(self) -> None:
        if self.w_step not in ("proximal", "gradient"):
            raise ValueError(
                f"ADMMConfig.w_step must be 'proximal' or 'gradient', got {self.w_step!r}"
            )
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"ADMMConfig.tau must be finite and > 0, got {self.tau!r}")
        if not (math.isfinite(self.rho) and self.rho > 0):
            raise ValueError(f"ADMMConfig.rho must be finite and > 0, got {self.rho!r}")
        if not (math.isfinite(self.rho_factor) and self.rho_factor >= 1):
            raise ValueError(f"ADMMConfig.rho_factor must be >= 1, got {self.rho_factor!r}")
        _check_count("ADMMConfig.rho_every", self.rho_every)
        if not (math.isfinite(self.rho_max) and self.rho_max >= self.rho):
            raise ValueError(
                f"ADMMConfig.rho_max must be finite and >= rho={self.rho}, got {self.rho_max!r}"
            )
        for name in ("rho_init_ratio", "stop_residual"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"ADMMConfig.{name} must be finite and >= 0, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("rho_init_ratio", "stop_residual"):  # absent when off: stable fingerprints
            if not d[name]:
                del d[name]
        return d


class ADMM:
    """ADMM state (Z, U, rho) for a set of weight matrices; see the module docstring."""

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        pruners: Mapping[str, Pruner],
        cfg: ADMMConfig | None = None,
    ) -> None:
        missing = sorted(set(pruners) - set(params))
        if missing:
            raise ValueError(f"pruners name unknown matrices: {missing}")
        if not pruners:
            raise ValueError("ADMM needs at least one pruned matrix")
        self.cfg = cfg or ADMMConfig()
        self.params = {n: params[n] for n in pruners}
        self.pruners = dict(pruners)
        self.rho = {n: self.cfg.rho for n in pruners}
        self.rho_cap = self.cfg.rho_max
        self.calibrated = self.cfg.rho_init_ratio <= 0  # nothing to calibrate
        self.num_updates = 0
        # Z^0 = Pi(W^0), U^0 = 0.
        self.Z: dict[str, torch.Tensor] = {}
        self.U: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for n, w in self.params.items():
                self.U[n] = torch.zeros_like(w, memory_format=torch.contiguous_format)
                self.Z[n] = self._project(n, w.detach())

    def _project(self, name: str, v: torch.Tensor) -> torch.Tensor:
        mask = torch.from_numpy(self.pruners[name].project(v)).to(v.device)
        return torch.where(mask, v, torch.zeros((), dtype=v.dtype, device=v.device))

    def penalty(self) -> torch.Tensor:
        """sum_i rho_i / 2 ||W_i - Z_i + U_i||_F^2, differentiable in W (add it to the loss)."""
        total = None
        for n, w in self.params.items():
            term = 0.5 * self.rho[n] * (w - self.Z[n] + self.U[n]).pow(2).sum()
            total = term if total is None else total + term
        assert total is not None
        return total

    @torch.no_grad()
    def calibrate(self, loss: float) -> None:
        """Set rho so the penalty is ``rho_init_ratio`` x ``loss`` (called once, at the first
        W-step). The cap keeps its ratio to the configured start: ``rho_max / rho``."""
        if self.calibrated:
            return
        sq = sum(float((w.detach() - self.Z[n] + self.U[n]).pow(2).sum())
                 for n, w in self.params.items())  # fmt: skip
        if sq > 0 and math.isfinite(loss) and loss > 0:
            rho = self.cfg.rho_init_ratio * loss / (0.5 * sq)
            self.rho = dict.fromkeys(self.params, rho)
            self.rho_cap = rho * self.cfg.rho_max / self.cfg.rho
        self.calibrated = True

    @torch.no_grad()
    def relative_residual(self) -> float:
        """||W - Z||_F / ||W||_F over all pruned matrices together (0 for all-zero W)."""
        num = sum(r * r for r in self.residuals().values())
        den = sum(float(w.detach().pow(2).sum()) for w in self.params.values())
        return math.sqrt(num / den) if den > 0 else 0.0

    @torch.no_grad()
    def projected(self) -> dict[str, torch.Tensor]:
        """Pi(W) per matrix: what a hard prune now would keep (for the trace)."""
        return {n: self._project(n, w.detach()) for n, w in self.params.items()}

    @torch.no_grad()
    def proximal_step(self) -> None:
        """The proximal operator of sum_i rho_i/2 ||W_i - Z_i + U_i||^2 with step ``tau``, in
        place: W_i <- (W_i + tau rho_i (Z_i - U_i)) / (1 + tau rho_i)."""
        for n, w in self.params.items():
            frac = self.cfg.tau * self.rho[n] / (1.0 + self.cfg.tau * self.rho[n])
            w.sub_(frac * (w - self.Z[n] + self.U[n]))

    @torch.no_grad()
    def update(self) -> dict[str, float]:
        """Z-step and U-step, then the rho schedule. Returns ||W_i - Z_i||_F per matrix."""
        res = {}
        for n, w in self.params.items():
            w = w.detach()
            self.Z[n] = self._project(n, w + self.U[n])
            self.U[n] = self.U[n] + w - self.Z[n]
            res[n] = float(torch.linalg.vector_norm(w - self.Z[n]))
        self.num_updates += 1
        if self.num_updates % self.cfg.rho_every == 0:
            for n in self.rho:
                new_rho = min(self.rho[n] * self.cfg.rho_factor, self.rho_cap)
                # U is the scaled dual y / rho: keep y when rho changes (Boyd et al. 2011,
                # Sec. 3.4.1). Left as is, each doubling of rho doubles the dual's pull and
                # drives W past Z, wrecking the model.
                self.U[n].mul_(self.rho[n] / new_rho)
                self.rho[n] = new_rho
        return res

    @torch.no_grad()
    def residuals(self) -> dict[str, float]:
        """Primal residual ||W_i - Z_i||_F: how far each W is from its constraint set's iterate."""
        return {
            n: float(torch.linalg.vector_norm(w.detach() - self.Z[n]))
            for n, w in self.params.items()
        }

    @torch.no_grad()
    def hard_prune(self, source: Literal["w", "z"] = "w") -> MaskSet:
        """End of ADMM: fix each mask and zero W outside it.

        ``source="w"`` projects W itself (ADMM-NN's hard prune; at convergence W ~ Z so it
        matches Z's support, and it never keeps a weight W has already driven to ~0);
        ``"z"`` reuses the support of the last Z iterate.
        """
        if source not in ("w", "z"):
            raise ValueError(f"hard_prune source must be 'w' or 'z', got {source!r}")
        masks = {}
        for n, w in self.params.items():
            if source == "w":
                masks[n] = torch.from_numpy(self.pruners[n].project(w.detach())).to(w.device)
            else:
                masks[n] = self.Z[n] != 0
        ms = MaskSet(self.params, masks)
        ms.apply()
        return ms

    def state_dict(self) -> dict[str, Any]:
        return {
            "Z": {n: z.clone() for n, z in self.Z.items()},
            "U": {n: u.clone() for n, u in self.U.items()},
            "rho": dict(self.rho),
            "rho_cap": self.rho_cap,
            "calibrated": self.calibrated,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state["Z"]) != set(self.params) or set(state["U"]) != set(self.params):
            raise ValueError(
                f"ADMM state is for matrices {sorted(state['Z'])}, not {sorted(self.params)}"
            )
        for n in self.params:
            self.Z[n] = state["Z"][n].to(self.params[n].device).clone()
            self.U[n] = state["U"][n].to(self.params[n].device).clone()
        self.rho = {n: float(state["rho"][n]) for n in self.params}
        self.rho_cap = float(state.get("rho_cap", self.cfg.rho_max))
        self.calibrated = bool(state.get("calibrated", True))
        self.num_updates = int(state["num_updates"])


# -- masked retraining ---------------------------------------------------------------------------


class MaskSet:
    """Fixed masks for masked retraining: zero the gradients outside the mask after backward
    and re-zero the weights after every optimizer step (Adam's moments would otherwise revive
    pruned weights)."""

    def __init__(
        self, params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor | np.ndarray]
    ) -> None:
        missing = sorted(set(masks) - set(params))
        if missing:
            raise ValueError(f"masks name unknown matrices: {missing}")
        self.params = {n: params[n] for n in masks}
        self.masks: dict[str, torch.Tensor] = {}
        for n, m in masks.items():
            mt = torch.as_tensor(np.asarray(m) if not isinstance(m, torch.Tensor) else m)
            mt = mt.to(dtype=torch.bool, device=self.params[n].device)
            if mt.shape != self.params[n].shape:
                raise ValueError(
                    f"mask for {n} has shape {tuple(mt.shape)}, weight has "
                    f"{tuple(self.params[n].shape)}"
                )
            self.masks[n] = mt

    @torch.no_grad()
    def apply(self) -> None:
        for n, w in self.params.items():
            w.masked_fill_(~self.masks[n], 0.0)

    @torch.no_grad()
    def mask_grads(self) -> None:
        for n, w in self.params.items():
            if w.grad is not None:
                w.grad.masked_fill_(~self.masks[n], 0.0)

    def numpy(self) -> dict[str, np.ndarray]:
        return {n: m.cpu().numpy() for n, m in self.masks.items()}

    def check(self, pruners: Mapping[str, Pruner]) -> None:
        """Raise ValueError unless every mask has its pruner's structure and W is zero outside."""
        for n, m in self.masks.items():
            try:
                pruners[n].check(m.cpu().numpy())
            except ValueError as e:
                raise ValueError(f"{n}: {e}") from None
            if bool((self.params[n].detach()[~m] != 0).any()):
                raise ValueError(f"{n}: nonzero weights outside the mask")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: m.clone().cpu() for n, m in self.masks.items()}


# -- gradual pruning -----------------------------------------------------------------------------


def cubic_fraction(progress: float) -> float:
    """Zhu & Gupta's ramp: the share of the final sparsity reached at ``progress`` in [0, 1]
    of the pruning steps, ``1 - (1 - progress)^3`` (fast at first, gentle at the end)."""
    t = min(1.0, max(0.0, float(progress)))
    return 1.0 - (1.0 - t) ** 3


class GradualPruning:
    """Gradual pruning over ``total_steps`` optimizer steps: every ``update_every`` steps (and
    at the last one) each targeted matrix is re-projected, from its current weights, onto the
    method's set at ``cubic_fraction(step / total_steps)`` of ``cfg``'s sparsity; between
    updates the masks are held like :class:`MaskSet`'s. Pruned weights are zero, so a
    projection at a higher rate drops further blocks and never revives old ones. After the
    last step the masks are ``cfg``'s own (they pass its pruners' ``check``)."""

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        cfg: PruneConfig,
        *,
        total_steps: int,
        update_every: int,
    ) -> None:
        _check_count("GradualPruning.total_steps", total_steps)
        _check_count("GradualPruning.update_every", update_every)
        self.cfg = cfg
        self.pruners = make_pruners(params, cfg)
        self.params = {n: params[n] for n in self.pruners}
        self.total_steps = total_steps
        self.update_every = update_every
        self.step = 0
        self.fraction = 0.0
        self.masks = MaskSet(
            self.params, {n: torch.ones_like(w, dtype=torch.bool) for n, w in self.params.items()}
        )

    @torch.no_grad()
    def prune_to(self, fraction: float) -> None:
        """Re-project every matrix at ``fraction`` of the final sparsity and zero the rest."""
        cfg = self.cfg if fraction >= 1.0 else self.cfg.at_fraction(fraction)
        pruners = self.pruners if fraction >= 1.0 else make_pruners(self.params, cfg)
        masks = {n: pruners[n].project(w.detach()) for n, w in self.params.items()}
        self.masks = MaskSet(self.params, masks)
        self.masks.apply()
        self.fraction = fraction

    def after_step(self) -> None:
        """Call after every optimizer step: re-zero pruned weights, prune further when due."""
        self.step += 1
        if self.step >= self.total_steps and self.fraction < 1.0:
            self.prune_to(1.0)
        elif self.step < self.total_steps and self.step % self.update_every == 0:
            self.prune_to(cubic_fraction(self.step / self.total_steps))
        else:
            self.masks.apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "fraction": self.fraction, "masks": self.masks.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step = int(state["step"])
        self.fraction = float(state["fraction"])
        self.masks = MaskSet(self.params, state["masks"])
        self.masks.apply()


# -- compression rate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CompressionReport:
    """Dense / kept parameter counts. ``matrix_*``: the pruned matrices' weights only;
    ``weights_*``: every weight matrix (the unpruned ones, e.g. a dense output layer, counted
    as kept: the rate the tables report); ``overall_*``: every parameter of the model
    (biases and unpruned matrices are kept)."""

    per_matrix: dict[str, tuple[int, int]] = field(default_factory=dict)
    matrix_dense: int = 0
    matrix_kept: int = 0
    overall_dense: int = 0
    overall_kept: int = 0
    weights_dense: int = 0
    weights_kept: int = 0

    @property
    def weights_rate(self) -> float:
        return bsp.compression_rate(self.weights_dense, self.weights_kept)

    @property
    def matrix_rate(self) -> float:
        return bsp.compression_rate(self.matrix_dense, self.matrix_kept)

    @property
    def overall_rate(self) -> float:
        return bsp.compression_rate(self.overall_dense, self.overall_kept)

    def summary(self) -> str:
        return (
            f"pruned matrices: {self.matrix_kept:,}/{self.matrix_dense:,} kept "
            f"({self.matrix_rate:.1f}x); all weights: {self.weights_kept:,}/"
            f"{self.weights_dense:,} ({self.weights_rate:.1f}x); overall: "
            f"{self.overall_kept:,}/{self.overall_dense:,} "
            f"({self.overall_rate:.1f}x)"
        )


def compression_report(
    model: nn.Module, masks: Mapping[str, torch.Tensor | np.ndarray] | MaskSet
) -> CompressionReport:
    """Compression of ``model`` under ``masks`` (a kept weight is a True mask entry)."""
    if isinstance(masks, MaskSet):
        masks = masks.masks
    mats = model.matrices()  # type: ignore[operator]
    per: dict[str, tuple[int, int]] = {}
    for n, m in masks.items():
        if n not in mats:
            raise ValueError(f"mask for unknown matrix {n!r}")
        per[n] = (mats[n].numel(), int(np.count_nonzero(np.asarray(torch.as_tensor(m).cpu()))))
    dense = sum(d for d, _ in per.values())
    kept = sum(k for _, k in per.values())
    total = sum(p.numel() for p in model.parameters())
    weights = sum(w.numel() for w in mats.values())
    return CompressionReport(
        per, dense, kept, total, total - (dense - kept), weights, weights - (dense - kept)
    )
