"""The emulated modem (euicc_sim.frontends.modem): AT bytes in, AT bytes out, byte for byte.

The core is driven directly (``Modem.receive``); every quirks profile's distinguishing
behaviour is then checked through a real pseudo-terminal, as firmware would see it.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from modem_support import ISD_R, RefreshingCard, served_modem

from euicc_sim.card import Euicc
from euicc_sim.frontends.modem import PROFILES, Modem, quirks_named
from euicc_sim.frontends.modem.files import decode_imsi
from euicc_sim.frontends.modem.mt import channel_of, set_channel
from euicc_sim.frontends.modem.serve import ModemServer, parse_tcp_address
from euicc_sim.frontends.modem.terminal import (
    ProactiveFormatError,
    parse_proactive_command,
    terminal_response_apdu,
)

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
PACKAGE = TS48 / "TS48V1-A-UNIQUE.der"
ICCID = "8949449999999990023"
EID = "89049032123451234512345678901235"
AID_HEX = ISD_R.hex().upper()


#: DISABLE PIN1 with the TS.48 value (ETSI TS 102 221 §11.1.12): a card whose profile has
#: PIN1 enabled then answers +CPIN: READY like one without PINs.
DISABLE_PIN1 = bytes.fromhex("002600010830303030FFFFFFFF")


@pytest.fixture
def card() -> Euicc:
    card = Euicc.create(None, eid=EID, fsync=False)
    card.preload(PACKAGE.read_bytes(), enable=True)
    card.reset()  # the enabled profile's file system shows from the next reset on
    card.transmit(DISABLE_PIN1)
    return card


def run(modem: Modem, line: str) -> bytes:
    return modem.receive(line.encode() + b"\r")


def quiet(card: object, quirks: str = "generic") -> Modem:
    modem = Modem(card, quirks_named(quirks))  # type: ignore[arg-type]
    modem.power_on()
    assert run(modem, "ATE0") == b"ATE0\r\r\nOK\r\n"  # echoed: echo was on until now
    return modem


# -- V.250 framing -------------------------------------------------------------------------------


def test_echo_is_on_after_power_up_and_ate0_turns_it_off(card: Euicc) -> None:
    modem = Modem(card)
    assert run(modem, "AT") == b"AT\r\r\nOK\r\n"
    assert run(modem, "ATE0") == b"ATE0\r\r\nOK\r\n"
    assert run(modem, "AT") == b"\r\nOK\r\n"
    assert run(modem, "ATE1") == b"\r\nOK\r\n"
    assert run(modem, "at") == b"at\r\r\nOK\r\n"


def test_bytes_split_anywhere_make_the_same_lines(card: Euicc) -> None:
    modem = quiet(card)
    out = b"".join(modem.receive(bytes((b,))) for b in b"AT+CPIN?\r\nAT+CPIN?\r")
    assert out == b"\r\n+CPIN: READY\r\n\r\nOK\r\n" * 2


def test_backspace_edits_the_line(card: Euicc) -> None:
    assert quiet(card).receive(b"AT+CPIX\x08N?\r") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"


def test_unknown_command_and_bad_syntax_answer_error(card: Euicc) -> None:
    modem = quiet(card)
    assert run(modem, "AT+NOSUCH") == b"\r\nERROR\r\n"
    assert run(modem, 'AT+CSIM=10,"00') == b"\r\nERROR\r\n"
    assert run(modem, "AT!") == b"\r\nERROR\r\n"
    assert run(modem, "hello") == b""  # not a command line: no answer


def test_cmee_selects_plain_numeric_or_verbose_errors(card: Euicc) -> None:
    modem = quiet(card)
    assert run(modem, 'AT+CSIM=4,"00"') == b"\r\nERROR\r\n"
    assert run(modem, "AT+CMEE=1") == b"\r\nOK\r\n"
    assert run(modem, 'AT+CSIM=4,"00"') == b"\r\n+CME ERROR: 50\r\n"
    assert run(modem, "AT+CMEE=2") == b"\r\nOK\r\n"
    assert run(modem, 'AT+CSIM=4,"00"') == b"\r\n+CME ERROR: Incorrect parameters\r\n"
    assert run(modem, "AT+CMEE?") == b"\r\n+CMEE: 2\r\n\r\nOK\r\n"
    assert run(modem, "AT+CMEE=3") == b"\r\n+CME ERROR: Incorrect parameters\r\n"


def test_several_commands_on_one_line_stop_at_the_first_error(card: Euicc) -> None:
    modem = quiet(card)
    assert run(modem, "AT+CMEE=1;+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert run(modem, 'AT+CGLA=9,4,"0000";+CPIN?') == b"\r\n+CME ERROR: 21\r\n"


def test_ati_and_identification_commands(card: Euicc) -> None:
    modem = quiet(card, "quectel")
    assert run(modem, "ATI") == b"\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A07M4G\r\n\r\nOK\r\n"
    assert run(modem, "AT+CGMI") == b"\r\nQuectel\r\n\r\nOK\r\n"


# -- +CSIM, +CCHO, +CGLA, +CCHC ---------------------------------------------------------------


def test_csim_passes_the_apdu_and_the_card_answer_raw(card: Euicc) -> None:
    modem = quiet(card)
    assert run(modem, 'AT+CSIM=10,"0070000001"') == b'\r\n+CSIM: 6,"019000"\r\n\r\nOK\r\n'
    select = f"01A4040410{AID_HEX}"
    reply = run(modem, f'AT+CSIM={len(select)},"{select}"')
    assert reply.startswith(b'\r\n+CSIM: 4,"61') and reply.endswith(b'"\r\n\r\nOK\r\n')


def test_csim_length_counts_hex_characters(card: Euicc) -> None:
    modem = quiet(card)
    run(modem, "AT+CMEE=1")
    assert run(modem, 'AT+CSIM=5,"0070000001"') == b"\r\n+CME ERROR: 50\r\n"
    assert run(modem, 'AT+CSIM=10,"00700000ZZ"') == b"\r\n+CME ERROR: 50\r\n"
    assert run(modem, 'AT+CSIM=6,"007000"') == b"\r\n+CME ERROR: 50\r\n"


def test_ccho_cgla_cchc_reach_isd_r_on_a_channel_the_mt_writes_into_the_cla(card: Euicc) -> None:
    modem = quiet(card)
    assert run(modem, f'AT+CCHO="{AID_HEX}"') == b"\r\n1\r\n\r\nOK\r\n"  # 27.007: bare id
    # GetEID with CLA 80: the MT puts channel 1 in; the 61xx data is fetched by the MT.
    reply = run(modem, 'AT+CGLA=1,22,"80E2910006BF3E035C015A"')
    assert reply == f'\r\n+CGLA: 46,"BF3E125A10{EID}9000"\r\n\r\nOK\r\n'.encode()
    assert run(modem, "AT+CCHC=1") == b"\r\nOK\r\n"
    run(modem, "AT+CMEE=1")
    assert run(modem, 'AT+CGLA=1,22,"80E2910006BF3E035C015A"') == b"\r\n+CME ERROR: 21\r\n"


def test_ccho_of_a_missing_application_fails_and_frees_the_channel(card: Euicc) -> None:
    modem = quiet(card)
    run(modem, "AT+CMEE=1")
    assert run(modem, 'AT+CCHO="A0000000000001"') == b"\r\n+CME ERROR: 100\r\n"
    assert run(modem, f'AT+CCHO="{AID_HEX}"') == b"\r\n1\r\n\r\nOK\r\n"  # channel 1 again


def test_cgla_refuses_manage_channel(card: Euicc) -> None:
    modem = quiet(card)
    run(modem, "AT+CMEE=1")
    run(modem, f'AT+CCHO="{AID_HEX}"')
    assert run(modem, 'AT+CGLA=1,10,"0070000001"') == b"\r\n+CME ERROR: 3\r\n"


@pytest.mark.parametrize(
    ("cla", "channel", "expected"),
    [
        (0x00, 1, 0x01),
        (0x80, 3, 0x83),
        (0x80, 4, 0xC0),
        (0x00, 19, 0x4F),
        (0x81, 0, 0x80),
        (0xC5, 2, 0x82),
        (0x0C, 5, 0x61),  # secure messaging kept in the further-interindustry coding
        (0x90, 1, 0x91),  # command chaining kept
        (0xA0, 3, 0xA0),  # GSM class: no channel to write
    ],
)
def test_set_channel(cla: int, channel: int, expected: int) -> None:
    assert set_channel(cla, channel) == expected
    if cla != 0xA0:
        assert channel_of(expected) == channel


# -- +CFUN, +CPIN ---------------------------------------------------------------------------------


def test_cfun_powers_the_card_down_and_up_with_a_reset(card: Euicc) -> None:
    modem = quiet(card, "quectel")
    run(modem, "AT+CMEE=1")
    assert run(modem, f'AT+CCHO="{AID_HEX}"') == b"\r\n+CCHO: 1\r\n\r\nOK\r\n"
    assert run(modem, "AT+CFUN=0") == b"\r\nOK\r\n"
    assert run(modem, "AT+CPIN?") == b"\r\n+CME ERROR: 10\r\n"
    assert run(modem, 'AT+CSIM=10,"0070000001"') == b"\r\n+CME ERROR: 10\r\n"
    assert run(modem, "AT+CFUN?") == b"\r\n+CFUN: 0\r\n\r\nOK\r\n"
    assert run(modem, "AT+CFUN=1") == (
        b"\r\nOK\r\n\r\n+CPIN: READY\r\n\r\n+QSIMSTAT: 1,1\r\n\r\n+QUSIM: 1\r\n"
    )
    # The card was reset: the session is gone, channel 1 is free again.
    assert run(modem, 'AT+CGLA=1,10,"80CA005A00"') == b"\r\n+CME ERROR: 21\r\n"
    assert run(modem, f'AT+CCHO="{AID_HEX}"') == b"\r\n+CCHO: 1\r\n\r\nOK\r\n"


def test_cfun_4_keeps_the_card_and_cfun_1_1_resets_it(card: Euicc) -> None:
    modem = quiet(card)
    run(modem, f'AT+CCHO="{AID_HEX}"')
    assert run(modem, "AT+CFUN=4") == b"\r\nOK\r\n"
    assert run(modem, "AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert modem.resets == 0
    assert run(modem, "AT+CFUN=1,1") == b"\r\nOK\r\n\r\n+CPIN: READY\r\n"
    assert modem.resets == 1


# -- +CRSM, +CCID, +CIMI --------------------------------------------------------------------------


def test_crsm_reads_ef_iccid_by_file_id_and_by_path(card: Euicc) -> None:
    modem = quiet(card)
    expected = b'\r\n+CRSM: 144,0,"989444999999990920F3"\r\n\r\nOK\r\n'
    assert run(modem, "AT+CRSM=176,12258,0,0,10") == expected
    assert run(modem, 'AT+CRSM=176,12258,0,0,10,,"3F00"') == expected


def test_crsm_get_response_is_the_fcp_and_a_missing_file_is_6a82(card: Euicc) -> None:
    modem = quiet(card)
    fcp = run(modem, "AT+CRSM=192,12258")
    assert fcp.startswith(b'\r\n+CRSM: 144,0,"62') and fcp.endswith(b"\r\n\r\nOK\r\n")
    assert run(modem, "AT+CRSM=176,28423,0,0,9") == b"\r\n+CRSM: 106,130\r\n\r\nOK\r\n"


def test_crsm_read_record_of_ef_dir_and_bad_parameters(card: Euicc) -> None:
    modem = quiet(card)
    record = run(modem, "AT+CRSM=178,12032,1,4,0")
    assert record.startswith(b"\r\n+CRSM: 144,0,") or record.startswith(b"\r\n+CRSM: 10")
    run(modem, "AT+CMEE=1")
    assert run(modem, "AT+CRSM=99,12258") == b"\r\n+CME ERROR: 50\r\n"
    assert run(modem, "AT+CRSM=176") == b"\r\n+CME ERROR: 50\r\n"
    assert run(modem, "AT+CRSM=214,12258,0,0,1") == b"\r\n+CME ERROR: 50\r\n"


class RecordingCard:
    """Answers 90 00 to everything and records the APDUs (the edge of the +CRSM tests)."""

    def __init__(self) -> None:
        self.apdus: list[str] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.apdus.append(bytes(apdu).hex().upper())
        return b"\x90\x00"

    def reset(self) -> bytes:
        return b"\x3b\x00"


@pytest.mark.parametrize(
    ("line", "apdus"),
    [
        # UPDATE BINARY of EF.IMSI under ADF.USIM's path (TS 27.007 §8.18 <pathid>)
        (
            'AT+CRSM=214,28423,0,0,2,"0102","3F007FFF"',
            ["00A40804047FFF6F07", "00D60000020102"],
        ),
        ('AT+CRSM=220,28476,3,4,2,"AABB"', ["00A40004026F3C", "00DC030402AABB"]),
        ("AT+CRSM=178,12032,2,4,32", ["00A40004022F00", "00B2020420"]),
        ("AT+CRSM=242", ["80F2000000"]),
    ],
)
def test_crsm_sends_select_then_the_command(line: str, apdus: list[str]) -> None:
    card = RecordingCard()
    modem = quiet(card)
    card.apdus.clear()  # the power-up's PIN1 status check
    assert run(modem, line) == b"\r\n+CRSM: 144,0\r\n\r\nOK\r\n"
    assert card.apdus == apdus


def test_ccid_reads_the_enabled_profiles_iccid(card: Euicc) -> None:
    assert run(quiet(card), "AT+CCID") == f"\r\n+CCID: {ICCID}\r\n\r\nOK\r\n".encode()


def test_ccid_without_an_enabled_profile_is_a_sim_failure() -> None:
    modem = quiet(Euicc.create(None, fsync=False))
    run(modem, "AT+CMEE=2")
    assert run(modem, "AT+CCID") == b"\r\n+CME ERROR: SIM failure\r\n"


class UsimStub:
    """A card with just EF.DIR -> ADF.USIM -> EF.IMSI (the edge of the +CIMI test)."""

    USIM = bytes.fromhex("A0000000871002FF49FF0589")
    IMSI = bytes.fromhex("082943019999999999")  # 234 10 9999999999 (TS 31.102 §4.2.2)

    def __init__(self) -> None:
        self.selected = ""

    def transmit(self, apdu: bytes) -> bytes:
        ins, p1 = apdu[1], apdu[2]
        data = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        if ins == 0xA4:
            names = {b"\x3f\x00": "MF", b"\x2f\x00": "DIR", b"\x6f\x07": "IMSI", self.USIM: "USIM"}
            self.selected = names.get(data, "")
            if p1 == 0x08 and data == b"\x2f\x00":
                self.selected = "DIR"
            return b"\x90\x00" if self.selected else b"\x6a\x82"
        if ins == 0xB2 and self.selected == "DIR":
            if p1 != 1:
                return b"\x6a\x83"
            template = b"\x4f\x0c" + self.USIM + b"\x50\x04USIM"
            return b"\x61" + bytes((len(template),)) + template + b"\xff\xff\x90\x00"
        if ins == 0xB0 and self.selected == "IMSI":
            return self.IMSI + b"\x90\x00"
        return b"\x69\x86"

    def reset(self) -> bytes:
        self.selected = ""
        return b"\x3b\x00"


def test_cimi_reads_ef_imsi_of_the_usim_named_in_ef_dir() -> None:
    assert run(quiet(UsimStub()), "AT+CIMI") == b"\r\n234109999999999\r\n\r\nOK\r\n"


def test_decode_imsi_rejects_an_empty_file() -> None:
    assert decode_imsi(bytes.fromhex("082943019999999999")) == "234109999999999"
    with pytest.raises(ValueError):
        decode_imsi(b"\xff" * 9)


class PinStub:
    """PIN1 ``0000`` (3 tries) and PUK ``12345678`` as ETSI TS 102 221 §11.1.9/§11.1.13 answer
    them; verification lasts until the next reset."""

    def __init__(self) -> None:
        self.tries, self.verified = 3, False
        self.apdus: list[str] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu.hex().upper())
        ins, data = apdu[1], apdu[5:]
        if ins == 0x20 and apdu[3] == 0x01:
            if self.tries == 0:
                return b"\x69\x83"
            if not data:
                return b"\x90\x00" if self.verified else bytes((0x63, 0xC0 | self.tries))
            if data == b"0000\xff\xff\xff\xff":
                self.tries, self.verified = 3, True
                return b"\x90\x00"
            self.tries -= 1
            return bytes((0x63, 0xC0 | self.tries)) if self.tries else b"\x69\x83"
        if ins == 0x2C and data[:8] == b"12345678":
            self.tries, self.verified = 3, True
            return b"\x90\x00"
        return b"\x6d\x00"

    def reset(self) -> bytes:
        self.verified = False
        return b"\x3b\x00"


def test_cpin_reads_verifies_and_unblocks_pin1() -> None:
    card = PinStub()
    modem = quiet(card)
    run(modem, "AT+CMEE=1")
    assert run(modem, "AT+CPIN?") == b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    assert run(modem, 'AT+CPIN="1111"') == b"\r\n+CME ERROR: 16\r\n"
    assert card.apdus[-1] == "002000010831313131FFFFFFFF"
    assert run(modem, 'AT+CPIN="0000"') == b"\r\nOK\r\n"
    assert run(modem, "AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert run(modem, 'AT+CPIN="0000"') == b"\r\n+CME ERROR: 3\r\n"  # nothing to enter
    # A reset forgets the verification: the ready URC says so.
    assert run(modem, "AT+CFUN=1,1") == b"\r\nOK\r\n\r\n+CPIN: SIM PIN\r\n"
    for _ in range(3):
        run(modem, 'AT+CPIN="9999"')
    assert run(modem, "AT+CPIN?") == b"\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n"
    assert run(modem, 'AT+CPIN="0000"') == b"\r\n+CME ERROR: 12\r\n"
    assert run(modem, 'AT+CPIN="12345678","0000"') == b"\r\nOK\r\n"
    assert card.apdus[-1] == "002C0001103132333435363738" + "30303030FFFFFFFF"
    assert run(modem, 'AT+CPIN="12a"') == b"\r\n+CME ERROR: 3\r\n"  # READY again


def test_cpin_on_a_card_without_pins_is_ready(card: Euicc) -> None:
    modem = quiet(card)
    run(modem, "AT+CMEE=1")
    assert run(modem, "AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert run(modem, 'AT+CPIN="0000"') == b"\r\n+CME ERROR: 3\r\n"


def test_pin_cimi_and_crsm_on_the_enabled_profiles_usim() -> None:
    """The emulated card's own USIM (TS.48 profile A: PIN1 0000, IMSI 001010123456063)."""
    card = Euicc.create(None, fsync=False)
    card.preload(PACKAGE.read_bytes(), enable=True)
    modem = quiet(card)
    assert b'"61144F0CA0000000871002' in run(modem, "AT+CRSM=178,12032,1,4,0")  # EF.DIR
    run(modem, "AT+CMEE=1")
    assert run(modem, "AT+CPIN?") == b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    assert run(modem, "AT+CIMI") == b"\r\n+CME ERROR: 11\r\n"
    assert run(modem, 'AT+CPIN="0000"') == b"\r\nOK\r\n"
    assert run(modem, "AT+CIMI") == b"\r\n001010123456063\r\n\r\nOK\r\n"
    usim = ',,"3F007FFF"'
    assert run(modem, "AT+CRSM=176,28423,0,0,9" + usim) == (
        b'\r\n+CRSM: 144,0,"080910101032540636"\r\n\r\nOK\r\n'
    )
    # EF.LOCI is updated under PIN1, EF.IMSI under ADM only (TS 31.102 §4.2.17, §4.2.2).
    loci = "FFFFFFFF00F11000FFFE01"
    assert run(modem, f'AT+CRSM=214,28542,0,0,11,"{loci}","3F007FFF"') == (
        b"\r\n+CRSM: 144,0\r\n\r\nOK\r\n"
    )
    assert run(modem, "AT+CRSM=176,28542,0,0,11" + usim) == (
        f'\r\n+CRSM: 144,0,"{loci}"\r\n\r\nOK\r\n'.encode()
    )
    assert run(modem, 'AT+CRSM=214,28423,0,0,9,"080910109999999999","3F007FFF"') == (
        b"\r\n+CRSM: 105,130\r\n\r\nOK\r\n"
    )


