"""Euicc.preload: factory installation of SAIP packages (the TS.48 test profiles)."""

from __future__ import annotations

from pathlib import Path

import pytest

from euicc_protocol import tlv
from euicc_protocol.eid import make_eid
from euicc_protocol.iccid import iccid_from_header
from euicc_sim.card import Euicc, ProfileInstallError
from euicc_sim.config import CardConfig
from euicc_sim.state import ProfileClass as CardProfileClass
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport
from ipa.types import ProfileClass, ProfileState

TS48 = Path(__file__).resolve().parents[1] / "profiles" / "ts48"
EID = make_eid("89049032", 1234)
TS48_PROFILE_TYPE = "GSMA Generic eUICC Test Profile"
TS48_SPN = "GSMA_TEST"


def readme_table() -> dict[str, tuple[str, str, str]]:
    """file name -> (ICCID digits, header coding, EF coding) from profiles/ts48/README.md."""
    rows = {}
    for line in (TS48 / "README.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[0].endswith(".der"):
            rows[cells[0]] = (cells[3], cells[4], cells[5])
    return rows


TABLE = readme_table()
PACKAGES = sorted(TS48.glob("*.der"))


def package(name: str | int = 0) -> bytes:
    path = PACKAGES[name] if isinstance(name, int) else TS48 / name
    return path.read_bytes()


def header_iccid(data: bytes) -> bytes:
    """The ICCID (tag 83) of the ProfileHeader, the package's first PE, read by hand."""
    header = tlv.read_tlv(data, 0)
    for item in tlv.iter_tlvs(data, header.value_start, header.value_end):
        if item.tag == b"\x83":
            return item.value(data)
    raise AssertionError("ProfileHeader without an ICCID")


@pytest.fixture
def card() -> Euicc:
    return Euicc.create(None, eid=EID)


def client(card: Euicc) -> Es10Client:
    return Es10Client.open(InProcessTransport(card))


def test_readme_lists_all_nine_packages() -> None:
    assert len(PACKAGES) == 9
    assert set(TABLE) == {p.name for p in PACKAGES}


def test_all_nine_packages_preload_with_their_true_iccids(card: Euicc) -> None:
    for path in PACKAGES:
        data = path.read_bytes()
        digits, header, ef = TABLE[path.name]
        assert header_iccid(data).hex().upper() == header
        assert iccid_from_header(bytes.fromhex(header)) == digits
        installed = card.preload(data)
        assert installed.iccid.hex().upper() == ef
    infos = client(card).get_profiles_info()
    assert [(p.iccid, p.iccid_raw.hex().upper()) for p in infos] == [
        TABLE[p.name][::2] for p in PACKAGES
    ]
    assert len({p.isdp_aid for p in infos}) == 9
    assert all(p.profile_state is ProfileState.DISABLED for p in infos)


def test_names_provider_and_class_come_from_the_package(card: Euicc) -> None:
    card.preload(package())
    (info,) = client(card).get_profiles_info()
    assert info.profile_name == TS48_PROFILE_TYPE
    assert info.service_provider_name == TS48_SPN
    assert info.profile_class is ProfileClass.TEST
    assert info.profile_nickname is None
    assert info.profile_policy_rules is None
    assert info.notification_configuration_info is None


def test_metadata_can_be_overridden(card: Euicc) -> None:
    card.preload(
        package(),
        iccid="8944000000000000018",
        profile_name="Operator profile",
        service_provider_name="Example Mobile",
        profile_class=CardProfileClass.OPERATIONAL,
        nickname="work",
        notification_address="notify.example.com",
        ppr1=True,
        ppr2=True,
    )
    (info,) = client(card).get_profiles_info()
    assert info.iccid == "8944000000000000018"
    assert info.profile_name == "Operator profile"
    assert info.service_provider_name == "Example Mobile"
    assert info.profile_class is ProfileClass.OPERATIONAL
    assert info.profile_nickname == "work"
    assert set(info.profile_policy_rules) == {"ppr1", "ppr2"}
    (config,) = info.notification_configuration_info
    assert config.notification_address == "notify.example.com"
    assert {e.asn1_name for e in config.profile_management_operation} == {
        "notificationEnable",
        "notificationDisable",
        "notificationDelete",
    }


def test_duplicate_iccid_is_refused(card: Euicc) -> None:
    card.preload(package(0))
    with pytest.raises(ProfileInstallError) as excinfo:
        card.preload(package(0))
    assert excinfo.value.code == 9
    assert "ICCID" in str(excinfo.value)
    first_iccid = TABLE[PACKAGES[0].name][0]
    with pytest.raises(ProfileInstallError):
        card.preload(package(1), iccid=first_iccid)
    assert len(card.state.profiles) == 1


def test_full_card_refuses_another_profile() -> None:
    card = Euicc.create(None, eid=EID, config=CardConfig(eid=EID, max_profiles=2))
    card.preload(package(0))
    card.preload(package(1))
    with pytest.raises(ProfileInstallError) as excinfo:
        card.preload(package(2))
    assert excinfo.value.code == 10
    assert "room" in str(excinfo.value)
    assert len(card.state.profiles) == 2


def test_profile_memory_limit_refuses_a_package_that_does_not_fit() -> None:
    config = CardConfig(eid=EID, profile_memory=len(package(0)) + len(package(1)) + 100)
    card = Euicc.create(None, eid=EID, config=config)
    card.preload(package(0))
    card.preload(package(1))
    with pytest.raises(ProfileInstallError) as excinfo:
        card.preload(package(2))
    assert excinfo.value.code == 10


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: b"",
        lambda d: b"\x00\x01\x02",
        lambda d: d[:100],
        lambda d: d[:-1],
        lambda d: d + b"\x00",
        lambda d: d[tlv.read_tlv(d, 0).end :],
        lambda d: d[: tlv.read_tlv(d, 0).end],
        lambda d: b"\xff" * 64,
    ],
    ids=[
        "empty",
        "junk",
        "truncated",
        "last-byte-cut",
        "trailing-byte",
        "no-header",
        "header-only",
        "ff",
    ],
)
def test_malformed_package_is_refused_with_a_clear_message(card: Euicc, damage) -> None:
    with pytest.raises(ProfileInstallError) as excinfo:
        card.preload(damage(package()))
    message = str(excinfo.value)
    assert message.startswith("not a valid profile package: ")
    assert len(message) > len("not a valid profile package: ")
    assert card.state.profiles == ()


