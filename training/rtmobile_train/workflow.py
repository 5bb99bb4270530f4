"""Corpus folder -> features -> dense model -> pruned model -> PER, as library functions.

The ``rtmobile`` command line (``train``, ``prune``, ``eval`` in ``rtmobile_rt.cli``) is a thin
layer over :func:`train_dense`, :func:`prune`, :func:`evaluate_checkpoint` and
:func:`evaluate_bspc`; ``reproduce`` (the Table I sweep) shares the data layer
(:func:`load_corpus`, :class:`FrameBatches`) and the model presets (:data:`MODELS`).

A corpus folder is one with a ``manifest.jsonl`` (``data.corpus``), e.g. the Festival corpus
(``data.festival_corpus``). Its fbank features are computed once per utterance and cached under
``<corpus>/fbank``; the model normalises them itself with the mean/variance of the training
frames, so an exported file is fed raw fbank. Every checkpoint records the :class:`FeatureSpec`
(fbank options and context frames), so an exported model can transcribe audio.

Checkpoints: :func:`train_dense` writes ``<out>/dense.pt`` and :func:`prune` ``<out>/admm.pt``
and ``<out>/retrain.pt``, each after every epoch; calling either again resumes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rtmobile_train.batch import Batch, collate_frames
from rtmobile_train.data.corpus import read_manifest
from rtmobile_train.data.dataset import FeatureCache
from rtmobile_train.data.phones import PHONES39
from rtmobile_train.evaluate import (
    PERResult,
    collapse,
    evaluate,
    phone_error_rate,
)
from rtmobile_train.export import load_checkpoint
from rtmobile_train.features import (
    FbankConfig,
    FeatureSpec,
    FeatureStats,
    frame_labels,
    stack_context,
)
from rtmobile_train.model import GRUPhoneModel, ModelConfig, preset
from rtmobile_train.pruning import (
    DEFAULT_TARGETS,
    MAX_COL_RATE,
    OUTPUT_MATRIX,
    ADMMConfig,
    PruneConfig,
    make_pruners,
    rate_for_overall,
)
from rtmobile_train.recipe import RECIPE
from rtmobile_train.train import (
    PipelineConfig,
    PipelineResult,
    TrainConfig,
    Trainer,
    fit_resumable,
    run_pipeline,
    seed_everything,
)

__all__ = [
    "MODELS",
    "DenseRun",
    "FrameBatches",
    "ModelChoice",
    "SplitData",
    "block_shape",
    "bsp_prunes_rows",
    "evaluate_bspc",
    "evaluate_checkpoint",
    "gru_rate",
    "load_corpus",
    "new_model",
    "prune",
    "prune_config_for_rate",
    "runtime_per",
    "torch_device",
    "train_dense",
]

log = logging.getLogger("rtmobile_train.workflow")


# -- model presets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """A model preset plus what it needs around it: fbank splicing and BSP block geometry."""

    config: ModelConfig
    context: int  # +- frames of fbank stacking: input_dim = 40 * (2 * context + 1)
    num_r: int
    num_c: int
    note: str

    def features(self, fbank: FbankConfig | None = None) -> FeatureSpec:
        return FeatureSpec(fbank or FbankConfig(), self.context, self.context)


MODELS: dict[str, ModelChoice] = {
    "paper": ModelChoice(
        preset("paper"), 5, 32, 4, "2 x GRU 960 on 40-d fbank spliced +-5 frames (9.6M params)"
    ),
    # Spliced like the paper's model: column pruning of a bare 40-d input would leave each
    # strip of the first layer 4 mel bins at 10x (measured: one-shot BSP 10x of the unspliced
    # model kept 18% frame accuracy, vs 77% dense); 11 correlated frames prune gracefully.
    # Num_r = 32: strips of 12 of the 384 gate rows, the same share of the rows as the paper's
    # 90-row strips of 2880. With 8 strips of 48 rows, BSP 10x on the Festival small corpus
    # scored 42.1% test PER against 34.5% with 32 (dense 20.4%).
    # The main reproduction target: wide enough that a 10x BSP strip still keeps 51 of 512
    # recurrent inputs (small: 13 of 128), about 6x the small model's training cost.
    # Num_r = 32: strips of 48 of the 1536 gate rows.
    "medium": ModelChoice(
        preset("medium"), 5, 32, 4, "2 x GRU 512 on 40-d fbank spliced +-5 frames (3.1M params)"
    ),
    "small": ModelChoice(
        preset("small", input_dim=440),
        5,
        32,
        4,
        "2 x GRU 128 on 40-d fbank spliced +-5 frames (323k params)",
    ),
    "tiny": ModelChoice(
        preset("tiny", input_dim=40, num_classes=len(PHONES39), labels=PHONES39),
        0,
        4,
        2,
        "2 x GRU 16 on 40-d fbank (tests only)",
    ),
}


def new_model(
    choice: ModelChoice, norm: FeatureStats, *, seed: int, device: torch.device | str = "cpu"
) -> GRUPhoneModel:
    """A freshly initialised (seeded) model of ``choice`` normalising its input with ``norm``
    (statistics of the raw fbank, tiled over the context frames)."""
    seed_everything(seed)
    model = GRUPhoneModel(choice.config)
    copies = 2 * choice.context + 1
    stats = norm.tile(copies) if copies > 1 else norm
    model.set_normalization(stats.mean, stats.var)
    return model.to(device)


def torch_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``, checked (ValueError with the reason otherwise)."""
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: only cpu and cuda are supported")
    return dev