# -- REFRESH (ETSI TS 102 223 §6.4.7) -------------------------------------------------------------


def test_proactive_command_parsing() -> None:
    command = parse_proactive_command(bytes.fromhex("D009810301010482028182"))
    assert (command.number, command.type, command.qualifier) == (1, 1, 4)
    assert terminal_response_apdu(command, 0) == bytes.fromhex("801400000C810301010482028281830100")
    for bad in ("D00A810301010482028182", "D0038202818", "6F00", "D003820281"):
        with pytest.raises(ProactiveFormatError):
            parse_proactive_command(bytes.fromhex(bad.ljust(len(bad) + len(bad) % 2, "0")))


def test_refresh_uicc_reset_is_carried_out_by_the_mt_and_announced(card: Euicc) -> None:
    stub = RefreshingCard(card, qualifier=0x04)
    modem = quiet(stub, "quectel")
    run(modem, f'AT+CCHO="{AID_HEX}"')
    stub.armed = True
    reply = run(modem, 'AT+CGLA=1,22,"80E2910006BF3E035C015A"')
    # The TE sees 90 00; the MT fetched the REFRESH, reset the card, sent no TERMINAL
    # RESPONSE (the reset ends the proactive session) and emitted the ready URCs.
    assert reply.endswith(
        b'9000"\r\n\r\nOK\r\n\r\n+CPIN: READY\r\n\r\n+QSIMSTAT: 1,1\r\n\r\n+QUSIM: 1\r\n'
    )
    assert (stub.fetches, stub.resets, stub.terminal_responses) == (1, 2, [])  # power-up too
    run(modem, "AT+CMEE=1")
    assert run(modem, 'AT+CGLA=1,10,"80CA005A00"') == b"\r\n+CME ERROR: 21\r\n"


