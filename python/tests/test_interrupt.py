"""Ctrl-C during `grokstack.train`: the CLI checkpoints and stops, Python raises
KeyboardInterrupt, and `resume=True` finishes the sweep."""
import json
import signal
import subprocess
import sys
import time

import grokstack

# Long enough (a few seconds) to be interrupted in the middle.
SLOW = {
    "name": "slow",
    "seeds": 2,
    "task": {"op": "add", "p": 47, "train_fraction": 0.6},
    "model": {"embed_dim": 32, "hidden": [128, 128]},
    "train": {"epochs": 300, "log_every": 10},
}


def test_ctrl_c_checkpoints_and_resume_finishes(tmp_path):
    out = tmp_path / "slow"
    code = f"import grokstack, json; grokstack.train(json.loads({json.dumps(json.dumps(SLOW))}), {str(out)!r})"
    # Only the Python process gets SIGINT, as from a notebook's interrupt; it must pass it on.
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (out / "plan.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0
    assert "KeyboardInterrupt" in stderr and "continue with --resume" in stderr, stderr
    assert any((out / "checkpoints").iterdir())
    assert not (out / "runs.parquet").exists()

    resumed = grokstack.train(SLOW, out, resume=True)
    assert resumed.runs["epochs_trained"].to_list() == [300, 300]
