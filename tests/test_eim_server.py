"""The reference eIM (euicc_servers.eim): both ESipa bindings byte for byte, signed packages and
counters, EPR verification and acknowledgements, the operator API, persistence, and the
indirect download relayed to the reference SM-DP+.

Most tests talk to the ASGI app in-process (httpx.ASGITransport). Some play the eUICC with a
key of their own (to sign results, or forge them); others use the emulated card (euicc_sim)
through the ES10 client, which is what an IPAd does. Two tests run real uvicorn servers over
HTTPS on 127.0.0.1, TLS verified against the test CI.
"""

from __future__ import annotations

import argparse
import base64
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_client import AsgiClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import crypto, pki, schema, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import make_eid
from euicc_protocol.iccid import iccid_to_ef
from euicc_protocol.testpki import TestPki, generate_test_pki, issue_euicc_certificate
from euicc_servers.eim import build_eim, create_app, run_in_thread
from euicc_servers.eim import serve as eim_serve
from euicc_servers.eim.esipa import EimCore
from euicc_servers.eim.relay import SmdpRelay
from euicc_servers.smdpp import FunctionFailed, OrderState, SmdpConfig, SmdpCore
from euicc_servers.smdpp import create_app as create_smdp_app
from euicc_servers.smdpp import run_in_thread as run_smdp_in_thread
from euicc_servers.smdpp.app import execute as smdp_execute
from euicc_sim.card import Euicc
from ipa import es10_download
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
PACKAGE = TS48 / "TS48V1-A-UNIQUE.der"
ICCID = "8949449999999990023"  # of PACKAGE
ASN1 = {"Content-Type": "application/x-gsma-rsp-asn1", "X-Admin-Protocol": "gsma/rsp/v2.1.0"}
JSON = {"Content-Type": "application/json", "X-Admin-Protocol": "gsma/rsp/v2.1.0"}
FQDN = "127.0.0.1:8444"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def children(data: bytes) -> list[bytes]:
    """The complete TLVs inside the TLV ``data`` starts with."""
    outer = tlv.read_tlv(data)
    out, pos = [], outer.value_start
    for item in tlv.iter_tlvs(data, outer.value_start, outer.value_end):
        out.append(data[pos : item.end])
        pos = item.end
    return out


def value(data: bytes) -> bytes:
    return tlv.read_tlv(data).value(data)