def test_refresh_without_reset_gets_a_terminal_response_and_the_refresh_urc(card: Euicc) -> None:
    stub = RefreshingCard(card, qualifier=0x01)  # file change notification
    modem = quiet(stub, "ublox")
    stub.armed = True
    reply = run(modem, 'AT+CSIM=10,"0070000001"')
    assert reply == b'\r\n+CSIM: 6,"019000"\r\n\r\nOK\r\n\r\n+UUSIMSTAT: 9\r\n'  # not 9109
    assert stub.resets == 1  # the power-up only
    assert stub.terminal_responses == [bytes.fromhex("801400000C810301010182028281830100")]


def test_refresh_eucc_profile_state_change_resets_the_card(card: Euicc) -> None:
    stub = RefreshingCard(card, qualifier=0x09)
    modem = quiet(stub)
    stub.armed = True
    assert run(modem, 'AT+CSIM=10,"0070000001"').endswith(b"\r\n+CPIN: READY\r\n")
    assert stub.resets == 2  # power-up and REFRESH


# -- every quirks profile through a real pseudo-terminal -----------------------------------------


def exchange(port: serial.Serial, line: str) -> bytes:
    """Send ``line``; return everything up to and including the final result code."""
    port.write(line.encode() + b"\r")
    out = b""
    deadline = time.monotonic() + 10
    finals = (b"\r\nOK\r\n", b"\r\nERROR\r\n")
    while time.monotonic() < deadline:
        out += port.read(max(1, port.in_waiting))
        if out.endswith(finals) or (b"+CME ERROR:" in out and out.endswith(b"\r\n")):
            return out
    raise AssertionError(f"no final result code for {line!r}: {out!r}")


