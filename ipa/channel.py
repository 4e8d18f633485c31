"""The APDU layer of ES10: a logical channel to ISD-R carrying STORE DATA (SGP.22 §5.7.2).

:class:`Es10Channel` turns one ES10 request TLV into STORE DATA command APDUs and the card's
answer back into one response TLV. What it does, in the order a card sees it:

1. optionally TERMINAL CAPABILITY on the basic channel (``80 AA 00 00 Lc A9...``);
2. MANAGE CHANNEL open, card-assigned (``00 70 00 00 01``) or of a configured number
   (``00 70 00 ch 00``), or nothing when the basic channel 0 is used;
3. SELECT ISD-R by AID on that channel;
4. per ES10 request: STORE DATA blocks (``P1=11`` more / ``91`` last, ``P2`` = block number
   from 0), then GET RESPONSE while the card says ``61xx``;
5. MANAGE CHANNEL close (``00 70 80 ch``).

Status word rules (ISO/IEC 7816-4): ``9000`` ends a command, ``61xx`` means ``xx`` more bytes
(00 = 256) to fetch with GET RESPONSE, ``6Cxx`` means re-issue the same command with
``Le=xx``; every other status word raises :class:`~ipa.errors.StatusWordError`. A response
without data is legal (intermediate BPP segments have none).

``91xx`` (ETSI TS 102 221 §14.6) ends a command successfully *and* announces an ``xx``-byte
proactive command. Once the ES10 response is complete the channel serves it on the basic
channel: FETCH (``80 12 00 00 xx``); a REFRESH that resets the card (UICC Reset ``04``, as
the card sends after a profile switch with refreshFlag, or eUICC Profile State Change
``09``) is carried out through ``transport.reset()``, after which the channel opens again
(TERMINAL CAPABILITY, MANAGE CHANNEL, SELECT ISD-R); UICC Reset gets no TERMINAL RESPONSE
(ETSI TS 102 223 §6.4.7: the reset answers it), every other command gets one (result
``30``, beyond the terminal's capabilities, for anything but REFRESH). A transport that
cannot reset (:class:`~ipa.errors.CardResetNotSupported`) makes the channel answer result
``20`` (terminal currently unable) and set :attr:`Es10Channel.reset_required`: the device
must reset the card itself.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from types import TracebackType

from ipa.errors import (
    CardProtocolError,
    CardResetNotSupported,
    ChannelClosedError,
    StatusWordError,
)
from ipa.proactive import (
    RESULT_BEYOND_TERMINAL_CAPABILITIES,
    RESULT_OK,
    RESULT_TERMINAL_UNABLE,
    ProactiveCommand,
    parse_proactive_command,
    terminal_response,
)
from ipa.transport import Transport

__all__ = [
    "ChannelConfig",
    "DEFAULT_TERMINAL_CAPABILITY",
    "Es10Channel",
    "ISD_R_AID",
    "interindustry_cla",
    "proprietary_cla",
]

log = logging.getLogger(__name__)

#: AID of the ISD-R, the application behind every ES10 function.
ISD_R_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000100")

#: TERMINAL CAPABILITY data an IoT device sends: ``A9 { 83 01 07 }`` (eUICC-related support).
DEFAULT_TERMINAL_CAPABILITY = bytes.fromhex("A903830107")

_INS_STORE_DATA = 0xE2
_INS_GET_RESPONSE = 0xC0
_INS_SELECT = 0xA4
_INS_MANAGE_CHANNEL = 0x70
_INS_TERMINAL_CAPABILITY = 0xAA
_P1_MORE_BLOCKS = 0x11
_P1_LAST_BLOCK = 0x91
_MAX_CHANNEL = 19
# A card that keeps answering 61xx would otherwise hold the client forever; 16 MiB of response
# is far beyond any ES10 response (the largest, GetProfilesInfo with icons, stays below 64 KiB).
_MAX_GET_RESPONSES = 65536
_INS_FETCH = 0x12
_INS_TERMINAL_RESPONSE = 0x14
# A card that announces a new proactive command after every answer would hold us forever.
_MAX_PROACTIVE = 8
#: Proactive commands kept in ``Es10Channel.proactive_commands`` (the latest ones): a device
#: that switches profiles for days must not keep every REFRESH it ever served.
KEPT_PROACTIVE_COMMANDS = 32


def interindustry_cla(channel: int) -> int:
    """CLA of interindustry commands (SELECT, MANAGE CHANNEL, GET RESPONSE) on ``channel``.

    ISO/IEC 7816-4 §5.4.1: channels 0..3 use ``000000cc``, channels 4..19 use ``01zzcccc``
    with ``cccc`` = channel - 4.
    """
    if 0 <= channel <= 3:
        return channel
    if 4 <= channel <= _MAX_CHANNEL:
        return 0x40 | (channel - 4)
    raise ValueError(f"logical channel must be 0..{_MAX_CHANNEL}, got {channel}")


def proprietary_cla(channel: int) -> int:
    """CLA of proprietary (GlobalPlatform) commands such as STORE DATA on ``channel``."""
    return 0x80 | interindustry_cla(channel)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How :class:`Es10Channel` reaches ISD-R.

    Attributes:
        channel: ``None`` to let the card assign a logical channel (``00 70 00 00 01``), ``0``
            to use the basic channel (nothing is opened or closed), ``1..19`` to open that
            channel number explicitly (``00 70 00 ch 00``).
        select_p2: P2 of SELECT ISD-R, ``0x04`` (return FCP) or ``0x00`` (return FCI).
        select_le: append ``Le=00`` to SELECT (case 4) instead of sending it as case 3.
        terminal_capability: data of a TERMINAL CAPABILITY command sent on the basic channel
            before the channel is opened (e.g. :data:`DEFAULT_TERMINAL_CAPABILITY`), or
            ``None`` to send none.
        block_size: largest STORE DATA data field, 1..255.
        store_data_le: append ``Le=00`` to the last STORE DATA block (pySim style).
        aid: the application to SELECT (ISD-R unless testing something else).
    """

    channel: int | None = None
    select_p2: int = 0x04
    select_le: bool = False
    terminal_capability: bytes | None = None
    block_size: int = 255
    store_data_le: bool = False
    aid: bytes = ISD_R_AID

    def __post_init__(self) -> None:
        if self.channel is not None and not 0 <= self.channel <= _MAX_CHANNEL:
            raise ValueError(f"channel must be None or 0..{_MAX_CHANNEL}, got {self.channel}")
        if not 0 <= self.select_p2 <= 0xFF:
            raise ValueError(f"select_p2 must be one byte, got {self.select_p2}")
        if not 1 <= self.block_size <= 255:
            raise ValueError(f"block_size must be 1..255, got {self.block_size}")
        if not 5 <= len(self.aid) <= 16:
            raise ValueError(f"AID must be 5..16 bytes, got {len(self.aid)}")
        tc = self.terminal_capability
        if tc is not None and not 1 <= len(tc) <= 255:
            raise ValueError(f"terminal_capability must be 1..255 bytes, got {len(tc)}")


