"""The reference eIM and SM-DP+ against hostile clients: operator API authentication, packages
nobody can steal or strand, facts learnt only from signed data, notifications verified and
forwarded only to their order's SM-DP+, outbound calls under control, and hostile bodies
(huge, deep, malformed, slow). Every refusal is a 4xx (or the function's error) and leaves the
state as it was.

Most tests run the ASGI apps in-process; the slow-client and slow-SM-DP+ tests run real
uvicorn servers on 127.0.0.1.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_client import AsgiClient
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from euicc_protocol import crypto, schema, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import make_eid
from euicc_protocol.testpki import TestPki, generate_test_pki, issue_euicc_certificate
from euicc_servers.common import auth as auth_module
from euicc_servers.common import serve as serve_module
from euicc_servers.common.auth import TOKEN_FILE, OperatorAuth
from euicc_servers.common.limits import JsonError, Limits, parse_json
from euicc_servers.common.serve import run_in_thread as run_app
from euicc_servers.eim import build_eim, create_app, run_in_thread
from euicc_servers.eim.esipa import EimCore
from euicc_servers.eim.relay import Es9Client, SmdpRelay
from euicc_servers.smdpp import OrderStore, SmdpConfig, SmdpCore
from euicc_servers.smdpp import create_app as create_smdp_app

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
PACKAGE = TS48 / "TS48V1-A-UNIQUE.der"
ICCID = "8949449999999990023"
ASN1 = {"Content-Type": "application/x-gsma-rsp-asn1"}
JSON = {"Content-Type": "application/json", "X-Admin-Protocol": "gsma/rsp/v2.1.0"}
SMDP_ADDRESS = "smdp.example.com"


@pytest.fixture(scope="module")
def nist() -> TestPki:
    return generate_test_pki(Curve.NIST_P256)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Device:
    """An eUICC played by the test: its key signs results, notifications and PIRs."""

    def __init__(self, test_pki: TestPki) -> None:
        self.eid = make_eid("89049032")
        self.key, cert = issue_euicc_certificate(test_pki.eum.cert, test_pki.eum.key, self.eid)
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.eid_bytes = bytes.fromhex(self.eid)

    def epr(self, package: bytes, seq: int, token: int) -> bytes:
        signed = schema.decode("EuiccPackageRequest", package)["euiccPackageSigned"]
        data = schema.encode(
            "EuiccPackageResultDataSigned",
            {
                "eimId": signed["eimId"],
                "counterValue": signed["counterValue"],
                "eimTransactionId": signed["eimTransactionId"],
                "seqNumber": seq,
                "euiccResult": [("enableResult", 0)],
            },
        )
        signature = crypto.sign_raw(self.key, data + tlv.encode_tlv(b"\x84", bytes([token])))
        body = tlv.encode_tlv(b"\xa0", data + tlv.encode_tlv(b"\x5f\x37", signature))
        return tlv.encode_tlv(b"\xbf\x51", body)

    def pir(self, *, seq: int, address: str, forge: bool = False) -> bytes:
        """A successful ProfileInstallationResult naming ``address`` as notificationAddress;
        ``forge``: an all-zero signature."""
        value: dict[str, Any] = {
            "profileInstallationResultData": {
                "transactionId": b"\x42" * 16,
                "notificationMetadata": {
                    "seqNumber": seq,
                    "profileManagementOperation": schema.bits([0]),
                    "notificationAddress": address,
                },
                "smdpOid": "2.999.10",
                "finalResult": (
                    "successResult",
                    {"aid": bytes.fromhex("A0000005591010FFFFFFFF8900001100"), "simaResponse": b""},
                ),
            },
            "euiccSignPIR": b"\x00" * 64,
        }
        unsigned = schema.encode("ProfileInstallationResult", value)
        outer = tlv.read_tlv(unsigned)
        data = unsigned[outer.value_start : tlv.read_tlv(unsigned, outer.value_start).end]
        if not forge:
            value["euiccSignPIR"] = crypto.sign_raw(self.key, data)
        return schema.encode("ProfileInstallationResult", value)


class Eim:
    """The eIM app in-process with helpers; ``forwarded`` records the ES9+ calls it makes."""

    def __init__(self, test_pki: TestPki, state: Path | None = None, **options: Any) -> None:
        self.server = build_eim(test_pki, eim_fqdn="127.0.0.1:8444", state_dir=state, **options)
        self.core: EimCore = self.server.core
        self.forwarded: list[tuple[str, str]] = []

        def es9(address: str, function: str, body: dict[str, Any]) -> None:
            self.forwarded.append((address, function))

        self.core.relay = SmdpRelay(es9)
        self.client = AsgiClient(create_app(self.core), "http://eim.test")

    def api(self, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
        headers = {**self.core.auth.header, **kwargs.pop("headers", {})}
        response = self.client.request(method, "/api" + url, headers=headers, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def esipa(self, message: bytes, status: int = 200) -> bytes:
        response = self.client.request("POST", "/gsma/rsp2/asn1", content=message, headers=ASN1)
        assert response.status_code == status, response.text
        return response.content

    def poll(self, eid: bytes) -> bytes:
        return self.esipa(schema.encode("GetEimPackageRequest", {"eidValue": eid}))

    def provide(self, eid: bytes | None, result: bytes) -> bytes:
        content = (tlv.encode_tlv(b"\x5a", eid) if eid else b"") + result
        return self.esipa(tlv.encode_tlv(b"\xbf\x50", content))

    def register(self, device: Device, **fields: Any) -> dict[str, Any]:
        body = {"eid": device.eid, "euiccCertificate": device.cert_pem, **fields}
        return dict(self.api("POST", "/euiccs", 201, json=body)["euicc"])

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table: what 'state unchanged' compares."""
        store = self.core.store
        tables = ("euiccs", "orders", "events", "acks", "sessions")
        return {
            t: [tuple(r) for r in store._all(f"SELECT * FROM {t} ORDER BY rowid")] for t in tables
        }