def read_until(port: serial.Serial, line: str, expected: bytes) -> bytes:
    """Send ``line``; read until ``expected`` has arrived (or 10 s passed)."""
    port.write(line.encode() + b"\r")
    out = b""
    deadline = time.monotonic() + 10
    while len(out) < len(expected) and time.monotonic() < deadline:
        out += port.read(max(1, port.in_waiting))
    return out


#: Per profile: command lines and the exact reply that sets the profile apart.
DISTINGUISHING: dict[str, list[tuple[str, bytes]]] = {
    "generic": [(f'AT+CCHO="{AID_HEX}"', b"\r\n1\r\n\r\nOK\r\n"), ("AT+CCID", b"+CCID: ")],
    "quectel": [
        (f'AT+CCHO="{AID_HEX}"', b"\r\n+CCHO: 1\r\n\r\nOK\r\n"),
        ("AT+QCCID", b"\r\n+QCCID: " + ICCID.encode() + b"\r\n\r\nOK\r\n"),
        ('AT+CSIM=10,"81F2000000"', b"\r\n+CME ERROR: 3\r\n"),
    ],
    "simcom": [
        (f'AT+CCHO="{AID_HEX}"', b"\r\nERROR\r\n"),
        ('AT+CSIM=10,"0070000001"', b"\r\n+CSIM: 6,019000\r\n\r\nOK\r\n"),
        ("AT+CICCID", b"\r\n+ICCID: " + ICCID.encode() + b"\r\n\r\nOK\r\n"),
        ("AT+CCID", b"\r\n" + ICCID.encode() + b"\r\n\r\nOK\r\n"),
    ],
    "ublox": [
        (f'AT+CCHO="{AID_HEX}"', b"\r\n+CCHO: 1\r\n\r\nOK\r\n"),
        ("AT+CCID", b"\r\n+CCID: " + ICCID.encode() + b"\r\n\r\nOK\r\n"),
    ],
    "telit": [
        (f'AT+CCHO="{AID_HEX}"', b"\r\n+CCHO: 1\r\n\r\nOK\r\n"),
        ("AT#CCID", b"\r\n#CCID: " + ICCID.encode() + b"\r\n\r\nOK\r\n"),
    ],
    "huawei": [
        (f'AT+CCHO="{AID_HEX}"', b"\r\nERROR\r\n"),
        ('AT+CSIM=10,"0070000001"', b"\r\n+CME ERROR: 3\r\n"),
        ("AT^ICCID", b"\r\n^ICCID: " + ICCID.encode() + b"\r\n\r\nOK\r\n"),
    ],
    "fibocom": [
        (f'AT+CCHO="{AID_HEX}"', b"\r\n1\r\n\r\nOK\r\n"),
        # +CGLA hands the card's 61xx to the TE instead of fetching the data itself.
        (f'AT+CGLA=1,42,"01A4040410{AID_HEX}"', b'\r\n+CGLA: 4,"61'),
    ],
    "sierra": [(f'AT+CCHO="{AID_HEX}"', b"\r\n+CCHO: 59090881\r\n\r\nOK\r\n")],
}


