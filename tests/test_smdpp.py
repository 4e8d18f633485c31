"""The reference SM-DP+ (euicc_servers.smdpp): ES9+ JSON binding, protocol checks, orders.

Most tests talk HTTP to the ASGI app in-process (httpx.ASGITransport) while a software
eUICC built from euicc_protocol primitives plays the card: it holds its one-time key, so the test
can
open the bound profile package and compare it with the profile package on disk. One test runs
the real uvicorn server over HTTPS on 127.0.0.1 (TLS verified against the CI certificate)
with the emulated card (euicc_sim) doing the card side through raw ES10 payloads; another
drives that card in-process against the GSMA SGP.26 credentials.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_client import AsgiClient
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from euicc_protocol import bpp, crypto, pki, schema, scp03t, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import eid_to_bytes, make_eid
from euicc_protocol.iccid import iccid_to_ef
from euicc_protocol.testpki import TestPki, generate_test_pki, issue_euicc_certificate, load_sgp26
from euicc_servers.smdpp import (
    FunctionFailed,
    OrderState,
    OrderStore,
    SmdpConfig,
    SmdpCore,
    create_app,
    run_in_thread,
)
from euicc_servers.smdpp import serve as serve_module
from euicc_servers.smdpp.config import SGP26, ConfigError, DpCredentials
from euicc_servers.smdpp.orders import OrderError, OrderEvent, ProfileSource, cc_digest
from euicc_servers.smdpp.serve import add_smdpp_command, build_core
from euicc_sim.card import Euicc
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
PACKAGE = TS48 / "TS48V1-A-UNIQUE.der"
OTHER_PACKAGE = TS48 / "TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"
ADDRESS = "smdp.example.com"
HEADERS = {"Content-Type": "application/json", "X-Admin-Protocol": "gsma/rsp/v2.2.2"}
ES9 = "/gsma/rsp2/es9plus/"
SIG = b"\x5f\x37"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def children(data: bytes) -> list[bytes]:
    """The complete TLVs inside the TLV ``data`` starts with."""
    outer = tlv.read_tlv(data)
    out, pos = [], outer.value_start
    for item in tlv.iter_tlvs(data, outer.value_start, outer.value_end):
        out.append(data[pos : item.end])
        pos = item.end
    return out


# --- the server under test ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def nist() -> TestPki:
    return generate_test_pki(Curve.NIST_P256)


@pytest.fixture(scope="module")
def other_pki() -> TestPki:
    """A second, unrelated PKI (another CI)."""
    return generate_test_pki(Curve.NIST_P256)


def asgi(app: Any) -> AsgiClient:
    """The SM-DP+ app in-process."""
    return AsgiClient(app, "http://smdp.test")


class Clock:
    """An injectable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Server:
    core: SmdpCore
    client: AsgiClient
    clock: Clock
    pki: TestPki

    def post(self, function: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post(ES9 + function, content=content, headers=headers or HEADERS)

    def ok(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.post(function, body)
        assert response.status_code == 200
        answer = response.json()
        assert answer["header"]["functionExecutionStatus"] == {"status": "Executed-Success"}, answer
        return dict(answer)

    def failed(self, function: str, body: Any, headers: dict[str, str] | None = None) -> str:
        """The "subject/reason" of a Failed answer."""
        response = self.post(function, body, headers)
        assert response.status_code == 200
        status = response.json()["header"]["functionExecutionStatus"]
        assert status["status"] == "Failed"
        data = status["statusCodeData"]
        assert data["message"]
        return f"{data['subjectCode']}/{data['reasonCode']}"

    def order(self, matching_id: str) -> Any:
        return self.core.orders.get(matching_id)


def make_server(test_pki: TestPki, state: Path | None = None, **options: Any) -> Server:
    clock = Clock()
    config = SmdpConfig.from_test_pki(test_pki, options.pop("address", ADDRESS), **options)
    core = SmdpCore(config, OrderStore(state), clock=clock)
    return Server(core, asgi(create_app(core, profiles_dir=TS48)), clock, test_pki)


@pytest.fixture
def server(nist: TestPki) -> Server:
    srv = make_server(nist)
    srv.core.orders.add_order("ABC-123", PACKAGE)
    return srv


# --- the eUICC, played with rsp primitives -----------------------------------------------------


def ctx_params1(matching_id: str | None) -> bytes:
    ctx: dict[str, Any] = {
        "deviceInfo": {"tac": bytes.fromhex("35290611"), "deviceCapabilities": {}}
    }
    if matching_id is not None:
        ctx["matchingId"] = matching_id
    return schema.encode("CtxParams1", ("ctxParamsForCommonAuthentication", ctx))


@dataclass
class SoftEuicc:
    """An eUICC made of a test PKI's eUICC credentials; each step builds what a card would
    send, with keyword arguments to break one thing at a time."""

    pki: TestPki
    euicc_key: ec.EllipticCurvePrivateKey | None = None
    euicc_cert: x509.Certificate | None = None
    eum_cert: x509.Certificate | None = None
    svn: bytes = b"\x02\x05\x00"
    challenge: bytes = field(default_factory=lambda: os.urandom(16))
    transaction_id: bytes = b""
    server_challenge: bytes = b""
    server_address: str = ""
    signature1_tlv: bytes = b""
    otsk: ec.EllipticCurvePrivateKey | None = None
    smdp_signature2_tlv: bytes = b""

    def __post_init__(self) -> None:
        self.euicc_key = self.euicc_key or self.pki.euicc.key
        self.euicc_cert = self.euicc_cert or self.pki.euicc.cert
        self.eum_cert = self.eum_cert or self.pki.eum.cert

    @property
    def eid(self) -> str:
        assert self.euicc_cert is not None
        eid = pki.subject_serial_number(self.euicc_cert)
        assert eid is not None
        return eid

    def info1(
        self, verification: list[bytes] | None = None, signing: list[bytes] | None = None
    ) -> bytes:
        skis = [self.pki.ci.ski]
        return schema.encode(
            "EUICCInfo1",
            {
                "svn": self.svn,
                "euiccCiPKIdListForVerification": skis if verification is None else verification,
                "euiccCiPKIdListForSigning": skis if signing is None else signing,
            },
        )

    def initiate_request(self, address: str = ADDRESS, **info: Any) -> dict[str, Any]:
        return {
            "euiccChallenge": b64(self.challenge),
            "euiccInfo1": b64(self.info1(**info)),
            "smdpAddress": address,
        }

    def accept_initiate(self, answer: dict[str, Any]) -> None:
        """Check initiateAuthentication's answer as AuthenticateServer would, keep the session."""
        signed1 = unb64(answer["serverSigned1"])
        signature1 = unb64(answer["serverSignature1"])
        assert signature1[:3] == b"\x5f\x37\x40"
        server_cert = pki.load_certificate(unb64(answer["serverCertificate"]))
        pki.check_server_certificate(server_cert, self.pki.ci_keys(), pki.CertRole.DP_AUTH)
        key = server_cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        crypto.verify_raw(key, signature1[3:], signed1)
        value = schema.decode("ServerSigned1", signed1)
        assert value["euiccChallenge"] == self.challenge
        assert unb64(answer["euiccCiPKIdToBeUsed"]) == b"\x04\x14" + self.pki.ci.ski
        assert value["transactionId"].hex().upper() == answer["transactionId"]
        self.transaction_id = value["transactionId"]
        self.server_challenge = value["serverChallenge"]
        self.server_address = value["serverAddress"]

    def info2(self) -> dict[str, Any]:
        skis = [self.pki.ci.ski]
        return {
            "profileVersion": b"\x02\x03\x01",
            "svn": self.svn,
            "euiccFirmwareVer": b"\x01\x00\x00",
            "extCardResource": bytes.fromhex("810100820400010000830200ff"),
            "uiccCapability": schema.bits([0, 1, 2]),
            "rspCapability": schema.bits([0, 4]),
            "euiccCiPKIdListForVerification": skis,
            "euiccCiPKIdListForSigning": skis,
            "ppVersion": b"\x01\x00\x00",
            "sasAcreditationNumber": "TEST",
        }

    def authenticate_response(
        self,
        matching_id: str | None = "ABC-123",
        *,
        transaction_id: bytes | None = None,
        server_challenge: bytes | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """The BF38 AuthenticateServerResponse (authenticateResponseOk)."""
        signed1 = schema.encode(
            "EuiccSigned1",
            {
                "transactionId": transaction_id or self.transaction_id,
                "serverAddress": self.server_address,
                "serverChallenge": server_challenge or self.server_challenge,
                "euiccInfo2": self.info2(),
                "ctxParams1": schema.decode("CtxParams1", ctx_params1(matching_id)),
            },
        )
        assert self.euicc_key is not None and self.euicc_cert is not None
        assert self.eum_cert is not None
        signature = crypto.sign_raw(signer or self.euicc_key, signed1)
        self.signature1_tlv = tlv.encode_tlv(SIG, signature)
        der = [c.public_bytes(Encoding.DER) for c in (self.euicc_cert, self.eum_cert)]
        ok = tlv.encode_tlv(b"\xa0", signed1 + self.signature1_tlv + der[0] + der[1])
        return tlv.encode_tlv(b"\xbf\x38", ok)

    def authenticate_request(self, matching_id: str | None = "ABC-123", **kw: Any) -> dict:
        return {
            "transactionId": self.transaction_id.hex().upper(),
            "authenticateServerResponse": b64(self.authenticate_response(matching_id, **kw)),
        }

    def accept_authenticate(self, answer: dict[str, Any]) -> dict[str, Any]:
        """Check authenticateClient's answer as PrepareDownload would; return smdpSigned2."""
        signed2 = unb64(answer["smdpSigned2"])
        signature2 = unb64(answer["smdpSignature2"])
        assert signature2[:3] == b"\x5f\x37\x40"
        dp_pb = pki.load_certificate(unb64(answer["smdpCertificate"]))
        pki.check_server_certificate(dp_pb, self.pki.ci_keys(), pki.CertRole.DP_PB)
        key = dp_pb.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        crypto.verify_raw(key, signature2[3:], signed2 + self.signature1_tlv)
        self.smdp_signature2_tlv = signature2
        value = dict(schema.decode("SmdpSigned2", signed2))
        assert value["transactionId"] == self.transaction_id
        schema.decode("StoreMetadataRequest", unb64(answer["profileMetadata"]))
        return value

    def prepare_response(
        self,
        smdp_signed2: dict[str, Any] | None = None,
        *,
        cc: str | None = None,
        hash_cc: bytes | None = None,
        transaction_id: bytes | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """The BF21 PrepareDownloadResponse; reuses the one-time key if the SM-DP+ asks."""
        reuse = (smdp_signed2 or {}).get("bppEuiccOtpk")
        if self.otsk is None or reuse != crypto.public_point(self.otsk.public_key()):
            self.otsk = crypto.generate_private_key(self.pki.curve)
        value: dict[str, Any] = {
            "transactionId": transaction_id or self.transaction_id,
            "euiccOtpk": crypto.public_point(self.otsk.public_key()),
        }
        if cc is not None:
            hash_cc = hashlib.sha256(
                hashlib.sha256(cc.encode()).digest() + self.transaction_id
            ).digest()
        if hash_cc is not None:
            value["hashCc"] = hash_cc
        signed2 = schema.encode("EUICCSigned2", value)
        assert self.euicc_key is not None
        signature = crypto.sign_raw(signer or self.euicc_key, signed2 + self.smdp_signature2_tlv)
        ok = tlv.encode_tlv(b"\xa0", signed2 + tlv.encode_tlv(SIG, signature))
        return tlv.encode_tlv(b"\xbf\x21", ok)

    def prepare_request(self, smdp_signed2: dict[str, Any] | None = None, **kw: Any) -> dict:
        return {
            "transactionId": self.transaction_id.hex().upper(),
            "prepareDownloadResponse": b64(self.prepare_response(smdp_signed2, **kw)),
        }

    def open_bpp(self, bound: bytes) -> tuple[bytes, bytes]:
        """Verify and decrypt a BPP as the eUICC would: (StoreMetadataRequest, UPP)."""
        assert self.otsk is not None
        isc, first87, seq88, *rest = children(bound)
        isc_parts = children(isc)
        assert isc_parts[-1][:3] == b"\x5f\x37\x40"
        body = b"".join(isc_parts[:-1])
        euicc_otpk = crypto.public_point(self.otsk.public_key())
        key = self.pki.dp_pb.public_key
        crypto.verify_raw(key, isc_parts[-1][3:], bpp.smdp_sign_data(body, euicc_otpk))
        request = schema.decode("InitialiseSecureChannelRequest", isc)
        assert request["transactionId"] == self.transaction_id
        smdp_otpk = crypto.public_key_from_point(self.pki.curve, request["smdpOtpk"])
        keys = scp03t.derive_session_keys(
            crypto.ecdh_shared_secret(self.otsk, smdp_otpk),
            host_id=request["controlRefTemplate"]["hostId"],
            eid=eid_to_bytes(self.eid),
        )
        channel = scp03t.SecureChannel.from_session_keys(keys)
        assert channel.unprotect(children(first87)[0]) == bpp.CONFIGURE_ISDP_EMPTY
        metadata = b"".join(channel.unprotect(s) for s in children(seq88))
        if len(rest) == 2:
            rsk = schema.decode(
                "ReplaceSessionKeysRequest", channel.unprotect(children(rest[0])[0])
            )
            channel.replace_keys(rsk["ppkEnc"], rsk["ppkCmac"], rsk["initialMacChainingValue"])
        upp = b"".join(channel.unprotect(s) for s in children(rest[-1]))
        return metadata, upp

    def installation_result(
        self,
        *,
        success: bool = True,
        seq: int = 1,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        final: tuple[str, dict[str, Any]] = (
            (
                "successResult",
                {
                    "aid": bytes.fromhex("A0000005591010FFFFFFFF8900001100"),
                    "simaResponse": bytes.fromhex("3007A0053003800100"),
                },
            )
            if success
            else ("errorResult", {"bppCommandId": 5, "errorReason": 12})
        )
        data = schema.encode(
            "ProfileInstallationResultData",
            {
                "transactionId": self.transaction_id,
                "notificationMetadata": {
                    "seqNumber": seq,
                    "profileManagementOperation": schema.bits([0]),
                    "notificationAddress": self.server_address,
                },
                "smdpOid": "2.999.10",
                "finalResult": final,
            },
        )
        assert self.euicc_key is not None
        signature = crypto.sign_raw(signer or self.euicc_key, data)
        return tlv.encode_tlv(b"\xbf\x37", data + tlv.encode_tlv(SIG, signature))

    def cancel_response(
        self,
        reason: int,
        *,
        smdp_oid: str = "2.999.10",
        transaction_id: bytes | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        signed = schema.encode(
            "EuiccCancelSessionSigned",
            {
                "transactionId": transaction_id or self.transaction_id,
                "smdpOid": smdp_oid,
                "reason": reason,
            },
        )
        assert self.euicc_key is not None
        signature = crypto.sign_raw(signer or self.euicc_key, signed)
        return tlv.encode_tlv(
            b"\xbf\x41", tlv.encode_tlv(b"\xa0", signed + tlv.encode_tlv(SIG, signature))
        )

    def cancel_request(self, reason: int, **kw: Any) -> dict[str, Any]:
        return {
            "transactionId": self.transaction_id.hex().upper(),
            "cancelSessionResponse": b64(self.cancel_response(reason, **kw)),
        }


def start(server: Server, euicc: SoftEuicc, **info: Any) -> dict[str, Any]:
    answer = server.ok("initiateAuthentication", euicc.initiate_request(**info))
    euicc.accept_initiate(answer)
    return answer


def authenticate(
    server: Server, euicc: SoftEuicc, matching_id: str | None = "ABC-123"
) -> dict[str, Any]:
    start(server, euicc)
    answer = server.ok("authenticateClient", euicc.authenticate_request(matching_id))
    return euicc.accept_authenticate(answer)


def download(
    server: Server, euicc: SoftEuicc, matching_id: str | None = "ABC-123", **prepare: Any
) -> bytes:
    """A whole download up to the BPP; returns it."""
    signed2 = authenticate(server, euicc, matching_id)
    answer = server.ok("getBoundProfilePackage", euicc.prepare_request(signed2, **prepare))
    assert answer["transactionId"] == euicc.transaction_id.hex().upper()
    return unb64(answer["boundProfilePackage"])


def notify(server: Server, notification: bytes) -> None:
    response = server.post("handleNotification", {"pendingNotification": b64(notification)})
    assert response.status_code == 204
    assert response.content == b""


# --- success -----------------------------------------------------------------------------------


@pytest.mark.parametrize("replace_session_keys", [True, False])
def test_download_binds_the_ts48_package_and_installation_completes_the_order(
    nist: TestPki, replace_session_keys: bool
) -> None:
    server = make_server(nist)
    server.core.orders.add_order(
        "ABC-123", PACKAGE, replace_session_keys=replace_session_keys, ppr2=True
    )
    euicc = SoftEuicc(nist)
    bound = download(server, euicc)
    assert bound[:2] == b"\xbf\x36"
    assert len(children(bound)) == (5 if replace_session_keys else 4)
    metadata, upp = euicc.open_bpp(bound)
    assert upp == PACKAGE.read_bytes()
    meta = schema.decode("StoreMetadataRequest", metadata)
    assert meta["iccid"] == iccid_to_ef("8949449999999990023")
    assert meta["profileClass"] == 0  # TS.48 says it is a test profile
    assert schema.bit_positions(meta["profilePolicyRules"]) == {2}
    config = meta["notificationConfigurationInfo"][0]
    assert config["notificationAddress"] == ADDRESS
    assert schema.bit_positions(config["profileManagementOperation"]) == {0, 1, 2, 3}
    order = server.order("ABC-123")
    assert (order.state, order.bound_eid, order.downloads) == (OrderState.DOWNLOADED, euicc.eid, 1)

    notify(server, euicc.installation_result())
    order = server.order("ABC-123")
    assert order.state is OrderState.INSTALLED
    assert order.result["success"] and order.result["aid"].startswith("A000000559")
    # The session ended with the result.
    assert server.failed("getBoundProfilePackage", euicc.prepare_request()) == "8.10.1/3.9"


def test_download_on_brainpool() -> None:
    brp = generate_test_pki(Curve.BRAINPOOL_P256R1)
    server = make_server(brp)
    server.core.orders.add_order("ABC-123", OTHER_PACKAGE)
    euicc = SoftEuicc(brp)
    assert euicc.open_bpp(download(server, euicc))[1] == OTHER_PACKAGE.read_bytes()


def test_the_ci_is_chosen_among_several(nist: TestPki, other_pki: TestPki) -> None:
    config = SmdpConfig.from_test_pki([other_pki, nist], ADDRESS)
    core = SmdpCore(config)
    core.orders.add_order("ABC-123", PACKAGE)
    server = Server(core, asgi(create_app(core)), Clock(), nist)
    euicc = SoftEuicc(nist)
    signed2 = authenticate(server, euicc)  # checks DPauth/DPpb chain to nist's CI
    answer = server.ok("getBoundProfilePackage", euicc.prepare_request(signed2))
    assert euicc.open_bpp(unb64(answer["boundProfilePackage"]))[1] == PACKAGE.read_bytes()


def test_empty_matching_id_finds_the_order_pinned_to_the_eid(nist: TestPki) -> None:
    server = make_server(nist)
    euicc = SoftEuicc(nist)
    server.core.orders.add_order("for-my-eid", PACKAGE, eid=euicc.eid)
    assert euicc.open_bpp(download(server, euicc, matching_id=""))[1] == PACKAGE.read_bytes()
    assert server.order("for-my-eid").state is OrderState.DOWNLOADED
    other = SoftEuicc(nist)
    start(server, other)
    assert server.failed("authenticateClient", other.authenticate_request(None)) == "8.2.5/4.3"


# --- headers, content type, base64 -------------------------------------------------------------


def test_response_headers_and_value_encodings(server: Server) -> None:
    euicc = SoftEuicc(server.pki)
    response = server.post("initiateAuthentication", euicc.initiate_request())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert response.headers["x-admin-protocol"] == "gsma/rsp/v2.5.0"
    answer = response.json()
    assert answer["serverSignature1"].startswith("XzdA")  # 5F 37 40
    assert answer["euiccCiPKIdToBeUsed"].startswith("BB")  # 04 14 (BBQ/BBR/BBS/BBT)
    assert answer["serverSigned1"].startswith("M")  # 30
    tid = answer["transactionId"]
    assert len(tid) == 32 and tid == tid.upper() and bytes.fromhex(tid)
    for name in ("serverSigned1", "serverSignature1", "euiccCiPKIdToBeUsed", "serverCertificate"):
        assert len(answer[name]) % 4 == 0 and unb64(answer[name])  # padded, standard alphabet
    pki.load_certificate(unb64(answer["serverCertificate"]))


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json;charset=UTF-8", "Application/JSON; charset=utf-8"],
)
def test_json_content_types_are_accepted(server: Server, content_type: str) -> None:
    euicc = SoftEuicc(server.pki)
    headers = {**HEADERS, "Content-Type": content_type}
    response = server.post("initiateAuthentication", euicc.initiate_request(), headers)
    assert response.json()["header"]["functionExecutionStatus"]["status"] == "Executed-Success"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json;charset=latin-1"])
def test_other_content_types_are_refused(server: Server, content_type: str | None) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "Content-Type"}
    if content_type:
        headers["Content-Type"] = content_type
    euicc = SoftEuicc(server.pki)
    assert server.failed("initiateAuthentication", euicc.initiate_request(), headers) == "1.2.1/2.1"


@pytest.mark.parametrize("protocol", ["gsma/rsp/v2.1.0", "gsma/rsp/v2.2.2", "gsma/rsp/v2.5.0"])
def test_admin_protocol_v2_versions_are_accepted(server: Server, protocol: str) -> None:
    euicc = SoftEuicc(server.pki)
    headers = {**HEADERS, "X-Admin-Protocol": protocol}
    response = server.post("initiateAuthentication", euicc.initiate_request(), headers)
    assert response.json()["header"]["functionExecutionStatus"]["status"] == "Executed-Success"


@pytest.mark.parametrize("protocol", [None, "gsma/rsp/v3.0.0", "gsma/rsp/", "other"])
def test_other_admin_protocols_are_refused(server: Server, protocol: str | None) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "X-Admin-Protocol"}
    if protocol:
        headers["X-Admin-Protocol"] = protocol
    euicc = SoftEuicc(server.pki)
    assert server.failed("initiateAuthentication", euicc.initiate_request(), headers) == "1.2.2/2.1"


def test_optional_request_header_object(server: Server) -> None:
    euicc = SoftEuicc(server.pki)
    header = {"functionRequesterIdentifier": "ipad", "functionCallIdentifier": "1"}
    server.ok("initiateAuthentication", {"header": header, **euicc.initiate_request()})
    bad = {"header": "x", **euicc.initiate_request()}
    assert server.failed("initiateAuthentication", bad) == "1.3.1/2.1"


def test_base64_with_whitespace_and_lowercase_transaction_id_are_accepted(server: Server) -> None:
    euicc = SoftEuicc(server.pki)
    request = euicc.initiate_request()
    info1 = request["euiccInfo1"]
    request["euiccInfo1"] = " " + info1[:10] + "\r\n" + info1[10:] + "\n"
    euicc.accept_initiate(server.ok("initiateAuthentication", request))
    body = euicc.authenticate_request()
    body["transactionId"] = body["transactionId"].lower()
    answer = server.ok("authenticateClient", body)
    assert answer["transactionId"] == euicc.transaction_id.hex().upper()


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda r: r.pop("euiccInfo1"), "1.3.1/2.2"),
        (lambda r: r.pop("smdpAddress"), "1.3.1/2.2"),
        (lambda r: r.update(euiccInfo1=r["euiccInfo1"].rstrip("=")), "1.3.1/2.1"),
        (
            lambda r: r.update(
                euiccInfo1=r["euiccInfo1"].replace("/", "_").replace("+", "-") + "_-"
            ),
            "1.3.1/2.1",
        ),
        (lambda r: r.update(euiccInfo1=12), "1.3.1/2.1"),
        (lambda r: r.update(euiccInfo1=b64(b"\x30\x00")), "1.3.1/2.1"),
        # euiccChallenge is the raw 16 bytes, not a TLV
        (lambda r: r.update(euiccChallenge=b64(b"\x80\x10" + bytes(16))), "1.3.1/2.1"),
    ],
)
def test_malformed_initiate_requests(server: Server, mutate: Any, code: str) -> None:
    request = SoftEuicc(server.pki).initiate_request()
    mutate(request)
    assert server.failed("initiateAuthentication", request) == code