class Client(AsgiClient):
    """The eIM app in-process, with ESipa and operator API helpers."""

    def __init__(self, app: Any) -> None:
        super().__init__(app, "http://eim.test")
        token = app.state.core.admin_token
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}

    def esipa(self, message: bytes, *, status: int = 200) -> bytes:
        response = self.request("POST", "/gsma/rsp2/asn1", content=message, headers=ASN1)
        assert response.status_code == status, response.text
        if status == 200:
            assert response.headers["content-type"] == "application/x-gsma-rsp-asn1"
        return response.content

    def json(self, function: str, body: dict[str, Any]) -> httpx.Response:
        return self.request("POST", f"/gsma/rsp2/esipa/{function}", json=body, headers=JSON)

    def api(self, method: str, url: str, status: int, **kwargs: Any) -> Any:
        kwargs["headers"] = {**self.auth, **kwargs.get("headers", {})}
        response = self.request(method, "/api" + url, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def nist() -> TestPki:
    return generate_test_pki(Curve.NIST_P256)


class Euiccish:
    """An eUICC played by the test: EID, key and certificate under the test EUM."""

    def __init__(self, test_pki: TestPki) -> None:
        self.eid = make_eid("89049032")
        self.key, cert = issue_euicc_certificate(test_pki.eum.cert, test_pki.eum.key, self.eid)
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.eid_bytes = bytes.fromhex(self.eid)

    def result(
        self,
        package: bytes,
        seq: int,
        results: list[tuple[str, Any]],
        token: int,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """The signed EPR a card would answer to ``package`` (a BF51 request)."""
        signed = schema.decode("EuiccPackageRequest", package)["euiccPackageSigned"]
        data = schema.encode(
            "EuiccPackageResultDataSigned",
            {
                "eimId": signed["eimId"],
                "counterValue": signed["counterValue"],
                "eimTransactionId": signed["eimTransactionId"],
                "seqNumber": seq,
                "euiccResult": results,
            },
        )
        token_tlv = tlv.encode_tlv(b"\x84", bytes([token]))
        signature = crypto.sign_raw(key or self.key, data + token_tlv)
        body = tlv.encode_tlv(b"\xa0", data + tlv.encode_tlv(b"\x5f\x37", signature))
        return tlv.encode_tlv(b"\xbf\x51", body)


def new_eim(test_pki: TestPki, state: Path | None = None, **options: Any) -> tuple[EimCore, Client]:
    eim = build_eim(test_pki, eim_fqdn=FQDN, state_dir=state, **options)
    return eim.core, Client(create_app(eim.core))


def register(client: Client, euicc: Euiccish, **fields: Any) -> dict[str, Any]:
    body = {"eid": euicc.eid, "euiccCertificate": euicc.cert_pem, **fields}
    return dict(client.api("POST", "/euiccs", 201, json=body))


def get_package(client: Client, eid: bytes) -> bytes:
    return client.esipa(schema.encode("GetEimPackageRequest", {"eidValue": eid}))


def provide(client: Client, eid: bytes | None, result: bytes) -> bytes:
    content = (tlv.encode_tlv(b"\x5a", eid) if eid else b"") + result
    return client.esipa(tlv.encode_tlv(b"\xbf\x50", content))


def enable(iccid: str = ICCID) -> dict[str, Any]:
    return {"type": "psmo", "operations": [{"enable": {"iccid": iccid}}]}


# --- GetEimPackage ---------------------------------------------------------------------------


def test_nothing_queued_is_no_eim_package_available_byte_exact(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    register(client, euicc)
    assert get_package(client, euicc.eid_bytes) == bytes.fromhex("BF4F03020101")


def test_unknown_and_invalid_eids(nist: TestPki) -> None:
    _, client = new_eim(nist)
    unknown = bytes.fromhex(make_eid("89049032"))
    assert get_package(client, unknown) == bytes.fromhex("BF4F03020102")  # eidNotFound
    assert get_package(client, b"\xab" * 16) == bytes.fromhex("BF4F03020103")  # invalidEid


def test_wrong_content_type_is_415_and_unsupported_messages_400(nist: TestPki) -> None:
    _, client = new_eim(nist)
    message = schema.encode("GetEimPackageRequest", {"eidValue": b"\x89" * 16})
    for content_type in ("application/json", "application/octet-stream", None):
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.request("POST", "/gsma/rsp2/asn1", content=message, headers=headers)
        assert response.status_code == 415
    # TransferEimPackageResponse belongs to the push direction; garbage; trailing bytes
    for bad in (bytes.fromhex("BF4E020500"), b"\x01\x02", message + b"\x00", b""):
        client.esipa(bad, status=400)


def test_queued_enable_is_signed_over_the_package_and_the_token(nist: TestPki) -> None:
    core, client = new_eim(nist)
    euicc = Euiccish(nist)
    token = register(client, euicc, associationToken=42)["euicc"]["associationToken"]
    assert token == 42
    order = client.api("POST", f"/euiccs/{euicc.eid}/orders", 201, json=enable())
    assert order["state"] == "queued"

    answer = get_package(client, euicc.eid_bytes)
    (package,) = children(answer)
    assert answer[:2] == b"\xbf\x4f" and package[:2] == b"\xbf\x51"
    signed, signature = children(package)
    assert signature[:3] == b"\x5f\x37\x40"
    fields = children(signed)
    assert [f[:1] for f in fields] == [b"\x80", b"\x5a", b"\x81", b"\x82", b"\xa0"]
    assert value(fields[0]) == core.settings.eim_id.encode()
    assert value(fields[1]) == euicc.eid_bytes
    assert fields[2] == bytes.fromhex("810101")  # first counterValue: 1
    assert children(fields[4]) == [
        tlv.encode_tlv(b"\xa3", tlv.encode_tlv(b"\x5a", iccid_to_ef(ICCID)))
    ]
    eim_key = nist.eim.public_key
    crypto.verify_raw(eim_key, value(signature), signed + bytes.fromhex("84012A"))
    with pytest.raises(crypto.InvalidSignature):  # the token TLV is part of the signed data
        crypto.verify_raw(eim_key, value(signature), signed)

    shown = client.api("GET", f"/orders/{order['id']}", 200)
    assert shown["state"] == "sent" and shown["counterValue"] == 1
    assert shown["eimTransactionId"] == value(fields[3]).hex().upper()
    assert bytes.fromhex(shown["package"]) == package
    # Pending until its result arrives: every poll gets the same bytes (same tid, counter).
    assert get_package(client, euicc.eid_bytes) == answer
    assert client.api("GET", f"/orders/{order['id']}", 200)["counterValue"] == 1


def test_counters_increase_per_package_and_per_euicc(nist: TestPki) -> None:
    _, client = new_eim(nist)
    first, second = Euiccish(nist), Euiccish(nist)
    token = register(client, first)["euicc"]["associationToken"]
    register(client, second, counterValue=10)
    for euicc in (first, second, first):
        client.api("POST", f"/euiccs/{euicc.eid}/orders", 201, json=enable())
    counters = []
    for euicc in (first, first, second):
        package = children(get_package(client, euicc.eid_bytes))[0]
        signed = schema.decode("EuiccPackageRequest", package)["euiccPackageSigned"]
        counters.append(signed)
        if euicc is first:  # complete it, so that the next poll gets the next package
            epr = euicc.result(package, len(counters), [("enableResult", 0)], token)
            provide(client, euicc.eid_bytes, epr)
    assert [c["counterValue"] for c in counters] == [1, 2, 11]
    assert client.api("GET", f"/euiccs/{first.eid}", 200)["euicc"]["counterValue"] == 2


def test_every_psmo_and_eco_encodes(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    register(client, euicc)
    other_key = crypto.generate_private_key(Curve.NIST_P256).public_key()
    psmos = [
        {"enable": {"iccid": ICCID, "rollbackFlag": True}},
        {"disable": {"iccid": ICCID}},
        {"delete": {"iccid": ICCID}},
        {"listProfileInfo": {"searchCriteria": {"profileClass": "operational"}, "tagList": "5A"}},
        {"getRAT": {}},
        {"configureImmediateEnable": {"immediateEnableFlag": True, "defaultSmdpOid": "2.999.10"}},
        {"setFallbackAttribute": {"iccid": ICCID}},
        {"unsetFallbackAttribute": {}},
        {"setDefaultDpAddress": {"defaultDpAddress": "smdp.example.com"}},
    ]
    spki = other_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    ecos = [
        {
            "addEim": {
                "eimId": "other",
                "eimFqdn": "other.example:443",
                "counterValue": 5,
                "associationToken": -1,
                "eimPublicKey": spki,
            }
        },
        {"updateEim": {"eimId": "other", "eimFqdn": "moved.example"}},
        {"deleteEim": {"eimId": "other"}},
        {"listEim": {}},
    ]
    client.api(
        "POST", f"/euiccs/{euicc.eid}/orders", 201, json={"type": "psmo", "operations": psmos}
    )
    client.api("POST", f"/euiccs/{euicc.eid}/orders", 201, json={"type": "eco", "operations": ecos})
    kinds = []
    for _ in range(2):
        package = children(get_package(client, euicc.eid_bytes))[0]
        kinds.append(schema.decode("EuiccPackageRequest", package)["euiccPackageSigned"])
        orders = client.api("GET", f"/euiccs/{euicc.eid}/orders", 200)["orders"]
        sent = next(o["id"] for o in orders if o["state"] == "sent")
        client.api("DELETE", f"/orders/{sent}", 200)  # cancelled: the next one comes
    psmo_kind, psmo_ops = kinds[0]["euiccPackage"]
    assert psmo_kind == "psmoList"
    assert [name for name, _ in psmo_ops] == [next(iter(p)) for p in psmos]
    assert psmo_ops[0][1] == {"iccid": iccid_to_ef(ICCID), "rollbackFlag": None}
    eco_kind, eco_ops = kinds[1]["euiccPackage"]
    assert eco_kind == "ecoList"
    assert [name for name, _ in eco_ops] == ["addEim", "updateEim", "deleteEim", "listEim"]
    assert eco_ops[0][1]["associationToken"] == -1
    assert eco_ops[0][1]["eimPublicKeyData"][0] == "eimPublicKey"


# --- ProvideEimPackageResult -----------------------------------------------------------------


def _sent_enable(client: Client, euicc: Euiccish) -> tuple[int, bytes]:
    order = client.api("POST", f"/euiccs/{euicc.eid}/orders", 201, json=enable())
    return order["id"], children(get_package(client, euicc.eid_bytes))[0]


def test_signed_epr_is_verified_stored_and_acknowledged(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    token = register(client, euicc)["euicc"]["associationToken"]
    order_id, package = _sent_enable(client, euicc)
    epr = euicc.result(package, 7, [("enableResult", 0)], token)

    assert provide(client, euicc.eid_bytes, epr) == bytes.fromhex("BF5006BF5303800107")
    order = client.api("GET", f"/orders/{order_id}", 200)
    assert (order["state"], order["signatureVerified"]) == ("done", True)
    data = order["result"]["euiccPackageResultSigned"]["euiccPackageResultDataSigned"]
    assert data["seqNumber"] == 7 and data["euiccResult"] == [{"enableResult": 0}]
    assert data["counterValue"] == order["counterValue"] == 1
    assert bytes.fromhex(order["resultRaw"]) == epr
    # The same result again (acknowledgement lost): acknowledged again, stored once.
    assert provide(client, euicc.eid_bytes, epr) == bytes.fromhex("BF5006BF5303800107")
    assert len(client.api("GET", f"/orders/{order_id}", 200)["events"]) == 1


def test_forged_epr_is_recorded_but_neither_accepted_nor_acknowledged(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    token = register(client, euicc)["euicc"]["associationToken"]
    order_id, package = _sent_enable(client, euicc)
    forger = crypto.generate_private_key(Curve.NIST_P256)
    forged = euicc.result(package, 3, [("enableResult", 0)], token, key=forger)
    wrong_token = euicc.result(package, 3, [("enableResult", 0)], token % 127 + 1)

    for bad in (forged, wrong_token):
        assert provide(client, euicc.eid_bytes, bad) == bytes.fromhex("BF50023000")
    order = client.api("GET", f"/orders/{order_id}", 200)
    assert order["state"] == "sent" and order["result"] is None
    assert [(e["accepted"], e["signatureVerified"]) for e in order["events"]] == [
        (False, False),
        (False, False),
    ]
    assert order["events"][0]["note"] == "unverified report: the eUICC signature does not verify"
    assert order["unverifiedReport"] == order["events"][1]["note"]
    # The genuine result still completes the order.
    genuine = euicc.result(package, 3, [("enableResult", 0)], token)
    assert provide(client, euicc.eid_bytes, genuine) == bytes.fromhex("BF5006BF5303800103")
    assert client.api("GET", f"/orders/{order_id}", 200)["state"] == "done"


def test_epr_with_another_counter_or_eim_is_rejected(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    token = register(client, euicc)["euicc"]["associationToken"]
    order_id, package = _sent_enable(client, euicc)
    request = schema.decode("EuiccPackageRequest", package)
    request["euiccPackageSigned"]["counterValue"] = 9  # same transaction id, other counter
    other = schema.encode("EuiccPackageRequest", request)
    epr = euicc.result(other, 4, [("enableResult", 0)], token)
    assert provide(client, euicc.eid_bytes, epr) == bytes.fromhex("BF50023000")
    event = client.api("GET", f"/orders/{order_id}", 200)["events"][0]
    assert event["note"] == "counterValue 9 is not the order's 1"


def test_unsigned_errors_are_reports_that_do_not_end_the_order(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    token = register(client, euicc)["euicc"]["associationToken"]
    order_id, package = _sent_enable(client, euicc)
    tid = schema.decode("EuiccPackageRequest", package)["euiccPackageSigned"]["eimTransactionId"]
    unsigned = schema.encode(
        "EuiccPackageResult",
        ("euiccPackageErrorUnsigned", {"eimId": "eim.euicc-sim.test", "eimTransactionId": tid}),
    )
    assert provide(client, euicc.eid_bytes, unsigned) == bytes.fromhex("BF50023000")
    order = client.api("GET", f"/orders/{order_id}", 200)
    assert order["state"] == "sent" and "euiccPackageErrorUnsigned" in order["unverifiedReport"]
    # An IPAd that cannot run a package says so (unsigned too); without eidValue the
    # transaction id finds the order.
    error = tlv.encode_tlv(b"\xa0", tlv.encode_tlv(b"\x80", tid) + bytes.fromhex("020102"))
    assert provide(client, None, error) == bytes.fromhex("BF50023000")
    order = client.api("GET", f"/orders/{order_id}", 200)
    assert order["state"] == "sent" and "unknownPackage (2)" in order["unverifiedReport"]
    assert get_package(client, euicc.eid_bytes) == tlv.encode_tlv(b"\xbf\x4f", package)
    # A signed error, verified, ends it.
    error_data = {
        "eimId": "eim.euicc-sim.test",
        "counterValue": 1,
        "eimTransactionId": tid,
        "euiccPackageErrorCode": 4,
    }
    data = schema.encode("EuiccPackageErrorDataSigned", error_data)
    signature = crypto.sign_raw(euicc.key, data + tlv.encode_tlv(b"\x84", bytes([token])))
    signed_error = schema.encode(
        "EuiccPackageResult",
        (
            "euiccPackageErrorSigned",
            {"euiccPackageErrorDataSigned": error_data, "euiccSignEPE": signature},
        ),
    )
    provide(client, euicc.eid_bytes, signed_error)
    order = client.api("GET", f"/orders/{order_id}", 200)
    assert order["state"] == "failed" and "replayError (4)" in order["error"]


def test_result_errors(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    register(client, euicc)
    _, package = _sent_enable(client, euicc)
    epr = euicc.result(package, 1, [("enableResult", 0)], 1)
    unknown = bytes.fromhex(make_eid("89049032"))
    assert provide(client, unknown, epr) == bytes.fromhex("BF5003020102")  # eidNotFound
    assert provide(client, b"\xff" * 16, epr) == bytes.fromhex("BF5003020103")  # invalidEid
    stranger = Euiccish(nist).result(
        schema.encode(
            "EuiccPackageRequest",
            {
                "euiccPackageSigned": {
                    "eimId": "x",
                    "eidValue": b"\x89" * 16,
                    "counterValue": 77,
                    "eimTransactionId": b"\x01",
                    "euiccPackage": ("psmoList", []),
                },
                "eimSignature": b"\x00" * 64,
            },
        ),
        1,
        [],
        1,
    )
    assert provide(client, None, stranger) == bytes.fromhex("BF5003020104")  # missingEid


def test_notifications_in_a_result_are_stored_and_acknowledged(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    token = register(client, euicc)["euicc"]["associationToken"]
    _, package = _sent_enable(client, euicc)
    epr = euicc.result(package, 5, [("enableResult", 0)], token)
    metadata = schema.encode(
        "NotificationMetadata",
        {
            "seqNumber": 4,
            "profileManagementOperation": schema.bits([2]),
            "notificationAddress": "smdp.example.com",
            "iccid": iccid_to_ef(ICCID),
        },
    )
    signature = crypto.sign_raw(euicc.key, metadata)
    issuer = nist.eum.cert_der
    cert_der = pki.load_certificate(euicc.cert_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    other = tlv.encode_tlv(
        b"\x30", metadata + tlv.encode_tlv(b"\x5f\x37", signature) + cert_der + issuer
    )
    both = tlv.encode_tlv(b"\x30", epr + tlv.encode_tlv(b"\xa0", other))
    assert provide(client, euicc.eid_bytes, both) == bytes.fromhex("BF5009BF5306800104800105")
    events = client.api("GET", f"/euiccs/{euicc.eid}/events", 200)["events"]
    assert [(e["kind"], e["seqNumber"], e["signatureVerified"]) for e in events] == [
        ("epr", 5, True),
        ("notification", 4, True),
    ]
    # Alone, through HandleNotification: stored, no response message, nothing to acknowledge.
    handle = tlv.encode_tlv(b"\xbf\x3d", tlv.encode_tlv(b"\xa0", other))
    assert client.esipa(handle, status=204) == b""


# --- JSON binding ----------------------------------------------------------------------------


def test_json_binding_equivalents(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    token = register(client, euicc)["euicc"]["associationToken"]
    eid_hex = euicc.eid_bytes.hex()

    response = client.json("getEimPackage", {"eidValue": eid_hex})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert response.json() == {
        "header": {"functionExecutionStatus": {"status": "Executed-Success"}},
        "eimPackageError": 1,
    }
    unknown = client.json("getEimPackage", {"eidValue": make_eid("89049032")})
    assert unknown.json()["eimPackageError"] == 2

    client.api("POST", f"/euiccs/{euicc.eid}/orders", 201, json=enable())
    answer = client.json(
        "getEimPackage",
        {"eidValue": eid_hex, "notifyStateChange": True, "stateChangeCause": 1, "rPlmn": "62F210"},
    ).json()
    package = base64.b64decode(answer["euiccPackageRequest"])
    assert package[:2] == b"\xbf\x51"
    # The IPAd's word, unsigned: an event to show, not a fact of the record.
    (change,) = client.api("GET", f"/euiccs/{euicc.eid}/events", 200)["events"]
    assert (change["kind"], change["signatureVerified"]) == ("stateChange", None)
    assert change["decoded"]["stateChangeCause"] == 1 and change["decoded"]["rPLMN"] == "62F210"

    epr = euicc.result(package, 9, [("enableResult", 0)], token)
    body = {"eidValue": eid_hex, "eimPackageResult": b64(epr)}
    answer = client.json("provideEimPackageResult", body).json()
    assert base64.b64decode(answer["eimAcknowledgements"]) == bytes.fromhex("BF5303800109")
    assert (
        client.json("provideEimPackageResult", {"eimPackageResult": b64(b"\x02\x01\x05")}).json()[
            "header"
        ]["functionExecutionStatus"]["status"]
        == "Failed"
    )

    missing = client.json("getEimPackage", {}).json()["header"]["functionExecutionStatus"]
    assert missing["status"] == "Failed"
    assert (missing["statusCodeData"]["subjectCode"], missing["statusCodeData"]["reasonCode"]) == (
        "1.3.1",
        "2.2",
    )
    wrong = client.request(
        "POST",
        "/gsma/rsp2/esipa/getEimPackage",
        content=b"{}",
        headers={"Content-Type": "text/plain"},
    ).json()["header"]["functionExecutionStatus"]["statusCodeData"]
    assert wrong["subjectCode"] == "1.2.1"
    assert client.json("transferEimPackage", {}).status_code == 501
    assert client.json("nonsense", {}).status_code == 404
    pir_free = client.json("handleNotification", {"pendingNotification": b64(b"\x30\x00")})
    assert pir_free.json()["header"]["functionExecutionStatus"]["status"] == "Failed"


# --- operator API ----------------------------------------------------------------------------


def test_operator_api_validation_errors(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)

    def error(method: str, url: str, status: int, **kwargs: Any) -> str:
        return str(client.api(method, url, status, **kwargs)["error"])

    assert "valid EID" in error("POST", "/euiccs", 400, json={"eid": "1234"})
    assert "eid" in error("POST", "/euiccs", 400, json={})
    assert "not JSON" in error("POST", "/euiccs", 400, content=b"{")
    assert "unknown field(s) colour" in error(
        "POST", "/euiccs", 400, json={"eid": euicc.eid, "colour": "red"}
    )
    other = Euiccish(nist)
    assert "is for EID" in error(
        "POST", "/euiccs", 400, json={"eid": euicc.eid, "euiccCertificate": other.cert_pem}
    )
    assert "PEM" in error(
        "POST", "/euiccs", 400, json={"eid": euicc.eid, "euiccCertificate": "MIIB..."}
    )
    assert "1..127" in error(
        "POST", "/euiccs", 400, json={"eid": euicc.eid, "associationToken": 300}
    )
    foreign = generate_test_pki(Curve.NIST_P256)
    assert "refused" in error(
        "POST",
        "/euiccs",
        400,
        json={
            "eid": foreign.eid,
            "euiccCertificate": foreign.euicc.cert_pem.decode(),
            "eumCertificate": foreign.eum.cert_pem.decode(),
        },
    )
    register(client, euicc)
    assert "registered already" in error("POST", "/euiccs", 409, json={"eid": euicc.eid})
    assert "not registered" in error("GET", f"/euiccs/{other.eid}", 404)
    assert "not registered" in error("POST", f"/euiccs/{other.eid}/orders", 404, json=enable())

    orders = f"/euiccs/{euicc.eid}/orders"
    assert "order type" in error("POST", orders, 400, json={"type": "reboot"})
    assert "iccid" in error("POST", orders, 400, json=enable("12AB"))
    assert "unknown PSMO 'reboot'" in error(
        "POST", orders, 400, json={"type": "psmo", "operations": [{"reboot": {}}]}
    )
    assert "unknown eCO" in error(
        "POST", orders, 400, json={"type": "eco", "operations": [{"enable": {}}]}
    )
    assert "exactly one key" in error(
        "POST", orders, 400, json={"type": "psmo", "operations": [{"getRAT": {}, "x": {}}]}
    )
    assert "1..32" in error("POST", orders, 400, json={"type": "psmo", "operations": []})
    assert "activationCode" in error(
        "POST", orders, 400, json={"type": "download", "activationCode": "nonsense"}
    )
    assert "tagList" in error("POST", orders, 400, json={"type": "euiccData", "tagList": ["xyz"]})
    assert "counterValue may only grow" in error(
        "PATCH", f"/euiccs/{euicc.eid}", 400, json={"counterValue": -1}
    )

    order = client.api("POST", orders, 201, json=enable())
    assert client.api("DELETE", f"/orders/{order['id']}", 200)["state"] == "cancelled"
    assert "only queued" in error("DELETE", f"/orders/{order['id']}", 409)
    assert "no order" in error("GET", "/orders/999", 404)
    assert get_package(client, euicc.eid_bytes) == bytes.fromhex("BF4F03020101")


def test_operator_api_token_and_listing(nist: TestPki) -> None:
    _, client = new_eim(nist, admin_token="s3cret")
    assert client.request("GET", "/api/euiccs").status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    info = client.api("GET", "/eim", 200, headers=auth)
    assert info["eimId"] == "eim.euicc-sim.test" and info["indirectProfileDownload"] is True
    euicc = Euiccish(nist)
    created = client.api(
        "POST",
        "/euiccs",
        201,
        headers=auth,
        json={"eid": euicc.eid, "associationToken": -1, "euiccCiPKId": None},
    )
    assert created["euicc"]["associationToken"] is None
    config = created["eimConfiguration"]
    assert config["associationToken"] == -1 and "euiccCiPKId" not in config
    assert [e["eid"] for e in client.api("GET", "/euiccs", 200, headers=auth)["euiccs"]] == [
        euicc.eid
    ]
    client.api("DELETE", f"/euiccs/{euicc.eid}", 204, headers=auth)
    assert client.api("GET", "/euiccs", 200, headers=auth)["euiccs"] == []


def test_requeue_signs_again_with_a_new_counter_and_the_patched_token(nist: TestPki) -> None:
    _, client = new_eim(nist)
    euicc = Euiccish(nist)
    register(client, euicc, associationToken=3)
    order_id, first = _sent_enable(client, euicc)
    assert "no order" in client.api("POST", f"/orders/{order_id + 1}/requeue", 404)["error"]
    assert client.api("POST", f"/orders/{order_id}/requeue", 200)["state"] == "queued"
    patched = client.api("PATCH", f"/euiccs/{euicc.eid}", 200, json={"associationToken": 9})
    assert patched["eimConfiguration"]["associationToken"] == 9
    second = children(get_package(client, euicc.eid_bytes))[0]
    signed, signature = children(second)
    assert schema.decode("EuiccPackageRequest", second)["euiccPackageSigned"]["counterValue"] == 2
    crypto.verify_raw(nist.eim.public_key, value(signature), signed + bytes.fromhex("840109"))
    assert first != second
    queued = client.api("POST", f"/euiccs/{euicc.eid}/orders", 201, json=enable())
    assert "only sent/failed" in client.api("POST", f"/orders/{queued['id']}/requeue", 409)["error"]


def test_configuration_is_an_add_initial_eim_request(nist: TestPki) -> None:
    core, client = new_eim(nist)
    euicc = Euiccish(nist)
    answer = register(client, euicc, associationToken=5)
    request = bytes.fromhex(answer["addInitialEimRequest"])
    (config,) = schema.decode("AddInitialEimRequest", request)["eimConfigurationDataList"]
    assert config["eimId"] == "eim.euicc-sim.test" and config["eimFqdn"] == FQDN
    assert config["eimIdType"] == 2 and config["counterValue"] == 0
    assert config["associationToken"] == 5
    assert config["euiccCiPKId"] == nist.ci.ski
    assert config["indirectProfileDownload"] is None
    assert schema.bit_positions(config["eimSupportedProtocol"]) == {0}
    # Key data: [5] { [0] SubjectPublicKeyInfo with A0 for 30 }, [6] { [1] CI certificate }
    fields = dict((c[:1], c) for c in children(bytes.fromhex(answer["eimConfigurationData"])))
    spki = children(fields[b"\xa5"])[0]
    assert b"\x30" + spki[1:] == core.settings.public_key_info
    tls = children(fields[b"\xa6"])[0]
    assert b"\x30" + tls[1:] == nist.ci.cert_der
    assert request[:2] == b"\xbf\x57" and children(request)[0][:1] == b"\xa0"


def test_state_survives_a_restart(nist: TestPki, tmp_path: Path) -> None:
    core, client = new_eim(nist, tmp_path)
    euicc = Euiccish(nist)
    token = register(client, euicc)["euicc"]["associationToken"]
    _, package = _sent_enable(client, euicc)
    queued = client.api("POST", f"/euiccs/{euicc.eid}/orders", 201, json=enable())
    # Acknowledgements waiting from a HandleNotification carrying a result survive too.
    epr = euicc.result(package, 11, [("enableResult", 0)], token)
    inner = tlv.encode_tlv(b"\xbf\x50", tlv.encode_tlv(b"\x5a", euicc.eid_bytes) + epr)
    client.esipa(tlv.encode_tlv(b"\xbf\x3d", inner), status=204)
    core.store.close()

    core, client = new_eim(nist, tmp_path)
    record = client.api("GET", f"/euiccs/{euicc.eid}", 200)["euicc"]
    assert (record["associationToken"], record["counterValue"]) == (token, 1)
    assert record["publicKeyKnown"] is True
    states = [o["state"] for o in client.api("GET", f"/euiccs/{euicc.eid}/orders", 200)["orders"]]
    assert states == ["done", "queued"]
    package = children(get_package(client, euicc.eid_bytes))[0]
    signed = schema.decode("EuiccPackageRequest", package)["euiccPackageSigned"]
    assert signed["counterValue"] == 2
    assert client.api("GET", f"/orders/{queued['id']}", 200)["state"] == "sent"
    second = euicc.result(package, 12, [("enableResult", 2)], token)
    assert provide(client, euicc.eid_bytes, second) == bytes.fromhex("BF5009BF530680010B80010C")
    core.store.close()


# --- with the emulated card -----------------------------------------------------------------


def card_for(test_pki: TestPki) -> Euicc:
    return Euicc.create(
        None,
        euicc_key=test_pki.euicc.key_pem(),
        euicc_certificate=test_pki.euicc.cert_der,
        eum_certificate=test_pki.eum.cert_der,
        ci_certificates=[test_pki.ci.cert_der],
    )


def es10(card: Euicc, payload: bytes) -> bytes:
    with Es10Client.open(InProcessTransport(card)) as client:
        return client.exchange(payload)


def test_emulated_card_unknown_token_and_key_are_asked_for_first(nist: TestPki) -> None:
    """Registration without certificate and with token -1: the eIM asks the IPAd for the
    token and the certificates, then signs; the card's EPR verifies with the learnt key."""
    _, client = new_eim(nist)
    card = card_for(nist)
    card.preload(PACKAGE.read_bytes())
    answer = client.api("POST", "/euiccs", 201, json={"eid": nist.eid, "associationToken": -1})
    added = es10(card, bytes.fromhex(answer["addInitialEimRequest"]))
    (allocated,) = schema.decode("AddInitialEimResponse", added)[1]
    assert allocated[0] == "associationToken"
    eid = bytes.fromhex(nist.eid)
    client.api("POST", f"/euiccs/{nist.eid}/orders", 201, json=enable())

    request = children(get_package(client, eid))[0]
    data_request = schema.decode("IpaEuiccDataRequest", request)
    assert data_request["tagList"] == bytes.fromhex("84A5A6")
    # The IPAd's part: token from GetEimConfigurationData, certificates from GetCerts.
    config = schema.decode("GetEimConfigurationDataResponse", es10(card, bytes.fromhex("BF5500")))[
        "eimConfigurationDataList"
    ][0]
    with Es10Client.open(InProcessTransport(card)) as es10_client:
        certs = es10_client.get_certs()
    ipa_data = (
        tlv.encode_tlv(b"\x84", bytes([config["associationToken"]]))
        + b"\xa5"
        + certs.eum_certificate[1:]
        + b"\xa6"
        + certs.euicc_certificate[1:]
        + tlv.encode_tlv(b"\x87", data_request["eimTransactionId"])
    )
    response = tlv.encode_tlv(b"\xbf\x52", tlv.encode_tlv(b"\xa0", ipa_data))
    assert provide(client, eid, response) == bytes.fromhex("BF50023000")
    record = client.api("GET", f"/euiccs/{nist.eid}", 200)["euicc"]
    assert record["associationToken"] == allocated[1]
    assert record["keySource"] == "ipaEuiccData"

    package = children(get_package(client, eid))[0]
    epr = es10(card, package)
    acks = provide(client, eid, epr)
    assert acks[:4] == bytes.fromhex("BF5006BF")
    orders = client.api("GET", f"/euiccs/{nist.eid}/orders", 200)["orders"]
    assert [(o["type"], o["origin"], o["state"]) for o in orders] == [
        ("psmo", "operator", "done"),
        ("euiccData", "auto", "done"),
    ]
    assert orders[0]["signatureVerified"] is True
    data = orders[0]["result"]["euiccPackageResultSigned"]["euiccPackageResultDataSigned"]
    assert data["euiccResult"] == [{"enableResult": 0}]
    with Es10Client.open(InProcessTransport(card)) as es10_client:
        assert es10_client.get_profiles_info()[0].iccid == ICCID


# --- indirect download relayed to the SM-DP+ -------------------------------------------------


class FakeEs9:
    def __init__(self, failure: FunctionFailed | None = None) -> None:
        self.failure = failure
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, address: str, function: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((address, function, body))
        if self.failure is not None:
            raise self.failure
        return {"transactionId": "0102"}


def test_relay_maps_failures_to_esipa_errors(nist: TestPki) -> None:
    eim = build_eim(nist, eim_fqdn=FQDN, smdp_addresses=frozenset({"smdp.example"}))
    fake = FakeEs9(FunctionFailed("8.8.2", "3.1", "no CI"))
    eim.core.relay = SmdpRelay(fake)
    client = Client(create_app(eim.core))
    init = schema.encode(
        "InitiateAuthenticationRequestEsipa",
        {
            "euiccChallenge": b"\x11" * 16,
            "smdpAddress": "smdp.example",
            "euiccInfo1": {
                "svn": b"\x02\x02\x00",
                "euiccCiPKIdListForVerification": [nist.ci.ski],
                "euiccCiPKIdListForSigning": [nist.ci.ski],
            },
        },
    )
    assert client.esipa(init) == bytes.fromhex("BF3903810103")  # ciPKIdNotSupported
    assert fake.calls[0][:2] == ("smdp.example", "initiateAuthentication")
    assert fake.calls[0][2]["euiccChallenge"] == b64(b"\x11" * 16)
    # JSON binding: the SM-DP+'s status travels as is
    json_answer = client.json(
        "initiateAuthentication",
        {
            "euiccChallenge": b64(b"\x11" * 16),
            "smdpAddress": "smdp.example",
            "euiccInfo1": b64(
                schema.encode(
                    "EUICCInfo1",
                    {
                        "svn": b"\x02\x02\x00",
                        "euiccCiPKIdListForVerification": [nist.ci.ski],
                        "euiccCiPKIdListForSigning": [nist.ci.ski],
                    },
                )
            ),
        },
    ).json()
    status = json_answer["header"]["functionExecutionStatus"]
    assert status["status"] == "Failed" and status["statusCodeData"]["subjectCode"] == "8.8.2"
    # No session for this transactionId: refused without asking the SM-DP+.
    calls = len(fake.calls)
    error = bytes.fromhex("BF3808A106800199020101")  # authenticateResponseError
    auth = tlv.encode_tlv(b"\xbf\x3b", bytes.fromhex("800199") + error)
    assert client.esipa(auth) == bytes.fromhex("BF3B0382010A")  # invalidTransactionId
    cancel = bytes.fromhex("BF41098002 0102 A103810105".replace(" ", ""))
    assert client.esipa(cancel) == bytes.fromhex("BF4103810101")
    assert len(fake.calls) == calls
    # An eimTransactionId that names no download: invalidEimTransactionId
    unknown = schema.encode(
        "InitiateAuthenticationRequestEsipa",
        {"euiccChallenge": b"\x11" * 16, "eimTransactionId": b"\x42"},
    )
    assert client.esipa(unknown) == bytes.fromhex("BF3903810134")


def in_process_es9(smdp: SmdpCore) -> Any:
    """An Es9Transport calling the reference SM-DP+'s JSON binding directly (no HTTP)."""

    def call(address: str, function: str, body: dict[str, Any]) -> dict[str, Any] | None:
        _, answer = smdp_execute(smdp, function, body)
        if answer is None:
            return None
        status = answer["header"]["functionExecutionStatus"]
        if status["status"] != "Executed-Success":
            data = status["statusCodeData"]
            raise FunctionFailed(data["subjectCode"], data["reasonCode"], data["message"])
        return dict(answer)

    return call


def test_json_binding_relays_cancel_and_download_to_the_smdp(nist: TestPki) -> None:
    """Indirect download with the ESipa JSON binding, the SM-DP+ in-process: a cancelled
    session releases the SM-DP+ order; the next one installs, the PIR comes back through
    handleNotification and is forwarded."""
    smdp = SmdpCore(SmdpConfig.from_test_pki(nist, "smdp.example.com"))
    smdp.orders.add_order("JSON-1", PACKAGE)
    core, client = new_eim(nist)
    core.relay = SmdpRelay(in_process_es9(smdp))
    card = card_for(nist)
    client.api("POST", "/euiccs", 201, json={"eid": nist.eid})
    code = "1$smdp.example.com$JSON-1"
    order = client.api(
        "POST", f"/euiccs/{nist.eid}/orders", 201, json={"type": "download", "activationCode": code}
    )
    trigger = base64.b64decode(
        client.json("getEimPackage", {"eidValue": nist.eid}).json()["profileDownloadTriggerRequest"]
    )
    eim_tid = schema.decode("ProfileDownloadTriggerRequest", trigger)["eimTransactionId"]

    def ok(function: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = dict(client.json(function, body).json())
        assert answer["header"]["functionExecutionStatus"]["status"] == "Executed-Success"
        return answer

    def session(client10: Es10Client) -> tuple[str, es10_download.PrepareDownloadResult]:
        info1 = es10(card, bytes.fromhex("BF2000"))
        init = ok(
            "initiateAuthentication",
            {
                "euiccChallenge": b64(client10.get_euicc_challenge()),
                "euiccInfo1": b64(info1),
                "eimTransactionId": eim_tid.hex(),
            },
        )
        raw = {k: base64.b64decode(v) for k, v in init.items() if k != "header"}
        auth = es10_download.authenticate_server(
            client10,
            server_signed1=raw["serverSigned1"],
            server_signature1=raw["serverSignature1"],
            euicc_ci_pkid_to_be_used=raw["euiccCiPKIdentifierToBeUsed"],
            server_certificate=raw["serverCertificate"],
            ctx_params1=es10_download.ctx_params1("JSON-1"),
        )
        tid = init["transactionId"]
        answer = ok(
            "authenticateClient",
            {"transactionId": tid, "authenticateServerResponse": b64(auth.raw)},
        )
        assert base64.b64decode(answer["profileMetadata"])[:2] == b"\xbf\x25"
        prepared = es10_download.prepare_download(
            client10,
            smdp_signed2=base64.b64decode(answer["smdpSigned2"]),
            smdp_signature2=base64.b64decode(answer["smdpSignature2"]),
            smdp_certificate=base64.b64decode(answer["smdpCertificate"]),
        )
        return tid, prepared

    with Es10Client.open(InProcessTransport(card)) as client10:
        tid, _ = session(client10)
        cancelled = es10_download.cancel_session(client10, bytes.fromhex(tid), 1)  # postponed
        answer = ok(
            "cancelSession", {"transactionId": tid, "cancelSessionResponse": b64(cancelled.raw)}
        )
        assert set(answer) == {"header"}
        assert smdp.orders.get("JSON-1").state is OrderState.RELEASED

        tid, prepared = session(client10)
        bound = ok(
            "getBoundProfilePackage",
            {"transactionId": tid, "prepareDownloadResponse": b64(prepared.raw)},
        )
        assert bound["transactionId"] == tid
        result = es10_download.load_bound_profile_package(
            client10, base64.b64decode(bound["boundProfilePackage"])
        )
    assert result.success
    response = client.json("handleNotification", {"pendingNotification": b64(result.raw)})
    assert (response.status_code, response.content) == (204, b"")
    assert smdp.orders.get("JSON-1").state is OrderState.INSTALLED
    done = client.api("GET", f"/orders/{order['id']}", 200)
    assert done["state"] == "done"
    assert done["events"][0]["forwarded"] == "delivered to smdp.example.com"
    # The same PIR again is stored, not forwarded twice.
    client.json("handleNotification", {"pendingNotification": b64(result.raw)})
    events = client.api("GET", f"/euiccs/{nist.eid}/events", 200)["events"]
    assert [e["forwarded"] for e in events] == ["delivered to smdp.example.com", None]


def test_indirect_download_over_https_into_the_emulated_card(nist: TestPki) -> None:
    """eIM and SM-DP+ on real HTTPS (TLS verified against the CI); the test plays the IPAd
    with the ESipa ASN.1 binding and drives the emulated card."""
    smdp = SmdpCore(SmdpConfig.from_test_pki(nist, "127.0.0.1"))
    smdp.orders.add_order("IOT-1", PACKAGE)
    eim = build_eim(nist)
    card = card_for(nist)
    trust = ssl.create_default_context(cadata=nist.ci.cert_pem.decode())
    with (
        run_smdp_in_thread(create_smdp_app(smdp), tls=nist.dp_tls) as smdp_server,
        run_in_thread(eim.core, tls=eim.tls) as eim_server,
        httpx.Client(base_url=eim_server.base_url, verify=trust, headers=ASN1) as http,
    ):
        assert eim_server.base_url.startswith("https://127.0.0.1:")

        def esipa(message: bytes, status: int = 200) -> bytes:
            response = http.post("/gsma/rsp2/asn1", content=message)
            assert response.status_code == status, response.text
            return response.content

        def api(method: str, url: str, **kwargs: Any) -> Any:
            headers = eim.core.auth.header
            response = http.request(method, "/api" + url, headers=headers, **kwargs)
            assert response.status_code < 300, response.text
            return response.json()

        answer = api("POST", "/euiccs", json={"eid": nist.eid})
        assert answer["eimConfiguration"]["eimFqdn"] == eim_server.address
        es10(card, bytes.fromhex(answer["addInitialEimRequest"]))
        code = f"1${smdp_server.address}$IOT-1"
        order = api(
            "POST", f"/euiccs/{nist.eid}/orders", json={"type": "download", "activationCode": code}
        )
        eid = bytes.fromhex(nist.eid)

        trigger = children(esipa(schema.encode("GetEimPackageRequest", {"eidValue": eid})))[0]
        decoded = schema.decode("ProfileDownloadTriggerRequest", trigger)
        assert decoded["profileDownloadData"] == ("activationCode", code)
        eim_tid = decoded["eimTransactionId"]

        # IPAd: ESipa InitiateAuthentication, the SM-DP+ address taken from the order
        with Es10Client.open(InProcessTransport(card)) as client:
            info1 = es10(card, bytes.fromhex("BF2000"))
            challenge = client.get_euicc_challenge()
            init = tlv.encode_tlv(
                b"\xbf\x39",
                tlv.encode_tlv(b"\x81", challenge) + info1 + tlv.encode_tlv(b"\x82", eim_tid),
            )
            ok = children(children(esipa(init))[0])
            assert [c[:1] for c in ok] == [b"\x80", b"\x30", b"\x5f", b"\x04", b"\x30"]
            tid = value(ok[0])
            auth = es10_download.authenticate_server(
                client,
                server_signed1=ok[1],
                server_signature1=ok[2],
                euicc_ci_pkid_to_be_used=ok[3],
                server_certificate=ok[4],
                ctx_params1=es10_download.ctx_params1("IOT-1"),
            )
            assert auth.ok
            request = tlv.encode_tlv(b"\xbf\x3b", tlv.encode_tlv(b"\x80", tid) + auth.raw)
            ok = children(children(esipa(request))[0])
            assert (ok[0][:1], ok[1][:2]) == (b"\x80", b"\xbf\x25")
            prepared = es10_download.prepare_download(
                client, smdp_signed2=ok[2], smdp_signature2=ok[3], smdp_certificate=ok[4]
            )
            request = tlv.encode_tlv(b"\xbf\x3a", tlv.encode_tlv(b"\x80", tid) + prepared.raw)
            bound = children(children(esipa(request))[0])
            assert bound[1][:2] == b"\xbf\x36"
            result = es10_download.load_bound_profile_package(client, bound[1])
        assert result.success

        report = tlv.encode_tlv(b"\x82", eim_tid) + result.raw
        acks = esipa(
            tlv.encode_tlv(
                b"\xbf\x50", tlv.encode_tlv(b"\x5a", eid) + tlv.encode_tlv(b"\xbf\x54", report)
            )
        )
        assert acks == schema.encode(
            "ProvideEimPackageResultResponse", ("eimAcknowledgements", [result.seq_number])
        )
        done = api("GET", f"/orders/{order['id']}")
        assert done["state"] == "done"
        pir_event = [e for e in done["events"] if e["kind"] == "notification"][0]
        assert pir_event["forwarded"] == f"delivered to {smdp_server.address}"
        session = api("GET", "/sessions")["sessions"][0]
        assert (session["eid"], session["state"]) == (nist.eid, "ended")
        record = api("GET", f"/euiccs/{nist.eid}")["euicc"]
        assert record["keySource"] == "authenticateServer"
    assert smdp.orders.get("IOT-1").state is OrderState.INSTALLED


def test_json_binding_over_https_runs_a_package_on_the_emulated_card(nist: TestPki) -> None:
    eim = build_eim(nist)
    card = card_for(nist)
    card.preload(PACKAGE.read_bytes())
    trust = ssl.create_default_context(cadata=nist.ci.cert_pem.decode())
    with (
        run_in_thread(eim.core, tls=eim.tls) as server,
        httpx.Client(base_url=server.base_url, verify=trust, headers=eim.core.auth.header) as http,
    ):
        body = {
            "eid": nist.eid,
            "euiccCertificate": nist.euicc.cert_pem.decode(),
            "eumCertificate": nist.eum.cert_pem.decode(),
        }
        answer = http.post("/api/euiccs", json=body).json()
        es10(card, bytes.fromhex(answer["addInitialEimRequest"]))
        http.post(f"/api/euiccs/{nist.eid}/orders", json=enable())
        esipa = "/gsma/rsp2/esipa/"
        got = http.post(esipa + "getEimPackage", json={"eidValue": nist.eid}, headers=JSON)
        epr = es10(card, base64.b64decode(got.json()["euiccPackageRequest"]))
        body = {"eidValue": nist.eid, "eimPackageResult": b64(epr)}
        acked = http.post(esipa + "provideEimPackageResult", json=body, headers=JSON).json()
        seq = schema.decode("EuiccPackageResult", epr)[1]["euiccPackageResultDataSigned"][
            "seqNumber"
        ]
        assert base64.b64decode(acked["eimAcknowledgements"]) == schema.encode(
            "EimAcknowledgements", [seq]
        )
        order = http.get(f"/api/euiccs/{nist.eid}/orders").json()["orders"][0]
        assert (order["state"], order["signatureVerified"]) == ("done", True)


# --- command line ----------------------------------------------------------------------------


def test_command_line_builds_and_serves_the_eim(
    nist: TestPki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    nist.save(tmp_path / "pki")
    served: dict[str, Any] = {}
    monkeypatch.setattr(
        eim_serve, "_serve_app", lambda app, **kwargs: served.update(app=app, **kwargs)
    )
    parser = argparse.ArgumentParser()
    eim_serve.add_eim_command(parser.add_subparsers())
    args = parser.parse_args(
        [
            "eim",
            "--pki",
            str(tmp_path / "pki"),
            "--port",
            "9000",
            "--state",
            str(tmp_path / "s"),
            "--eim-id",
            "eim.example.org",
        ]
    )
    assert args.run(args) == 0
    core = served["app"].state.core
    assert (core.settings.eim_id, core.eim_fqdn) == ("eim.example.org", "127.0.0.1:9000")
    assert served["tls"] is not None and served["port"] == 9000
    san = served["tls"].cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert (tmp_path / "s" / "eim.sqlite3").exists()
    # The operator API token was made in the state directory, and the path was said.
    assert core.auth.path == tmp_path / "s" / "admin-token"
    assert str(core.auth.path) in capsys.readouterr().err
    # --no-auth: open, with a warning.
    args = parser.parse_args(["eim", "--pki", str(tmp_path / "pki"), "--no-auth"])
    assert args.run(args) == 0
    assert served["app"].state.core.admin_token is None
    assert "WARNING" in capsys.readouterr().err
