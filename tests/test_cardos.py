"""Tests of euicc_sim.cardos (with euicc_sim.filesystem): the card OS below the applications.

The applications here are test doubles; what the card OS must do comes from ISO/IEC 7816-4,
ETSI TS 102 221 and GSMA SGP.22 v2.5 §5.7.2 (STORE DATA), including the start-up traces that
common PC/SC clients send, replayed byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from euicc_sim.apdu import StatusWordError, cla_for
from euicc_sim.cardos import ATR, CardOS
from euicc_sim.filesystem import FileSystem

ISD_R = bytes.fromhex("A0000005591010FFFFFFFF8900000100")
ECASD = bytes.fromhex("A0000005591010FFFFFFFF8900000200")
ICCID_EF = bytes.fromhex("98001032547698103214")
EID_TLV = bytes.fromhex("5A10") + bytes(range(16))


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def fci(aid: bytes) -> bytes:
    body = bytes((0x84, len(aid))) + aid + h("A5 04 9F 65 01 FF")
    return bytes((0x6F, len(body))) + body


class EchoApp:
    """Records what the card OS hands it; answers with ``respond(request)`` (echo by default)."""

    def __init__(self, aid: bytes) -> None:
        self.aid = aid
        self.requests: list[tuple[int, bytes]] = []
        self.closed: list[int] = []
        self.resets = 0
        self.respond: Callable[[bytes], object] = lambda request: request

    def select_response(self) -> bytes:
        return fci(self.aid)

    def store_data(self, channel: int, request: bytes) -> bytes:
        self.requests.append((channel, request))
        return self.respond(request)  # type: ignore[return-value]

    def reset(self) -> None:
        self.resets += 1

    def channel_closed(self, channel: int) -> None:
        self.closed.append(channel)


class EcasdApp(EchoApp):
    def get_data(self, tag: int) -> bytes:
        if tag != 0x5A:
            raise StatusWordError(0x6A88)
        return EID_TLV


class Card:
    """A CardOS with an ISD-R double, an ECASD double and a file system."""

    def __init__(self, iccid: bytes | None = ICCID_EF) -> None:
        self.isdr = EchoApp(ISD_R)
        self.ecasd = EcasdApp(ECASD)
        self.iccid = iccid
        self.dir_records: list[bytes] = []
        fs = FileSystem(iccid=lambda: self.iccid, dir_records=lambda: self.dir_records)
        self.os = CardOS([self.isdr, self.ecasd], fs)

    def send(self, apdu: bytes | str) -> bytes:
        response = self.os.transmit(h(apdu) if isinstance(apdu, str) else apdu)
        assert isinstance(response, bytes) and len(response) >= 2
        return response

    def sw(self, apdu: bytes | str) -> str:
        """Send and return the whole response as upper-case hex (for short answers)."""
        return self.send(apdu).hex().upper()

    def exchange(self, apdu: bytes | str, gr_cla: int | None = None) -> tuple[bytes, int]:
        """Send; follow ``61 xx`` with GET RESPONSE (``Le=xx``) like lpac does."""
        response = self.send(apdu)
        first = h(apdu)[0] if isinstance(apdu, str) else apdu[0]
        cla = (first & 0x7F & ~0x20 if first & 0x40 else first & 0x03) if gr_cla is None else gr_cla
        data = response[:-2]
        while response[-2] == 0x61:
            le = response[-1]
            response = self.send(bytes((cla, 0xC0, 0x00, 0x00, le)))
            assert len(response) - 2 == (le or 256) or response[-2:] == h("9000")
            data += response[:-2]
        return data, int.from_bytes(response[-2:], "big")

    def select_isdr(self, channel: int = 0, p2: int = 0x00) -> None:
        apdu = bytes((cla_for(channel), 0xA4, 0x04, p2, 16)) + ISD_R
        data, sw = self.exchange(apdu)
        assert (data, sw) == (fci(ISD_R), 0x9000)

    def store_data(self, channel: int, request: bytes) -> tuple[bytes, int]:
        apdu = bytes((cla_for(channel, True), 0xE2, 0x91, 0x00, len(request))) + request
        return self.exchange(apdu)


@pytest.fixture
def card() -> Card:
    return Card()


def tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag, len(value))) + value


def parse_tlvs(data: bytes) -> dict[int, bytes]:
    """One level of one-byte-tag, short-length TLVs (enough for FCPs)."""
    out, pos = {}, 0
    while pos < len(data):
        tag, length = data[pos], data[pos + 1]
        assert length < 0x80
        out[tag] = data[pos + 2 : pos + 2 + length]
        pos += 2 + length
    assert pos == len(data)
    return out


ISO_SW1 = {0x61, 0x62, 0x63, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6D, 0x6E, 0x6F, 0x90}


# -- ATR ----------------------------------------------------------------------------------------


def test_atr_is_a_well_formed_t0_uicc_atr_with_correct_tck(card: Card) -> None:
    atr = card.os.reset()
    assert atr == ATR == card.os.atr
    assert atr[0] == 0x3B
    # Interface bytes: T0 -> TA1, TD1 (T=0) -> TD2 (T=15) -> TA3; then K historical + TCK.
    assert atr[1] >> 4 == 0x9 and atr[3] == 0x80 and atr[4] == 0x1F and atr[5] == 0xC7
    historical = atr[1] & 0x0F
    assert len(atr) == 6 + historical + 1
    assert atr[6] == 0x80  # category indicator: compact TLV
    assert reduce(lambda a, b: a ^ b, atr[1:]) == 0  # TCK makes T0..TCK XOR to zero


# -- start-up traces of common PC/SC clients, byte for byte ------------------------------------


def test_chip_info_lpa_start_up_sequence(card: Card) -> None:
    assert card.sw("80 AA 00 00 0A A9 08 81 00 82 01 01 83 01 07") == "9000"
    assert card.sw("00 70 00 00 01") == "019000"  # exactly one byte + 90 00
    response = card.send(h("01 A4 04 00 10") + ISD_R)
    assert response == bytes((0x61, len(fci(ISD_R))))
    assert card.send(h("81 C0 00 00") + response[1:]) == fci(ISD_R) + h("9000")
    for request in ("BF3E035C015A", "BF3C00", "BF4300", "BF2200"):
        apdu = "81 E2 91 00" + f"{len(h(request)):02X}" + request
        assert card.send(apdu) == bytes((0x61, len(h(request))))
        assert card.send(f"81 C0 00 00 {len(h(request)):02X}") == h(request + "9000")
    assert card.isdr.requests == [(1, h(r)) for r in ("BF3E035C015A", "BF3C00", "BF4300", "BF2200")]
    assert card.sw("00 70 80 01 00") == "9000"
    assert card.isdr.closed == [1]
    assert card.sw("81 E2 91 00 03 BF 2E 00") == "6881"


def test_iot_ipad_start_up_sequence(card: Card) -> None:
    assert card.sw("80 AA 00 00 05 A9 03 83 01 07") == "9000"
    assert card.sw("00 70 00 01 00") == "9000"  # fixed channel, no data
    response = card.send(h("01 A4 04 04 10") + ISD_R)
    assert response[0] == 0x61  # plain 90 00 would be a failure for this IPAd
    assert card.send(h("01 C0 00 00") + response[1:]) == fci(ISD_R) + h("9000")
    card.isdr.respond = lambda request: h("BF3E 12 5A 10") + bytes(16)
    assert card.sw("81 E2 91 00 06 BF 3E 03 5C 01 5A") == "6115"
    assert card.send("01 C0 00 00 15") == h("BF3E 12 5A 10") + bytes(16) + h("9000")
    card.isdr.respond = lambda request: h("BF55 00")
    assert card.sw("81 E2 91 00 03 BF 55 00") == "6103"
    assert card.sw("01 C0 00 00 03") == "BF55009000"
    assert card.sw("00 70 80 01") == "9000"


def test_card_shell_start_up_sequence(card: Card) -> None:
    # SELECT MF with FCP: 61 xx, then the FCP through GET RESPONSE with 90 00.
    response = card.send("00 A4 00 04 02 3F 00")
    assert response[0] == 0x61
    fcp = card.send(h("00 C0 00 00") + response[1:])
    assert fcp[-2:] == h("9000") and fcp[0] == 0x62 and len(fcp) - 2 == response[1]
    assert card.exchange("00 A4 00 04 02 2F 00")[1] == 0x9000  # EF.DIR
    assert card.sw("A0 A4 00 00 02 7F 20") == "6E00"  # GSM class: not supported
    # SELECT ISD-R (P2=04, pySim sends Le=00) and the SGP.32 probe.
    data, sw = card.exchange(h("00 A4 04 04 10") + ISD_R + h("00"))
    assert (data, sw) == (fci(ISD_R), 0x9000)
    card.isdr.respond = lambda request: h("BF56 03 80 01 00")
    assert card.exchange("80 E2 91 00 03 BF 56 00") == (h("BF56 03 80 01 00"), 0x9000)
    # After a reset: ISD-R and GetEID on the basic channel.
    card.os.reset()
    card.select_isdr(0, 0x04)
    card.isdr.respond = lambda request: EID_TLV
    assert card.exchange("80 E2 91 00 06 BF 3E 03 5C 01 5A 00") == (EID_TLV, 0x9000)
    # The probes.
    for fid in ("7F20", "7FE0", "7F25"):
        assert card.sw("00 A4 00 04 02" + fid) == "6A82"
    for fid in ("3F00", "2F00"):
        assert card.exchange("00 A4 00 04 02" + fid)[1] == 0x9000
    assert card.exchange(h("00 A4 04 04 10") + ECASD + h("00")) == (fci(ECASD), 0x9000)
    for aid in ("A000000003000000", "A00000015141434C00"):
        assert card.sw(f"00 A4 04 04 {len(h(aid)):02X} {aid} 00") == "6A82"
    card.select_isdr(0, 0x04)
    for aid in ("A000000087100A", "A0000000871004", "A0000000871002", "A000000087100B"):
        assert card.sw(f"00 A4 04 04 07 {aid} 00") == "6A82"
    data, sw = card.exchange("00 A4 00 04 02 2F E2")
    assert sw == 0x9000 and parse_tlvs(data[2:])[0x80] == h("000A")
    assert card.send("00 B0 00 00 0A") == ICCID_EF + h("9000")


def test_ef_iccid_is_missing_without_an_enabled_profile() -> None:
    card = Card(iccid=None)
    assert card.sw("00 A4 00 04 02 2F E2") == "6A82"
    assert card.sw("00 B0 82 00 0A") == "6A82"  # nor by SFI
    card.iccid = ICCID_EF
    assert card.exchange("00 A4 00 04 02 2F E2")[1] == 0x9000
    card.iccid = None  # profile disabled meanwhile
    assert card.sw("00 B0 00 00 0A") == "6A82"


# -- TERMINAL CAPABILITY ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("80 AA 00 00 02 A9 00", "9000"),
        ("80 AA 00 00 04 A9 81 02 80", "6A80"),  # value shorter than its length
        ("80 AA 00 00 03 A9 05 83", "6A80"),  # length beyond the data
        ("80 AA 00 00 05 A9 03 83 02 07", "6A80"),  # inner TLV overruns
        ("80 AA 00 00 02 AB 00", "6A80"),  # not A9
        ("80 AA 00 00 04 A9 00 83 00", "6A80"),  # trailing data after A9
        ("80 AA 00 00", "6700"),
        ("80 AA 00 01 05 A9 03 83 01 07", "6A86"),
        ("00 AA 00 00 05 A9 03 83 01 07", "6E00"),
        ("81 AA 00 00 05 A9 03 83 01 07", "6881"),
    ],
)
def test_terminal_capability(card: Card, apdu: str, sw: str) -> None:
    assert card.sw(apdu) == sw


# -- MANAGE CHANNEL -----------------------------------------------------------------------------


def test_card_assigned_channels_are_the_lowest_free_then_6a81(card: Card) -> None:
    assert [card.sw("00 70 00 00 01") for _ in range(19)] == [f"{n:02X}9000" for n in range(1, 20)]
    assert card.sw("00 70 00 00 01") == "6A81"
    assert card.sw("00 70 80 07") == "9000"
    assert card.sw("00 70 80 03 00") == "9000"
    assert card.sw("00 70 00 00 01") == "039000"
    assert card.sw("00 70 00 00 00") == "079000"  # Le=00 (256) also takes the byte
    assert card.os.open_channels == tuple(range(20))


def test_fixed_channel_open_and_close(card: Card) -> None:
    assert card.sw("00 70 00 05 00") == "9000"
    assert card.sw("00 70 00 05") == "6A86"  # already open
    assert card.sw("00 70 00 13") == "9000"  # 19: the highest
    assert card.sw("00 70 00 14 00") == "6A86"  # 20: does not exist
    assert card.os.open_channels == (0, 5, 19)
    assert card.sw("00 70 80 05") == "9000"
    assert card.sw("00 70 80 05 00") == "6881"  # not open
    assert card.sw("00 70 80 00") == "6A86"  # channel 0 cannot be closed
    assert card.sw("00 70 80 14") == "6A86"
    assert card.sw("00 70 00 00") == "6700"  # card-assigned needs Le for the number
    assert card.sw("00 70 40 00 01") == "6A86"
    assert card.sw("00 70 00 02 01 00") == "6700"  # no data allowed
    assert card.sw("80 70 00 00 01") == "6E00"  # interindustry only
    assert card.os.open_channels == (0, 19)


def test_a_channel_may_close_itself_and_close_from_another_channel(card: Card) -> None:
    card.sw("00 70 00 00 01")
    card.sw("00 70 00 00 01")
    assert card.sw("01 70 80 01") == "9000"
    assert card.sw("02 70 80 02 00") == "9000"
    assert card.os.open_channels == (0,)


def test_channel_opened_from_basic_channel_starts_with_the_mf(card: Card) -> None:
    card.select_isdr(0)
    assert card.sw("00 70 00 00 01") == "019000"
    assert card.sw("81 E2 91 00 03 BF 2E 00") == "6985"  # no application there
    card.sw("00 A4 00 0C 02 2F E2")
    assert card.sw("00 70 00 00 01") == "029000"
    assert card.sw("02 B0 00 00 0A") == "6986"  # the MF, not channel 0's EF, is current


def test_channel_opened_from_another_channel_inherits_its_selection(card: Card) -> None:
    card.sw("00 70 00 00 01")
    card.select_isdr(1)
    assert card.sw("01 70 00 00 01") == "029000"
    assert card.exchange("82 E2 91 00 02 AB CD") == (h("ABCD"), 0x9000)
    assert card.isdr.requests == [(2, h("ABCD"))]
    card.sw("01 A4 00 0C 02 2F E2")
    assert card.sw("01 70 00 00 01") == "039000"
    assert card.send("03 B0 00 00 0A") == ICCID_EF + h("9000")
    card.sw("00 70 80 03")
    card.sw("00 70 80 02")
    card.sw("00 70 80 01")
    assert card.isdr.closed == [2]  # channel 1 had moved on to EF.ICCID


@pytest.mark.parametrize("channel", range(1, 20))
def test_every_channel_works_with_its_own_cla(card: Card, channel: int) -> None:
    assert card.sw(f"00 70 00 {channel:02X} 00") == "9000"
    card.select_isdr(channel)
    card.isdr.respond = lambda request: request * 100
    data, sw = card.store_data(channel, h("A1B2"))
    assert (data, sw) == (h("A1B2") * 100, 0x9000)
    assert card.isdr.requests == [(channel, h("A1B2"))]
    # GET RESPONSE in the proprietary class of the same channel works as well.
    proprietary = cla_for(channel, True)
    data, sw = card.exchange(bytes((proprietary, 0xE2, 0x91, 0, 1, 0x55)), gr_cla=proprietary)
    assert (data, sw) == (b"\x55" * 100, 0x9000)
    assert card.sw(f"00 70 80 {channel:02X}") == "9000"
    assert card.isdr.closed == [channel]
    assert card.sw(bytes((cla_for(channel), 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00))) == "6881"


@pytest.mark.parametrize("channel", range(4, 20))
def test_channels_from_4_reject_the_first_interindustry_cla_lpac_would_compute(
    card: Card, channel: int
) -> None:
    card.sw(f"00 70 00 {channel:02X} 00")
    card.select_isdr(channel)
    wrong = bytes(((0x80 & 0xF0) | channel, 0xE2, 0x91, 0x00, 0x02, 0xBF, 0x2E))
    assert card.send(wrong)[-2] != 0x61 and card.send(wrong)[-2:] != h("9000")
    assert card.isdr.requests == []


def test_closed_channel_answers_6881(card: Card) -> None:
    assert card.sw("41 A4 00 0C 02 3F 00") == "6881"
    assert card.sw("C5 E2 91 00 01 00") == "6881"
    assert card.sw("03 C0 00 00 00") == "6881"


@pytest.mark.parametrize(
    ("cla", "sw"), [("04", "6882"), ("0C", "6882"), ("60", "6882"), ("10", "6884"), ("50", "6884")]
)
def test_secure_messaging_and_chaining_are_not_supported(card: Card, cla: str, sw: str) -> None:
    assert card.sw(cla + " A4 00 0C 02 3F 00") == sw


# -- SELECT -------------------------------------------------------------------------------------


def test_select_by_aid_p2_0c_returns_no_data(card: Card) -> None:
    assert card.sw(h("00 A4 04 0C 10") + ISD_R) == "9000"
    assert card.exchange("80 E2 91 00 01 42") == (h("42"), 0x9000)


def test_select_by_aid_with_fci_and_fcp_variants(card: Card) -> None:
    for p2 in (0x00, 0x04):
        card.select_isdr(0, p2)


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00 A4 04 00 10 A0000005591010FFFFFFFF8900000300", "6A82"),
        ("00 A4 04 00 0F A0000005591010FFFFFFFF89000001", "6A82"),  # partial: exact match only
        ("00 A4 04 00", "6A82"),  # no AID
        ("00 A4 04 02 10 A0000005591010FFFFFFFF8900000100", "6A86"),  # next occurrence
        ("00 A4 04 4C 10 A0000005591010FFFFFFFF8900000100", "6A86"),
        ("80 A4 04 00 10 A0000005591010FFFFFFFF8900000100", "6E00"),
        ("00 A4 05 00 10 A0000005591010FFFFFFFF8900000100", "6A86"),
        ("00 A4 00 04 03 3F 00 00 00", "6700"),
        ("00 A4 00 04 01 3F", "6700"),
        ("00 A4 08 04 03 2F 00 01", "6700"),
        ("00 A4 08 04 04 2F 00 2F E2", "6A82"),  # an EF has no children
        ("00 A4 08 04 02 7F 10", "6A82"),
    ],
)
def test_select_errors(card: Card, apdu: str, sw: str) -> None:
    assert card.sw(apdu) == sw


def test_failed_select_keeps_the_current_selection(card: Card) -> None:
    card.select_isdr(0)
    assert card.sw("00 A4 04 00 08 A000000003000000") == "6A82"
    assert card.sw("00 A4 00 04 02 7F 20") == "6A82"
    assert card.exchange("80 E2 91 00 01 42") == (h("42"), 0x9000)


def test_select_by_fid_deselects_the_application(card: Card) -> None:
    card.select_isdr(0)
    assert card.sw("00 A4 00 0C 02 3F 00") == "9000"
    assert card.sw("80 E2 91 00 01 42") == "6985"


def test_select_by_path_and_empty_select_mf(card: Card) -> None:
    data, sw = card.exchange("00 A4 08 04 02 2F E2")
    assert sw == 0x9000 and parse_tlvs(data[2:])[0x83] == h("2FE2")
    data, sw = card.exchange("00 A4 09 04 02 2F 00")
    assert sw == 0x9000 and parse_tlvs(data[2:])[0x83] == h("2F00")
    data, sw = card.exchange("00 A4 00 00 00")  # P1-P2 00 00, no data: the MF
    assert sw == 0x9000 and parse_tlvs(data[2:])[0x83] == h("3F00")


def test_mf_fcp_is_a_plausible_ts_102_221_fcp(card: Card) -> None:
    data, sw = card.exchange("00 A4 00 04 02 3F 00 00")  # case 4 with Le=00 as well
    assert sw == 0x9000 and data[0] == 0x62 and data[1] == len(data) - 2
    fcp = parse_tlvs(data[2:])
    assert fcp[0x82] == h("7821") and fcp[0x83] == h("3F00") and fcp[0x8A] == h("05")
    assert set(parse_tlvs(fcp[0xA5])) == {0x80, 0x87}
    assert parse_tlvs(fcp[0xC6]) == {0x90: h("00"), 0x83: h("01")}
    assert 0x8C in fcp


def test_ef_fcps_describe_size_structure_and_sfi(card: Card) -> None:
    fcp = parse_tlvs(card.exchange("00 A4 00 04 02 2F E2")[0][2:])
    assert (fcp[0x82], fcp[0x80], fcp[0x88]) == (h("4121"), h("000A"), h("10"))
    card.dir_records = [h("61 12 4F 10") + ISD_R]
    fcp = parse_tlvs(card.exchange("00 A4 00 04 02 2F 00")[0][2:])
    assert (fcp[0x82], fcp[0x80], fcp[0x88]) == (h("4221 0020 01"), h("0020"), h("F0"))


# -- READ BINARY / READ RECORD ------------------------------------------------------------------


def test_read_binary(card: Card) -> None:
    card.exchange("00 A4 00 04 02 2F E2")
    assert card.send("00 B0 00 00 00") == ICCID_EF + h("9000")
    assert card.send("00 B0 00 04 03") == ICCID_EF[4:7] + h("9000")
    assert card.sw("00 B0 00 0A 01") == "6B00"
    assert card.send("00 B0 82 02 00") == ICCID_EF[2:] + h("9000")  # SFI 02, offset 2
    assert card.sw("80 B0 00 00 0A") == "6E00"
    assert card.sw("00 B0 9E 00 00") == "6981"  # SFI 1E is EF.DIR: records
    assert card.sw("00 B0 A2 00 00") == "6A86"


def test_read_record(card: Card) -> None:
    card.dir_records = [h("61 12 4F 10") + ISD_R, h("61 03 4F 01 AA")]
    card.exchange("00 A4 00 04 02 2F 00")
    rec1 = (h("61 12 4F 10") + ISD_R).ljust(32, b"\xff")
    assert card.send("00 B2 01 04 20") == rec1 + h("9000")
    assert card.send("00 B2 02 04 00") == h("61 03 4F 01 AA").ljust(32, b"\xff") + h("9000")
    assert card.sw("00 B2 03 04 20") == "6A83"
    assert card.sw("00 B2 00 04 20") == "6A83"
    assert card.sw("00 B2 01 02 20") == "6A86"  # next record mode: not supported
    assert card.send("00 B2 01 F4 20") == rec1 + h("9000")  # SFI 1E
    assert card.sw("00 B2 01 14 00") == "6981"  # SFI 02: transparent
    card.dir_records = []
    assert card.sw("00 B2 01 04 00") == "6981"  # SFI referencing made EF.ICCID current
    assert card.send("00 B2 01 F4 00") == b"\xff" * 32 + h("9000")


def test_read_without_a_current_ef(card: Card) -> None:
    assert card.sw("00 B0 00 00 00") == "6986"  # MF selected
    card.select_isdr(0)
    assert card.sw("00 B2 01 04 00") == "6986"


# -- GET RESPONSE -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 255, 256, 257, 300, 512, 1000])
@pytest.mark.parametrize("gr_class", [0x00, 0x80])
def test_long_responses_come_in_256_byte_slices(card: Card, length: int, gr_class: int) -> None:
    card.select_isdr(0)
    payload = bytes(i & 0xFF for i in range(length))
    card.isdr.respond = lambda request: payload
    response = card.send("80 E2 91 00 01 00")
    assert response == bytes((0x61, min(length, 256) & 0xFF))
    got = b""
    while response[-2] == 0x61:
        response = card.send(bytes((gr_class, 0xC0, 0x00, 0x00, response[-1])))
        assert len(response) - 2 <= 256
        got += response[:-2]
        remaining = length - len(got)
        expected_sw = h("9000") if remaining == 0 else bytes((0x61, min(remaining, 256) & 0xFF))
        assert response[-2:] == expected_sw
    assert got == payload


def test_get_response_with_short_le_leaves_the_rest_pending(card: Card) -> None:
    card.select_isdr(0)
    card.isdr.respond = lambda request: bytes(range(40))
    assert card.sw("80 E2 91 00 01 00") == "6128"
    assert card.send("00 C0 00 00 10") == bytes(range(16)) + h("6118")
    assert card.send("80 C0 00 00 00") == bytes(range(16, 40)) + h("9000")  # asks more
    assert card.sw("00 C0 00 00 00") == "6985"  # nothing pending any more


def test_get_response_without_le_means_256(card: Card) -> None:
    card.select_isdr(0)
    card.isdr.respond = lambda request: b"\x01" * 300
    card.send("80 E2 91 00 01 00")
    assert card.send("00 C0 00 00") == b"\x01" * 256 + h("612C")


def test_get_response_errors(card: Card) -> None:
    assert card.sw("00 C0 00 00 10") == "6985"
    card.select_isdr(0)
    card.send("80 E2 91 00 01 00")
    assert card.sw("00 C0 01 00 01") == "6A86"
    assert card.sw("00 C0 00 00 01 00") == "6700"
    assert card.send("00 C0 00 00 01") == h("00 9000")  # still pending after the errors


def test_any_other_command_discards_the_pending_response(card: Card) -> None:
    card.select_isdr(0)
    card.send("80 E2 91 00 02 AB CD")
    assert card.sw("80 AA 00 00 02 A9 00") == "9000"
    assert card.sw("00 C0 00 00 02") == "6985"
    card.send("80 E2 91 00 02 AB CD")
    assert card.sw("00 16 00 00") == "6D00"  # even an unsupported one
    assert card.sw("00 C0 00 00 02") == "6985"


def test_pending_responses_are_per_channel(card: Card) -> None:
    card.sw("00 70 00 00 01")
    card.select_isdr(0)
    card.select_isdr(1)
    card.isdr.respond = lambda request: request * 2
    assert card.sw("80 E2 91 00 01 11") == "6102"
    assert card.sw("81 E2 91 00 01 22") == "6102"
    assert card.sw("01 C0 00 00 02") == "22229000"
    assert card.sw("00 C0 00 00 02") == "11119000"


# -- STORE DATA ---------------------------------------------------------------------------------


def blocks(apdu_cla: int, request: bytes, sizes: list[int]) -> list[bytes]:
    out, pos = [], 0
    for number, size in enumerate(sizes):
        chunk = request[pos : pos + size]
        pos += size
        p1 = 0x91 if pos >= len(request) else 0x11
        out.append(bytes((apdu_cla, 0xE2, p1, number, len(chunk))) + chunk)
    return out


@st.composite
def split_request(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    request = draw(st.binary(min_size=1, max_size=3000))
    sizes: list[int] = []
    remaining = len(request)
    while remaining:
        # P2 is one byte: at most 256 blocks, so later blocks may have to be larger.
        low = max(1, -(-remaining // (256 - len(sizes))))
        size = draw(st.integers(min_value=low, max_value=min(255, remaining)))
        sizes.append(size)
        remaining -= size
    return request, sizes


@settings(max_examples=60, deadline=None)
@given(split_request(), st.integers(min_value=0, max_value=19), st.booleans())
def test_store_data_reassembles_any_split(
    case: tuple[bytes, list[int]], channel: int, with_le: bool
) -> None:
    request, sizes = case
    card = Card()
    if channel:
        card.sw(f"00 70 00 {channel:02X} 00")
    card.select_isdr(channel)
    card.isdr.respond = lambda r: b""
    apdus = blocks(cla_for(channel, True), request, sizes)
    for apdu in apdus[:-1]:
        assert card.sw(apdu + (b"\x00" if with_le else b"")) == "9000"
        assert card.isdr.requests == []
    assert card.sw(apdus[-1] + (b"\x00" if with_le else b"")) == "9000"  # empty response
    assert card.isdr.requests == [(channel, request)]


def test_store_data_in_120_and_255_byte_blocks_like_lpac_and_the_ipad(card: Card) -> None:
    card.select_isdr(0)
    request = bytes(i & 0xFF for i in range(1000))
    card.isdr.respond = lambda r: r[:300]
    for size in (120, 255):
        apdus = blocks(0x80, request, [size] * -(-1000 // size))
        for apdu in apdus[:-1]:
            assert card.sw(apdu) == "9000"
        assert card.sw(apdus[-1]) == "6100"
        assert card.send("80 C0 00 00 00") == request[:256] + h("612C")
        assert card.send("00 C0 00 00 2C") == request[256:300] + h("9000")
    assert card.isdr.requests == [(0, request), (0, request)]


def test_store_data_block_out_of_sequence_aborts_with_6985(card: Card) -> None:
    card.select_isdr(0)
    assert card.sw("80 E2 11 00 01 AA") == "9000"
    assert card.sw("80 E2 11 02 01 BB") == "6985"  # block 1 missing
    assert card.sw("80 E2 91 01 01 BB") == "6985"  # the sequence is gone
    assert card.sw("80 E2 91 00 01 CC") == "6101"
    assert card.isdr.requests == [(0, h("CC"))]


def test_store_data_block_0_restarts_the_sequence(card: Card) -> None:
    card.select_isdr(0)
    card.sw("80 E2 11 00 01 AA")
    card.sw("80 E2 11 01 01 BB")
    assert card.sw("80 E2 11 00 01 CC") == "9000"
    assert card.sw("80 E2 91 01 01 DD") == "6102"
    assert card.isdr.requests == [(0, h("CCDD"))]


def test_another_command_aborts_the_store_data_sequence(card: Card) -> None:
    card.select_isdr(0)
    card.sw("80 E2 11 00 01 AA")
    card.select_isdr(0)
    assert card.sw("80 E2 91 01 01 BB") == "6985"


def test_store_data_sequences_are_per_channel(card: Card) -> None:
    card.sw("00 70 00 00 01")
    card.select_isdr(0)
    card.select_isdr(1)
    assert card.sw("80 E2 11 00 01 AA") == "9000"
    assert card.sw("81 E2 11 00 01 11") == "9000"
    assert card.sw("80 E2 91 01 01 BB") == "6102"
    assert card.sw("81 E2 91 01 01 22") == "6102"
    assert card.isdr.requests == [(0, h("AABB")), (1, h("1122"))]


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00 E2 91 00 01 AA", "6E00"),  # interindustry class
        ("80 E2 90 00 01 AA", "6A86"),
        ("80 E2 01 00 01 AA", "6A86"),
        ("80 E2 91 00", "6700"),  # no data
        ("80 E2 91 00 00", "6700"),
        ("80 E2 91 05 01 AA", "6985"),  # first block must be 0
    ],
)
def test_store_data_errors(card: Card, apdu: str, sw: str) -> None:
    card.select_isdr(0)
    assert card.sw(apdu) == sw
    assert card.isdr.requests == []


def test_store_data_without_a_selected_application_answers_6985(card: Card) -> None:
    assert card.sw("80 E2 91 00 03 BF 2E 00") == "6985"


def test_store_data_larger_than_the_limit_answers_6a84() -> None:
    app = EchoApp(ISD_R)
    os = CardOS([app], max_request_size=300)
    os.transmit(h("00 A4 04 0C 10") + ISD_R)
    assert os.transmit(h("80 E2 11 00 FF") + bytes(255)) == h("9000")
    assert os.transmit(h("80 E2 91 01 2E") + bytes(46)) == h("6A84")
    assert os.transmit(h("80 E2 91 00 01 00")) == h("6101")
    assert app.requests == [(0, b"\x00")]


def test_application_status_words_and_bugs(card: Card, caplog: pytest.LogCaptureFixture) -> None:
    card.select_isdr(0)

    def refuse(request: bytes) -> bytes:
        raise StatusWordError(0x6A88)

    card.isdr.respond = refuse
    assert card.sw("80 E2 91 00 01 AA") == "6A88"

    def crash(request: bytes) -> bytes:
        raise RuntimeError("bug")

    card.isdr.respond = crash
    with caplog.at_level(logging.ERROR, logger="euicc_sim.cardos"):
        assert card.sw("80 E2 91 00 01 AA") == "6F00"
    assert "RuntimeError" in caplog.text
    card.isdr.respond = lambda request: 5  # not bytes: must not become 5 zero bytes
    assert card.sw("80 E2 91 00 01 AA") == "6F00"
    card.isdr.respond = lambda request: bytearray(b"\x01\x02")
    assert card.exchange("80 E2 91 00 01 AA") == (h("0102"), 0x9000)


# -- GET DATA -----------------------------------------------------------------------------------


def test_get_data_reaches_an_application_hook(card: Card) -> None:
    card.exchange(h("00 A4 04 00 10") + ECASD)
    assert card.send("80 CA 00 5A 00") == EID_TLV + h("9000")
    assert card.send("00 CA 00 5A 08") == EID_TLV[:8] + h("610A")
    assert card.send("00 C0 00 00 0A") == EID_TLV[8:] + h("9000")
    assert card.sw("80 CA 00 5B 00") == "6A88"
    card.select_isdr(0)
    assert card.sw("80 CA 00 5A 00") == "6D00"  # no hook


# -- robustness ---------------------------------------------------------------------------------

INTERESTING_CLA = st.sampled_from([0x00, 0x01, 0x04, 0x10, 0x40, 0x41, 0x80, 0x81, 0xA0, 0xC0])
INTERESTING_INS = st.sampled_from([0xA4, 0xC0, 0xE2, 0x70, 0xAA, 0xB0, 0xB2, 0xCA, 0x12])


@st.composite
def apdu_like(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    header = bytes((draw(INTERESTING_CLA), draw(INTERESTING_INS)))
    return header + draw(st.binary(min_size=0, max_size=270))


@settings(max_examples=300, deadline=None)
@given(st.lists(apdu_like(), max_size=12))
def test_arbitrary_apdus_never_raise_and_always_end_with_a_status_word(
    apdus: list[bytes],
) -> None:
    card = Card()
    card.select_isdr(0)
    card.sw("00 70 00 00 01")
    for apdu in apdus:
        response = card.os.transmit(apdu)
        assert isinstance(response, bytes) and len(response) >= 2
        assert response[-2] in ISO_SW1, response.hex()
        assert len(response) <= 258


def test_non_bytes_input_is_accepted_when_bytes_like(card: Card) -> None:
    assert card.os.transmit(bytearray(h("00 70 00 00 01"))) == h("01 9000")  # type: ignore[arg-type]
    assert card.os.transmit(memoryview(h("00 70 00 00 01"))) == h("02 9000")  # type: ignore[arg-type]
    assert card.os.transmit("00700000") == h("6F00")  # type: ignore[arg-type]


def test_apdu_traces_at_debug(card: Card, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="euicc_sim.cardos"):
        card.send("00 70 00 00 01")
    assert "0070000001" in caplog.text and "019000" in caplog.text


# -- reset --------------------------------------------------------------------------------------


def test_reset_closes_channels_and_discards_buffers(card: Card) -> None:
    card.sw("00 70 00 00 01")
    card.sw("00 70 00 05 00")
    card.select_isdr(0)
    card.select_isdr(1)
    card.send("81 E2 91 00 01 AA")  # response pending on channel 1
    card.sw("80 E2 11 00 01 BB")  # STORE DATA sequence open on channel 0
    assert card.os.reset() == ATR
    assert card.os.open_channels == (0,)
    assert card.isdr.resets == 1 and card.ecasd.resets == 1
    assert card.isdr.closed == []  # a reset is not a MANAGE CHANNEL close
    assert card.sw("01 C0 00 00 01") == "6881"
    assert card.sw("00 C0 00 00 01") == "6985"
    assert card.sw("80 E2 91 01 01 CC") == "6985"  # no application selected after reset
    card.select_isdr(0)
    assert card.sw("80 E2 91 01 01 CC") == "6985"  # and the old sequence is gone
    assert card.sw("00 70 00 00 01") == "019000"
    assert card.isdr.requests == [(1, h("AA"))]


def test_duplicate_aids_are_refused() -> None:
    with pytest.raises(ValueError):
        CardOS([EchoApp(ISD_R), EchoApp(ISD_R)])