def test_body_must_be_a_json_object(server: Server) -> None:
    assert server.failed("initiateAuthentication", b"{not json") == "1.3.1/2.1"
    assert server.failed("initiateAuthentication", b"[1, 2]") == "1.3.1/2.1"
    assert (
        server.failed(
            "authenticateClient", {"transactionId": "XYZ", "authenticateServerResponse": ""}
        )
        == "1.3.1/2.1"
    )


def test_unknown_function_and_method(server: Server) -> None:
    assert server.post("getProfile", {}).status_code == 404
    assert server.client.get(ES9 + "initiateAuthentication").status_code == 405


# --- initiateAuthentication --------------------------------------------------------------------


@pytest.mark.parametrize("address", ["SMDP.Example.COM", "smdp.example.com:443", ADDRESS])
def test_address_is_compared_case_insensitively_with_optional_port(
    server: Server, address: str
) -> None:
    euicc = SoftEuicc(server.pki)
    euicc.accept_initiate(server.ok("initiateAuthentication", euicc.initiate_request(address)))
    assert euicc.server_address == address


def test_configured_port_must_match(nist: TestPki) -> None:
    server = make_server(nist, address="127.0.0.1:8443")
    euicc = SoftEuicc(nist)
    server.ok("initiateAuthentication", euicc.initiate_request("127.0.0.1:8443"))
    server.ok("initiateAuthentication", euicc.initiate_request("127.0.0.1"))
    assert (
        server.failed("initiateAuthentication", euicc.initiate_request("127.0.0.1:9443"))
        == "8.8.1/3.8"
    )


