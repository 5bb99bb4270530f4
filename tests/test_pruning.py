"""Pruners (BSP and the baselines), the ADMM driver, hard pruning, masks, compression rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtmobile_train import bsp
from rtmobile_train.model import build_model
from rtmobile_train.pruning import (
    ADMM,
    ADMMConfig,
    BankBalancedPruner,
    BSPPruner,
    ClassBalancedPruner,
    MagnitudePruner,
    MaskSet,
    PruneConfig,
    Pruner,
    RowPruner,
    compression_report,
    make_pruners,
    pruner_from_dict,
)

torch.set_num_threads(1)

SHAPES = [(24, 16), (48, 40), (39, 32), (7, 12)]


def _w(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- baselines: exact structure and sparsity -------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.97])
def test_magnitude_mask_keeps_exactly_the_largest(shape, sparsity) -> None:
    w = _w(shape)
    p = MagnitudePruner(sparsity)
    m = p.project(w)
    assert m.dtype == np.bool_ and m.shape == shape
    assert m.sum() == bsp.keep_count(w.size, sparsity)
    if 0 < m.sum() < m.size:
        assert np.abs(w[m]).min() >= np.abs(w[~m]).max()
    p.check(m)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.8])
def test_row_mask_keeps_whole_rows_of_largest_norm(shape, sparsity) -> None:
    w = _w(shape, 1)
    p = RowPruner(sparsity)
    m = p.project(w)
    kept = m.all(axis=1)
    assert np.array_equal(kept, m.any(axis=1)), "rows are kept or pruned whole"
    assert kept.sum() == bsp.keep_count(shape[0], sparsity)
    norms = np.linalg.norm(w, axis=1)
    assert norms[kept].min() >= norms[~kept].max()
    p.check(m)


@pytest.mark.parametrize(("shape", "banks"), [((24, 16), 4), ((48, 40), 8), ((39, 32), 2)])
@pytest.mark.parametrize("sparsity", [0.5, 0.75])
def test_bbs_mask_keeps_same_count_per_bank(shape, banks, sparsity) -> None:
    w = _w(shape, 2)
    p = BankBalancedPruner(sparsity, banks)
    m = p.project(w)
    bank = shape[1] // banks
    want = bsp.keep_count(bank, sparsity)
    mb, wb = m.reshape(shape[0], banks, bank), np.abs(w).reshape(shape[0], banks, bank)
    assert np.all(mb.sum(axis=2) == want)
    for r in range(shape[0]):
        for b in range(banks):
            if 0 < want < bank:
                assert wb[r, b][mb[r, b]].min() >= wb[r, b][~mb[r, b]].max()
    p.check(m)


def test_baseline_checks_reject_wrong_structure() -> None:
    w = _w((24, 16), 3)
    m = MagnitudePruner(0.5).project(w)
    m2 = m.copy()
    m2[np.argwhere(~m2)[0][0], np.argwhere(~m2)[0][1]] = True
    with pytest.raises(ValueError, match="keeps 193 weights, expected 192"):
        MagnitudePruner(0.5).check(m2)
    r = RowPruner(0.5).project(w)
    r[np.flatnonzero(r.all(axis=1))[0], 0] = False
    with pytest.raises(ValueError, match="partly kept"):
        RowPruner(0.5).check(r)
    b = BankBalancedPruner(0.5, 4).project(w)
    b[0, :4] = True
    with pytest.raises(ValueError, match="row 0 bank 0 keeps"):
        BankBalancedPruner(0.5, 4).check(b)


# -- BSP -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("num_r", "num_c", "cs", "rs"),
    [(4, 2, 0.5, 0.25), (2, 4, 0.9, 0.5), (1, 1, 0.75, 0.0), (7, 3, 0.6, 0.6)],
)
def test_bsp_pruner_is_algorithm_1(shape, num_r, num_c, cs, rs) -> None:
    w = _w(shape, 4)
    p = BSPPruner(num_r, num_c, cs, rs)
    m = p.project(w)
    assert np.array_equal(m, bsp.bsp_mask(w, num_r, num_c, cs, rs))
    assert bsp.is_bsp_structured(m, num_r, num_c)
    p.check(m)
    assert p.blocks(shape) == (num_r, num_c)


@pytest.mark.parametrize(("num_r", "num_c", "cs", "rs"), [(4, 2, 0.5, 0.25), (8, 4, 0.9, 0.5)])
def test_bsp_projection_is_identity_on_the_constraint_set(num_r, num_c, cs, rs) -> None:
    rng = np.random.default_rng(5)
    w = bsp.random_bsp_matrix(rng, 48, 40, num_r, num_c, cs, rs)
    p = BSPPruner(num_r, num_c, cs, rs)
    m = p.project(w)
    assert np.array_equal(np.where(m, w, 0), w), "Pi(W) = W for W already in the set"
    p.check(m)
    # ... and the ADMM Z-step on such a W with U = 0 returns W itself.
    param = torch.nn.Parameter(torch.from_numpy(w.copy()))
    admm = ADMM({"w": param}, {"w": p})
    assert torch.equal(admm.Z["w"], param.detach())
    assert admm.update()["w"] == 0.0


def test_bsp_check_rejects_a_non_rectangular_block_and_too_many_columns() -> None:
    p = BSPPruner(2, 2, 0.5, 0.0)
    m = p.project(_w((8, 8), 6))
    bad = m.copy()
    r, c = np.argwhere(m[:4, :4])[0]
    bad[r, c] = False
    with pytest.raises(ValueError, match="product set"):
        p.check(bad)
    with pytest.raises(ValueError, match="strip 0 keeps 8 columns, at most 4"):
        p.check(np.ones((8, 8), dtype=bool))


def test_bsp_from_rate_and_geometry_errors() -> None:
    p = BSPPruner.from_rate(20.0, 8, 4, col_rate=10.0)
    assert p.col_sparsity == pytest.approx(0.9) and p.row_sparsity == 0.0
    assert p.target_rate == 20.0, "rows are pruned to the rate, not by a nominal row rate"
    column_only = BSPPruner.from_rate(10.0, 8, 4)
    assert column_only.target_rate is None and column_only.row_sparsity == 0.0
    with pytest.raises(ValueError, match="do not fit a 5x16 matrix"):
        p.project(np.ones((5, 16), dtype=np.float32))


@pytest.mark.parametrize(("shape", "num_r"), [((384, 440), 32), ((384, 128), 32), ((39, 128), 32)])
@pytest.mark.parametrize("rate", [19.0, 43.0, 103.0])
def test_bsp_target_rate_reaches_the_rate_where_the_nominal_split_falls_short(
    shape, num_r, rate
) -> None:
    w = _w(shape, 11)
    col_s = 1.0 - 1.0 / 16.0
    p = BSPPruner(num_r, 4, col_s, 0.0, target_rate=rate)
    m = p.project(w)
    p.check(m)
    assert bsp.is_bsp_structured(m, num_r, 4)
    kept = int(m.sum())
    # Closest keep count: one more or one fewer row per column block cannot do better.
    rs = p.row_sparsity_of(w)
    k = bsp.keep_count(shape[0], rs)
    assert np.array_equal(m, bsp.bsp_mask(w, num_r, 4, col_s, rs))
    for other in (k - 1, k + 1):
        if 1 <= other <= shape[0]:
            alt = int(bsp.bsp_mask(w, num_r, 4, col_s, 1.0 - other / shape[0]).sum())
            assert abs(alt - w.size / rate) >= abs(kept - w.size / rate)
    nominal = bsp.bsp_mask(w, num_r, 4, col_s, 1.0 - 16.0 / rate).sum()
    assert abs(w.size / kept - rate) <= abs(w.size / nominal - rate)
    if shape[0] == 384:  # enough rows for a fine keep count
        assert w.size / kept == pytest.approx(rate, rel=0.05)


def test_bsp_target_rate_config_round_trip_and_errors() -> None:
    cfg = PruneConfig.for_rate("bsp", 43.0, num_r=4, num_c=2)
    assert cfg.target_rate == 43.0 and cfg.col_sparsity == pytest.approx(1 - 1 / 16)
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg
    fixed = PruneConfig(method="bsp", num_r=4, num_c=2, col_sparsity=0.5, row_sparsity=0.25)
    assert "target_rate" not in fixed.to_dict(), "fixed splits keep their old dict (fingerprints)"
    assert "target_rate" not in BSPPruner(4, 2, 0.5, 0.25).to_dict()
    p = cfg.pruner()
    assert pruner_from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="not both"):
        BSPPruner(4, 2, 0.5, 0.25, target_rate=8.0)
    with pytest.raises(ValueError, match="below the column rate"):
        BSPPruner(4, 2, 0.9, 0.0, target_rate=5.0)
    with pytest.raises(ValueError, match="finite"):
        BSPPruner(4, 2, 0.5, 0.0, target_rate=float("inf"))
    with pytest.raises(ValueError, match="only BSP takes a target_rate"):
        PruneConfig(method="magnitude", target_rate=8.0)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: MagnitudePruner(1.0), r"sparsity must be a number in \[0, 1\)"),
        (lambda: RowPruner(-0.1), "sparsity"),
        (lambda: BankBalancedPruner(0.5, 0), "num_banks"),
        (lambda: BSPPruner(0, 4, 0.5, 0.5), "num_r"),
        (lambda: BSPPruner(4, 4, 0.5, 1.5), "row_sparsity"),
        (lambda: PruneConfig(method="lottery"), "unknown pruning method"),  # type: ignore[arg-type]
        (lambda: PruneConfig(targets=()), "targets is empty"),
        (lambda: PruneConfig(method="bsp", col_sparsity=2.0), "col_sparsity"),
        (lambda: ADMMConfig(rho=0.0), "rho must be"),
        (lambda: ADMMConfig(rho=1.0, rho_max=0.5), "rho_max"),
        (lambda: ADMMConfig(rho_factor=0.5), "rho_factor"),
        (lambda: pruner_from_dict({"kind": "nope"}), "unknown pruner kind"),
    ],
)
def test_bad_pruning_configs_fail_clearly(factory, match) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_make_pruners_targets_and_shape_checks() -> None:
    model = build_model("tiny")  # l*: 48x8 / 48x16, out.w: 5x16
    ps = make_pruners(model, PruneConfig(num_r=4, num_c=2))
    assert list(ps) == ["l0.w_ih", "l0.w_hh", "l1.w_ih", "l1.w_hh"], "output layer dense"
    with_out = make_pruners(model, PruneConfig(num_r=4, num_c=2, targets=("l*.w_*", "out.w")))
    assert list(with_out) == [*ps, "out.w"]
    # the output layer is pruned per class, never by the method's own pruner
    assert with_out["out.w"] == ClassBalancedPruner(0.9) and with_out["l0.w_ih"] == ps["l0.w_ih"]
    with pytest.raises(ValueError, match=r"l0\.w_ih: BSP blocks \(num_r=64"):
        make_pruners(model, PruneConfig(num_r=64, num_c=2))
    with pytest.raises(ValueError, match=r"l0\.w_ih: BBS needs equal banks"):
        make_pruners(model, PruneConfig(method="bbs", num_banks=3))
    with pytest.raises(ValueError, match="matches no matrix"):
        make_pruners(model, PruneConfig(targets=("l9.w_ih",)))


@pytest.mark.parametrize(
    "pruner",
    [
        BSPPruner(4, 2, 0.5, 0.25),
        BSPPruner(4, 2, 0.5, 0.0, target_rate=6.0),
        MagnitudePruner(0.8),
        RowPruner(0.5),
        BankBalancedPruner(0.5, 4),
    ],
)
def test_pruner_dict_round_trip(pruner: Pruner) -> None:
    assert pruner_from_dict(pruner.to_dict()) == pruner


# -- ADMM ----------------------------------------------------------------------------------------


def test_penalty_gradient_and_zu_updates_follow_the_paper() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(12, 8))
    p = BSPPruner(3, 2, 0.5, 0.25)
    admm = ADMM({"w": w}, {"w": p}, ADMMConfig(rho=0.3, rho_factor=2.0, rho_max=1.0))
    # Z^0 = Pi(W^0), U^0 = 0
    m0 = torch.from_numpy(p.project(w.detach()))
    assert torch.equal(admm.Z["w"], torch.where(m0, w.detach(), 0.0))
    assert torch.count_nonzero(admm.U["w"]) == 0
    with torch.no_grad():
        w.add_(torch.randn_like(w) * 0.1)
    admm.U["w"] = torch.randn(12, 8) * 0.05
    admm.penalty().backward()
    torch.testing.assert_close(w.grad, 0.3 * (w.detach() - admm.Z["w"] + admm.U["w"]))
    u_old = admm.U["w"].clone()
    res = admm.update()
    v = w.detach() + u_old
    assert torch.equal(admm.Z["w"], torch.where(torch.from_numpy(p.project(v)), v, 0.0))
    # U-step, then U rescaled by old rho / new rho (0.3 -> 0.6): the dual y = rho U is kept.
    torch.testing.assert_close(admm.U["w"], (u_old + w.detach() - admm.Z["w"]) * 0.5)
    assert res["w"] == pytest.approx(float(torch.linalg.vector_norm(w.detach() - admm.Z["w"])))
    assert admm.rho["w"] == pytest.approx(0.6)
    admm.update()
    assert admm.rho["w"] == pytest.approx(1.0), "rho is capped at rho_max"


@pytest.mark.parametrize(
    "pruner",
    [
        BSPPruner(4, 2, 0.75, 0.5),
        MagnitudePruner(0.9),
        RowPruner(0.75),
        BankBalancedPruner(0.75, 4),
    ],
    ids=["bsp", "magnitude", "row", "bbs"],
)
def test_admm_drives_w_onto_the_constraint_set(pruner: Pruner) -> None:
    """A tiny problem: f(W) = ||W - A||^2 / 2 with dense A. ADMM's growing rho pulls W onto
    the constraint set: ||W - Z|| and the distance ||W - Pi(W)|| shrink to ~0, so the hard
    prune then barely moves W. (With small rho the residual first grows while U builds up.)"""
    torch.manual_seed(1)
    a = torch.randn(24, 16)
    w = torch.nn.Parameter(a.clone())

    def distance_to_set() -> float:
        v = w.detach()
        return float(
            torch.linalg.vector_norm(v - torch.where(torch.from_numpy(pruner.project(v)), v, 0))
        )

    d0 = distance_to_set()
    admm = ADMM({"w": w}, {"w": pruner}, ADMMConfig(rho=0.05, rho_factor=2.0, rho_max=10.0))
    opt = torch.optim.SGD([w], lr=0.05)
    residuals = []
    for _ in range(12):
        for _ in range(40):  # W-step
            opt.zero_grad()
            (0.5 * (w - a).pow(2).sum() + admm.penalty()).backward()
            opt.step()
        residuals.append(admm.update()["w"])  # Z-step, U-step
    assert residuals[-1] < 1e-3 * residuals[0], residuals
    assert all(b < a_ for a_, b in zip(residuals[-6:], residuals[-5:], strict=False)), residuals
    assert distance_to_set() < 1e-3 * d0
    before = w.detach().clone()
    masks = admm.hard_prune()
    masks.check({"w": pruner})  # exact structure, and W is zero outside the mask
    moved = float(torch.linalg.vector_norm(w.detach() - before))
    assert moved < 0.05 * float(torch.linalg.vector_norm(before))
    # The support chosen from W and the support of the last Z agree at convergence.
    assert torch.equal(masks.masks["w"], admm.Z["w"] != 0) or pruner.kind == "bbs"


@pytest.mark.parametrize(
    "pruner", [BSPPruner(4, 2, 0.75, 0.5), MagnitudePruner(0.9)], ids=["bsp", "magnitude"]
)
def test_proximal_admm_with_adam_reaches_the_constraint_set(pruner: Pruner) -> None:
    """The proximal W-step (Adam on f, then the prox of the quadratic) converges with Adam,
    whose steps are about lr in size whatever the penalty's gradient."""
    torch.manual_seed(1)
    a = torch.randn(24, 16)
    w = torch.nn.Parameter(a.clone())
    cfg = ADMMConfig(rho=0.05, rho_factor=2.0, rho_max=10.0, w_step="proximal")
    admm = ADMM({"w": w}, {"w": pruner}, cfg)
    opt = torch.optim.Adam([w], lr=1e-3)
    residuals = []
    for _ in range(12):
        for _ in range(40):
            opt.zero_grad()
            (0.5 * (w - a).pow(2).sum()).backward()
            opt.step()
            admm.proximal_step()
        residuals.append(admm.update()["w"])
    assert residuals[-1] < 1e-2 * residuals[0], residuals
    before = w.detach().clone()
    admm.hard_prune().check({"w": pruner})
    assert float(torch.linalg.vector_norm(w.detach() - before)) < 0.05 * float(
        torch.linalg.vector_norm(before)
    )


