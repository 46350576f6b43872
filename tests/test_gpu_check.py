"""The GPU check runs only when a CUDA machine is lent, so its code paths are checked here on the
CPU at tiny sizes (`--smoke`): a change to the suite's APIs that breaks it shows up in CI, not at
the next GPU session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_gpu_check_smoke_runs_the_step_table_and_both_batching_pilots():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
                           "--skip", "throughput,deepspeed,quick"], capture_output=True, text=True, timeout=580,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})  # one thread per worker, as conftest
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for work in ("plain fine-tuning step", "reptile meta-step", "maml, unrolled", "maml, checkpoint_inner"):
        assert out.count(work) == 2, (work, out)  # fp32 and bf16 rows
    for pilot in ("pilot_vmap_finetune.py", "pilot_shared_base_lora.py"):
        section = out.split(pilot, 1)[1]
        assert section.splitlines()[1].startswith("(exit 0,"), section[:2000]
        assert "fp32: sequential" in section.split("$ ", 1)[0] and "speed-up" in section, section[:2000]
