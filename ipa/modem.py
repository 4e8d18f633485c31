"""Card transport over a cellular module's AT interface (3GPP TS 27.007), through pyserial.

:class:`ModemTransport` turns the APDUs of :class:`~ipa.channel.Es10Channel` into AT
commands. The ES10 channel keeps believing it talks ISO/IEC 7816-4 to a card; the transport
maps its logical channels onto what the module offers:

* **+CCHO/+CGLA/+CCHC** (§8.45, §8.43, §8.46) where the module has them: MANAGE CHANNEL open
  is answered here with a *virtual* channel number; the SELECT by AID that follows becomes
  ``AT+CCHO="<AID>"`` (open and select in one; the module answers the SELECT itself, so the
  ES10 channel sees ``90 00`` without FCP data); APDUs on the channel go through
  ``AT+CGLA=<session>,...``; MANAGE CHANNEL close becomes ``AT+CCHC``. The CLA carries the
  session id as channel number when the id can be one (1..19; the MT rewrites it anyway,
  §8.45 NOTE) and channel 0 otherwise (modules whose ids are opaque handles).
* **+CSIM** (§8.17) where the module lacks them: MANAGE CHANNEL and every APDU go through
  +CSIM, with the card's own channel number written into the CLA.
* **the basic channel only** where +CSIM refuses MANAGE CHANNEL too: every virtual channel
  maps to channel 0.

Which way works is found out once, on the first SELECT by AID (``ERROR`` or ``+CME ERROR:
3/4`` to +CCHO means "not supported"), unless a quirks profile says it up front.

Replies are read tolerantly: the echo of the command is skipped, hex strings may be quoted or
not, ``+CCHO`` may answer ``+CCHO: <n>`` or the bare ``<n>``, and unsolicited result codes
(URCs) may arrive at any time. URCs that announce a card (re)start (``+CPIN: READY``,
``+QUSIM: 1``, ``^SIMST: 1``...) mark the open channels stale: the next APDU on a stale
channel opens it again first (the card was reset under us, e.g. by the module carrying out a
REFRESH), and a command that failed because its session vanished is sent again once.

:meth:`ModemTransport.reset` powers the card down and up (``AT+CFUN=0``, ``AT+CFUN=1``) and
waits for the profile's ready URC.

Errors form one tree under :class:`ModemError` (a :class:`~ipa.errors.TransportError`):
:class:`ModemTimeoutError` (no complete answer in time), :class:`ModemErrorReply` (``ERROR``)
and its :class:`CmeError` (``+CME ERROR: <err>``), :class:`UnexpectedReplyError` (a reply
that does not have the command's format), :class:`PyserialMissingError`.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from ipa.at_reply import Final, LineSplitter, final_result, hex_field, split_fields
from ipa.errors import TransportError

__all__ = [
    "MODEM_QUIRKS",
    "CmeError",
    "ModemError",
    "ModemErrorReply",
    "ModemQuirks",
    "ModemTimeoutError",
    "ModemTransport",
    "PyserialMissingError",
    "UnexpectedReplyError",
    "open_modem_transport",
]

log = logging.getLogger(__name__)

_SW_OK = b"\x90\x00"
_SW_NOT_FOUND = b"\x6a\x82"
_SW_CONDITIONS = b"\x69\x85"
_SW_CHANNEL_NOT_SUPPORTED = b"\x68\x81"
_SW_NO_FREE_CHANNEL = b"\x6a\x81"
_MAX_CHANNEL = 19
# +CME ERROR codes that mean "this command does not exist / is not allowed here".
_CME_UNSUPPORTED = {3, 4}
_CME_UNSUPPORTED_TEXT = {"operation not allowed", "operation not supported"}
# +CPIN states that mean "a card is there and answering" (TS 27.007 §8.3): ISD-R is reachable
# whether or not PIN1 has been entered.
_CARD_PRESENT = ("READY", "SIM PIN", "SIM PUK")
_CPIN_URCS = tuple(f"+CPIN: {state}" for state in _CARD_PRESENT)


# -- errors ----------------------------------------------------------------------------------


class ModemError(TransportError):
    """An AT exchange with the module failed. ``command`` is the command line concerned."""

    def __init__(self, message: str, *, command: str = "") -> None:
        super().__init__(message)
        self.command = command


class PyserialMissingError(ModemError):
    """pyserial is not installed (``pip install 'euicc-sim[modem]'``)."""


class ModemTimeoutError(ModemError):
    """No final result code arrived in time. ``lines`` holds what did arrive."""

    def __init__(self, message: str, *, command: str = "", lines: tuple[str, ...] = ()) -> None:
        super().__init__(message, command=command)
        self.lines = lines


class ModemErrorReply(ModemError):
    """The module answered ``ERROR`` (unknown command, or ``+CMEE=0`` hides the reason)."""


class CmeError(ModemErrorReply):
    """The module answered ``+CME ERROR: <err>`` (TS 27.007 §9.2).

    Attributes:
        code: the numeric error code (``+CMEE=1``), or ``None`` for the verbose form.
        text: the verbose text (``+CMEE=2``), or ``""``.
    """

    def __init__(self, *, command: str, code: int | None, text: str) -> None:
        what = str(code) if code is not None else text
        super().__init__(f"{command}: +CME ERROR: {what}", command=command)
        self.code = code
        self.text = text


class UnexpectedReplyError(ModemError):
    """The module's reply lacks the command's information text or has another format."""


# -- quirks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModemQuirks:
    """What the IPAd assumes about a module family (``ipa --modem ... --quirks NAME``).

    Attributes:
        name: the profile name.
        logical_channels: whether to use +CCHO/+CGLA (``None``: find out on first use).
        csim_channels: whether +CSIM carries MANAGE CHANNEL and logical-channel APDUs
            (``None``: find out on first use).
        restart_urcs: URC prefixes that announce a card (re)start; ``reset`` waits for one.
        reset_commands: the command lines that power-cycle the card.
    """

    name: str
    logical_channels: bool | None = None
    csim_channels: bool | None = None
    restart_urcs: tuple[str, ...] = (
        *_CPIN_URCS,
        "+QUSIM: 1",
        "+UUSIMSTAT: 6",
        "#QSS: 3",
        "^SIMST: 1",
    )
    reset_commands: tuple[str, ...] = ("AT+CFUN=0", "AT+CFUN=1")


MODEM_QUIRKS: dict[str, ModemQuirks] = {
    q.name: q
    for q in (
        ModemQuirks("auto"),
        ModemQuirks("generic", logical_channels=True),
        ModemQuirks("quectel", logical_channels=True, restart_urcs=_CPIN_URCS),
        ModemQuirks("simcom", logical_channels=False, restart_urcs=_CPIN_URCS),
        ModemQuirks("ublox", logical_channels=True, restart_urcs=("+UUSIMSTAT: 6",)),
        ModemQuirks("telit", logical_channels=True, restart_urcs=("#QSS: 3",)),
        ModemQuirks(
            "huawei", logical_channels=False, csim_channels=False, restart_urcs=("^SIMST: 1",)
        ),
        ModemQuirks("fibocom", logical_channels=True),
        ModemQuirks("sierra", logical_channels=True),
    )
}


# -- the port ---------------------------------------------------------------------------------


class SerialLike(Protocol):
    """What :class:`ModemTransport` needs of a pyserial port."""

    timeout: float | None

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Channel:
    """A logical channel as the ES10 channel sees it, and where it really goes."""

    aid: bytes | None = None
    session: int | None = None  # +CCHO session id
    real: int | None = None  # the card's channel (+CSIM and basic-only routes)
    stale: bool = False


@dataclass
class _Route:
    """How this module reaches logical channels (decided on the first SELECT by AID)."""

    cgla: bool | None
    csim: bool | None


def _channel_of(cla: int) -> int:
    if cla & 0x40:
        return 4 + (cla & 0x0F)
    return cla & 0x03


def _with_channel(cla: int, channel: int) -> int:
    """``cla`` naming ``channel`` (ISO/IEC 7816-4 §5.4.1), class and chaining kept."""
    high, chaining = cla & 0x80, cla & 0x10
    if channel <= 3:
        return high | chaining | channel
    return high | 0x40 | chaining | (channel - 4)


class ModemTransport:
    """A card transport over an AT port (see the module docstring).

    Args:
        port: an open pyserial port (or anything with the same methods).
        quirks: the module family (default: find everything out).
        timeout: seconds to wait for a command's final result code.
        reset_timeout: seconds to wait for the card's ready URC after a reset.
        init: send ``AT``, ``ATE0`` and ``AT+CMEE=1`` first (turn echo off, numeric errors).
    """

    def __init__(
        self,
        port: SerialLike,
        *,
        quirks: ModemQuirks | None = None,
        timeout: float = 10.0,
        reset_timeout: float = 30.0,
        init: bool = True,
    ) -> None:
        self.port = port
        self.quirks = quirks or MODEM_QUIRKS["auto"]
        self.timeout = timeout
        self.reset_timeout = reset_timeout
        self._splitter = LineSplitter()
        self._lines: deque[str] = deque()
        self.urcs: deque[str] = deque(maxlen=100)
        self._channels: dict[int, _Channel] = {}
        self._route = _Route(self.quirks.logical_channels, self.quirks.csim_channels)
        self._restarted = False
        self.card_restarts = 0
        if init:
            self._initialise()

    def _initialise(self) -> None:
        self.port.reset_input_buffer()
        for attempt in range(3):
            try:
                self.command("AT", timeout=min(self.timeout, 2.0))
                break
            except ModemTimeoutError:
                if attempt == 2:
                    raise
        self.command("ATE0")
        self.command("AT+CMEE=1")

    # -- AT lines ------------------------------------------------------------------------

    def _read_some(self, deadline: float) -> bool:
        """Read what the port has (waiting until ``deadline`` for at least one byte)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.port.timeout = min(remaining, 0.5)
        data = self.port.read(max(1, self.port.in_waiting))
        if data:
            self._lines.extend(self._splitter.feed(data))
        return bool(data)

    def _next_line(self, deadline: float) -> str | None:
        while not self._lines:
            if time.monotonic() >= deadline:
                return None
            self._read_some(deadline)
        return self._lines.popleft()

    def _urc(self, line: str) -> None:
        log.debug("URC %s", line)
        self.urcs.append(line)
        if any(line.startswith(prefix) for prefix in self.quirks.restart_urcs):
            self._restarted = True
            self.card_restarts += 1
            for channel in self._channels.values():
                channel.stale = True

    def drain(self) -> None:
        """Handle the URCs that arrived between commands."""
        while self.port.in_waiting:
            if not self._read_some(time.monotonic() + 0.05):
                break
        while self._lines:
            self._urc(self._lines.popleft())

    def command(
        self, line: str, *, expect: str | None = None, timeout: float | None = None
    ) -> list[str]:
        """Send one command line; return its information text lines.

        ``expect``: the prefix of this command's information text (``"+CSIM:"``); lines
        without it are URCs. ``None``: the command has no information text (every line is a
        URC); ``""``: every line is information text except the restart URCs.

        Raises:
            ModemTimeoutError, ModemErrorReply, CmeError: see the module docstring.
        """
        self.drain()
        log.debug("-> %s", line)
        self.port.write(line.encode("ascii") + b"\r")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        infos: list[str] = []
        echo_seen = False
        while True:
            reply = self._next_line(deadline)
            if reply is None:
                raise ModemTimeoutError(
                    f"{line}: no answer within {self.timeout if timeout is None else timeout} s",
                    command=line,
                    lines=tuple(infos),
                )
            log.debug("<- %s", reply)
            final = final_result(reply)
            if final is not None:
                if final.kind is Final.OK:
                    return infos
                if final.kind is Final.ERROR:
                    raise ModemErrorReply(f"{line}: {final.text}", command=line)
                raise CmeError(command=line, code=final.code, text=final.text)
            if not echo_seen and reply == line:
                echo_seen = True
                continue
            if self._is_info(reply, expect):
                infos.append(reply)
            else:
                self._urc(reply)

    def _is_info(self, line: str, expect: str | None) -> bool:
        if expect is None:
            return False
        if expect == "":
            return not any(line.startswith(p) for p in self.quirks.restart_urcs)
        if expect == "+CCHO:":  # the bare <sessionid> of TS 27.007 §8.45, or "+CCHO: <n>"
            return line.startswith(expect) or line.isdigit()
        return line.startswith(expect)

    def _single(self, line: str, expect: str, infos: list[str]) -> str:
        if len(infos) != 1:
            raise UnexpectedReplyError(
                f"{line}: expected one {expect} line, got {infos!r}", command=line
            )
        text = infos[0]
        return text[len(expect) :].strip() if text.startswith(expect) else text

    # -- APDU carriers -------------------------------------------------------------------

    def _apdu_command(self, name: str, prefix_args: str, apdu: bytes) -> bytes:
        text = apdu.hex().upper()
        line = f'AT{name}={prefix_args}{len(text)},"{text}"'
        expect = f"{name}:"
        reply = self._single(line, expect, self.command(line, expect=expect))
        fields = split_fields(reply)
        try:
            if len(fields) != 2 or not fields[0].isdigit():
                raise ValueError(f"expected <length>,<response>, got {reply[:60]!r}")
            response = hex_field(fields[1])
            if int(fields[0]) != 2 * len(response):
                raise ValueError(f"length {fields[0]} does not match {len(response)} bytes")
        except ValueError as exc:
            raise UnexpectedReplyError(f"{line}: {exc}", command=line) from exc
        if len(response) < 2:
            raise UnexpectedReplyError(f"{line}: response without a status word", command=line)
        return response

    def csim(self, apdu: bytes) -> bytes:
        """One APDU through ``AT+CSIM``; returns response data + SW1 SW2."""
        return self._apdu_command("+CSIM", "", apdu)

    def cgla(self, session: int, apdu: bytes) -> bytes:
        """One APDU through ``AT+CGLA`` on ``session``; returns response data + SW1 SW2."""
        return self._apdu_command("+CGLA", f"{session},", apdu)

    def ccho(self, aid: bytes) -> int:
        """``AT+CCHO``: open a channel with ``aid`` selected; returns the session id."""
        line = f'AT+CCHO="{aid.hex().upper()}"'
        reply = self._single(line, "+CCHO:", self.command(line, expect="+CCHO:"))
        if not reply.isdigit():
            raise UnexpectedReplyError(f"{line}: session id {reply!r} is not a number")
        return int(reply)

    def cchc(self, session: int) -> None:
        """``AT+CCHC``: close ``session``."""
        self.command(f"AT+CCHC={session}", expect="+CCHC")

    # -- Transport -----------------------------------------------------------------------

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return the response data followed by SW1 SW2."""
        if len(apdu) < 4:
            raise ValueError(f"APDU of {len(apdu)} bytes")
        self.drain()
        cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
        virtual = _channel_of(cla)
        if ins == 0x70 and virtual == 0:
            return self._manage_channel(p1, p2)
        if virtual == 0:
            return self.csim(apdu)
        channel = self._channels.get(virtual)
        if channel is None:
            return _SW_CHANNEL_NOT_SUPPORTED
        is_select_aid = ins == 0xA4 and p1 == 0x04 and len(apdu) > 5
        if is_select_aid and (channel.session is None and channel.real is None or channel.stale):
            aid = apdu[5 : 5 + apdu[4]]
            return self._open(channel, aid, apdu)
        if channel.stale and channel.aid is not None:
            self._reopen(channel)
        try:
            return self._send_on(channel, apdu)
        except ModemErrorReply:
            if not channel.stale or channel.aid is None:
                raise
            # The card restarted while this command was on its way: the session it named
            # is gone and the APDU never reached the card. Open again, send once more.
            self._reopen(channel)
            return self._send_on(channel, apdu)

    def _send_on(self, channel: _Channel, apdu: bytes) -> bytes:
        if channel.session is not None:
            real = channel.session if 1 <= channel.session <= _MAX_CHANNEL else 0
            return self.cgla(channel.session, bytes((_with_channel(apdu[0], real),)) + apdu[1:])
        if channel.real is None:
            return _SW_CONDITIONS
        return self.csim(bytes((_with_channel(apdu[0], channel.real),)) + apdu[1:])

    def _manage_channel(self, p1: int, p2: int) -> bytes:
        if p1 == 0x00:
            if p2 == 0:
                free = [n for n in range(1, _MAX_CHANNEL + 1) if n not in self._channels]
                if not free:
                    return _SW_NO_FREE_CHANNEL
                self._channels[free[0]] = _Channel()
                return bytes((free[0],)) + _SW_OK
            if not 1 <= p2 <= _MAX_CHANNEL or p2 in self._channels:
                return b"\x6a\x86"
            self._channels[p2] = _Channel()
            return _SW_OK
        if p1 == 0x80:
            channel = self._channels.pop(p2, None)
            if channel is None:
                return _SW_CHANNEL_NOT_SUPPORTED
            self._close_real(channel)
            return _SW_OK
        return b"\x6a\x86"

    def _close_real(self, channel: _Channel) -> None:
        if channel.stale:
            return  # the card's restart closed it; its old session id means nothing now
        try:
            if channel.session is not None:
                self.cchc(channel.session)
            elif channel.real:
                self.csim(bytes((0x00, 0x70, 0x80, channel.real)))
        except ModemErrorReply as exc:
            if not channel.stale:  # a restart URC that came with the answer
                raise
            log.debug("closing a channel the card reset already closed: %s", exc)

    def _open(self, channel: _Channel, aid: bytes, select: bytes) -> bytes:
        """Open ``channel`` for ``aid``; return the answer to the SELECT the ES10 channel sent."""
        if channel.stale:
            channel.session = channel.real = None
            channel.stale = False
        route = self._route
        if route.cgla is not False:
            try:
                channel.session = self.ccho(aid)
                channel.aid = aid
                route.cgla = True
                return _SW_OK
            except CmeError as exc:
                unsupported = exc.code in _CME_UNSUPPORTED or exc.text in _CME_UNSUPPORTED_TEXT
                if route.cgla or not unsupported:
                    # The module has +CCHO: the application cannot be selected (SELECT's own
                    # status word does not come through +CCHO).
                    log.info("%s", exc)
                    return _SW_NOT_FOUND
                route.cgla = False
            except ModemErrorReply:
                if route.cgla:
                    return _SW_NOT_FOUND
                route.cgla = False
            log.info("no +CCHO on this module: using +CSIM")
        if route.csim is not False:
            try:
                opened = self.csim(b"\x00\x70\x00\x00\x01")
            except ModemErrorReply:
                opened = b""
            if len(opened) == 3 and opened[1:] == _SW_OK:
                route.csim = True
                channel.real = opened[0]
            elif route.csim:
                return opened[-2:] if len(opened) >= 2 else _SW_NO_FREE_CHANNEL
            else:
                route.csim = False
                log.info("+CSIM cannot open logical channels: using the basic channel")
        if channel.real is None:
            channel.real = 0
        channel.aid = aid
        return self.csim(bytes((_with_channel(select[0], channel.real),)) + select[1:])

    def _reopen(self, channel: _Channel) -> None:
        """Open ``channel`` again for its AID after the card restarted."""
        assert channel.aid is not None
        aid = channel.aid
        log.info("card restarted: opening the channel to %s again", aid.hex().upper())
        select = bytes((0x00, 0xA4, 0x04, 0x0C, len(aid))) + aid
        sw = self._open(channel, aid, select)[-2:]
        if sw != _SW_OK and sw[:1] != b"\x61":
            raise ModemError(
                f"card restarted and {aid.hex().upper()} cannot be selected again (SW {sw.hex()})"
            )

    def reset(self) -> bytes:
        """Power-cycle the card through the module and wait until it is ready again.

        Returns ``b""``: a module does not pass the ATR on. Every logical channel is closed.

        Raises:
            ModemTimeoutError: the card did not come back within ``reset_timeout``.
        """
        self._restarted = False
        for line in self.quirks.reset_commands:
            self.command(line, timeout=self.reset_timeout)
        deadline = time.monotonic() + self.reset_timeout
        while not self._restarted:
            reply = self._next_line(deadline)
            if reply is None:
                # Some modules announce nothing: ask.
                states = self.command("AT+CPIN?", expect="+CPIN:")
                if any(i.split(":", 1)[-1].strip() in _CARD_PRESENT for i in states):
                    break
                raise ModemTimeoutError("the card did not restart", command="reset")
            self._urc(reply)
        self._channels.clear()
        return b""

    def close(self) -> None:
        """Close the open channels (best effort) and the port."""
        try:
            for number in list(self._channels):
                channel = self._channels.pop(number)
                try:
                    self._close_real(channel)
                except ModemError as exc:
                    log.debug("closing channel %d: %s", number, exc)
        finally:
            self.port.close()

    def __enter__(self) -> ModemTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _serial() -> Any:
    try:
        return importlib.import_module("serial")
    except ImportError as exc:
        raise PyserialMissingError(
            "a modem needs pyserial: pip install 'euicc-sim[modem]'"
        ) from exc


def open_modem_transport(
    device: str,
    *,
    baud: int = 115200,
    quirks: str = "auto",
    timeout: float = 10.0,
    reset_timeout: float = 30.0,
) -> ModemTransport:
    """Open the module's AT port ``device`` (a path, or any pyserial URL such as
    ``socket://host:port``) and return a ready :class:`ModemTransport`.

    Raises:
        ValueError: unknown quirks profile.
        PyserialMissingError: pyserial is not installed.
        ModemError: the port cannot be opened or the module does not answer ``AT``.
    """
    try:
        profile = MODEM_QUIRKS[quirks]
    except KeyError:
        raise ValueError(
            f"unknown modem quirks {quirks!r}; available: {', '.join(MODEM_QUIRKS)}"
        ) from None
    serial = _serial()
    try:
        port = serial.serial_for_url(device, baudrate=baud, timeout=0.1)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise ModemError(f"cannot open {device}: {exc}") from exc
    try:
        return ModemTransport(port, quirks=profile, timeout=timeout, reset_timeout=reset_timeout)
    except BaseException:
        port.close()
        raise
