"""euicc_sim.gp: GlobalPlatform GET DATA and GET STATUS on the ISD-R and the ECASD."""

from __future__ import annotations

from pathlib import Path

import pytest

from euicc_protocol import tlv
from euicc_protocol.eid import make_eid
from euicc_sim import gp
from euicc_sim.card import Euicc
from euicc_sim.config import CardConfig

TS48 = Path(__file__).resolve().parents[1] / "profiles" / "ts48"
PACKAGE = (TS48 / "TS48V1-A-UNIQUE.der").read_bytes()
EID = make_eid("89049032", "00000000000000000001")
EID_BYTES = bytes.fromhex(EID)

ISDR = "A0000005591010FFFFFFFF8900000100"
ECASD = "A0000005591010FFFFFFFF8900000200"


@pytest.fixture
def card() -> Euicc:
    return Euicc.create(None, eid=EID, fsync=False)


def send(card: Euicc, apdu: str) -> tuple[bytes, int]:
    """One APDU; a ``61xx`` answer is followed through GET RESPONSE on the same channel."""
    raw = card.transmit(bytes.fromhex(apdu))
    data, sw = raw[:-2], int.from_bytes(raw[-2:], "big")
    while sw >> 8 == 0x61:
        cla = bytes.fromhex(apdu)[0] & 0x03
        raw = card.transmit(bytes((cla, 0xC0, 0, 0, sw & 0xFF)))
        data, sw = data + raw[:-2], int.from_bytes(raw[-2:], "big")
    return data, sw


def select(card: Euicc, aid: str, cla: int = 0) -> None:
    _, sw = send(card, f"{cla:02X}A40404{len(aid) // 2:02X}{aid}00")
    assert sw == 0x9000


def entries(data: bytes) -> list[dict[bytes, list[bytes]]]:
    """The ``E3`` entries of a GET STATUS answer as {tag: [values]}."""
    out = []
    for entry in tlv.iter_tlvs(data):
        assert entry.tag == b"\xe3"
        fields: dict[bytes, list[bytes]] = {}
        for item in tlv.iter_tlvs(data, entry.value_start, entry.value_end):
            fields.setdefault(item.tag, []).append(item.value(data))
        out.append(fields)
    return out


def preload(card: Euicc, count: int, enable_first: bool = True) -> None:
    for i in range(count):
        card.preload(PACKAGE, iccid=f"8949449999999{i:06d}", enable=enable_first and i == 0)


# -- GET DATA ----------------------------------------------------------------------------------


def test_card_data_carries_card_recognition_data_with_the_gp_oids(card: Euicc) -> None:
    select(card, ISDR)
    data, sw = send(card, "80CA006600")
    assert sw == 0x9000
    outer = tlv.read_tlv(data)
    assert outer.tag == b"\x66" and outer.end == len(data)
    crd = tlv.read_tlv(data, outer.value_start)
    assert crd.tag == b"\x73"
    items = {i.tag: i.value(data) for i in tlv.iter_tlvs(data, crd.value_start, crd.value_end)}
    gp_oid = bytes.fromhex("2A864886FC6B")
    assert items[b"\x06"] == gp_oid + b"\x01"
    assert items[b"\x60"] == b"\x06\x0a" + gp_oid + bytes((2, 2, 3, 0))  # GP 2.3.0
    assert items[b"\x63"] == b"\x06\x07" + gp_oid + b"\x03"
    assert items[b"\x64"] == b"\x06\x09" + gp_oid + bytes((4, 3, 0x70))  # SCP03 i=70


def test_get_data_answers_with_interindustry_and_proprietary_class(card: Euicc) -> None:
    select(card, ISDR)
    assert send(card, "00CA006600") == send(card, "80CA006600")


def test_isdr_key_information_lists_its_scp03_key_set(card: Euicc) -> None:
    select(card, ISDR)
    data, sw = send(card, "80CA00E000")
    assert sw == 0x9000
    assert data == bytes.fromhex("E012" + "C00401308810C00402308810C00403308810")


def test_ecasd_key_information_lists_one_euicc_key_per_chain(card: Euicc) -> None:
    select(card, ECASD)
    data, sw = send(card, "80CA00E000")
    assert sw == 0x9000
    assert len(card.credentials.chains) == 2  # NIST and brainpool
    assert data == bytes.fromhex("E00C" + "C0040101B120C0040102B120")


