"""Torch dataset over labelled utterances: cached fbank features, frame labels, CTC targets.

Filterbanks are computed once per utterance and cached as .npz files keyed by the audio file's
identity and the feature config, so training epochs (and DataLoader workers) only read arrays.
Normalisation and context stacking are applied on the fly: they are cheap and depend on
statistics that are only known after a pass over the training set.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..features import (
    FbankConfig,
    FeatureError,
    FeatureStats,
    compute_fbank,
    frame_labels,
    phone_sequence,
    stack_context,
)
from .corpus import Utterance, load_audio
from .phones import PHONE39_INDEX

__all__ = [
    "IGNORE_INDEX",
    "FeatureCache",
    "PhoneDataset",
    "UtteranceBatch",
    "UtteranceExample",
    "collate_utterances",
]

IGNORE_INDEX = -100  # torch.nn.CrossEntropyLoss's default ignore_index: padded frames
_CACHE_VERSION = 1


class FeatureCache:
    """Fbank features on disk, one .npz per (utterance audio, feature config)."""

    def __init__(self, cache_dir: str | os.PathLike[str], config: FbankConfig) -> None:
        self.dir = Path(cache_dir)
        self.config = config
        self._cfg = json.dumps(config.to_dict(), sort_keys=True)

    def path_for(self, utt: Utterance) -> Path:
        try:
            st = utt.audio_path.stat()
        except OSError as e:
            raise FeatureError(f"{utt.utt_id}: cannot stat audio {utt.audio_path} ({e})") from e
        ident = (
            f"{_CACHE_VERSION}|{self._cfg}|{utt.audio_path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        )
        key = hashlib.sha1(ident.encode()).hexdigest()[:16]
        return self.dir / f"{utt.utt_id}.{key}.npz"

    def get(self, utt: Utterance) -> np.ndarray:
        """Features [T, num_mel_bins] float32, computed and stored on first use."""
        path = self.path_for(utt)
        if path.is_file():
            try:
                with np.load(path) as z:
                    return z["feats"]
            except (OSError, KeyError, ValueError):
                pass  # a damaged cache file is recomputed below
        feats = compute_fbank(load_audio(utt), self.config, sample_rate=utt.sample_rate)
        self.dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, feats=feats)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)  # atomic: concurrent DataLoader workers never see half a file
        return feats


@dataclass
class UtteranceExample:
    """One item: input features [T, D], per-frame labels [T], phone sequence [L]."""

    utt_id: str
    feats: torch.Tensor
    frame_labels: torch.Tensor
    phones: torch.Tensor


_BATCH_KEYS = ("feats", "labels", "lengths", "phones", "phone_lengths", "utt_ids")


@dataclass(eq=False)
class UtteranceBatch(Mapping[str, Any]):
    """Padded batch. Frames past ``lengths`` are zero with label IGNORE_INDEX; phones past
    ``phone_lengths`` are 0 (torch's ctc_loss reads only the first ``phone_lengths``).

    It is also a read-only mapping with the keys feats/labels/lengths (+ phones, phone_lengths,
    utt_ids), which is what ``rtmobile_train.batch.as_batch`` accepts: the trainer can consume
    these batches without knowing this class.
    """

    utt_ids: list[str]
    feats: torch.Tensor  # [B, T, D] float32
    lengths: torch.Tensor  # [B] int64, frames per utterance
    labels: torch.Tensor  # [B, T] int64, frame labels
    phones: torch.Tensor  # [B, L] int64, CTC targets
    phone_lengths: torch.Tensor  # [B] int64

    def __getitem__(self, key: str) -> Any:
        if key not in _BATCH_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_BATCH_KEYS)

    def __len__(self) -> int:
        return len(_BATCH_KEYS)

    def to(self, device: torch.device | str) -> UtteranceBatch:
        return UtteranceBatch(
            self.utt_ids,
            self.feats.to(device),
            self.lengths.to(device),
            self.labels.to(device),
            self.phones.to(device),
            self.phone_lengths.to(device),
        )


class PhoneDataset(Dataset[UtteranceExample]):
    """Utterances as model inputs: fbank -> (optional) CMVN with ``stats`` -> context stacking.

    ``stats`` are per fbank dimension (num_mel_bins), gathered with ``compute_stats`` on the
    training set; stacking ±``context`` frames then gives num_mel_bins*(2*context+1) inputs.
    A model that normalises its own input (``GRUPhoneModel.set_normalization``) wants
    ``stats=None`` here and ``compute_stats()``'s mean/var handed to the model instead.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        config: FbankConfig | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        stats: FeatureStats | None = None,
        context: int | tuple[int, int] = 0,
        phone_index: Mapping[str, int] = PHONE39_INDEX,
    ) -> None:
        self.utterances = list(utterances)
        self.config = config or FbankConfig()
        self.cache = FeatureCache(cache_dir, self.config) if cache_dir is not None else None
        left, right = (context, context) if isinstance(context, int) else context
        if left < 0 or right < 0:
            raise FeatureError(f"context must be non-negative, got {context}")
        self.context = (left, right)
        if stats is not None and stats.dim != self.config.num_mel_bins:
            raise FeatureError(
                f"stats have dim {stats.dim} but the features have {self.config.num_mel_bins} "
                "mel bins (statistics are per fbank dimension, before context stacking)"
            )
        self.stats = stats
        self.phone_index = phone_index
        for u in self.utterances:
            if u.sample_rate != self.config.sample_rate:
                raise FeatureError(
                    f"{u.utt_id}: audio is {u.sample_rate} Hz, features expect "
                    f"{self.config.sample_rate} Hz"
                )

    @property
    def feature_dim(self) -> int:
        return self.config.num_mel_bins * (self.context[0] + 1 + self.context[1])

    def __len__(self) -> int:
        return len(self.utterances)

    def fbank(self, i: int) -> np.ndarray:
        """Raw (unnormalised, unstacked) features of utterance ``i``, from the cache if any."""
        utt = self.utterances[i]
        if self.cache is not None:
            return self.cache.get(utt)
        return compute_fbank(load_audio(utt), self.config, sample_rate=utt.sample_rate)

    def __getitem__(self, i: int) -> UtteranceExample:
        utt = self.utterances[i]
        feats = self.fbank(i)
        labels = frame_labels(utt.segments, len(feats), self.config, self.phone_index)
        if self.stats is not None:
            feats = self.stats.normalize(feats)
        if self.context != (0, 0):
            feats = stack_context(feats, *self.context)
        return UtteranceExample(
            utt_id=utt.utt_id,
            feats=torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)),
            frame_labels=torch.from_numpy(labels),
            phones=torch.from_numpy(phone_sequence(utt.segments, self.phone_index)),
        )

    def compute_stats(self, *, progress: bool = False) -> FeatureStats:
        """Mean/variance of the raw fbank over every frame of this dataset (fills the cache)."""
        from tqdm import tqdm

        stats = FeatureStats(self.config.num_mel_bins)
        for i in tqdm(range(len(self)), desc="feature stats", disable=not progress):
            stats.accumulate(self.fbank(i))
        return stats


