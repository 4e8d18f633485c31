"""SGP.32 v1.2 local IoT functions and profile rules (``euicc_sim/iot.py``): immediate enable,
rollback, fallback, emergency profile, connectivity parameters, IpaeActivation, and the
stored eUICC package results in RetrieveNotificationsList."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from test_euicc_package import (
    ICCID_A,
    ICCID_B,
    ICCID_C,
    TestEim,
    add_initial_eim,
    enabled,
    es10,
    new_card,
    results,
    send,
    verify_result,
)

from euicc_protocol import schema, tlv
from euicc_sim import profiles
from euicc_sim.card import Euicc
from euicc_sim.state import FallbackInfo, LastDownload, NotificationEvent

SMDP_OID = "2.999.10"
SMDP_ADDRESS = "testsmdpplus1.example.com"


@pytest.fixture
def card() -> Euicc:
    return new_card()


@pytest.fixture
def eim(card: Euicc) -> TestEim:
    e = TestEim()
    add_initial_eim(card, e)
    return e


def patch_state(card: Euicc, **changes: Any) -> None:
    """Put the card in a state no ES10 command of this module reaches by itself."""
    card.context.commit(replace(card.state, **changes))


def allow_fallback(card: Euicc, *iccids: bytes) -> None:
    """As if the profiles' metadata carried fallbackAllowed (9F67) TRUE."""
    profiles = tuple(
        replace(p, fallback_allowed=True) if p.iccid in iccids else p for p in card.state.profiles
    )
    patch_state(card, profiles=profiles)


def events(card: Euicc, first_seq: int = 1) -> list[tuple[NotificationEvent, bytes | None]]:
    return [(n.event, n.iccid) for n in card.state.notifications if n.seq_number >= first_seq]


def psmo(card: Euicc, eim: TestEim, *ops: tuple[str, Any]) -> list[tuple[str, Any]]:
    return results(card, send(card, eim.package(bytes.fromhex(card.eid), list(ops))), eim)


# --- ImmediateEnable ----------------------------------------------------------------------------


def immediate_enable(card: Euicc) -> int:
    answer = es10(card, "ImmediateEnableRequest", {"refreshFlag": False})
    return int(answer["immediateEnableResult"])


def configure(card: Euicc, **value: Any) -> int:
    answer = es10(card, "ConfigureImmediateProfileEnablingRequest", value)
    return int(answer["configImmediateEnableResult"])


def downloaded(card: Euicc, iccid: bytes = ICCID_B, **fields: Any) -> None:
    """What the download code records when LoadBoundProfilePackage installed ``iccid``."""
    info = {"iccid": iccid, "smdp_oid": SMDP_OID, "smdp_address": SMDP_ADDRESS, **fields}
    patch_state(card, last_download=LastDownload(**info))


def test_immediate_enable_enables_the_downloaded_profile_once(card: Euicc) -> None:
    assert configure(card, immediateEnableFlag=None, defaultSmdpOid=SMDP_OID) == 0
    downloaded(card)
    assert immediate_enable(card) == 0
    assert enabled(card) == ICCID_B
    assert events(card) == [
        (NotificationEvent.DISABLE, ICCID_A),
        (NotificationEvent.ENABLE, ICCID_B),
    ]
    assert card.state.last_download is None
    assert immediate_enable(card) == 4  # noSessionContext: consumed


def test_immediate_enable_without_configuration_is_not_available(card: Euicc) -> None:
    downloaded(card)
    assert immediate_enable(card) == 1
    assert configure(card, defaultSmdpOid=SMDP_OID) == 0  # configured, but the flag is absent
    assert immediate_enable(card) == 1
    assert enabled(card) == ICCID_A


def test_immediate_enable_without_a_download_is_no_session_context(card: Euicc) -> None:
    assert configure(card, immediateEnableFlag=None) == 0
    assert immediate_enable(card) == 4
    downloaded(card, iccid=bytes.fromhex("98001032547698103214"))  # the profile is gone
    assert immediate_enable(card) == 4


