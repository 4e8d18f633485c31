"""ipa.download, ipa.es10_download and ipa.notifications: the direct download flow and
notification delivery, against the emulated card.

Two SM-DP+ stand-ins:

* :class:`FakeSmdp`, a small ES9+ server in this file (httpx.MockTransport, real SGP.26
  credentials, real BPPs from :mod:`euicc_protocol.bpp`) that records what it receives and can
  be told to
  misbehave; it drives every failure path deterministically.
* the reference SM-DP+ of ``euicc_servers/smdpp`` over real HTTPS on 127.0.0.1 (end-to-end tests at
  the bottom, skipped while that server is not available).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from euicc_protocol import bpp, crypto, pki, saip, schema, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import load_sgp26
from euicc_servers.smdpp import OrderState, OrderStore, SmdpConfig, SmdpCore, create_app
from euicc_servers.smdpp import run_in_thread as run_smdpp
from euicc_sim.card import Euicc
from ipa import es10_download as e10
from ipa.download import (
    BppLoadFailed,
    CardRefusedError,
    ConfirmationCodeMissing,
    ConsentRefused,
    DownloadError,
    MetadataMismatch,
    ProfileInstallationFailed,
    ServerAuthenticationError,
    SmdpRefusedError,
    SmdpUnreachableError,
    download_profile,
    download_profile_sync,
)
from ipa.errors import ResponseFormatError, TransportError
from ipa.es9p import Es9Config, Es9PlusClient
from ipa.es10 import Es10Client
from ipa.notifications import process_notifications, process_notifications_sync
from ipa.transport import InProcessTransport
from ipa.types import ProfileState

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
UPP = (TS48 / "TS48V1-A-UNIQUE.der").read_bytes()
ICCID = saip.read_package(UPP).iccid
ADDRESS = "smdp.test.example"
AC = f"LPA:1${ADDRESS}$MATCH-1"
OK = {"header": {"functionExecutionStatus": {"status": "Executed-Success"}}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def children(data: bytes) -> list[bytes]:
    """The complete TLVs inside the value of the TLV ``data`` starts with."""
    outer = tlv.read_tlv(data)
    out, pos = [], outer.value_start
    for item in tlv.iter_tlvs(data, outer.value_start, outer.value_end):
        out.append(data[pos : item.end])
        pos = item.end
    return out


def failed(subject: str, reason: str) -> dict[str, Any]:
    status = {"status": "Failed", "statusCodeData": {"subjectCode": subject, "reasonCode": reason}}
    return {"header": {"functionExecutionStatus": status}}


def store_metadata(upp: bytes = UPP, name: str = "TS.48 test profile") -> bytes:
    return schema.encode(
        "SGP32-StoreMetadataRequest",
        {
            "iccid": saip.read_package(upp).iccid_ef,
            "serviceProviderName": "Fake SP",
            "profileName": name,
            "profileClass": 0,
            "notificationConfigurationInfo": [
                {
                    "profileManagementOperation": schema.bits([1, 2, 3]),
                    "notificationAddress": ADDRESS,
                }
            ],
        },
    )


# -- the fake SM-DP+ ------------------------------------------------------------------------------


@dataclass
class FakeSmdp:
    """An ES9+ server with the SGP.26 NIST SM-DP+ credentials, one profile, and knobs."""

    server_address: str = ADDRESS  # what serverSigned1 claims
    cc: str | None = None  # confirmation code the order requires
    bpp_metadata: bytes | None = None  # StoreMetadata in the BPP if not profileMetadata
    bpp_override: bytes | None = None  # a BPP to send instead of a real one
    slow: set[str] = field(default_factory=set)  # functions that time out
    refuse_notifications: bool = False
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pki = load_sgp26(Curve.NIST_P256)
        self.sessions: dict[str, dict[str, Any]] = {}

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def config(self) -> Es9Config:
        return Es9Config(transport=self.transport())

    def handle(self, request: httpx.Request) -> httpx.Response:
        function = request.url.path.rsplit("/", 1)[-1]
        body = json.loads(request.content)
        self.received.setdefault(function, []).append(body)
        if function in self.slow:
            raise httpx.ReadTimeout("fake SM-DP+ is slow", request=request)
        answer = getattr(self, function)(body)
        if answer is None:
            return httpx.Response(204)
        return httpx.Response(200, json=answer)

    def initiateAuthentication(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        tid = os.urandom(16)
        signed1 = schema.encode(
            "ServerSigned1",
            {
                "transactionId": tid,
                "euiccChallenge": unb64(body["euiccChallenge"]),
                "serverAddress": self.server_address,
                "serverChallenge": os.urandom(16),
            },
        )
        self.sessions[tid.hex().upper()] = {}
        signature = tlv.encode_tlv(b"\x5f\x37", crypto.sign_raw(self.pki.dp_auth.key, signed1))
        return {
            **OK,
            "transactionId": tid.hex().upper(),
            "serverSigned1": b64(signed1),
            "serverSignature1": b64(signature),
            "euiccCiPKIdToBeUsed": b64(tlv.encode_tlv(b"\x04", self.pki.ci.ski)),
            "serverCertificate": b64(self.pki.dp_auth.cert_der),
        }

    def authenticateClient(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        session = self.sessions[body["transactionId"]]
        response = unb64(body["authenticateServerResponse"])
        if children(response)[0][:1] != b"\xa0":  # authenticateResponseError
            return failed("8.1", "6.1")
        signed1, signature1, euicc_cert, _eum = children(children(response)[0])
        session["eid"] = pki.subject_serial_number(pki.load_certificate(euicc_cert))
        session["ctx"] = schema.decode("EuiccSigned1", signed1)["ctxParams1"]
        tid = bytes.fromhex(body["transactionId"])
        signed2 = schema.encode(
            "SmdpSigned2", {"transactionId": tid, "ccRequiredFlag": self.cc is not None}
        )
        signature2 = crypto.sign_raw(self.pki.dp_pb.key, signed2 + signature1)
        return {
            **OK,
            "transactionId": body["transactionId"],
            "profileMetadata": b64(store_metadata()),
            "smdpSigned2": b64(signed2),
            "smdpSignature2": b64(tlv.encode_tlv(b"\x5f\x37", signature2)),
            "smdpCertificate": b64(self.pki.dp_pb.cert_der),
        }

    def getBoundProfilePackage(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        session = self.sessions[body["transactionId"]]
        tid = bytes.fromhex(body["transactionId"])
        kind, value = schema.decode(
            "PrepareDownloadResponse", unb64(body["prepareDownloadResponse"])
        )
        if kind != "downloadResponseOk":
            return failed("8.1", "6.1")
        signed2 = value["euiccSigned2"]
        if self.cc is not None:
            expected = hashlib.sha256(hashlib.sha256(self.cc.encode()).digest() + tid).digest()
            if signed2.get("hashCc") != expected:
                return failed("8.2.7", "3.8")
        if self.bpp_override is not None:
            package = self.bpp_override
        else:
            package = bpp.build_bound_profile_package(
                UPP,
                transaction_id=tid,
                eid=bytes.fromhex(session["eid"]),
                euicc_otpk_point=signed2["euiccOtpk"],
                smdp_pb_key=self.pki.dp_pb.key,
                store_metadata=self.bpp_metadata or store_metadata(),
            ).encoded
        return {**OK, "transactionId": body["transactionId"], "boundProfilePackage": b64(package)}

    def handleNotification(self, body: dict[str, Any]) -> dict[str, Any] | None:  # noqa: N802
        return failed("8.10.1", "3.9") if self.refuse_notifications else None

    def cancelSession(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return OK

    # -- what the server saw --------------------------------------------------------------

    def cancel_reason(self) -> int | None:
        """The reason in the euiccCancelSessionSigned the server received (None if none)."""
        calls = self.received.get("cancelSession", [])
        if not calls:
            return None
        kind, value = schema.decode(
            "CancelSessionResponse", unb64(calls[-1]["cancelSessionResponse"])
        )
        assert kind == "cancelSessionResponseOk"
        return value["euiccCancelSessionSigned"]["reason"]

    def notifications(self) -> list[bytes]:
        return [
            unb64(n["pendingNotification"]) for n in self.received.get("handleNotification", [])
        ]


# -- helpers ----------------------------------------------------------------------------------


def new_card() -> Euicc:
    return Euicc.create(None, curves=(Curve.NIST_P256,), kind="consumer")


def open_client(card: Euicc) -> Es10Client:
    return Es10Client.open(InProcessTransport(card))


def download(card: Euicc, smdp: FakeSmdp, ac: str = AC, **options: Any) -> Any:
    with open_client(card) as client:
        return asyncio.run(download_profile(client, ac, config=smdp.config(), **options))


def expect_failure(card: Euicc, smdp: FakeSmdp, kind: type[DownloadError], **options: Any) -> Any:
    with pytest.raises(kind) as info:
        download(card, smdp, **options)
    return info.value


def profiles(card: Euicc) -> list[Any]:
    with open_client(card) as client:
        return client.get_profiles_info()


def pending(card: Euicc) -> list[Any]:
    with open_client(card) as client:
        return client.retrieve_notifications_list()


def assert_nothing_installed(card: Euicc) -> None:
    assert profiles(card) == []
    assert pending(card) == []


# -- the happy path -----------------------------------------------------------------------------


def test_download_installs_the_profile_and_delivers_the_notification() -> None:
    card, smdp = new_card(), FakeSmdp()
    result = download(card, smdp)

    assert result.iccid == ICCID
    assert result.smdp_address == ADDRESS
    assert result.smdp_oid == "2.999.10"
    assert result.profile_metadata.profile_name == "TS.48 test profile"
    (info,) = profiles(card)
    assert (info.iccid, info.isdp_aid, info.profile_state) == (
        ICCID,
        result.isdp_aid,
        ProfileState.DISABLED,
    )
    # The BF37 went to the SM-DP+ byte for byte, then left the card.
    assert smdp.notifications() == [result.profile_installation_result]
    assert result.notification_delivered and result.notification_removed
    assert pending(card) == []
    pir = e10.parse_profile_installation_result(result.profile_installation_result)
    assert (pir.seq_number, pir.transaction_id) == (result.seq_number, result.transaction_id)
    assert "cancelSession" not in smdp.received


def test_ctx_params1_carries_matching_id_and_device_info() -> None:
    card, smdp = new_card(), FakeSmdp()
    device = e10.DeviceInfo(tac=bytes.fromhex("01020304"), imei=bytes(8))
    download(card, smdp, device_info=device)
    kind, ctx = next(iter(smdp.sessions.values()))["ctx"]
    assert kind == "ctxParamsForCommonAuthentication"
    assert ctx["matchingId"] == "MATCH-1"
    assert ctx["deviceInfo"] == {"tac": device.tac, "deviceCapabilities": {}, "imei": bytes(8)}


def test_initiate_authentication_names_the_activation_code_address() -> None:
    card, smdp = new_card(), FakeSmdp()
    download(card, smdp)
    assert smdp.received["initiateAuthentication"][0]["smdpAddress"] == ADDRESS


def test_install_notification_that_the_server_refuses_stays_on_the_card() -> None:
    card, smdp = new_card(), FakeSmdp(refuse_notifications=True)
    result = download(card, smdp)
    assert not result.notification_delivered and not result.notification_removed
    assert [n.seq_number for n in pending(card)] == [result.seq_number]
    # Later delivery succeeds and removes it.
    smdp.refuse_notifications = False
    with open_client(card) as client:
        (outcome,) = asyncio.run(process_notifications(client, config=smdp.config()))
    assert (outcome.delivered, outcome.removed) == (True, True)
    assert outcome.seq_number == result.seq_number
    assert pending(card) == []


def test_install_result_can_be_left_on_the_card_for_the_caller() -> None:
    card, smdp = new_card(), FakeSmdp()
    result = download(card, smdp, deliver_install_result=False)
    assert not result.notification_delivered and not result.notification_removed
    assert smdp.notifications() == []  # never offered to the SM-DP+
    (left,) = pending(card)
    assert left.seq_number == result.seq_number


def test_failed_install_result_can_be_left_on_the_card_too() -> None:
    card, smdp = new_card(), FakeSmdp()
    card.preload(UPP)
    error = expect_failure(card, smdp, ProfileInstallationFailed, deliver_install_result=False)
    assert not error.notification_delivered and not error.notification_removed
    assert smdp.notifications() == []
    assert [n.seq_number for n in pending(card)] == [error.result.seq_number]


def test_sync_facade() -> None:
    card, smdp = new_card(), FakeSmdp()
    with open_client(card) as client:
        result = download_profile_sync(client, AC, config=smdp.config(), offload_card_io=True)
    assert result.iccid == ICCID


def test_caller_owned_es9_client_is_left_open() -> None:
    card, smdp = new_card(), FakeSmdp()

    async def go() -> None:
        async with Es9PlusClient(ADDRESS, smdp.config()) as es9:
            with open_client(card) as client:
                await download_profile(client, AC, es9=es9)
                await es9.handle_notification(b"\x30\x00")  # still usable

    asyncio.run(go())
    assert len(smdp.notifications()) == 2


# -- confirmation code --------------------------------------------------------------------------


def test_confirmation_code_given_up_front() -> None:
    card, smdp = new_card(), FakeSmdp(cc="1234")
    assert download(card, smdp, confirmation_code="1234").iccid == ICCID


def test_confirmation_code_asked_through_a_callback_with_the_metadata() -> None:
    card, smdp = new_card(), FakeSmdp(cc="9876")
    seen = []

    async def ask(metadata: Any) -> str:
        seen.append(metadata.profile_name)
        return "9876"

    assert download(card, smdp, ask_confirmation_code=ask).iccid == ICCID
    assert seen == ["TS.48 test profile"]


def test_missing_confirmation_code_postpones_on_both_sides() -> None:
    card, smdp = new_card(), FakeSmdp(cc="1234")
    error = expect_failure(
        card, smdp, ConfirmationCodeMissing, ask_confirmation_code=lambda metadata: None
    )
    assert error.cancel_reason == e10.CancelSessionReason.POSTPONED
    assert error.cancelled_on_card and error.cancelled_on_server
    assert smdp.cancel_reason() == 1
    assert "getBoundProfilePackage" not in smdp.received
    assert_nothing_installed(card)


def test_wrong_confirmation_code_is_the_servers_refusal() -> None:
    card, smdp = new_card(), FakeSmdp(cc="1234")
    error = expect_failure(card, smdp, SmdpRefusedError, confirmation_code="0000")
    assert (error.subject_code, error.reason_code, error.step) == (
        "8.2.7",
        "3.8",
        "getBoundProfilePackage",
    )
    assert error.cancel_reason == e10.CancelSessionReason.UNDEFINED_REASON
    assert smdp.cancel_reason() == 127
    assert_nothing_installed(card)


def test_confirmation_code_hash_known_answer() -> None:
    tid = bytes(range(16))
    expected = hashlib.sha256(hashlib.sha256(b"12345678").digest() + tid).digest()
    assert e10.confirmation_code_hash("12345678", tid) == expected


# -- consent and metadata -----------------------------------------------------------------------


def test_user_rejection_cancels_with_end_user_rejection() -> None:
    card, smdp = new_card(), FakeSmdp()
    error = expect_failure(card, smdp, ConsentRefused, consent=lambda metadata: False)
    assert error.cancel_reason == e10.CancelSessionReason.END_USER_REJECTION
    assert smdp.cancel_reason() == 0
    assert error.transaction_id is not None
    assert smdp.received["cancelSession"][0]["transactionId"] == error.transaction_id.hex().upper()
    assert_nothing_installed(card)


def test_consent_can_answer_a_reason() -> None:
    card, smdp = new_card(), FakeSmdp()
    reason = e10.CancelSessionReason.PPR_NOT_ALLOWED
    error = expect_failure(card, smdp, ConsentRefused, consent=lambda metadata: reason)
    assert error.cancel_reason == reason
    assert smdp.cancel_reason() == 3


def test_async_consent_answering_end_user_rejection_enum() -> None:
    card, smdp = new_card(), FakeSmdp()

    async def consent(metadata: Any) -> e10.CancelSessionReason:
        return e10.CancelSessionReason.END_USER_REJECTION  # == 0, still a reason

    error = expect_failure(card, smdp, ConsentRefused, consent=consent)
    assert error.cancel_reason == e10.CancelSessionReason.END_USER_REJECTION
    assert smdp.cancel_reason() == 0


def test_consent_true_proceeds() -> None:
    card, smdp = new_card(), FakeSmdp()
    assert download(card, smdp, consent=lambda metadata: True).iccid == ICCID


def test_bpp_metadata_that_differs_cancels_with_metadata_mismatch() -> None:
    card, smdp = new_card(), FakeSmdp(bpp_metadata=store_metadata(name="Something else"))
    error = expect_failure(card, smdp, MetadataMismatch)
    assert error.cancel_reason == e10.CancelSessionReason.METADATA_MISMATCH
    assert smdp.cancel_reason() == 4
    assert_nothing_installed(card)


# -- server misbehaviour --------------------------------------------------------------------------


def test_wrong_server_address_in_server_signed1_stops_before_the_card() -> None:
    card, smdp = new_card(), FakeSmdp(server_address="evil.example")
    error = expect_failure(card, smdp, ServerAuthenticationError)
    assert "evil.example" in str(error)
    assert error.cancel_reason is None and not error.cancelled_on_card
    assert "authenticateClient" not in smdp.received
    assert "cancelSession" not in smdp.received


def test_server_address_compares_case_insensitively() -> None:
    card, smdp = new_card(), FakeSmdp(server_address=ADDRESS.upper())
    assert download(card, smdp).iccid == ICCID


def test_card_refusing_the_server_is_forwarded_to_it() -> None:
    card, smdp = new_card(), FakeSmdp()
    smdp.pki = load_sgp26(Curve.BRAINPOOL_P256R1)  # a CI this NIST-only card does not know
    error = expect_failure(card, smdp, CardRefusedError)
    assert error.step == e10.F_AUTHENTICATE_SERVER
    assert error.code == e10.AuthenticateErrorCode.CI_PK_UNKNOWN
    assert error.forwarded
    forwarded = unb64(smdp.received["authenticateClient"][0]["authenticateServerResponse"])
    assert schema.decode("AuthenticateServerResponse", forwarded)[0] == "authenticateResponseError"
    assert "cancelSession" not in smdp.received


def test_es9_timeout_cancels_with_timeout() -> None:
    card, smdp = new_card(), FakeSmdp(slow={"getBoundProfilePackage"})
    error = expect_failure(card, smdp, SmdpUnreachableError)
    assert error.timeout and error.step == "getBoundProfilePackage"
    assert error.cancel_reason == e10.CancelSessionReason.TIMEOUT
    assert error.cancelled_on_card and error.cancelled_on_server
    assert smdp.cancel_reason() == 2
    assert_nothing_installed(card)


def test_failure_before_authenticate_server_cancels_nothing() -> None:
    card, smdp = new_card(), FakeSmdp(slow={"initiateAuthentication"})
    error = expect_failure(card, smdp, SmdpUnreachableError)
    assert error.step == "initiateAuthentication" and error.timeout
    assert error.cancel_reason is None and error.transaction_id is None
    assert "cancelSession" not in smdp.received


def test_malformed_bpp_cancels_with_load_bpp_execution_error() -> None:
    card, smdp = new_card(), FakeSmdp(bpp_override=bytes.fromhex("BF3603300100"))
    error = expect_failure(card, smdp, BppLoadFailed)
    assert error.cancel_reason == e10.CancelSessionReason.LOAD_BPP_EXECUTION_ERROR
    assert smdp.cancel_reason() == 5
    assert_nothing_installed(card)


def test_installation_error_is_reported_to_the_server_not_cancelled() -> None:
    card, smdp = new_card(), FakeSmdp()
    card.preload(UPP)  # the same ICCID is already there
    error = expect_failure(card, smdp, ProfileInstallationFailed)
    assert error.error_reason == e10.InstallErrorReason.ICCID_ALREADY_EXISTS
    assert error.bpp_command_id == e10.BppCommandId.STORE_METADATA
    assert error.cancel_reason is None and "cancelSession" not in smdp.received
    assert error.notification_delivered and error.notification_removed
    assert smdp.notifications() == [error.result.raw]
    assert len(profiles(card)) == 1 and pending(card) == []


class BreakingTransport(InProcessTransport):
    """Fails the first STORE DATA that carries a BPP piece starting with ``tag``."""

    def __init__(self, card: Euicc, tag: bytes) -> None:
        super().__init__(card)
        self.tag = tag
        self.broken = False

    def transmit(self, apdu: bytes) -> bytes:
        if not self.broken and apdu[1] == 0xE2 and apdu[5 : 5 + len(self.tag)] == self.tag:
            self.broken = True
            raise TransportError("reader unplugged")
        return super().transmit(apdu)


def test_card_link_failure_while_loading_cancels_with_load_bpp_execution_error() -> None:
    card, smdp = new_card(), FakeSmdp()
    with Es10Client.open(BreakingTransport(card, b"\xbf\x36")) as client:
        with pytest.raises(BppLoadFailed) as info:
            asyncio.run(download_profile(client, AC, config=smdp.config()))
    error = info.value
    assert "reader unplugged" in str(error)
    assert error.cancelled_on_card and error.cancelled_on_server
    assert smdp.cancel_reason() == 5
    assert_nothing_installed(card)


def test_card_link_failure_before_prepare_download_is_a_card_error() -> None:
    card, smdp = new_card(), FakeSmdp()
    with Es10Client.open(BreakingTransport(card, b"\xbf\x21")) as client:
        with pytest.raises(DownloadError) as info:
            asyncio.run(download_profile(client, AC, config=smdp.config()))
    assert info.value.cancel_reason == e10.CancelSessionReason.UNDEFINED_REASON
    assert smdp.cancel_reason() == 127


# -- ES10 functions on their own --------------------------------------------------------------


def test_cancel_session_request_bytes() -> None:
    sent = []

    class Card:
        def transmit(self, apdu: bytes) -> bytes:
            if apdu[1] == 0xE2:
                sent.append(apdu[5:-1] if len(apdu) > 5 + apdu[4] else apdu[5:])
                return bytes.fromhex("BF4103810105 9000".replace(" ", ""))
            return b"\x90\x00" if apdu[1] != 0x70 else b"\x01\x90\x00"

    with Es10Client.open(InProcessTransport(Card())) as client:
        result = e10.cancel_session(client, bytes.fromhex("0102"), e10.CancelSessionReason.TIMEOUT)
    assert sent == [bytes.fromhex("BF4107800201028101 02".replace(" ", ""))]
    assert result.error == e10.CancelSessionError.INVALID_TRANSACTION_ID and not result.ok


def test_request_builders_keep_the_servers_bytes() -> None:
    signed1, sig, ci, cert = b"\x30\x01\xff", b"\x5f\x37\x01\xee", b"\x04\x01\x01", b"\x30\x00"
    ctx = e10.ctx_params1("M")
    request = e10.build_authenticate_server_request(
        server_signed1=signed1,
        server_signature1=sig,
        euicc_ci_pkid_to_be_used=ci,
        server_certificate=cert,
        ctx_params1=ctx,
    )
    assert request == tlv.encode_tlv(b"\xbf\x38", signed1 + sig + ci + cert + ctx)
    prepare = e10.build_prepare_download_request(
        smdp_signed2=signed1, smdp_signature2=sig, smdp_certificate=cert, hash_cc=bytes(32)
    )
    assert prepare == tlv.encode_tlv(b"\xbf\x21", signed1 + sig + b"\x04\x20" + bytes(32) + cert)
    with pytest.raises(ValueError, match="serverSignature1"):
        e10.build_authenticate_server_request(
            server_signed1=signed1,
            server_signature1=b"\x04\x00",
            euicc_ci_pkid_to_be_used=ci,
            server_certificate=cert,
            ctx_params1=ctx,
        )


def test_ctx_params1_encoding() -> None:
    # A0 { 80 matchingId, A1 { 80 tac, A1 00 } } as lpac sends it without an IMEI.
    assert e10.ctx_params1("AB") == bytes.fromhex("A00E 80024142 A108 800435290611 A100")
    assert e10.ctx_params1(None) == bytes.fromhex("A00A A108 800435290611 A100")


def test_load_stops_at_the_first_answer_with_data() -> None:
    answers = iter([b"", b"\xbf\x37\x00"])
    sent = []

    class Client:
        def exchange(self, payload: bytes) -> bytes:
            sent.append(payload)
            return next(answers)

    with pytest.raises(ResponseFormatError):  # an empty BF37 does not decode
        e10.load_bound_profile_package(Client(), [b"\x01", b"\x02", b"\x03"])  # type: ignore[arg-type]
    assert sent == [b"\x01", b"\x02"]


def test_load_without_result_is_a_bpp_load_error() -> None:
    class Client:
        def exchange(self, payload: bytes) -> bytes:
            return b""

    with pytest.raises(e10.BppLoadError, match="no ProfileInstallationResult"):
        e10.load_bound_profile_package(Client(), [b"\x01", b"\x02"])  # type: ignore[arg-type]


# -- notifications ------------------------------------------------------------------------------


def make_other_notifications(card: Euicc, smdp: FakeSmdp) -> None:
    """Install, then enable and disable: two OtherSignedNotifications to ADDRESS."""
    download(card, smdp)
    with open_client(card) as client:
        client.enable_profile(iccid=ICCID)
        client.disable_profile(iccid=ICCID)
    assert [n.kind for n in pending(card)] == ["otherSignedNotification"] * 2


def test_process_notifications_delivers_and_removes_in_order() -> None:
    card, smdp = new_card(), FakeSmdp()
    make_other_notifications(card, smdp)
    before = [n.raw for n in pending(card)]
    with open_client(card) as client:
        outcomes = process_notifications_sync(client, config=smdp.config())
    assert [(o.delivered, o.removed, o.address) for o in outcomes] == [(True, True, ADDRESS)] * 2
    assert outcomes[0].seq_number < outcomes[1].seq_number
    assert smdp.notifications()[-2:] == before  # exact bytes, in seqNumber order
    assert pending(card) == []
    assert outcomes[0].to_json()["kind"] == "otherSignedNotification"


def test_refused_notifications_stay_pending() -> None:
    card, smdp = new_card(), FakeSmdp()
    make_other_notifications(card, smdp)
    smdp.refuse_notifications = True
    with open_client(card) as client:
        outcomes = process_notifications_sync(client, config=smdp.config())
    assert all(not o.delivered and not o.removed for o in outcomes)
    assert "8.10.1" in (outcomes[0].error or "")
    assert len(pending(card)) == 2


def test_process_selected_notifications_only() -> None:
    card, smdp = new_card(), FakeSmdp()
    make_other_notifications(card, smdp)
    first, second = (n.seq_number for n in pending(card))
    with open_client(card) as client:
        outcomes = process_notifications_sync(
            client, client_factory=lambda a: Es9PlusClient(a, smdp.config()), seq_numbers=[second]
        )
    assert [o.seq_number for o in outcomes] == [second]
    assert [n.seq_number for n in pending(card)] == [first]


def test_unreachable_notification_server_keeps_the_notification() -> None:
    card, smdp = new_card(), FakeSmdp()
    make_other_notifications(card, smdp)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)

    config = Es9Config(transport=httpx.MockTransport(unreachable))
    with open_client(card) as client:
        outcomes = process_notifications_sync(client, config=config)
    assert [o.delivered for o in outcomes] == [False, False]
    assert len(pending(card)) == 2


# -- command line (no server needed) --------------------------------------------------------


def test_cli_download_with_an_invalid_activation_code(tmp_path: Path, capsys: Any) -> None:
    from euicc_cli.ipa_command import main

    Euicc.create(tmp_path / "card").close()
    assert main(["--card", str(tmp_path / "card"), "download", "LPA:2$x.example$M"]) == 2
    assert "unsupported activation code format '2'" in capsys.readouterr().err


def test_cli_notifications_process_and_remove_exclude_each_other(
    tmp_path: Path, capsys: Any
) -> None:
    from euicc_cli.ipa_command import main

    Euicc.create(tmp_path / "card").close()
    argv = ["--card", str(tmp_path / "card"), "notifications", "--process", "--remove", "1"]
    assert main(argv) == 2
    assert "either --process or --remove" in capsys.readouterr().err


def test_cli_notifications_process_with_nothing_pending(tmp_path: Path, capsys: Any) -> None:
    from euicc_cli.ipa_command import main

    Euicc.create(tmp_path / "card").close()
    assert main(["--card", str(tmp_path / "card"), "--json", "notifications", "--process"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == {"notifications": []}


# -- end to end with the reference SM-DP+ ---------------------------------------------------------
#
# The card is a default emulated card (GSMA SGP.26 test EUM), the SM-DP+ serves the SGP.26
# SM-DP+ credentials over real HTTPS on 127.0.0.1 with a TLS certificate for 127.0.0.1 issued by
# the SGP.26 CI, and the IPAd trusts only that CI certificate.


@dataclass
class Reference:
    """The running reference SM-DP+ and what a client needs to reach it."""

    core: Any
    address: str  # 127.0.0.1:PORT
    ca_pem: Path  # the SGP.26 NIST CI certificate, the only trust anchor

    def order(self, matching_id: str, package: str, **options: Any) -> str:
        self.core.orders.add_order(matching_id, TS48 / package, **options)
        return f"LPA:1${self.address}${matching_id}"

    def config(self) -> Es9Config:
        return Es9Config(ca_certificates=(self.ca_pem.read_bytes(),), timeout=10)

    def state(self, matching_id: str) -> Any:
        return self.core.orders.get(matching_id).state


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    from euicc_protocol.pki import CertRole
    from euicc_protocol.testpki import issue_server_certificate

    nist = load_sgp26(Curve.NIST_P256)
    tls = issue_server_certificate(
        nist.ci, CertRole.DP_TLS, "2.999.10", dns_names=("localhost",), ip_addresses=("127.0.0.1",)
    )
    # The address without a port: the server accepts it on whatever port it got.
    config = SmdpConfig.from_test_pki(
        [nist, load_sgp26(Curve.BRAINPOOL_P256R1)], "127.0.0.1", tls=tls
    )
    core = SmdpCore(config, OrderStore())
    ca_pem = tmp_path_factory.mktemp("ci") / "ci.pem"
    ca_pem.write_bytes(nist.ci.cert.public_bytes(Encoding.PEM))
    with run_smdpp(create_app(core), tls=tls) as server:
        yield Reference(core, server.address, ca_pem)


def test_e2e_download_installs_ts48_profile_and_delivers_the_notification(
    reference: Reference,
) -> None:
    ac = reference.order("E2E-OK", "TS48V1-B-UNIQUE.der")
    card = Euicc.create(None)
    with open_client(card) as client:
        result = download_profile_sync(client, ac, config=reference.config())
    expected = saip.read_package((TS48 / "TS48V1-B-UNIQUE.der").read_bytes()).iccid
    assert result.iccid == expected
    (info,) = profiles(card)
    assert (info.iccid, info.isdp_aid, info.profile_state) == (
        expected,
        result.isdp_aid,
        ProfileState.DISABLED,
    )
    assert result.notification_delivered and result.notification_removed
    assert pending(card) == []
    assert reference.state("E2E-OK") == OrderState.INSTALLED


def test_e2e_confirmation_code(reference: Reference) -> None:
    ac = reference.order("E2E-CC", "TS48V3-SAIP2-1-BERTLV-UNIQUE.der", confirmation_code="4711")
    card = Euicc.create(None)
    # Without the code: postponed on both sides, the order stays downloadable.
    with open_client(card) as client, pytest.raises(ConfirmationCodeMissing) as info:
        download_profile_sync(client, ac, config=reference.config())
    assert info.value.cancelled_on_card and info.value.cancelled_on_server
    assert reference.state("E2E-CC") == OrderState.RELEASED
    assert_nothing_installed(card)
    # With it, through the callback.
    with open_client(card) as client:
        result = download_profile_sync(
            client, ac, config=reference.config(), ask_confirmation_code=lambda m: "4711"
        )
    assert [p.iccid for p in profiles(card)] == [result.iccid]
    assert reference.state("E2E-CC") == OrderState.INSTALLED


def test_e2e_refusal_ends_in_cancel_session_on_both_sides(reference: Reference) -> None:
    ac = reference.order("E2E-NO", "TS48V4-SAIP2-3-BERTLV-UNIQUE.der")
    card = Euicc.create(None)
    with open_client(card) as client, pytest.raises(ConsentRefused) as info:
        download_profile_sync(client, ac, config=reference.config(), consent=lambda m: False)
    error = info.value
    assert error.cancel_reason == e10.CancelSessionReason.END_USER_REJECTION
    assert error.cancelled_on_card and error.cancelled_on_server
    assert reference.state("E2E-NO") == OrderState.CANCELLED
    assert_nothing_installed(card)


def test_e2e_unknown_matching_id_is_refused_and_cancelled(reference: Reference) -> None:
    card = Euicc.create(None)
    with open_client(card) as client, pytest.raises(SmdpRefusedError) as info:
        download_profile_sync(
            client, f"LPA:1${reference.address}$NO-SUCH-ORDER", config=reference.config()
        )
    error = info.value
    assert (error.step, error.subject_code, error.reason_code) == (
        "authenticateClient",
        "8.2.6",
        "3.8",
    )
    assert error.cancelled_on_card and error.cancelled_on_server
    assert_nothing_installed(card)


def test_e2e_untrusted_tls_certificate_is_refused(reference: Reference) -> None:
    ac = f"LPA:1${reference.address}$WHATEVER"
    other_ci = load_sgp26(Curve.BRAINPOOL_P256R1).ci.cert_der
    card = Euicc.create(None)
    with open_client(card) as client, pytest.raises(SmdpUnreachableError) as info:
        download_profile_sync(client, ac, config=Es9Config(ca_certificates=(other_ci,)))
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert info.value.step == "initiateAuthentication"
    assert info.value.cancel_reason is None


def test_e2e_command_line(reference: Reference, tmp_path: Path, capsys: Any) -> None:
    from euicc_cli.ipa_command import main

    ac = reference.order("E2E-CLI", "TS48V5-SAIP2-1A-NOBERTLV-UNIQUE.der")
    card_dir = tmp_path / "card"
    Euicc.create(card_dir).close()
    ca = str(reference.ca_pem)
    assert main(["--card", str(card_dir), "download", ac, "--ca-cert", ca]) == 0
    out = capsys.readouterr().out
    expected = saip.read_package((TS48 / "TS48V5-SAIP2-1A-NOBERTLV-UNIQUE.der").read_bytes()).iccid
    assert f"installed {expected} in ISD-P" in out
    assert "delivered" in out and "NOT" not in out
    assert main(["--card", str(card_dir), "notifications", "--process", "--ca-cert", ca]) == 0
    assert "no pending notifications" in capsys.readouterr().out
    assert reference.state("E2E-CLI") == OrderState.INSTALLED


def test_e2e_ctrl_c_at_the_confirmation_code_prompt_cancels_on_both_sides(
    reference: Reference, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """Ctrl-C while the user is asked for the code: exit 130, cancelSession sent (postponed),
    so the order goes back to released instead of staying in progress."""
    from euicc_cli import ipa_command

    ac = reference.order("E2E-INT", "TS48V1-A-UNIQUE.der", confirmation_code="2580")
    card_dir = tmp_path / "card"
    Euicc.create(card_dir).close()

    def interrupted(metadata: Any) -> str:
        assert reference.state("E2E-INT") == OrderState.IN_PROGRESS
        raise KeyboardInterrupt

    monkeypatch.setattr(ipa_command, "_ask_confirmation_code", interrupted)
    argv = ["--card", str(card_dir), "download", ac, "--ca-cert", str(reference.ca_pem), "--json"]
    assert ipa_command.main([*argv, "-v"]) == 130
    out, err = capsys.readouterr()
    envelope = json.loads(out)
    # -v: the steps as progress on stderr, the APDUs not (those are -vv).
    assert "download: ES9+ authenticateClient" in err and "-> 81E2" not in err
    assert (envelope["ok"], envelope["code"]) == (False, 130)
    assert "on the card yes, on the SM-DP+ yes" in envelope["message"]
    assert reference.state("E2E-INT") == OrderState.RELEASED
    assert profiles(Euicc.open(card_dir)) == []


def test_e2e_ctrl_c_on_a_terminal_cancels_the_session(reference: Reference, tmp_path: Path) -> None:
    """The real thing: ``ipa download`` in a pseudo-terminal, Ctrl-C typed at the prompt."""
    import os
    import pty
    import select
    import sys
    import time

    ac = reference.order("E2E-TTY", "TS48V1-B-UNIQUE.der", confirmation_code="1357")
    card_dir = tmp_path / "card"
    Euicc.create(card_dir).close()
    argv = [sys.executable, "-m", "ipa", "--card", str(card_dir), "download", ac]
    argv += ["--ca-cert", str(reference.ca_pem)]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        os.execv(sys.executable, argv)
    seen = b""

    def read_until(marker: bytes, timeout: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {marker!r} in {seen!r}")
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                raise AssertionError(f"no {marker!r} in {seen!r}") from None
            if not chunk:
                raise AssertionError(f"no {marker!r} in {seen!r}")
            seen += chunk

    try:
        read_until(b"Confirmation code for")
        os.write(fd, b"\x03")  # the terminal turns ^C into SIGINT for the foreground group
        read_until(b"interrupted")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 130, seen
    assert b"Traceback" not in seen
    assert b"on the card yes, on the SM-DP+ yes" in seen
    assert reference.state("E2E-TTY") == OrderState.RELEASED
