"""ES10c conformance: local profile management, checked against the rules stated at the top of
``euicc_sim/profiles.py`` (one enabled profile, check order, PPRs, test and provisioning
profiles, nicknames, memory reset).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from backends import CardProfile, ProfileSpec

from euicc_protocol import pki
from euicc_protocol.eid import is_valid_eid
from euicc_protocol.iccid import iccid_to_ef
from ipa.errors import Es10Error, StatusWordError
from ipa.es10 import Es10Client
from ipa.types import ProfileClass, ProfileInfo, ProfileState, ResetOption, ResetResult

modifies = pytest.mark.modifies_card
#: Local profile management (Enable, Disable, Delete, SetNickname, SGP.22 eUICCMemoryReset)
#: is SGP.22's: an SGP.32 IoT eUICC does not offer it to the IPAd.
consumer = pytest.mark.kind("consumer")
iot = pytest.mark.kind("iot")

TEST = ProfileSpec()
OPERATIONAL = ProfileSpec(profile_class=ProfileClass.OPERATIONAL)
PROVISIONING = ProfileSpec(profile_class=ProfileClass.PROVISIONING)
ENABLED_TEST = ProfileSpec(enabled=True)
ENABLED_OPERATIONAL = ProfileSpec(profile_class=ProfileClass.OPERATIONAL, enabled=True)

UNKNOWN_ICCID = "8949449999999990999"  # valid Luhn, not one of the TS.48 ICCIDs
UNKNOWN_AID = bytes.fromhex("A0000005591010FFFFFFFF8900FFFE00")

DEFAULT_DP = "smdp.conformance.example.com"


@dataclass(frozen=True)
class Target:
    """How a test names a profile: by ICCID or by ISD-P AID."""

    kind: str

    def of(self, profile: CardProfile) -> dict:
        if self.kind == "iccid":
            return {"iccid": profile.iccid}
        return {"isdp_aid": profile.isdp_aid}

    def unknown(self) -> dict:
        return {"iccid": UNKNOWN_ICCID} if self.kind == "iccid" else {"isdp_aid": UNKNOWN_AID}


@pytest.fixture(params=["iccid", "isdp_aid"])
def by(request: pytest.FixtureRequest) -> Target:
    """Name profiles by ICCID, then by ISD-P AID."""
    return Target(request.param)


@pytest.fixture(params=[False, True], ids=["BF64", "BF34"])
def sgp22(request: pytest.FixtureRequest, card_kind: str) -> bool:
    """eUICCMemoryReset in its SGP.32 v1.2 form (BF64) on an IoT card, in its SGP.22 form
    (BF34) on a consumer card."""
    if request.param != (card_kind == "consumer"):
        pytest.skip(f"a {card_kind} eUICC has no eUICCMemoryReset {request.node.callspec.id}")
    return request.param


def info(es10: Es10Client, profile: CardProfile) -> ProfileInfo | None:
    found = es10.get_profiles_info(iccid=profile.iccid)
    assert len(found) <= 1
    return found[0] if found else None


def state(es10: Es10Client, profile: CardProfile) -> ProfileState | None:
    found = info(es10, profile)
    return None if found is None else found.profile_state


def enabled_count(es10: Es10Client) -> int:
    return sum(p.profile_state is ProfileState.ENABLED for p in es10.get_profiles_info())


def refused(code: int, name: str, call, /, **kwargs) -> None:
    """``call(**kwargs)`` fails with ``code`` (named ``name``)."""
    with pytest.raises(Es10Error) as excinfo:
        call(**kwargs)
    assert (excinfo.value.code, excinfo.value.name) == (code, name)


def refused_unchanged(es10: Es10Client, code: int, name: str, call, /, **kwargs) -> None:
    """``call(**kwargs)`` fails with ``code`` and leaves every profile as it was."""
    before = es10.get_profiles_info()
    refused(code, name, call, **kwargs)
    assert es10.get_profiles_info() == before


# -- GetProfilesInfo ---------------------------------------------------------------------------


def test_profiles_info_lists_every_profile_with_its_fields(card, es10: Es10Client) -> None:
    specs = [
        ProfileSpec(nickname="first", notifications=True),
        ProfileSpec(profile_class=ProfileClass.OPERATIONAL, ppr1=True, ppr2=True, enabled=True),
        PROVISIONING,
    ]
    provisioned = card.provision(specs)
    listed = {p.iccid: p for p in es10.get_profiles_info()}
    if card.exclusive:
        assert set(listed) == {p.iccid for p in provisioned}
    for p in provisioned:
        got = listed[p.iccid]
        assert got.iccid_raw == iccid_to_ef(p.iccid)
        assert got.isdp_aid == p.isdp_aid
        assert got.profile_class is p.spec.profile_class
        expected = ProfileState.ENABLED if p.spec.enabled else ProfileState.DISABLED
        assert got.profile_state is expected
        assert got.profile_nickname == p.spec.nickname
        pprs = set(got.profile_policy_rules or ())
        assert ("ppr1" in pprs, "ppr2" in pprs) == (p.spec.ppr1, p.spec.ppr2)
        config = got.notification_configuration_info or ()
        assert bool(config) == p.spec.notifications
        for entry in config:
            assert entry.notification_address == p.notification_address
    assert enabled_count(es10) == 1


def test_profiles_info_by_iccid_and_by_aid(card, es10: Es10Client) -> None:
    provisioned = card.provision([TEST, ENABLED_OPERATIONAL, PROVISIONING])
    listed = {p.iccid: p for p in es10.get_profiles_info()}
    for p in provisioned:
        assert es10.get_profiles_info(iccid=p.iccid) == [listed[p.iccid]]
        assert es10.get_profiles_info(iccid=iccid_to_ef(p.iccid)) == [listed[p.iccid]]
        assert es10.get_profiles_info(isdp_aid=p.isdp_aid) == [listed[p.iccid]]


def test_profiles_info_by_class(card, es10: Es10Client) -> None:
    provisioned = card.provision([TEST, OPERATIONAL, PROVISIONING, TEST])
    for cls in ProfileClass:
        found = es10.get_profiles_info(profile_class=cls)
        assert all(p.profile_class is cls for p in found)
        wanted = {p.iccid for p in provisioned if p.spec.profile_class is cls}
        assert wanted <= {p.iccid for p in found}
        if card.exclusive:
            assert wanted == {p.iccid for p in found}


def test_profiles_info_unknown_iccid_or_aid_is_an_empty_list(card, es10: Es10Client) -> None:
    card.provision([TEST, OPERATIONAL])
    assert es10.get_profiles_info(iccid=UNKNOWN_ICCID) == []
    assert es10.get_profiles_info(isdp_aid=UNKNOWN_AID) == []


@pytest.mark.parametrize(
    "tags",
    [
        ["iccid", "profileState"],
        [0x9F70],
        ["profileNickname"],
        ["isdpAid", "profileClass", "profileName", "serviceProviderName"],
        [bytes.fromhex("5A"), bytes.fromhex("9F70"), bytes.fromhex("95")],
    ],
    ids=["iccid+state", "9F70-only", "nickname", "aid+class+names", "as-bytes"],
)
def test_profiles_info_tag_list_returns_only_the_asked_fields(
    card, es10: Es10Client, tags: list
) -> None:
    card.provision([ProfileSpec(nickname="nick", enabled=True), OPERATIONAL])
    names = {_tag_name(t) for t in tags}
    # Both lists are read from the same card state, so they come in the same order.
    full = [p.to_json() for p in es10.get_profiles_info()]
    found = [p.to_json() for p in es10.get_profiles_info(tags=tags)]
    assert found == [{k: v for k, v in whole.items() if k in names} for whole in full]
    assert any(found)


def test_profiles_info_criterion_with_tag_list(card, es10: Es10Client) -> None:
    a, b = card.provision([ENABLED_TEST, OPERATIONAL])
    for p, state_value in ((a, "enabled"), (b, "disabled")):
        found = es10.get_profiles_info(iccid=p.iccid, tags=[0x5A, 0x9F70])
        assert [f.to_json() for f in found] == [{"iccid": p.iccid, "profileState": state_value}]
        found = es10.get_profiles_info(isdp_aid=p.isdp_aid, tags=[0x9F70])
        assert [f.to_json() for f in found] == [{"profileState": state_value}]


def _tag_name(tag: object) -> str:
    names = {
        0x5A: "iccid",
        0x4F: "isdpAid",
        0x9F70: "profileState",
        0x90: "profileNickname",
        0x91: "serviceProviderName",
        0x92: "profileName",
        0x95: "profileClass",
    }
    if isinstance(tag, str):
        return tag
    if isinstance(tag, bytes):
        tag = int.from_bytes(tag, "big")
    return names[tag]


# -- GetEID ------------------------------------------------------------------------------------


def test_get_eid_is_valid_and_matches_the_certificate(
    card, es10: Es10Client, card_kind: str
) -> None:
    eid = es10.get_eid()
    assert is_valid_eid(eid)
    if card_kind == "iot":  # GetCerts is SGP.32's
        euicc = pki.load_certificate(es10.get_certs().euicc_certificate)
        assert pki.subject_serial_number(euicc) == eid
    known = card.known_eid()
    if known is not None:
        assert eid == known


# -- EnableProfile -----------------------------------------------------------------------------


@consumer
@modifies
def test_enable_a_disabled_profile(card, es10: Es10Client, by: Target) -> None:
    (p,) = card.provision([OPERATIONAL])
    es10.enable_profile(**by.of(p))
    assert state(es10, p) is ProfileState.ENABLED


@consumer
@modifies
def test_enable_with_refresh_flag_is_accepted(card, es10: Es10Client, by: Target) -> None:
    (p,) = card.provision([OPERATIONAL])
    es10.enable_profile(**by.of(p), refresh=True)
    assert state(es10, p) is ProfileState.ENABLED
    es10.disable_profile(**by.of(p), refresh=True)
    assert state(es10, p) is ProfileState.DISABLED


@consumer
@modifies
def test_enable_unknown_profile_is_iccid_or_aid_not_found(
    card, es10: Es10Client, by: Target
) -> None:
    card.provision([TEST, ENABLED_OPERATIONAL])
    refused_unchanged(es10, 1, "iccidOrAidNotFound", es10.enable_profile, **by.unknown())


@consumer
@modifies
def test_enable_the_enabled_profile_is_not_in_disabled_state(
    card, es10: Es10Client, by: Target
) -> None:
    (p,) = card.provision([ENABLED_OPERATIONAL])
    refused_unchanged(es10, 2, "profileNotInDisabledState", es10.enable_profile, **by.of(p))


@consumer
@modifies
def test_enable_switches_the_enabled_profile(card, es10: Es10Client, by: Target) -> None:
    a, b = card.provision([ENABLED_OPERATIONAL, OPERATIONAL])
    es10.enable_profile(**by.of(b))
    assert state(es10, a) is ProfileState.DISABLED
    assert state(es10, b) is ProfileState.ENABLED
    assert enabled_count(es10) == 1
    es10.enable_profile(**by.of(a))
    assert (state(es10, a), state(es10, b)) == (ProfileState.ENABLED, ProfileState.DISABLED)


@consumer
@modifies
def test_ppr1_of_the_enabled_operational_profile_blocks_a_switch(
    card, es10: Es10Client, by: Target
) -> None:
    a, b = card.provision(
        [ProfileSpec(profile_class=ProfileClass.OPERATIONAL, ppr1=True, enabled=True), TEST]
    )
    refused_unchanged(es10, 3, "disallowedByPolicy", es10.enable_profile, **by.of(b))
    assert (state(es10, a), state(es10, b)) == (ProfileState.ENABLED, ProfileState.DISABLED)


@consumer
@modifies
def test_enable_a_provisioning_profile_is_disallowed(card, es10: Es10Client, by: Target) -> None:
    (p,) = card.provision([PROVISIONING])
    refused_unchanged(es10, 3, "disallowedByPolicy", es10.enable_profile, **by.of(p))


@consumer
@modifies
def test_enable_switches_away_from_an_enabled_provisioning_profile(
    card, es10: Es10Client, by: Target
) -> None:
    a, b = card.provision(
        [ProfileSpec(profile_class=ProfileClass.PROVISIONING, enabled=True), OPERATIONAL]
    )
    es10.enable_profile(**by.of(b))
    assert (state(es10, a), state(es10, b)) == (ProfileState.DISABLED, ProfileState.ENABLED)


# -- DisableProfile ----------------------------------------------------------------------------


@consumer
@modifies
def test_disable_the_enabled_profile(card, es10: Es10Client, by: Target) -> None:
    (p,) = card.provision([ENABLED_OPERATIONAL])
    es10.disable_profile(**by.of(p))
    assert state(es10, p) is ProfileState.DISABLED
    assert enabled_count(es10) == 0


@consumer
@modifies
def test_disable_unknown_profile_is_iccid_or_aid_not_found(
    card, es10: Es10Client, by: Target
) -> None:
    card.provision([ENABLED_TEST])
    refused_unchanged(es10, 1, "iccidOrAidNotFound", es10.disable_profile, **by.unknown())


@consumer
@modifies
def test_disable_a_disabled_profile_is_not_in_enabled_state(
    card, es10: Es10Client, by: Target
) -> None:
    (p,) = card.provision([OPERATIONAL])
    refused_unchanged(es10, 2, "profileNotInEnabledState", es10.disable_profile, **by.of(p))


@consumer
@modifies
def test_state_is_checked_before_ppr1(card, es10: Es10Client, by: Target) -> None:
    (p,) = card.provision([ProfileSpec(profile_class=ProfileClass.OPERATIONAL, ppr1=True)])
    refused_unchanged(es10, 2, "profileNotInEnabledState", es10.disable_profile, **by.of(p))


@consumer
@modifies
def test_ppr1_blocks_disabling_an_operational_profile(card, es10: Es10Client, by: Target) -> None:
    (p,) = card.provision(
        [ProfileSpec(profile_class=ProfileClass.OPERATIONAL, ppr1=True, enabled=True)]
    )
    refused_unchanged(es10, 3, "disallowedByPolicy", es10.disable_profile, **by.of(p))
    assert state(es10, p) is ProfileState.ENABLED


@consumer
@modifies
def test_disable_an_enabled_provisioning_profile_is_disallowed(
    card, es10: Es10Client, by: Target
) -> None:
    (p,) = card.provision([ProfileSpec(profile_class=ProfileClass.PROVISIONING, enabled=True)])
    refused_unchanged(es10, 3, "disallowedByPolicy", es10.disable_profile, **by.of(p))


# -- DeleteProfile -----------------------------------------------------------------------------


@consumer
@modifies
def test_delete_a_disabled_profile(card, es10: Es10Client, by: Target) -> None:
    a, b = card.provision([OPERATIONAL, ENABLED_TEST])
    es10.delete_profile(**by.of(a))
    assert es10.get_profiles_info(iccid=a.iccid) == []
    assert es10.get_profiles_info(isdp_aid=a.isdp_aid) == []
    assert state(es10, b) is ProfileState.ENABLED
    refused(1, "iccidOrAidNotFound", es10.delete_profile, **by.of(a))


@consumer
@modifies
def test_delete_unknown_profile_is_iccid_or_aid_not_found(
    card, es10: Es10Client, by: Target
) -> None:
    card.provision([TEST])
    refused_unchanged(es10, 1, "iccidOrAidNotFound", es10.delete_profile, **by.unknown())


@consumer
@modifies
def test_delete_the_enabled_profile_is_not_in_disabled_state(
    card, es10: Es10Client, by: Target
) -> None:
    (p,) = card.provision([ENABLED_TEST])
    refused_unchanged(es10, 2, "profileNotInDisabledState", es10.delete_profile, **by.of(p))


@consumer
@modifies
def test_ppr2_blocks_deleting_an_operational_profile(card, es10: Es10Client, by: Target) -> None:
    (p,) = card.provision([ProfileSpec(profile_class=ProfileClass.OPERATIONAL, ppr2=True)])
    refused_unchanged(es10, 3, "disallowedByPolicy", es10.delete_profile, **by.of(p))


@consumer
@modifies
def test_state_is_checked_before_ppr2(card, es10: Es10Client, by: Target) -> None:
    (p,) = card.provision(
        [ProfileSpec(profile_class=ProfileClass.OPERATIONAL, ppr2=True, enabled=True)]
    )
    refused_unchanged(es10, 2, "profileNotInDisabledState", es10.delete_profile, **by.of(p))


@consumer
@modifies
def test_delete_a_provisioning_profile_is_disallowed(card, es10: Es10Client, by: Target) -> None:
    (p,) = card.provision([PROVISIONING])
    refused_unchanged(es10, 3, "disallowedByPolicy", es10.delete_profile, **by.of(p))


@consumer
@modifies
def test_operational_profile_without_pprs_can_be_disabled_and_deleted(
    card, es10: Es10Client, by: Target
) -> None:
    (p,) = card.provision([ENABLED_OPERATIONAL])
    es10.disable_profile(**by.of(p))
    es10.delete_profile(**by.of(p))
    assert info(es10, p) is None


@consumer
@modifies
def test_pprs_are_ignored_for_test_profiles(card, es10: Es10Client, by: Target) -> None:
    a, b = card.provision(
        [ProfileSpec(ppr1=True, ppr2=True, enabled=True), ProfileSpec(ppr1=True, ppr2=True)]
    )
    es10.enable_profile(**by.of(b))  # implicit disable of a despite its PPR1
    assert (state(es10, a), state(es10, b)) == (ProfileState.DISABLED, ProfileState.ENABLED)
    es10.disable_profile(**by.of(b))  # PPR1 ignored
    es10.delete_profile(**by.of(a))  # PPR2 ignored
    es10.delete_profile(**by.of(b))
    assert info(es10, a) is None and info(es10, b) is None


@consumer
@modifies
def test_ppr1_does_not_block_enabling_the_profile_itself(
    card, es10: Es10Client, by: Target
) -> None:
    (p,) = card.provision([ProfileSpec(profile_class=ProfileClass.OPERATIONAL, ppr1=True)])
    es10.enable_profile(**by.of(p))
    assert state(es10, p) is ProfileState.ENABLED


# -- SetNickname -------------------------------------------------------------------------------


@consumer
@modifies
def test_set_and_clear_a_nickname(card, es10: Es10Client) -> None:
    a, b = card.provision([TEST, ProfileSpec(nickname="other")])
    es10.set_nickname(a.iccid, "My test profile")
    assert info(es10, a).profile_nickname == "My test profile"
    assert info(es10, b).profile_nickname == "other"
    es10.set_nickname(a.iccid, "")
    assert info(es10, a).profile_nickname is None
    assert info(es10, b).profile_nickname == "other"


@consumer
@modifies
def test_nickname_on_any_class_and_state(card, es10: Es10Client) -> None:
    provisioned = card.provision([ENABLED_OPERATIONAL, PROVISIONING, TEST])
    for i, p in enumerate(provisioned):
        es10.set_nickname(iccid_to_ef(p.iccid), f"nick {i}")
    assert [info(es10, p).profile_nickname for p in provisioned] == ["nick 0", "nick 1", "nick 2"]
    assert state(es10, provisioned[0]) is ProfileState.ENABLED


@consumer
@modifies
def test_nickname_of_64_characters_is_accepted(card, es10: Es10Client) -> None:
    (p,) = card.provision([TEST])
    es10.set_nickname(p.iccid, "n" * 64)
    assert info(es10, p).profile_nickname == "n" * 64


@consumer
@modifies
def test_nickname_of_65_characters_is_undefined_error(card, es10: Es10Client) -> None:
    (p,) = card.provision([ProfileSpec(nickname="kept")])
    with pytest.raises(ValueError):  # the client refuses before sending anything
        es10.set_nickname(p.iccid, "n" * 65)
    request = {"iccid": iccid_to_ef(p.iccid), "profileNickname": "n" * 65}
    answer = es10.transmit_es10("SetNicknameRequest", request)
    assert answer == {"setNicknameResult": 127}
    assert info(es10, p).profile_nickname == "kept"


@consumer
@modifies
def test_nickname_of_64_non_ascii_characters_is_accepted(card, es10: Es10Client) -> None:
    (p,) = card.provision([TEST])
    es10.set_nickname(p.iccid, "é" * 64)
    assert info(es10, p).profile_nickname == "é" * 64


@consumer
@modifies
def test_nickname_of_unknown_iccid_is_iccid_not_found(card, es10: Es10Client) -> None:
    card.provision([TEST])
    refused_unchanged(
        es10, 1, "iccidNotFound", es10.set_nickname, iccid=UNKNOWN_ICCID, nickname="x"
    )


# -- eUICCMemoryReset --------------------------------------------------------------------------


def classes(es10: Es10Client) -> dict[str, ProfileClass]:
    return {p.iccid: p.profile_class for p in es10.get_profiles_info()}


@modifies
def test_reset_deletes_operational_profiles_only(card, es10: Es10Client, sgp22: bool) -> None:
    provisioned = card.provision(
        [
            TEST,
            ProfileSpec(profile_class=ProfileClass.OPERATIONAL, ppr1=True, ppr2=True, enabled=True),
            OPERATIONAL,
            PROVISIONING,
        ]
    )
    result = es10.euicc_memory_reset([ResetOption.DELETE_OPERATIONAL_PROFILES], sgp22=sgp22)
    assert result.reset_result is ResetResult.OK
    remaining = classes(es10)
    assert ProfileClass.OPERATIONAL not in remaining.values()
    for p in provisioned:
        assert (p.iccid in remaining) == (p.spec.profile_class is not ProfileClass.OPERATIONAL)
    assert enabled_count(es10) == 0


@modifies
def test_reset_field_loaded_test_profiles_spares_preloaded_ones(
    card, es10: Es10Client, sgp22: bool
) -> None:
    card.provision([TEST, ENABLED_TEST])
    if any(p.profile_class is not ProfileClass.TEST for p in es10.get_profiles_info()):
        pytest.skip("needs a card whose only profiles are pre-loaded test profiles")
    before = es10.get_profiles_info()
    with pytest.raises(Es10Error) as excinfo:
        es10.euicc_memory_reset([ResetOption.DELETE_FIELD_LOADED_TEST_PROFILES], sgp22=sgp22)
    assert (excinfo.value.code, excinfo.value.name) == (1, "nothingToDelete")
    assert excinfo.value.response.reset_result is ResetResult.NOTHING_TO_DELETE
    assert es10.get_profiles_info() == before


@iot
@modifies
def test_reset_preloaded_test_profiles(card, es10: Es10Client) -> None:
    provisioned = card.provision([ENABLED_TEST, TEST, OPERATIONAL, PROVISIONING])
    result = es10.euicc_memory_reset([ResetOption.DELETE_PRE_LOADED_TEST_PROFILES])
    assert result.reset_result is ResetResult.OK
    remaining = classes(es10)
    assert ProfileClass.TEST not in remaining.values()
    for p in provisioned:
        assert (p.iccid in remaining) == (p.spec.profile_class is not ProfileClass.TEST)


@iot
@modifies
def test_reset_provisioning_profiles(card, es10: Es10Client) -> None:
    provisioned = card.provision([TEST, PROVISIONING, ENABLED_OPERATIONAL])
    result = es10.euicc_memory_reset([ResetOption.DELETE_PROVISIONING_PROFILES])
    assert result.reset_result is ResetResult.OK
    remaining = classes(es10)
    for p in provisioned:
        assert (p.iccid in remaining) == (p.spec.profile_class is not ProfileClass.PROVISIONING)


@consumer
def test_sgp22_reset_has_no_sgp32_options(es10: Es10Client) -> None:
    for option in (ResetOption.DELETE_PRE_LOADED_TEST_PROFILES, ResetOption.RESET_EIM_CONFIG_DATA):
        with pytest.raises(ValueError):
            es10.euicc_memory_reset([option], sgp22=True)


@modifies
def test_reset_with_nothing_to_delete(card, es10: Es10Client, sgp22: bool) -> None:
    card.provision([TEST, PROVISIONING])
    if es10.get_profiles_info(profile_class=ProfileClass.OPERATIONAL):
        pytest.skip("needs a card without operational profiles")
    before = es10.get_profiles_info()
    with pytest.raises(Es10Error) as excinfo:
        es10.euicc_memory_reset([ResetOption.DELETE_OPERATIONAL_PROFILES], sgp22=sgp22)
    assert (excinfo.value.code, excinfo.value.name) == (1, "nothingToDelete")
    assert excinfo.value.field == "resetResult"
    assert es10.get_profiles_info() == before


@modifies
def test_reset_default_smdp_address(card, es10: Es10Client, sgp22: bool) -> None:
    card.provision([OPERATIONAL])
    es10.set_default_dp_address(DEFAULT_DP)
    before = es10.get_profiles_info()
    result = es10.euicc_memory_reset([ResetOption.RESET_DEFAULT_SMDP_ADDRESS], sgp22=sgp22)
    assert result.reset_result is ResetResult.OK
    assert es10.get_euicc_configured_addresses().default_dp_address is None
    assert es10.get_profiles_info() == before
    # Already cleared: nothing left to reset.
    with pytest.raises(Es10Error) as excinfo:
        es10.euicc_memory_reset([ResetOption.RESET_DEFAULT_SMDP_ADDRESS], sgp22=sgp22)
    assert excinfo.value.code == 1


@modifies
@pytest.mark.exclusive_card  # compares every profile left on the card
def test_reset_all_sgp22_options_together(card, es10: Es10Client, sgp22: bool) -> None:
    card.provision([ENABLED_TEST, OPERATIONAL, PROVISIONING])
    es10.set_default_dp_address(DEFAULT_DP)
    es10.euicc_memory_reset([0, 1, 2], sgp22=sgp22)
    assert sorted(classes(es10).values()) == [ProfileClass.TEST, ProfileClass.PROVISIONING]
    assert es10.get_euicc_configured_addresses().default_dp_address is None


@iot
@modifies
@pytest.mark.exclusive_card  # compares every profile left on the card
def test_reset_eim_and_immediate_enable_results(card, es10: Es10Client) -> None:
    # profiles.py rule 10: options 5 and 6 answer in their own fields (nothingToDelete / ok).
    card.provision([OPERATIONAL, TEST])
    result = es10.euicc_memory_reset([ResetOption.RESET_IMMEDIATE_ENABLE_CONFIG, 0])
    assert result.reset_result is ResetResult.OK
    assert result.reset_eim_result is None
    assert result.reset_immediate_enable_config_result == 0
    with pytest.raises(Es10Error) as excinfo:
        es10.euicc_memory_reset([ResetOption.RESET_EIM_CONFIG_DATA, 3])
    error = excinfo.value
    assert (error.field, error.code, error.name) == ("resetEimResult", 1, "nothingToDelete")
    assert error.response.reset_result is ResetResult.OK  # the test profile went anyway
    assert es10.get_profiles_info() == []


# -- persistence -------------------------------------------------------------------------------


@consumer
@modifies
@pytest.mark.persistence
def test_profiles_states_and_nicknames_survive_reopen(card, es10: Es10Client) -> None:
    a, b, c = card.provision(
        [
            ProfileSpec(notifications=True),
            ProfileSpec(profile_class=ProfileClass.OPERATIONAL, ppr2=True, notifications=True),
            PROVISIONING,
        ]
    )
    es10.enable_profile(iccid=a.iccid)
    es10.enable_profile(isdp_aid=b.isdp_aid)
    es10.set_nickname(a.iccid, "kept across power cycles")
    es10.set_nickname(c.iccid, "provisioning")
    profiles = es10.get_profiles_info()
    notifications = [n.raw for n in es10.retrieve_notifications_list()]
    assert len(notifications) == 3
    es10 = card.reopen()
    assert es10.get_profiles_info() == profiles
    assert [n.raw for n in es10.retrieve_notifications_list()] == notifications
    es10 = card.power_cycle()
    assert es10.get_profiles_info() == profiles
    # And the reopened card keeps working from there.
    es10.disable_profile(iccid=b.iccid)
    es10 = card.reopen()
    assert state(es10, b) is ProfileState.DISABLED
    assert enabled_count(es10) == 0


# -- an IoT eUICC refuses local profile management ------------------------------------------------


def _local_management(es10: Es10Client, profile: CardProfile) -> dict:
    return {
        "EnableProfile": lambda: es10.enable_profile(iccid=profile.iccid),
        "DisableProfile": lambda: es10.disable_profile(iccid=profile.iccid),
        "DeleteProfile": lambda: es10.delete_profile(iccid=profile.iccid),
        "SetNickname": lambda: es10.set_nickname(profile.iccid, "mine"),
        "eUICCMemoryReset (BF34)": lambda: es10.euicc_memory_reset([0, 1, 2], sgp22=True),
    }


@iot
@modifies
@pytest.mark.parametrize(
    "function",
    ["EnableProfile", "DisableProfile", "DeleteProfile", "SetNickname", "eUICCMemoryReset (BF34)"],
)
def test_iot_card_does_not_offer_local_profile_management(
    card, es10: Es10Client, function: str
) -> None:
    """SGP.32 gives the IPAd no ES10c profile management: the request tag is unknown (6A88)
    and the profiles stay as they were."""
    enabled, disabled = card.provision([ENABLED_OPERATIONAL, OPERATIONAL])
    target = enabled if function == "DisableProfile" else disabled
    before = es10.get_profiles_info()
    with pytest.raises(StatusWordError) as excinfo:
        _local_management(es10, target)[function]()
    assert excinfo.value.sw == 0x6A88
    assert es10.get_profiles_info() == before
