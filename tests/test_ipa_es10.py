"""ipa.es10 and ipa.types: exact request bytes (SGP.22 v2.5 §5.7), typed decoding, error codes."""

from __future__ import annotations

import glob
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import asn1tools
import pytest
from cardscript import ScriptedCard

import ipa.types as t
from euicc_protocol import schema
from ipa.channel import ChannelConfig
from ipa.errors import Es10Error, ResponseFormatError
from ipa.es10 import Es10Client, profile_info_tags
from ipa.transport import InProcessTransport

ICCID_EF = bytes.fromhex("98001032547698103214")
ICCID = "89000123456789012341"
AID = bytes.fromhex("A0000005591010FFFFFFFF8900001000")
T = bytes.fromhex("0102030405060708")
SIG = bytes(range(64))
DATA = Path(schema.__file__).with_name("data") / "sgp26"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def client_for(
    responses: Mapping[bytes, bytes] | Callable[[bytes], bytes], **card: Any
) -> tuple[Es10Client, ScriptedCard]:
    sc = ScriptedCard(responses=responses, **card)
    return Es10Client.open(InProcessTransport(sc), ChannelConfig(block_size=120)), sc


def one(response: bytes) -> tuple[Es10Client, ScriptedCard]:
    """A client whose card answers every request with ``response``."""
    return client_for(lambda _req: response)


# -- exact request encodings (SGP.22 v2.5 §5.7, DER per ITU-T X.690) ---------------------------

OK = {
    "BF31": h("BF3103800100"),
    "BF32": h("BF3203800100"),
    "BF33": h("BF3303800100"),
    "BF29": h("BF2903800100"),
    "BF3F": h("BF3F03800100"),
    "BF30": h("BF3003800100"),
    "BF34": h("BF3403800100"),
    "BF64": h("BF6403800100"),
}


def ok_card(request: bytes) -> bytes:
    return OK[request[:2].hex().upper()]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda c: c.enable_profile(iccid=ICCID), "BF3111 A00C 5A0A98001032547698103214 810100"),
        (
            lambda c: c.disable_profile(isdp_aid=AID, refresh=True),
            "BF3217 A012 4F10A0000005591010FFFFFFFF8900001000 8101FF",
        ),
        (lambda c: c.delete_profile(iccid=ICCID), "BF330C 5A0A98001032547698103214"),
        (lambda c: c.delete_profile(iccid=ICCID_EF), "BF330C 5A0A98001032547698103214"),
        (lambda c: c.set_nickname(ICCID, "n"), "BF290F 5A0A98001032547698103214 90016E"),
        (lambda c: c.set_default_dp_address("dp.x"), "BF3F06 8004 64702E78"),
        (lambda c: c.remove_notification_from_list(3), "BF3003 800103"),
        (lambda c: c.euicc_memory_reset([0], sgp22=True), "BF3404 82020780"),
        (
            lambda c: c.euicc_memory_reset([0, 1, 2], sgp22=True),
            "BF3404 820205E0",
        ),
        (
            lambda c: c.euicc_memory_reset([t.ResetOption.RESET_EIM_CONFIG_DATA]),
            "BF6404 82020204",
        ),
    ],
)
def test_result_functions_send_the_reference_encoding(
    call: Callable[[Es10Client], object], expected: str
) -> None:
    c, card = client_for(ok_card)
    call(c)
    assert card.requests == [h(expected)]


def test_get_eid_request_and_response() -> None:
    c, card = one(h("BF3E12 5A10 89049032123451234512345678901235"))
    assert c.get_eid() == "89049032123451234512345678901235"
    assert card.requests == [h("BF3E035C015A")]
    # The STORE DATA APDU itself: channel 1, single block.
    assert card.by_ins(0xE2)[0].raw == h("81E2910006 BF3E035C015A")


def test_get_eid_refuses_a_non_minimal_length_as_not_der() -> None:
    c, _ = one(h("BF3E8112 5A10 89049032123451234512345678901235"))
    with pytest.raises(ResponseFormatError, match="length-form"):
        c.get_eid()