# -- data ----------------------------------------------------------------------------------------

ContextFrames = int | tuple[int, int]  # +-frames, or (left, right)


@dataclass
class SplitData:
    """One split in memory: raw fbank [T, 40] and frame labels [T] per utterance."""

    name: str
    utt_ids: list[str]
    feats: list[np.ndarray]
    labels: list[np.ndarray]
    hours: float

    def __len__(self) -> int:
        return len(self.utt_ids)

    @property
    def frames(self) -> int:
        return int(sum(len(lab) for lab in self.labels))

    def inputs(self, i: int, context: ContextFrames) -> np.ndarray:
        """Model input of utterance ``i``: the fbank, spliced with ``context`` frames."""
        left, right = (context, context) if isinstance(context, int) else context
        f = self.feats[i]
        return stack_context(f, left, right) if left or right else f


def load_corpus(
    corpus_dir: str | os.PathLike[str],
    fbank: FbankConfig | None = None,
    *,
    splits: Sequence[str] = ("train", "dev", "test", "test_heldout"),
    progress: bool = False,
) -> dict[str, SplitData]:
    """Every split's features (through the on-disk ``FeatureCache``) and frame labels."""
    fbank = fbank or FbankConfig()
    root = Path(corpus_dir)
    cache = FeatureCache(root / "fbank", fbank)
    utts = read_manifest(root, splits)
    out = {s: SplitData(s, [], [], [], 0.0) for s in splits}
    for u in tqdm(utts, desc="features", unit="utt", disable=not progress, leave=False):
        feats = cache.get(u)
        if len(feats) == 0:
            continue  # shorter than one 25 ms window: nothing to learn or score
        d = out[u.split]
        d.utt_ids.append(u.utt_id)
        d.feats.append(feats)
        d.labels.append(frame_labels(u.segments, len(feats), fbank))
        d.hours += u.duration / 3600.0
    return out


