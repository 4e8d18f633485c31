"""ES10 throughput of the in-process card driven through the IPAd's ES10 client.

    python benchmarks/es10.py [--json] [--seconds S]

Measures, on one card kept in a temporary directory (fsync on, as in real use):
  get_eid_per_s              GetEID round trips (channel already open, ISD-R selected)
  get_profiles_info_8_per_s  GetProfilesInfo with 8 installed profiles, all fields
  enable_disable_per_s       durable EnableProfile + DisableProfile cycles (two commits each)
Floors (issue #2): 10,000 / 5,000 / 200 per second.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import report

from euicc_sim.card import Euicc
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

PROFILES = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
FLOORS = {"get_eid_per_s": 10_000, "get_profiles_info_8_per_s": 5_000, "enable_disable_per_s": 200}


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(20):
        fn()
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def run(seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        card = Euicc.create(Path(tmp) / "card", kind="consumer")  # ES10c enable/disable
        packages = sorted(PROFILES.glob("*.der"))[:8]
        for package in packages:
            card.preload(package.read_bytes())
        client = Es10Client.open(InProcessTransport(card))
        iccid = client.get_profiles_info()[0].iccid

        def cycle() -> None:
            client.enable_profile(iccid=iccid)
            client.disable_profile(iccid=iccid)

        assert len(client.get_profiles_info()) == len(packages)
        return {
            "get_eid_per_s": round(rate(client.get_eid, seconds)),
            "get_profiles_info_8_per_s": round(rate(client.get_profiles_info, seconds)),
            "enable_disable_per_s": round(rate(cycle, seconds)),
        }


def main() -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    results = run(args.seconds)
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            mark = "ok" if value >= FLOORS[key] else "BELOW FLOOR"
            print(f"{key:28} {value:>10,} /s   (floor {FLOORS[key]:,}: {mark})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