def test_get_profiles_info_by_iccid_with_multi_byte_tags() -> None:
    response = h("BF2D17 A015 E313 5A0A98001032547698103214 9F700101 950102")
    c, card = one(response)
    (info,) = c.get_profiles_info(iccid=ICCID, tags=[0x5A, 0x9F70])
    assert card.requests == [h("BF2D13 A00C 5A0A98001032547698103214 5C035A9F70")]
    assert info.iccid == ICCID and info.iccid_raw == ICCID_EF
    assert info.profile_state is t.ProfileState.ENABLED
    assert info.profile_class is t.ProfileClass.OPERATIONAL
    assert info.profile_nickname is None and info.fallback_attribute is False
    assert info.to_json() == {
        "iccid": ICCID,
        "profileState": "enabled",
        "profileClass": "operational",
    }


def test_tag_list_forms_are_equivalent() -> None:
    c, card = one(h("BF2D02 A000"))
    c.get_profiles_info(tags=[b"\x5a", b"\x9f\x70", 0x92])
    c.get_profiles_info(tags=["iccid", "profileState", "profileName"])
    c.get_profiles_info()
    assert card.requests == [h("BF2D06 5C045A9F7092")] * 2 + [h("BF2D00")]
    assert profile_info_tags()["fallbackAllowed"] == h("9F67")


def test_get_profiles_info_other_criteria() -> None:
    c, card = one(h("BF2D02 A000"))
    assert c.get_profiles_info(isdp_aid=AID) == []
    assert c.get_profiles_info(profile_class=t.ProfileClass.TEST) == []
    assert card.requests == [
        h("BF2D14 A012 4F10A0000005591010FFFFFFFF8900001000"),
        h("BF2D05 A003 950100"),
    ]


def test_retrieve_notifications_requests() -> None:
    c, card = one(h("BF2B02 A000"))
    assert c.retrieve_notifications_list(seq_number=3) == []
    assert c.retrieve_notifications_list() == []
    c.retrieve_notifications_list(event=t.NotificationEvent.NOTIFICATION_ENABLE)
    assert card.requests == [h("BF2B05 A003 800103"), h("BF2B00"), h("BF2B06 A004 81020640")]


def test_constant_requests() -> None:
    responses = {
        h("BF3C00"): h("BF3C0C 8004 64702E78 8104 64732E79"),
        h("BF2E00"): h("BF2E12 8010") + bytes(range(16)),
        h("BF4300"): h("BF4314 A012 3010 80020640 A107 3005 800300F110 820100"),
        h("BF2800"): h("BF2811 A00F BF2F0C 800101 81020780 0C03612E62"),
    }
    c, card = client_for(responses)
    assert c.get_euicc_configured_addresses() == t.EuiccConfiguredAddresses("dp.x", "ds.y")
    assert c.get_euicc_configured_addresses().to_json() == {
        "defaultDpAddress": "dp.x",
        "rootDsAddress": "ds.y",
    }
    assert c.get_euicc_challenge() == bytes(range(16))
    (rule,) = c.get_rat()
    assert rule.ppr_ids == ("ppr1",) and rule.ppr_flags == ()
    assert rule.allowed_operators == (t.OperatorId(h("00F110")),)
    assert rule.to_json() == {
        "pprIds": ["ppr1"],
        "allowedOperators": [{"mccMnc": "00F110"}],
        "pprFlags": [],
    }
    (meta,) = c.list_notification()
    assert meta == t.NotificationMetadata(1, (t.NotificationEvent.NOTIFICATION_INSTALL,), "a.b")
    assert meta.event is t.NotificationEvent.NOTIFICATION_INSTALL
    assert meta.to_json() == {
        "seqNumber": 1,
        "profileManagementOperation": ["notificationInstall"],
        "notificationAddress": "a.b",
    }
    assert card.requests == [h("BF3C00"), *responses]


def test_list_notification_filtered_by_events() -> None:
    c, card = one(h("BF2802 A000"))
    assert c.list_notification([t.NotificationEvent.NOTIFICATION_DELETE]) == []
    assert card.requests == [h("BF2804 81020410")]


# -- decoding richer responses ---------------------------------------------------------------