@pytest.mark.parametrize(
    ("config", "matches"),
    [
        ({}, True),
        ({"defaultSmdpOid": SMDP_OID}, True),
        ({"defaultSmdpOid": "2.999.11"}, False),
        ({"defaultSmdpAddress": "TestSMDPplus1.Example.COM"}, True),
        ({"defaultSmdpAddress": "other.example.com"}, False),
        ({"defaultSmdpOid": SMDP_OID, "defaultSmdpAddress": "other.example.com"}, False),
    ],
)
def test_immediate_enable_needs_a_download_from_the_configured_smdp(
    card: Euicc, config: dict[str, Any], matches: bool
) -> None:
    assert configure(card, immediateEnableFlag=None, **config) == 0
    downloaded(card)
    assert immediate_enable(card) == (0 if matches else 4)
    assert enabled(card) == (ICCID_B if matches else ICCID_A)


def switch_elsewhere(card: Euicc, iccid: bytes) -> None:
    """Enable ``iccid`` by means this module does not watch (as SGP.22 ES10c on a card that
    offers it would): straight through the profile rules."""
    t = profiles.enable(card.state, iccid=iccid, actor=profiles.Actor.EIM)
    assert t.ok
    card.context.commit(t.state)


def test_immediate_enable_refused_by_ppr1_is_undefined_error(card: Euicc) -> None:
    switch_elsewhere(card, ICCID_C)
    assert configure(card, immediateEnableFlag=None) == 0
    downloaded(card)
    assert immediate_enable(card) == 127
    assert enabled(card) == ICCID_C and card.state.last_download is not None


def test_configure_immediate_enabling_is_refused_once_an_eim_is_associated(
    card: Euicc, eim: TestEim
) -> None:
    assert configure(card, immediateEnableFlag=None) == 2  # associatedEimAlreadyExists
    assert card.state.immediate_enable is None
    assert psmo(card, eim, ("configureImmediateEnable", {"immediateEnableFlag": None})) == [
        ("configureImmediateEnableResult", 0)
    ]
    downloaded(card)
    assert immediate_enable(card) == 0


# --- ProfileRollback ----------------------------------------------------------------------------


def rollback(card: Euicc) -> tuple[int, bytes | None]:
    """(cmdResult, the new EuiccPackageResult TLV or None)."""
    answer = send(card, schema.encode("ProfileRollbackRequest", {"refreshFlag": True}))
    value = schema.decode("ProfileRollbackResponse", answer)
    if "eUICCPackageResult" not in value:
        return value["cmdResult"], None
    outer = tlv.read_tlv(answer)
    cmd = tlv.read_tlv(answer, outer.value_start)
    assert answer[outer.value_start : cmd.end] == b"\x02\x01\x00"
    return value["cmdResult"], answer[cmd.end :]


def test_rollback_without_a_rollback_enable_is_not_allowed(card: Euicc, eim: TestEim) -> None:
    assert rollback(card) == (1, None)
    psmo(card, eim, ("enable", {"iccid": ICCID_B}))  # no rollbackFlag
    assert rollback(card) == (1, None)
    assert enabled(card) == ICCID_B


def test_rollback_re_enables_the_previous_profile_with_a_new_signed_result(
    card: Euicc, eim: TestEim
) -> None:
    request = eim.package(
        bytes.fromhex(card.eid),
        [("enable", {"iccid": ICCID_B, "rollbackFlag": None}), ("getRAT", {})],
        transaction_id=b"\xab",
    )
    original = send(card, request)
    first = verify_result(card, original, eim.token)[1]
    assert (first["seqNumber"], enabled(card)) == (3, ICCID_B)
    code, replacement = rollback(card)
    assert code == 0 and replacement is not None
    kind, data = verify_result(card, replacement, eim.token)
    assert kind == "euiccPackageResultSigned"
    assert data == {
        "eimId": eim.eim_id,
        "counterValue": 1,
        "eimTransactionId": b"\xab",
        "seqNumber": 6,  # after disable B (4) and enable A (5)
        "euiccResult": [*first["euiccResult"], ("rollbackResult", 0)],
    }
    assert enabled(card) == ICCID_A
    assert events(card, 4) == [
        (NotificationEvent.DISABLE, ICCID_B),
        (NotificationEvent.ENABLE, ICCID_A),
    ]
    with_results = {"searchCriteria": ("euiccPackageResults", None)}
    assert es10(card, "SGP32-RetrieveNotificationsListRequest", with_results) == (
        "euiccPackageResultList",
        [schema.decode("EuiccPackageResult", replacement)],
    )
    assert rollback(card) == (1, None)  # once


