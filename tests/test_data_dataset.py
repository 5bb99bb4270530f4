from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

import rtmobile_train.data.dataset as dataset_mod
from rtmobile_train.data.corpus import (
    ManifestError,
    Segment,
    SegmentError,
    Utterance,
    load_audio,
    merge_silences,
    read_manifest,
    validate_segments,
    write_manifest,
)
from rtmobile_train.data.dataset import (
    IGNORE_INDEX,
    PhoneDataset,
    UtteranceBatch,
    collate_utterances,
)
from rtmobile_train.data.phones import PHONE39_INDEX
from rtmobile_train.data.sphere import write_sphere
from rtmobile_train.features import FbankConfig, FeatureError, FeatureStats, compute_fbank

RATE = 16000


def _utt(folder: Path, name: str, seconds: float, seed: int, *, sphere: bool = False) -> Utterance:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = 0.2 * np.sin(2 * np.pi * (300 + 200 * seed) * t) + 0.02 * rng.standard_normal(n)
    path = folder / (f"{name}.sph" if sphere else f"{name}.wav")
    if sphere:
        write_sphere(path, x, RATE)
    else:
        sf.write(path, x, RATE, subtype="PCM_16")
    d = n / RATE
    segs = (Segment("sil", 0, d / 4), Segment("aa", d / 4, d / 2), Segment("sil", d / 2, d))
    return Utterance(
        utt_id=name,
        split="train",
        speaker="spk",
        audio_path=path,
        segments=segs,
        sample_rate=RATE,
        num_samples=n,
        audio_format="sphere" if sphere else "wav",
        text="a",
        meta={"seed": seed},
    )


@pytest.fixture
def utts(tmp_path: Path) -> list[Utterance]:
    return [
        _utt(tmp_path, "u0", 0.5, 0),
        _utt(tmp_path, "u1", 1.2, 1),
        _utt(tmp_path, "u2", 0.8, 2, sphere=True),
    ]


def test_items(utts: list[Utterance]) -> None:
    ds = PhoneDataset(utts)
    assert len(ds) == 3
    assert ds.feature_dim == 40
    for i, u in enumerate(utts):
        ex = ds[i]
        t = FbankConfig().num_frames(u.num_samples)
        assert ex.utt_id == u.utt_id
        assert ex.feats.shape == (t, 40)
        assert ex.feats.dtype == torch.float32
        assert ex.frame_labels.shape == (t,)
        assert set(ex.frame_labels.tolist()) == {PHONE39_INDEX["sil"], PHONE39_INDEX["aa"]}
        assert ex.phones.tolist() == [PHONE39_INDEX[p] for p in ("sil", "aa", "sil")]
        np.testing.assert_array_equal(ex.feats.numpy(), compute_fbank(load_audio(u)))