def test_profile_info_all_fields_and_json() -> None:
    value = {
        "iccid": ICCID_EF,
        "isdpAid": AID,
        "profileState": 0,
        "profileNickname": "home",
        "serviceProviderName": "SP",
        "profileName": "Test profile",
        "iconType": 1,
        "icon": b"\x89PNG",
        "profileClass": 0,
        "notificationConfigurationInfo": [
            {"profileManagementOperation": schema.bits([1, 2]), "notificationAddress": "n.x"}
        ],
        "profileOwner": {"mccMnc": h("00F110"), "gid1": h("01")},
        "dpProprietaryData": {"dpOid": "1.2.3"},
        "profilePolicyRules": schema.bits([1, 2]),
        "ecallIndication": True,
        "fallbackAttribute": True,
        "fallbackAllowed": False,
    }
    e3 = schema.encode("SGP32-ProfileInfo", value)
    response = schema.encode("SGP32-ProfileInfoListResponse", ("profileInfoListOk", [value]))
    c, _ = one(response)
    (info,) = c.get_profiles_info()
    assert info.isdp_aid == AID and info.profile_state is t.ProfileState.DISABLED
    assert info.icon_type is t.IconType.PNG and info.profile_class is t.ProfileClass.TEST
    assert info.notification_configuration_info == (
        t.NotificationConfigurationInformation(
            (t.NotificationEvent.NOTIFICATION_ENABLE, t.NotificationEvent.NOTIFICATION_DISABLE),
            "n.x",
        ),
    )
    assert info.profile_owner == t.OperatorId(h("00F110"), h("01"))
    assert info.dp_proprietary_data == t.DpProprietaryData("1.2.3")
    assert info.profile_policy_rules == ("ppr1", "ppr2")
    assert info.fallback_attribute is True and info.fallback_allowed is False
    assert info.to_json() == {
        "iccid": ICCID,
        "isdpAid": AID.hex().upper(),
        "profileState": "disabled",
        "profileNickname": "home",
        "serviceProviderName": "SP",
        "profileName": "Test profile",
        "iconType": "png",
        "icon": "89504E47",
        "profileClass": "test",
        "notificationConfigurationInfo": [
            {
                "profileManagementOperation": ["notificationEnable", "notificationDisable"],
                "notificationAddress": "n.x",
            }
        ],
        "profileOwner": {"mccMnc": "00F110", "gid1": "01"},
        "dpProprietaryData": {"dpOid": "1.2.3"},
        "profilePolicyRules": ["ppr1", "ppr2"],
        "ecallIndication": True,
        "fallbackAttribute": True,
        "fallbackAllowed": False,
    }
    assert e3 in response


def test_profile_info_is_memoised_per_exact_bytes() -> None:
    p1 = {"iccid": ICCID_EF, "profileState": 1, "profileNickname": "a"}
    p2 = {"iccid": ICCID_EF, "profileState": 0, "profileNickname": "a"}
    responses = [
        schema.encode("SGP32-ProfileInfoListResponse", ("profileInfoListOk", [p1, p2])),
        schema.encode("SGP32-ProfileInfoListResponse", ("profileInfoListOk", [p2, p1])),
    ]
    c, _ = client_for(lambda _req: responses.pop(0))
    a1, b1 = c.get_profiles_info()
    b2, a2 = c.get_profiles_info()
    assert a1 is a2 and b1 is b2 and a1 != b1


def test_unknown_enum_values_still_decode() -> None:
    e3 = h("E3079F700107950109")
    c, _ = one(h("BF2D0B A009") + e3)
    (info,) = c.get_profiles_info()
    assert info.profile_state == 7 and not info.profile_state.is_known  # type: ignore[union-attr]
    assert info.profile_state.asn1_name == "unknown(7)"  # type: ignore[union-attr]
    assert info.to_json() == {"profileState": 7, "profileClass": 9}


def test_odd_iccid_is_shown_not_rejected() -> None:
    assert t.iccid_digits(h("98001032547698103214")) == ICCID
    assert t.iccid_digits(h("9A001032547698103214")) == "A9000123456789012341"
    assert t.iccid_digits(h("989444999999990920F3")) == "8949449999999990023"


def euicc_info2_value() -> dict[str, Any]:
    return {
        "profileVersion": h("020300"),
        "svn": h("020205"),
        "euiccFirmwareVer": h("010203"),
        "extCardResource": h("810100820400010000"),
        "uiccCapability": schema.bits([1, 4, 8, 31]),
        "ts102241Version": h("090200"),
        "rspCapability": schema.bits([0, 3]),
        "euiccCiPKIdListForVerification": [bytes(20)],
        "euiccCiPKIdListForSigning": [bytes(range(20))],
        "euiccCategory": 2,
        "ppVersion": h("010000"),
        "sasAcreditationNumber": "SAS-1",
        "certificationDataObject": {"platformLabel": "pl", "discoveryBaseURL": "https://d"},
        "treProperties": schema.bits([1]),
        "ipaMode": 0,
        "iotSpecificInfo": {"iotVersion": [h("010200")], "fallbackSupported": None},
    }