def test_initiate_authentication_refusals(server: Server, other_pki: TestPki) -> None:
    euicc = SoftEuicc(server.pki)
    ours, theirs = server.pki.ci.ski, other_pki.ci.ski
    cases = [
        ("8.8.1/3.8", euicc.initiate_request("other.example.com")),
        ("8.8.2/3.1", euicc.initiate_request(verification=[theirs], signing=[theirs])),
        # our CI only for verification: the eUICC could not sign under it
        ("8.8.2/3.1", euicc.initiate_request(verification=[ours, theirs], signing=[theirs])),
    ]
    for code, request in cases:
        assert server.failed("initiateAuthentication", request) == code
    euicc.svn = b"\x01\x02\x00"
    assert server.failed("initiateAuthentication", euicc.initiate_request()) == "8.8.3/3.1"


def test_trusted_ci_without_dpauth_is_8_8_4(nist: TestPki, other_pki: TestPki) -> None:
    config = SmdpConfig.from_test_pki(
        nist, ADDRESS, trusted_ci_keys={**nist.ci_keys(), **other_pki.ci_keys()}
    )
    core = SmdpCore(config)
    server = Server(core, asgi(create_app(core)), Clock(), nist)
    theirs = [other_pki.ci.ski]
    request = SoftEuicc(other_pki).initiate_request(verification=theirs, signing=theirs)
    assert server.failed("initiateAuthentication", request) == "8.8.4/3.7"


