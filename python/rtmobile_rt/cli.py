"""The ``rtmobile`` command line.

Runtime commands (``demo``, ``transcribe``, ``tune``, ``info``, ``bench``) need only the base
install. The training commands (``data``, ``train``, ``prune``, ``export``, ``eval``) are a thin
layer over ``rtmobile_train`` (``workflow``, ``export``, ``data.festival_corpus``); they import it
when run and need the training extras (``pip install ".[train]"``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import numpy as np

from rtmobile_rt import FormatError, MemoryLimitError, Session, __version__
from rtmobile_train.bspc import MAGIC as BSPC_MAGIC
from rtmobile_train.bspc import MAX_LAYERS
from rtmobile_train.data.festival_corpus import PRESETS as CORPUS_PRESETS
from rtmobile_train.recipe import RECIPE

if TYPE_CHECKING:
    from rtmobile_rt.transcribe import FeatureSpec

TRAIN_EXTRAS = 'pip install ".[train]"'
# rtmobile_train.workflow.MODELS, named here without importing torch (a test keeps them equal)
MODEL_PRESETS = ("medium", "paper", "small", "tiny")


# A closed stdout pipe (`rtmobile transcribe | head -2`) ends the program silently with the
# status a shell reports for a Unix tool killed by SIGPIPE (`cat`, `yes`): 128 + 13. It is not
# 0, since the output was cut short, so `set -o pipefail` scripts see it as they see those tools.
# (The process exits normally with that status rather than killing itself with SIGPIPE, which
# would also kill a program or test runner calling main() in-process.)
EXIT_BROKEN_PIPE = 141


def _debug() -> bool:
    """Whether `rtmobile --debug` was given (for the command being run)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))


def _fail(message: str) -> NoReturn:
    """End the command: one ``Error:`` line on stderr, exit status 2. With --debug, the
    traceback of the exception being handled (if any) comes first, for bug reports."""
    if _debug() and sys.exc_info()[0] is not None:
        traceback.print_exc()
    lines = [ln.strip() for ln in str(message).strip().splitlines() if ln.strip()]
    click.echo(f"Error: {lines[0] if lines else 'failed'}", err=True)
    sys.exit(2)


def _stdout_closed() -> NoReturn:
    # Point stdout at /dev/null: the interpreter flushes it once more at exit, which would
    # raise again and print "Exception ignored ... BrokenPipeError".
    with contextlib.suppress(OSError, ValueError):  # ValueError: no real fd (click's runner)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)


class _Main(click.Group):
    """Every failure inside a command ends as one ``Error:`` line and exit status 2.

    Bad input (a file, a setting) raises ValueError, OSError or RuntimeError with a message
    that names it; anything else is a bug, also one line (with its type) unless --debug.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:  # `rtmobile --help | head -1`; click alone would exit 1
            _stdout_closed()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own (--help, ^C, usage errors): click reports them
        except BrokenPipeError:
            _stdout_closed()
        except ImportError as e:
            _fail(f"{e}: this command needs the training extras: {TRAIN_EXTRAS}")
        except (ValueError, OSError, RuntimeError, MemoryLimitError) as e:
            _fail(str(e) or type(e).__name__)  # a limit refused, not memory exhausted
        except MemoryError as e:  # numpy's names the allocation: "Unable to allocate 3 TiB ..."
            _fail(f"out of memory: {e}" if str(e) else "out of memory")
        except Exception as e:
            first = next(iter(str(e).strip().splitlines()), "")
            hint = "" if _debug() else " (rtmobile --debug COMMAND ... shows where)"
            _fail(f"internal error, {type(e).__name__}: {first}{hint}")


class _FiniteRange(click.FloatRange):
    """click's FloatRange that also refuses nan and inf: nan passes its bound comparisons."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rtmobile")
@click.option(
    "--debug",
    is_flag=True,
    help="On an error, print the full traceback before the one Error line (for bug reports).",
)
def main(debug: bool) -> None:
    """RTMobile: real-time BSP-pruned recurrent speech models on CPUs.

    \b
    From speech to a pruned model on this machine:
      rtmobile data --preset tiny --out data/festival-tiny
      rtmobile train --corpus data/festival-tiny --model tiny --out runs/tiny
      rtmobile prune runs/tiny/dense.pt --corpus data/festival-tiny --rate 4
      rtmobile export runs/tiny/bsp-4x/retrain.pt model.bspc
      rtmobile eval model.bspc --corpus data/festival-tiny
      rtmobile transcribe some.wav --model model.bspc
    """