def test_euicc_info2_sgp32_form() -> None:
    response = schema.encode("SGP32-EUICCInfo2", euicc_info2_value())
    c, card = one(response)
    info = c.get_euicc_info2()
    assert card.requests == [h("BF2200")]
    assert info.raw == response
    assert info.profile_version == "2.3.0" and info.svn == "2.2.5"
    assert info.uicc_capability == ("usimSupport", "akaMilenage", "usimTestAlgorithm", "iotminimal")
    assert info.rsp_capability == ("additionalProfile", "testProfileSupport")
    assert info.euicc_category is t.EuiccCategory.MEDIUM_EUICC
    assert info.tre_properties == ("isIntegrated",)
    assert info.ipa_mode is t.IpaMode.IPAD
    assert info.iot_specific_info == t.IotSpecificInfo(("1.2.0",), False, True)
    js = info.to_json()
    assert js["euiccCiPKIdListForSigning"] == [bytes(range(20)).hex().upper()]
    assert js["certificationDataObject"] == {"platformLabel": "pl", "discoveryBaseURL": "https://d"}
    assert js["iotSpecificInfo"] == {"iotVersion": ["1.2.0"], "fallbackSupported": None}
    assert js["ipaMode"] == "ipad" and "raw" not in js and "globalplatformVersion" not in js


def test_euicc_info2_of_an_sgp22_card() -> None:
    value = euicc_info2_value()
    del value["ipaMode"], value["iotSpecificInfo"]
    c, _ = one(schema.encode("EUICCInfo2", value))
    info = c.get_euicc_info2()
    assert info.ipa_mode is None and info.iot_specific_info is None


def test_euicc_info1() -> None:
    value = {
        "svn": h("020205"),
        "euiccCiPKIdListForVerification": [bytes(20), bytes(range(20))],
        "euiccCiPKIdListForSigning": [bytes(20)],
    }
    response = schema.encode("EUICCInfo1", value)
    c, card = one(response)
    info = c.get_euicc_info1()
    assert card.requests == [h("BF2000")]
    assert info == t.EuiccInfo1("2.2.5", (bytes(20), bytes(range(20))), (bytes(20),), response)
    assert info.to_json()["euiccCiPKIdListForVerification"][0] == "00" * 20


def certs() -> tuple[bytes, bytes]:
    eum = (DATA / "EUM" / "CERT_EUM_ECDSA_NIST.der").read_bytes()
    euicc = (DATA / "eUICC" / "CERT_EUICC_ECDSA_NIST.der").read_bytes()
    return eum, euicc


