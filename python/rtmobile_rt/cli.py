"""The ``rtmobile`` command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

from rtmobile_rt import FormatError, Session, __version__


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rtmobile")
def main() -> None:
    """RTMobile: real-time BSP-pruned recurrent speech models on CPUs."""


@main.command()
@click.option("--hidden", default=256, show_default=True, help="GRU hidden size.")
@click.option("--layers", default=2, show_default=True, help="Number of GRU layers.")
@click.option("--rate", default=10.0, show_default=True, help="BSP compression rate.")
@click.option("--frames", default=1000, show_default=True, help="Frames to run (10 ms each).")
@click.option("--threads", default=1, show_default=True, help="Runtime threads.")
@click.option("--dtype", type=click.Choice(["f32", "f16"]), default="f32", show_default=True)
def demo(hidden: int, layers: int, rate: float, frames: int, threads: int, dtype: str) -> None:
    """Build a random BSP-pruned GRU in memory and time it offline and streaming."""
    from rtmobile_rt.demo import random_gru_bspc

    if hidden < 1 or layers < 1 or frames < 1 or threads < 1 or rate < 1:
        _fail("hidden, layers, frames and threads must be >= 1, and rate >= 1")
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
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option("--show-sil", is_flag=True, help="Also print silence.")
def transcribe(
    audio: Path | None,
    model: Path | None,
    stream: bool,
    chunk_ms: int,
    threads: int,
    show_sil: bool,
) -> None:
    """Recognise phones in AUDIO (a wav file; default: the bundled sample)."""
    from rtmobile_rt.transcribe import (
        StreamingRecognizer,
        TranscribeError,
        check_rate,
        chunks,
        read_audio,
        transcribe_offline,
    )

    model = model or BUNDLED_MODEL
    audio = audio or BUNDLED_AUDIO
    for path, what in ((model, "model"), (audio, "audio file")):
        if not path.is_file():
            _fail(f"{what} not found: {path}")
    try:
        session = Session(model, threads=threads)
        samples, rate = read_audio(str(audio))
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
        check_rate(rate, recognizer.spec)
        step = rate * chunk_ms // 1000
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
    except (TranscribeError, FormatError) as e:
        _fail(str(e))


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
    help="Largest thread count to try (default: the usable cores, at most 8).",
)
@click.option("--frames", default=200, show_default=True, type=click.IntRange(10, 100000))
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
@click.option("--rate", default=10.0, show_default=True, help="Compression for --search-blocks.")
@click.option("--input-dim", default=440, show_default=True)
@click.option("--hidden", default=960, show_default=True)
@click.option("--layers", default=2, show_default=True)
@click.option("--classes", default=40, show_default=True)
def tune(
    model: Path | None,
    objective: str,
    allow_f16: bool,
    max_threads: int | None,
    frames: int,
    out: Path | None,
    search_blocks: bool,
    rate: float,
    input_dim: int,
    hidden: int,
    layers: int,
    classes: int,
) -> None:
    """Find the fastest execution configuration for MODEL on this machine and save it.

    Sessions created from MODEL then apply the tuning file automatically.
    """
    from rtmobile_rt import tuning

    if search_blocks:
        if rate < 1:
            _fail("--rate must be >= 1")
        rows = tuning.rank_block_shapes(
            input_dim, hidden, layers, classes, rate, threads=max_threads or 1, frames=frames
        )
        click.echo(
            f"GRU {input_dim} -> {layers}x{hidden} -> {classes} at {rate:g}x, "
            "streaming one frame per push:"
        )
        for r in rows:
            click.echo(
                f"  Num_r {r['num_r']:3d}  Num_c {r['num_c']:2d}: "
                f"{r['streaming_us']:8.1f} us/frame streaming, "
                f"{r['offline_us']:8.1f} us/frame offline"
            )
        return
    if model is None:
        _fail("give a MODEL to tune, or --search-blocks")
        return
    if not model.is_file():
        _fail(f"model file not found: {model}")
    try:
        record = tuning.tune(
            str(model),
            objective=objective,
            max_threads=max_threads,
            allow_f16=allow_f16,
            frames=frames,
            progress=click.echo,
        )
    except FormatError as e:
        _fail(f"{model}: not a valid BSPC model: {e}")
        return
    path = tuning.save_tuning(record, str(model), out)
    click.echo(f"best: {record['options']} -> written to {path}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
def info(model: Path) -> None:
    """Inspect a BSPC file: dimensions, blocks, nonzeros, compression, checksum."""
    try:
        session = Session(model, threads=1)
    except FileNotFoundError as e:
        _fail(str(e))
        return
    except FormatError as e:
        _fail(f"{model}: not a valid BSPC model: {e}")
        return
    i = session.info
    click.echo(f"file        : {model}")
    dims = f"{i['input_dim']} -> {i['hidden_dims']} -> {i['output_dim']}"
    click.echo(f"kind        : {i['kind']}  {dims}")
    click.echo(
        f"weights     : {i['stored_weights']:,} stored of {i['dense_weights']:,} dense "
        f"({i['compression_rate']:.2f}x), {i['nonzero_weights']:,} nonzero"
    )
    click.echo(f"biases      : {i['bias_params']:,}")
    click.echo(f"normalized  : {i['has_normalization']}")
    click.echo(f"checksum    : 0x{i['checksum']:08x}")
    more = " ..." if len(i["labels"]) > 12 else ""
    click.echo(f"labels      : {' '.join(i['labels'][:12])}{more}")
    for m in i["matrices"]:
        click.echo(
            f"  {m['name']:8s} {m['rows']:6d} x {m['cols']:<6d} "
            f"blocks {m['num_r']:3d} x {m['num_c']:<3d} {m['dtype']}  "
            f"stored {m['stored_values']:>10,}  nonzero {m['nonzeros']:>10,}"
        )


if __name__ == "__main__":
    main()
