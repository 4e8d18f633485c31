"""The terminal's side of a proactive session (ETSI TS 102 223 §6), as far as a modem needs it.

A card that has a proactive command for the terminal ends a response with ``91 xx`` (TS 102
221 §10.2.1.2): ``xx`` bytes wait for FETCH (``80 12 00 00 xx``). The command is a BER-TLV
``D0`` holding Command details (``81 03 <number> <type> <qualifier>``), Device identities
(``82 02 81 82``: from the UICC to the terminal) and its own objects. The terminal acts and
answers with TERMINAL RESPONSE (``80 14 00 00 Lc``): Command details as received, Device
identities ``82 02 82 81`` and a Result (``83 01 <general result>``).

REFRESH (type ``01``, §6.4.7) is the one command the emulated modem carries out. How it acts
on each qualifier (§8.6):

* ``04`` UICC Reset and ``09`` eUICC Profile State Change: the terminal resets the card. A
  reset ends the proactive session, so no TERMINAL RESPONSE is sent; the card learns the
  command was carried out from the reset itself.
* every other mode (NAA initialisation, file change notification, NAA application or session
  reset, steering of roaming, application update): TERMINAL RESPONSE "command performed
  successfully" (``00``); the modem then re-reads what it caches (nothing here).

Any other proactive command gets "command beyond terminal's capabilities" (``30``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "REFRESH",
    "RESET_QUALIFIERS",
    "RESULT_BEYOND_CAPABILITIES",
    "RESULT_OK",
    "ProactiveCommand",
    "ProactiveFormatError",
    "fetch_apdu",
    "parse_proactive_command",
    "terminal_response_apdu",
]

#: Type of command REFRESH (TS 102 223 §9.4).
REFRESH = 0x01
#: REFRESH qualifiers after which the terminal resets the UICC (TS 102 223 §8.6).
RESET_QUALIFIERS = frozenset({0x04, 0x09})
#: General results (TS 102 223 §8.12).
RESULT_OK = 0x00
RESULT_BEYOND_CAPABILITIES = 0x30

_TAG_PROACTIVE = 0xD0
_TAG_COMMAND_DETAILS = 0x01  # with or without the comprehension-required bit (0x81)


class ProactiveFormatError(ValueError):
    """FETCH returned something that is not a proactive command BER-TLV."""


@dataclass(frozen=True, slots=True)
class ProactiveCommand:
    """The Command details of a fetched proactive command (and the whole TLV)."""

    number: int
    type: int
    qualifier: int
    raw: bytes

    @property
    def details(self) -> bytes:
        """The three bytes of Command details, echoed in the TERMINAL RESPONSE."""
        return bytes((self.number, self.type, self.qualifier))


def _length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise ProactiveFormatError("length missing")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    if first == 0x81 and pos + 1 < len(data) and data[pos + 1] >= 0x80:
        return data[pos + 1], pos + 2
    raise ProactiveFormatError(f"bad length byte {first:02X}")


def parse_proactive_command(data: bytes) -> ProactiveCommand:
    """Read Command details out of the ``D0`` TLV returned by FETCH.

    Raises:
        ProactiveFormatError: not a ``D0`` TLV, wrong length, no Command details.
    """
    if not data or data[0] != _TAG_PROACTIVE:
        raise ProactiveFormatError("FETCH data is not a proactive command (tag D0)")
    length, pos = _length(data, 1)
    if pos + length != len(data):
        raise ProactiveFormatError("proactive command length does not match the data")
    end = pos + length
    while pos < end:
        tag = data[pos]
        size, value = _length(data, pos + 1)
        if value + size > end:
            raise ProactiveFormatError("a simple TLV runs past the proactive command")
        if tag & 0x7F == _TAG_COMMAND_DETAILS:
            if size != 3:
                raise ProactiveFormatError("Command details must be 3 bytes")
            number, kind, qualifier = data[value : value + 3]
            return ProactiveCommand(number, kind, qualifier, bytes(data))
        pos = value + size
    raise ProactiveFormatError("proactive command without Command details")


def fetch_apdu(length: int) -> bytes:
    """FETCH of ``length`` bytes (the ``xx`` of ``91 xx``) on the basic channel."""
    return bytes((0x80, 0x12, 0x00, 0x00, length & 0xFF))


def terminal_response_apdu(command: ProactiveCommand, result: int) -> bytes:
    """TERMINAL RESPONSE to ``command`` with general result ``result``."""
    body = (
        b"\x81\x03"
        + command.details
        + b"\x82\x02\x82\x81"  # from the terminal to the UICC
        + bytes((0x83, 0x01, result))
    )
    return bytes((0x80, 0x14, 0x00, 0x00, len(body))) + body
