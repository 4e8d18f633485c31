"""ipa.esipa: the ESipa client against a fake eIM (httpx.MockTransport), both bindings.

Encodings are checked byte for byte against pinned DER (SGP.32 v1.2 §6.3 ASN.1), and every
message the client builds must decode as the schema's EsipaMessageFromIpaToEim.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from euicc_protocol import schema, tlv
from ipa import esipa
from ipa.esipa import (
    AuthenticateClientErrorEsipa,
    AuthenticateClientOkDp,
    AuthenticateClientOkDs,
    Binding,
    CancelSessionErrorEsipa,
    EimPackageErrorCode,
    EimPackageKind,
    EimPackageResultErrorCode,
    EsipaClient,
    EsipaConfig,
    EsipaConnectionError,
    EsipaFunctionError,
    EsipaProtocolError,
    EsipaTimeout,
    GetBoundProfilePackageErrorEsipa,
    InitiateAuthenticationErrorEsipa,
    ProfileDownloadErrorReason,
    ProvideEimPackageResultError,
    StateChangeCause,
    TlsPinMismatch,
)

EID = "89049032123451234512345678901235"
EID_BYTES = bytes.fromhex(EID)
TID = bytes.fromhex("0102030405060708")
H = bytes.fromhex

# Stand-ins shaped like the real TLVs (the client relays them; it does not judge them).
EPR = H("BF5105A203800165")  # euiccPackageErrorUnsigned {eimId "e"}
PIR_LIKE = H("BF3703020100")
OTHER_NOTIFICATION = H("3003020101")
CERT = H("3003020101")
INFO1 = schema.encode(
    "EUICCInfo1",
    {"svn": H("020300"), "euiccCiPKIdListForVerification": [], "euiccCiPKIdListForSigning": []},
)
SIGNED = H("3003800101")
SIGNATURE = H("5F3703010203")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# -- builders: byte-exact -------------------------------------------------------------------------


def test_get_eim_package_request_is_bf4f_with_the_eid_and_v12_tags() -> None:
    assert esipa.get_eim_package_request(EID) == H("BF4F12 5A10") + EID_BYTES
    full = esipa.get_eim_package_request(
        EID,
        notify_state_change=True,
        state_change_cause=StateChangeCause.FALLBACK,
        rplmn=H("62F210"),
    )
    assert full == H("BF4F1C 5A10") + EID_BYTES + H("8000 810101 820362F210")
    assert schema.decode("GetEimPackageRequest", full) == {
        "eidValue": EID_BYTES,
        "notifyStateChange": None,
        "stateChangeCause": 1,
        "rPLMN": H("62F210"),
    }


def test_provide_eim_package_result_shapes() -> None:
    assert esipa.provide_eim_package_result(EPR, EID) == H("BF501A 5A10") + EID_BYTES + EPR
    assert esipa.provide_eim_package_result(EPR) == H("BF5008") + EPR
    both = esipa.epr_and_notifications(EPR, [PIR_LIKE, OTHER_NOTIFICATION])
    assert both == H("3015") + EPR + H("A00B") + PIR_LIKE + OTHER_NOTIFICATION
    # An IpaEuiccDataResponse error (SGP.32 v1.2 §2.11.2.2) inside a ProvideEimPackageResult.
    assert esipa.provide_eim_package_result(H("BF5205A103020101")) == H("BF5008BF5205A103020101")
    error = esipa.package_result_error(EimPackageResultErrorCode.UNKNOWN_PACKAGE, b"\x07")
    assert error == H("A006 800107 020102")
    message = esipa.provide_eim_package_result(error, EID)
    assert schema.decode("EsipaMessageFromIpaToEim", message) == (
        "provideEimPackageResult",
        {
            "eidValue": EID_BYTES,
            "eimPackageResult": (
                "eimPackageResultResponseError",
                {"eimTransactionId": b"\x07", "eimPackageResultErrorCode": 2},
            ),
        },
    )
    with pytest.raises(ValueError):
        esipa.provide_eim_package_result(H("0500"))


def test_profile_download_trigger_result_matches_the_schema() -> None:
    error = esipa.profile_download_trigger_result(
        error_reason=ProfileDownloadErrorReason.UNDEFINED_ERROR,
        error_response=b"\x01",
        eim_transaction_id=b"\x01",
    )
    assert error == H("BF540B 820101 3006 80017F 040101")
    expected = schema.encode(
        "ProfileDownloadTriggerResult",
        {
            "eimTransactionId": b"\x01",
            "profileDownloadTriggerResultData": (
                "profileDownloadError",
                {"profileDownloadErrorReason": 127, "errorResponse": b"\x01"},
            ),
        },
    )
    assert error == expected
    ok = esipa.profile_download_trigger_result(profile_installation_result=PIR_LIKE)
    assert ok == H("BF5406") + PIR_LIKE


def test_cancel_session_request_replaces_bf41_by_a1() -> None:
    # CancelSessionRequestEsipa (SGP.32 v1.2 §6.3): BF41 09 80 02 0102 A1 03 81 01 05
    assert esipa.cancel_session_request(H("0102"), H("BF4103810105")) == H(
        "BF410980020102A103810105"
    )


def test_download_relay_requests_carry_the_card_tlvs_unchanged() -> None:
    auth = H("BF3803A10100")
    assert esipa.authenticate_client_request(TID, auth) == H("BF3B10 8008") + TID + auth
    prep = H("BF2103A10100")
    assert esipa.get_bound_profile_package_request(TID, prep) == H("BF3A10 8008") + TID + prep
    init = esipa.initiate_authentication_request(
        bytes(16), smdp_address="a", euicc_info1=H("BF2000"), eim_transaction_id=b"\x01"
    )
    assert init == H("BF391B 8110") + bytes(16) + H("830161 BF2000 820101")
    assert esipa.handle_notification_request(PIR_LIKE) == H("BF3D08 A006") + PIR_LIKE
    wrapped = esipa.provide_eim_package_result(EPR, EID)
    assert esipa.handle_notification_request(wrapped) == H("BF3D1D") + wrapped


def test_every_message_decodes_as_esipa_message_from_ipa_to_eim() -> None:
    messages = {
        "getEimPackageRequest": esipa.get_eim_package_request(EID, notify_state_change=True),
        "provideEimPackageResult": esipa.provide_eim_package_result(
            esipa.profile_download_trigger_result(error_reason=127), EID
        ),
        "cancelSessionRequestEsipa": esipa.cancel_session_request(TID, H("BF4103810105")),
        "initiateAuthenticationRequestEsipa": esipa.initiate_authentication_request(bytes(16)),
        "handleNotificationEsipa": esipa.handle_notification_request(
            esipa.provide_eim_package_result(H("A003020101"))
        ),
    }
    for alternative, message in messages.items():
        assert schema.decode("EsipaMessageFromIpaToEim", message)[0] == alternative
        assert (
            schema.encode(
                "EsipaMessageFromIpaToEim", schema.decode("EsipaMessageFromIpaToEim", message)
            )
            == message
        )


def test_builders_refuse_what_is_not_one_tlv() -> None:
    with pytest.raises(ValueError):
        esipa.get_eim_package_request("1234")
    with pytest.raises(ValueError):
        esipa.epr_and_notifications(EPR + b"\x00", [])
    with pytest.raises(ValueError):
        esipa.cancel_session_request(b"", H("BF4103810105"))
    with pytest.raises(ValueError):
        esipa.profile_download_trigger_result()


# -- the fake eIM ---------------------------------------------------------------------------------


Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, binding: Binding = Binding.ASN1, url: str = "eim.test") -> EsipaClient:
    config = EsipaConfig(binding=binding, transport=httpx.MockTransport(handler))
    return EsipaClient(url, config)


def asn1_answer(body: bytes, status: int = 200) -> Handler:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=body)

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def json_answer(body: dict[str, Any] | None, status: int = 200) -> Handler:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if body is None:
            return httpx.Response(204)
        return httpx.Response(status, json=body)

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


OK_HEADER = {"header": {"functionExecutionStatus": {"status": "Executed-Success"}}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- ASN.1 binding --------------------------------------------------------------------------------


def test_asn1_request_line_headers_and_body() -> None:
    handler = asn1_answer(H("BF4F03020101"))
    assert run(client(handler, url="https://eim.test:8443").get_eim_package(EID)) is None
    (request,) = handler.seen  # type: ignore[attr-defined]
    assert request.method == "POST"
    assert str(request.url) == "https://eim.test:8443/gsma/rsp2/asn1"
    assert request.headers["content-type"] == "application/x-gsma-rsp-asn1"
    assert request.headers["x-admin-protocol"] == "gsma/rsp/v2.1.0"
    assert request.content == H("BF4F12 5A10") + EID_BYTES


def test_plain_http_only_when_the_url_says_so() -> None:
    handler = asn1_answer(H("BF4F03020101"))
    run(client(handler, url="http://127.0.0.1:8000").get_eim_package(EID))
    assert str(handler.seen[0].url) == "http://127.0.0.1:8000/gsma/rsp2/asn1"  # type: ignore[attr-defined]
    assert EsipaClient("eim.test").base_url == "https://eim.test"


@pytest.mark.parametrize(
    ("package", "kind"),
    [
        (b"", EimPackageKind.EUICC_PACKAGE_REQUEST),  # a signed package, made below
        (H("BF52035C015A"), EimPackageKind.IPA_EUICC_DATA_REQUEST),
        (H("BF5400"), EimPackageKind.PROFILE_DOWNLOAD_TRIGGER_REQUEST),
    ],
)
def test_asn1_get_eim_package_returns_the_package_tlv(package: bytes, kind: EimPackageKind) -> None:
    if kind is EimPackageKind.EUICC_PACKAGE_REQUEST:
        package = schema.encode(
            "EuiccPackageRequest",
            {
                "euiccPackageSigned": {
                    "eimId": "e",
                    "eidValue": EID_BYTES,
                    "counterValue": 1,
                    "euiccPackage": ("psmoList", []),
                },
                "eimSignature": bytes(64),
            },
        )
    answer = H("BF4F") + bytes([len(package)]) + package
    result = run(client(asn1_answer(answer)).get_eim_package(EID))
    assert (result.kind, result.raw) == (kind, package)


def test_asn1_eim_package_errors_other_than_no_package_raise() -> None:
    with pytest.raises(EsipaFunctionError) as info:
        run(client(asn1_answer(H("BF4F03020102"))).get_eim_package(EID))
    assert info.value.code == EimPackageErrorCode.EID_NOT_FOUND
    assert info.value.function == "getEimPackage"
    assert "eidNotFound" in str(info.value)


def test_asn1_provide_result_acknowledgements_empty_and_error() -> None:
    ack = client(asn1_answer(H("BF5009BF5306800101800102")))
    assert run(ack.provide_eim_package_result(EPR, eid=EID)) == (1, 2)
    assert run(client(asn1_answer(H("BF50023000"))).provide_eim_package_result(EPR)) == ()
    with pytest.raises(EsipaFunctionError) as info:
        run(client(asn1_answer(H("BF5003020103"))).provide_eim_package_result(EPR))
    assert info.value.code == ProvideEimPackageResultError.INVALID_EID


@pytest.mark.parametrize("status", [200, 204])
def test_asn1_handle_notification_accepts_an_empty_answer(status: int) -> None:
    handler = asn1_answer(b"", status)
    run(client(handler).handle_notification(PIR_LIKE))
    assert handler.seen[0].content == H("BF3D08A006") + PIR_LIKE  # type: ignore[attr-defined]


def test_asn1_binding_errors() -> None:
    with pytest.raises(EsipaProtocolError) as info:
        run(client(asn1_answer(b"oops", 500)).get_eim_package(EID))
    assert info.value.status_code == 500
    with pytest.raises(EsipaProtocolError, match="without a body"):
        run(client(asn1_answer(b"")).get_eim_package(EID))
    with pytest.raises(EsipaProtocolError, match="expected one getEimPackageResponse"):
        run(client(asn1_answer(H("BF50023000"))).get_eim_package(EID))
    with pytest.raises(EsipaProtocolError, match="expected provideEimPackageResultResponse"):
        run(client(asn1_answer(H("BF4F03020101"))).provide_eim_package_result(EPR))
    with pytest.raises(EsipaProtocolError, match="not an EsipaMessageFromEimToIpa"):
        run(client(asn1_answer(H("0500"))).provide_eim_package_result(EPR))
    with pytest.raises(EsipaProtocolError, match="unexpected alternative"):
        run(client(asn1_answer(H("BF4F020500"))).get_eim_package(EID))
    # A package that does not decode is still handed over (the IPAd answers
    # invalidPackageFormat for it).
    odd = run(client(asn1_answer(H("BF4F05BF5102FFFF"))).get_eim_package(EID))
    assert odd == esipa.EimPackage(EimPackageKind.EUICC_PACKAGE_REQUEST, H("BF5102FFFF"))


def test_connection_failures_and_timeouts() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("too slow", request=request)

    with pytest.raises(EsipaConnectionError) as info:
        run(client(refuse).get_eim_package(EID))
    assert not isinstance(info.value, EsipaTimeout)
    with pytest.raises(EsipaTimeout):
        run(client(slow).provide_eim_package_result(EPR))


def _initiate_ok_asn1(*, with_tid: bool = True) -> bytes:
    value: dict[str, Any] = {
        "serverSigned1": {
            "transactionId": TID,
            "euiccChallenge": bytes(16),
            "serverAddress": "smdp.test",
            "serverChallenge": bytes(16),
        },
        "serverSignature1": bytes(64),
        "euiccCiPKIdentifierToBeUsed": H("F54172BD"),
        "serverCertificate": schema.decode("Certificate", _certificate()),
        "matchingId": "MATCH",
    }
    if with_tid:
        value["transactionId"] = TID
    return schema.encode(
        "EsipaMessageFromEimToIpa",
        ("initiateAuthenticationResponseEsipa", ("initiateAuthenticationOkEsipa", value)),
    )


def _certificate() -> bytes:
    from euicc_protocol.crypto import Curve
    from euicc_protocol.testpki import load_sgp26

    return load_sgp26(Curve.NIST_P256).dp_auth.cert_der


def test_asn1_initiate_authentication_splits_the_answer_into_received_tlvs() -> None:
    handler = asn1_answer(_initiate_ok_asn1())
    ok = run(
        client(handler).initiate_authentication(
            bytes(16), smdp_address="smdp.test", euicc_info1=INFO1, eim_transaction_id=b"\x09"
        )
    )
    assert ok.transaction_id == TID
    assert ok.server_signed1.startswith(H("30")) and schema.decode(
        "ServerSigned1", ok.server_signed1
    )
    assert ok.server_signature1 == H("5F3740") + bytes(64)
    assert ok.euicc_ci_pkid_to_be_used == H("0404F54172BD")  # truncated, as sent
    assert ok.server_certificate == _certificate()
    assert ok.matching_id == "MATCH"
    sent = schema.decode("EsipaMessageFromIpaToEim", handler.seen[0].content)  # type: ignore[attr-defined]
    assert sent == (
        "initiateAuthenticationRequestEsipa",
        {
            "euiccChallenge": bytes(16),
            "smdpAddress": "smdp.test",
            "euiccInfo1": schema.decode("EUICCInfo1", INFO1),
            "eimTransactionId": b"\x09",
        },
    )
    no_tid = run(
        client(asn1_answer(_initiate_ok_asn1(with_tid=False))).initiate_authentication(bytes(16))
    )
    assert no_tid.transaction_id is None


@pytest.mark.parametrize(
    ("function", "answer", "code"),
    [
        ("initiate", H("BF3903810132"), InitiateAuthenticationErrorEsipa.SMDP_ADDRESS_MISMATCH),
        ("authenticate", H("BF3B03820108"), AuthenticateClientErrorEsipa.NO_ELIGIBLE_PROFILE),
        ("bpp", H("BF3A0381015F"), GetBoundProfilePackageErrorEsipa.INVALID_TRANSACTION_ID),
        ("cancel", H("BF4103810101"), CancelSessionErrorEsipa.INVALID_TRANSACTION_ID),
    ],
)
def test_asn1_relay_errors_carry_the_esipa_code(function: str, answer: bytes, code: Any) -> None:
    c = client(asn1_answer(answer))
    calls = {
        "initiate": lambda: c.initiate_authentication(bytes(16)),
        "authenticate": lambda: c.authenticate_client(TID, H("BF3803A10100")),
        "bpp": lambda: c.get_bound_profile_package(TID, H("BF2103A10100")),
        "cancel": lambda: c.cancel_session(TID, H("BF4103810105")),
    }
    with pytest.raises(EsipaFunctionError) as info:
        run(calls[function]())
    assert info.value.code == code


def test_asn1_authenticate_client_dp_ds_and_bpp_answers() -> None:
    dp = schema.encode(
        "EsipaMessageFromEimToIpa",
        (
            "authenticateClientResponseEsipa",
            (
                "authenticateClientOkDPEsipa",
                {
                    "transactionId": TID,
                    "smdpSigned2": {"transactionId": TID, "ccRequiredFlag": False},
                    "smdpSignature2": bytes(64),
                    "smdpCertificate": schema.decode("Certificate", _certificate()),
                    "hashCc": bytes(32),
                },
            ),
        ),
    )
    ok = run(client(asn1_answer(dp)).authenticate_client(TID, H("BF3803A10100")))
    assert isinstance(ok, AuthenticateClientOkDp)
    assert (ok.transaction_id, ok.profile_metadata, ok.hash_cc) == (TID, None, bytes(32))
    assert ok.smdp_signed2 == H("300D 8008") + TID + H("010100")
    assert ok.smdp_certificate == _certificate()
    ds = H("BF3B0C A10A 8008") + TID
    ds_ok = run(client(asn1_answer(ds)).authenticate_client(TID, H("BF3803A10100")))
    assert ds_ok == AuthenticateClientOkDs(TID, None)
    bpp = schema.encode("BoundProfilePackage", MINIMAL_BPP)
    answer = tlv.encode_tlv(H("BF3A"), tlv.encode_tlv(H("A0"), bpp))
    got = run(client(asn1_answer(answer)).get_bound_profile_package(TID, H("BF2103A10100")))
    assert (got.transaction_id, got.bound_profile_package) == (None, bpp)
    broken = H("BF3A0E A00C 8008") + TID + H("BF3600")  # not a BoundProfilePackage
    with pytest.raises(EsipaProtocolError):
        run(client(asn1_answer(broken)).get_bound_profile_package(TID, H("BF2103A10100")))


MINIMAL_BPP = {
    "initialiseSecureChannelRequest": {
        "remoteOpId": 1,
        "transactionId": TID,
        "controlRefTemplate": {"keyType": b"\x88", "keyLen": b"\x10", "hostId": b"\x01"},
        "smdpOtpk": bytes(65),
        "smdpSign": bytes(64),
    },
    "firstSequenceOf87": [b"\x00"],
    "sequenceOf88": [b"\x00"],
    "sequenceOf86": [b"\x00"],
}


def test_asn1_cancel_session_ok() -> None:
    handler = asn1_answer(H("BF4102A000"))
    run(client(handler).cancel_session(TID, H("BF4103810105")))
    assert handler.seen[0].content == H("BF410F 8008") + TID + H("A103810105")  # type: ignore[attr-defined]


# -- JSON binding ---------------------------------------------------------------------------------


def test_json_get_eim_package_paths_fields_and_answers() -> None:
    package = H("BF5400")
    handler = json_answer(OK_HEADER | {"profileDownloadTriggerRequest": b64(package)})
    c = client(handler, Binding.JSON)
    got = run(c.get_eim_package(EID, notify_state_change=True, state_change_cause=5))
    assert got == esipa.EimPackage(EimPackageKind.PROFILE_DOWNLOAD_TRIGGER_REQUEST, package)
    (request,) = handler.seen  # type: ignore[attr-defined]
    assert str(request.url) == "https://eim.test/gsma/rsp2/esipa/getEimPackage"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "eidValue": EID,
        "notifyStateChange": True,
        "stateChangeCause": 5,
    }
    none = client(json_answer(OK_HEADER | {"eimPackageError": 1}), Binding.JSON)
    assert run(none.get_eim_package(EID)) is None
    with pytest.raises(EsipaFunctionError) as info:
        run(
            client(json_answer(OK_HEADER | {"eimPackageError": 2}), Binding.JSON).get_eim_package(
                EID
            )
        )
    assert info.value.code == EimPackageErrorCode.EID_NOT_FOUND
    with pytest.raises(EsipaProtocolError, match="exactly one"):
        run(client(json_answer(OK_HEADER), Binding.JSON).get_eim_package(EID))


def test_json_failed_status_is_a_function_error_with_subject_and_reason() -> None:
    failed = {
        "header": {
            "functionExecutionStatus": {
                "status": "Failed",
                "statusCodeData": {"subjectCode": "8.1.1", "reasonCode": "3.8", "message": "x"},
            }
        }
    }
    with pytest.raises(EsipaFunctionError) as info:
        run(client(json_answer(failed), Binding.JSON).get_eim_package(EID))
    assert (info.value.subject_code, info.value.reason_code, info.value.code) == (
        "8.1.1",
        "3.8",
        None,
    )


def test_json_provide_result_and_notifications() -> None:
    handler = json_answer(OK_HEADER | {"eimAcknowledgements": b64(H("BF5306800101800102"))})
    c = client(handler, Binding.JSON)
    assert run(c.provide_eim_package_result(EPR, eid=EID)) == (1, 2)
    assert json.loads(handler.seen[0].content) == {  # type: ignore[attr-defined]
        "eimPackageResult": b64(EPR),
        "eidValue": EID,
    }
    assert run(client(json_answer(OK_HEADER), Binding.JSON).provide_eim_package_result(EPR)) == ()
    refused = client(json_answer(OK_HEADER | {"provideEimPackageResultError": 2}), Binding.JSON)
    with pytest.raises(EsipaFunctionError) as info:
        run(refused.provide_eim_package_result(EPR))
    assert info.value.code == ProvideEimPackageResultError.EID_NOT_FOUND
    notified = json_answer(None)
    run(client(notified, Binding.JSON).handle_notification(PIR_LIKE))
    request = notified.seen[0]  # type: ignore[attr-defined]
    assert str(request.url).endswith("/gsma/rsp2/esipa/handleNotification")
    assert json.loads(request.content) == {"pendingNotification": b64(PIR_LIKE)}
    wrapped = esipa.provide_eim_package_result(EPR)
    run(client(notified, Binding.JSON).handle_notification(wrapped))
    assert json.loads(notified.seen[1].content) == {"provideEimPackageResult": b64(wrapped)}  # type: ignore[attr-defined]


def test_json_download_relay_functions() -> None:
    cert = _certificate()
    init = json_answer(
        OK_HEADER
        | {
            "transactionId": TID.hex().upper(),
            "serverSigned1": b64(SIGNED),
            "serverSignature1": b64(SIGNATURE),
            "euiccCiPKIdentifierToBeUsed": b64(H("0402F541")),
            "serverCertificate": b64(cert),
        }
    )
    ok = run(
        client(init, Binding.JSON).initiate_authentication(
            bytes(16), smdp_address="smdp.test", euicc_info1=H("BF2000"), eim_transaction_id=b"\x01"
        )
    )
    assert (ok.transaction_id, ok.server_signed1, ok.euicc_ci_pkid_to_be_used) == (
        TID,
        SIGNED,
        H("0402F541"),
    )
    assert json.loads(init.seen[0].content) == {  # type: ignore[attr-defined]
        "euiccChallenge": b64(bytes(16)),
        "euiccInfo1": b64(H("BF2000")),
        "smdpAddress": "smdp.test",
        "eimTransactionId": "01",
    }
    auth = json_answer(
        OK_HEADER
        | {
            "transactionId": TID.hex(),
            "profileMetadata": b64(H("BF2500")),
            "smdpSigned2": b64(SIGNED),
            "smdpSignature2": b64(SIGNATURE),
            "smdpCertificate": b64(cert),
            "hashCc": b64(H("0420") + bytes(32)),
        }
    )
    dp = run(client(auth, Binding.JSON).authenticate_client(TID, H("BF3803A10100")))
    assert isinstance(dp, AuthenticateClientOkDp)
    assert (dp.profile_metadata, dp.hash_cc) == (H("BF2500"), bytes(32))
    bpp = json_answer(OK_HEADER | {"boundProfilePackage": b64(H("BF3600"))})
    got = run(client(bpp, Binding.JSON).get_bound_profile_package(TID, H("BF2103A10100")))
    assert (got.transaction_id, got.bound_profile_package) == (None, H("BF3600"))
    cancel = json_answer(OK_HEADER)
    run(client(cancel, Binding.JSON).cancel_session(TID, H("BF4103810105")))
    assert json.loads(cancel.seen[0].content) == {  # type: ignore[attr-defined]
        "transactionId": TID.hex().upper(),
        "cancelSessionResponse": b64(H("BF4103810105")),
    }
    bad = json_answer(OK_HEADER | {"boundProfilePackage": b64(H("3000"))})
    with pytest.raises(EsipaProtocolError, match="BF36"):
        run(client(bad, Binding.JSON).get_bound_profile_package(TID, H("BF2103A10100")))


# -- TLS ------------------------------------------------------------------------------------------


try:
    from euicc_servers.smdpp.serve import run_in_thread

    SERVE_MISSING = ""
except ImportError as exc:  # pragma: no cover
    SERVE_MISSING = f"euicc_servers.smdpp.serve is not available: {exc}"


@pytest.fixture(scope="module")
def tls_eim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny ASN.1-binding eIM over HTTPS on 127.0.0.1 ("no package" to everything)."""
    if SERVE_MISSING:
        pytest.skip(SERVE_MISSING)
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from euicc_protocol.crypto import Curve
    from euicc_protocol.pki import CertRole
    from euicc_protocol.testpki import issue_server_certificate, load_sgp26

    ci = load_sgp26(Curve.NIST_P256).ci
    tls = issue_server_certificate(
        ci, CertRole.DP_TLS, "2.999.10", dns_names=("localhost",), ip_addresses=("127.0.0.1",)
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"application/x-gsma-rsp-asn1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": H("BF4F03020101")})

    ca_pem = tmp_path_factory.mktemp("eim-ci") / "ci.pem"
    ca_pem.write_bytes(ci.cert.public_bytes(Encoding.PEM))
    key = tls.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with run_in_thread(app, tls=tls) as server:
        yield server.base_url, ca_pem, key, tls