def tid_of(package: bytes) -> bytes:
    return bytes(
        schema.decode("EuiccPackageRequest", package)["euiccPackageSigned"]["eimTransactionId"]
    )


def package_of(answer: bytes) -> bytes:
    outer = tlv.read_tlv(answer)
    return answer[outer.value_start : outer.value_end]


def enable() -> dict[str, Any]:
    return {"type": "psmo", "operations": [{"enable": {"iccid": ICCID}}]}


# --- 1. operator API authentication ---------------------------------------------------------


def test_eim_operator_api_needs_the_token_it_made_and_kept_private(
    nist: TestPki, tmp_path: Path
) -> None:
    eim = Eim(nist, tmp_path)
    token_file = tmp_path / TOKEN_FILE
    assert eim.core.auth.path == token_file
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert token_file.read_text().strip() == eim.core.admin_token
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = eim.client.request(
            "POST", "/api/euiccs", json={"eid": make_eid()}, headers=headers
        )
        assert response.status_code == 401
    assert eim.core.store.euiccs() == []  # nothing registered
    eim.api("GET", "/euiccs")
    # The next start reuses the token.
    eim.core.store.close()
    assert Eim(nist, tmp_path).core.admin_token == eim.core.admin_token


def test_smdp_operator_api_needs_a_token_by_default(nist: TestPki, tmp_path: Path) -> None:
    core = SmdpCore(SmdpConfig.from_test_pki(nist, SMDP_ADDRESS), OrderStore(tmp_path))
    assert core.admin_token and (tmp_path / TOKEN_FILE).exists()
    assert stat.S_IMODE(os.stat(tmp_path / TOKEN_FILE).st_mode) == 0o600
    client = AsgiClient(create_smdp_app(core, profiles_dir=TS48))
    order = {"matchingId": "M-1", "profile": PACKAGE.name}
    assert client.post("/admin/orders", json=order).status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * 43}
    assert client.post("/admin/orders", json=order, headers=wrong).status_code == 401
    assert len(core.orders) == 0
    assert client.post("/admin/orders", json=order, headers=core.auth.header).status_code == 201