def tlv(tag: bytes, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        length = bytes((n,))
    elif n < 0x100:
        length = b"\x81" + bytes((n,))
    else:
        length = b"\x82" + n.to_bytes(2, "big")
    return tag + length + value


def test_get_certs_restores_the_outer_sequence_tag() -> None:
    eum, euicc = certs()
    response = tlv(h("BF56"), tlv(h("A0"), b"\xa5" + eum[1:] + b"\xa6" + euicc[1:]))
    schema.decode("GetCertsResponse", response)  # the hand-built answer is valid
    c, card = one(response)
    got = c.get_certs()
    assert got == t.EuiccCertificates(eum, euicc)
    c.get_certs(ci_pkid=bytes(20))
    assert card.requests == [h("BF5600"), h("BF5616 8014") + bytes(20)]


def test_get_certs_error() -> None:
    c, _ = one(h("BF5603 810101"))
    with pytest.raises(Es10Error) as info:
        c.get_certs()
    assert (info.value.code, info.value.name) == (1, "invalidCiPKId")
    assert info.value.result is t.GetCertsError.INVALID_CI_PK_ID


def pir() -> bytes:
    data = h(
        "BF274C 8008 0102030405060708"
        " BF2F19 800105 81020780 0C0464702E78 5A0A98001032547698103214"
        " 060388370A"
        " A21F A01D 4F10A0000005591010FFFFFFFF8900001000 0409 3007A00530038001 00"
    )
    return tlv(h("BF37"), data + h("5F3740") + SIG)


def other_signed(seq: int) -> bytes:
    eum, euicc = certs()
    meta = schema.encode(
        "NotificationMetadata",
        {
            "seqNumber": seq,
            "profileManagementOperation": schema.bits([1]),
            "notificationAddress": "dp.x",
            "iccid": ICCID_EF,
        },
    )
    return tlv(h("30"), meta + h("5F3740") + SIG + euicc + eum)


def test_retrieve_notifications_keeps_exact_bytes() -> None:
    compact = schema.encode(
        "SGP32-PendingNotification",
        (
            "compactProfileInstallationResult",
            {
                "compactProfileInstallationResultData": {
                    "transactionId": T,
                    "seqNumber": 9,
                    "compactFinalResult": ("compactSuccessResult", {"compactAid": h("1000")}),
                },
                "euiccSignPIR": SIG,
            },
        ),
    )
    items = [pir(), other_signed(6), compact]
    response = tlv(h("BF2B"), tlv(h("A0"), b"".join(items)))
    schema.decode("SGP32-RetrieveNotificationsListResponse", response)
    c, _ = one(response)
    got = c.retrieve_notifications_list()
    assert [n.raw for n in got] == items
    assert [n.kind for n in got] == [
        "profileInstallationResult",
        "otherSignedNotification",
        "compactProfileInstallationResult",
    ]
    assert [n.seq_number for n in got] == [5, 6, 9]
    assert got[0].notification_metadata is not None
    assert got[0].notification_metadata.iccid == ICCID
    assert got[1].notification_metadata is not None
    assert got[1].notification_metadata.event is t.NotificationEvent.NOTIFICATION_ENABLE
    assert got[2].notification_metadata is None
    assert got[2].to_json() == {
        "compactProfileInstallationResult": {"seqNumber": 9},
        "raw": compact.hex().upper(),
    }


def test_retrieve_euicc_package_results() -> None:
    c, card = one(h("BF2B0A A208 BF5105 A203 800165"))
    assert c.retrieve_euicc_package_results() == [h("BF5105 A203 800165")]
    assert card.requests == [h("BF2B04 A002 8200")]


def test_iot_memory_reset_results() -> None:
    c, _ = one(h("BF6409 800100 810100 820100"))
    result = c.euicc_memory_reset([5, 6])
    assert result == t.MemoryResetResult(
        t.ResetResult.OK, t.ResetEimResult.OK, t.ResetImmediateEnableConfigResult.OK
    )
    assert result.to_json() == {
        "resetResult": "ok",
        "resetEimResult": "ok",
        "resetImmediateEnableConfigResult": "ok",
    }


def test_iot_memory_reset_sub_result_error_carries_the_full_result() -> None:
    c, _ = one(h("BF6406 800100 810102"))
    with pytest.raises(Es10Error) as info:
        c.euicc_memory_reset([t.ResetOption.DELETE_OPERATIONAL_PROFILES, 5])
    err = info.value
    assert (err.field, err.code, err.name) == ("resetEimResult", 2, "eimResetNotSupported")
    assert err.response.reset_result is t.ResetResult.OK


# -- error result codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "response", "function", "code", "name", "result"),
    [
        (
            lambda c: c.enable_profile(iccid=ICCID),
            "BF3103800101",
            "ES10c.EnableProfile",
            1,
            "iccidOrAidNotFound",
            t.EnableResult.ICCID_OR_AID_NOT_FOUND,
        ),
        (
            lambda c: c.enable_profile(isdp_aid=AID),
            "BF3103800102",
            "ES10c.EnableProfile",
            2,
            "profileNotInDisabledState",
            t.EnableResult.PROFILE_NOT_IN_DISABLED_STATE,
        ),
        (
            lambda c: c.disable_profile(iccid=ICCID),
            "BF3203800103",
            "ES10c.DisableProfile",
            3,
            "disallowedByPolicy",
            t.DisableResult.DISALLOWED_BY_POLICY,
        ),
        (
            lambda c: c.delete_profile(iccid=ICCID),
            "BF33038001 7F",
            "ES10c.DeleteProfile",
            127,
            "undefinedError",
            t.DeleteResult.UNDEFINED_ERROR,
        ),
        (
            lambda c: c.set_nickname(ICCID, "x"),
            "BF2903800101",
            "ES10c.SetNickname",
            1,
            "iccidNotFound",
            t.SetNicknameResult.ICCID_NOT_FOUND,
        ),
        (
            lambda c: c.set_default_dp_address(""),
            "BF3F0380017F",
            "ES10a.SetDefaultDpAddress",
            127,
            "undefinedError",
            t.SetDefaultDpAddressResult.UNDEFINED_ERROR,
        ),
        (
            lambda c: c.remove_notification_from_list(3),
            "BF3003800101",
            "ES10b.RemoveNotificationFromList",
            1,
            "nothingToDelete",
            t.DeleteNotificationStatus.NOTHING_TO_DELETE,
        ),
        (
            lambda c: c.get_profiles_info(),
            "BF2D03810101",
            "ES10c.GetProfilesInfo",
            1,
            "incorrectInputValues",
            t.ProfileInfoListError.INCORRECT_INPUT_VALUES,
        ),
        (
            lambda c: c.get_profiles_info(),
            "BF2D0381010B",
            "ES10c.GetProfilesInfo",
            11,
            "profileChangeOngoing",
            t.ProfileInfoListError.PROFILE_CHANGE_ONGOING,
        ),
        (
            lambda c: c.list_notification(),
            "BF280381017F",
            "ES10b.ListNotification",
            127,
            "undefinedError",
            t.ListNotificationsResultError.UNDEFINED_ERROR,
        ),
        (
            lambda c: c.retrieve_notifications_list(),
            "BF2B0381017F",
            "ES10b.RetrieveNotificationsList",
            127,
            "undefinedError",
            t.NotificationsListResultError.UNDEFINED_ERROR,
        ),
        (
            lambda c: c.euicc_memory_reset([0], sgp22=True),
            "BF3403800101",
            "ES10c.eUICCMemoryReset",
            1,
            "nothingToDelete",
            t.ResetResult.NOTHING_TO_DELETE,
        ),
        (
            lambda c: c.euicc_memory_reset([0]),
            "BF6403800168",
            "ES10b.eUICCMemoryReset",
            104,
            "ecallActive",
            t.ResetResult.ECALL_ACTIVE,
        ),
        (
            lambda c: c.enable_profile(iccid=ICCID),
            "BF3103800163",
            "ES10c.EnableProfile",
            99,
            "unknown(99)",
            99,
        ),
    ],
)
def test_error_codes_raise_es10_error(
    call: Callable[[Es10Client], object],
    response: str,
    function: str,
    code: int,
    name: str,
    result: int,
) -> None:
    c, _ = one(h(response))
    with pytest.raises(Es10Error) as info:
        call(c)
    err = info.value
    assert (err.function, err.code, err.name) == (function, code, name)
    assert err.result == result
    assert name in str(err) and function in str(err)


