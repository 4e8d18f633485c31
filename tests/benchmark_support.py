"""Running a benchmark script the way the README does, for the tests that check its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_benchmark(script: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` with ``--json`` and ``args``; its figures (it must exit 0:
    the pull benchmarks exit non-zero when a result is lost, doubled or unverified)."""
    command = [sys.executable, str(BENCHMARKS / script), "--json", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result