def test_rollback_after_the_original_result_was_delivered(card: Euicc, eim: TestEim) -> None:
    psmo(card, eim, ("enable", {"iccid": ICCID_B, "rollbackFlag": None}))
    es10(card, "NotificationSentRequest", {"seqNumber": 3})
    code, replacement = rollback(card)
    assert code == 0
    assert [r.encoded for r in card.state.package_results] == [replacement]


def test_enable_with_rollback_flag_needs_an_enabled_profile(card: Euicc, eim: TestEim) -> None:
    psmo(card, eim, ("disable", {"iccid": ICCID_A}))
    assert psmo(card, eim, ("enable", {"iccid": ICCID_B, "rollbackFlag": None})) == [
        ("enableResult", 20)  # rollbackNotAvailable
    ]
    assert enabled(card) is None


def test_the_rollback_target_cannot_be_deleted_in_the_same_package(
    card: Euicc, eim: TestEim
) -> None:
    answer = psmo(
        card,
        eim,
        ("enable", {"iccid": ICCID_B, "rollbackFlag": None}),
        ("delete", {"iccid": ICCID_A}),
    )
    assert answer == [("enableResult", 0), ("deleteResult", 20)]
    assert card.state.profile_by_iccid(ICCID_A) is not None


def test_the_next_package_ends_the_rollback(card: Euicc, eim: TestEim) -> None:
    psmo(card, eim, ("enable", {"iccid": ICCID_B, "rollbackFlag": None}))
    psmo(card, eim, ("getRAT", {}))
    assert rollback(card) == (1, None)
    assert psmo(card, eim, ("delete", {"iccid": ICCID_A})) == [("deleteResult", 0)]


def test_a_later_enable_in_the_package_drops_the_rollback(card: Euicc, eim: TestEim) -> None:
    psmo(
        card,
        eim,
        ("enable", {"iccid": ICCID_B, "rollbackFlag": None}),
        ("enable", {"iccid": ICCID_A}),
    )
    assert rollback(card) == (1, None)


# --- fallback -----------------------------------------------------------------------------------


def execute_fallback(card: Euicc) -> int:
    answer = es10(card, "ExecuteFallbackMechanismRequest", {"refreshFlag": False})
    return int(answer["executeFallbackMechanismResult"])


def return_from_fallback(card: Euicc) -> int:
    answer = es10(card, "ReturnFromFallbackRequest", {"refreshFlag": False})
    return int(answer["returnFromFallbackResult"])


def fallback_profile(card: Euicc) -> list[bytes]:
    return [p.iccid for p in card.state.profiles if p.fallback_attribute]