def test_cache_is_used_and_invalidated(
    tmp_path: Path, utts: list[Utterance], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    ds = PhoneDataset(utts, cache_dir=cache)
    first = [ds[i].feats for i in range(len(ds))]
    assert len(list(cache.glob("*.npz"))) == 3

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("fbank recomputed despite the cache")

    monkeypatch.setattr(dataset_mod, "compute_fbank", boom)
    again = PhoneDataset(utts, cache_dir=cache)
    for a, b in zip(first, (again[i].feats for i in range(3)), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    monkeypatch.undo()

    # new audio at the same path must not be served stale features
    new = _utt(tmp_path, "u0", 0.7, 9)
    assert new.audio_path == utts[0].audio_path
    ex = PhoneDataset([new], cache_dir=cache)[0]
    assert ex.feats.shape[0] == FbankConfig().num_frames(new.num_samples)
    # a different feature config gets its own cache entries
    PhoneDataset([new], FbankConfig(num_mel_bins=23), cache_dir=cache)[0]
    assert len(list(cache.glob("u0.*.npz"))) == 3


def test_damaged_cache_file_is_recomputed(tmp_path: Path, utts: list[Utterance]) -> None:
    ds = PhoneDataset(utts[:1], cache_dir=tmp_path / "c")
    want = ds[0].feats
    path = ds.cache.path_for(utts[0])  # type: ignore[union-attr]
    path.write_bytes(b"not an npz")
    torch.testing.assert_close(ds[0].feats, want, rtol=0, atol=0)


def test_stats_normalisation_and_context(utts: list[Utterance]) -> None:
    raw = PhoneDataset(utts)
    stats = raw.compute_stats()
    allf = np.concatenate([compute_fbank(load_audio(u)) for u in utts]).astype(np.float64)
    assert stats.count == len(allf)
    np.testing.assert_allclose(stats.mean, allf.mean(0), rtol=1e-9)
    np.testing.assert_allclose(stats.var, allf.var(0), rtol=1e-7)

    ds = PhoneDataset(utts, stats=stats, context=5)
    assert ds.feature_dim == 440
    ex = ds[1]
    assert ex.feats.shape[1] == 440
    centre = torch.cat([ds[i].feats[:, 200:240] for i in range(3)])  # the unshifted frame
    torch.testing.assert_close(centre.mean(0), torch.zeros(40), atol=1e-4, rtol=0)
    torch.testing.assert_close(centre.std(0, unbiased=False), torch.ones(40), atol=1e-4, rtol=0)
    assert PhoneDataset(utts, context=(2, 0)).feature_dim == 120


def test_dataset_errors(utts: list[Utterance]) -> None:
    with pytest.raises(FeatureError, match="per fbank dimension"):
        PhoneDataset(utts, stats=FeatureStats(440))
    with pytest.raises(FeatureError, match="non-negative"):
        PhoneDataset(utts, context=-1)
    with pytest.raises(FeatureError, match="8000 Hz"):
        PhoneDataset(utts, FbankConfig(sample_rate=8000))


def test_collate(utts: list[Utterance]) -> None:
    ds = PhoneDataset(utts)
    items = [ds[i] for i in range(3)]
    b = collate_utterances(items)
    lens = [it.feats.shape[0] for it in items]
    assert b.feats.shape == (3, max(lens), 40)
    assert b.lengths.tolist() == lens
    assert b.phones.shape == (3, 3)
    assert b.phone_lengths.tolist() == [3, 3, 3]
    assert b.utt_ids == ["u0", "u1", "u2"]
    for k, n in enumerate(lens):
        torch.testing.assert_close(b.feats[k, :n], items[k].feats)
        assert (b.feats[k, n:] == 0).all()
        assert (b.labels[k, n:] == IGNORE_INDEX).all()
        assert (b.labels[k, :n] == items[k].frame_labels).all()
    with pytest.raises(ValueError, match="empty batch"):
        collate_utterances([])
    assert dict(b)["labels"] is b.labels
    with pytest.raises(KeyError):
        b["frame_labels"]


def test_batches_feed_the_trainer(utts: list[Utterance]) -> None:
    batch_mod = pytest.importorskip("rtmobile_train.batch")
    b = collate_utterances([PhoneDataset(utts)[i] for i in range(3)])
    tb = batch_mod.as_batch(b)
    assert tb.feats is b.feats or torch.equal(tb.feats, b.feats)
    assert torch.equal(tb.labels, b.labels)
    assert torch.equal(tb.lengths, b.lengths)


def test_dataloader_and_ctc_loss(utts: list[Utterance]) -> None:
    ds = PhoneDataset(utts, context=1)
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_utterances)
    batches = list(loader)
    assert [len(b.utt_ids) for b in batches] == [2, 1]
    b = batches[0].to("cpu")
    assert isinstance(b, UtteranceBatch)
    logits = torch.zeros(b.feats.shape[1], 2, 40)  # [T, B, 39 phones + blank]
    loss = torch.nn.functional.ctc_loss(
        logits.log_softmax(-1), b.phones + 1, b.lengths, b.phone_lengths
    )
    assert torch.isfinite(loss)
    ce = torch.nn.functional.cross_entropy(
        torch.zeros(*b.labels.shape, 39).flatten(0, 1), b.labels.flatten()
    )
    assert torch.isfinite(ce)


# ------------------------------------------------------------------------------------ manifest


def test_manifest_round_trip(tmp_path: Path, utts: list[Utterance]) -> None:
    path = write_manifest(tmp_path / "m.jsonl", utts)
    back = read_manifest(tmp_path / "m.jsonl")
    assert back == utts
    assert [u.meta for u in back] == [u.meta for u in utts]
    rec = json.loads(path.read_text().splitlines()[1])
    assert rec["audio"] == "u0.wav"  # relative, so a corpus folder can be moved
    assert read_manifest(tmp_path / "m.jsonl", "train") == utts


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"manifest_version": 99}\n', "expected manifest_version 1"),
        ('{"manifest_version": 1}\n{"id": "x"}\n', "malformed record"),
        ('{"manifest_version": 1}\nnot json\n', "not JSON"),
    ],
)
def test_manifest_errors(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "manifest.jsonl").write_text(content)
    with pytest.raises(ManifestError, match=match):
        read_manifest(tmp_path)


def test_manifest_missing_split_and_file(tmp_path: Path, utts: list[Utterance]) -> None:
    write_manifest(tmp_path / "manifest.jsonl", utts)
    with pytest.raises(ManifestError, match=r"no utterances in split\(s\) \['dev'\]"):
        read_manifest(tmp_path, ["train", "dev"])
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")


def test_load_audio_checks_manifest(utts: list[Utterance]) -> None:
    from dataclasses import replace

    with pytest.raises(ManifestError, match="has 8000 samples but the manifest says 5"):
        load_audio(replace(utts[0], num_samples=5))
    with pytest.raises(ManifestError, match="manifest says 8000 Hz"):
        load_audio(replace(utts[2], sample_rate=8000))


@pytest.mark.parametrize(
    ("segs", "match"),
    [
        ([], "no phone segments"),
        ([Segment("sil", 0.1, 1.0)], "not 0"),
        ([Segment("sil", 0, 0.5), Segment("aa", 0.6, 1.0)], "previous ends"),
        ([Segment("sil", 0, 0.5), Segment("aa", 0.5, 0.5)], "empty"),
        ([Segment("ao", 0, 1.0)], "not in the 39 set"),
        ([Segment("sil", 0, 0.9)], "audio lasts 1.0s"),
    ],
)
def test_validate_segments(segs: list[Segment], match: str) -> None:
    with pytest.raises(SegmentError, match=match):
        validate_segments(segs, 1.0)


def test_merge_silences() -> None:
    segs = [Segment("sil", 0, 1), Segment("sil", 1, 2), Segment("aa", 2, 3), Segment("aa", 3, 4)]
    assert merge_silences(segs) == [Segment("sil", 0, 2), Segment("aa", 2, 3), Segment("aa", 3, 4)]