class FrameBatches:
    """Re-iterable padded batches of a split (what ``Trainer`` and ``evaluate`` consume).

    Training order: shuffled with a generator seeded by (seed, epoch) (``Trainer`` calls
    ``set_epoch``), then utterances of similar length are batched together within groups of
    ``bucket`` batches, which cuts the padding the GRU computes over, and the batches are
    shuffled. Without ``shuffle`` the order is longest first (evaluation).
    """

    def __init__(
        self,
        split: SplitData,
        batch_size: int,
        *,
        context: ContextFrames = 0,
        shuffle: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        bucket: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(split) == 0:
            raise ValueError(f"split {split.name!r} has no utterances")
        self.split = split
        self.batch_size = batch_size
        self.context = context
        self.shuffle = shuffle
        self.seed = seed
        self.device = torch.device(device)
        self.bucket = bucket
        self._epoch = 0
        self._lengths = np.array([len(lab) for lab in split.labels])

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def _batches(self) -> list[np.ndarray]:
        n, bs = len(self.split), self.batch_size
        if not self.shuffle:
            idx = np.argsort(-self._lengths, kind="stable")
            return [idx[i : i + bs] for i in range(0, n, bs)]
        rng = np.random.default_rng([self.seed, self._epoch])
        perm = rng.permutation(n)
        out: list[np.ndarray] = []
        group = bs * self.bucket
        for g in range(0, n, group):
            chunk = perm[g : g + group]
            chunk = chunk[np.argsort(-self._lengths[chunk], kind="stable")]
            out.extend(chunk[i : i + bs] for i in range(0, len(chunk), bs))
        return [out[k] for k in rng.permutation(len(out))]

    def __iter__(self) -> Iterator[Batch]:
        for idx in self._batches():
            batch = collate_frames(
                [(self.split.inputs(int(i), self.context), self.split.labels[int(i)]) for i in idx]
            )
            yield batch if self.device.type == "cpu" else batch.to(self.device)


def _dev_eval(dev: FrameBatches) -> Any:
    def eval_fn(model: GRUPhoneModel) -> dict[str, float]:
        return {"dev_per": 100.0 * evaluate(model, dev).per}

    return eval_fn


# -- the pruning recipe --------------------------------------------------------------------------


def gru_rate(model: GRUPhoneModel, rate: float, output_rate: float | None = None) -> float:
    """The rate the GRU matrices need so that all of ``model``'s weight matrices compress
    ``rate``-fold, the output layer dense (or pruned per class at ``output_rate``)."""
    mats = model.matrices()
    out = mats[OUTPUT_MATRIX].numel()
    gru = sum(w.numel() for w in mats.values()) - out
    return rate_for_overall(rate, gru, out, out if output_rate is None else out / output_rate)


def prune_config_for_rate(
    model: GRUPhoneModel,
    method: str,
    rate: float,
    *,
    col_rate: float | None = None,
    num_r: int,
    num_c: int,
    num_banks: int = 4,
    output_rate: float | None = None,
) -> PruneConfig:
    """The config that compresses ALL of ``model``'s weight matrices ``rate``-fold: the output
    layer stays dense (or is pruned per class at ``output_rate``) and counts in the rate, so
    the GRU matrices are pruned to :func:`gru_rate`."""
    rate_gru = gru_rate(model, rate, output_rate)
    targets = DEFAULT_TARGETS if output_rate is None else (*DEFAULT_TARGETS, OUTPUT_MATRIX)
    if method == "bsp":
        col_rate = min(rate_gru, MAX_COL_RATE) if col_rate is None else min(col_rate, rate_gru)
    return PruneConfig.for_rate(
        method, rate_gru, col_rate=col_rate, num_r=num_r, num_c=num_c, num_banks=num_banks,
        targets=targets, output_rate=output_rate,
    )  # fmt: skip


def bsp_prunes_rows(
    model: GRUPhoneModel,
    rate: float,
    col_rate: float | None = None,
    output_rate: float | None = None,
) -> bool:
    """Whether BSP at ``rate`` needs its step 2 (row pruning inside each column block): only
    when the column rate (``prune_config_for_rate``'s) falls short of the GRU matrices' rate.
    Without it Num_c changes no mask, only the file's layout."""
    rate_gru = gru_rate(model, rate, output_rate)
    col = min(rate_gru, MAX_COL_RATE) if col_rate is None else min(col_rate, rate_gru)
    return col < rate_gru * (1 - 1e-9)


# -- the steps -----------------------------------------------------------------------------------


@dataclass
class DenseRun:
    checkpoint: Path
    model: GRUPhoneModel
    history: list[dict[str, float]]
    data: dict[str, SplitData]


def train_dense(
    corpus_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model: str = "small",
    cfg: TrainConfig | None = None,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> DenseRun:
    """Train the preset ``model`` on the corpus's ``train`` split (dev PER after every epoch)
    into ``<out_dir>/dense.pt``; resumes from that checkpoint when it exists."""
    if model not in MODELS:
        raise ValueError(f"unknown model preset {model!r}; choose one of {sorted(MODELS)}")
    choice, cfg = MODELS[model], cfg or TrainConfig()
    spec = choice.features()
    data = load_corpus(corpus_dir, spec.fbank, splits=("train", "dev"), progress=progress)
    norm = FeatureStats(spec.fbank.num_mel_bins)
    for f in data["train"].feats:
        norm.accumulate(f)
    net = new_model(choice, norm, seed=cfg.seed, device=device)
    ctx = spec.context
    train = FrameBatches(
        data["train"], batch_size, context=ctx, shuffle=True, seed=cfg.seed, device=device
    )
    dev = FrameBatches(data["dev"], 2 * batch_size, context=ctx, device=device)
    path = Path(out_dir) / "dense.pt"
    trainer = Trainer(net, cfg, phase="dense", features=spec)
    history = fit_resumable(trainer, train, path, eval_fn=_dev_eval(dev))
    return DenseRun(path, net, history, data)


# The default BSP strip height for models that are not a preset. Measured at 10x on the small
# model (2 x GRU 128, 384 gate rows; bench/README.md, "Block shape at 10x"): 12-row strips came
# within 0.2 PER of 3-row strips at a third of the streaming time (3-row pieces run one short
# panel at a time), while 48-row strips were 1.5x faster but lost 2.1 PER.
STRIP_ROWS = 12
MAX_STRIPS = 32  # the paper's limit for mobile execution, Num_r <= 32


def block_shape(config: ModelConfig) -> tuple[int, int]:
    """BSP (num_r, num_c) for a model: its preset's geometry; otherwise strips of about
    ``STRIP_ROWS`` gate rows (at most ``MAX_STRIPS``) and PruneConfig's column blocks (at most
    the narrowest matrix's columns)."""
    for choice in MODELS.values():
        if choice.config == config:
            return choice.num_r, choice.num_c
    gate_rows = 3 * config.hidden_dim
    num_r = max(1, min(MAX_STRIPS, round(gate_rows / STRIP_ROWS)))
    num_c = max(1, min(PruneConfig.num_c, config.input_dim, config.hidden_dim))
    return num_r, num_c


def prune(
    checkpoint: str | os.PathLike[str],
    corpus_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    method: str = "bsp",
    rate: float = 10.0,
    col_rate: float | None = None,
    num_r: int | None = None,
    num_c: int | None = None,
    num_banks: int = 4,
    output_rate: float | None = None,
    prune_method: str = RECIPE.prune_method,
    admm: TrainConfig | None = None,
    retrain: TrainConfig | None = None,
    admm_updates_per_epoch: int = RECIPE.admm_updates_per_epoch,
    schedule: ADMMConfig | None = None,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> PipelineResult:
    """Prune the dense model in ``checkpoint`` with ``method`` so that all its weight matrices
    compress ``rate``-fold (:func:`prune_config_for_rate`; the output layer stays dense unless
    ``output_rate``): gradual pruning or ADMM + hard prune (``prune_method``, settings
    ``admm``), then masked retraining (``train.run_pipeline``, dev PER after every epoch);
    :data:`RECIPE` gives the defaults. Checkpoints in ``out_dir``; resumes from them.

    ``num_r``/``num_c`` default to the model preset's block geometry (:func:`block_shape`),
    except that BSP without row pruning (:func:`bsp_prunes_rows`) uses one column block.
    """
    ck = load_checkpoint(checkpoint)
    if ck.phase != "dense":
        raise ValueError(
            f"{checkpoint} is a {ck.phase} checkpoint; pruning starts from a dense one"
        )
    if ck.features is None:
        raise ValueError(f"{checkpoint} records no feature configuration (an older checkpoint)")
    if admm_updates_per_epoch < 1:
        raise ValueError(f"admm_updates_per_epoch must be >= 1, got {admm_updates_per_epoch}")
    if prune_method not in ("gradual", "admm"):
        raise ValueError(f"prune_method must be 'gradual' or 'admm', got {prune_method!r}")
    out = Path(out_dir)
    own_dense = out / "dense.pt"
    if own_dense.exists() and not own_dense.samefile(checkpoint):
        raise ValueError(f"{out} holds another dense.pt than {checkpoint}: use another folder")
    net = ck.model.to(device)
    default_r, default_c = block_shape(net.cfg)
    if method == "bsp" and not bsp_prunes_rows(net, rate, col_rate, output_rate):
        # Column pruning alone gives the same mask for any Num_c (measured: bit-identical
        # training at 10x with Num_c 1 and 4), and one column block per strip streams faster
        # (4.5 vs 6.7 us/frame for the small model at 10x): bench/README.md, block shape.
        default_c = 1
    prune_cfg = prune_config_for_rate(
        net, method, rate, col_rate=col_rate, num_r=num_r or default_r,
        num_c=num_c or default_c, num_banks=num_banks, output_rate=output_rate,
    )  # fmt: skip
    make_pruners(net, prune_cfg)  # a bad block geometry fails before the features are loaded
    admm = admm or TrainConfig(epochs=RECIPE.prune_epochs, lr=RECIPE.prune_lr)
    retrain = retrain or TrainConfig(**RECIPE.retrain_kwargs())
    spec, ctx = ck.features, ck.features.context
    data = load_corpus(corpus_dir, spec.fbank, splits=("train", "dev"), progress=progress)
    train = FrameBatches(
        data["train"], batch_size, context=ctx, shuffle=True, seed=admm.seed, device=device
    )
    dev = FrameBatches(data["dev"], 2 * batch_size, context=ctx, device=device)
    every = max(1, len(train) // admm_updates_per_epoch) if prune_method == "admm" else 0
    pcfg = PipelineConfig(
        # The dense phase is done: zero epochs (its checkpoint is resumed only if out_dir is
        # the folder it was trained in).
        dense=TrainConfig(epochs=0, seed=admm.seed, progress=False),
        admm=replace(admm, admm_update_every=every),
        retrain=retrain,
        prune=prune_cfg,
        admm_schedule=schedule or ADMMConfig(**RECIPE.admm_kwargs()),
        method=prune_method,  # type: ignore[arg-type]
    )
    return run_pipeline(net, train, pcfg, out, eval_fn=_dev_eval(dev), features=spec)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    corpus_dir: str | os.PathLike[str],
    split: str = "test",
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> PERResult:
    """PER (and frame accuracy) of a training checkpoint's torch model on ``split``."""
    ck = load_checkpoint(checkpoint)
    if ck.features is None:
        raise ValueError(f"{checkpoint} records no feature configuration (an older checkpoint)")
    data = load_corpus(corpus_dir, ck.features.fbank, splits=(split,), progress=progress)[split]
    batches = FrameBatches(data, batch_size, context=ck.features.context, device=device)
    bar = tqdm(batches, desc=f"PER {split}", unit="batch", disable=not progress, leave=False)
    return evaluate(ck.model.to(device), bar)


def runtime_per(
    session: Any, split: SplitData, context: ContextFrames, *, progress: bool = False
) -> PERResult:
    """PER and frame accuracy of ``split`` through an ``rtmobile_rt.Session`` (the C++ runtime),
    scored as :func:`evaluate.evaluate` scores the torch model, with the decoder's
    ``min_frames`` the file records (METADATA ``decoder``)."""
    from rtmobile_rt.transcribe import decoder_min_frames

    min_frames = decoder_min_frames(session)
    refs, hyps = [], []
    frames = correct = 0
    for i in tqdm(range(len(split)), desc=f"PER {split.name}", unit="utt", disable=not progress,
                  leave=False):  # fmt: skip
        best = session.run(split.inputs(i, context)).argmax(-1)
        hyps.append(collapse(best, min_frames))
        refs.append(collapse(split.labels[i]))
        frames += len(best)
        correct += int((best == split.labels[i]).sum())
    return phone_error_rate(refs, hyps) + PERResult(0, 0, 0, frames, correct)


def evaluate_bspc(
    model: str | os.PathLike[str],
    corpus_dir: str | os.PathLike[str],
    split: str = "test",
    *,
    threads: int | None = 1,
    progress: bool = False,
) -> PERResult:
    """PER (and frame accuracy) of an exported model run by the C++ runtime on ``split``; the
    features are made as the file's METADATA ``features`` says. ``threads=None``: the model's
    tuning file, else the runtime's own choice."""
    from rtmobile_rt import Session
    from rtmobile_rt.transcribe import FeatureSpec as RuntimeFeatures

    session = Session(model, threads=threads)
    spec = RuntimeFeatures.from_session(session)
    data = load_corpus(corpus_dir, spec.fbank, splits=(split,), progress=progress)[split]
    return runtime_per(session, data, spec.context, progress=progress)
