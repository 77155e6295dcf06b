"""The entry points the wheel installs: `grokstack` on PATH and `python -m grokstack`."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import grokstack


def run(*command):
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def test_grokstack_is_on_path_in_the_venv():
    found = shutil.which("grokstack")
    assert found and Path(found).parent == Path(sys.executable).parent
    assert grokstack.find_binary() == found


def test_version_and_help():
    assert run("grokstack", "--version").strip() == f"grokstack {grokstack.__version__}"
    help_text = run("grokstack", "--help")
    assert "train" in help_text and "analyze" in help_text and "export" in help_text


def test_python_dash_m():
    assert run(sys.executable, "-m", "grokstack", "--help") == run("grokstack", "--help")
    assert run(sys.executable, "-m", "grokstack", "--version").strip() == f"grokstack {grokstack.__version__}"
    failed = subprocess.run([sys.executable, "-m", "grokstack", "analyze", "/nonexistent"], capture_output=True, text=True)
    assert failed.returncode == 1 and failed.stderr.startswith("error:")


def test_grokstack_bin_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("GROKSTACK_BIN", str(tmp_path / "missing"))
    with pytest.raises(grokstack.GrokstackError, match="GROKSTACK_BIN"):
        grokstack.find_binary()
    monkeypatch.setenv("GROKSTACK_BIN", shutil.which("grokstack"))
    assert grokstack.find_binary() == shutil.which("grokstack")
