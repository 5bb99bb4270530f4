"""The ``rtmobile`` training commands end to end, on the tiny Festival corpus and tiny model.

``data`` -> ``train`` (1 epoch) -> ``prune`` (BSP 4x, 1 ADMM + 1 retraining epoch) ->
``export`` (f32 and f16) -> ``eval`` / ``transcribe`` / ``info`` / ``bench`` on the result,
and ``examples/stream_wav.py``; one corpus and one run are shared by the whole module. Then
bad input: every failure is one ``Error:`` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rtmobile_rt import Session
from rtmobile_rt.cli import MODEL_PRESETS, main
from rtmobile_rt.demo import random_gru_bspc
from rtmobile_rt.transcribe import read_audio, transcribe_offline
from rtmobile_train import workflow
from rtmobile_train.data.festival_corpus import DEFAULT_LEXICON
from rtmobile_train.export import load_checkpoint
from rtmobile_train.features import FbankConfig

ROOT = Path(__file__).resolve().parents[1]
_INSTALL = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
# f16 weights may flip the argmax of near-tied frames: at most this many more or fewer edits
# than torch over the ~80 phones of the tiny test split. f32 must score exactly what torch does.
F16_EDIT_TOLERANCE = 2


def rtm(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="rtmobile")


def ok(*args: object) -> str:
    result = rtm(*args)
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result: Result, needle: str) -> None:
    """Exit != 0 and one 'Error: ...' line naming the problem; no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert needle in errors[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("festival") is None or not DEFAULT_LEXICON.is_file():
        pytest.skip(f"festival or its CMU lexicon is not installed (CI: {_INSTALL})")
    out = tmp_path_factory.mktemp("cli") / "corpus"
    text = ok("data", "--preset", "tiny", "--out", out, "--workers", "2", "--no-progress")
    assert re.search(r"^train\s+16 utterances", text, re.M), text
    assert (out / "manifest.jsonl").is_file()
    return out


@pytest.fixture(scope="module")
def run(corpus: Path) -> Path:
    """Folder with dense.pt (train) and bsp/ (prune)."""
    out = corpus.parent / "run"
    common = ("--corpus", corpus, "--threads", 1, "--no-progress")
    ok("train", *common, "--model", "tiny", "--epochs", 1, "--lr", 0.01, "--out", out)
    ok("prune", out / "dense.pt", *common, "--rate", 4, "--admm-epochs", 1,
       "--retrain-epochs", 1, "--lr", 0.01, "--retrain-lr", 0.01, "--out", out / "bsp")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def models(run: Path) -> dict[str, Path]:
    """{dtype: exported .bspc} of the pruned model."""
    paths = {}
    for dtype in ("f32", "f16"):
        paths[dtype] = run / f"model-{dtype}.bspc"
        text = ok("export", run / "bsp" / "retrain.pt", paths[dtype], "--dtype", dtype,
                  "--meta", "corpus=festival tiny", "--meta", 'scores={"note": 1}')  # fmt: skip
        assert f"wrote {paths[dtype]}" in text and "compression 4.0x" in text
    return paths


def test_data_rerun_reuses_the_corpus(corpus: Path) -> None:
    wavs = {p: p.stat().st_mtime_ns for p in corpus.glob("wav/*/*.wav")}
    text = ok("data", "--preset", "tiny", "--out", corpus, "--workers", "1", "--no-progress")
    assert "test_heldout" in text and f"manifest: {corpus / 'manifest.jsonl'}" in text
    assert len(wavs) == 28 and all(p.stat().st_mtime_ns == t for p, t in wavs.items())


def test_train_records_features_and_resumes(corpus: Path, run: Path) -> None:
    dense = run / "dense.pt"
    ck = load_checkpoint(dense)
    assert ck.phase == "dense" and ck.done and ck.epoch == 1
    assert ck.features is not None and ck.features.fbank == FbankConfig()
    assert ck.features.context == (0, 0) and "dev_per" in ck.history[-1]
    before = dense.stat().st_mtime_ns
    again = rtm("train", "--corpus", corpus, "--model", "tiny", "--epochs", 1, "--lr", 0.01,
                "--out", run, "--no-progress")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "dense: resumed from" in again.output and "at epoch 1/1" in again.output
    assert dense.stat().st_mtime_ns == before  # nothing left to train: not rewritten


def test_prune_reaches_the_rate_with_bsp_blocks(run: Path) -> None:
    ck = load_checkpoint(run / "bsp" / "retrain.pt")
    assert ck.phase == "retrain" and ck.done and ck.masks is not None
    assert ck.features == load_checkpoint(run / "dense.pt").features
    assert {p.to_dict()["kind"] for p in ck.pruners.values()} == {"bsp"}
    # The tiny preset's 4 strips; one column block, since at 4x the column rate alone reaches the
    # rate (no row pruning: Num_c would change no mask).
    assert {p.blocks((48, 40)) for p in ck.pruners.values()} == {(4, 1)}
    assert "out.w" not in ck.masks, "the output layer stays dense by default"
    out_w = ck.model.matrices()["out.w"].numel()
    kept = sum(int(m.sum()) for m in ck.masks.values()) + out_w
    dense = sum(m.size for m in ck.masks.values()) + out_w
    assert dense / kept == pytest.approx(4.0, rel=0.05)  # --rate counts all weight matrices


def test_export_writes_features_and_metadata(run: Path, models: dict[str, Path]) -> None:
    session = Session(models["f16"], threads=1)
    meta = session.metadata
    assert meta["features"] == {"fbank": FbankConfig().to_dict(), "context": [0, 0]}
    assert meta["corpus"] == "festival tiny" and meta["scores"] == {"note": 1}
    assert meta["training"]["phase"] == "retrain" and meta["training"]["epoch"] == 1
    assert {m["dtype"] for m in session.info["matrices"]} == {"f16"}
    assert session.info["compression_rate"] == pytest.approx(4.0, rel=0.05)
    default = run / "bsp" / "retrain.bspc"  # OUT defaults to CHECKPOINT.bspc
    ok("export", run / "bsp" / "retrain.pt")
    assert Session(default).metadata["features"] == meta["features"]


def _per(text: str) -> tuple[float, int, int]:
    m = re.search(r"PER ([\d.]+)% \((\d+) errors / (\d+) phones", text)
    assert m, text
    return float(m.group(1)), int(m.group(2)), int(m.group(3))


def test_eval_runtime_scores_what_torch_scores(
    corpus: Path, run: Path, models: dict[str, Path]
) -> None:
    args = ("--corpus", corpus, "--no-progress")
    torch_text = ok("eval", run / "bsp" / "retrain.pt", *args)
    assert "(torch)" in torch_text
    per, errors, ref_len = _per(torch_text)
    assert ref_len > 40 and 0 <= per < 1000
    f32 = ok("eval", models["f32"], *args)
    assert "(C++ runtime)" in f32
    assert _per(f32) == (per, errors, ref_len)  # same frames, same argmax, same score
    assert f32.split("frame accuracy")[1] == torch_text.split("frame accuracy")[1]
    _, errors16, ref16 = _per(ok("eval", models["f16"], *args))
    assert ref16 == ref_len and abs(errors16 - errors) <= F16_EDIT_TOLERANCE
    dev = ok("eval", run / "dense.pt", *args, "--split", "dev")
    assert "on dev (torch)" in dev


def _wav(corpus: Path) -> Path:
    return sorted((corpus / "wav" / "test").glob("*.wav"))[0]


def test_transcribe_streaming_and_offline_agree(corpus: Path, models: dict[str, Path]) -> None:
    wav, model = _wav(corpus), models["f32"]
    streamed = ok("transcribe", wav, "--model", model, "--stream", "--show-sil")
    phones = re.findall(r"^\s+[\d.]+s  (\S+)$", streamed, re.M)
    assert phones and "latency median" in streamed
    offline = ok("transcribe", wav, "--model", model, "--offline", "--show-sil")
    line = offline.splitlines()[2]  # model line, audio line, then the phones
    assert line.split() == phones
    samples, rate = read_audio(str(wav))
    assert phones == [p.label for p in transcribe_offline(Session(model), samples, rate)]


def test_example_script_streams_a_wav(corpus: Path, models: dict[str, Path]) -> None:
    wav, model = _wav(corpus), models["f32"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "stream_wav.py"), str(model), str(wav)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    samples, rate = read_audio(str(wav))
    phones = transcribe_offline(Session(model), samples, rate)
    assert proc.stdout.splitlines() == [f"{p.start:6.2f}s  {p.label}" for p in phones]


def test_info_describes_the_exported_model(models: dict[str, Path]) -> None:
    text = ok("info", models["f16"])
    assert "gru  40 -> [16, 16] -> 39" in text
    assert re.search(r"stored of 4,848 dense \(4\.\d\dx\), [\d,]+ nonzero", text), text
    assert re.search(r"l0\.w_hh\s+48 x 16\s+blocks\s+4 x 1\s+f16", text), text
    assert re.search(r"checksum\s+: 0x[0-9a-f]{8}", text)
    assert "40-d log-mel fbank at 16000 Hz" in text and "context -0/+0" in text
    assert 'corpus      : "festival tiny"' in text and '"phase": "retrain"' in text


def test_bench_times_the_model(models: dict[str, Path]) -> None:
    text = ok("bench", models["f32"], "--threads", 1, "--threads", 2, "--frames", 20,
              "--repeats", 2)  # fmt: skip
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", text, re.M)
    assert [r[0] for r in rows] == ["1", "2"], text
    assert all(float(r[1]) > 0 and float(r[3]) > 0 for r in rows)
    assert "20 frames of 10 ms per sample, medians of 2" in text


def test_bench_table2_runs_the_harness() -> None:
    result = rtm("bench", "--table2", "--", "--help")  # the harness prints to the real stdout
    assert result.exit_code == 0, result.output


def test_every_command_has_help() -> None:
    for name in main.commands:
        text = ok(name, "--help")
        assert f"Usage: rtmobile {name}" in text, name
    assert set(main.commands) >= {"data", "train", "prune", "export", "eval", "bench", "info"}
    assert tuple(sorted(workflow.MODELS)) == MODEL_PRESETS


# -- bad input -------------------------------------------------------------------------------------


def test_bad_values_are_rejected(tmp_path: Path) -> None:
    one_line_error(rtm("train", "--corpus", tmp_path / "none"), "does not exist")
    one_line_error(rtm("train", "--corpus", tmp_path), "no such manifest")
    one_line_error(rtm("train", "--corpus", tmp_path, "--epochs", -1), "--epochs")
    one_line_error(rtm("train", "--corpus", tmp_path, "--lr", 0), "--lr")
    one_line_error(rtm("train", "--corpus", tmp_path, "--model", "huge"), "--model")
    one_line_error(rtm("data", "--workers", 0), "--workers")
    one_line_error(rtm("export", tmp_path / "none.pt"), "does not exist")
    one_line_error(rtm("bench", tmp_path / "none.bspc"), "not found")
    one_line_error(rtm("bench"), "give a MODEL")


def test_wrong_kinds_of_file(tmp_path: Path, corpus: Path, run: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00 not a checkpoint \xff" * 20)
    one_line_error(rtm("export", junk), "not a readable checkpoint")
    one_line_error(rtm("eval", junk, "--corpus", corpus), "not a readable checkpoint")
    broken = tmp_path / "broken.bspc"
    broken.write_bytes(b"BSPC\r\n\x1a\n" + b"\x07" * 200)
    for args in (("eval", broken, "--corpus", corpus), ("bench", broken), ("info", broken)):
        one_line_error(rtm(*args), f"{broken}: not a valid BSPC model: header")
    one_line_error(rtm("export", broken), "not a training checkpoint")
    bare = tmp_path / "bare.bspc"  # a valid model without a feature configuration
    bare.write_bytes(random_gru_bspc(input_dim=40, hidden=16, layers=1, classes=39, rate=2.0))
    one_line_error(rtm("eval", bare, "--corpus", corpus), "no feature configuration")
    one_line_error(rtm("prune", bare, "--corpus", corpus), "not a training checkpoint")
    retrain = run / "bsp" / "retrain.pt"
    one_line_error(rtm("prune", retrain, "--corpus", corpus), "starts from a dense one")


def test_bad_settings_against_existing_runs(tmp_path: Path, corpus: Path, run: Path) -> None:
    dense = run / "dense.pt"
    one_line_error(rtm("prune", dense, "--corpus", corpus, "--rate", 4, "--num-r", 100,
                       "--out", tmp_path), "do not fit")  # fmt: skip
    one_line_error(rtm("prune", dense, "--corpus", corpus, "--rate", 4, "--method", "row",
                       "--col-rate", 2, "--out", tmp_path), "column rate")  # fmt: skip
    # the dense output layer alone is more than a tenth of the tiny model's weights
    one_line_error(rtm("prune", dense, "--corpus", corpus, "--rate", 10, "--out", tmp_path),
                   "no more than the 624 output-layer weights kept")  # fmt: skip
    # resuming a run folder with other settings is refused, not silently mixed
    one_line_error(rtm("train", "--corpus", corpus, "--model", "small", "--out", run,
                       "--no-progress"), "different model config")  # fmt: skip
    one_line_error(rtm("prune", dense, "--corpus", corpus, "--rate", 5, "--out", run / "bsp",
                       "--no-progress"), "other pruning settings")  # fmt: skip
    one_line_error(rtm("eval", dense, "--corpus", corpus, "--split", "nope"), "nope")
    one_line_error(rtm("export", run / "bsp" / "retrain.pt", tmp_path / "x.bspc", "--meta", "k"),
                   "KEY=VALUE")  # fmt: skip
    one_line_error(rtm("export", run / "bsp" / "retrain.pt", tmp_path / "x.bspc",
                       "--meta", "features=1"), "reserved")  # fmt: skip


def test_missing_training_extras_is_one_line(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from rtmobile_rt.cli import main\n"
        f"main(['train', '--corpus', {str(tmp_path)!r}])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: ")
    assert 'pip install ".[train]"' in proc.stderr and "Traceback" not in proc.stderr


def test_exported_metadata_is_json(models: dict[str, Path]) -> None:
    text = ok("info", models["f32"])
    training = next(ln for ln in text.splitlines() if ln.startswith("training"))
    assert json.loads(training.split(":", 1)[1])["phase"] == "retrain"
