"""Thread count resolution and thread-count independence, through the Python API.

The pool's own stress tests (lost wake-ups, cgroup parsing) are C++ (cpp/tests/threading_test.cc).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rtmobile_rt import Session
from rtmobile_rt.demo import random_gru_bspc


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_default_threads_follow_a_restricted_affinity(tmp_path) -> None:
    """threads=None sizes the pool from the CPUs the process may run on, not the machine's."""
    model = tmp_path / "m.bspc"
    model.write_bytes(random_gru_bspc(16, 32, 1, 4, rate=2.0))
    script = textwrap.dedent(
        f"""
        import os
        from rtmobile_rt import Session
        first = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {{first}})
        print(Session({str(model)!r}, tuning=None).info["threads"])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    cpus = len(os.sched_getaffinity(0))
    assert Session(str(model), tuning=None).info["threads"] == min(cpus, 4)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_logits_are_bit_identical_for_any_thread_count(dtype: str) -> None:
    """Explicit 1-4 threads (the pool runs even one-frame pushes of this 300k-weight model)
    give exactly the same offline and streamed logits."""
    data = random_gru_bspc(40, 256, 2, 40, rate=1.5, blocks=(16, 2), dtype=dtype, seed=3)
    x = np.random.default_rng(0).standard_normal((37, 40)).astype(np.float32)
    reference = None
    for threads in (1, 2, 3, 4):
        session = Session(data, threads=threads, tuning=None)
        assert session.info["stored_weights"] > 160_000
        offline = session.run(x)
        stream = session.stream()
        streamed = np.concatenate([stream.push(x[t : t + 1]) for t in range(len(x))])
        if reference is None:
            reference = offline
        np.testing.assert_array_equal(offline, reference)
        np.testing.assert_array_equal(streamed, reference)