def test_fallback_attribute_rules(card: Euicc, eim: TestEim) -> None:
    allow_fallback(card, ICCID_A, ICCID_B)
    assert psmo(
        card,
        eim,
        ("unsetFallbackAttribute", {}),  # noFallbackAttribute
        ("setFallbackAttribute", {"iccid": bytes.fromhex("98001032547698103214")}),  # not found
        ("setFallbackAttribute", {"iccid": ICCID_C}),  # fallbackNotAllowed
        ("setFallbackAttribute", {"iccid": ICCID_A}),  # ok (A is enabled: allowed)
        ("setFallbackAttribute", {"iccid": ICCID_B}),  # fallbackProfileEnabled: A has it
        ("unsetFallbackAttribute", {}),  # fallbackProfileEnabled
    ) == [
        ("unsetFallbackAttributeResult", 2),
        ("setFallbackAttributeResult", 1),
        ("setFallbackAttributeResult", 2),
        ("setFallbackAttributeResult", 0),
        ("setFallbackAttributeResult", 3),
        ("unsetFallbackAttributeResult", 3),
    ]
    assert fallback_profile(card) == [ICCID_A]
    psmo(card, eim, ("enable", {"iccid": ICCID_B}))
    assert psmo(
        card,
        eim,
        ("setFallbackAttribute", {"iccid": ICCID_B}),
        ("unsetFallbackAttribute", {}),
        ("unsetFallbackAttribute", {}),
    ) == [
        ("setFallbackAttributeResult", 0),  # A is disabled now: the attribute moves to B
        ("unsetFallbackAttributeResult", 3),  # B has it and is enabled
        ("unsetFallbackAttributeResult", 3),
    ]
    assert fallback_profile(card) == [ICCID_B]


def test_execute_fallback_and_return(card: Euicc, eim: TestEim) -> None:
    assert execute_fallback(card) == 6  # fallbackNotAvailable
    assert return_from_fallback(card) == 6
    allow_fallback(card, ICCID_B)
    psmo(card, eim, ("setFallbackAttribute", {"iccid": ICCID_B}))
    assert return_from_fallback(card) == 7  # not in fallback mode
    first = card.state.next_seq_number
    assert execute_fallback(card) == 0
    assert enabled(card) == ICCID_B
    assert execute_fallback(card) == 2  # the Fallback Profile is enabled
    assert return_from_fallback(card) == 0
    assert enabled(card) == ICCID_A
    assert events(card, first) == [
        (NotificationEvent.DISABLE, ICCID_A),
        (NotificationEvent.ENABLE, ICCID_B),
        (NotificationEvent.DISABLE, ICCID_B),
        (NotificationEvent.ENABLE, ICCID_A),
    ]
    assert return_from_fallback(card) == 7


def test_return_from_fallback_with_nothing_enabled_before_disables(
    card: Euicc, eim: TestEim
) -> None:
    allow_fallback(card, ICCID_B)
    psmo(card, eim, ("setFallbackAttribute", {"iccid": ICCID_B}), ("disable", {"iccid": ICCID_A}))
    assert execute_fallback(card) == 0
    assert return_from_fallback(card) == 0
    assert enabled(card) is None


def test_fallback_ends_with_an_eim_switch_and_guards_its_return_profile(
    card: Euicc, eim: TestEim
) -> None:
    allow_fallback(card, ICCID_B)
    psmo(card, eim, ("setFallbackAttribute", {"iccid": ICCID_B}))
    assert execute_fallback(card) == 0
    assert psmo(card, eim, ("delete", {"iccid": ICCID_A})) == [("deleteResult", 21)]
    assert psmo(card, eim, ("enable", {"iccid": ICCID_A})) == [("enableResult", 0)]
    assert return_from_fallback(card) == 7
    assert psmo(card, eim, ("enable", {"iccid": ICCID_C}), ("delete", {"iccid": ICCID_A})) == [
        ("enableResult", 0),
        ("deleteResult", 0),
    ]


def test_a_fallback_ended_by_another_switch_no_longer_guards(card: Euicc, eim: TestEim) -> None:
    allow_fallback(card, ICCID_B)
    psmo(card, eim, ("setFallbackAttribute", {"iccid": ICCID_B}))
    assert execute_fallback(card) == 0
    switch_elsewhere(card, ICCID_C)
    assert return_from_fallback(card) == 7
    assert psmo(card, eim, ("delete", {"iccid": ICCID_A})) == [("deleteResult", 0)]


