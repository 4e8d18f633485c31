"""Proactive commands from the terminal's side (ETSI TS 102 223, the Card Application Toolkit),
as far as a device needs them: read what FETCH returned, answer with TERMINAL RESPONSE.

A card with a proactive command for the terminal ends a response with ``91 xx`` (ETSI TS 102
221 §10.2.1.2); FETCH (``80 12 00 00 xx``) returns a BER-TLV ``D0`` holding Command details
(``81 03 <number> <type> <qualifier>``), Device identities (``82 02 81 82``: UICC to
terminal) and the command's own objects. TERMINAL RESPONSE (``80 14 00 00 Lc``) carries the
Command details as received, Device identities ``82 02 82 81`` and a Result (``83 01 <general
result>``, §8.12). REFRESH (type ``01``, §6.4.7) says by its qualifier (§8.6) whether the
terminal must reset the card; a UICC Reset is answered by the reset itself, not a response.

Pure: bytes in, bytes out. Used by the IPAd's ES10 channel and by the emulated modem.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import tlv

__all__ = [
    "REFRESH",
    "REFRESH_EUICC_PROFILE_STATE_CHANGE",
    "REFRESH_UICC_RESET",
    "RESET_QUALIFIERS",
    "RESULT_BEYOND_TERMINAL_CAPABILITIES",
    "RESULT_OK",
    "RESULT_TERMINAL_UNABLE",
    "ProactiveCommand",
    "ProactiveFormatError",
    "fetch_apdu",
    "parse_proactive_command",
    "terminal_response",
    "terminal_response_apdu",
]

#: Type of command REFRESH (ETSI TS 102 223 §9.4).
REFRESH = 0x01
#: REFRESH qualifiers (ETSI TS 102 223 §8.6) that mean a reset of the card.
REFRESH_UICC_RESET = 0x04
REFRESH_EUICC_PROFILE_STATE_CHANGE = 0x09
RESET_QUALIFIERS = frozenset({REFRESH_UICC_RESET, REFRESH_EUICC_PROFILE_STATE_CHANGE})
#: General results (ETSI TS 102 223 §8.12).
RESULT_OK = 0x00
RESULT_TERMINAL_UNABLE = 0x20  # terminal currently unable to process command
RESULT_BEYOND_TERMINAL_CAPABILITIES = 0x30

_TAG_PROACTIVE = b"\xd0"
_DETAILS_TAGS = (b"\x01", b"\x81")  # with or without the comprehension-required bit


class ProactiveFormatError(ValueError):
    """FETCH returned something that is not one proactive command TLV with its details."""


@dataclass(frozen=True, slots=True)
class ProactiveCommand:
    """A fetched proactive command: its Command details and the whole TLV."""

    number: int
    type: int
    qualifier: int
    raw: bytes

    @property
    def details(self) -> bytes:
        """The three bytes of Command details, echoed in the TERMINAL RESPONSE."""
        return bytes((self.number, self.type, self.qualifier))

    @property
    def is_refresh(self) -> bool:
        """Whether this is a REFRESH."""
        return self.type == REFRESH

    @property
    def resets_card(self) -> bool:
        """Whether the terminal must reset the card (REFRESH UICC Reset or eUICC Profile
        State Change)."""
        return self.is_refresh and self.qualifier in RESET_QUALIFIERS

    @property
    def wants_terminal_response(self) -> bool:
        """Every command is answered, except REFRESH in UICC Reset mode: the reset is its
        answer (ETSI TS 102 223 §6.4.7)."""
        return not (self.is_refresh and self.qualifier == REFRESH_UICC_RESET)


def parse_proactive_command(data: bytes) -> ProactiveCommand:
    """Read a FETCH answer: ``D0 { 81 03 number type qualifier, 82 02 81 82, ... }``.

    Raises:
        ProactiveFormatError: not one proactive command TLV with 3-byte Command details.
    """
    try:
        outer = tlv.read_tlv(data)
        if outer.tag != _TAG_PROACTIVE or outer.end != len(data):
            raise ProactiveFormatError(f"FETCH returned no proactive command: {data[:8].hex()}")
        details = None
        for item in tlv.iter_tlvs(data, outer.value_start, outer.value_end):
            if item.tag in _DETAILS_TAGS and details is None:
                details = item.value(data)
    except tlv.TlvError as exc:
        raise ProactiveFormatError(f"FETCH returned a malformed proactive command: {exc}") from None
    if details is None or len(details) != 3:
        raise ProactiveFormatError("proactive command without 3-byte command details")
    return ProactiveCommand(details[0], details[1], details[2], bytes(data))


def terminal_response(
    command: ProactiveCommand, result: int = RESULT_OK, additional: bytes = b""
) -> bytes:
    """The TERMINAL RESPONSE data for ``command``: its Command details, Device identities
    terminal -> UICC, and the general result (with ``additional`` information)."""
    details = tlv.encode_tlv(b"\x81", command.details)
    devices = tlv.encode_tlv(b"\x82", b"\x82\x81")
    return details + devices + tlv.encode_tlv(b"\x83", bytes((result,)) + additional)


def fetch_apdu(length: int) -> bytes:
    """FETCH of ``length`` bytes (the ``xx`` of ``91 xx``) on the basic channel."""
    return bytes((0x80, 0x12, 0x00, 0x00, length & 0xFF))


def terminal_response_apdu(command: ProactiveCommand, result: int = RESULT_OK) -> bytes:
    """The TERMINAL RESPONSE APDU to ``command`` with general result ``result``."""
    body = terminal_response(command, result)
    return bytes((0x80, 0x14, 0x00, 0x00, len(body))) + body
