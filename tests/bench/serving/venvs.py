"""Peer servers, each installed from PyPI into its own virtual environment (pinned, reused)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import sklearn

CACHE = Path.home() / ".cache" / "modelyard" / "bench"
# The same scikit-learn as ours everywhere: the model files are pickles, not portable across
# minor versions.
SKLEARN = f"scikit-learn=={sklearn.__version__}"
PEERS: dict[str, list[str]] = {
    # uvloop 0.22 made get_event_loop() raise without a running loop, which MLServer 1.7.1's
    # inference workers call at start: they die at once with newer ones.
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", SKLEARN],
    "kserve": ["kserve==0.21.0", SKLEARN],
    "fastapi": ["fastapi==0.163.2", "uvicorn[standard]==0.54.0", SKLEARN],
}


def python(peer: str) -> Path:
    """The peer's interpreter, creating its virtual environment on first use."""
    venv = CACHE / "venvs" / peer
    marker = venv / "installed.txt"
    wanted = "\n".join(PEERS[peer])
    if marker.exists() and marker.read_text() == wanted:
        return venv / "bin" / "python"
    print(f"installing {peer} into {venv} ...", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *PEERS[peer]], check=True)
    marker.write_text(wanted)
    return venv / "bin" / "python"