@contextlib.contextmanager
def _model_errors(model: Path) -> Iterator[None]:
    from rtmobile_rt.transcribe import TranscribeError

    try:
        yield
    except FormatError as e:
        _fail(f"{model}: not a valid BSPC model: {e}")
    except TranscribeError as e:  # its METADATA (feature configuration, decoder)
        _fail(f"{model}: {e}")


def _need_file(path: Path, what: str) -> None:
    if not path.exists():
        _fail(f"{what} not found: {path}")
    if not path.is_file():  # a fifo would block the reader; a folder is no model
        _fail(f"{path}: not a regular file")


@contextlib.contextmanager
def _c_stderr_silenced() -> Iterator[None]:
    """Mute what C libraries write straight to file descriptor 2: libsndfile's MP3 probe
    (libmpg123) prints its own warnings for a file that is no audio, and the one Error line
    says it better."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _is_bspc(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(BSPC_MAGIC)) == BSPC_MAGIC


@contextlib.contextmanager
def _training_log() -> Iterator[None]:
    """Show the training log (epochs, resumes) on stderr, between the tqdm bars."""
    from tqdm import tqdm

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    logger = logging.getLogger("rtmobile_train")
    handler, level = Echo(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _torch_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _per_line(r: Any) -> str:
    return (
        f"PER {100 * r.per:.2f}% ({r.errors} errors / {r.ref_len} phones, "
        f"{r.num_utts} utterances), frame accuracy {100 * r.frame_acc:.2f}%"
    )


_corpus_option = click.option(
    "--corpus",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Corpus folder with a manifest.jsonl (e.g. from `rtmobile data`).",
)
_device_option = click.option(
    "--device", default="cpu", show_default=True, help="Torch device: cpu, cuda or cuda:N."
)
_threads_option = click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=None,
    help="Torch CPU threads (default: torch's choice).",
)
_progress_option = click.option("--no-progress", is_flag=True, help="No progress bars.")
_RUNTIME_THREADS_HELP = (
    "Runtime threads (default: the model's tuning file from `rtmobile tune`, else the runtime's "
    "automatic choice); an explicit value wins over the tuning file."
)
_runtime_threads_option = click.option(
    "--threads", type=click.IntRange(1, 256), default=None, help=_RUNTIME_THREADS_HELP
)


@main.command()
@click.option("--hidden", default=256, show_default=True, help="GRU hidden size.")
@click.option("--layers", default=2, show_default=True, help="Number of GRU layers.")
@click.option(
    "--rate", type=_FiniteRange(1), default=10.0, show_default=True, help="BSP compression rate."
)
@click.option("--frames", default=1000, show_default=True, help="Frames to run (10 ms each).")
@_runtime_threads_option
@click.option("--dtype", type=click.Choice(["f32", "f16"]), default="f32", show_default=True)
def demo(
    hidden: int, layers: int, rate: float, frames: int, threads: int | None, dtype: str
) -> None:
    """Build a random BSP-pruned GRU in memory and time it offline and streaming."""
    from rtmobile_rt.demo import random_gru_bspc

    if hidden < 1 or layers < 1 or frames < 1:
        _fail("hidden, layers and frames must be >= 1")
    model = random_gru_bspc(hidden=hidden, layers=layers, rate=rate, dtype=dtype)
    session = Session(model, threads=threads)
    info = session.info
    click.echo(
        f"model: GRU {info['input_dim']} -> {layers}x{hidden} -> {info['output_dim']}, "
        f"{info['stored_weights']:,} of {info['dense_weights']:,} weights stored "
        f"({info['compression_rate']:.1f}x), {dtype}, isa {info['isa']}, "
        f"{info['threads']} thread(s)"
    )
    rng = np.random.default_rng(1)
    x = rng.standard_normal((frames, info["input_dim"])).astype(np.float32)
    session.run(x[:10])  # warm-up: page in weights, wake threads

    t0 = time.perf_counter()
    offline = session.run(x)
    offline_s = time.perf_counter() - t0

    stream = session.stream()
    t0 = time.perf_counter()
    streamed = np.concatenate([stream.push(x[t : t + 1]) for t in range(frames)])
    stream_s = time.perf_counter() - t0
    same = bool(np.array_equal(offline, streamed))

    frame_ms = 10.0
    click.echo(f"offline   : {offline_s / frames * 1e6:8.1f} us/frame over {frames} frames")
    click.echo(
        f"streaming : {stream_s / frames * 1e6:8.1f} us/frame (1 frame per push, incl. Python), "
        f"real-time factor {stream_s / (frames * frame_ms / 1e3):.4f}"
    )
    click.echo(f"streaming output identical to offline: {same}")


BUNDLED_DIR = Path(__file__).parent / "models"
BUNDLED_MODEL = BUNDLED_DIR / "phones-small-bsp.bspc"
BUNDLED_AUDIO = BUNDLED_DIR / "sample.wav"


@main.command()
@click.argument("audio", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--model",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="BSPC model with a feature config (default: the bundled phone model).",
)
@click.option(
    "--stream/--offline",
    default=True,
    show_default=True,
    help="Stream in chunks (prints phones as they are recognised) or run once.",
)
@click.option(
    "--chunk-ms",
    default=20,
    show_default=True,
    type=click.IntRange(10, 40),
    help="Audio per streaming chunk, in milliseconds.",
)
@_runtime_threads_option
@click.option("--show-sil", is_flag=True, help="Also print silence.")
def transcribe(
    audio: Path | None,
    model: Path | None,
    stream: bool,
    chunk_ms: int,
    threads: int | None,
    show_sil: bool,
) -> None:
    """Recognise phones in AUDIO (a wav file; default: the bundled sample)."""
    from rtmobile_rt.transcribe import (
        FeatureSpec,
        StreamingRecognizer,
        TranscribeError,
        check_rate,
        chunks,
        decoder_min_frames,
        read_audio,
        transcribe_offline,
    )

    model = model or BUNDLED_MODEL
    audio = audio or BUNDLED_AUDIO
    _need_file(model, "model")
    _need_file(audio, "audio file")
    with _model_errors(model):
        session = Session(model, threads=threads)
        spec = FeatureSpec.from_session(session)  # the model's METADATA, before any audio
        decoder_min_frames(session)
    with _c_stderr_silenced():
        samples, rate = read_audio(str(audio))  # >= 1 sample, or a TranscribeError
    try:
        check_rate(rate, spec)
    except TranscribeError as e:
        _fail(f"{audio}: {e}")
    duration = len(samples) / rate
    click.echo(f"model {model.name}: {session!r}")
    click.echo(f"audio {audio.name}: {duration:.2f} s at {rate} Hz")
    keep = (lambda p: True) if show_sil else (lambda p: p.label not in ("sil", "<blank>"))
    if not stream:
        t0 = time.perf_counter()
        phones = transcribe_offline(session, samples, rate)
        elapsed = time.perf_counter() - t0
        click.echo(" ".join(p.label for p in phones if keep(p)))
        click.echo(f"real-time factor {elapsed / duration:.4f} (offline, features included)")
        return
    recognizer = StreamingRecognizer(session)
    step = max(1, rate * chunk_ms // 1000)
    latencies, total = [], 0.0
    for piece in chunks(samples, step):
        result = recognizer.accept(piece)
        latencies.append(result.latency_s)
        total += result.latency_s
        for p in result.phones:
            if keep(p):
                click.echo(f"{p.start:7.2f}s  {p.label}")
    last = recognizer.finish()
    total += last.latency_s
    for p in last.phones:
        if keep(p):
            click.echo(f"{p.start:7.2f}s  {p.label}")
    lat = np.array(latencies) * 1e3
    click.echo(
        f"chunks of {chunk_ms} ms: latency median {np.median(lat):.2f} ms, "
        f"p95 {np.percentile(lat, 95):.2f} ms, max {lat.max():.2f} ms; "
        f"real-time factor {total / duration:.4f}"
    )


@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--objective",
    type=click.Choice(["streaming", "offline"]),
    default="streaming",
    show_default=True,
    help="What to minimise: per-frame streaming or offline time.",
)
@click.option(
    "--allow-f16",
    is_flag=True,
    help="Also try f16 weights (faster; results change within the f16 tolerance).",
)
@click.option(
    "--max-threads",
    type=click.IntRange(1, 256),
    default=None,
    help="Largest thread count to try (default: the usable cores, at most 8); with "
    "--search-blocks, the thread count to time with (default: 1).",
)
@click.option(
    "--frames",
    default=200,
    show_default=True,
    type=click.IntRange(10, 100000),
    help="Frames per sample (streamed one per push, or run offline in one call).",
)
@click.option(
    "--repeats",
    default=9,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Interleaved rounds: samples per configuration (--search-blocks: per block shape).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Tuning file to write (default: MODEL.tune.json, else the user cache).",
)
@click.option(
    "--search-blocks",
    is_flag=True,
    help="Instead of tuning MODEL, rank (Num_r, Num_c) block shapes by speed for a "
    "random GRU of the given size at --rate (a guide for training).",
)
@click.option(
    "--rate",
    type=_FiniteRange(1),
    default=10.0,
    show_default=True,
    help="Compression for --search-blocks.",
)
@click.option("--input-dim", type=click.IntRange(1), default=440, show_default=True)
@click.option("--hidden", type=click.IntRange(1), default=960, show_default=True)
@click.option("--layers", type=click.IntRange(1, MAX_LAYERS), default=2, show_default=True)
@click.option("--classes", type=click.IntRange(1), default=40, show_default=True)
def tune(
    model: Path | None,
    objective: str,
    allow_f16: bool,
    max_threads: int | None,
    frames: int,
    repeats: int,
    out: Path | None,
    search_blocks: bool,
    rate: float,
    input_dim: int,
    hidden: int,
    layers: int,
    classes: int,
) -> None:
    """Find the fastest execution configuration for MODEL on this machine and save it.

    All configurations, the runtime's defaults among them, are timed interleaved by the
    --objective (--repeats rounds, a fresh order each round). The defaults are kept unless a
    configuration's median beats theirs by more than the larger interquartile range (IQR)
    and by more than 2 %; frame tile and chunk length are tried for --objective offline only
    (a one-frame push does not depend on them). Sessions created from MODEL then apply the
    tuning file automatically (one that keeps the defaults holds no options), unless given
    explicit values.
    """
    from rtmobile_rt import tuning

    if search_blocks:
        rows = tuning.rank_block_shapes(
            input_dim,
            hidden,
            layers,
            classes,
            rate,
            threads=max_threads or 1,
            frames=frames,
            repeats=repeats,
        )
        click.echo(
            f"GRU {input_dim} -> {layers}x{hidden} -> {classes} at {rate:g}x, "
            "streaming one frame per push:"
        )
        for r in rows:
            click.echo(
                f"  Num_r {r['num_r']:3d}  Num_c {r['num_c']:2d}: "
                f"{r['streaming_us']:8.1f} us/frame streaming (IQR {r['streaming_iqr_us']:.1f}), "
                f"{r['offline_us']:8.1f} us/frame offline (IQR {r['offline_iqr_us']:.1f})"
            )
        return
    if model is None:
        _fail("give a MODEL to tune, or --search-blocks")
    _need_file(model, "model file")
    with _model_errors(model):
        record = tuning.tune(
            str(model),
            objective=objective,
            max_threads=max_threads,
            allow_f16=allow_f16,
            frames=frames,
            repeats=repeats,
            progress=click.echo,
        )
    path = tuning.save_tuning(record, str(model), out)
    click.echo(f"{record['summary']}; written to {path}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--memory-limit-mb",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="refuse a model needing more memory than this (0 = the runtime's default, 1024)",
)
def info(model: Path, memory_limit_mb: int) -> None:
    """Inspect a BSPC file: dimensions, blocks, nonzeros, compression, memory, checksum."""
    _need_file(model, "model file")
    with _model_errors(model):
        session = Session(model, threads=1, memory_limit_mb=memory_limit_mb)
        meta = session.metadata
        spec = _feature_spec(session)
    i = session.info
    click.echo(f"file        : {model}")
    dims = f"{i['input_dim']} -> {i['hidden_dims']} -> {i['output_dim']}"
    click.echo(f"kind        : {i['kind']}  {dims}")
    click.echo(
        f"weights     : {i['stored_weights']:,} stored of {i['dense_weights']:,} dense "
        f"({i['compression_rate']:.2f}x), {i['nonzero_weights']:,} nonzero"
    )
    click.echo(f"biases      : {i['bias_params']:,}")
    click.echo(
        f"memory      : up to {i['planned_bytes'] / 2**20:.1f} MiB for a 1-thread session "
        f"(planned from the headers; more threads add pieces and padding)"
    )
    click.echo(f"normalized  : {i['has_normalization']}")
    click.echo(f"checksum    : 0x{i['checksum']:08x}")
    more = " ..." if len(i["labels"]) > 12 else ""
    click.echo(f"labels      : {' '.join(i['labels'][:12])}{more}")
    meta.pop("features", None)
    if spec is not None:
        fb = spec.fbank
        click.echo(
            f"features    : {fb.num_mel_bins}-d log-mel fbank at {fb.sample_rate} Hz, "
            f"{fb.frame_shift_ms} ms shift, context -{spec.left}/+{spec.right} frames"
        )
    else:
        click.echo("features    : none recorded (runs on frames; cannot transcribe audio)")
    for key, value in sorted(meta.items()):
        click.echo(f"{key:12s}: {json.dumps(value, sort_keys=True)}")
    for m in i["matrices"]:
        click.echo(
            f"  {m['name']:8s} {m['rows']:6d} x {m['cols']:<6d} "
            f"blocks {m['num_r']:3d} x {m['num_c']:<3d} {m['dtype']}  "
            f"stored {m['stored_values']:>10,}  nonzero {m['nonzeros']:>10,}  "
            f"read/frame {m['read_bytes']:>10,} B"
        )


def _feature_spec(session: Session) -> FeatureSpec | None:
    """The model's METADATA ``features``, checked (a TranscribeError names a bad value), or
    None when it has none (a model that runs on frames)."""
    from rtmobile_rt.transcribe import FeatureSpec, decoder_min_frames

    decoder_min_frames(session)
    if session.metadata.get("features") is None:
        return None
    return FeatureSpec.from_session(session)


# -- the training pipeline ------------------------------------------------------------------------


@main.command()
@click.option(
    "--preset",
    type=click.Choice(sorted(CORPUS_PRESETS)),
    default="default",
    show_default=True,
    help="Corpus size in train / dev / test sentences: "
    + "; ".join(f"{k}: {c.n_train} / {c.n_dev} / {c.n_test}" for k, c in CORPUS_PRESETS.items())
    + " (default: about 4.2 h of training audio, some 45 min to make on 2 cores; tiny: "
    "seconds, for tests).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Corpus folder (default: data/festival-PRESET). An existing one is completed, not redone.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=max(1, os.cpu_count() or 1),
    show_default=True,
    help="Parallel Festival processes.",
)
@click.option("--seed", type=int, default=None, help="Override the preset's random seed.")
@_progress_option
def data(preset: str, out: Path | None, workers: int, seed: int | None, no_progress: bool) -> None:
    """Synthesise the phone-labelled Festival corpus (needs festival and its voices).

    Sentences from Festival's CMU lexicon, spoken by two training voices (the test sentences
    once more by a held-out voice) with varied speed, pitch, level and noise; the phone
    boundaries come from Festival itself.
    """
    from dataclasses import replace

    from rtmobile_train.data.festival_corpus import generate_corpus

    config = CORPUS_PRESETS[preset] if seed is None else replace(CORPUS_PRESETS[preset], seed=seed)
    out = out or Path("data") / f"festival-{preset}"
    manifest = generate_corpus(out, config, workers=workers, progress=not no_progress)
    info = json.loads((manifest.parent / "corpus.json").read_text())
    for split, d in info["splits"].items():
        click.echo(f"{split:13s} {d['utterances']:6d} utterances {d['hours']:8.3f} h")
    click.echo(f"manifest: {manifest}")


@main.command()
@_corpus_option
@click.option(
    "--model",
    type=click.Choice(MODEL_PRESETS),
    default="small",
    show_default=True,
    help="Model preset. small: 2 x GRU 128 on 40-d fbank; paper: 2 x GRU 960 on fbank "
    "spliced +-5 frames (9.6M parameters, days on a CPU); tiny: 2 x GRU 16 (tests).",
)
@click.option(
    "--epochs",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Epochs in all, counting those of a checkpoint resumed from.",
)
@click.option(
    "--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Utterances."
)
@click.option(
    "--lr", type=_FiniteRange(0, min_open=True), default=1e-3, show_default=True, help="Adam."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Initial weights and batch order."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Checkpoint folder (default: runs/MODEL); the checkpoint is OUT/dense.pt.",
)
@_device_option
@_threads_option
@_progress_option
def train(
    corpus: Path,
    model: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    out: Path | None,
    device: str,
    threads: int | None,
    no_progress: bool,
) -> None:
    """Train a dense GRU phone model on the corpus's train split.

    Frame-wise cross-entropy with Adam; the dev PER is printed after every epoch and
    OUT/dense.pt is written after every epoch. Running the same command again resumes from it
    (give a larger --epochs to train on).
    """
    from rtmobile_train import workflow
    from rtmobile_train.train import TrainConfig

    _torch_threads(threads)
    out = out or Path("runs") / model
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed, progress=not no_progress)
    with _training_log():
        run = workflow.train_dense(
            corpus, out, model=model, cfg=cfg, batch_size=batch_size,
            device=workflow.torch_device(device), progress=not no_progress,
        )  # fmt: skip
    last = run.history[-1] if run.history else {}
    scores = ", ".join(f"{k} {last[k]:.4g}" for k in ("loss", "frame_acc", "dev_per") if k in last)
    click.echo(f"wrote {run.checkpoint} ({epochs} epochs{': ' + scores if scores else ''})")
    click.echo(f"next: rtmobile prune {run.checkpoint} --corpus {corpus} --rate 10")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_corpus_option
@click.option(
    "--method",
    type=click.Choice(["bsp", "magnitude", "row", "bbs"]),
    default="bsp",
    show_default=True,
    help="bsp: block-based structured pruning (the paper's); magnitude: unstructured; "
    "row: whole rows; bbs: bank-balanced.",
)
@click.option(
    "--rate",
    type=_FiniteRange(1),
    default=10.0,
    show_default=True,
    help="Target compression of all weight matrices together (dense / kept weights). The "
    "output layer stays dense (unless --output-rate) and counts as kept, so the GRU matrices "
    "are pruned harder.",
)
@click.option(
    "--col-rate",
    type=_FiniteRange(1),
    default=None,
    help="BSP only: the part of the GRU matrices' rate taken by pruning columns in each "
    "strip; rows are then pruned until each matrix reaches its rate (default: min(rate, 16)).",
)
@click.option(
    "--num-r",
    type=click.IntRange(1),
    default=None,
    help="BSP strips (row blocks) per matrix (default per model preset: paper, medium and "
    "small 32, tiny 4; other sizes: strips of about 12 gate rows, at most 32 strips).",
)
@click.option(
    "--num-c",
    type=click.IntRange(1),
    default=None,
    help="BSP column blocks per matrix (default: 4, tiny 2, never more than a matrix's columns; "
    "1 when the column rate alone reaches the rate: Num_c then changes no mask, and one block "
    "per strip runs faster).",
)
@click.option(
    "--num-banks", type=click.IntRange(1), default=4, show_default=True, help="BBS banks per row."
)
@click.option(
    "--output-rate",
    type=_FiniteRange(1),
    default=None,
    help="Prune the output layer too, per class (every phone keeps its own largest weights, "
    "so none is emptied), at this rate. Default: leave it dense.",
)
@click.option(
    "--prune-method",
    type=click.Choice(["gradual", "admm"]),
    default=RECIPE.prune_method,
    show_default=True,
    help="How the sparsity is reached: gradual pruning (masks tighten on a cubic ramp while "
    "training) or ADMM followed by a hard prune.",
)
@click.option(
    "--prune-epochs",
    "--admm-epochs",
    "prune_epochs",
    type=click.IntRange(1),
    default=RECIPE.prune_epochs,
    show_default=True,
    help="Epochs of the pruning phase (ADMM: at most; it stops once ||W-Z||/||W|| <= "
    f"{RECIPE.stop_residual:g}).",
)
@click.option(
    "--retrain-epochs",
    type=click.IntRange(0),
    default=RECIPE.retrain_epochs,
    show_default=True,
    help="Masked retraining epochs, at most (it stops after "
    f"{RECIPE.stop_patience} epochs without a better dev PER; the best epoch is kept).",
)
@click.option(
    "--lr",
    type=_FiniteRange(0, min_open=True),
    default=RECIPE.prune_lr,
    show_default=True,
    help="Learning rate of the pruning phase.",
)
@click.option(
    "--retrain-lr",
    type=_FiniteRange(0, min_open=True),
    default=RECIPE.retrain_lr,
    show_default=True,
    help="Initial masked retraining learning rate; halved after every epoch without a better "
    "dev PER.",
)
@click.option(
    "--distill",
    type=_FiniteRange(0, 1),
    default=0.0,
    show_default=True,
    help="Weight of distillation from the dense model (KL on frame posteriors) in masked "
    "retraining.",
)
@click.option(
    "--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Utterances."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Batch order.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Checkpoint folder (default: next to CHECKPOINT, named METHOD-RATEx); the pruned "
    "model is OUT/retrain.pt.",
)
@_device_option
@_threads_option
@_progress_option
def prune(
    checkpoint: Path,
    corpus: Path,
    method: str,
    rate: float,
    col_rate: float | None,
    num_r: int | None,
    num_c: int | None,
    num_banks: int,
    output_rate: float | None,
    prune_method: str,
    prune_epochs: int,
    retrain_epochs: int,
    lr: float,
    retrain_lr: float,
    distill: float,
    batch_size: int,
    seed: int,
    out: Path | None,
    device: str,
    threads: int | None,
    no_progress: bool,
) -> None:
    """Prune the dense model in CHECKPOINT (from `rtmobile train`) to --rate.

    Gradual pruning (default: the masks tighten on a cubic schedule while the network trains)
    or ADMM (the loss plus a penalty pulling every matrix towards its projection onto the
    pruning pattern, then a hard prune), then retraining with the mask fixed. Checkpoints
    (OUT/gradual.pt or OUT/admm.pt, then OUT/retrain.pt) are written after every epoch;
    running the same command again resumes.
    """
    from rtmobile_train import workflow
    from rtmobile_train.train import TrainConfig

    _torch_threads(threads)
    out = out or checkpoint.parent / f"{method}-{rate:g}x"
    common = {"seed": seed, "progress": not no_progress}
    with _training_log():
        result = workflow.prune(
            checkpoint, corpus, out, method=method, rate=rate, col_rate=col_rate, num_r=num_r,
            num_c=num_c, num_banks=num_banks, output_rate=output_rate,
            prune_method=prune_method,
            admm=TrainConfig(epochs=prune_epochs, lr=lr, **common),
            retrain=TrainConfig(**RECIPE.retrain_kwargs(
                epochs=retrain_epochs, lr=retrain_lr, distill_weight=distill, **common
            )),
            batch_size=batch_size, device=workflow.torch_device(device),
            progress=not no_progress,
        )  # fmt: skip
    click.echo(f"compression: {result.report.summary()}")
    click.echo(f"wrote {out / 'retrain.pt'}")
    click.echo(f"next: rtmobile export {out / 'retrain.pt'} {out / 'model.bspc'}")


def _meta_items(values: tuple[str, ...]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--meta'")
        try:
            meta[key] = json.loads(text)
        except json.JSONDecodeError:
            meta[key] = text
    return meta


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--dtype",
    type=click.Choice(["f32", "f16"]),
    default="f32",
    show_default=True,
    help="Weight precision in the file (biases stay f32).",
)
@click.option("--no-reorder", is_flag=True, help="Keep rows in their original order.")
@click.option(
    "--meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra METADATA entry (VALUE is JSON if it parses, else a string); repeatable.",
)
def export(
    checkpoint: Path, out: Path | None, dtype: str, no_reorder: bool, meta: tuple[str, ...]
) -> None:
    """Write a training CHECKPOINT as a BSPC model file OUT (default: CHECKPOINT.bspc).

    The file carries the block structure of the pruned matrices, the feature normalisation,
    the labels and, in METADATA, the feature configuration (so `rtmobile transcribe` can use
    it) and a summary of the training.
    """
    extra = _meta_items(meta)
    from rtmobile_train.export import export_checkpoint

    out = out or checkpoint.with_suffix(".bspc")
    for note in export_checkpoint(
        checkpoint,
        out,
        dtype=dtype,
        reorder=not no_reorder,
        metadata=extra,
    ):
        click.echo(f"note: {note}", err=True)
    session = Session(out, threads=1, tuning=None)
    click.echo(f"wrote {out} ({out.stat().st_size:,} bytes): {session!r}")


@main.command(name="eval")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_corpus_option
@click.option(
    "--split",
    default="test",
    show_default=True,
    help="Corpus split to score (Festival corpus: train, dev, test, test_heldout).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=None,
    help="A .bspc file: runtime threads (default: the model's tuning file, else the runtime's "
    "automatic choice). A checkpoint: torch threads (default: torch's choice).",
)
@click.option(
    "--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Checkpoint only."
)
@_device_option
@_progress_option
def evaluate(
    model: Path, corpus: Path, split: str, threads: int | None, batch_size: int, device: str,
    no_progress: bool,
) -> None:  # fmt: skip
    """Phone error rate of MODEL on a corpus split.

    MODEL is a training checkpoint (.pt, scored by torch) or an exported BSPC file (scored by
    the C++ runtime, with the features its METADATA describes). Greedy decoding (argmax per
    frame, repeats collapsed) against the collapsed frame labels; silence is scored.
    """
    from rtmobile_train import workflow

    progress = not no_progress
    if _is_bspc(model):
        with _model_errors(model):
            result = workflow.evaluate_bspc(
                model, corpus, split, threads=threads, progress=progress
            )
        how = "C++ runtime"
    else:
        _torch_threads(threads)
        result = workflow.evaluate_checkpoint(
            model, corpus, split, batch_size=batch_size, device=workflow.torch_device(device),
            progress=progress,
        )  # fmt: skip
        how = "torch"
    click.echo(f"{model} on {split} ({how}): {_per_line(result)}")


# -- speed ---------------------------------------------------------------------------------------


def _bench_harness() -> Path | None:
    """bench/bench_gru.py of a source checkout: under the working directory or this package's."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        path = root / "bench" / "bench_gru.py"
        if path.is_file():
            return path
    return None


