"""Greedy decoding and phone error rate (PER).

Decoding (frame-wise model, no blank): argmax per frame, then collapse runs of the same label
into one phone.

Scoring follows Kaldi's TIMIT recipe (egs/timit/s5): hypotheses and references are on the 39
folded phones and **sil is kept and scored** like any phone ("in TIMIT the silence appears also
as a word in the dictionary and is scored", run.sh). PER = total edit distance (substitutions
+ deletions + insertions, Levenshtein via ``editdistance``) over all utterances / total
reference length; a corpus-level ratio, not a mean of per-utterance ratios.

The reference is the utterance's frame labels collapsed the same way. This merges adjacent
identical reference phones (after 61->39 folding e.g. ``pau`` + ``pcl`` -> ``sil sil``), which
Kaldi's reference keeps; we merge them because no frame-wise decoder can output two adjacent
identical phones, so keeping them would count unavoidable deletions. The data layer already
merges adjacent silences (``corpus.merge_silences``), so this mostly changes nothing.

``ignore`` drops label indices from both sides before scoring (e.g. the silence index, to
compare with papers that exclude it); nothing is re-collapsed afterwards.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import editdistance
import torch
from torch import nn

from rtmobile_train.batch import as_batch

__all__ = [
    "PERResult",
    "collapse",
    "evaluate",
    "greedy_decode",
    "phone_error_rate",
]


def collapse(seq: Iterable[int]) -> list[int]:
    """Merge runs of the same label: [3, 3, 1, 1, 3] -> [3, 1, 3]."""
    out: list[int] = []
    for x in seq:
        x = int(x)
        if not out or out[-1] != x:
            out.append(x)
    return out


def greedy_decode(
    logits: torch.Tensor, lengths: Sequence[int] | torch.Tensor | None = None
) -> list[list[int]]:
    """Per utterance: argmax over classes for each valid frame, then :func:`collapse`.

    ``logits`` is ``[T, C]`` (one utterance) or ``[B, T, C]`` with optional ``lengths``.
    """
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    if logits.dim() != 3:
        raise ValueError(f"logits must be [T, C] or [B, T, C], got {tuple(logits.shape)}")
    best = logits.argmax(dim=-1)
    lens = [best.shape[1]] * best.shape[0] if lengths is None else [int(n) for n in lengths]
    if len(lens) != best.shape[0]:
        raise ValueError(f"{len(lens)} lengths for {best.shape[0]} utterances")
    return [collapse(best[b, : lens[b]].tolist()) for b in range(best.shape[0])]


@dataclass(frozen=True)
class PERResult:
    errors: int
    ref_len: int
    num_utts: int
    frames: int = 0
    frame_correct: int = 0

    @property
    def per(self) -> float:
        """Edit distance / reference length (a fraction; x100 for percent)."""
        if self.ref_len == 0:
            raise ValueError("PER of an empty reference set is undefined")
        return self.errors / self.ref_len

    @property
    def frame_acc(self) -> float:
        return self.frame_correct / self.frames if self.frames else float("nan")

    def __add__(self, other: PERResult) -> PERResult:
        return PERResult(
            self.errors + other.errors,
            self.ref_len + other.ref_len,
            self.num_utts + other.num_utts,
            self.frames + other.frames,
            self.frame_correct + other.frame_correct,
        )


def phone_error_rate(
    refs: Sequence[Sequence[Any]],
    hyps: Sequence[Sequence[Any]],
    *,
    ignore: Collection[Any] = (),
) -> PERResult:
    """Corpus PER of hypothesis phone sequences against references (ints or names)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    ignored = set(ignore)
    errors = ref_len = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        r = [p for p in ref if p not in ignored]
        h = [p for p in hyp if p not in ignored]
        errors += int(editdistance.eval(r, h))
        ref_len += len(r)
    return PERResult(errors, ref_len, len(refs))


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable[Any], *, ignore: Collection[int] = ()
) -> PERResult:
    """Greedy-decode every utterance of ``batches`` and score it against its collapsed frame
    labels; also counts frame accuracy. The model is put in eval mode and restored after."""
    was_training = model.training
    model.eval()
    total = PERResult(0, 0, 0)
    try:
        for raw in batches:
            batch = as_batch(raw)
            logits, _ = model(batch.feats)
            lens = batch.lengths.tolist()
            hyps = greedy_decode(logits, lens)
            valid = batch.valid
            refs = [collapse(batch.labels[b][valid[b]].tolist()) for b in range(len(lens))]
            correct = int((logits.argmax(-1)[valid] == batch.labels[valid]).sum())
            total = total + phone_error_rate(refs, hyps, ignore=ignore)
            total = total + PERResult(0, 0, 0, int(valid.sum()), correct)
    finally:
        model.train(was_training)
    return total
