"""Card kinds: an SGP.32 IoT eUICC and an SGP.22 consumer eUICC answer different ES10 sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from euicc_protocol import schema
from euicc_protocol.es10 import catalogue_for
from euicc_sim.card import Euicc
from euicc_sim.config import CardConfig
from ipa.errors import StatusWordError
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

TS48 = Path(__file__).resolve().parents[1] / "profiles" / "ts48"
PACKAGE = (TS48 / "TS48V1-A-UNIQUE.der").read_bytes()

#: ES10c local profile management, which SGP.32 does not give the IPAd.
LOCAL_MANAGEMENT = {
    "EnableProfileRequest": {"profileIdentifier": ("iccid", b"\x98" * 10), "refreshFlag": False},
    "DisableProfileRequest": {"profileIdentifier": ("iccid", b"\x98" * 10), "refreshFlag": False},
    "DeleteProfileRequest": ("iccid", b"\x98" * 10),
    "SetNicknameRequest": {"iccid": b"\x98" * 10, "profileNickname": "x"},
    "EuiccMemoryResetRequest": {"resetOptions": (b"\x80", 1)},
}


def client(kind: str) -> tuple[Euicc, Es10Client]:
    card = Euicc.create(None, fsync=False, kind=kind)
    return card, Es10Client.open(InProcessTransport(card))


def sw_of(es10: Es10Client, request: bytes) -> int:
    with pytest.raises(StatusWordError) as excinfo:
        es10.exchange(request)
    return excinfo.value.sw


@pytest.mark.parametrize("request_type", sorted(LOCAL_MANAGEMENT))
def test_iot_card_does_not_know_local_profile_management(request_type: str) -> None:
    card, es10 = client("iot")
    card.preload(PACKAGE, enable=True)
    before = card.state
    assert sw_of(es10, schema.encode(request_type, LOCAL_MANAGEMENT[request_type])) == 0x6A88
    assert card.state == before


def test_iot_card_answers_what_sgp32_gives_the_ipad() -> None:
    card, es10 = client("iot")
    card.preload(PACKAGE, enable=True)
    assert es10.get_eid() == card.eid
    assert [p.iccid for p in es10.get_profiles_info()]  # read-only inventory stays
    info2 = es10.get_euicc_info2()
    assert info2.iot_specific_info is not None and "1.2.0" in info2.iot_specific_info.iot_version
    assert es10.get_certs().euicc_certificate
    assert es10.transmit_es10("GetEimConfigurationDataRequest", {}) == {
        "eimConfigurationDataList": []
    }
    result = es10.euicc_memory_reset([3])  # the SGP.32 form, BF64: pre-loaded test profiles
    assert result.reset_result.value == 0


def test_iot_card_answers_every_sgp32_request_tag() -> None:
    card, _ = client("iot")
    assert set(card.isdr.supported_tags()) == set(catalogue_for("sgp32"))


def test_consumer_card_answers_every_sgp22_request_tag() -> None:
    card, _ = client("consumer")
    assert set(card.isdr.supported_tags()) == set(catalogue_for("sgp22"))


@pytest.mark.parametrize(
    ("request_type", "value"),
    [
        ("GetEimConfigurationDataRequest", {}),
        ("GetCertsRequest", {}),
        ("ImmediateEnableRequest", {"refreshFlag": False}),
        ("ProfileRollbackRequest", {"refreshFlag": False}),
        ("SGP32-EuiccMemoryResetRequest", {"resetOptions": (b"\x80", 1)}),
        ("GetConnectivityParametersRequest", {}),
    ],
)
def test_consumer_card_does_not_know_the_sgp32_functions(request_type: str, value: object) -> None:
    _, es10 = client("consumer")
    assert sw_of(es10, schema.encode(request_type, value)) == 0x6A88


def test_consumer_card_has_local_profile_management_and_no_iot_info() -> None:
    card, es10 = client("consumer")
    profile = card.preload(PACKAGE)
    es10.enable_profile(iccid=profile.iccid)
    es10.set_nickname(profile.iccid, "mine")
    es10.disable_profile(iccid=profile.iccid)
    es10.delete_profile(iccid=profile.iccid)
    assert es10.get_profiles_info() == []
    info2 = es10.get_euicc_info2()
    assert info2.iot_specific_info is None and info2.ipa_mode is None
    schema.decode("EUICCInfo2", info2.raw)  # the SGP.22 type, nothing more
    assert es10.transmit_es10("LpaeActivationRequest", {"lpaeOption": (b"\x80", 1)}) == {
        "lpaeActivationResult": 1  # notSupported
    }
    assert es10.retrieve_notifications_list() == []


@pytest.mark.parametrize("kind", ["iot", "consumer"])
def test_the_kind_is_kept_in_the_card_directory(tmp_path: Path, kind: str) -> None:
    Euicc.create(tmp_path / "card", fsync=False, kind=kind).close()
    assert json.loads((tmp_path / "card" / "files" / "config.json").read_text())["kind"] == kind
    assert Euicc.open(tmp_path / "card", fsync=False).kind == kind


def test_kind_argument_overrides_the_configured_one() -> None:
    card = Euicc.create(
        None, fsync=False, config=CardConfig(eid="0" * 32, kind="iot"), kind="consumer"
    )
    assert card.kind == "consumer"


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        Euicc.create(None, fsync=False, kind="m2m")


def test_cli_init_makes_the_asked_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from euicc_cli.sim_command import main

    assert main(["init", str(tmp_path / "c"), "--kind", "consumer"]) == 0
    assert "(consumer, SGP.22)" in capsys.readouterr().out
    assert Euicc.open(tmp_path / "c", fsync=False).kind == "consumer"