def test_enable_leaves_the_profile_enabled_without_notifications(card: Euicc) -> None:
    installed = card.preload(package(), notification_address="notify.example.com", enable=True)
    es10 = client(card)
    (info,) = es10.get_profiles_info()
    assert info.profile_state is ProfileState.ENABLED
    assert info.isdp_aid == installed.isdp_aid
    assert es10.list_notification() == []


def test_enable_switches_from_the_previously_enabled_profile(card: Euicc) -> None:
    card.preload(package(0), enable=True)
    card.preload(package(1), enable=True)
    states = [p.profile_state for p in client(card).get_profiles_info()]
    assert states == [ProfileState.DISABLED, ProfileState.ENABLED]


def test_preloaded_profiles_survive_reopen(tmp_path: Path) -> None:
    card = Euicc.create(tmp_path / "card", eid=EID, fsync=False)
    card.preload(package(0), nickname="kept", enable=True)
    card.preload(package(1), profile_class=CardProfileClass.OPERATIONAL)
    before = client(card).get_profiles_info()
    card.close()
    reopened = Euicc.open(tmp_path / "card", fsync=False)
    assert client(reopened).get_profiles_info() == before
    assert reopened.profile_package(reopened.state.profiles[0]) == package(0)


def test_provisioning_profile_can_be_preloaded_enabled(card: Euicc) -> None:
    card.preload(package(), profile_class=CardProfileClass.PROVISIONING, enable=True)
    (info,) = client(card).get_profiles_info()
    assert info.profile_class is ProfileClass.PROVISIONING
    assert info.profile_state is ProfileState.ENABLED