# --- authenticateClient ------------------------------------------------------------------------


def refused_authentication(server: Server, euicc: SoftEuicc, **kw: Any) -> str:
    start(server, euicc)
    return server.failed("authenticateClient", euicc.authenticate_request(**kw))


def test_authenticate_client_verification_failures(server: Server, other_pki: TestPki) -> None:
    nist = server.pki
    assert refused_authentication(server, SoftEuicc(nist), signer=other_pki.euicc.key) == "8.1/6.1"
    assert refused_authentication(server, SoftEuicc(nist), server_challenge=bytes(16)) == "8.1/6.1"
    assert refused_authentication(server, SoftEuicc(nist), transaction_id=bytes(16)) == (
        "8.10.1/3.9"
    )
    # An eUICC of another CI (its EUM is not under the CI of the session).
    foreign = SoftEuicc(
        nist,
        euicc_key=other_pki.euicc.key,
        euicc_cert=other_pki.euicc.cert,
        eum_cert=other_pki.eum.cert,
    )
    assert refused_authentication(server, foreign) == "8.11.1/3.9"
    # eUICC certificate not signed by its EUM.
    key, cert = issue_euicc_certificate(nist.eum.cert, other_pki.eum.key, make_eid())
    assert refused_authentication(server, SoftEuicc(nist, euicc_key=key, euicc_cert=cert)) == (
        "8.1.3/6.1"
    )
    # Something that is not an EUM certificate (DPauth has the CI as issuer but another role).
    assert refused_authentication(server, SoftEuicc(nist, eum_cert=nist.dp_auth.cert)) == (
        "8.1.2/6.1"
    )
    # EID outside the EUM's permitted EIN prefix.
    key, cert = issue_euicc_certificate(
        nist.eum.cert, nist.eum.key, make_eid("89049099"), enforce_prefix=False
    )
    assert refused_authentication(server, SoftEuicc(nist, euicc_key=key, euicc_cert=cert)) == (
        "8.1.4/6.1"
    )
    # Not yet valid eUICC certificate (the server checks validity with its clock).
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    key, cert = issue_euicc_certificate(nist.eum.cert, nist.eum.key, make_eid(), now=later)
    assert refused_authentication(server, SoftEuicc(nist, euicc_key=key, euicc_cert=cert)) == (
        "8.1.3/6.3"
    )


