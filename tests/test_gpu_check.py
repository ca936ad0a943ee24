"""scripts/gpu_check.sh: without a GPU it refuses in one line with exit status 2 (on a GPU machine it runs)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check would run for minutes")
def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
                          env={"PY": sys.executable, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no NVIDIA GPU" in lines[0]
    assert not (tmp_path / "out").exists()
