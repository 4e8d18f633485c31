"""euicc-sim demo: the SGP.32 story, all on loopback.

    python examples/demo.py [--dir DIR] [--binding asn1|json] [-v]

1. A reference SM-DP+ and a reference eIM start on 127.0.0.1 (HTTPS, GSMA SGP.26 test PKI).
2. A factory makes a device: an emulated eUICC with one TS.48 test profile (enabled, the
   bootstrap connectivity) and the eIM's configuration (ES10b.AddInitialEim).
3. The operator drives the device only through the eIM's operator API (JSON over HTTPS,
   authenticated with the bearer token the eIM made at start): a
   profile download trigger, then enable (a switch), a switch back, and a delete. After each
   order the device's IPAd polls once: GetEimPackage, LoadEuiccPackage or the download
   (ES9+ to the SM-DP+), ProvideEimPackageResult, notifications.
4. Each step prints what the card holds and what the eIM received (the eUICC's signed
   results, verified by the eIM with the eUICC certificate).
"""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

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
BOOTSTRAP = TS48 / "TS48V1-A-UNIQUE.der"
DOWNLOADED = TS48 / "TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"


def step(text: str) -> None:
    print(f"\n--> {text}")


def show_card(card: Euicc) -> None:
    for p in card.state.profiles:
        print(
            f"      card: {iccid_digits(p.iccid):<20} {p.state.name.lower():<8} "
            f"{p.profile_class.name.lower():<11} {p.isdp_aid.hex().upper()}"
        )


class Operator:
    """The eIM's operator API, as an operator's back end would call it."""

    def __init__(self, base_url: str, ca_pem: bytes, token: str) -> None:
        # The operator API is authenticated: a bearer token the eIM made at start.
        self.http = httpx.Client(
            base_url=base_url + "/api",
            verify=_ssl_context(ca_pem),
            headers={"Authorization": f"Bearer {token}"},
        )

    def register(self, eid: str, euicc_cert: bytes, eum_cert: bytes) -> bytes:
        """Register the device with its certificates, so the eIM can verify its results."""
        pem = {"euiccCertificate": _pem(euicc_cert), "eumCertificate": _pem(eum_cert)}
        answer = self.http.post("/euiccs", json={"eid": eid, **pem})
        answer.raise_for_status()
        return bytes.fromhex(answer.json()["addInitialEimRequest"])

    def order(self, eid: str, order: dict[str, Any]) -> int:
        answer = self.http.post(f"/euiccs/{eid}/orders", json=order)
        answer.raise_for_status()
        return int(answer.json()["id"])

    def report(self, order_id: int) -> None:
        order = self.http.get(f"/orders/{order_id}").json()
        verified = {True: "eUICC signature verified", False: "SIGNATURE BAD", None: "unsigned"}
        print(
            f"      eIM: order {order_id} ({order['type']}) {order['state']}, "
            f"{verified[order['signatureVerified']]}"
        )
        result = order.get("result") or {}
        signed = result.get("euiccPackageResultSigned", {}).get("euiccPackageResultDataSigned")
        if signed is not None:
            text = json.dumps(signed.get("euiccResult"), separators=(",", ":"))
            print(f"      eIM: counter {signed['counterValue']}, results {text[:120]}")
        installed = result.get("profileInstallationResult")
        if installed is not None:
            final = installed["profileInstallationResultData"]["finalResult"]
            print(f"      eIM: ProfileInstallationResult {next(iter(final))}")


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def _ssl_context(ca_pem: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem.decode())


def demo(directory: Path, binding: str) -> None:
    nist = load_sgp26(Curve.NIST_P256)
    ca_pem = nist.ci.cert.public_bytes(Encoding.PEM)
    smdp_tls = issue_server_certificate(
        nist.ci, CertRole.DP_TLS, "2.999.10", dns_names=("localhost",), ip_addresses=("127.0.0.1",)
    )
    smdp = SmdpCore(SmdpConfig.from_test_pki([nist], "127.0.0.1", tls=smdp_tls), OrderStore())
    eim = build_eim("sgp26")

    with (
        run_smdpp(create_app(smdp), tls=smdp_tls) as smdp_server,
        run_eim(eim.core, tls=eim.tls) as eim_server,
    ):
        # uvicorn reports the idle keep-alive connections it drops at shutdown; not news here.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        step("an SM-DP+ and an eIM on loopback (HTTPS, GSMA SGP.26 test CI)")
        print(f"      SM-DP+ {smdp_server.base_url}   eIM {eim_server.base_url}")
        smdp.orders.add_order("DEMO-PROFILE", DOWNLOADED)
        print(f"      SM-DP+ order DEMO-PROFILE: {DOWNLOADED.name}")

        step("factory: a new eUICC with a bootstrap TS.48 profile and the eIM's configuration")
        card = Euicc.create(directory / "card")
        card.preload(BOOTSTRAP.read_bytes(), enable=True, notification_address=smdp_server.address)
        assert eim.admin_token is not None
        operator = Operator(eim_server.base_url, ca_pem, eim.admin_token)
        chain = card.credentials.chain_for(None)
        assert chain is not None
        add_initial_eim = operator.register(
            card.eid, chain.euicc_certificate, chain.eum_certificate
        )
        print(f"      EID {card.eid}, registered at the eIM; AddInitialEim on first boot")
        show_card(card)

        config = PullConfig(
            initial_eim=add_initial_eim, esipa=EsipaConfig(binding=Binding(binding))
        )
        with Ipad(InProcessTransport(card), state_dir=directory / "ipad", config=config) as ipad:

            def run(title: str, order: dict[str, Any]) -> None:
                step(title)
                order_id = operator.order(card.eid, order)
                outcome = ipad.poll_once()
                for package in outcome.packages:
                    kind = package.kind.value if package.kind else "pending result"
                    print(f"      IPAd: {kind}, result delivered={package.delivered}")
                show_card(card)
                operator.report(order_id)

            new = saip.read_package(DOWNLOADED.read_bytes()).iccid
            old = saip.read_package(BOOTSTRAP.read_bytes()).iccid
            run(
                "eIM: download trigger (activation code) -> the IPAd downloads from the SM-DP+",
                {"type": "download", "activationCode": f"1${smdp_server.address}$DEMO-PROFILE"},
            )
            print(f"      SM-DP+: order DEMO-PROFILE {smdp.orders.get('DEMO-PROFILE').state.value}")
            run(f"eIM: enable {new} (the card switches)", psmo({"enable": {"iccid": new}}))
            run(f"eIM: enable {old} (switch back)", psmo({"enable": {"iccid": old}}))
            run(f"eIM: delete {new}", psmo({"delete": {"iccid": new}}))
            run("eIM: list the profiles (listProfileInfo)", psmo({"listProfileInfo": {}}))

        step("power cycle: the card reopens from its directory")
        card.close()  # one owner per card directory: let go before opening it again
        with Euicc.open(directory / "card") as reopened:
            show_card(reopened)


def psmo(operation: dict[str, Any]) -> dict[str, Any]:
    return {"type": "psmo", "operations": [operation]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="keep the card and IPAd state here (new dir)")
    parser.add_argument("--binding", choices=("asn1", "json"), default="asn1", help="ESipa")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the protocol flow")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    if args.dir:
        demo(args.dir, args.binding)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            demo(Path(tmp), args.binding)
    print("\ndemo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