def test_proximal_step_is_the_exact_prox() -> None:
    w = torch.nn.Parameter(torch.randn(6, 6))
    cfg = ADMMConfig(rho=0.5, tau=2.0, w_step="proximal")
    admm = ADMM({"w": w}, {"w": MagnitudePruner(0.5)}, cfg)
    admm.U["w"] = torch.randn(6, 6)
    v = (admm.Z["w"] - admm.U["w"]).clone()
    w0 = w.detach().clone()
    admm.proximal_step()
    # argmin_x ||x - w0||^2 / (2 tau) + rho/2 ||x - v||^2 = (w0 + tau rho v) / (1 + tau rho)
    torch.testing.assert_close(w.detach(), (w0 + 1.0 * v) / 2.0)
    with pytest.raises(ValueError, match="w_step"):
        ADMMConfig(w_step="newton")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau"):
        ADMMConfig(tau=0.0)


def test_admm_state_round_trip_and_errors() -> None:
    w = torch.nn.Parameter(torch.randn(8, 8))
    p = {"w": MagnitudePruner(0.5)}
    a = ADMM({"w": w}, p)
    a.update()
    b = ADMM({"w": w}, p)
    b.load_state_dict(a.state_dict())
    assert b.num_updates == 1 and b.rho == a.rho and torch.equal(b.Z["w"], a.Z["w"])
    with pytest.raises(ValueError, match="unknown matrices"):
        ADMM({"w": w}, {"v": MagnitudePruner(0.5)})
    with pytest.raises(ValueError, match="at least one"):
        ADMM({"w": w}, {})
    with pytest.raises(ValueError, match="source must be"):
        a.hard_prune("u")  # type: ignore[arg-type]