def test_expired_eum_certificate(nist: TestPki) -> None:
    core = SmdpCore(
        SmdpConfig.from_test_pki(nist, ADDRESS),
        wall_clock=lambda: dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    )
    server = Server(core, asgi(create_app(core)), Clock(), nist)
    assert refused_authentication(server, SoftEuicc(nist)) == "8.1.2/6.3"


def test_authentication_failure_ends_the_session(server: Server) -> None:
    euicc = SoftEuicc(server.pki)
    refused_authentication(server, euicc, server_challenge=bytes(16))
    assert server.failed("authenticateClient", euicc.authenticate_request()) == "8.10.1/3.9"


def test_authenticate_client_refuses_an_eUICC_error_answer(server: Server) -> None:
    euicc = SoftEuicc(server.pki)
    start(server, euicc)
    error = schema.encode(
        "AuthenticateServerResponse",
        (
            "authenticateResponseError",
            {"transactionId": euicc.transaction_id, "authenticateErrorCode": 6},
        ),
    )
    body = {"transactionId": euicc.transaction_id.hex(), "authenticateServerResponse": b64(error)}
    assert server.failed("authenticateClient", body) == "8.1/6.1"
    body["authenticateServerResponse"] = b64(b"\xbf\x38\x03\x80\x01\x00")
    start(server, euicc)
    body["transactionId"] = euicc.transaction_id.hex()
    assert server.failed("authenticateClient", body) == "1.3.1/2.1"


def test_authenticate_client_order_refusals(nist: TestPki, other_pki: TestPki) -> None:
    server = make_server(nist)
    orders = server.core.orders
    orders.add_order("pinned", PACKAGE, eid=make_eid())
    orders.add_order("taken", PACKAGE)
    orders.add_order("done", PACKAGE)
    orders.add_order("gone", PACKAGE)
    first = SoftEuicc(nist)
    authenticate(server, first, "taken")
    download(server, first, "done")
    notify(server, first.installation_result())
    authenticate(server, first, "gone")
    server.ok("cancelSession", first.cancel_request(0))  # endUserRejection: order cancelled

    key, cert = issue_euicc_certificate(nist.eum.cert, nist.eum.key, make_eid())
    second = SoftEuicc(nist, euicc_key=key, euicc_cert=cert)
    assert refused_authentication(server, second, matching_id="nope") == "8.2.6/3.8"
    assert refused_authentication(server, second, matching_id="pinned") == "8.1.1/3.8"
    assert refused_authentication(server, second, matching_id="taken") == "8.1.1/3.8"
    assert refused_authentication(server, first, matching_id="done") == "8.2.6/3.8"
    assert refused_authentication(server, first, matching_id="gone") == "8.2/1.2"
    assert orders.get("gone").state is OrderState.CANCELLED
    # A refused but authenticated session can still be cancelled by the eUICC.
    server.ok("cancelSession", first.cancel_request(1))


def test_an_order_whose_package_disappeared(nist: TestPki, tmp_path: Path) -> None:
    copy = tmp_path / "profile.der"
    copy.write_bytes(PACKAGE.read_bytes())
    server = make_server(nist)
    server.core.orders.add_order("ABC-123", copy)
    copy.unlink()
    assert refused_authentication(server, SoftEuicc(nist)) == "8.2.1/3.9"


def test_the_profile_source_sees_a_replaced_file_and_checks_each_content_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "profile.der"
    path.write_bytes(PACKAGE.read_bytes())
    first = ProfileSource.read(path)
    assert ProfileSource.read(path).package is first.package  # checked once, then cached
    # Same size and the same modification time: only the content tells the versions apart.
    stat = path.stat()
    other = OTHER_PACKAGE.read_bytes()
    path.write_bytes(other)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    replaced = ProfileSource.read(path)
    assert replaced.upp == other
    assert replaced.package.iccid != first.package.iccid
    path.write_bytes(other[:-1])  # a broken package is refused every time, never cached
    for _ in range(2):
        with pytest.raises(OrderError, match="not a valid profile package"):
            ProfileSource.read(path)


def test_the_core_speaks_bytes_without_http(nist: TestPki) -> None:
    core = SmdpCore(SmdpConfig.from_test_pki(nist, ADDRESS))
    euicc = SoftEuicc(nist)
    answer = core.initiate_authentication(
        euicc_challenge=euicc.challenge, euicc_info1=euicc.info1(), smdp_address=ADDRESS
    )
    assert answer["serverSignature1"][:3] == b"\x5f\x37\x40"
    assert answer["euiccCiPKIdToBeUsed"] == b"\x04\x14" + nist.ci.ski
    with pytest.raises(FunctionFailed) as failure:
        core.authenticate_client(transaction_id=bytes(16), authenticate_server_response=b"")
    assert (failure.value.subject, failure.value.reason) == ("8.10.1", "3.9")


def test_a_device_starting_over_takes_its_order_back(server: Server) -> None:
    euicc = SoftEuicc(server.pki)
    authenticate(server, euicc)
    old = euicc.transaction_id
    again = SoftEuicc(server.pki)
    signed2 = authenticate(server, again)
    assert server.order("ABC-123").transaction_id == again.transaction_id.hex().upper()
    euicc.transaction_id = old
    assert server.failed("getBoundProfilePackage", euicc.prepare_request()) == "8.10.1/3.9"
    server.ok("getBoundProfilePackage", again.prepare_request(signed2))


# --- getBoundProfilePackage --------------------------------------------------------------------


def test_get_bound_profile_package_refusals(server: Server, other_pki: TestPki) -> None:
    euicc = SoftEuicc(server.pki)
    start(server, euicc)
    # authenticateClient has not happened yet
    assert server.failed("getBoundProfilePackage", euicc.prepare_request()) == "8.10.1/3.9"
    euicc.accept_authenticate(server.ok("authenticateClient", euicc.authenticate_request()))
    bad_sig = euicc.prepare_request(signer=other_pki.euicc.key)
    assert server.failed("getBoundProfilePackage", bad_sig) == "8.1/6.1"
    other_tid = euicc.prepare_request(transaction_id=bytes(16))
    assert server.failed("getBoundProfilePackage", other_tid) == "8.10.1/3.9"
    unknown = {**euicc.prepare_request(), "transactionId": "00" * 16}
    assert server.failed("getBoundProfilePackage", unknown) == "8.10.1/3.9"
    garbage = {**euicc.prepare_request(), "prepareDownloadResponse": b64(b"\xbf\x21\x00")}
    assert server.failed("getBoundProfilePackage", garbage) == "1.3.1/2.1"
    server.ok("getBoundProfilePackage", euicc.prepare_request())