def collate_utterances(items: Sequence[UtteranceExample]) -> UtteranceBatch:
    """Pad variable-length examples into a batch (for DataLoader's ``collate_fn``)."""
    if not items:
        raise ValueError("collate_utterances: empty batch")
    dims = {it.feats.shape[1] for it in items}
    if len(dims) != 1:
        raise ValueError(f"collate_utterances: mixed feature dims {sorted(dims)}")
    b, d = len(items), dims.pop()
    t = max(it.feats.shape[0] for it in items)
    lmax = max(it.phones.shape[0] for it in items)
    feats = torch.zeros(b, t, d, dtype=torch.float32)
    labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.int64)
    phones = torch.zeros(b, lmax, dtype=torch.int64)
    for k, it in enumerate(items):
        n, m = it.feats.shape[0], it.phones.shape[0]
        feats[k, :n] = it.feats
        labels[k, :n] = it.frame_labels
        phones[k, :m] = it.phones
    return UtteranceBatch(
        utt_ids=[it.utt_id for it in items],
        feats=feats,
        lengths=torch.tensor([it.feats.shape[0] for it in items], dtype=torch.int64),
        labels=labels,
        phones=phones,
        phone_lengths=torch.tensor([it.phones.shape[0] for it in items], dtype=torch.int64),
    )