@pytest.mark.parametrize(
    "response",
    ["", "BF3E00", "BF2D03A00100", "BF2D04A005E300", "BF2D02A1", "BF2D05A0024F00", "9000"],
)
def test_malformed_responses_raise_response_format_error(response: str) -> None:
    c, _ = one(h(response))
    with pytest.raises(ResponseFormatError):
        if response.startswith("BF3E") or response in ("", "9000"):
            c.get_eid()
        else:
            c.get_profiles_info()


# -- argument validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.enable_profile(), "exactly one"),
        (lambda c: c.enable_profile(iccid=ICCID, isdp_aid=AID), "exactly one"),
        (lambda c: c.delete_profile(iccid="89x"), "digits"),
        (lambda c: c.delete_profile(iccid="1" * 21), "digits"),
        (lambda c: c.delete_profile(iccid=b"\x01\x02"), "10-byte"),
        (lambda c: c.disable_profile(isdp_aid=b""), "1..16"),
        (lambda c: c.set_nickname(ICCID, "é" * 65), "65 characters"),
        (lambda c: c.get_profiles_info(iccid=ICCID, profile_class=2), "at most one"),
        (lambda c: c.get_profiles_info(tags=["nope"]), "no component"),
        (lambda c: c.get_profiles_info(tags=[b"\x9f"]), "not a BER tag"),
        (lambda c: c.get_profiles_info(tags=[0x9F80]), "not a BER tag"),
        (lambda c: c.retrieve_notifications_list(seq_number=1, event=0), "at most one"),  # type: ignore[arg-type]
        (lambda c: c.remove_notification_from_list(-1), "non-negative"),
        (lambda c: c.euicc_memory_reset([]), "at least one"),
        (lambda c: c.euicc_memory_reset([9]), "unknown"),
        (lambda c: c.euicc_memory_reset([5], sgp22=True), "resetEimConfigData"),
        (lambda c: c.transmit_es10("Nonsense", {}), "not an ES10 request"),
    ],
)
def test_bad_arguments_fail_before_any_apdu(
    call: Callable[[Es10Client], object], message: str
) -> None:
    c, card = one(b"")
    sent = len(card.apdus)
    with pytest.raises(ValueError, match=message):
        call(c)
    assert len(card.apdus) == sent


