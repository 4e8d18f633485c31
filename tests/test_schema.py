"""Tests for euicc_protocol.schema: pinned encodings (SGP.22 v2.5 Annex H, SGP.32 v1.2 ASN.1),
tags, the asn1tools fixes, BIT STRING minimality, typed errors and the disk cache."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import strategy_for

from euicc_protocol import schema
from euicc_protocol.schema import Asn1Error, DecodeError, EncodeError, bit_positions, bits

DATA = Path(__file__).with_name("data")

T = bytes.fromhex("0102030405060708")  # transactionId used by the pinned examples
ICCID = bytes.fromhex("98001032547698103214")
AID = bytes.fromhex("A0000005591010FFFFFFFF8900001000")
EID = bytes.fromhex("89049032123451234512345678901235")
C16 = bytes(range(16))
CERTIFICATE_OK_SIMA = bytes.fromhex("3007A0053003800100")


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# (type, value, DER hex). decode(hex) must give back exactly `value`.
SGP22_EXAMPLES: list[tuple[str, Any, str]] = [
    ("GetEuiccChallengeRequest", {}, "BF2E00"),
    ("GetEuiccChallengeResponse", {"euiccChallenge": C16}, "BF2E12 8010" + C16.hex()),
    ("GetEuiccDataRequest", {"tagList": b"\x5a"}, "BF3E03 5C015A"),
    ("GetEuiccDataResponse", {"eidValue": EID}, "BF3E12 5A10 89049032123451234512345678901235"),
    (
        "ProfileInfoListRequest",
        {"searchCriteria": ("iccid", ICCID), "tagList": h("5A9F70")},
        "BF2D13 A00C 5A0A98001032547698103214 5C035A9F70",
    ),
    (
        "ProfileInfoListResponse",
        ("profileInfoListOk", [{"iccid": ICCID, "profileState": 1, "profileClass": 2}]),
        "BF2D17 A015 E313 5A0A98001032547698103214 9F700101 950102",
    ),
    ("ProfileInfoListResponse", ("profileInfoListError", 1), "BF2D03 810101"),
    (
        "EnableProfileRequest",
        {"profileIdentifier": ("iccid", ICCID), "refreshFlag": False},
        "BF3111 A00C 5A0A98001032547698103214 810100",
    ),
    ("EnableProfileResponse", {"enableResult": 0}, "BF3103 800100"),
    (
        "DisableProfileRequest",
        {"profileIdentifier": ("isdpAid", AID), "refreshFlag": True},
        "BF3217 A012 4F10A0000005591010FFFFFFFF8900001000 8101FF",
    ),
    ("DeleteProfileRequest", ("iccid", ICCID), "BF330C 5A0A98001032547698103214"),
    ("EuiccMemoryResetRequest", {"resetOptions": bits([0])}, "BF3404 82020780"),
    ("EuiccMemoryResetRequest", {"resetOptions": bits([0, 1, 2])}, "BF3404 820205E0"),
    (
        "SetNicknameRequest",
        {"iccid": ICCID, "profileNickname": "n"},
        "BF290F 5A0A98001032547698103214 90016E",
    ),
    ("SetDefaultDpAddressRequest", {"defaultDpAddress": "dp.x"}, "BF3F06 8004 64702E78"),
    (
        "EuiccConfiguredAddressesResponse",
        {"defaultDpAddress": "dp.x", "rootDsAddress": "ds.y"},
        "BF3C0C 8004 64702E78 8104 64732E79",
    ),
    (
        "ListNotificationResponse",
        (
            "notificationMetadataList",
            [
                {
                    "seqNumber": 1,
                    "profileManagementOperation": bits([0]),
                    "notificationAddress": "a.b",
                }
            ],
        ),
        "BF2811 A00F BF2F0C 800101 81020780 0C03612E62",
    ),
    (
        "RetrieveNotificationsListRequest",
        {"searchCriteria": ("seqNumber", 3)},
        "BF2B05 A003 800103",
    ),
    ("RetrieveNotificationsListRequest", {}, "BF2B00"),
    ("NotificationSentRequest", {"seqNumber": 3}, "BF3003 800103"),
    ("NotificationSentResponse", {"deleteNotificationStatus": 0}, "BF3003 800100"),
    ("CancelSessionRequest", {"transactionId": T, "reason": 1}, "BF410D 8008" + T.hex() + "810101"),
    ("CancelSessionResponse", ("cancelSessionResponseError", 5), "BF4103 810105"),
    (
        "PrepareDownloadResponse",
        ("downloadResponseError", {"transactionId": T, "downloadErrorCode": 2}),
        "BF210F A10D 8008" + T.hex() + "020102",
    ),
    (
        "AuthenticateServerResponse",
        ("authenticateResponseError", {"transactionId": T, "authenticateErrorCode": 6}),
        "BF380F A10D 8008" + T.hex() + "020106",
    ),
    (
        "GetRatResponse",
        {
            "rat": [
                {
                    "pprIds": bits([1]),
                    "allowedOperators": [{"mccMnc": h("00F110")}],
                    "pprFlags": bits([]),
                }
            ]
        },
        "BF4314 A012 3010 80020640 A107 3005 800300F110 820100",
    ),
    (
        "ProfileInstallationResultData",
        {
            "transactionId": T,
            "notificationMetadata": {
                "seqNumber": 1,
                "profileManagementOperation": bits([0]),
                "notificationAddress": "dp.x",
                "iccid": ICCID,
            },
            "smdpOid": "2.999.10",
            "finalResult": ("successResult", {"aid": AID, "simaResponse": CERTIFICATE_OK_SIMA}),
        },
        "BF274C 8008" + T.hex() + "BF2F19 800101 81020780 0C04 64702E78 5A0A98001032547698103214"
        " 0603 88370A A21F A01D 4F10 A0000005591010FFFFFFFF8900001000 0409 3007A00530038001 00",
    ),
    ("ErrorResult", {"bppCommandId": 1, "errorReason": 8}, "3006 800101 810108"),
    (
        "ServerSigned1",
        {
            "transactionId": T,
            "euiccChallenge": C16,
            "serverAddress": "dp.x",
            "serverChallenge": C16[::-1],
        },
        "3034 8008" + T.hex() + "8110" + C16.hex() + "8304 64702E78 8410" + C16[::-1].hex(),
    ),
    (
        "SmdpSigned2",
        {"transactionId": T, "ccRequiredFlag": False},
        "300D 8008" + T.hex() + "010100",
    ),
    (
        "EuiccCancelSessionSigned",
        {"transactionId": T, "smdpOid": "2.999.10", "reason": 0},
        "3012 8008" + T.hex() + "8103 88370A 820100",
    ),
    (
        "ReplaceSessionKeysRequest",
        {
            "initialMacChainingValue": C16,
            "ppkEnc": C16[1:] + b"\x01",
            "ppkCmac": C16[2:] + b"\x02\x02",
        },
        "BF2636 8010"
        + C16.hex()
        + "8110"
        + (C16[1:] + b"\x01").hex()
        + "8210"
        + (C16[2:] + b"\x02\x02").hex(),
    ),
    ("ConfigureISDPRequest", {}, "BF2400"),
    (
        "CtxParams1",
        (
            "ctxParamsForCommonAuthentication",
            {"matchingId": "AC1", "deviceInfo": {"tac": h("35290611"), "deviceCapabilities": {}}},
        ),
        "A00F 8003 414331 A108 800435290611 A100",
    ),
    ("NotificationEvent", bits([0]), "03020780"),
    ("NotificationEvent", bits([1]), "03020640"),
    ("NotificationEvent", bits([2]), "03020520"),
    ("NotificationEvent", bits([3]), "03020410"),
]

EPR_UNSIGNED_E = ("euiccPackageErrorUnsigned", {"eimId": "e"})

SGP32_EXAMPLES: list[tuple[str, Any, str]] = [
    ("GetCertsRequest", {}, "BF5600"),
    ("GetEimConfigurationDataRequest", {}, "BF5500"),
    ("AddInitialEimResponse", ("addInitialEimOk", [("associationToken", 1)]), "BF5705 A003 840101"),
    ("AddInitialEimResponse", ("addInitialEimOk", [("addOk", None)]), "BF5704 A002 0500"),
    ("ProfileRollbackRequest", {"refreshFlag": False}, "BF5803 800100"),
    ("ImmediateEnableRequest", {"refreshFlag": False}, "BF5A03 800100"),
    (
        "ConfigureImmediateProfileEnablingRequest",
        {"immediateEnableFlag": None, "defaultSmdpAddress": "dp.x"},
        "BF5908 8000 8204 64702E78",
    ),
    (
        "SGP32-RetrieveNotificationsListRequest",
        {"searchCriteria": ("euiccPackageResults", None)},
        "BF2B04 A002 8200",
    ),
    (
        "SGP32-RetrieveNotificationsListResponse",
        ("euiccPackageResultList", [EPR_UNSIGNED_E]),
        "BF2B0A A208 BF5105 A203 800165",
    ),
    ("SGP32-EuiccMemoryResetRequest", {"resetOptions": bits([5])}, "BF6404 82020204"),
    ("ExecuteFallbackMechanismRequest", {"refreshFlag": False}, "BF5D03 800100"),
    ("GetConnectivityParametersRequest", {}, "BF5F00"),
    (
        "IpaEuiccDataResponse",
        ("ipaEuiccDataResponseError", {"ipaEuiccDataErrorCode": 1}),
        "BF5205 A103 020101",
    ),
    (
        "ProvideEimPackageResultResponse",
        ("eimAcknowledgements", [1, 2]),
        "BF5009 BF5306 800101 800102",
    ),
    ("ProvideEimPackageResultResponse", ("emptyResponse", {}), "BF5002 3000"),
    # Single tags where a tagged CHOICE is referenced with a tag (the asn1tools patches).
    (
        "EsipaMessageFromEimToIpa",
        ("getEimPackageResponse", ("eimPackageError", 1)),
        "BF4F03 020101",
    ),
    (
        "EsipaMessageFromEimToIpa",
        ("provideEimPackageResultResponse", ("eimAcknowledgements", [1, 2])),
        "BF5009 BF5306 800101 800102",
    ),
    (
        "CancelSessionRequestEsipa",
        {"transactionId": h("0102"), "cancelSessionResponse": ("cancelSessionResponseError", 5)},
        "BF4109 8002 0102 A103 810105",
    ),
    (
        "EsipaMessageFromIpaToEim",
        (
            "provideEimPackageResult",
            {
                "eimPackageResult": (
                    "euiccPackageResult",
                    ("euiccPackageErrorUnsigned", {"eimId": "eim1"}),
                )
            },
        ),
        "BF500B BF5108 A206 8004 65696D31",
    ),
    (
        "ProfileRollbackResponse",
        {"cmdResult": 0, "eUICCPackageResult": EPR_UNSIGNED_E},
        "BF580B 020100 BF5105 A203 800165",
    ),
    ("EuiccPackageResult", EPR_UNSIGNED_E, "BF5105 A203 800165"),
]


@pytest.mark.parametrize(("type_name", "value", "encoded"), SGP22_EXAMPLES + SGP32_EXAMPLES)
def test_example_encodings_are_pinned(type_name: str, value: Any, encoded: str) -> None:
    der = h(encoded)
    assert schema.encode(type_name, value) == der
    assert schema.decode(type_name, der) == value
    assert schema.encode(type_name, schema.decode(type_name, der)) == der


def test_store_metadata_request_default_profile_class() -> None:
    der = h("BF2521 5A0A98001032547698103214 9102 5350 9201 50 B60C 300A 80020470 8104 64702E78")
    value = {
        "iccid": ICCID,
        "serviceProviderName": "SP",
        "profileName": "P",
        "notificationConfigurationInfo": [
            {"profileManagementOperation": bits([1, 2, 3]), "notificationAddress": "dp.x"}
        ],
    }
    assert schema.encode("StoreMetadataRequest", value) == der
    # DEFAULT operational: absent on the wire, a number (not the name) once decoded, and
    # left out again when encoded explicitly.
    assert schema.decode("StoreMetadataRequest", der) == {**value, "profileClass": 2}
    assert schema.encode("StoreMetadataRequest", {**value, "profileClass": 2}) == der
    test_profile = schema.encode("StoreMetadataRequest", {**value, "profileClass": 0})
    assert h("950100") in test_profile


def test_oid_with_second_arc_above_39_decodes_correctly() -> None:
    der = h("3012 8008" + T.hex() + "8103 88370A 820100")
    assert schema.decode("EuiccCancelSessionSigned", der)["smdpOid"] == "2.999.10"
    [pir_hex] = [e for t, _, e in SGP22_EXAMPLES if t == "ProfileInstallationResultData"]
    pir = schema.decode("ProfileInstallationResultData", h(pir_hex))
    assert pir["smdpOid"] == "2.999.10"
    for oid in ("0.9.2342", "1.2.840.10045.3.1.7", "2.39.1", "2.40.1", "2.23.146.1.2.0"):
        encoded = schema.encode("DpProprietaryData", {"dpOid": oid})
        assert schema.decode("DpProprietaryData", encoded) == {"dpOid": oid}


# --- real-world vectors (encodings seen from real cards and servers) ---------------------


def test_real_euicc_info1_round_trips() -> None:
    der = h(
        "BF20 35 82 03 020300 A9 16 04 14 81370F5125D0B1D408D4C3B232E6D25E795BEBFB"
        " AA 16 04 14 81370F5125D0B1D408D4C3B232E6D25E795BEBFB"
    )
    value = schema.decode("EUICCInfo1", der)
    ski = h("81370F5125D0B1D408D4C3B232E6D25E795BEBFB")
    assert value == {
        "svn": h("020300"),
        "euiccCiPKIdListForVerification": [ski],
        "euiccCiPKIdListForSigning": [ski],
    }
    assert schema.encode("EUICCInfo1", value) == der


def test_sample_eim_configuration_round_trips() -> None:
    der = (DATA / "sample_eim_cfg.ber").read_bytes()
    value = schema.decode("AddInitialEimRequest", der)
    [entry] = value["eimConfigurationDataList"]
    assert entry["eimId"] == "eIM"
    assert entry["eimFqdn"] == "127.0.0.1:8000"
    assert (entry["counterValue"], entry["associationToken"]) == (1, -1)
    kind, spki = entry["eimPublicKeyData"]
    assert kind == "eimPublicKey"
    assert spki["algorithm"]["algorithm"] == "1.2.840.10045.2.1"
    assert schema.encode("AddInitialEimRequest", value) == der


# --- tags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "tag"),
    [
        ("GetEuiccDataRequest", "BF3E"),
        ("DeleteProfileRequest", "BF33"),  # tagged CHOICE: the tag is the CHOICE's own
        ("EuiccPackageResult", "BF51"),
        ("SGP32-EuiccMemoryResetRequest", "BF64"),
        ("ProfileInfo", "E3"),
        ("NotificationMetadata", "BF2F"),
        ("EimConfigurationData", "30"),
    ],
)
def test_tag_of(type_name: str, tag: str) -> None:
    assert schema.tag_of(type_name) == h(tag)


def test_tag_of_untagged_choice_is_an_error() -> None:
    with pytest.raises(Asn1Error):
        schema.tag_of("EsipaMessageFromEimToIpa")


# --- BIT STRING helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("positions", "content"),
    [
        ([0], "0780"),  # install
        ([1], "0640"),  # enable
        ([2], "0520"),  # disable
        ([3], "0410"),  # delete
        ([0, 1, 2], "05E0"),  # memory reset, what some open-source LPAs send
        ([5], "0204"),
        ([7], "0001"),
        ([8], "070080"),
        ([], "00"),
    ],
)
def test_bits_are_minimal(positions: list[int], content: str) -> None:
    value = bits(positions)
    assert schema.encode("NotificationEvent", value) == b"\x03" + bytes([len(h(content))]) + h(
        content
    )
    assert bit_positions(value) == frozenset(positions)


@given(st.sets(st.integers(0, 40), max_size=8))
def test_bits_round_trip_through_der(positions: set[int]) -> None:
    value = bits(positions)
    decoded = schema.decode("NotificationEvent", schema.encode("NotificationEvent", value))
    assert decoded == value
    assert bit_positions(decoded) == positions


def test_bits_rejects_negative_positions() -> None:
    with pytest.raises(ValueError):
        bits([-1])


# --- errors ----------------------------------------------------------------------------


def test_trailing_bytes_are_rejected_unless_allowed() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        schema.decode("GetEuiccChallengeRequest", h("BF2E00 00"))
    assert schema.decode("GetEuiccChallengeRequest", h("BF2E00 9000"), allow_trailing=True) == {}


@pytest.mark.parametrize(
    ("type_name", "data"),
    [
        ("GetEuiccDataRequest", ""),
        ("GetEuiccDataRequest", "BF3E"),
        ("GetEuiccDataRequest", "BF3E03 5C01"),  # truncated
        ("GetEuiccDataRequest", "BF2E00"),  # wrong tag
        ("EnableProfileRequest", "BF3103 810100"),  # mandatory field missing
        ("EUICCInfo1", "BF200C 8203020300 A903 050100 AA00"),  # bad SEQUENCE OF element
        ("EUICCInfo1", "BF200C 8203020300 A903 0402AA AA00"),  # element overruns its list
    ],
)
def test_bad_input_raises_decode_error(type_name: str, data: str) -> None:
    with pytest.raises(DecodeError) as info:
        schema.decode(type_name, h(data))
    assert isinstance(info.value, Asn1Error) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("GetEuiccDataRequest", {}),  # missing field
        ("EnableProfileResponse", {"enableResult": "ok"}),  # name instead of number
        ("DeleteProfileRequest", ("nickname", b"")),  # no such alternative
        ("SetNicknameRequest", {"iccid": "not bytes", "profileNickname": "n"}),
    ],
)
def test_bad_values_raise_encode_error(type_name: str, value: Any) -> None:
    with pytest.raises(EncodeError):
        schema.encode(type_name, value)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(["EUICCInfo1", "SGP32-ProfileInfoListResponse", "EuiccPackageRequest"]),
    st.data(),
)
def test_damaged_encodings_raise_only_decode_error(type_name: str, data: st.DataObject) -> None:
    good = bytearray(schema.encode(type_name, data.draw(strategy_for(type_name))))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(good)))
    try:
        schema.decode(type_name, bytes(good[:cut]))
    except DecodeError:
        pass


# --- disk cache ------------------------------------------------------------------------

_LOAD = (
    "from euicc_protocol import schema; "
    "assert schema.decode('GetEuiccDataRequest', bytes.fromhex('BF3E035C015A')) "
    "== {'tagList': b'Z'}; "
    "print(schema.cache_dir())"
)


def _run_loader(cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EUICC_SIM_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-c", _LOAD], env=env, capture_output=True, text=True, timeout=120
    )


def test_disk_cache_is_written_reused_and_rebuilt_when_corrupt(tmp_path: Path) -> None:
    first = _run_loader(tmp_path)
    assert first.returncode == 0, first.stderr
    [cache_file] = tmp_path.glob("schema-*.pickle")
    built = cache_file.stat().st_mtime_ns

    second = _run_loader(tmp_path)  # loads the pickle, does not rebuild it
    assert second.returncode == 0, second.stderr
    assert cache_file.stat().st_mtime_ns == built
    assert list(tmp_path.glob("schema-*.pickle")) == [cache_file]

    cache_file.write_bytes(b"this is not a pickle")
    third = _run_loader(tmp_path)
    assert third.returncode == 0, third.stderr
    assert "ignoring unreadable schema cache" in third.stderr
    with open(cache_file, "rb") as f:
        assert pickle.load(f).types["GetEuiccDataRequest"] is not None
