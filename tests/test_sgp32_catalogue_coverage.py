"""Every ES10 function of the SGP.32 v1.2 catalogue
(``euicc_protocol.es10.catalogue_for("sgp32")``) is
answered by the card: a meaningful request for each gets ``9000`` and a response that
decodes as the function's response type, under the request's tag.

One exception, with its reason: the LoadBoundProfilePackage pieces (``BF36``), which the
download tests cover.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from test_euicc_package import TestEim, add_initial_eim, new_card, send

from euicc_protocol import es10, schema, tlv
from euicc_protocol.crypto import Curve
from euicc_protocol.testpki import issue_crl, load_sgp26
from euicc_sim.card import Euicc

Request = Callable[[Euicc, TestEim], bytes]

_DP = load_sgp26(Curve.NIST_P256)
_TID = bytes(range(16))


def _encode(type_name: str, value: object) -> Request:
    return lambda card, eim: schema.encode(type_name, value)


def _euicc_package(card: Euicc, eim: TestEim) -> bytes:
    ops = [("enable", {"iccid": card.state.profiles[1].iccid}), ("listProfileInfo", {})]
    return eim.package(bytes.fromhex(card.eid), ops)


def _authenticate_server(card: Euicc, eim: TestEim) -> bytes:
    value = {
        "serverSigned1": {
            "transactionId": _TID,
            "euiccChallenge": bytes(16),
            "serverAddress": "testsmdpplus1.example.com",
            "serverChallenge": bytes(16),
        },
        "serverSignature1": bytes(64),
        "euiccCiPKIdToBeUsed": card.credentials.chains[0].ci_pkid,
        "serverCertificate": schema.decode("Certificate", _DP.dp_auth.cert_der),
        "ctxParams1": (
            "ctxParamsForCommonAuthentication",
            {"matchingId": "X", "deviceInfo": {"tac": bytes(4), "deviceCapabilities": {}}},
        ),
    }
    return schema.encode("AuthenticateServerRequest", value)


def _prepare_download(card: Euicc, eim: TestEim) -> bytes:
    value = {
        "smdpSigned2": {"transactionId": _TID, "ccRequiredFlag": False},
        "smdpSignature2": bytes(64),
        "smdpCertificate": schema.decode("Certificate", _DP.dp_pb.cert_der),
    }
    return schema.encode("PrepareDownloadRequest", value)


_REFRESH = {"refreshFlag": False}

#: One request per SGP.32 request type; the answer must decode as the response type.
REQUESTS: dict[str, Request] = {
    "EuiccConfiguredAddressesRequest": _encode("EuiccConfiguredAddressesRequest", {}),
    "SetDefaultDpAddressRequest": _encode(
        "SetDefaultDpAddressRequest", {"defaultDpAddress": "smdp.example"}
    ),
    "PrepareDownloadRequest": _prepare_download,
    "GetEuiccChallengeRequest": _encode("GetEuiccChallengeRequest", {}),
    "GetEuiccInfo1Request": _encode("GetEuiccInfo1Request", {}),
    "GetEuiccInfo2Request": _encode("GetEuiccInfo2Request", {}),
    "ListNotificationRequest": _encode("ListNotificationRequest", {}),
    "SGP32-RetrieveNotificationsListRequest": _encode(
        "SGP32-RetrieveNotificationsListRequest",
        {"searchCriteria": ("euiccPackageResults", None)},
    ),
    "NotificationSentRequest": _encode("NotificationSentRequest", {"seqNumber": 1}),
    "AuthenticateServerRequest": _authenticate_server,
    "CancelSessionRequest": _encode("CancelSessionRequest", {"transactionId": _TID, "reason": 1}),
    "GetRatRequest": _encode("GetRatRequest", {}),
    "ProfileInfoListRequest": _encode("ProfileInfoListRequest", {}),
    "GetEuiccDataRequest": _encode("GetEuiccDataRequest", {"tagList": b"\x5a"}),
    "SGP32-EuiccMemoryResetRequest": _encode(
        "SGP32-EuiccMemoryResetRequest", {"resetOptions": (b"\x02", 7)}
    ),
    "SGP32-SetDefaultDpAddressRequest": _encode(
        "SGP32-SetDefaultDpAddressRequest", {"defaultDpAddress": "smdp.iot.example"}
    ),
    "EuiccPackageRequest": _euicc_package,
    "GetEimConfigurationDataRequest": _encode("GetEimConfigurationDataRequest", {}),
    "AddInitialEimRequest": lambda card, eim: schema.encode(
        "AddInitialEimRequest",
        {"eimConfigurationDataList": [TestEim(eim_id="another").configuration()]},
    ),
    "GetCertsRequest": _encode("GetCertsRequest", {}),
    "ImmediateEnableRequest": _encode("ImmediateEnableRequest", _REFRESH),
    "ProfileRollbackRequest": _encode("ProfileRollbackRequest", _REFRESH),
    "ConfigureImmediateProfileEnablingRequest": _encode(
        "ConfigureImmediateProfileEnablingRequest", {"immediateEnableFlag": None}
    ),
    "ExecuteFallbackMechanismRequest": _encode("ExecuteFallbackMechanismRequest", _REFRESH),
    "ReturnFromFallbackRequest": _encode("ReturnFromFallbackRequest", _REFRESH),
    "EnableEmergencyProfileRequest": _encode("EnableEmergencyProfileRequest", _REFRESH),
    "DisableEmergencyProfileRequest": _encode("DisableEmergencyProfileRequest", _REFRESH),
    "GetConnectivityParametersRequest": _encode("GetConnectivityParametersRequest", {}),
    "IpaeActivationRequest": _encode("IpaeActivationRequest", {"ipaeOption": (b"\x80", 1)}),
    # The CertificateList under the automatic tag A0 (its 30 replaced).
    "LoadCRLRequest": lambda card, eim: tlv.encode_tlv(
        b"\xbf\x35", b"\xa0" + issue_crl(_DP.ci, [1], 1)[1:]
    ),
}

_NOT_HERE = {
    "BoundProfilePackage": pytest.mark.skip(
        reason="LoadBoundProfilePackage pieces (BF36...) belong to the download engineer's "
        "euicc_sim/bpp.py and are covered by tests/test_download_card.py"
    ),
}

FUNCTIONS = sorted(es10.catalogue_for("sgp32").values(), key=lambda f: f.request_tag)


def test_the_table_has_a_request_for_every_sgp32_function() -> None:
    wanted = {f.request_type for f in FUNCTIONS} - {"BoundProfilePackage"}
    assert set(REQUESTS) == wanted


@pytest.fixture
def card_and_eim() -> tuple[Euicc, TestEim]:
    card = new_card()
    eim = TestEim()
    add_initial_eim(card, eim)
    return card, eim


@pytest.mark.parametrize(
    "function",
    [
        pytest.param(f, marks=_NOT_HERE[f.request_type]) if f.request_type in _NOT_HERE else f
        for f in FUNCTIONS
    ],
    ids=lambda f: f"{f.request_tag.hex().upper()}-{f.name}",
)
def test_every_sgp32_function_is_answered_with_its_response_type(
    card_and_eim: tuple[Euicc, TestEim], function: es10.Es10Function
) -> None:
    card, eim = card_and_eim
    request = REQUESTS[function.request_type](card, eim)
    assert request[: len(function.request_tag)] == function.request_tag
    response = send(card, request)  # a status word other than 9000 raises
    assert response[: len(function.response_tag)] == function.response_tag
    schema.decode(function.response_type, response)