def test_prepare_download_error_from_the_eUICC_releases_the_order(server: Server) -> None:
    euicc = SoftEuicc(server.pki)
    authenticate(server, euicc)
    error = schema.encode(
        "PrepareDownloadResponse",
        ("downloadResponseError", {"transactionId": euicc.transaction_id, "downloadErrorCode": 2}),
    )
    body = {"transactionId": euicc.transaction_id.hex(), "prepareDownloadResponse": b64(error)}
    assert server.failed("getBoundProfilePackage", body) == "8.1/6.1"
    assert server.order("ABC-123").state is OrderState.RELEASED
    assert server.failed("getBoundProfilePackage", euicc.prepare_request()) == "8.10.1/3.9"


def test_repeated_request_in_a_session_returns_the_same_bpp(server: Server) -> None:
    euicc = SoftEuicc(server.pki)
    signed2 = authenticate(server, euicc)
    body = euicc.prepare_request(signed2)
    first = server.ok("getBoundProfilePackage", body)
    assert server.ok("getBoundProfilePackage", body) == first


def test_retry_with_the_same_one_time_key_reuses_the_bound_segments(server: Server) -> None:
    euicc = SoftEuicc(server.pki)
    first = download(server, euicc)
    signed2 = authenticate(server, euicc)  # a new session for the same order and eUICC
    assert signed2["bppEuiccOtpk"] == crypto.public_point(euicc.otsk.public_key())
    answer = server.ok("getBoundProfilePackage", euicc.prepare_request(signed2))
    second = unb64(answer["boundProfilePackage"])
    assert children(second)[1:] == children(first)[1:]  # same encrypted segments
    assert children(second)[0] != children(first)[0]  # new transactionId in BF23
    assert euicc.open_bpp(second)[1] == PACKAGE.read_bytes()
    assert server.order("ABC-123").downloads == 2
    # With a fresh one-time key the profile is bound afresh.
    signed2 = authenticate(server, euicc)
    euicc.otsk = None
    third = unb64(
        server.ok("getBoundProfilePackage", euicc.prepare_request(signed2))["boundProfilePackage"]
    )
    assert children(third)[3] != children(first)[3]
    assert euicc.open_bpp(third)[1] == PACKAGE.read_bytes()


# --- confirmation code -------------------------------------------------------------------------


def cc_server(nist: TestPki, **options: Any) -> Server:
    server = make_server(nist, **options)
    server.core.orders.add_order("ABC-123", PACKAGE, confirmation_code="1234")
    return server


def test_confirmation_code_right(nist: TestPki) -> None:
    server = cc_server(nist)
    euicc = SoftEuicc(nist)
    signed2 = authenticate(server, euicc)
    assert signed2["ccRequiredFlag"] is True
    answer = server.ok("getBoundProfilePackage", euicc.prepare_request(signed2, cc="1234"))
    assert euicc.open_bpp(unb64(answer["boundProfilePackage"]))[1] == PACKAGE.read_bytes()
    stored = server.order("ABC-123").to_json()
    assert stored["ccHash"] == cc_digest("1234").hex()  # only SHA-256(CC) is kept
    assert "ccHash" not in server.order("ABC-123").to_json(public=True)


def test_confirmation_code_missing_and_wrong(nist: TestPki) -> None:
    server = cc_server(nist)
    euicc = SoftEuicc(nist)
    signed2 = authenticate(server, euicc)
    assert server.failed("getBoundProfilePackage", euicc.prepare_request(signed2)) == "8.2.7/2.2"
    wrong = euicc.prepare_request(signed2, cc="4321")
    assert server.failed("getBoundProfilePackage", wrong) == "8.2.7/3.8"
    # SHA-256(CC) alone is not hashCc: the transactionId is part of it.
    plain = euicc.prepare_request(signed2, hash_cc=hashlib.sha256(b"1234").digest())
    assert server.failed("getBoundProfilePackage", plain) == "8.2.7/3.8"
    assert server.order("ABC-123").cc_failures == 2
    server.ok("getBoundProfilePackage", euicc.prepare_request(signed2, cc="1234"))


def test_confirmation_code_is_asked_again_on_a_retry_and_counted(nist: TestPki) -> None:
    server = cc_server(nist, max_cc_attempts=2)
    euicc = SoftEuicc(nist)
    download(server, euicc, cc="1234")
    codes = []
    for _ in range(2):
        signed2 = authenticate(server, euicc)
        assert signed2["ccRequiredFlag"] and "bppEuiccOtpk" in signed2
        codes.append(
            server.failed("getBoundProfilePackage", euicc.prepare_request(signed2, cc="1"))
        )
    assert codes == ["8.2.7/3.8", "8.2.7/6.4"]
    assert server.order("ABC-123").state is OrderState.FAILED


def test_confirmation_code_retries_exceeded(nist: TestPki) -> None:
    server = cc_server(nist, max_cc_attempts=3)
    euicc = SoftEuicc(nist)
    codes = []
    for _ in range(3):
        signed2 = authenticate(server, euicc)
        codes.append(
            server.failed("getBoundProfilePackage", euicc.prepare_request(signed2, cc="0000"))
        )
        if codes[-1] == "8.2.7/3.8":
            server.ok("cancelSession", euicc.cancel_request(1))  # postponed: try again
    assert codes == ["8.2.7/3.8", "8.2.7/3.8", "8.2.7/6.4"]
    assert server.order("ABC-123").state is OrderState.FAILED
    assert refused_authentication(server, euicc) == "8.2/1.2"
    server.core.orders.transition("ABC-123", OrderEvent.RELEASE)  # the operator steps in
    signed2 = authenticate(server, euicc)
    server.ok("getBoundProfilePackage", euicc.prepare_request(signed2, cc="1234"))


# --- sessions and persistence ------------------------------------------------------------------


def test_session_times_out_and_releases_the_order(nist: TestPki) -> None:
    server = make_server(nist, session_timeout=60)
    server.core.orders.add_order("ABC-123", PACKAGE)
    euicc = SoftEuicc(nist)
    start(server, euicc)
    server.clock.advance(50)
    signed2 = euicc.accept_authenticate(
        server.ok("authenticateClient", euicc.authenticate_request())
    )
    server.clock.advance(50)  # 100 s since the start, 50 since the last request: still alive
    assert server.order("ABC-123").state is OrderState.IN_PROGRESS
    server.clock.advance(11)
    assert server.failed("getBoundProfilePackage", euicc.prepare_request(signed2)) == "8.10.1/3.9"
    order = server.order("ABC-123")
    assert (order.state, order.bound_eid) == (OrderState.RELEASED, None)
    assert server.failed("cancelSession", euicc.cancel_request(1)) == "8.10.1/3.9"
    download(server, SoftEuicc(nist))  # free for the next attempt


