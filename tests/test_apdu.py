"""Tests of euicc_sim.apdu: short APDU parsing, CLA decoding, status words."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from euicc_sim.apdu import (
    CLASS_BYTES,
    MAX_CHANNEL,
    SW_CLA_NOT_SUPPORTED,
    SW_WRONG_LENGTH,
    ClassByte,
    Command,
    StatusWordError,
    cla_for,
    decode_cla,
    parse_command,
    sw_bytes,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# -- parse_command ------------------------------------------------------------------------------


def test_case_1_has_no_data_and_no_le() -> None:
    cmd = parse_command(h("00 70 80 01"))
    assert cmd == Command(0x00, 0x70, 0x80, 0x01, b"", None)
    assert cmd.case == 1


def test_five_bytes_are_case_2_with_le_00_meaning_256() -> None:
    assert parse_command(h("00 C0 00 00 00")).le == 256
    cmd = parse_command(h("00 70 00 00 01"))
    assert (cmd.le, cmd.data, cmd.case) == (1, b"", 2)


def test_t0_case_1_with_p3_00_parses_as_case_2() -> None:
    # MANAGE CHANNEL close as lpac sends it on T=0: the card OS ignores the Le.
    cmd = parse_command(h("00 70 80 01 00"))
    assert (cmd.p1, cmd.p2, cmd.data, cmd.le) == (0x80, 0x01, b"", 256)


def test_case_3_carries_data_without_le() -> None:
    cmd = parse_command(h("81 E2 91 00 03 BF 2E 00"))
    assert cmd == Command(0x81, 0xE2, 0x91, 0x00, h("BF2E00"), None)
    assert cmd.case == 3


def test_case_4_carries_data_and_le() -> None:
    cmd = parse_command(h("80 E2 91 00 03 BF 2E 00 00"))
    assert (cmd.data, cmd.le, cmd.case) == (h("BF2E00"), 256, 4)
    assert parse_command(h("00 A4 00 04 02 3F 00 1C")).le == 0x1C


@pytest.mark.parametrize(
    "apdu",
    [
        "",
        "00",
        "00 A4 04",
        "00 A4 04 00 05 A0 00 00",  # Lc says 5, 3 bytes follow
        "00 A4 04 00 02 3F 00 00 00",  # two bytes after the data
        "00 A4 04 00 00 00 10",  # Lc=00: extended length, not supported
        "00 E2 91 00 00 00 01 BF",
    ],
)
def test_malformed_lengths_answer_6700(apdu: str) -> None:
    with pytest.raises(StatusWordError) as info:
        parse_command(h(apdu))
    assert info.value.sw == SW_WRONG_LENGTH


def test_full_255_byte_data_field_with_le() -> None:
    apdu = h("80 E2 91 00 FF") + bytes(range(255)) + b"\x00"
    cmd = parse_command(apdu)
    assert cmd.data == bytes(range(255)) and cmd.le == 256


@given(st.binary(max_size=300))
def test_parser_only_ever_raises_status_word_errors(apdu: bytes) -> None:
    try:
        cmd = parse_command(apdu)
    except StatusWordError as exc:
        assert exc.sw == SW_WRONG_LENGTH
    else:
        header = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2))
        lc = bytes((len(cmd.data),)) if cmd.data else b""
        le = b"" if cmd.le is None else bytes((cmd.le & 0xFF,))
        assert header + lc + cmd.data + le == apdu


# -- CLA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cla", "expected"),
    [
        (0x00, ClassByte(False, 0, False, False)),
        (0x03, ClassByte(False, 3, False, False)),
        (0x81, ClassByte(True, 1, False, False)),
        (0x83, ClassByte(True, 3, False, False)),
        (0x40, ClassByte(False, 4, False, False)),
        (0x4F, ClassByte(False, 19, False, False)),
        (0xC0, ClassByte(True, 4, False, False)),
        (0xCF, ClassByte(True, 19, False, False)),
        (0x04, ClassByte(False, 0, True, False)),  # b4-b3 secure messaging
        (0x84, ClassByte(True, 0, True, False)),  # GP secure channel, channel 0
        (0x10, ClassByte(False, 0, False, True)),  # b5 chaining
        (0x60, ClassByte(False, 4, True, False)),  # further class: b6 secure messaging
        (0xE3, ClassByte(True, 7, True, False)),
        (0x50, ClassByte(False, 4, False, True)),  # further class: b5 chaining
    ],
)
def test_decode_cla(cla: int, expected: ClassByte) -> None:
    assert decode_cla(cla) == expected


@pytest.mark.parametrize("cla", [0x20, 0x3F, 0xA0, 0xA4, 0xBF, 0xFF])
def test_reserved_and_gsm_classes_are_not_supported(cla: int) -> None:
    with pytest.raises(StatusWordError) as info:
        decode_cla(cla)
    assert info.value.sw == SW_CLA_NOT_SUPPORTED


@pytest.mark.parametrize("channel", range(MAX_CHANNEL + 1))
@pytest.mark.parametrize("proprietary", [False, True])
def test_cla_for_round_trips_through_decode_cla(channel: int, proprietary: bool) -> None:
    cla = cla_for(channel, proprietary)
    assert decode_cla(cla) == ClassByte(proprietary, channel, False, False)


def test_cla_for_uses_the_further_interindustry_coding_from_channel_4() -> None:
    assert [cla_for(c) for c in (0, 3, 4, 19)] == [0x00, 0x03, 0x40, 0x4F]
    assert [cla_for(c, True) for c in (0, 3, 4, 19)] == [0x80, 0x83, 0xC0, 0xCF]
    with pytest.raises(ValueError):
        cla_for(20)


def test_each_plain_channel_has_exactly_one_interindustry_and_one_proprietary_cla() -> None:
    plain = [(cla, c) for cla, c in enumerate(CLASS_BYTES) if c and not c[2] and not c[3]]
    assert sorted((c.channel, c.proprietary) for _, c in plain) == sorted(
        (ch, p) for ch in range(20) for p in (False, True)
    )


# -- status words -------------------------------------------------------------------------------


def test_status_word_error_carries_its_sw() -> None:
    exc = StatusWordError(0x6A88)
    assert exc.sw == 0x6A88 and "6A88" in str(exc)
    assert sw_bytes(0x6A88) == h("6A88")


@pytest.mark.parametrize("sw", [-1, 0x10000])
def test_status_word_error_rejects_out_of_range_values(sw: int) -> None:
    with pytest.raises(ValueError):
        StatusWordError(sw)
