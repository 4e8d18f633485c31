"""SGP.32 v1.0.1 and v1.2 side by side: one reference eIM (HTTPS on 127.0.0.1), two emulated
eUICCs, one of each version, and an IPAd for each that follows its card's iotVersion.

    python examples/sgp32_versions.py

What happens:

1. two cards are made, one announcing SGP.32 v1.0.1 in EUICCInfo2, one v1.2 (what
   ``euicc-sim init --sgp32 1.0|1.2`` does);
2. the eIM registers both; the v1.0.1 one without a version, so the eIM learns it from the
   card's EUICCInfo2 (an IpaEuiccData request), the v1.2 one with ``sgp32`` "1.2";
3. the operator enables profile B on each; one ``poll_once()`` per IPAd runs everything, each
   in its card's version (the ProvideEimPackageResult bytes differ: no eidValue and a
   ``BF2B`` notification list in v1.0.1);
4. the eIM's order book shows each EPR verified with the eUICC key, whatever the version.

Unlike the ``ipa`` package, this example imports the emulator and the servers: it wires the
three parts together.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from euicc_protocol import saip
from euicc_servers.eim import build_eim
from euicc_servers.eim import run_in_thread as run_eim
from euicc_sim.card import Euicc
from euicc_sim.config import IOT_VERSIONS, CardConfig
from ipa.device import Ipad
from ipa.pull import PullConfig
from ipa.transport import InProcessTransport

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"


def make_card(version: str) -> Euicc:
    """An emulated eUICC speaking SGP.32 ``version``, with test profiles A (enabled) and B."""
    config = CardConfig(eid="0" * 32, iot_versions=IOT_VERSIONS[version])  # EID: from the cert
    card = Euicc.create(None, config=config)
    for name, on in (("TS48V1-A-UNIQUE.der", True), ("TS48V1-B-UNIQUE.der", False)):
        card.preload((TS48 / name).read_bytes(), notification_address="eim.example", enable=on)
    return card


def main() -> None:
    eim = build_eim("sgp26")
    iccid_b = saip.read_package((TS48 / "TS48V1-B-UNIQUE.der").read_bytes()).iccid
    cards = {"1.0": make_card("1.0"), "1.2": make_card("1.2")}
    with run_eim(eim.core, tls=eim.tls) as server, tempfile.TemporaryDirectory() as state:
        print(f"eIM at {server.base_url}")
        orders = {}
        for version, card in cards.items():
            eim.core.register(card.eid, sgp32=None if version == "1.0" else version)
            if version == "1.0":  # the eIM learns this one's version from its EUICCInfo2
                eim.core.queue(card.eid, {"type": "euiccData", "tagList": "BF22"})
            orders[version] = eim.core.queue(
                card.eid, {"type": "psmo", "operations": [{"enable": {"iccid": iccid_b}}]}
            ).id
        for version, card in cards.items():
            initial = eim.core.configuration(card.eid).add_initial_eim_request()
            config = PullConfig(initial_eim=initial)
            transport = InProcessTransport(card)
            with Ipad(transport, state_dir=f"{state}/{version}", config=config) as ipad:
                outcome = ipad.poll_once()
                spoken = ipad.flow.sgp32.label if ipad.flow.sgp32 else "?"
                print(f"card {version}: the IPAd spoke SGP.32 {spoken}; cycle {outcome.state.name}")
                for package in outcome.packages:
                    kind = package.kind.value if package.kind else "pending result"
                    head = package.result[:4].hex().upper()
                    print(f"  {kind:<20} delivered={package.delivered} result {head}...")
        for version, card in cards.items():
            record = eim.core.store.euicc(card.eid).to_json()
            order = eim.core.store.order(orders[version])
            print(
                f"eIM: EID {card.eid} sgp32={record['sgp32']} ({record['sgp32Source']}), "
                f"enable order {order.state}, verified={order.verified}"
            )
    print("demo finished")


if __name__ == "__main__":
    main()
