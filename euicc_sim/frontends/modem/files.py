"""What the MT reads from the card's file system itself: +CRSM, +CCID and +CIMI.

The MT works on the basic channel with the APDUs of ETSI TS 102 221 §11.1 (SELECT, READ
BINARY, READ RECORD, UPDATE BINARY, UPDATE RECORD, STATUS), through the card's ``transmit``,
and follows ``61 xx`` with GET RESPONSE as a T=0 terminal does.

* +CRSM (TS 27.007 §8.18) selects ``<fileid>`` (by path ``<pathid>`` from the MF when given,
  else by file identifier) and runs ``<command>``: 176 READ BINARY, 178 READ RECORD, 192 GET
  RESPONSE (the FCP of the SELECT), 214 UPDATE BINARY, 220 UPDATE RECORD, 242 STATUS.
* +CCID reads EF.ICCID (``2FE2`` under the MF, TS 102 221 §13.2).
* +CIMI reads EF.IMSI (``6F07`` of ADF.USIM, TS 31.102 §4.2.2): the USIM's AID comes from
  EF.DIR (``2F00``, TS 102 221 §13.1), the application whose AID starts with the 3GPP RID
  and USIM code ``A0000000871002``.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "CRSM_COMMANDS",
    "PinState",
    "pin_state",
    "verify_pin",
    "SimAccessError",
    "crsm",
    "decode_imsi",
    "read_iccid",
    "read_imsi",
    "transmit_t0",
]

Transmit = Callable[[bytes], bytes]

#: +CRSM <command> values (TS 27.007 §8.18) and their INS.
CRSM_COMMANDS = {176: 0xB0, 178: 0xB2, 192: 0xC0, 214: 0xD6, 220: 0xDC, 242: 0xF2}

_USIM_AID_PREFIX = bytes.fromhex("A0000000871002")
_MF = 0x3F00


class SimAccessError(Exception):
    """The card refused a step; ``sw`` is its status word."""

    def __init__(self, sw: int, step: str) -> None:
        super().__init__(f"{step}: SW {sw:04X}")
        self.sw = sw


def transmit_t0(transmit: Transmit, apdu: bytes) -> tuple[bytes, int]:
    """Send ``apdu``, fetch ``61xx`` data with GET RESPONSE; return (data, status word)."""
    response = transmit(apdu)
    data = bytearray(response[:-2])
    sw = int.from_bytes(response[-2:], "big")
    cla = apdu[0] & 0x03 if apdu[0] & 0x40 == 0 else apdu[0] & 0x4F  # channel, class 0x
    for _ in range(256):
        if sw >> 8 != 0x61:
            break
        response = transmit(bytes((cla, 0xC0, 0x00, 0x00, sw & 0xFF)))
        data += response[:-2]
        sw = int.from_bytes(response[-2:], "big")
    return bytes(data), sw


def _select(transmit: Transmit, fileid: int | None, path: bytes | None) -> tuple[bytes, int]:
    """SELECT (FCP wanted) by path from the MF, or by file identifier.

    A path through ``7FFF`` (the current application's ADF, TS 102 221 §8.4.2) needs an
    application: when the card has none selected yet, the MT activates the USIM first, as a
    module does at start-up.
    """
    if path is not None:
        if path[:2] == _MF.to_bytes(2, "big"):
            path = path[2:]
        target = path + (fileid.to_bytes(2, "big") if fileid is not None else b"")
        if not target:
            return transmit_t0(transmit, b"\x00\xa4\x00\x04\x02\x3f\x00")
        select = bytes((0x00, 0xA4, 0x08, 0x04, len(target))) + target
        fcp, sw = transmit_t0(transmit, select)
        if sw == 0x6A82 and target[:2] == b"\x7f\xff":
            try:
                _select_usim(transmit)
            except SimAccessError:
                return fcp, sw
            fcp, sw = transmit_t0(transmit, select)
        return fcp, sw
    if fileid is None:
        return b"", 0x9000
    return transmit_t0(transmit, b"\x00\xa4\x00\x04\x02" + fileid.to_bytes(2, "big"))


def crsm(
    transmit: Transmit,
    command: int,
    fileid: int | None,
    p1: int,
    p2: int,
    p3: int,
    data: bytes,
    path: bytes | None,
) -> tuple[int, int, bytes]:
    """Run one +CRSM; return (sw1, sw2, response data)."""
    fcp, sw = _select(transmit, fileid, path)
    if sw != 0x9000:
        return sw >> 8, sw & 0xFF, b""
    ins = CRSM_COMMANDS[command]
    if command == 192:
        return 0x90, 0x00, fcp
    if command == 242:
        apdu = bytes((0x80, ins, p1, p2, p3))
    elif command in (214, 220):
        apdu = bytes((0x00, ins, p1, p2, len(data))) + data
    else:
        apdu = bytes((0x00, ins, p1, p2, p3))
    out, sw = transmit_t0(transmit, apdu)
    return sw >> 8, sw & 0xFF, out


def read_iccid(transmit: Transmit) -> str:
    """The ICCID digits from EF.ICCID.

    Raises:
        SimAccessError: no EF.ICCID (no enabled profile) or the card refused to read it.
    """
    _, sw = _select(transmit, 0x2FE2, bytes.fromhex("3F00"))
    if sw != 0x9000:
        raise SimAccessError(sw, "SELECT EF.ICCID")
    data, sw = transmit_t0(transmit, b"\x00\xb0\x00\x00\x0a")
    if sw != 0x9000:
        raise SimAccessError(sw, "READ BINARY EF.ICCID")
    digits = "".join(f"{b & 0x0F:X}{b >> 4:X}" for b in data)
    return digits.rstrip("F")


def _usim_aid(transmit: Transmit) -> bytes:
    _, sw = _select(transmit, 0x2F00, bytes.fromhex("3F00"))
    if sw != 0x9000:
        raise SimAccessError(sw, "SELECT EF.DIR")
    for record in range(1, 255):
        data, sw = transmit_t0(transmit, bytes((0x00, 0xB2, record, 0x04, 0x00)))
        if sw != 0x9000:
            break
        # 61 L { 4F L <AID> ... } (TS 102 221 §13.1)
        if len(data) > 4 and data[0] == 0x61 and data[2] == 0x4F:
            aid = data[4 : 4 + data[3]]
            if aid.startswith(_USIM_AID_PREFIX):
                return aid
    raise SimAccessError(0x6A82, "no USIM application in EF.DIR")


def _select_usim(transmit: Transmit) -> None:
    aid = _usim_aid(transmit)
    _, sw = transmit_t0(transmit, bytes((0x00, 0xA4, 0x04, 0x04, len(aid))) + aid)
    if sw != 0x9000:
        raise SimAccessError(sw, "SELECT ADF.USIM")


def decode_imsi(data: bytes) -> str:
    """The IMSI digits of EF.IMSI (TS 31.102 §4.2.2: length byte, then BCD after a parity
    nibble).

    Raises:
        ValueError: the file does not hold an IMSI.
    """
    if len(data) < 2 or not 1 <= data[0] <= len(data) - 1:
        raise ValueError("EF.IMSI holds no IMSI")
    nibbles = []
    for b in data[1 : 1 + data[0]]:
        nibbles += [b & 0x0F, b >> 4]
    digits = nibbles[1:]  # the first nibble is the parity indication
    text = "".join(str(d) for d in digits if d <= 9)
    if not text or any(d > 9 for d in digits if d != 0xF):
        raise ValueError("EF.IMSI holds no IMSI")
    return text


def read_imsi(transmit: Transmit) -> str:
    """The IMSI of the enabled profile's USIM (ADF.USIM / EF.IMSI).

    Raises:
        SimAccessError: no USIM, or the card refused a step.
        ValueError: EF.IMSI is not an IMSI.
    """
    _select_usim(transmit)
    _, sw = transmit_t0(transmit, b"\x00\xa4\x00\x04\x02\x6f\x07")
    if sw != 0x9000:
        raise SimAccessError(sw, "SELECT EF.IMSI")
    data, sw = transmit_t0(transmit, b"\x00\xb0\x00\x00\x09")
    if sw != 0x9000:
        raise SimAccessError(sw, "READ BINARY EF.IMSI")
    return decode_imsi(data)


# -- PIN1 (TS 102 221 §11.1.9 VERIFY PIN, §11.1.13 UNBLOCK PIN) ----------------------------------

#: +CPIN states (TS 27.007 §8.3) the MT derives from PIN1's verification status.
PinState = str  # "READY", "SIM PIN" or "SIM PUK"
_PIN1 = 0x01


def pin_state(transmit: Transmit) -> PinState:
    """``READY``, ``SIM PIN`` or ``SIM PUK``, from VERIFY PIN1 without data.

    The card answers ``90 00`` when PIN1 is verified or disabled, ``63 Cx`` with ``x`` tries
    left when it is not, ``69 83`` when it is blocked. A card without PINs (VERIFY unknown,
    no PIN1) is ``READY``.
    """
    sw = int.from_bytes(transmit(bytes((0x00, 0x20, 0x00, _PIN1)))[-2:], "big")
    if sw & 0xFFF0 == 0x63C0:
        return "SIM PIN" if sw & 0x0F else "SIM PUK"
    if sw == 0x6983:
        return "SIM PUK"
    return "READY"


def _pin_block(pin: str) -> bytes:
    if not 4 <= len(pin) <= 8 or not pin.isdigit():
        raise ValueError("a PIN is 4 to 8 digits")
    return pin.encode("ascii").ljust(8, b"\xff")


def verify_pin(transmit: Transmit, pin: str, new_pin: str | None = None) -> int:
    """VERIFY PIN1 with ``pin`` or, with ``new_pin``, UNBLOCK PIN1 with PUK ``pin``; returns
    the status word.

    Raises:
        ValueError: a PIN that is not 4 to 8 digits.
    """
    if new_pin is None:
        apdu = bytes((0x00, 0x20, 0x00, _PIN1, 0x08)) + _pin_block(pin)
    else:
        puk = pin.encode("ascii")
        if len(puk) != 8 or not pin.isdigit():
            raise ValueError("a PUK is 8 digits")
        apdu = bytes((0x00, 0x2C, 0x00, _PIN1, 0x10)) + puk + _pin_block(new_pin)
    return int.from_bytes(transmit(apdu)[-2:], "big")
