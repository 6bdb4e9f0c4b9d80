"""Virtual environments the benchmarks run other processes in (pinned, reused): the peer servers,
each installed from PyPI, and our images' locked dependencies, so what is measured runs on
exactly the packages it is deployed with."""

from __future__ import annotations

import hashlib
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
    # Our App under well-kept ASGI servers; its own dependencies come from LOCKED below.
    "asgi": ["uvicorn[standard]==0.54.0", "granian==2.8.7"],
    # The operator image's packages and nothing else: the dev environment has more (the
    # asynchronous Kubernetes client, pykube), which kopf imports when it finds them.
    "operator": [],
}
IMAGES = Path(__file__).resolve().parents[2] / "images"
# Installed first (with their hashes) where a venv runs our code: that image's lock, so (for the
# server) numpy, scikit-learn, uvloop, httptools and orjson are the versions it runs on.
LOCKED: dict[str, Path] = {
    "asgi": IMAGES / "server" / "requirements.txt",
    "operator": IMAGES / "operator" / "requirements.txt",
}


def python(peer: str) -> Path:
    """The peer's interpreter, creating its virtual environment on first use."""
    venv = CACHE / "venvs" / peer
    marker = venv / "installed.txt"
    wanted = "\n".join(PEERS[peer])
    lock = LOCKED.get(peer)
    if lock is not None:
        wanted += f"\n{lock.name} sha256:{hashlib.sha256(lock.read_bytes()).hexdigest()}"
    if marker.exists() and marker.read_text() == wanted:
        return venv / "bin" / "python"
    print(f"installing {peer} into {venv} ...", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    if lock is not None:
        # Apart: pip wants hashes for every requirement of a call once one has them.
        subprocess.run([*pip, "--require-hashes", "-r", str(lock)], check=True)
    if PEERS[peer]:
        subprocess.run([*pip, *PEERS[peer]], check=True)
    marker.write_text(wanted)
    return venv / "bin" / "python"