def test_nickname_limit_counts_characters_not_bytes() -> None:
    c, card = client_for(ok_card)
    c.set_nickname(ICCID, "é" * 64)  # 128 UTF-8 bytes, 64 characters
    assert len(card.requests[0]) == 3 + 1 + 12 + 3 + 128  # lengths of 128+ take two bytes
    with pytest.raises(ValueError, match="65 characters"):
        c.set_nickname(ICCID, "é" * 65)


# -- escape hatch and raw exchange ---------------------------------------------------------------


def test_transmit_es10_uses_the_catalogue_response_type() -> None:
    c, card = one(h("BF5A03800101"))
    assert c.transmit_es10("ImmediateEnableRequest", {"refreshFlag": False}) == {
        "immediateEnableResult": 1
    }
    assert card.requests == [h("BF5A03800100")]
    c2, _ = one(h("BF5F03 810101"))
    assert c2.transmit_es10("GetConnectivityParametersRequest", {}) == (
        "connectivityParametersError",
        1,
    )


def test_raw_exchange_and_empty_response() -> None:
    c, _ = one(b"")
    assert c.exchange(h("A00300")) == b""
    assert c.transmit_es10("GetRatRequest", {}) is None


def test_client_context_manager_closes_channel() -> None:
    sc = ScriptedCard(responses={h("BF3E035C015A"): h("BF3E125A10") + bytes(16)})
    with Es10Client.open(InProcessTransport(sc)) as c:
        assert c.get_eid() == "0" * 32
    assert sc.apdus[-1] == h("00708001") and not c.channel.is_open


# -- the facts typed into ipa.types match the schema -------------------------------------------


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    modules = asn1tools.parse_files(sorted(glob.glob(str(Path(schema.ASN1_DIR) / "*.asn"))))
    return {name: d for m in modules.values() for name, d in m["types"].items()}


def member(parsed: dict[str, Any], type_name: str, name: str | None = None) -> dict[str, Any]:
    d = parsed[type_name]
    if name is None:
        return d
    return next(m for m in d["members"] if m and m["name"] == name)


ENUMS = [
    (t.ProfileState, "ProfileState", None),
    (t.ProfileClass, "ProfileClass", None),
    (t.IconType, "IconType", None),
    (t.IpaMode, "IpaMode", None),
    (t.EuiccCategory, "SGP32-EUICCInfo2", "euiccCategory"),
    (t.EnableResult, "EnableProfileResponse", "enableResult"),
    (t.DisableResult, "DisableProfileResponse", "disableResult"),
    (t.DeleteResult, "DeleteProfileResponse", "deleteResult"),
    (t.SetNicknameResult, "SetNicknameResponse", "setNicknameResult"),
    (t.SetDefaultDpAddressResult, "SetDefaultDpAddressResponse", "setDefaultDpAddressResult"),
    (t.DeleteNotificationStatus, "NotificationSentResponse", "deleteNotificationStatus"),
    (t.ProfileInfoListError, "SGP32-ProfileInfoListError", None),
    (t.ListNotificationsResultError, "ListNotificationResponse", "listNotificationsResultError"),
    (
        t.NotificationsListResultError,
        "SGP32-RetrieveNotificationsListResponse",
        "notificationsListResultError",
    ),
    (t.GetCertsError, "GetCertsResponse", "getCertsError"),
    (t.ResetResult, "SGP32-EuiccMemoryResetResponse", "resetResult"),
    (t.ResetEimResult, "SGP32-EuiccMemoryResetResponse", "resetEimResult"),
    (
        t.ResetImmediateEnableConfigResult,
        "SGP32-EuiccMemoryResetResponse",
        "resetImmediateEnableConfigResult",
    ),
]


