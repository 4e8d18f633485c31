"""Proactive commands as the IPAd meets them: the REFRESH a card sends after a profile switch
(ETSI TS 102 223 §6.4.7, §6.6.13), and the TERMINAL RESPONSE the terminal answers with.

Pure: bytes in, bytes out. :class:`ipa.channel.Es10Channel` does the APDUs (FETCH, TERMINAL
RESPONSE, the reset through the transport).
"""

from __future__ import annotations

from dataclasses import dataclass

from euicc_protocol import tlv
from ipa.errors import CardProtocolError

__all__ = [
    "REFRESH",
    "REFRESH_EUICC_PROFILE_STATE_CHANGE",
    "REFRESH_UICC_RESET",
    "RESULT_BEYOND_TERMINAL_CAPABILITIES",
    "RESULT_OK",
    "RESULT_TERMINAL_UNABLE",
    "ProactiveCommand",
    "parse_proactive_command",
    "terminal_response",
]

#: Type of command REFRESH (ETSI TS 102 223 §9.4).
REFRESH = 0x01
#: REFRESH qualifiers (ETSI TS 102 223 §8.6) that mean a reset of the card.
REFRESH_UICC_RESET = 0x04
REFRESH_EUICC_PROFILE_STATE_CHANGE = 0x09
#: General results (ETSI TS 102 223 §8.12).
RESULT_OK = 0x00
RESULT_TERMINAL_UNABLE = 0x20  # terminal currently unable to process command
RESULT_BEYOND_TERMINAL_CAPABILITIES = 0x30

_TAG_PROACTIVE = b"\xd0"
_DETAILS_TAGS = (b"\x01", b"\x81")
_DEVICES_TAGS = (b"\x02", b"\x82")


@dataclass(frozen=True)
class ProactiveCommand:
    """A fetched proactive command: its command details and the raw TLV."""

    number: int
    type: int
    qualifier: int
    raw: bytes

    @property
    def is_refresh(self) -> bool:
        return self.type == REFRESH

    @property
    def resets_card(self) -> bool:
        """Whether the terminal must reset the card (REFRESH UICC Reset or eUICC Profile
        State Change)."""
        return self.is_refresh and self.qualifier in (
            REFRESH_UICC_RESET,
            REFRESH_EUICC_PROFILE_STATE_CHANGE,
        )

    @property
    def wants_terminal_response(self) -> bool:
        """Every command is answered, except REFRESH in UICC Reset mode: the reset is its
        answer (ETSI TS 102 223 §6.4.7)."""
        return not (self.is_refresh and self.qualifier == REFRESH_UICC_RESET)


def parse_proactive_command(data: bytes) -> ProactiveCommand:
    """Read a FETCH answer: ``D0 { 81 03 number type qualifier, 82 02 81 82, ... }``.

    Raises:
        CardProtocolError: not one proactive command TLV with its command details.
    """
    try:
        outer = tlv.read_tlv(data)
        if outer.tag != _TAG_PROACTIVE or outer.end != len(data):
            raise CardProtocolError(f"FETCH returned no proactive command: {data[:8].hex()}")
        details = None
        for item in tlv.iter_tlvs(data, outer.value_start, outer.value_end):
            if item.tag in _DETAILS_TAGS and details is None:
                details = item.value(data)
    except tlv.TlvError as exc:
        raise CardProtocolError(f"FETCH returned a malformed proactive command: {exc}") from None
    if details is None or len(details) != 3:
        raise CardProtocolError("proactive command without 3-byte command details")
    return ProactiveCommand(details[0], details[1], details[2], bytes(data))


def terminal_response(
    command: ProactiveCommand, result: int = RESULT_OK, additional: bytes = b""
) -> bytes:
    """The TERMINAL RESPONSE data for ``command``: its command details, device identities
    terminal -> UICC, and the general result (with ``additional`` information)."""
    details = tlv.encode_tlv(b"\x81", bytes((command.number, command.type, command.qualifier)))
    devices = tlv.encode_tlv(b"\x82", b"\x82\x81")
    return details + devices + tlv.encode_tlv(b"\x83", bytes((result,)) + additional)
