"""promtool (Prometheus's checker) for the tests: from PATH, else unpacked from Debian's `prometheus`
package into .venv-tools/prometheus (`apt-get download` and `dpkg -x`: no root, no maintainer
scripts, no daemon started), else a failure that says how to get it."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNPACKED = ROOT / ".venv-tools" / "prometheus"
BINARY = UNPACKED / "usr" / "bin" / "promtool"
HOW = (
    "promtool is needed to check infra/observability/prometheus: `apt-get install prometheus` (Debian, "
    "Ubuntu), or put a promtool from https://prometheus.io/download/ on PATH"
)


def promtool() -> Path:
    """A runnable promtool; pytest.fail with how to get one when there is none to be had."""
    found = shutil.which("promtool")
    if found is not None:
        return Path(found)
    if BINARY.exists():
        return BINARY
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.fail(f"{HOW}. (No apt-get here to fetch it.)")
    with tempfile.TemporaryDirectory() as download:
        fetched = _download(Path(download))
        if fetched is None and os.geteuid() == 0:
            # Package lists may be missing or stale on a fresh machine: refresh them once.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False, timeout=300)
            fetched = _download(Path(download))
        if fetched is None:
            pytest.fail(f"{HOW}. (`apt-get download prometheus` failed; as root, `apt-get update` may help.)")
        subprocess.run(["dpkg", "-x", str(fetched), str(UNPACKED)], capture_output=True, check=True, timeout=120)
    if not BINARY.exists():
        pytest.fail(f"{HOW}. (The prometheus package had no usr/bin/promtool.)")
    return BINARY


def _download(into: Path) -> Path | None:
    result = subprocess.run(
        ["apt-get", "download", "-qq", "prometheus"], cwd=into, capture_output=True, check=False, timeout=300
    )
    packages = sorted(into.glob("prometheus_*.deb"))
    return packages[0] if result.returncode == 0 and packages else None
