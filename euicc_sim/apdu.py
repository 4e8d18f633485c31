"""ISO/IEC 7816-4 command APDUs: parsing, CLA decoding and status words.

Short APDUs only (no reference LPA uses extended length). The parser is deliberately
lenient about one thing the standard leaves to the transport: a 5-byte APDU is read as
case 2 (``Le`` = P3), which is also how a T=0 case 1 command with ``P3=00`` arrives; the
commands that return no data simply ignore ``Le``.

Everything malformed raises :class:`StatusWordError` with the ISO status word, so the card
OS can answer it without knowing why.
"""

from __future__ import annotations

from typing import NamedTuple

# -- status words (ISO/IEC 7816-4 §5.6, ETSI TS 102 221 §10.2) ---------------------------------

SW_OK = 0x9000
#: ``61 xx``: ``xx`` more bytes available through GET RESPONSE (OR the count in).
SW_BYTES_REMAINING = 0x6100
#: ISO/IEC 7816-4 "memory failure" (execution error: the non-volatile memory failed).
SW_MEMORY_FAILURE = 0x6581
SW_WRONG_LENGTH = 0x6700
SW_LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
SW_SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
SW_COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
SW_INCOMPATIBLE_FILE_STRUCTURE = 0x6981
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_NO_CURRENT_EF = 0x6986
SW_INCORRECT_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_INCORRECT_P1P2 = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88
SW_WRONG_P1P2 = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_NO_PRECISE_DIAGNOSIS = 0x6F00

#: The highest logical channel number ISO/IEC 7816-4 can address (further interindustry CLA).
MAX_CHANNEL = 19


class StatusWordError(Exception):
    """Answer the current command with status word ``sw`` (no response data).

    Raised by the parser, the card OS and applications alike; the card OS turns it into the
    two-byte response.
    """

    def __init__(self, sw: int, message: str = "") -> None:
        if not 0 <= sw <= 0xFFFF:
            raise ValueError(f"status word out of range: {sw!r}")
        super().__init__(message or f"SW {sw:04X}")
        self.sw = sw


def sw_bytes(sw: int) -> bytes:
    """The two bytes SW1 SW2 of ``sw``."""
    return sw.to_bytes(2, "big")


# -- CLA --------------------------------------------------------------------------------------


class ClassByte(NamedTuple):
    """A decoded CLA byte."""

    #: ``False`` for interindustry classes (``0x``/``4x``..``7x``), ``True`` for the
    #: proprietary ones structured the same way (``8x``/``9x``, ``Cx``..``Fx``; GP, ETSI).
    proprietary: bool
    #: Logical channel, 0..19.
    channel: int
    secure_messaging: bool
    #: Command chaining bit ("not the last command of a chain").
    chaining: bool


def _decode_cla_uncached(cla: int) -> ClassByte | None:
    proprietary = bool(cla & 0x80)
    kind = cla & 0x60
    if kind == 0x00:
        # First interindustry values: b5 chaining, b4-b3 secure messaging, b2-b1 channel.
        return ClassByte(proprietary, cla & 0x03, bool(cla & 0x0C), bool(cla & 0x10))
    if kind & 0x40:
        # Further interindustry values: b6 secure messaging, b5 chaining, b4-b1 channel - 4.
        return ClassByte(proprietary, 4 + (cla & 0x0F), bool(cla & 0x20), bool(cla & 0x10))
    # 0x20..0x3F is reserved for future use; 0xA0..0xBF includes the GSM 11.11 class A0.
    return None


#: Every CLA value decoded, ``None`` where unsupported: the card OS decodes one CLA per APDU
#: and a table keeps that to one index operation.
CLASS_BYTES: tuple[ClassByte | None, ...] = tuple(
    None if cla == 0xFF else _decode_cla_uncached(cla) for cla in range(256)
)


def decode_cla(cla: int) -> ClassByte:
    """Decode a CLA byte (ISO/IEC 7816-4 §5.4.1, ETSI TS 102 221 §10.1.1).

    Raises :class:`StatusWordError` ``6E00`` for the classes this card does not speak:
    ``20``..``3F`` (RFU), ``A0``..``BF`` (incl. the GSM class ``A0``) and ``FF``.
    """
    decoded = CLASS_BYTES[cla] if 0 <= cla <= 0xFF else None
    if decoded is None:
        raise StatusWordError(SW_CLA_NOT_SUPPORTED)
    return decoded


def cla_for(channel: int, proprietary: bool = False) -> int:
    """The plain CLA (no secure messaging, no chaining) addressing ``channel`` (0..19)."""
    if not 0 <= channel <= MAX_CHANNEL:
        raise ValueError(f"logical channel out of range: {channel}")
    base = 0x80 if proprietary else 0x00
    if channel < 4:
        return base | channel
    return base | 0x40 | (channel - 4)


# -- command APDU -----------------------------------------------------------------------------


class Command(NamedTuple):
    """A parsed short command APDU."""

    cla: int
    ins: int
    p1: int
    p2: int
    #: The command data field (empty for cases 1 and 2).
    data: bytes
    #: Ne, the number of response bytes expected (1..256; ``Le=00`` means 256), or ``None``
    #: when the APDU has no Le field.
    le: int | None

    @property
    def case(self) -> int:
        """ISO case 1..4."""
        if self.data:
            return 3 if self.le is None else 4
        return 1 if self.le is None else 2


def parse_command(apdu: bytes) -> Command:
    """Parse a short command APDU; raise :class:`StatusWordError` ``6700`` if malformed.

    A 5-byte APDU is case 2 (``Le`` = P3, ``00`` meaning 256); ``Lc=00`` would start an
    extended-length APDU, which this card does not support (also ``6700``).
    """
    n = len(apdu)
    if n <= 5:
        if n == 4:
            return Command(apdu[0], apdu[1], apdu[2], apdu[3], b"", None)
        if n == 5:
            return Command(apdu[0], apdu[1], apdu[2], apdu[3], b"", apdu[4] or 256)
        raise StatusWordError(SW_WRONG_LENGTH)
    lc = apdu[4]
    if lc == 0:
        raise StatusWordError(SW_WRONG_LENGTH)
    end = 5 + lc
    if n == end:
        le = None
    elif n == end + 1:
        le = apdu[end] or 256
    else:
        raise StatusWordError(SW_WRONG_LENGTH)
    return Command(apdu[0], apdu[1], apdu[2], apdu[3], bytes(apdu[5:end]), le)