def test_cplc_is_42_bytes_with_the_eid_in_the_serial_number(card: Euicc) -> None:
    select(card, ISDR)
    data, sw = send(card, "80CA9F7F00")
    assert sw == 0x9000
    assert data[:3] == b"\x9f\x7f\x2a" and len(data) == 45
    assert data[3 + 12 : 3 + 16] == EID_BYTES[10:14]  # IC serial number


def test_iin_and_cin_come_from_the_eid(card: Euicc) -> None:
    select(card, ISDR)
    assert send(card, "80CA004200") == (b"\x42\x04" + EID_BYTES[:4], 0x9000)
    assert send(card, "80CA004500") == (b"\x45\x10" + EID_BYTES, 0x9000)


def test_ecasd_answers_the_eid_the_sgp02_way(card: Euicc) -> None:
    select(card, ECASD)
    assert send(card, "80CA005A00") == (b"\x5a\x10" + EID_BYTES, 0x9000)


def test_eid_is_not_a_data_object_of_the_isdr(card: Euicc) -> None:
    select(card, ISDR)
    assert send(card, "80CA005A00") == (b"", 0x6A88)


@pytest.mark.parametrize("tag", ["0000", "00FF", "9F70", "DF01", "1234"])
@pytest.mark.parametrize("aid", [ISDR, ECASD])
def test_unknown_tag_is_referenced_data_not_found(card: Euicc, aid: str, tag: str) -> None:
    select(card, aid)
    assert send(card, f"80CA{tag}00") == (b"", 0x6A88)


def test_extended_card_resources_count_installed_profiles(card: Euicc) -> None:
    select(card, ISDR)
    data, _ = send(card, "80CAFF2100")
    assert data.startswith(b"\xff\x21") and b"\x81\x01\x00" in data
    preload(card, 2)
    data, _ = send(card, "80CAFF2100")
    assert b"\x81\x01\x02" in data
    free = int.from_bytes(data[data.index(b"\x82\x04") + 2 :][:4], "big")
    assert free == CardConfig(eid=EID).profile_memory - 2 * len(PACKAGE)


def test_get_data_le_shorter_than_the_object_continues_with_61xx(card: Euicc) -> None:
    select(card, ISDR)
    raw = card.transmit(bytes.fromhex("80CA006610"))
    assert len(raw) == 0x10 + 2 and raw[-2] == 0x61
    rest = card.transmit(bytes((0x00, 0xC0, 0, 0, raw[-1])))
    assert raw[:-2] + rest[:-2] == send(card, "80CA006600")[0]


def test_get_data_without_an_application_is_not_supported(card: Euicc) -> None:
    assert send(card, "80CA006600") == (b"", 0x6D00)


# -- GET STATUS --------------------------------------------------------------------------------


def test_get_status_isd_reports_the_isdr_as_secured(card: Euicc) -> None:
    select(card, ISDR)
    data, sw = send(card, "80F28002024F0000")
    assert sw == 0x9000
    [isd] = entries(data)
    assert isd[b"\x4f"] == [bytes.fromhex(ISDR)]
    assert isd[b"\x9f\x70"] == [b"\x0f"]
    assert isd[b"\xc5"] == [gp.PRIVILEGES_ISDR]


def test_get_status_applications_lists_ecasd_and_isdps_with_their_states(card: Euicc) -> None:
    preload(card, 2)
    select(card, ISDR)
    data, sw = send(card, "80F24002024F0000")
    assert sw == 0x9000
    found = {e[b"\x4f"][0]: e for e in entries(data)}
    assert set(found) == {bytes.fromhex(ECASD)} | {p.isdp_aid for p in card.state.profiles}
    enabled, disabled = card.state.profiles
    assert found[enabled.isdp_aid][b"\x9f\x70"] == [b"\x3f"]
    assert found[disabled.isdp_aid][b"\x9f\x70"] == [b"\x1f"]
    assert found[enabled.isdp_aid][b"\xcc"] == [bytes.fromhex(ISDR)]
    assert found[enabled.isdp_aid][b"\xc4"] == [gp.ISDP_ELF_AID]


def test_get_status_load_files_with_and_without_modules(card: Euicc) -> None:
    select(card, ISDR)
    [elf], _ = entries(send(card, "80F22002024F0000")[0]), None
    assert elf[b"\x4f"] == [gp.ISDP_ELF_AID] and b"\x84" not in elf
    [elf_mod] = entries(send(card, "80F21002024F0000")[0])
    assert elf_mod[b"\x84"] == [gp.ISDP_MODULE_AID]