@pytest.mark.parametrize(("enum", "type_name", "field"), ENUMS)
def test_enum_names_are_the_schema_named_numbers(
    parsed: dict[str, Any], enum: type[t.Asn1Enum], type_name: str, field: str | None
) -> None:
    numbers = member(parsed, type_name, field)["named-numbers"]
    assert {m.asn1_name: int(m) for m in enum} == numbers
    for m in enum:  # UPPER_SNAKE of the ASN.1 name
        assert m.name.replace("_", "").lower() == m.asn1_name.lower()


def test_sgp22_result_codes_are_a_subset(parsed: dict[str, Any]) -> None:
    sgp22_reset = member(parsed, "EuiccMemoryResetResponse", "resetResult")["named-numbers"]
    assert sgp22_reset.items() <= {m.asn1_name: int(m) for m in t.ResetResult}.items()
    sgp22_list = parsed["ProfileInfoListError"]["named-numbers"]
    assert sgp22_list.items() <= {m.asn1_name: int(m) for m in t.ProfileInfoListError}.items()


BITS = [
    ([m.asn1_name for m in t.NotificationEvent], "NotificationEvent", None),
    ([m.asn1_name for m in t.ResetOption], "SGP32-EuiccMemoryResetRequest", "resetOptions"),
    (list(t.PPR_IDS_BITS), "PprIds", None),
    (list(t.PPR_FLAGS_BITS), "ProfilePolicyAuthorisationRule", "pprFlags"),
    (list(t.RSP_CAPABILITY_BITS), "RspCapability", None),
    (list(t.UICC_CAPABILITY_BITS), "UICCCapability", None),
    (list(t.TRE_PROPERTIES_BITS), "SGP32-EUICCInfo2", "treProperties"),
]


@pytest.mark.parametrize(("names", "type_name", "field"), BITS)
def test_bit_names_are_the_schema_named_bits(
    parsed: dict[str, Any], names: list[str], type_name: str, field: str | None
) -> None:
    named = member(parsed, type_name, field)["named-bits"]
    assert [(n, str(i)) for i, n in enumerate(names)] == [(n, str(p)) for n, p in named]


JSON_TYPES = [
    (t.ProfileInfo, "SGP32-ProfileInfo"),
    (t.EuiccInfo1, "EUICCInfo1"),
    (t.EuiccInfo2, "SGP32-EUICCInfo2"),
    (t.NotificationMetadata, "NotificationMetadata"),
    (t.OperatorId, "OperatorId"),
    (t.NotificationConfigurationInformation, "NotificationConfigurationInformation"),
    (t.CertificationDataObject, "CertificationDataObject"),
    (t.EuiccConfiguredAddresses, "EuiccConfiguredAddressesResponse"),
    (t.ProfilePolicyAuthorisationRule, "ProfilePolicyAuthorisationRule"),
    (t.DpProprietaryData, "DpProprietaryData"),
    (t.MemoryResetResult, "SGP32-EuiccMemoryResetResponse"),
]


@pytest.mark.parametrize(("cls", "type_name"), JSON_TYPES)
def test_json_keys_are_the_asn1_component_names(
    parsed: dict[str, Any], cls: type[t.JsonMixin], type_name: str
) -> None:
    names = [m["name"] for m in parsed[type_name]["members"] if m]
    keys = [key for _, key in cls._JSON]
    assert keys == [n for n in names if n in keys]  # same spelling, schema order
    assert set(names) - set(keys) == set()


def test_json_keys_of_inline_types(parsed: dict[str, Any]) -> None:
    certs_members = parsed["GetCertsResponse"]["members"][0]["members"]
    assert [k for _, k in t.EuiccCertificates._JSON] == [m["name"] for m in certs_members]
    vendor = parsed["VendorSpecificExtension"]["element"]["members"]
    assert [k for _, k in t.VendorSpecificData._JSON] == [m["name"] for m in vendor]
    iot = [m["name"] for m in parsed["IoTSpecificInfo"]["members"]]
    full = t.IotSpecificInfo(("1.2.0",), True, True).to_json()
    assert list(full) == iot