def test_fallback_blocked_by_ppr1_is_undefined_error(card: Euicc, eim: TestEim) -> None:
    allow_fallback(card, ICCID_B)
    psmo(card, eim, ("setFallbackAttribute", {"iccid": ICCID_B}), ("enable", {"iccid": ICCID_C}))
    assert execute_fallback(card) == 127
    assert enabled(card) == ICCID_C


# --- emergency profile, connectivity, IPAe, EUICCInfo2 -----------------------------------------


def test_the_card_has_no_emergency_profile(card: Euicc) -> None:
    value = {"refreshFlag": False}
    assert es10(card, "EnableEmergencyProfileRequest", value) == {"enableEmergencyProfileResult": 8}
    assert es10(card, "DisableEmergencyProfileRequest", value) == {
        "disableEmergencyProfileResult": 2
    }
    info = es10(card, "GetEuiccInfo2Request", {})["iotSpecificInfo"]
    assert "ecallSupported" not in info and "fallbackSupported" in info


def test_connectivity_parameters(card: Euicc) -> None:
    assert es10(card, "GetConnectivityParametersRequest", {}) == ("connectivityParametersError", 1)
    patch_state(card, connectivity_parameters=b"\x01\x02\x03")
    assert es10(card, "GetConnectivityParametersRequest", {}) == (
        "connectivityParameters",
        {"httpParams": b"\x01\x02\x03"},
    )


def test_ipae_activation_is_not_supported(card: Euicc) -> None:
    request = {"ipaeOption": schema.bits([0])}
    assert es10(card, "IpaeActivationRequest", request) == {"ipaeActivationResult": 1}


# --- RetrieveNotificationsList / RemoveNotificationFromList with results ------------------------


def test_results_and_notifications_share_the_seq_number_space(card: Euicc, eim: TestEim) -> None:
    assert es10(
        card,
        "SGP32-RetrieveNotificationsListRequest",
        {"searchCriteria": ("euiccPackageResults", None)},
    ) == ("euiccPackageResultList", [])
    psmo(card, eim, ("enable", {"iccid": ICCID_B}))
    psmo(card, eim, ("enable", {"iccid": ICCID_A}))
    seqs = sorted(
        [n.seq_number for n in card.state.notifications]
        + [r.seq_number for r in card.state.package_results]
    )
    assert seqs == [1, 2, 3, 4, 5, 6]
    kind, items = es10(card, "SGP32-RetrieveNotificationsListRequest", {})
    assert kind == "notificationList" and len(items) == 4  # no results among notifications
    for seq in seqs:
        assert es10(card, "NotificationSentRequest", {"seqNumber": seq}) == {
            "deleteNotificationStatus": 0
        }
    assert card.state.notifications == () and card.state.package_results == ()


# --- persistence --------------------------------------------------------------------------------


def test_every_sgp32_state_field_survives_the_state_file(card: Euicc, eim: TestEim) -> None:
    """The storage serialises the new fields from their type hints, without extra code."""
    from euicc_sim.storage import state_from_json, state_to_json

    allow_fallback(card, ICCID_B)
    psmo(
        card,
        eim,
        ("setFallbackAttribute", {"iccid": ICCID_B}),
        ("configureImmediateEnable", {"immediateEnableFlag": None, "defaultSmdpAddress": "a.b"}),
    )
    add = [("addEim", TestEim(eim_id="x").configuration(eimSupportedProtocol=schema.bits([1, 3])))]
    send(card, eim.package(bytes.fromhex(card.eid), add, kind="ecoList"))
    psmo(card, eim, ("enable", {"iccid": ICCID_C, "rollbackFlag": None}))
    downloaded(card)
    patch_state(card, connectivity_parameters=b"\x01")
    state = card.state
    assert state.rollback and state.immediate_enable and state.last_download
    assert state.eim_config("x").supported_protocols == frozenset({1, 3})  # type: ignore[union-attr]
    assert state_from_json(state_to_json(state)) == state
    patch_state(card, fallback=FallbackInfo(return_iccid=ICCID_A))
    assert state_from_json(state_to_json(card.state)) == card.state
