"""euicc_protocol.es10: the ES10 function catalogue agrees with the schema and the standard."""

from __future__ import annotations

import pytest

from euicc_protocol import es10, schema
from euicc_protocol.es10 import FUNCTIONS, PROFILES, catalogue_for, function, lookup


def test_every_request_and_response_type_exists_in_the_schema() -> None:
    missing = [
        (fn.name, t)
        for fn in FUNCTIONS
        for t in (fn.request_type, fn.response_type)
        if not schema.has_type(t)
    ]
    assert missing == []


@pytest.mark.parametrize("profile", PROFILES)
def test_request_tags_are_unique_within_a_profile(profile: str) -> None:
    members = [fn for fn in FUNCTIONS if profile in fn.profiles]
    tags = [fn.request_tag for fn in members]
    assert len(tags) == len(set(tags))
    assert len(catalogue_for(profile)) == len(members)


@pytest.mark.parametrize("profile", PROFILES)
def test_function_names_are_unique_within_a_profile(profile: str) -> None:
    names = [fn.name for fn in catalogue_for(profile).values()]
    assert len(names) == len(set(names))


def test_request_tag_equals_response_tag_except_for_the_segmented_bpp() -> None:
    for fn in FUNCTIONS:
        if fn.segmented:
            continue
        assert fn.request_tag == fn.response_tag, fn


def test_only_load_bound_profile_package_is_segmented() -> None:
    segmented = {fn.name for fn in FUNCTIONS if fn.segmented}
    assert segmented == {"LoadBoundProfilePackage"}
    bpp = function("LoadBoundProfilePackage", "sgp22")
    assert (bpp.request_tag, bpp.response_tag) == (b"\xbf\x36", b"\xbf\x37")


def test_table_fields_hold_known_values() -> None:
    for fn in FUNCTIONS:
        assert fn.interface in {"ES10a", "ES10b", "ES10c"}
        assert fn.since in {"SGP.22", "SGP.32"}
        assert fn.profiles and fn.profiles <= set(PROFILES)


def test_every_sgp32_form_is_only_on_the_sgp32_card() -> None:
    for fn in FUNCTIONS:
        if fn.since == "SGP.32":
            assert fn.profiles == {"sgp32"}, fn


def test_sgp22_card_has_every_sgp22_function() -> None:
    names = {fn.name for fn in catalogue_for("sgp22").values()}
    assert names == {
        "GetEuiccConfiguredAddresses",
        "SetDefaultDpAddress",
        "PrepareDownload",
        "LoadBoundProfilePackage",
        "GetEUICCChallenge",
        "GetEUICCInfo1",
        "GetEUICCInfo2",
        "ListNotification",
        "RetrieveNotificationsList",
        "RemoveNotificationFromList",
        "LoadCRL",
        "AuthenticateServer",
        "CancelSession",
        "GetRAT",
        "LpaeActivation",
        "GetProfilesInfo",
        "EnableProfile",
        "DisableProfile",
        "DeleteProfile",
        "EuiccMemoryReset",
        "GetEID",
        "SetNickname",
    }


@pytest.mark.parametrize(
    ("profile", "tag", "name"),
    [
        ("sgp22", "BF3E", "GetEID"),
        ("sgp32", "BF3E", "GetEID"),
        ("sgp22", "BF2D", "GetProfilesInfo"),
        ("sgp32", "BF2D", "GetProfilesInfo"),
        ("sgp22", "BF33", "DeleteProfile"),
        ("sgp22", "BF31", "EnableProfile"),
        ("sgp22", "BF34", "EuiccMemoryReset"),
        ("sgp32", "BF64", "EuiccMemoryReset"),
        ("sgp32", "BF51", "LoadEuiccPackage"),
        ("sgp32", "BF56", "GetCerts"),
        ("sgp32", "BF55", "GetEimConfigurationData"),
        ("sgp32", "BF57", "AddInitialEim"),
        ("sgp32", "BF58", "ProfileRollback"),
        ("sgp32", "BF59", "ConfigureImmediateProfileEnabling"),
        ("sgp32", "BF5A", "ImmediateEnable"),
        ("sgp32", "BF5F", "GetConnectivityParameters"),
        ("sgp32", "BF65", "SGP32-SetDefaultDpAddress"),
        ("sgp22", "BF42", "LpaeActivation"),
        ("sgp32", "BF42", "IpaeActivation"),
        ("sgp22", "BF2E", "GetEUICCChallenge"),
        ("sgp32", "BF38", "AuthenticateServer"),
    ],
)
def test_spot_checks(profile: str, tag: str, name: str) -> None:
    fn = lookup(bytes.fromhex(tag), profile)
    assert fn is not None and fn.name == name
    assert function(name, profile) is fn


@pytest.mark.parametrize(
    ("name", "request_type", "response_type"),
    [
        ("GetEUICCInfo2", "GetEuiccInfo2Request", "SGP32-EUICCInfo2"),
        (
            "RetrieveNotificationsList",
            "SGP32-RetrieveNotificationsListRequest",
            "SGP32-RetrieveNotificationsListResponse",
        ),
        ("GetProfilesInfo", "ProfileInfoListRequest", "SGP32-ProfileInfoListResponse"),
        ("AuthenticateServer", "AuthenticateServerRequest", "SGP32-AuthenticateServerResponse"),
        ("PrepareDownload", "PrepareDownloadRequest", "SGP32-PrepareDownloadResponse"),
        ("CancelSession", "CancelSessionRequest", "SGP32-CancelSessionResponse"),
        ("EuiccMemoryReset", "SGP32-EuiccMemoryResetRequest", "SGP32-EuiccMemoryResetResponse"),
    ],
)
def test_sgp32_card_uses_the_sgp32_forms(name: str, request_type: str, response_type: str) -> None:
    fn = function(name, "sgp32")
    assert (fn.request_type, fn.response_type, fn.since) == (request_type, response_type, "SGP.32")


@pytest.mark.parametrize("tag", ["BF34", "BF31", "BF32", "BF33", "BF29"])
def test_sgp32_card_does_not_answer_consumer_profile_management(tag: str) -> None:
    assert lookup(bytes.fromhex(tag), "sgp32") is None


@pytest.mark.parametrize("tag", ["BF51", "BF64", "BF65", "BF56"])
def test_sgp22_card_does_not_answer_iot_functions(tag: str) -> None:
    assert lookup(bytes.fromhex(tag), "sgp22") is None


def test_catalogue_is_read_only_and_cached() -> None:
    table = catalogue_for("sgp32")
    assert table is catalogue_for("sgp32")
    with pytest.raises(TypeError):
        table[b"\xbf\x99"] = FUNCTIONS[0]  # type: ignore[index]


def test_unknown_profile_and_name_are_errors() -> None:
    with pytest.raises(ValueError):
        catalogue_for("sgp99")
    with pytest.raises(KeyError):
        function("EnableProfile", "sgp32")


def test_functions_are_immutable() -> None:
    with pytest.raises(AttributeError):
        FUNCTIONS[0].name = "x"  # type: ignore[misc]
    assert isinstance(es10.FUNCTIONS, tuple)
