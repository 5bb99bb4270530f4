"""Build the phone model that ships inside ``rtmobile_rt`` (``rtmobile_rt/models/``).

One command, from the repository root::

    python -m rtmobile_train.bundle

1. generates the Festival corpus preset ``small`` (about 1.4 h of training audio) into
   ``data/festival-small`` (or reuses it);
2. runs the Table I pipeline (``rtmobile_train.reproduce``) for the dense ``small`` model
   (2 x GRU 128 on 40-d fbank spliced +-5 frames) and one BSP row (``bsp-4x`` by default:
   the small model loses too much at 10x, see the README): dense training, pruning with
   ``reproduce``'s default recipe (``rtmobile_train.recipe``), masked retraining, PER on the
   seen voices and on the held-out voice; everything is resumable under ``runs/bundle``;
3. exports the pruned model at fp16 with its feature configuration, decoder setting and the
   PERs of the exported file (run by the C++ runtime) as metadata, and copies a short test
   utterance (a sentence never trained on) as ``sample.wav``;
4. checks the result: the file loads, is at most 2 MB, and streaming gives the same phones as
   an offline run on the sample.

The scores it prints are what the README quotes.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtmobile_train import reproduce
from rtmobile_train.data.corpus import read_manifest
from rtmobile_train.export import export_bspc, load_checkpoint
from rtmobile_train.features import FbankConfig
from rtmobile_train.workflow import evaluate_bspc

log = logging.getLogger("rtmobile_train.bundle")

MODEL_NAME = "phones-small-bsp.bspc"
SAMPLE_NAME = "sample.wav"
MAX_BYTES = 2 * 1024 * 1024
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "python" / "rtmobile_rt" / "models"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rtmobile_train.bundle",
        description="Train, BSP-prune and export the phone model bundled with rtmobile_rt.",
    )
    p.add_argument("--corpus", default="small", help="Festival corpus preset (default: small)")
    p.add_argument("--corpus-dir", type=Path, default=None, help="default: data/festival-<preset>")
    p.add_argument("--run-dir", type=Path, default=Path("runs/bundle-ctx"), help="checkpoints")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the model and wav go")
    p.add_argument("--rate", type=int, default=4, help="BSP compression rate (default 4)")
    p.add_argument("--epochs-dense", type=int, default=15)
    p.add_argument("--epochs-prune", "--epochs-admm", dest="epochs_prune", type=int, default=4)
    p.add_argument("--epochs-retrain", type=int, default=12)
    p.add_argument("--lr-retrain", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    return p


def pick_sample(corpus_dir: Path, min_s: float = 2.5, max_s: float = 4.5) -> Any:
    """A short test utterance: a sentence the model never heard, in a training voice."""
    utts = [u for u in read_manifest(corpus_dir / "manifest.jsonl") if u.split == "test"]
    if not utts:
        raise SystemExit(f"{corpus_dir}: no test utterances")
    fits = [u for u in utts if min_s <= u.duration <= max_s] or utts
    return min(fits, key=lambda u: (abs(u.duration - 3.5), u.utt_id))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    corpus_dir = args.corpus_dir or Path("data") / f"festival-{args.corpus}"
    row = f"bsp-{args.rate}x"
    results_dir = args.run_dir / "results"
    rargv = [
        "--corpus", args.corpus, "--corpus-dir", str(corpus_dir), "--model", "small",
        "--rows", row, "--out", str(args.run_dir), "--results-dir", str(results_dir),
        "--epochs-dense", str(args.epochs_dense), "--epochs-prune", str(args.epochs_prune),
        "--epochs-retrain", str(args.epochs_retrain), "--lr-retrain", str(args.lr_retrain),
    ]  # fmt: skip
    if args.threads is not None:
        rargv += ["--threads", str(args.threads)]
    if args.no_progress:
        rargv.append("--no-progress")
    rc = reproduce.main(rargv)
    if rc != 0:
        return rc

    row_json = json.loads((args.run_dir / "rows" / f"{row}.json").read_text(encoding="utf-8"))
    ck = load_checkpoint(args.run_dir / "rows" / row / "retrain.pt")
    choice = reproduce.MODELS["small"]
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / MODEL_NAME
    metadata: dict[str, Any] = {
        "name": "phones-small-bsp",
        "description": (
            f"2 x GRU 128 phone recognizer (39 phones incl. sil), BSP {args.rate}x, fp16; "
            f"trained on the Festival corpus preset '{args.corpus}' by "
            "python -m rtmobile_train.bundle"
        ),
        "achieved_rate": row_json.get("achieved_rate"),
        "corpus": args.corpus,
    }

    def write() -> None:
        export_bspc(
            ck.model,
            model_path,
            masks=ck.masks,
            pruners=ck.pruners,
            dtype="f16",
            fbank=FbankConfig(),
            context=(choice.context, choice.context),
            metadata=metadata,
        )

    # The PER quoted is the shipped fp16 file's, run by the C++ runtime.
    write()
    metadata["per_percent"] = {
        split: round(100 * evaluate_bspc(model_path, corpus_dir, split).per, 2)
        for split in ("test", "test_heldout")
    }
    write()
    utt = pick_sample(corpus_dir)
    shutil.copyfile(utt.audio_path, args.out / SAMPLE_NAME)

    size = model_path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{model_path}: {size} bytes, over the {MAX_BYTES}-byte budget")
    check_streaming(model_path, args.out / SAMPLE_NAME)
    print(
        f"wrote {model_path} ({size / 1024:.0f} KiB, {row_json.get('achieved_rate'):.1f}x) and "
        f"{args.out / SAMPLE_NAME} ({utt.duration:.2f} s, {utt.utt_id}: {utt.text!r})\n"
        f"reference phones of the sample: {' '.join(utt.phones)}\n"
        f"PER (%), fp16 file in the C++ runtime: {json.dumps(metadata['per_percent'])}"
    )
    return 0


def check_streaming(model_path: Path, wav: Path) -> None:
    """Streaming in 20 ms chunks must give the phones of an offline run."""
    from rtmobile_rt import Session
    from rtmobile_rt.transcribe import StreamingRecognizer, chunks, read_audio, transcribe_offline

    session = Session(model_path, threads=1)
    samples, rate = read_audio(str(wav))
    offline = [p.label for p in transcribe_offline(session, samples, rate)]
    rec = StreamingRecognizer(session)
    streamed = [p.label for piece in chunks(samples, rate // 50) for p in rec.accept(piece).phones]
    streamed += [p.label for p in rec.finish().phones]
    if streamed != offline:
        raise SystemExit(f"streaming phones differ from offline ones: {streamed} vs {offline}")


if __name__ == "__main__":
    sys.exit(main())