def test_orders_survive_a_restart(nist: TestPki, tmp_path: Path) -> None:
    server = make_server(nist, tmp_path)
    orders = server.core.orders
    orders.add_order("installed", PACKAGE)
    orders.add_order("busy", PACKAGE)
    orders.add_order(
        "waiting",
        OTHER_PACKAGE,
        confirmation_code="9876",
        eid=make_eid(),
        replace_session_keys=False,
        profile_name="Mine",
    )
    euicc = SoftEuicc(nist)
    download(server, euicc, "installed")
    installed_tid = euicc.transaction_id
    busy = SoftEuicc(nist)
    authenticate(server, busy, "busy")

    restarted = make_server(nist, tmp_path)
    assert {o.matching_id: o.state for o in restarted.core.orders} == {
        "installed": OrderState.DOWNLOADED,
        "busy": OrderState.RELEASED,  # its session did not survive the restart
        "waiting": OrderState.RELEASED,
    }
    waiting = restarted.order("waiting")
    assert waiting == dataclasses.replace(orders.get("waiting"), updated=waiting.updated)
    assert waiting.cc_hash == cc_digest("9876") and not waiting.replace_session_keys
    # Sessions are gone ...
    assert restarted.failed("getBoundProfilePackage", busy.prepare_request()) == "8.10.1/3.9"
    # ... but the installation result of a delivered BPP still verifies and lands.
    euicc.transaction_id = installed_tid
    notify(restarted, euicc.installation_result())
    assert restarted.order("installed").state is OrderState.INSTALLED
    assert make_server(nist, tmp_path).order("installed").state is OrderState.INSTALLED


# --- handleNotification ------------------------------------------------------------------------


def test_handle_notification_always_answers_204(server: Server, other_pki: TestPki) -> None:
    euicc = SoftEuicc(server.pki)
    download(server, euicc)
    for body in (
        {"pendingNotification": "%%%"},
        {"pendingNotification": b64(b"\xbf\x37\x00")},
        {"pendingNotification": b64(b"\x01\x02")},
        {},
        {"pendingNotification": b64(euicc.installation_result(signer=other_pki.euicc.key))},
    ):
        response = server.post("handleNotification", body)
        assert (response.status_code, response.content) == (204, b"")
        assert response.headers["x-admin-protocol"] == "gsma/rsp/v2.5.0"
    assert server.order("ABC-123").state is OrderState.DOWNLOADED  # nothing verified
    assert server.core.sessions.peek(euicc.transaction_id) is not None  # not even the session
    notify(server, euicc.installation_result(success=False))
    order = server.order("ABC-123")
    assert order.state is OrderState.FAILED
    assert (order.result["bppCommandId"], order.result["errorReason"]) == (5, 12)


def test_cancel_session_releases_or_cancels_by_reason(server: Server, other_pki: TestPki) -> None:
    euicc = SoftEuicc(server.pki)
    authenticate(server, euicc)
    assert server.failed("cancelSession", euicc.cancel_request(1, signer=other_pki.euicc.key)) == (
        "8.1/6.1"
    )
    assert server.failed("cancelSession", euicc.cancel_request(1, smdp_oid="2.999.99")) == (
        "8.8/3.1"
    )
    assert server.failed("cancelSession", euicc.cancel_request(1, transaction_id=bytes(16))) == (
        "8.10.1/3.9"
    )
    error = {
        "transactionId": euicc.transaction_id.hex(),
        "cancelSessionResponse": b64(bytes.fromhex("bf4103810105")),
    }
    assert server.failed("cancelSession", error) == "8.1/6.1"
    response = server.post("cancelSession", euicc.cancel_request(1))  # postponed
    assert response.json() == {
        "header": {"functionExecutionStatus": {"status": "Executed-Success"}}
    }
    assert server.order("ABC-123").state is OrderState.RELEASED
    assert server.failed("cancelSession", euicc.cancel_request(1)) == "8.10.1/3.9"
    download(server, euicc)
    server.ok("cancelSession", euicc.cancel_request(0))  # endUserRejection
    assert server.order("ABC-123").state is OrderState.CANCELLED


# --- operator API ------------------------------------------------------------------------------


def test_operator_api(nist: TestPki) -> None:
    server = make_server(nist, admin_token="s3cret")
    client = server.client
    auth = {"Authorization": "Bearer s3cret"}
    assert client.get("/admin/orders").status_code == 401
    new = {
        "matchingId": "OP-1",
        "profile": PACKAGE.name,
        "confirmationCode": "42",
        "profileName": "Operator profile",
    }
    created = client.post("/admin/orders", json=new, headers=auth)
    assert created.status_code == 201
    assert created.json()["ccRequired"] and "ccHash" not in created.json()
    assert client.post("/admin/orders", json=new, headers=auth).status_code == 409
    for bad in (
        {"matchingId": "OP-2", "profile": "../../README.md"},
        {"matchingId": "OP-2", "profile": "missing.der"},
        {"matchingId": "OP-2"},
        {"matchingId": "OP 2", "profile": PACKAGE.name},
        {"matchingId": "OP-2", "profile": PACKAGE.name, "eid": 89049032},
    ):
        assert client.post("/admin/orders", json=bad, headers=auth).status_code == 400
    listed = client.get("/admin/orders", headers=auth).json()["orders"]
    assert [(o["matchingId"], o["state"], o["iccid"]) for o in listed] == [
        ("OP-1", "released", "8949449999999990023")
    ]
    server.core.orders.transition("OP-1", OrderEvent.START, bound_eid=make_eid())
    released = client.post("/admin/orders/OP-1/release", headers=auth).json()
    assert (released["state"], released["boundEid"]) == ("released", None)
    assert client.get("/admin/orders/OP-1", headers=auth).json()["profileName"] == (
        "Operator profile"
    )
    assert client.delete("/admin/orders/OP-1", headers=auth).status_code == 204
    assert client.get("/admin/orders/OP-1", headers=auth).status_code == 404


# --- real HTTPS, real card ---------------------------------------------------------------------


def es10(card: Euicc, payload: bytes) -> bytes:
    with Es10Client.open(InProcessTransport(card)) as client:
        return client.exchange(payload)


def card_download(
    call: Callable[[str, dict[str, str]], dict[str, Any]],
    card: Euicc,
    address: str,
    matching_id: str,
    cc: str | None = None,
) -> bytes:
    """Download into the emulated card like an IPAd: ES10 payloads to the card, ES9+ calls
    through ``call``; returns the card's ProfileInstallationResult."""
    info1 = es10(card, schema.encode("GetEuiccInfo1Request", {}))
    with Es10Client.open(InProcessTransport(card)) as client:
        challenge = client.get_euicc_challenge()
    init = call(
        "initiateAuthentication",
        {"euiccChallenge": b64(challenge), "euiccInfo1": b64(info1), "smdpAddress": address},
    )
    tid = init["transactionId"]
    fields = ("serverSigned1", "serverSignature1", "euiccCiPKIdToBeUsed", "serverCertificate")
    request = b"".join(unb64(init[name]) for name in fields) + ctx_params1(matching_id)
    response = es10(card, tlv.encode_tlv(b"\xbf\x38", request))
    auth = call(
        "authenticateClient", {"transactionId": tid, "authenticateServerResponse": b64(response)}
    )
    request = unb64(auth["smdpSigned2"]) + unb64(auth["smdpSignature2"])
    if cc is not None:
        inner = hashlib.sha256(cc.encode()).digest()
        request += tlv.encode_tlv(b"\x04", hashlib.sha256(inner + bytes.fromhex(tid)).digest())
    response = es10(card, tlv.encode_tlv(b"\xbf\x21", request + unb64(auth["smdpCertificate"])))
    bound = call(
        "getBoundProfilePackage", {"transactionId": tid, "prepareDownloadResponse": b64(response)}
    )
    for piece in bpp.split_bpp_for_loading(unb64(bound["boundProfilePackage"])):
        result = es10(card, piece)
        if result:  # the card answers only the last piece, or the failing one
            return result
    raise AssertionError("the card never answered with a ProfileInstallationResult")