@main.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.argument("harness_args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    multiple=True,
    help="Thread count to time; repeat for several (default: 1).",
)
@click.option(
    "--frames",
    type=click.IntRange(10, 100000),
    default=200,
    show_default=True,
    help="Frames per sample (streamed one per push, and run offline in one call).",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="Samples per mode; the medians are reported.",
)
@click.option(
    "--weights",
    type=click.Choice(["stored", "f32", "f16"]),
    default="stored",
    show_default=True,
    help="Weight precision to run with (f16 halves the weight traffic).",
)
@click.option(
    "--table2",
    is_flag=True,
    help="Instead, run the full Table II / Fig. 4 benchmark, bench/bench_gru.py of a source "
    "checkout, with the arguments after `--` (e.g. `rtmobile bench --table2 -- --smoke`).",
)
def bench(
    model: Path | None,
    harness_args: tuple[str, ...],
    threads: tuple[int, ...],
    frames: int,
    repeats: int,
    weights: str,
    table2: bool,
) -> None:
    """Time MODEL (a .bspc file): streaming latency and offline throughput per frame.

    Streaming pushes one frame per call (state carried, Python call included); offline runs
    all frames in one call. Random input (the time does not depend on the values); each row
    runs with its --threads count, the chosen --weights and the runtime's defaults for the
    rest: tuning files are ignored. One warm-up run first; medians of --repeats samples.
    """
    if table2:
        harness = _bench_harness()
        if harness is None:
            _fail("bench/bench_gru.py not found: --table2 runs from a source checkout")
        args = [str(model), *harness_args] if model is not None else list(harness_args)
        code = subprocess.call([sys.executable, str(harness), *args])
        if code:
            _fail(f"bench/bench_gru.py exited with status {code}")
        return
    if model is None:
        _fail("give a MODEL to time, or --table2")
    if harness_args:
        _fail(f"unexpected arguments {' '.join(harness_args)} (only --table2 takes more)")
    _need_file(model, "model file")
    from rtmobile_rt import tuning

    with _model_errors(model):
        session = Session(model, threads=1, tuning=None)
        spec = _feature_spec(session)
    shift_ms = 10.0 if spec is None else float(spec.fbank.frame_shift_ms)  # > 0 once checked
    click.echo(f"model {model.name}: {session!r}")
    click.echo(
        f"{frames} frames of {shift_ms:g} ms per sample, medians of {repeats}; "
        f"weights {weights}; real-time factor = compute time / audio time"
    )
    click.echo("threads  streaming us/frame   real-time factor  offline us/frame")
    for t in threads or (1,):
        r = tuning.measure(
            str(model), {"threads": t, "weights": weights}, frames=frames, repeats=repeats
        )
        rtf = r["streaming_us"] / (shift_ms * 1e3)
        click.echo(f"{t:7d}  {r['streaming_us']:18.1f}   {rtf:16.4f}  {r['offline_us']:16.1f}")


if __name__ == "__main__":
    main()