def _with_le(apdu: bytes, le: int) -> bytes:
    """``apdu`` with its Le set to ``le`` (added when the command had none)."""
    if len(apdu) == 4:  # case 1
        return apdu + bytes((le,))
    if len(apdu) == 5:  # case 2: the fifth byte is Le
        return apdu[:4] + bytes((le,))
    lc = apdu[4]
    return apdu[: 5 + lc] + bytes((le,))  # case 3 gains an Le, case 4 gets a new one


class Es10Channel:
    """A logical channel to ISD-R that exchanges ES10 request/response TLVs.

    Use as a context manager (opens on enter, closes on exit) or call :meth:`open` and
    :meth:`close` yourself::

        with Es10Channel(transport, ChannelConfig(channel=1)) as ch:
            response = ch.exchange(bytes.fromhex("BF3E035C015A"))
    """

    def __init__(self, transport: Transport, config: ChannelConfig | None = None) -> None:
        self._transport = transport
        self._transmit = transport.transmit
        self.config = config if config is not None else ChannelConfig()
        self._channel: int | None = None
        self._opened_by_us = False
        self.select_response = b""
        self._set_cla(0)
        self._proactive_len = 0  # xx of the last 91xx, until the command is fetched
        #: The latest proactive commands served (at most KEPT_PROACTIVE_COMMANDS), oldest
        #: first (REFRESH after a profile switch, mostly).
        self.proactive_commands: collections.deque[ProactiveCommand] = collections.deque(
            maxlen=KEPT_PROACTIVE_COMMANDS
        )
        #: Card resets this channel made for a REFRESH.
        self.refresh_resets = 0
        #: True once the card asked for a reset the transport could not make.
        self.reset_required = False
        #: The channel could not be opened again after a REFRESH reset: the next request retries.
        self._reopen_pending = False

    # -- state --------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        """The transport this channel sends APDUs through."""
        return self._transport

    @property
    def is_open(self) -> bool:
        """Whether ISD-R is selected on an open channel."""
        return self._channel is not None

    @property
    def channel(self) -> int:
        """The logical channel number in use.

        Raises:
            ChannelClosedError: the channel is not open.
        """
        if self._channel is None:
            raise ChannelClosedError("ES10 channel is not open")
        return self._channel

    def _set_cla(self, channel: int) -> None:
        ii = interindustry_cla(channel)
        self._cla_ii = ii
        self._sd_single = bytes((0x80 | ii, _INS_STORE_DATA, _P1_LAST_BLOCK, 0))
        self._le_suffix = b"\x00" if self.config.store_data_le else b""

    # -- opening and closing ------------------------------------------------------------

    def open(self) -> None:
        """Send TERMINAL CAPABILITY (if configured), open the channel and SELECT ISD-R.

        On failure the channel this call opened is closed again before the error propagates.

        Raises:
            StatusWordError: a command was refused.
            CardProtocolError: the card's answer to MANAGE CHANNEL is malformed.
        """
        if self._channel is not None:
            return
        cfg = self.config
        if cfg.terminal_capability is not None:
            tc = cfg.terminal_capability
            apdu = bytes((0x80, _INS_TERMINAL_CAPABILITY, 0, 0, len(tc))) + tc
            self.command(apdu, "TERMINAL CAPABILITY")
        channel = self._open_logical_channel(cfg.channel)
        try:
            self._set_cla(channel)
            aid = cfg.aid
            select = bytes((interindustry_cla(channel), _INS_SELECT, 0x04, cfg.select_p2))
            select += bytes((len(aid),)) + aid + (b"\x00" if cfg.select_le else b"")
            self.select_response = self.command(select, "SELECT")
        except BaseException:
            if self._opened_by_us:
                self._close_logical_channel(channel, quiet=True)
            self._opened_by_us = False
            self._set_cla(0)
            raise
        self._channel = channel
        log.debug("ISD-R selected on logical channel %d", channel)
        if self._proactive_len:
            self.serve_proactive()

    def _open_logical_channel(self, wanted: int | None) -> int:
        if wanted == 0:
            self._opened_by_us = False
            return 0
        if wanted is None:
            data = self.command(
                bytes((0x00, _INS_MANAGE_CHANNEL, 0x00, 0x00, 0x01)), "MANAGE CHANNEL open"
            )
            if len(data) != 1:
                raise CardProtocolError(
                    f"MANAGE CHANNEL open returned {len(data)} bytes instead of a channel number"
                )
            channel = data[0]
            if not 1 <= channel <= _MAX_CHANNEL:
                raise CardProtocolError(f"card assigned unusable logical channel {channel}")
        else:
            self.command(
                bytes((0x00, _INS_MANAGE_CHANNEL, 0x00, wanted, 0x00)), "MANAGE CHANNEL open"
            )
            channel = wanted
        self._opened_by_us = True
        return channel

    def _close_logical_channel(self, channel: int, *, quiet: bool) -> None:
        try:
            self.command(bytes((0x00, _INS_MANAGE_CHANNEL, 0x80, channel)), "MANAGE CHANNEL close")
        except Exception as exc:
            if not quiet:
                raise
            log.warning("closing logical channel %d failed: %s", channel, exc)

    def close(self) -> None:
        """Close the logical channel if this object opened it (no-op when already closed).

        Raises:
            StatusWordError: the card refused MANAGE CHANNEL close (the channel is still
                considered closed by this object).
        """
        channel = self._channel
        if channel is None:
            return
        opened_by_us = self._opened_by_us
        self._channel = None
        self._opened_by_us = False
        self._set_cla(0)
        if opened_by_us:
            self._close_logical_channel(channel, quiet=False)

    def __enter__(self) -> Es10Channel:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # An error is already on its way out: a failing close must not replace it.
        try:
            self.close()
        except Exception as close_exc:
            log.warning("closing ES10 channel after an error failed: %s", close_exc)

    # -- commands -----------------------------------------------------------------------

    def command(self, apdu: bytes, name: str = "APDU") -> bytes:
        """Send one command APDU and return all its response data.

        Follows ``61xx`` with GET RESPONSE (interindustry CLA of the current channel) until
        ``9000``, re-issues the command once with ``Le=xx`` on ``6Cxx``, and raises
        :class:`StatusWordError` (naming ``name``) for any other status word.
        """
        resp = self._transmit(apdu)
        n = len(resp)
        if n < 2:
            raise CardProtocolError(f"{name}: response of {n} bytes has no status word")
        sw1 = resp[n - 2]
        if sw1 == 0x90 and resp[n - 1] == 0:
            return resp[: n - 2]
        if sw1 == 0x91:
            self._proactive_len = resp[n - 1] or 256
            return resp[: n - 2]
        if sw1 == 0x61:
            return self._get_response(resp[: n - 2], resp[n - 1])
        if sw1 == 0x6C:
            log.debug("%s: card asks for Le=%02X, re-issuing", name, resp[n - 1])
            resp = self._transmit(_with_le(apdu, resp[n - 1]))
            n = len(resp)
            if n < 2:
                raise CardProtocolError(f"{name}: response of {n} bytes has no status word")
            sw1 = resp[n - 2]
            if sw1 == 0x90 and resp[n - 1] == 0:
                return resp[: n - 2]
            if sw1 == 0x91:
                self._proactive_len = resp[n - 1] or 256
                return resp[: n - 2]
            if sw1 == 0x61:
                return self._get_response(resp[: n - 2], resp[n - 1])
        raise StatusWordError((sw1 << 8) | resp[n - 1], name)

    def _get_response(self, first: bytes, le: int) -> bytes:
        chunks = [first] if first else []
        cla = self._cla_ii
        transmit = self._transmit
        wrong_le_retried = False
        for _ in range(_MAX_GET_RESPONSES):
            resp = transmit(bytes((cla, _INS_GET_RESPONSE, 0, 0, le)))
            n = len(resp)
            if n < 2:
                raise CardProtocolError(f"GET RESPONSE: response of {n} bytes has no status word")
            sw1, sw2 = resp[n - 2], resp[n - 1]
            if n > 2:
                chunks.append(resp[: n - 2])
            if sw1 == 0x90 and sw2 == 0:
                return b"".join(chunks)
            if sw1 == 0x91:
                self._proactive_len = sw2 or 256
                return b"".join(chunks)
            if sw1 == 0x61:
                le = sw2
                wrong_le_retried = False
            elif sw1 == 0x6C and not wrong_le_retried:
                le = sw2
                wrong_le_retried = True
            else:
                raise StatusWordError((sw1 << 8) | sw2, "GET RESPONSE")
        raise CardProtocolError(f"card still had data after {_MAX_GET_RESPONSES} GET RESPONSEs")

    def exchange(self, request: bytes) -> bytes:
        """Send one ES10 request TLV as STORE DATA and return the response TLV.

        The response may be empty (the card answered ``9000`` without data).

        Raises:
            ChannelClosedError: :meth:`open` has not succeeded.
            ValueError: the request is empty or needs more than 256 blocks.
            StatusWordError, CardProtocolError: see :meth:`command`.
        """
        if self._channel is None and self._reopen_pending:
            self._reopen_pending = False
            self.open()
        if self._channel is None:
            raise ChannelClosedError("ES10 channel is not open")
        n = len(request)
        if 0 < n <= self.config.block_size:
            # The common case (every ES10 request except BPP segments and big packages).
            response = self.command(
                self._sd_single + bytes((n,)) + request + self._le_suffix, "STORE DATA"
            )
        else:
            response = self._exchange_blocks(request)
        if self._proactive_len:
            self.serve_proactive()
        return response

    # -- proactive commands (ETSI TS 102 221 §14.6, TS 102 223) ----------------------------

    @property
    def proactive_pending(self) -> int:
        """Length of the proactive command the card announced (``91xx``), 0 for none."""
        return self._proactive_len

    def serve_proactive(self) -> None:
        """FETCH and carry out the proactive commands the card announced (module docstring).

        Raises:
            StatusWordError, CardProtocolError, TransportError: FETCH, TERMINAL RESPONSE, the
                reset or opening the channel again failed.
        """
        for _ in range(_MAX_PROACTIVE):
            length = self._proactive_len
            if not length:
                return
            self._proactive_len = 0
            data = self.command(bytes((0x80, _INS_FETCH, 0, 0, length & 0xFF)), "FETCH")
            command = parse_proactive_command(data)
            self.proactive_commands.append(command)
            log.info(
                "proactive command %02X qualifier %02X from the card",
                command.type,
                command.qualifier,
            )
            if not command.resets_card:
                self._terminal_response(command, RESULT_BEYOND_TERMINAL_CAPABILITIES)
                continue
            if command.wants_terminal_response:
                self._terminal_response(command, RESULT_OK)
            self._reset_for(command)
        raise CardProtocolError(f"card announced more than {_MAX_PROACTIVE} proactive commands")

    def _terminal_response(
        self, command: ProactiveCommand, result: int, extra: bytes = b""
    ) -> None:
        data = terminal_response(command, result, extra)
        apdu = bytes((0x80, _INS_TERMINAL_RESPONSE, 0, 0, len(data))) + data
        self.command(apdu, "TERMINAL RESPONSE")

    def _reset_for(self, command: ProactiveCommand) -> None:
        """Reset the card through the transport for a REFRESH, then open the channel again."""
        reset = getattr(self._transport, "reset", None)
        try:
            if not callable(reset):
                raise CardResetNotSupported(f"{type(self._transport).__name__} has no reset()")
            reset()
        except CardResetNotSupported as exc:
            log.warning("the card asks for a reset (REFRESH) the transport cannot make: %s", exc)
            self.reset_required = True
            if not command.wants_terminal_response:
                self._terminal_response(command, RESULT_TERMINAL_UNABLE, b"\x00")
            return
        self.refresh_resets += 1
        log.info("card reset for REFRESH; opening the ES10 channel again")
        # Every logical channel died with the reset: open ours again as configured.
        self._channel = None
        self._opened_by_us = False
        self._set_cla(0)
        try:
            self.open()
        except (StatusWordError, CardProtocolError) as exc:
            # The answer that carried the REFRESH is already in hand and stays valid; a card
            # still starting up (or failing) after the reset is met again by the next request.
            log.warning("opening the ES10 channel after the REFRESH reset failed: %s", exc)
            self._reopen_pending = True

    def _exchange_blocks(self, request: bytes) -> bytes:
        size = self.config.block_size
        n = len(request)
        if n == 0:
            raise ValueError("ES10 request is empty")
        count = -(-n // size)
        if count > 256:
            raise ValueError(
                f"ES10 request of {n} bytes needs {count} STORE DATA blocks of {size} bytes; "
                "P2 numbers at most 256"
            )
        cla = 0x80 | self._cla_ii
        for block in range(count - 1):
            chunk = request[block * size : (block + 1) * size]
            header = bytes((cla, _INS_STORE_DATA, _P1_MORE_BLOCKS, block, len(chunk)))
            data = self.command(header + chunk, "STORE DATA")
            if data:
                raise CardProtocolError(
                    f"STORE DATA block {block} returned {len(data)} bytes before the last block"
                )
        last = count - 1
        chunk = request[last * size :]
        header = bytes((cla, _INS_STORE_DATA, _P1_LAST_BLOCK, last, len(chunk)))
        return self.command(header + chunk + self._le_suffix, "STORE DATA")