def card_for(test_pki: TestPki) -> Euicc:
    return Euicc.create(
        None,
        euicc_key=test_pki.euicc.key_pem(),
        euicc_certificate=test_pki.euicc.cert_der,
        eum_certificate=test_pki.eum.cert_der,
        ci_certificates=[test_pki.ci.cert_der],
        kind="consumer",  # the test enables the downloaded profile through ES10c
    )


def test_download_over_https_into_the_emulated_card(nist: TestPki) -> None:
    """uvicorn over HTTPS on 127.0.0.1, TLS verified against the CI; the card is euicc_sim."""
    core = SmdpCore(SmdpConfig.from_test_pki(nist, "127.0.0.1"))
    core.orders.add_order("ABC-123", PACKAGE, confirmation_code="2468")
    card = card_for(nist)
    trust = ssl.create_default_context(cadata=nist.ci.cert_pem.decode())
    with (
        run_in_thread(create_app(core), tls=nist.dp_tls) as running,
        httpx.Client(base_url=running.base_url, verify=trust, headers=HEADERS) as http,
    ):
        assert running.base_url.startswith("https://127.0.0.1:")

        def call(function: str, body: dict[str, str]) -> dict[str, Any]:
            response = http.post(ES9 + function, json=body)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json;charset=UTF-8"
            answer = response.json()
            assert answer["header"]["functionExecutionStatus"]["status"] == "Executed-Success"
            return dict(answer)

        result = card_download(call, card, running.address, "ABC-123", cc="2468")
        assert result[:2] == b"\xbf\x37"
        response = http.post(ES9 + "handleNotification", json={"pendingNotification": b64(result)})
        assert (response.status_code, response.content) == (204, b"")
        assert core.orders.get("ABC-123").state is OrderState.INSTALLED

        with Es10Client.open(InProcessTransport(card)) as client:
            profile = client.get_profiles_info()[0]
            assert profile.iccid == "8949449999999990023"
            client.enable_profile(iccid=profile.iccid)
            pending = client.retrieve_notifications_list()
        enable = [n.raw for n in pending if n.raw[:1] == b"\x30"]
        assert enable, "the metadata asked the card for enable notifications"
        body = {"pendingNotification": b64(enable[0])}
        assert http.post(ES9 + "handleNotification", json=body).status_code == 204
    events = core.orders.get("ABC-123").events
    assert [(e["operation"], e["eid"]) for e in events] == [("enable", nist.eid)]


def test_https_client_refuses_a_server_of_another_ci(nist: TestPki, other_pki: TestPki) -> None:
    core = SmdpCore(SmdpConfig.from_test_pki(nist, "127.0.0.1"))
    trust = ssl.create_default_context(cadata=other_pki.ci.cert_pem.decode())
    with run_in_thread(create_app(core), tls=nist.dp_tls) as running:
        with pytest.raises(httpx.ConnectError):
            httpx.post(running.base_url + ES9 + "initiateAuthentication", verify=trust)


def test_sgp26_credentials_download_into_a_default_card(tmp_path: Path) -> None:
    """The published SGP.26 set on both curves; the card's EUMs are SGP.26's."""
    core = build_core(SGP26, ADDRESS, state_dir=tmp_path)
    assert [c.curve for c in core.config.credentials] == [Curve.NIST_P256, Curve.BRAINPOOL_P256R1]
    assert core.config.tls is not None and pki.cert_curve(core.config.tls.cert) is Curve.NIST_P256
    core.orders.add_order("SGP26", OTHER_PACKAGE)
    server = Server(core, asgi(create_app(core)), Clock(), load_sgp26(Curve.NIST_P256))
    card = Euicc.create(None)
    result = card_download(lambda f, body: server.ok(f, body), card, ADDRESS, "SGP26")
    notify(server, result)
    assert core.orders.get("SGP26").state is OrderState.INSTALLED


# --- configuration and command line --------------------------------------------------------------


def test_pki_directory_with_both_curves(nist: TestPki, tmp_path: Path) -> None:
    brp = generate_test_pki(Curve.BRAINPOOL_P256R1)
    brp.save(tmp_path)
    nist.save(tmp_path)
    config = SmdpConfig.from_pki_dir(tmp_path, ADDRESS)
    assert [c.ci_ski for c in config.credentials] == [nist.ci.ski, brp.ci.ski]
    assert config.tls is not None and config.tls.cert == nist.dp_tls.cert
    assert set(config.trusted_ci_keys) == {nist.ci.ski, brp.ci.ski}
    with pytest.raises(ConfigError):
        SmdpConfig.from_pki_dir(tmp_path / "empty", ADDRESS)
    with pytest.raises(ConfigError):  # DPpb of another CI
        SmdpConfig(ADDRESS, (DpCredentials(nist.ci.cert, nist.dp_auth, brp.dp_pb),))


def test_command_line_builds_the_server_and_its_orders(
    nist: TestPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nist.save(tmp_path / "pki")
    served: dict[str, Any] = {}
    monkeypatch.setattr(serve_module, "serve", lambda app, **kw: served.update(app=app, **kw))
    parser = argparse.ArgumentParser(prog="euicc-sim")
    add_smdpp_command(parser.add_subparsers(dest="command"))
    argv = [
        "smdpp",
        "--pki",
        str(tmp_path / "pki"),
        "--profiles",
        str(TS48),
        "--port",
        "9443",
        "--state",
        str(tmp_path / "state"),
        "--order",
        f"A=TS48V1-A-UNIQUE.der,cc=12,eid={nist.eid}",
        "--order",
        f"B={OTHER_PACKAGE.name},no-rsk",
    ]
    args = parser.parse_args(argv)
    assert args.run(args) == 0
    assert (served["host"], served["port"]) == ("127.0.0.1", 9443)
    assert served["tls"].cert == nist.dp_tls.cert
    core = served["app"].state.core
    assert core.config.address == "127.0.0.1:9443"
    # The operator API is authenticated: a token made in the state directory (mode 0600).
    token_file = tmp_path / "state" / "admin-token"
    assert core.auth.path == token_file and (token_file.stat().st_mode & 0o777) == 0o600
    orders = OrderStore(tmp_path / "state")
    assert orders.get("A").cc_required and orders.get("A").eid == nist.eid
    assert not orders.get("B").replace_session_keys
    assert args.run(args) == 0  # a restart keeps the orders instead of failing on them
    with pytest.raises(ValueError):
        args.run(parser.parse_args([*argv, "--order", "C=nothing.der"]))
