"""Start-up time of the commands against the bare interpreter, measured in the same run.

    python benchmarks/cli.py [--json] [--runs N]

Runs, interleaved so that all three see the same machine load:
  python -c pass                  the bare interpreter (the reference)
  ipa --card DIR eid              the IPAd on an emulated card (ES10 GetEID end to end)
  euicc-sim info DIR              the emulator's summary of a card
each ``--runs`` times as a fresh process, on a card with one TS.48 profile kept in a temporary
directory, and prints the median wall time of each and its ratio to the bare interpreter.
Target: ``ipa eid`` and ``euicc-sim info`` at most 15 times ``python -c pass``. The commands are
started as ``python -m ipa`` / ``python -m euicc_sim``, which is what their entry points run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 15.0


def wall(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of one process (its output discarded, its status checked)."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, timeout=120)
    return time.perf_counter() - start


def measure(runs: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Installed packages start from their bytecode cache; measure that, not compilation.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        card = str(Path(tmp) / "card")
        subprocess.run([python, "-m", "euicc_sim", "init", card], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        subprocess.run([python, "-m", "euicc_sim", "preload", card, "TS48V1-A-UNIQUE", "--enable"],
                       env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        commands = {
            "python_pass": [python, "-c", "pass"],
            "ipa_eid": [python, "-m", "ipa", "--card", card, "eid"],
            "euicc_sim_info": [python, "-m", "euicc_sim", "info", card],
        }
        for argv in commands.values():  # warm-up: schema and bytecode caches, OS file cache
            wall(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(wall(argv, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["python_pass"]
    ratios = {name: medians[name] / base for name in ("ipa_eid", "euicc_sim_info")}
    return {
        "runs": runs,
        "median_ms": {name: round(value * 1000, 1) for name, value in medians.items()},
        "ratio_to_python": {name: round(value, 1) for name, value in ratios.items()},
        "limit": LIMIT,
        "ok": all(r <= LIMIT for r in ratios.values()),
    }


def main() -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--runs", type=int, default=15, help="processes per command (default 15)")
    args = parser.parse_args()
    results = measure(args.runs)
    if args.json:
        print(json.dumps(results))
    else:
        medians = results["median_ms"]
        ratios = results["ratio_to_python"]
        assert isinstance(medians, dict) and isinstance(ratios, dict)
        for name, ms in medians.items():
            ratio = f"  {ratios[name]:5.1f}x" if name in ratios else ""
            print(f"{name:<16} {ms:8.1f} ms{ratio}")
        print(f"limit {LIMIT:.0f}x: {'ok' if results['ok'] else 'EXCEEDED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
