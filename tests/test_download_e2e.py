"""Every TS.48 profile downloads into the emulated card over real HTTPS on 127.0.0.1.

The IPAd's download flow drives an in-process card and talks ES9+ to the reference SM-DP+ in a
background thread; TLS is verified against the test CI only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from euicc_protocol import saip
from euicc_protocol.crypto import Curve
from euicc_protocol.pki import CertRole
from euicc_protocol.testpki import issue_server_certificate, load_sgp26
from euicc_servers.smdpp import OrderState, OrderStore, SmdpConfig, SmdpCore, create_app
from euicc_servers.smdpp import run_in_thread as run_smdpp
from euicc_sim.card import Euicc
from ipa.codes import ProfileState
from ipa.download import download_profile_sync
from ipa.es9p import Es9Config
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
PACKAGES = sorted(p.name for p in TS48.glob("*.der"))


@pytest.fixture(scope="module")
def smdpp() -> Iterator[tuple[Any, str, Es9Config]]:
    nist = load_sgp26(Curve.NIST_P256)
    tls = issue_server_certificate(
        nist.ci, CertRole.DP_TLS, "2.999.10", dns_names=("localhost",), ip_addresses=("127.0.0.1",)
    )
    core = SmdpCore(SmdpConfig.from_test_pki([nist], "127.0.0.1", tls=tls), OrderStore())
    config = Es9Config(ca_certificates=(nist.ci.cert.public_bytes(Encoding.PEM),), timeout=10)
    with run_smdpp(create_app(core), tls=tls) as server:
        yield core, server.address, config


@pytest.fixture(scope="module")
def card() -> Euicc:
    return Euicc.create(None)  # one card collects all nine profiles


@pytest.mark.parametrize("package", PACKAGES)
def test_ts48_profile_downloads_over_https_with_its_iccid(
    smdpp: tuple[Any, str, Es9Config], card: Euicc, package: str
) -> None:
    core, address, config = smdpp
    matching_id = f"E2E-{package}"
    core.orders.add_order(matching_id, TS48 / package)
    with Es10Client.open(InProcessTransport(card)) as client:
        result = download_profile_sync(client, f"LPA:1${address}${matching_id}", config=config)
        installed = {p.iccid: p for p in client.get_profiles_info()}
        pending = client.retrieve_notifications_list()
    iccid = saip.read_package((TS48 / package).read_bytes()).iccid
    assert result.iccid == iccid
    assert installed[iccid].profile_state == ProfileState.DISABLED
    assert installed[iccid].isdp_aid == result.isdp_aid
    assert result.notification_delivered and result.notification_removed and pending == []
    assert core.orders.get(matching_id).state == OrderState.INSTALLED
    stored = card.profile_package(card.state.profile_by_iccid(installed[iccid].iccid_raw))
    assert stored == (TS48 / package).read_bytes()
