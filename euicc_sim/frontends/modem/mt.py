"""The emulated modem (the MT of 3GPP TS 27.007) around a card: AT bytes in, AT bytes out.

:class:`Modem` is pure: :meth:`Modem.receive` takes the bytes a TE wrote and returns the
bytes the modem writes back (echo, information text, final result codes, URCs). The card is
any object with ``transmit(apdu) -> response`` and ``reset() -> ATR``; the I/O loop that
connects a pseudo-terminal or a TCP socket lives in :mod:`.serve`.

Commands (TS 27.007 section, V.250 for the basic ones):

=============  ============================================================================
``E0``/``E1``  echo off/on (V.250 §6.2.4)
``I``, ``Z``   identification (V.250 §6.1.3), reset settings (§6.1.1)
``+CMEE``      0 ``ERROR`` / 1 numeric / 2 verbose ``+CME ERROR`` (§9.1)
``+CFUN``      0 card off, 1 full (card on; ``+CFUN=1,1`` resets it), 4 RF off (card on)
               (§8.2); powering the card up emits the profile's ready URCs
``+CPIN``      ``+CPIN: READY``/``SIM PIN``/``SIM PUK`` from PIN1's status; ``+CPIN=<pin>``
               verifies PIN1, ``+CPIN=<puk>,<newpin>`` unblocks it (§8.3)
``+CSIM``      ``<length>,<command>`` raw APDU on the basic channel or, where the profile
               allows, with a logical channel in its CLA (§8.17)
``+CCHO``      MANAGE CHANNEL open + SELECT by AID; answers the session id (§8.45)
``+CCHC``      MANAGE CHANNEL close (§8.46)
``+CGLA``      APDU on a session's channel; the MT writes the channel into the CLA (§8.43)
``+CRSM``      restricted access by file id/path (§8.18), see :mod:`.files`
``+CIMI``      IMSI from EF.IMSI (§5.6), ``+CCID`` and vendor variants: ICCID
=============  ============================================================================

Lengths in ``+CSIM``/``+CGLA`` count hex characters (twice the bytes). A length that does
not match, odd or non-hex data, or an APDU shorter than four bytes answer ``+CME ERROR: 50``.
With the card off every card command answers ``+CME ERROR: 10`` (SIM not inserted).

Proactive commands: when the card ends a response with ``91 xx`` the MT, acting as the
terminal, fetches and carries out the command (:mod:`.terminal`) after answering the TE. The
TE sees ``90 00`` in place of ``91 xx`` (the proactive session belongs to the terminal), then
the URCs of what the terminal did: a REFRESH that resets the card drops every session and
emits the ready URCs, another REFRESH emits the profile's refresh URCs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Protocol

from .at import (
    AtArg,
    AtCommand,
    AtSyntaxError,
    CommandKind,
    LineBuffer,
    cme_error,
    final_ok,
    info,
    parse_command_line,
)
from .files import (
    CRSM_COMMANDS,
    SimAccessError,
    crsm,
    pin_state,
    read_iccid,
    read_imsi,
    transmit_t0,
    verify_pin,
)
from .quirks import PROFILES, Quirks
from .terminal import (
    REFRESH,
    RESET_QUALIFIERS,
    RESULT_BEYOND_CAPABILITIES,
    RESULT_OK,
    ProactiveFormatError,
    fetch_apdu,
    parse_proactive_command,
    terminal_response_apdu,
)

__all__ = ["CardLike", "Modem"]

log = logging.getLogger(__name__)

_HEX = re.compile(r"[0-9A-Fa-f]*")
_MAX_CHANNEL = 19
# Proactive commands fetched in a row before the MT gives up (a card looping on 91xx).
_MAX_PROACTIVE = 8

CME_OPERATION_NOT_ALLOWED = 3
CME_NOT_SUPPORTED = 4
CME_SIM_NOT_INSERTED = 10
CME_SIM_PIN_REQUIRED = 11
CME_SIM_PUK_REQUIRED = 12
CME_SIM_FAILURE = 13
CME_INCORRECT_PASSWORD = 16
CME_INVALID_INDEX = 21
CME_INCORRECT_PARAMETERS = 50
CME_NOT_FOUND = 100


class CardLike(Protocol):
    """What the modem needs of a card."""

    def transmit(self, apdu: bytes) -> bytes: ...

    def reset(self) -> bytes: ...


class _CmeError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _PlainError(Exception):
    """Answer plain ``ERROR`` (unknown command, V.250 syntax)."""


def set_channel(cla: int, channel: int) -> int:
    """``cla`` with its logical channel replaced by ``channel`` (ISO/IEC 7816-4 §5.4.1).

    Keeps the class (interindustry or proprietary), command chaining and secure messaging;
    switches between the first (channels 0..3) and further (4..19) interindustry coding as
    the channel needs. A CLA of another structure (``A0``, ``FF``) is returned unchanged.
    """
    if cla == 0xFF or cla & 0x60 == 0x20:
        return cla
    high = cla & 0x80
    chaining = cla & 0x10
    if cla & 0x40:  # further interindustry: b6 secure messaging
        sm_further, sm_first = cla & 0x20, 0x0C if cla & 0x20 else 0
    else:
        sm_first, sm_further = cla & 0x0C, 0x20 if cla & 0x0C else 0
    if channel <= 3:
        return high | chaining | sm_first | channel
    return high | 0x40 | sm_further | chaining | (channel - 4)


def channel_of(cla: int) -> int:
    """The logical channel a CLA byte names (0 for CLAs without one)."""
    if cla == 0xFF or cla & 0x60 == 0x20:
        return 0
    if cla & 0x40:
        return 4 + (cla & 0x0F)
    return cla & 0x03


class Modem:
    """An emulated modem with ``card`` inside, behaving as the ``quirks`` profile says.

    Not thread-safe; one I/O loop owns it. ``on_urc``, when given, is called with each URC
    line as it is produced (the URC bytes are also part of what :meth:`receive` returns).
    """

    def __init__(
        self,
        card: CardLike,
        quirks: Quirks | None = None,
        *,
        imei: str = "356938035643809",
        on_urc: Callable[[str], None] | None = None,
    ) -> None:
        self.card = card
        self.quirks = quirks or PROFILES["generic"]
        self.imei = imei
        self._on_urc = on_urc
        self._lines = LineBuffer()
        self.echo = self.quirks.default_echo
        self.cmee = 0
        self.fun = 1
        self.card_on = True
        self._sessions: dict[int, int] = {}  # session id -> logical channel
        self.resets = 0
        self._pending: list[bytes] = []

    # -- byte interface ------------------------------------------------------------------

    def power_on(self) -> bytes:
        """Power the card up (a cold reset, so it shows the profile enabled now) and return
        what the modem emits when it starts: the ready URCs of its card."""
        self.card.reset()
        return b"".join(self._ready_urcs())

    def _ready_urcs(self) -> list[bytes]:
        """The profile's ready URCs; ``+CPIN: SIM PIN``/``SIM PUK`` in place of ``+CPIN:
        READY`` while PIN1 waits to be verified."""
        state = pin_state(self.card.transmit)
        return [
            self._urc(f"+CPIN: {state}" if u == "+CPIN: READY" else u)
            for u in self.quirks.ready_urcs
        ]

    def receive(self, data: bytes) -> bytes:
        """Process bytes from the TE; return the bytes to send back."""
        out = bytearray(data if self.echo else b"")
        for line in self._lines.feed(data):
            out += self._run_line(line)
        return bytes(out)

    # -- command lines -------------------------------------------------------------------

    def _run_line(self, line: bytes) -> bytes:
        if line == b"\x00overflow":
            return b"\r\nERROR\r\n"
        try:
            commands = parse_command_line(line)
        except AtSyntaxError as exc:
            log.debug("syntax error in %r: %s", line, exc)
            return b"\r\nERROR\r\n"
        if commands is None:
            return b""
        log.debug("TE: %s", line.decode("ascii", "replace"))
        out = bytearray()
        for command in commands:
            try:
                out += self._run(command)
            except _CmeError as exc:
                out += cme_error(exc.code, self.cmee)
                break
            except _PlainError:
                out += b"\r\nERROR\r\n"
                break
        else:
            out += final_ok()
        # URCs caused by the command (a REFRESH carried out) follow its final result code.
        for urc in self._pending:
            out += urc
        self._pending.clear()
        return bytes(out)

    def _run(self, cmd: AtCommand) -> bytes:
        handler = _HANDLERS.get(cmd.name)
        if handler is None:
            handler = self._vendor_handler(cmd.name)
        if handler is None:
            raise _PlainError
        return handler(self, cmd)

    def _vendor_handler(self, name: str) -> Callable[[Modem, AtCommand], bytes] | None:
        if name in self.quirks.ccid_commands:
            return Modem._ccid
        return None

    def _urc(self, text: str) -> bytes:
        if self._on_urc is not None:
            self._on_urc(text)
        return info(text)

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _int_arg(args: tuple[AtArg, ...], index: int, default: int | None = None) -> int:
        if index >= len(args) or args[index].empty:
            if default is None:
                raise _CmeError(CME_INCORRECT_PARAMETERS)
            return default
        text = args[index].text
        if not text.isdigit():
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        return int(text)

    @staticmethod
    def _hex_arg(args: tuple[AtArg, ...], index: int) -> bytes:
        if index >= len(args):
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        text = args[index].text
        if len(text) % 2 or not _HEX.fullmatch(text):
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        return bytes.fromhex(text)

    def _hex_out(self, data: bytes) -> str:
        text = data.hex().upper()
        return f'"{text}"' if self.quirks.quote_hex else text

    def _require_card(self) -> None:
        if not self.card_on:
            raise _CmeError(CME_SIM_NOT_INSERTED)

    def _card_transmit(self, apdu: bytes) -> bytes:
        """One APDU from the TE; a pending proactive command is the terminal's business."""
        response = bytes(self.card.transmit(apdu))
        if len(response) >= 2 and response[-2] == 0x91:
            length = response[-1]
            response = response[:-2] + b"\x90\x00"
            self._proactive(length)
        return response

    # -- proactive session (TS 102 223 §6) ------------------------------------------------

    def _proactive(self, length: int) -> None:
        for _ in range(_MAX_PROACTIVE):
            fetched = bytes(self.card.transmit(fetch_apdu(length)))
            if fetched[-2:] != b"\x90\x00":
                log.warning("FETCH answered %s", fetched[-2:].hex())
                return
            try:
                command = parse_proactive_command(fetched[:-2])
            except ProactiveFormatError as exc:
                log.warning("fetched proactive command unusable: %s", exc)
                return
            if command.type == REFRESH and command.qualifier in RESET_QUALIFIERS:
                log.info("REFRESH (qualifier %02X): resetting the card", command.qualifier)
                self._reset_card()
                return
            result = RESULT_OK if command.type == REFRESH else RESULT_BEYOND_CAPABILITIES
            response = bytes(self.card.transmit(terminal_response_apdu(command, result)))
            if command.type == REFRESH:
                log.info("REFRESH (qualifier %02X) carried out", command.qualifier)
                self._pending += [self._urc(u) for u in self.quirks.refresh_urcs]
            if response[-2:-1] != b"\x91":
                return
            length = response[-1]
        log.warning("card kept asking for proactive commands; giving up")

    def _reset_card(self) -> None:
        self._sessions.clear()
        self.card.reset()
        self.resets += 1
        self.card_on = True
        self._pending += self._ready_urcs()

    # -- V.250 basic commands --------------------------------------------------------------

    def _echo(self, cmd: AtCommand) -> bytes:
        value = self._int_arg(cmd.args, 0, 0)
        if value not in (0, 1):
            raise _PlainError
        self.echo = bool(value)
        return b""

    def _ident(self, cmd: AtCommand) -> bytes:
        q = self.quirks
        return info(f"{q.manufacturer}\r\n{q.model}\r\nRevision: {q.revision}")

    def _reset_settings(self, cmd: AtCommand) -> bytes:
        self.echo = self.quirks.default_echo
        self.cmee = 0
        return b""

    def _attention(self, cmd: AtCommand) -> bytes:
        return b""  # &F, V1, Q0 and friends: accepted, nothing to change

    def _cgmi(self, cmd: AtCommand) -> bytes:
        return info(self.quirks.manufacturer)

    def _cgmm(self, cmd: AtCommand) -> bytes:
        return info(self.quirks.model)

    def _cgmr(self, cmd: AtCommand) -> bytes:
        return info(self.quirks.revision)

    def _cgsn(self, cmd: AtCommand) -> bytes:
        return info(self.imei)

    # -- TS 27.007 -------------------------------------------------------------------------

    def _cmee(self, cmd: AtCommand) -> bytes:
        if cmd.kind is CommandKind.READ:
            return info(f"+CMEE: {self.cmee}")
        if cmd.kind is CommandKind.TEST:
            return info("+CMEE: (0-2)")
        value = self._int_arg(cmd.args, 0, 0)
        if value > 2:
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        self.cmee = value
        return b""

    def _cfun(self, cmd: AtCommand) -> bytes:
        if cmd.kind is CommandKind.READ:
            return info(f"+CFUN: {self.fun}")
        if cmd.kind is CommandKind.TEST:
            return info("+CFUN: (0,1,4),(0,1)")
        if cmd.kind is not CommandKind.SET:
            raise _PlainError
        fun = self._int_arg(cmd.args, 0)
        rst = self._int_arg(cmd.args, 1, 0)
        if fun not in (0, 1, 4) or rst not in (0, 1):
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        self.fun = fun
        if fun == 0:
            self._sessions.clear()
            self.card_on = False
            return b""
        if not self.card_on or rst == 1:
            self._reset_card()
        return b""

    def _cpin(self, cmd: AtCommand) -> bytes:
        if cmd.kind is CommandKind.TEST:
            return b""
        self._require_card()
        state = pin_state(self.card.transmit)
        if cmd.kind is CommandKind.READ:
            return info(f"+CPIN: {state}")
        if cmd.kind is not CommandKind.SET or not cmd.args:
            raise _PlainError
        if state == "READY":
            raise _CmeError(CME_OPERATION_NOT_ALLOWED)  # nothing to enter
        pin = cmd.args[0].text
        new_pin = cmd.args[1].text if len(cmd.args) > 1 else None
        if state == "SIM PUK" and new_pin is None:
            raise _CmeError(CME_SIM_PUK_REQUIRED)
        try:
            sw = verify_pin(self.card.transmit, pin, new_pin)
        except ValueError as exc:
            raise _CmeError(CME_INCORRECT_PARAMETERS) from exc
        if sw == 0x9000:
            return b""
        if sw == 0x6983:
            raise _CmeError(CME_SIM_PUK_REQUIRED)
        if sw & 0xFFF0 == 0x63C0:
            raise _CmeError(CME_INCORRECT_PASSWORD if sw & 0x0F else CME_SIM_PUK_REQUIRED)
        raise _CmeError(CME_SIM_FAILURE)

    def _csim(self, cmd: AtCommand) -> bytes:
        if cmd.kind is CommandKind.TEST:
            return b""
        if cmd.kind is not CommandKind.SET:
            raise _PlainError
        self._require_card()
        length = self._int_arg(cmd.args, 0)
        apdu = self._hex_arg(cmd.args, 1)
        if length != 2 * len(apdu) or len(apdu) < 4:
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        if not self.quirks.csim_logical_channels and (channel_of(apdu[0]) != 0 or apdu[1] == 0x70):
            raise _CmeError(CME_OPERATION_NOT_ALLOWED)
        response = self._card_transmit(apdu)
        return info(f"+CSIM: {2 * len(response)},{self._hex_out(response)}")

    def _logical_channel_set(self, cmd: AtCommand) -> bool:
        """The common checks of +CCHO, +CCHC and +CGLA: True for the SET form with a card,
        False for the TEST form; anything else, or no such commands here, is an error."""
        if not self.quirks.logical_channels:
            raise _PlainError
        if cmd.kind is CommandKind.TEST:
            return False
        if cmd.kind is not CommandKind.SET:
            raise _PlainError
        self._require_card()
        return True

    def _ccho(self, cmd: AtCommand) -> bytes:
        if not self._logical_channel_set(cmd):
            return b""  # the TEST form
        aid = self._hex_arg(cmd.args, 0)
        if not 1 <= len(aid) <= 16:
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        opened = bytes(self.card.transmit(b"\x00\x70\x00\x00\x01"))
        if len(opened) != 3 or opened[1:] != b"\x90\x00":
            raise _CmeError(CME_SIM_FAILURE)
        channel = opened[0]
        _, sw = transmit_t0(
            self._card_transmit,
            bytes((set_channel(0x00, channel), 0xA4, 0x04, 0x00, len(aid))) + aid,
        )
        if sw != 0x9000:
            self.card.transmit(bytes((0x00, 0x70, 0x80, channel)))
            raise _CmeError(CME_NOT_FOUND)
        session = channel + self.quirks.session_base
        self._sessions[session] = channel
        return info(f"+CCHO: {session}" if self.quirks.ccho_prefix else str(session))

    def _ccho_session(self, cmd: AtCommand) -> int:
        session = self._int_arg(cmd.args, 0)
        if session not in self._sessions:
            raise _CmeError(CME_INVALID_INDEX)
        return session

    def _cchc(self, cmd: AtCommand) -> bytes:
        if not self._logical_channel_set(cmd):
            return b""  # the TEST form
        session = self._ccho_session(cmd)
        channel = self._sessions.pop(session)
        self.card.transmit(bytes((0x00, 0x70, 0x80, channel)))
        return b""

    def _cgla(self, cmd: AtCommand) -> bytes:
        if not self._logical_channel_set(cmd):
            return b""  # the TEST form
        session = self._ccho_session(cmd)
        length = self._int_arg(cmd.args, 1)
        apdu = self._hex_arg(cmd.args, 2)
        if length != 2 * len(apdu) or len(apdu) < 4:
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        channel = self._sessions[session]
        apdu = bytes((set_channel(apdu[0], channel),)) + apdu[1:]
        if apdu[1] == 0x70:  # MANAGE CHANNEL is the MT's own business (§8.45 NOTE)
            raise _CmeError(CME_OPERATION_NOT_ALLOWED)
        if self.quirks.cgla_get_response:
            data, sw = transmit_t0(self._card_transmit, apdu)
            response = data + sw.to_bytes(2, "big")
        else:
            response = self._card_transmit(apdu)
        return info(f"+CGLA: {2 * len(response)},{self._hex_out(response)}")

    def _crsm(self, cmd: AtCommand) -> bytes:
        if cmd.kind is CommandKind.TEST:
            return b""
        if cmd.kind is not CommandKind.SET:
            raise _PlainError
        self._require_card()
        args = cmd.args
        command = self._int_arg(args, 0)
        if command not in CRSM_COMMANDS:
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        fileid = None if len(args) < 2 or args[1].empty else self._int_arg(args, 1)
        if command != 242 and fileid is None:
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        p1 = self._int_arg(args, 2, 0)
        p2 = self._int_arg(args, 3, 0)
        p3 = self._int_arg(args, 4, 0)
        if max(p1, p2, p3) > 255 or (fileid is not None and fileid > 0xFFFF):
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        data = self._hex_arg(args, 5) if len(args) > 5 and not args[5].empty else b""
        path = self._hex_arg(args, 6) if len(args) > 6 and not args[6].empty else None
        if command in (214, 220) and not data:
            raise _CmeError(CME_INCORRECT_PARAMETERS)
        sw1, sw2, out = crsm(self._card_transmit, command, fileid, p1, p2, p3, data, path)
        tail = f",{self._hex_out(out)}" if out else ""
        return info(f"+CRSM: {sw1},{sw2}{tail}")

    def _cimi(self, cmd: AtCommand) -> bytes:
        if cmd.kind is CommandKind.TEST:
            return b""
        self._require_card()
        try:
            return info(read_imsi(self._card_transmit))
        except SimAccessError as exc:
            log.debug("+CIMI: %s", exc)
            pin_needed = exc.sw == 0x6982  # EF.IMSI is read under PIN1 (TS 31.102 §4.2.2)
            raise _CmeError(CME_SIM_PIN_REQUIRED if pin_needed else CME_SIM_FAILURE) from exc
        except ValueError as exc:
            log.debug("+CIMI: %s", exc)
            raise _CmeError(CME_SIM_FAILURE) from exc

    def _ccid(self, cmd: AtCommand) -> bytes:
        if cmd.kind is CommandKind.TEST:
            return b""
        self._require_card()
        try:
            iccid = read_iccid(self._card_transmit)
        except SimAccessError as exc:
            log.debug("%s: %s", cmd.name, exc)
            raise _CmeError(CME_SIM_FAILURE) from exc
        return info(self.quirks.ccid_commands[cmd.name] + iccid)


_HANDLERS: dict[str, Callable[[Modem, AtCommand], bytes]] = {
    "E": Modem._echo,
    "I": Modem._ident,
    "Z": Modem._reset_settings,
    "&F": Modem._reset_settings,
    "V": Modem._attention,
    "Q": Modem._attention,
    "+CGMI": Modem._cgmi,
    "+CGMM": Modem._cgmm,
    "+CGMR": Modem._cgmr,
    "+CGSN": Modem._cgsn,
    "+CMEE": Modem._cmee,
    "+CFUN": Modem._cfun,
    "+CPIN": Modem._cpin,
    "+CSIM": Modem._csim,
    "+CCHO": Modem._ccho,
    "+CCHC": Modem._cchc,
    "+CGLA": Modem._cgla,
    "+CRSM": Modem._crsm,
    "+CIMI": Modem._cimi,
}