def fetch(url: str, config: EsipaConfig | None = None) -> Any:
    """GetEimPackage over a client that is closed afterwards (the server then stops at once)."""

    async def go() -> Any:
        async with EsipaClient(url, config) as c:
            return await c.get_eim_package(EID)

    return run(go())


def test_tls_is_verified_against_the_configured_anchors(tls_eim: Any) -> None:
    url, ca_pem, _, _ = tls_eim
    assert fetch(url, EsipaConfig(ca_certificates=(Path(ca_pem).read_bytes(),))) is None
    from euicc_protocol.crypto import Curve
    from euicc_protocol.testpki import load_sgp26

    other = load_sgp26(Curve.BRAINPOOL_P256R1).ci.cert_der
    with pytest.raises(EsipaConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(url, EsipaConfig(ca_certificates=(other,)))
    with pytest.raises(EsipaConnectionError):  # the system store does not know the test CI
        fetch(url)
    assert fetch(url, EsipaConfig(insecure=True)) is None


def test_configured_anchors_replace_the_system_store(
    tls_eim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With anchors configured, a certificate the system store would accept is refused."""
    url, ca_pem, _, _ = tls_eim
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_pem))  # the "system" store now holds the CI
    assert fetch(url) is None  # no anchors: the system store applies
    from euicc_protocol.crypto import Curve
    from euicc_protocol.testpki import load_sgp26

    other = load_sgp26(Curve.BRAINPOOL_P256R1).ci.cert_der
    with pytest.raises(EsipaConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(url, EsipaConfig(ca_certificates=(other,)))


def test_a_leaf_certificate_can_be_the_only_anchor(tls_eim: Any) -> None:
    url, _, _, tls = tls_eim
    assert fetch(url, EsipaConfig(ca_certificates=(tls.cert_der,))) is None


def test_pinned_public_key(tls_eim: Any) -> None:
    url, _, key, _ = tls_eim
    assert fetch(url, EsipaConfig(pinned_public_key=key)) is None
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from euicc_protocol import crypto
    from euicc_protocol.crypto import Curve

    other = crypto.generate_private_key(Curve.NIST_P256).public_key()
    wrong = other.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(TlsPinMismatch):
        fetch(url, EsipaConfig(pinned_public_key=wrong))