def test_get_status_aid_prefix_and_tag_list_narrow_the_answer(card: Euicc) -> None:
    preload(card, 2)
    select(card, ISDR)
    first = card.state.profiles[0].isdp_aid
    data, sw = send(card, f"80F2400217 4F10{first.hex()} 5C034F9F70 00".replace(" ", ""))
    assert sw == 0x9000
    assert entries(data) == [{b"\x4f": [first], b"\x9f\x70": [b"\x3f"]}]


def test_get_status_legacy_format(card: Euicc) -> None:
    select(card, ISDR)
    data, sw = send(card, "80F28000024F0000")
    assert sw == 0x9000
    assert data == b"\x10" + bytes.fromhex(ISDR) + b"\x0f" + gp.PRIVILEGES_ISDR[:1]


def test_get_status_continues_with_6310_and_next_occurrence(card: Euicc) -> None:
    preload(card, 12)
    select(card, ISDR)
    seen: list[bytes] = []
    data, sw = send(card, "80F24002024F0000")
    pages = 1
    while sw == 0x6310:
        assert len(data) <= gp.MAX_STATUS_RESPONSE
        seen += [e[b"\x4f"][0] for e in entries(data)]
        data, sw = send(card, "80F24003024F0000")
        pages += 1
    assert sw == 0x9000 and pages > 1
    seen += [e[b"\x4f"][0] for e in entries(data)]
    assert seen == [bytes.fromhex(ECASD)] + [p.isdp_aid for p in card.state.profiles]
    # Nothing left: "next" finds nothing.
    assert send(card, "80F24003024F0000") == (b"", 0x6A88)


def test_next_occurrence_without_a_first_call_is_not_found(card: Euicc) -> None:
    select(card, ISDR)
    assert send(card, "80F24003024F0000") == (b"", 0x6A88)


def test_continuation_is_lost_at_reset(card: Euicc) -> None:
    preload(card, 12)
    select(card, ISDR)
    assert send(card, "80F24002024F0000")[1] == 0x6310
    card.reset()
    select(card, ISDR)
    assert send(card, "80F24003024F0000") == (b"", 0x6A88)


def test_ecasd_reports_only_itself(card: Euicc) -> None:
    preload(card, 1)
    select(card, ECASD)
    [me] = entries(send(card, "80F24002024F0000")[0])
    assert me[b"\x4f"] == [bytes.fromhex(ECASD)]
    assert send(card, "80F28002024F0000") == (b"", 0x6A88)
    assert send(card, "80F22002024F0000") == (b"", 0x6A88)


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("80F20002024F0000", 0x6A86),  # no such P1
        ("80F24006024F0000", 0x6A86),  # P2 bits outside 0..1
        ("80F2400200", 0x6700),  # no search criteria
        ("80F2400202990000", 0x6A80),  # unknown search tag
        ("80F24002034F050000", 0x6A80),  # malformed TLV
        ("80F24002025C0000", 0x6A80),  # tag list but no AID criterion
        ("80F240020B4F09A0000005591010000000", 0x6A88),  # no AID with this prefix
        ("00F24002024F0000", 0x6E00),  # interindustry class
    ],
)
def test_bad_get_status_gets_its_status_word(card: Euicc, apdu: str, sw: int) -> None:
    select(card, ISDR)
    assert send(card, apdu) == (b"", sw)


def test_card_shell_start_up_sequence(card: Euicc) -> None:
    """What a Python card shell sends to ISD-R and ECASD at start-up (GET DATA 66/E0 and
    GET STATUS, on the basic and a logical channel)."""
    preload(card, 1)
    for cla, aid in ((0x00, ISDR), (0x00, ECASD)):
        select(card, aid, cla)
        for tag in ("0066", "00E0"):
            data, sw = send(card, f"{cla | 0x80:02X}CA{tag}00")
            assert sw == 0x9000 and data
        assert send(card, f"{cla | 0x80:02X}F24002024F0000")[1] == 0x9000
    channel = card.transmit(bytes.fromhex("0070000001"))[0]
    select(card, ISDR, channel)
    data, sw = send(card, f"{0x80 | channel:02X}F28002024F0000")
    assert sw == 0x9000 and entries(data)[0][b"\x4f"] == [bytes.fromhex(ISDR)]
