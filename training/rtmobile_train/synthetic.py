"""A tiny synthetic phone task for tests and smoke runs (no audio, no corpus).

Each utterance is a run of "phone" segments of 2-6 frames; a frame's features are its class's
fixed mean vector plus Gaussian noise, so a GRU can learn it in a few hundred steps and the
labels have exact boundaries like the real corpora. Deterministic given the seed; ``part``
draws other utterances of the same task (training vs validation). Sharded by rank for DDP
(every rank gets the same number of batches, so no rank waits on another).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from rtmobile_train.batch import Batch, collate_frames

__all__ = ["SyntheticPhones"]


class SyntheticPhones:
    """Iterable of :class:`~rtmobile_train.batch.Batch`; ``set_epoch`` reshuffles the order."""

    def __init__(
        self,
        *,
        num_utts: int = 32,
        batch_size: int = 8,
        input_dim: int = 8,
        num_classes: int = 5,
        min_frames: int = 12,
        max_frames: int = 30,
        noise: float = 0.5,
        seed: int = 0,
        part: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if num_utts < 1 or batch_size < 1 or input_dim < 1 or num_classes < 2:
            raise ValueError(
                "SyntheticPhones needs num_utts >= 1, batch_size >= 1, input_dim >= 1, "
                "num_classes >= 2"
            )
        if not 2 <= min_frames <= max_frames:
            raise ValueError(f"need 2 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, world_size={world_size})")
        # The class means depend on the seed only; the utterances also on ``part``, so a
        # validation part shares the task but none of the training utterances.
        means = np.random.default_rng(seed).normal(0.0, 1.0, (num_classes, input_dim))
        means = means.astype(np.float32)
        rng = np.random.default_rng((seed, part))
        self.utts: list[tuple[np.ndarray, np.ndarray]] = []
        for _ in range(num_utts):
            n = int(rng.integers(min_frames, max_frames + 1))
            labels = np.empty(n, dtype=np.int64)
            t = 0
            while t < n:
                seg = int(rng.integers(2, 7))
                labels[t : t + seg] = rng.integers(num_classes)
                t += seg
            feats = means[labels] + noise * rng.standard_normal((n, input_dim)).astype(np.float32)
            self.utts.append((feats.astype(np.float32), labels))
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.input_dim = input_dim
        self.num_classes = num_classes
        # Every rank gets the same number of whole batches (the tail is dropped).
        self.num_batches = len(self.utts) // (batch_size * world_size)
        if self.num_batches == 0:
            raise ValueError(
                f"{num_utts} utterances make no batch of {batch_size} on each of {world_size} "
                "rank(s)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        order = np.arange(len(self.utts))
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(order)
        per_rank = self.num_batches * self.batch_size
        mine = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        for b in range(self.num_batches):
            yield collate_frames(
                [self.utts[i] for i in mine[b * self.batch_size : (b + 1) * self.batch_size]]
            )