def test_an_open_operator_api_is_explicit_and_warned_about(
    nist: TestPki, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        eim = Eim(nist, open_operator_api=True)
    assert eim.core.admin_token is None
    assert "NOT authenticated" in caplog.text
    eim.client.request("GET", "/api/euiccs").raise_for_status()
    with pytest.raises(ValueError):
        OperatorAuth.resolve("token-token-token", open_api=True)


def test_generated_tokens_never_start_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One token in 64 would: a command line's `--token VALUE` then reads it as an option.
    drawn = iter(["-starts-with-a-dash-0123456789", "fine-token-0123456789", "next-0123456789ab"])
    monkeypatch.setattr(auth_module.secrets, "token_urlsafe", lambda n: next(drawn))
    token, _ = auth_module.load_or_create_token(tmp_path)
    assert token == "fine-token-0123456789"
    assert OperatorAuth.resolve(None).token == "next-0123456789ab"


def test_the_command_lines_offer_a_token_or_an_explicit_no_auth() -> None:
    import argparse

    from euicc_servers.eim import add_eim_command
    from euicc_servers.smdpp import add_smdpp_command

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_eim_command(sub)
    add_smdpp_command(sub)
    assert parser.parse_args(["eim", "--pki", "x", "--no-auth"]).no_auth is True
    assert parser.parse_args(["eim", "--pki", "x"]).no_auth is False
    with pytest.raises(SystemExit):  # not both
        parser.parse_args(
            ["smdpp", "--pki", "x", "--profiles", "p", "--no-auth", "--admin-token", "t"]
        )


# --- 2. delivery nothing can steal or strand ------------------------------------------------


def test_a_package_taken_by_another_client_is_delivered_again(nist: TestPki) -> None:
    eim, device = Eim(nist), Device(nist)
    token = eim.register(device)["associationToken"]
    order = eim.api("POST", f"/euiccs/{device.eid}/orders", 201, json=enable())
    stolen = eim.poll(device.eid_bytes)  # a thief names the victim's EID
    lost = eim.poll(device.eid_bytes)  # the device's first answer is lost
    genuine = eim.poll(device.eid_bytes)
    assert stolen == lost == genuine and genuine[:2] == b"\xbf\x4f"
    package = package_of(genuine)
    # An unsigned error naming the victim's EID and the right eimTransactionId ends nothing.
    unsigned = schema.encode(
        "EuiccPackageResult",
        (
            "euiccPackageErrorUnsigned",
            {"eimId": nist_eim_id(eim), "eimTransactionId": tid_of(package)},
        ),
    )
    assert eim.provide(device.eid_bytes, unsigned) == bytes.fromhex("BF50023000")
    shown = eim.api("GET", f"/orders/{order['id']}")
    assert shown["state"] == "sent" and "unsigned" in shown["unverifiedReport"]
    assert eim.poll(device.eid_bytes) == genuine
    # The result the card signed completes it; the next poll has nothing.
    assert eim.provide(None, device.epr(package, 5, token))[:4] == bytes.fromhex("BF5006BF")
    assert eim.api("GET", f"/orders/{order['id']}")["state"] == "done"
    assert eim.poll(device.eid_bytes) == bytes.fromhex("BF4F03020101")


def nist_eim_id(eim: Eim) -> str:
    return eim.core.settings.eim_id


def test_a_result_signed_by_another_euicc_does_not_complete_the_order(nist: TestPki) -> None:
    eim, victim, attacker = Eim(nist), Device(nist), Device(nist)
    token = eim.register(victim)["associationToken"]
    eim.register(attacker, associationToken=token)
    order = eim.api("POST", f"/euiccs/{victim.eid}/orders", 201, json=enable())
    package = package_of(eim.poll(victim.eid_bytes))
    # Same EID and eimTransactionId, but the attacker's key: not the victim's result.
    for eid in (victim.eid_bytes, None):
        assert eim.provide(eid, attacker.epr(package, 9, token)) == bytes.fromhex("BF50023000")
    assert eim.api("GET", f"/orders/{order['id']}")["state"] == "sent"
    assert eim.core.store.pending_acks(victim.eid) == []


# --- 3. facts only from signed data ---------------------------------------------------------


def test_an_unsolicited_ipa_euicc_data_cannot_plant_a_token(nist: TestPki) -> None:
    eim, device = Eim(nist), Device(nist)
    eim.register(device, associationToken=-1)  # the eUICC allocates it
    data = tlv.encode_tlv(b"\xbf\x52", tlv.encode_tlv(b"\xa0", bytes.fromhex("84014D")))  # 77
    assert eim.provide(device.eid_bytes, data) == bytes.fromhex("BF50023000")
    record = eim.api("GET", f"/euiccs/{device.eid}")["euicc"]
    assert record["associationToken"] is None
    # Asked for by the eIM itself: taken, unconfirmed, until a verified EPR confirms it.
    eim.api("POST", f"/euiccs/{device.eid}/orders", 201, json=enable())
    request = package_of(eim.poll(device.eid_bytes))
    asked = schema.decode("IpaEuiccDataRequest", request)
    assert bytes(asked["tagList"]) == bytes.fromhex("84")
    answer = bytes.fromhex("840105") + tlv.encode_tlv(b"\x87", asked["eimTransactionId"])
    eim.provide(device.eid_bytes, tlv.encode_tlv(b"\xbf\x52", tlv.encode_tlv(b"\xa0", answer)))
    record = eim.api("GET", f"/euiccs/{device.eid}")["euicc"]
    assert (record["associationToken"], record["associationTokenSource"]) == (5, "ipaEuiccData")
    package = package_of(eim.poll(device.eid_bytes))
    eim.provide(device.eid_bytes, device.epr(package, 1, 5))
    record = eim.api("GET", f"/euiccs/{device.eid}")["euicc"]
    assert (record["associationToken"], record["associationTokenSource"]) == (5, "epr")


def test_a_forged_notification_neither_counts_nor_acknowledges(nist: TestPki) -> None:
    eim, device = Eim(nist), Device(nist)
    eim.register(device)
    forged = device.pir(seq=7, address=SMDP_ADDRESS, forge=True)
    both = tlv.encode_tlv(b"\xbf\x52", tlv.encode_tlv(b"\xa0", tlv.encode_tlv(b"\xa0", forged)))
    assert eim.provide(device.eid_bytes, both) == bytes.fromhex("BF50023000")  # no ack of 7
    (event,) = [e for e in eim.core.store.events(device.eid) if e.kind == "notification"]
    assert (event.verified, event.accepted) == (False, False)
    assert eim.forwarded == []


# --- 4. notifications verified, forwarded only to the order's SM-DP+ -----------------------


def _sent_download(eim: Eim, device: Device) -> tuple[int, bytes]:
    code = f"1${SMDP_ADDRESS}$MATCH-1"
    order = eim.api(
        "POST",
        f"/euiccs/{device.eid}/orders",
        201,
        json={"type": "download", "activationCode": code},
    )
    trigger = package_of(eim.poll(device.eid_bytes))
    return order["id"], bytes(
        schema.decode("ProfileDownloadTriggerRequest", trigger)["eimTransactionId"]
    )


def _download_result(tid: bytes, pir: bytes) -> bytes:
    return tlv.encode_tlv(b"\xbf\x54", tlv.encode_tlv(b"\x82", tid) + pir)


def test_a_pir_with_a_zero_signature_neither_completes_nor_is_forwarded(nist: TestPki) -> None:
    eim, device = Eim(nist), Device(nist)
    eim.register(device)
    order_id, tid = _sent_download(eim, device)
    forged = device.pir(seq=3, address="attacker.example:9", forge=True)
    assert eim.provide(device.eid_bytes, _download_result(tid, forged)) == bytes.fromhex(
        "BF50023000"
    )
    assert eim.api("GET", f"/orders/{order_id}")["state"] == "sent"
    assert eim.forwarded == []


def test_a_verified_pir_completes_and_goes_only_to_the_orders_smdp(nist: TestPki) -> None:
    eim, device = Eim(nist), Device(nist)
    eim.register(device)
    order_id, tid = _sent_download(eim, device)
    pir = device.pir(seq=3, address="attacker.example:9")  # the address inside is ignored
    assert eim.provide(device.eid_bytes, _download_result(tid, pir)) == bytes.fromhex(
        "BF5006BF5303800103"
    )
    shown = eim.api("GET", f"/orders/{order_id}")
    assert (shown["state"], shown["signatureVerified"]) == ("done", True)
    assert eim.forwarded == [(SMDP_ADDRESS, "handleNotification")]


# --- 5. outbound connections under control --------------------------------------------------


def _initiate(address: str) -> bytes:
    return schema.encode(
        "InitiateAuthenticationRequestEsipa",
        {
            "euiccChallenge": b"\x11" * 16,
            "smdpAddress": address,
            "euiccInfo1": {
                "svn": b"\x02\x02\x00",
                "euiccCiPKIdListForVerification": [b"\x01" * 20],
                "euiccCiPKIdListForSigning": [b"\x01" * 20],
            },
        },
    )


def test_the_eim_connects_only_to_smdps_it_is_configured_for(nist: TestPki) -> None:
    eim = Eim(nist)
    for address in ("127.0.0.1:22", "attacker.example", "a" * 64 + ".example", "x:99999"):
        answer = eim.esipa(_initiate(address))
        assert answer == bytes.fromhex("BF3903810101")  # invalidDpAddress, nowhere connected
    assert eim.forwarded == []


class SlowSmdp:
    """An SM-DP+ on 127.0.0.1 that holds every ES9+ request until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.holding = 0
        self.lock = threading.Lock()

        async def es9(request: Request) -> Response:
            import asyncio

            with self.lock:
                self.holding += 1
            await asyncio.to_thread(self.release.wait, 60)
            return Response(b"{}", 200, media_type="application/json")

        self.app = Starlette(routes=[Route("/gsma/rsp2/es9plus/{function}", es9, methods=["POST"])])


def test_a_slow_smdp_times_out_and_never_stalls_either_binding(nist: TestPki) -> None:
    slow = SlowSmdp()
    with run_app(slow.app) as smdp_server:
        eim = build_eim(nist, tls=False, default_smdp_address=smdp_server.address)
        client = Es9Client(scheme="http", timeout=1.0, max_concurrent=2, queue_timeout=0.5)
        eim.core.relay = SmdpRelay(client)
        device = Device(nist)
        with (
            run_in_thread(eim.core) as server,
            httpx.Client(base_url=server.base_url, timeout=60) as http,
        ):
            http.post(
                "/api/euiccs",
                json={"eid": device.eid, "euiccCertificate": device.cert_pem},
                headers=eim.core.auth.header,
            ).raise_for_status()
            # The read timeout answers a held call with an error: no request waits forever.
            alone = http.post(
                "/gsma/rsp2/asn1", content=_initiate(smdp_server.address), headers=ASN1
            )
            assert alone.status_code == 200 and alone.content[:2] == b"\xbf\x39"
            assert schema.decode("InitiateAuthenticationResponseEsipa", alone.content)[0] == (
                "initiateAuthenticationErrorEsipa"
            )
            # Now the SM-DP+ holds calls longer than any timeout: many of them, both bindings.
            client._timeout = httpx.Timeout(60.0, connect=5.0, pool=0.5)
            answers: list[int] = []

            def hold(json_binding: bool) -> None:
                with httpx.Client(base_url=server.base_url, timeout=90) as own:
                    if json_binding:
                        body = {
                            "euiccChallenge": b64(b"\x11" * 16),
                            "smdpAddress": smdp_server.address,
                            "euiccInfo1": b64(bytes.fromhex("BF2000")),
                        }
                        r = own.post(
                            "/gsma/rsp2/esipa/initiateAuthentication", json=body, headers=JSON
                        )
                    else:
                        r = own.post(
                            "/gsma/rsp2/asn1", content=_initiate(smdp_server.address), headers=ASN1
                        )
                    answers.append(r.status_code)

            threads = [threading.Thread(target=hold, args=(i % 2 == 0,)) for i in range(8)]
            for thread in threads:
                thread.start()
            while slow.holding < 3:  # the first one, and two held now
                threading.Event().wait(0.05)
            # ESipa goes on: GetEimPackage in both bindings while the SM-DP+ holds its calls.
            asn1 = http.post(
                "/gsma/rsp2/asn1",
                content=schema.encode("GetEimPackageRequest", {"eidValue": device.eid_bytes}),
                headers=ASN1,
            )
            assert asn1.content == bytes.fromhex("BF4F03020101")
            answer = http.post(
                "/gsma/rsp2/esipa/getEimPackage", json={"eidValue": device.eid}, headers=JSON
            )
            assert answer.json()["eimPackageError"] == 1
            assert not slow.release.is_set() and slow.holding >= 3
            slow.release.set()
            for thread in threads:
                thread.join(90)
            assert len(answers) == 8 and all(status in (200, 503) for status in answers)


# --- 6. hostile bodies -----------------------------------------------------------------------


def _hostile_requests(eid: str) -> list[tuple[str, str, dict[str, Any], int]]:
    """(method, path, httpx arguments, expected status) of hostile requests to the eIM."""
    deep = b"[" * 100_000 + b"]" * 100_000
    big_int = b'{"eidValue": ' + b"9" * 5000 + b"}"
    unknown_choice = tlv.encode_tlv(  # an IpaEuiccDataResponse alternative the schema lacks
        b"\xbf\x50", tlv.encode_tlv(b"\x5a", bytes.fromhex(eid)) + bytes.fromhex("BF5203800100")
    )
    return [
        ("POST", "/gsma/rsp2/asn1", {"content": unknown_choice, "headers": ASN1}, 400),
        ("POST", "/gsma/rsp2/asn1", {"content": b"\x30" * 300_000, "headers": ASN1}, 413),
        (
            "POST",
            "/gsma/rsp2/asn1",
            {"content": b"\xbf\x4f\x84\xff\xff\xff\xff", "headers": ASN1},
            400,
        ),
        (
            "POST",
            "/gsma/rsp2/asn1",
            {"content": bytes.fromhex("BF4F125A10") + b"\x89" * 16 + b"\x00", "headers": ASN1},
            400,
        ),
        (
            "POST",
            "/gsma/rsp2/asn1",
            {"content": bytes.fromhex("BF50035A0189"), "headers": ASN1},
            400,
        ),
        ("POST", "/gsma/rsp2/esipa/getEimPackage", {"content": deep, "headers": JSON}, 200),
        ("POST", "/gsma/rsp2/esipa/getEimPackage", {"content": big_int, "headers": JSON}, 200),
        (
            "POST",
            "/gsma/rsp2/esipa/getEimPackage",
            {"content": b'{"eidValue": "zz"}', "headers": JSON},
            200,
        ),
        (
            "POST",
            "/gsma/rsp2/esipa/getEimPackage",
            {"content": b'{"eidValue": NaN}', "headers": JSON},
            200,
        ),
        (
            "POST",
            "/gsma/rsp2/esipa/provideEimPackageResult",
            {"content": b'{"eimPackageResult": "!!"}', "headers": JSON},
            200,
        ),
        (
            "POST",
            "/gsma/rsp2/esipa/provideEimPackageResult",
            {"content": b'{"eimPackageResult": "MAA="}', "headers": JSON},
            200,
        ),
        (
            "POST",
            "/gsma/rsp2/esipa/handleNotification",
            {"content": b"\xff\xfe", "headers": JSON},
            200,
        ),
        ("POST", "/gsma/rsp2/esipa/nothing", {"content": b"{}", "headers": JSON}, 404),
        ("GET", "/api/orders/9223372036854775808", {}, 404),
        ("GET", "/api/orders/" + "9" * 400, {}, 404),
        (
            "POST",
            f"/api/euiccs/{eid}/orders",
            {"json": {"type": "download", "activationCode": "1$" + "a" * 64 + ".example$X"}},
            400,
        ),
        (
            "POST",
            f"/api/euiccs/{eid}/orders",
            {"content": b'{"type": "psmo", "operations": [' * 40},
            400,
        ),
        (
            "PATCH",
            f"/api/euiccs/{eid}",
            {"content": b'{"counterValue": ' + b"1" * 4000 + b"}"},
            400,
        ),
        ("PATCH", f"/api/euiccs/{eid}", {"json": {"counterValue": 2**62}}, 400),
        ("POST", "/api/euiccs", {"json": {"eid": eid, "associationToken": 2**40}}, 400),
        ("GET", "/gsma/rsp2/es9plus", {}, 404),
        ("DELETE", "/gsma/rsp2/asn1", {}, 405),
        ("GET", "/../../etc/passwd", {}, 404),
    ]


def test_hostile_bodies_get_a_4xx_or_a_function_error_and_change_nothing(nist: TestPki) -> None:
    eim, device = Eim(nist), Device(nist)
    eim.register(device)
    eim.api("POST", f"/euiccs/{device.eid}/orders", 201, json=enable())
    before = eim.snapshot()
    for method, path, arguments, expected in _hostile_requests(device.eid):
        headers = {**eim.core.auth.header, **arguments.pop("headers", {})}
        response = eim.client.request(method, path, headers=headers, **arguments)
        assert response.status_code == expected, (path, response.text)
        assert "Traceback" not in response.text
        if expected == 200:  # an ESipa JSON function: its error, with a reason
            status = response.json()["header"]["functionExecutionStatus"]
            assert status["status"] == "Failed" and status["statusCodeData"]["message"]
        else:
            assert response.text.strip()
    assert eim.snapshot() == before


def test_smdp_hostile_bodies(nist: TestPki) -> None:
    core = SmdpCore(SmdpConfig.from_test_pki(nist, SMDP_ADDRESS))
    core.orders.add_order("M-1", PACKAGE)
    client = AsgiClient(create_smdp_app(core, profiles_dir=TS48))
    es9 = "/gsma/rsp2/es9plus/"
    before = [o.to_json() for o in core.orders]
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("POST", es9 + "initiateAuthentication", {"content": b"{" * 50_000, "headers": JSON}, 200),
        (
            "POST",
            es9 + "initiateAuthentication",
            {"content": b'{"euiccChallenge": 1' + b"0" * 9000 + b"}", "headers": JSON},
            200,
        ),
        (
            "POST",
            es9 + "authenticateClient",
            {
                "json": {"transactionId": "XYZ", "authenticateServerResponse": "AA=="},
                "headers": JSON,
            },
            200,
        ),
        (
            "POST",
            es9 + "authenticateClient",
            {
                "json": {"transactionId": "00" * 16, "authenticateServerResponse": "vzgA"},
                "headers": JSON,
            },
            200,
        ),
        ("POST", es9 + "getBoundProfilePackage", {"content": b"x" * 400_000, "headers": JSON}, 413),
        ("POST", es9 + "unknown", {"content": b"{}", "headers": JSON}, 404),
        (
            "POST",
            "/admin/orders",
            {"json": {"matchingId": "M-2", "profile": PACKAGE.name, "ppr1": "yes"}},
            400,
        ),
        (
            "POST",
            "/admin/orders",
            {"json": {"matchingId": "M-2", "profile": "../" * 50 + "etc/passwd"}},
            400,
        ),
        ("POST", "/admin/orders", {"content": b'{"matchingId": ' + b"[" * 5000}, 400),
        ("POST", "/admin/nothing", {}, 404),
    ]
    for method, path, arguments, expected in cases:
        headers = {**core.auth.header, **arguments.pop("headers", {})}
        response = client.request(method, path, headers=headers, **arguments)
        assert response.status_code == expected, (path, response.text)
        assert "Traceback" not in response.text
        if expected == 200:
            assert response.json()["header"]["functionExecutionStatus"]["status"] == "Failed"
    assert [o.to_json() for o in core.orders] == before and len(core.sessions) == 0


def test_json_limits() -> None:
    limits = Limits(max_json_depth=3, max_int_digits=4)
    assert parse_json(b'{"a": [1, "[[[["]}', limits) == {"a": [1, "[[[["]}
    for bad in (b"[[[[1]]]]", b"12345", b"\xff", b"NaN", b'{"a": 1', b"-Infinity"):
        with pytest.raises(JsonError):
            parse_json(bad, limits)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize(
    "partial",
    [
        b"POST /gsma/rsp2/asn1 HTTP/1.1\r\nHost: eim\r\nContent-Le",  # half the headers
        b"",  # connects and says nothing
        # half a body:
        b'POST /api/euiccs HTTP/1.1\r\nHost: eim\r\nContent-Length: 100\r\n\r\n{"eid": ',
    ],
)
@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_incomplete_requests_are_closed_while_others_are_served(
    nist: TestPki, partial: bytes, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if parser == "h11":  # the guarded h11 protocol, served when httptools is not installed
        monkeypatch.setattr(serve_module, "HttpToolsProtocol", None)
    limits = Limits(header_timeout=1.0, body_timeout=1.0)
    eim = build_eim(nist, tls=False, limits=limits)
    with run_in_thread(eim.core) as server:
        before = len(eim.core.store.euiccs())
        slow = socket.create_connection((server.host, server.port), timeout=30)
        with slow:
            slow.sendall(partial)
            # Another client is served while the slow one holds its connection.
            answer = httpx.get(
                server.base_url + "/api/eim", headers=eim.core.auth.header, timeout=30
            )
            assert answer.status_code == 200
            closing = _read_until_closed(slow)  # returns only once the server closed it
        if b"Content-Length: 100" in partial:  # the app had the request: 408 or cut off
            assert closing == b"" or closing.startswith(b"HTTP/1.1 408")
        else:  # the headers never came
            assert closing.startswith(b"HTTP/1.1 408 Request Timeout")
        assert len(eim.core.store.euiccs()) == before


def test_the_relay_refuses_addresses_that_are_not_host_names() -> None:
    from euicc_servers.common.addresses import AddressError, canonical_address

    assert canonical_address("SMDP.Example.com:0443") == "smdp.example.com:443"
    for bad in ("a" * 64 + ".com", "x" * 254, "host:0", "host:70000", "-bad.com", "a b", "", "h:"):
        with pytest.raises(AddressError):
            canonical_address(bad)
    with pytest.raises(ValueError):
        Es9Client(max_concurrent=0)


# --- 8. load (the benchmark, short) ---------------------------------------------------------


def test_load_benchmark_short_run_ends_every_order_verified() -> None:
    """benchmarks/eim_load.py with 20 devices for 2 s (the benchmark runs 200 for 30 s)."""
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "eim_load.py"
    command = [sys.executable, str(script), "--devices", "20", "--seconds", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["devices"] == 20 and result["orders_done"] > 0
    assert (result["failed_cycles"], result["unverified"], result["stranded"]) == (0, 0, 0)


def test_a_version_1_eim_database_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    from euicc_servers.eim.store import DB_FILE, EimStore

    old = sqlite3.connect(tmp_path / DB_FILE)
    old.executescript(
        "CREATE TABLE euiccs (eid TEXT PRIMARY KEY, euicc_certificate BLOB, eum_certificate BLOB,"
        " public_key BLOB, key_source TEXT, association_token INTEGER, counter INTEGER NOT NULL,"
        " euicc_ci_pkid BLOB, last_seen TEXT, state_change TEXT, created TEXT NOT NULL,"
        " updated TEXT NOT NULL);"
        "INSERT INTO euiccs (eid, counter, created, updated) VALUES ('89', 3, 'x', 'x');"
        "PRAGMA user_version=1;"
    )
    old.commit()
    old.close()
    store = EimStore(tmp_path)
    record = store.euicc("89")
    assert record is not None and (record.counter, record.token_source) == (3, None)
    store.close()
