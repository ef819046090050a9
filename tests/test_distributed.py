"""Multi-process training (torchrun + DistributedDataParallel, gloo on CPU): two processes with
batch 8 each must end with the weights of one process with batch 16 — the same global batches,
gradients averaged — and only rank 0 writes the run directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from test_image_tasks import BASE_CLS, _cfg, _image_npz

# two gloo processes (the slow tier)
pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
from odeflows.train import train
train(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], progress=False)
"""


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    data = _image_npz(tmp_path / "img.npz", n=64)
    script = tmp_path / "train_one.py"
    script.write_text(SCRIPT)
    single = _cfg(BASE_CLS, train={"batch_size": 16, "epochs": 2})
    ddp = _cfg(BASE_CLS, train={"batch_size": 8, "epochs": 2})
    done = subprocess.run([sys.executable, str(script), json.dumps(single), str(data),
                           str(tmp_path / "single")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script), json.dumps(ddp), str(data),
                           str(tmp_path / "ddp")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "completed"
    # 64 images, global batch 2 x 8 = 16: 4 iterations per epoch, as for the single process
    assert summary["iterations"] == 8
    record = json.loads((tmp_path / "ddp" / "record.json").read_text())
    assert record["world_size"] == 2
    a = torch.load(tmp_path / "single" / "model.pt", weights_only=False)["final_state"]
    b = torch.load(tmp_path / "ddp" / "model.pt", weights_only=False)["final_state"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
