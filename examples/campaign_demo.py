"""euicc-sim campaign demo: a staged enable over a fleet of emulated devices, on loopback.

    python examples/campaign_demo.py [--devices 50] [--batch 10] [-v]

1. The reference eIM starts on 127.0.0.1 (HTTPS, GSMA SGP.26 test PKI).
2. A factory makes the devices: emulated eUICCs holding a TS.48 test profile (disabled) and
   the eIM's configuration; the operator registers them with the label ``fleet=demo``. One
   device is made to fail: its card lacks the profile.
3. The operator starts one campaign through the operator API: enable the profile on every
   device labelled ``fleet=demo``, in waves of ``--batch``, stopping if more than two fail.
   A northbound client follows the eIM's Server-Sent Events meanwhile.
4. The fleet runner polls the eIM for every device (its IPAd: GetEimPackage,
   LoadEuiccPackage, ProvideEimPackageResult); the demo prints the campaign's progress
   until it is done, then the final counts and the failing device's signed result.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from euicc_protocol import saip
from euicc_protocol.crypto import Curve
from euicc_servers.eim import build_eim, run_in_thread
from euicc_sim.card import Euicc
from ipa import es10_iot
from ipa.es10 import Es10Client
from ipa.fleet import FleetConfig, FleetRunner
from ipa.pull import PullConfig
from ipa.transport import InProcessTransport

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = (ROOT / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der").read_bytes()


def make_device(*, with_profile: bool) -> Euicc:
    """An emulated eUICC from the factory (the eIM's configuration added later)."""
    card = Euicc.create(None, curves=(Curve.NIST_P256,))
    if with_profile:
        card.preload(PACKAGE)
    return card


def follow_events(
    url: str, headers: dict[str, str], seen: dict[str, int], stop: threading.Event
) -> None:
    """A northbound client: counts the eIM's events by type (SSE)."""
    timeout = httpx.Timeout(5.0, read=1.0)
    with httpx.Client(verify=False, headers=headers, timeout=timeout) as client:
        last = 0
        while not stop.is_set():
            try:
                with client.stream(
                    "GET", f"{url}/api/events", headers={"Last-Event-ID": str(last)}
                ) as r:
                    for line in r.iter_lines():
                        if line.startswith("data:"):
                            event = json.loads(line[5:])
                            last = event["id"]
                            seen[event["type"]] = seen.get(event["type"], 0) + 1
                        if stop.is_set():
                            return
            except httpx.ReadTimeout:
                continue  # reconnect with Last-Event-ID: nothing is missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)

    iccid = saip.read_package(PACKAGE).iccid
    eim = build_eim("sgp26", scheduler_interval=0.1)
    with run_in_thread(eim.core, tls=eim.tls) as server:
        url = server.base_url
        print(f"== eIM on {url} (operator API token in memory)")
        api = httpx.Client(base_url=url + "/api", headers=eim.core.auth.header, verify=False)

        failing = args.devices // 2
        cards = [make_device(with_profile=i != failing) for i in range(args.devices)]
        for card in cards:
            chain = card.credentials.chains[0]
            body = {
                "eid": card.eid,
                "euiccCertificate": _pem(chain.euicc_certificate),
                "eumCertificate": _pem(chain.eum_certificate),
                "labels": {"fleet": "demo"},
            }
            answer = api.post("/euiccs", json=body)
            answer.raise_for_status()
            request = bytes.fromhex(answer.json()["addInitialEimRequest"])
            with Es10Client.open(InProcessTransport(card)) as client:
                es10_iot.add_initial_eim(client, request)
        print(f"== {len(cards)} devices made and registered with label fleet=demo")
        print(f"   device {cards[failing].eid} is made to fail: its card lacks profile {iccid}")

        seen: dict[str, int] = {}
        stop = threading.Event()
        follower = threading.Thread(
            target=follow_events, args=(url, eim.core.auth.header, seen, stop), daemon=True
        )
        follower.start()

        order = {"type": "psmo", "operations": [{"enable": {"iccid": iccid}}]}
        rollout = {"batchSize": args.batch, "pauseSeconds": 0.2, "maxFailures": 2}
        campaign = api.post(
            "/campaigns",
            json={
                "name": "staged enable",
                "select": {"labels": {"fleet": "demo"}},
                "order": order,
                "rollout": rollout,
            },
        ).json()
        print(f"== campaign {campaign['id']} {campaign['name']!r}: {campaign['total']} devices")
        print(f"   rollout {json.dumps(rollout)}")

        config = FleetConfig(url, pull=PullConfig(max_packages=1), pace=0.3, concurrency=8)
        with FleetRunner(cards, config) as fleet:
            fleet.start()
            shown = None
            while True:
                view = api.get(f"/campaigns/{campaign['id']}").json()
                line = _progress(view)
                if line != shown:
                    print(line, flush=True)
                    shown = line
                if view["state"] in ("done", "stopped"):
                    break
                time.sleep(0.3)
        final = api.get(f"/campaigns/{campaign['id']}").json()
        deadline = time.monotonic() + 5.0  # let the northbound client see the last event
        while f"campaign.{final['state']}" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        follower.join(5)
        api.close()

    counts = final["counts"]
    print(f"== final: {final['state']}, " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    bad = next(d for d in final["devices"] if d["status"] == "failed")
    results = bad["result"]["euiccPackageResultSigned"]["euiccPackageResultDataSigned"][
        "euiccResult"
    ]
    verified = bad["signatureVerified"]
    print(f"   failed: {bad['eid']}: signed result {json.dumps(results)}")
    print(f"   (enableResult 1 = iccidOrAidNotFound), eUICC signature verified: {verified}")
    enabled = sum(card.state.enabled_profile is not None for card in cards)
    print(f"   cards with the profile enabled: {enabled} of {len(cards)}")
    print("   northbound events: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))
    print("demo finished")


def _pem(der: bytes) -> str:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def _progress(view: dict[str, Any]) -> str:
    counts = view["counts"]
    parts = " ".join(f"{k} {v:>2}" for k, v in counts.items() if k != "cancelled")
    return f"   wave {view['wave']}: {view['state']:<7} {parts}"


if __name__ == "__main__":
    main()
