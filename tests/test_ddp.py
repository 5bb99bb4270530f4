"""Two-process DDP training (gloo on CPU) through torchrun, on the tiny preset.

Runs ``python -m torch.distributed.run`` (what the ``torchrun`` script runs, but pinned to this
interpreter) with two workers over the whole dense -> ADMM -> masked-retrain pipeline. Each
rank trains on its own shard of the synthetic data; identical weights on both ranks at the end
show that gradients were averaged and that the ADMM/mask steps stayed in lockstep.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from rtmobile_train.export import load_checkpoint
from rtmobile_train.synthetic import SyntheticPhones

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="torch.distributed with gloo is not available",
    ),
]


def test_two_process_ddp_pipeline_keeps_ranks_identical(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "training"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "rtmobile_train.train",
        "--preset", "tiny", "--out", str(out), "--num-utts", "32", "--batch-size", "4",
        "--dense-epochs", "2", "--admm-epochs", "2", "--retrain-epochs", "1",
        "--num-r", "2", "--num-c", "2", "--col-sparsity", "0.5", "--row-sparsity", "0.25",
        "--no-progress", "--save-rank-weights", "--export", str(out / "model.bspc"),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"ranks differ in {k}"

    ck = load_checkpoint(out / "retrain.pt")
    assert ck.done and ck.masks is not None
    for k, v in ck.model.state_dict().items():
        assert torch.equal(v, r0[k])
    for n, m in ck.masks.items():
        ck.pruners[n].check(m)
    # Each rank trained on its own half of the 32 utterances; the epoch statistics are summed
    # over ranks, so they count every frame of the corpus exactly once.
    corpus = SyntheticPhones(num_utts=32, batch_size=4, input_dim=8, num_classes=5, seed=0)
    assert len(ck.history) == 1
    assert ck.history[0]["frames"] == sum(len(lab) for _, lab in corpus.utts)
    assert (out / "model.bspc").stat().st_size > 0
    assert "compression:" in proc.stdout + proc.stderr