def test_every_profile_has_a_distinguishing_test() -> None:
    assert set(DISTINGUISHING) == set(PROFILES)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_quirks_profile_through_a_pty(card: Euicc, tmp_path: Path, name: str) -> None:
    with served_modem(card, tmp_path, name) as server:
        with serial.serial_for_url(server.url, timeout=0.2) as port:
            exchange(port, "ATE0")
            assert exchange(port, "AT+CMEE=1").endswith(b"\r\nOK\r\n")
            for line, expected in DISTINGUISHING[name]:
                reply = exchange(port, line)
                assert expected in reply, (line, reply)
            # A card restart (here +CFUN=1,1) is announced with the profile's URCs.
            urcs = b"".join(b"\r\n" + u.encode() + b"\r\n" for u in PROFILES[name].ready_urcs)
            assert read_until(port, "AT+CFUN=1,1", b"\r\nOK\r\n" + urcs) == b"\r\nOK\r\n" + urcs


def test_tcp_server_greets_the_first_client_and_serves_one_at_a_time(card: Euicc) -> None:
    server = ModemServer(Modem(card, quirks_named("telit")), address=("127.0.0.1", 0)).start()
    try:
        # The first client gets the power-up URCs (pyserial would flush them on open, as it
        # does on a pty: a TE that opens the port late never sees them).
        with socket.create_connection(server.address, timeout=10) as raw:
            raw.sendall(b"AT\r")
            expected = b"\r\n#QSS: 1\r\n\r\n#QSS: 3\r\nAT\r\r\nOK\r\n"
            received = b""
            while len(received) < len(expected):
                received += raw.recv(1024)
            assert received == expected
        with serial.serial_for_url(server.url, timeout=0.2) as port:  # the next client
            assert exchange(port, "AT+CPIN?").endswith(b"\r\n+CPIN: READY\r\n\r\nOK\r\n")
    finally:
        server.stop()


