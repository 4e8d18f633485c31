"""Errors raised by the IPAd's card layers (transport, APDU channel, ES10 client).

Two families matter to callers:

* :class:`StatusWordError` and :class:`CardProtocolError`: the card (or the link to it) broke
  the APDU exchange. ES10 functional errors never travel as status words (SGP.22 §5.7), so any
  status word other than ``9000``/``61xx``/``6Cxx`` is a transport-level failure.
* :class:`Es10Error`: the card answered the ES10 function with a result or error code other
  than ``ok``. It carries the standard's numeric code and its ASN.1 name.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CardProtocolError",
    "CardResetNotSupported",
    "ChannelClosedError",
    "Es10Error",
    "IpaError",
    "ResponseFormatError",
    "StatusWordError",
    "TransportError",
    "sw_meaning",
]


class IpaError(Exception):
    """Base class of every error raised by the IPAd's card layers."""


class TransportError(IpaError):
    """The transport could not exchange an APDU (reader gone, card removed, no reset...)."""


class CardResetNotSupported(TransportError):
    """The transport cannot reset the card (e.g. a modem that owns the card's power); the
    device must reset it some other way. Raised by ``Transport.reset()``."""


class CardProtocolError(IpaError):
    """The card's answer breaks ISO 7816-4 / SGP.22 framing (short response, bad channel...)."""


class ChannelClosedError(IpaError):
    """An ES10 exchange was attempted on a channel that is not open."""


class ResponseFormatError(IpaError):
    """An ES10 response is not a valid encoding of the expected ASN.1 type."""


# ISO/IEC 7816-4 §5.6 (and ETSI TS 102 221 §10.2) meanings of the status words a card may
# return to the commands this client sends. Keys are full SWs; ranges are handled below.
_SW_MEANINGS: dict[int, str] = {
    0x9000: "normal processing",
    0x6200: "warning: no information given, non-volatile memory unchanged",
    0x6281: "warning: part of returned data may be corrupted",
    0x6282: "warning: end of file or record reached before reading Ne bytes",
    0x6283: "warning: selected file deactivated",
    0x6284: "warning: file control information not formatted",
    0x6285: "warning: selected file in termination state",
    0x6300: "warning: no information given, non-volatile memory changed",
    0x6381: "warning: file filled up by the last write",
    0x6400: "execution error: non-volatile memory unchanged",
    0x6500: "execution error: non-volatile memory changed",
    0x6581: "execution error: memory failure",
    0x6700: "wrong length",
    0x6800: "functions in CLA not supported",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6883: "last command of the chain expected",
    0x6884: "command chaining not supported",
    0x6900: "command not allowed",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "incorrect secure messaging data objects",
    0x6A00: "wrong parameters P1-P2",
    0x6A80: "incorrect parameters in the command data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space in the file",
    0x6A85: "Nc inconsistent with TLV structure",
    0x6A86: "incorrect parameters P1-P2",
    0x6A87: "Nc inconsistent with parameters P1-P2",
    0x6A88: "referenced data or reference data not found",
    0x6A89: "file already exists",
    0x6A8A: "DF name already exists",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


def sw_meaning(sw: int) -> str:
    """The ISO/IEC 7816-4 meaning of status word ``sw`` (a short phrase, never empty)."""
    known = _SW_MEANINGS.get(sw)
    if known is not None:
        return known
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} response bytes still available"
    if sw1 == 0x6C:
        return f"wrong Le field; {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"warning: counter {sw2 & 0x0F}"
    if sw1 == 0x91:
        return "normal processing, proactive command pending"
    if sw1 == 0x92:
        return "normal processing, data transfer retried"
    base = _SW_MEANINGS.get(sw & 0xFF00)
    if base is not None:
        return base
    return "unknown status word"


class StatusWordError(IpaError):
    """The card answered a command with a status word that ends the exchange.

    Attributes:
        sw: the status word as an int (``0x6A88``).
        command_name: the command that got it (``"STORE DATA"``, ``"SELECT"``...).
    """

    def __init__(self, sw: int, command_name: str) -> None:
        self.sw = sw
        self.command_name = command_name
        super().__init__(f"{command_name}: SW {sw:04X} ({sw_meaning(sw)})")

    @property
    def sw1(self) -> int:
        """The first status byte."""
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        """The second status byte."""
        return self.sw & 0xFF


class Es10Error(IpaError):
    """An ES10 function returned a result or error code other than ``ok``.

    Attributes:
        function: the function, named as in the standard (``"ES10c.EnableProfile"``).
        code: the numeric code from the response (``1``).
        name: its ASN.1 named number (``"iccidOrAidNotFound"``), or ``"unknown(<code>)"`` for a
            code the schema does not name.
        field: the ASN.1 field or alternative that carried the code (``"enableResult"``).
        result: the code as the client's IntEnum member when it names it, else the int.
        response: the decoded response object when the function returns more than a code
            (the full memory-reset result, for instance), else ``None``.
    """

    def __init__(
        self,
        function: str,
        code: int,
        name: str,
        *,
        field: str = "",
        result: int | None = None,
        response: Any = None,
    ) -> None:
        self.function = function
        self.code = code
        self.name = name
        self.field = field
        self.result = code if result is None else result
        self.response = response
        where = f" {field}" if field else ""
        super().__init__(f"{function} failed:{where} {name} ({code})")
