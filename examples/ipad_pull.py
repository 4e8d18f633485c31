"""The SGP.32 pull flow in one process: a reference eIM and SM-DP+ (HTTPS on 127.0.0.1), an
emulated eUICC, and the IPAd polling the eIM.

    python examples/ipad_pull.py [--binding json]

What happens:

1. the eIM (SGP.26 test PKI) registers the card's EID and hands out its eIM configuration,
   which the IPAd installs with ES10b.AddInitialEim (a factory step);
2. the operator queues orders at the eIM: enable profile B, an IpaEuiccData request, and a
   profile download (indirect: the eIM relays ES9+ to the SM-DP+);
3. one ``poll_once()`` of the IPAd runs them all: GetEimPackage, LoadEuiccPackage /
   IpaEuiccData / download, ProvideEimPackageResult, until the eIM has nothing more;
4. the eIM's order book shows each result, the EPR signatures verified with the eUICC key.

Unlike the ``ipa`` package, this example imports the emulator and the servers: it wires the
three parts together.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from euicc_protocol import saip
from euicc_protocol.crypto import Curve
from euicc_protocol.pki import CertRole
from euicc_protocol.testpki import issue_server_certificate, load_sgp26
from euicc_servers.eim import build_eim
from euicc_servers.eim import run_in_thread as run_eim
from euicc_servers.smdpp import OrderStore, SmdpConfig, SmdpCore, create_app
from euicc_servers.smdpp import run_in_thread as run_smdpp
from euicc_sim.card import Euicc
from ipa.device import Ipad
from ipa.esipa import Binding, EsipaConfig
from ipa.pull import PullConfig
from ipa.transport import InProcessTransport
from ipa.types import iccid_digits

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binding", choices=("asn1", "json"), default="asn1")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the flow")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    # The SM-DP+, with one TS.48 profile ordered under matching id DEMO-1.
    nist = load_sgp26(Curve.NIST_P256)
    smdp_tls = issue_server_certificate(
        nist.ci, CertRole.DP_TLS, "2.999.10", ip_addresses=("127.0.0.1",)
    )
    smdp = SmdpCore(SmdpConfig.from_test_pki([nist], "127.0.0.1", tls=smdp_tls), OrderStore())
    smdp.orders.add_order("DEMO-1", TS48 / "TS48V3-SAIP2-1-NOBERTLV-UNIQUE.der")

    # The eIM, and a card with two test profiles (A enabled).
    eim = build_eim("sgp26")
    card = Euicc.create(None)
    for name, on in (("TS48V1-A-UNIQUE.der", True), ("TS48V1-B-UNIQUE.der", False)):
        card.preload((TS48 / name).read_bytes(), enable=on)
    iccid_b = saip.read_package((TS48 / "TS48V1-B-UNIQUE.der").read_bytes()).iccid

    with (
        run_smdpp(create_app(smdp), tls=smdp_tls) as smdp_server,
        run_eim(eim.core, tls=eim.tls) as eim_server,
    ):
        print(f"eIM at {eim_server.base_url}, SM-DP+ at {smdp_server.base_url}")
        eim.core.register(card.eid)
        initial = eim.core.configuration(card.eid).add_initial_eim_request()

        orders = [
            eim.core.queue(card.eid, order).id
            for order in (
                {"type": "psmo", "operations": [{"enable": {"iccid": iccid_b}}]},
                {"type": "euiccData", "tagList": ["euiccInfo2", "ipaCapabilities"]},
                {"type": "download", "activationCode": f"1${smdp_server.address}$DEMO-1"},
            )
        ]

        config = PullConfig(
            initial_eim=initial,  # an unprovisioned card gets it with AddInitialEim
            esipa=EsipaConfig(binding=Binding(args.binding)),
        )
        with (
            tempfile.TemporaryDirectory() as state,
            Ipad(InProcessTransport(card), state_dir=state, config=config) as ipad,
        ):
            outcome = ipad.poll_once()
            print(f"EID {ipad.eid}: cycle ended in {outcome.state.name}, error {outcome.error}")
            for package in outcome.packages:
                kind = package.kind.value if package.kind else "pending result"
                print(f"  {kind:<31} delivered={package.delivered} acks={package.acknowledged}")

        for order_id in orders:
            order = eim.core.store.order(order_id)
            print(
                f"eIM order {order.id} {order.kind:<9} {order.state:<6} verified={order.verified}"
            )
        print("SM-DP+ order DEMO-1:", smdp.orders.get("DEMO-1").state)
        for profile in card.state.profiles:
            print("profile", iccid_digits(profile.iccid), profile.state.name)


if __name__ == "__main__":
    main()