def test_pty_symlink_is_made_and_removed(card: Euicc, tmp_path: Path) -> None:
    with served_modem(card, tmp_path) as server:
        assert (tmp_path / "modem").is_symlink()
        assert server.device is not None and server.device.startswith("/dev/pts/")
    assert not (tmp_path / "modem").exists()


def test_pty_refuses_to_replace_a_regular_file(card: Euicc, tmp_path: Path) -> None:
    (tmp_path / "modem").write_text("keep me")
    with pytest.raises(FileExistsError):
        ModemServer(Modem(card), pty_path=tmp_path / "modem")
    assert (tmp_path / "modem").read_text() == "keep me"


def test_parse_tcp_address() -> None:
    assert parse_tcp_address("127.0.0.1:7777") == ("127.0.0.1", 7777)
    assert parse_tcp_address("[::1]:0") == ("::1", 0)
    for bad in ("7777", "host:", "host:99999"):
        with pytest.raises(ValueError):
            parse_tcp_address(bad)


# -- robustness ------------------------------------------------------------------------------


@settings(max_examples=60)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [b"AT+CSIM=", b"AT+CGLA=", b"AT+CCHO=", b"AT+CRSM=", b'"', b",", b";", b"\r"]
            ),
            st.from_regex(rb"AT\+C[A-Z]{2,4}(=[0-9A-F\",]{0,30}|\?|=\?)?\r", fullmatch=True),
        ),
        max_size=12,
    )
)
def test_any_bytes_get_framed_answers_and_never_an_exception(chunks: list[bytes]) -> None:
    card = Euicc.create(None, eid=EID, fsync=False) if not _CARD else _CARD[0]
    _CARD[:] = [card]
    modem = Modem(card)
    modem.echo = False
    out = modem.receive(b"".join(chunks) + b"\r")  # the CR ends a line left unfinished
    # Whatever came in, what goes out is complete CR LF framed lines.
    assert out == b"" or (out.startswith(b"\r\n") and out.endswith(b"\r\n"))
    modem.echo = False  # the input may have turned it on
    assert run(modem, "AT") == b"\r\nOK\r\n"  # and the modem still answers


_CARD: list[Euicc] = []