# -- masked retraining and compression --------------------------------------------------------


def test_mask_set_keeps_zeros_through_adam_with_weight_decay() -> None:
    torch.manual_seed(2)
    w = torch.nn.Parameter(torch.randn(16, 12))
    mask = torch.from_numpy(BSPPruner(4, 3, 0.5, 0.5).project(w.detach()))
    ms = MaskSet({"w": w}, {"w": mask})
    ms.apply()
    opt = torch.optim.Adam([w], lr=0.1, weight_decay=0.1)
    target = torch.randn(16, 12)
    for _ in range(20):
        opt.zero_grad()
        (w - target).pow(2).sum().backward()
        ms.mask_grads()
        assert torch.count_nonzero(w.grad[~mask]) == 0
        opt.step()
        ms.apply()
        assert torch.count_nonzero(w.detach()[~mask]) == 0
    ms.check({"w": BSPPruner(4, 3, 0.5, 0.5)})
    with pytest.raises(ValueError, match="shape"):
        MaskSet({"w": w}, {"w": np.ones((3, 3), dtype=bool)})
    with torch.no_grad():
        w[~mask] = 1.0
    with pytest.raises(ValueError, match="nonzero weights outside the mask"):
        ms.check({"w": BSPPruner(4, 3, 0.5, 0.5)})


def test_compression_report_counts() -> None:
    model = build_model("tiny")
    mats = model.matrices()
    masks = {n: np.zeros(tuple(mats[n].shape), dtype=bool) for n in ("l0.w_ih", "out.w")}
    masks["l0.w_ih"][:12] = True  # 12 of 48 rows of 8 -> 96 of 384 kept
    masks["out.w"][0] = True  # 16 of 80 kept
    r = compression_report(model, masks)
    assert (r.matrix_dense, r.matrix_kept) == (384 + 80, 96 + 16)
    assert r.matrix_rate == pytest.approx(464 / 112)
    assert r.overall_dense == model.num_params() == 2965
    assert r.overall_kept == 2965 - (464 - 112)
    assert r.overall_rate == pytest.approx(2965 / r.overall_kept)
    assert "pruned matrices: 112/464 kept" in r.summary()
