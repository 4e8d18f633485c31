"""The card operating system: ISO/IEC 7816-4 APDU handling below the applications.

The card OS owns APDU framing, logical channels, SELECT, STORE DATA reassembly, GET RESPONSE
buffering and status words; applications (ISD-R, ECASD) only see whole requests through the
:class:`~euicc_sim.application.Application` protocol. Pure: no I/O, threads or clocks.

Rules (ISO/IEC 7816-4, ETSI TS 102 221; STORE DATA per GSMA SGP.22 v2.5 §5.7.2), in one place:

* The card answers like a T=0 card (the ATR offers T=0 only). A command that carries data
  and returns data (SELECT with response, STORE DATA) answers ``61 xx`` and the data comes
  through GET RESPONSE, also for case 4 (``Le`` present, e.g. pySim's ``Le=00``): on T=0 the
  reader never forwards that ``Le``, and every client handles ``61 xx``. Commands that only
  ask for data (MANAGE CHANNEL open, GET RESPONSE, READ BINARY/RECORD, GET DATA) answer
  directly with at most ``Le`` bytes.
* GET RESPONSE (CLA ``0x``/``8x``, ``4x``/``Cx``, same channel) serves at most 256 bytes,
  ``61 xx`` while more remains, ``90 00`` on the last slice; more than remains is no error.
  With nothing pending: ``6985``. Any other command on the channel discards what is pending.
* STORE DATA (CLA ``8x``/``Cx``): P1 ``11`` more blocks / ``91`` last; P2 counts from 0.
  Blocks are concatenated; intermediate ones answer ``90 00``. A wrong block number answers
  ``6985`` and aborts the sequence; block number 0 always starts a new sequence (a client may
  give up half way and start again). Any other command on the channel aborts the sequence.
  No application selected: ``6985``; more than ``max_request_size`` bytes: ``6A84``.
* MANAGE CHANNEL: channels 1..19; open card-assigned (``P2=00``, lowest free, one byte +
  ``90 00``; ``6A81`` when none is free) or a given number (``6A86`` if already open or out of
  range); close ``P1=80`` (``6881`` if not open, ``6A86`` for channel 0). A channel opened
  from the basic channel starts with the MF selected; one opened from channel n starts with
  channel n's selection (ISO/IEC 7816-4 §7.1.2).
* Instruction classes: SELECT, MANAGE CHANNEL, READ BINARY/RECORD are interindustry only;
  STORE DATA and TERMINAL CAPABILITY proprietary only; the wrong class answers ``6E00``.
  Secure messaging ``6882``, command chaining ``6884``, a closed channel ``6881``.
* SELECT by FID or path selects a file and deselects the channel's application; SELECT by AID
  (exact match) selects the application. A failed SELECT leaves the selection unchanged.
* With a UICC side (:mod:`euicc_sim.uicc`, the enabled profile's file system, PINs and AKA),
  SELECT by FID or path, SELECT by an AID no hosted application has, and the file, PIN,
  STATUS and AUTHENTICATE commands on a channel without a selected application go to it;
  each channel keeps its own UICC selection.
* Optional GET DATA (``CA``): forwarded to the selected application's ``get_data(tag)`` if it
  has one (it returns the whole TLV), otherwise ``6D00``.
* Proactive UICC (:mod:`euicc_sim.proactive`): FETCH ``12``, TERMINAL PROFILE ``10`` and
  TERMINAL RESPONSE ``14`` (class ``80``, basic channel only, else ``6881``) go to the
  proactive session; while a command waits for FETCH every ``90 00`` becomes ``91 xx``.
* Optional GET STATUS (``80 F2``, GlobalPlatform §11.4): forwarded to the selected
  application's ``get_status(channel, p1, p2, data)`` if it has one, otherwise ``6D00``. It
  returns (data, status word); the data comes through GET RESPONSE and the last slice ends
  with that status word (``6310`` "more data" for a continued listing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .apdu import (
    CLASS_BYTES,
    MAX_CHANNEL,
    SW_CLA_NOT_SUPPORTED,
    SW_COMMAND_CHAINING_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_FUNCTION_NOT_SUPPORTED,
    SW_INCOMPATIBLE_FILE_STRUCTURE,
    SW_INCORRECT_DATA,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_LOGICAL_CHANNEL_NOT_SUPPORTED,
    SW_NO_CURRENT_EF,
    SW_NO_PRECISE_DIAGNOSIS,
    SW_NOT_ENOUGH_MEMORY,
    SW_RECORD_NOT_FOUND,
    SW_SECURE_MESSAGING_NOT_SUPPORTED,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    Command,
    StatusWordError,
    parse_command,
    sw_bytes,
)
from .application import Application
from .filesystem import File, FileSystem, FileType
from .proactive import ProactiveSession
from .uicc.selection import ChannelState
from .uicc.uicc import INSTRUCTIONS as _UICC_INSTRUCTIONS
from .uicc.uicc import Uicc

log = logging.getLogger(__name__)


def _with_tck(atr_without_tck: bytes) -> bytes:
    tck = 0
    for b in atr_without_tck[1:]:  # TCK covers T0 .. last historical byte (ISO 7816-3 §8.2.5)
        tck ^= b
    return atr_without_tck + bytes((tck,))


#: The Answer To Reset. TCK is present because T=15 is indicated (ISO/IEC 7816-3 §8.2.5).
ATR = _with_tck(
    bytes.fromhex(
        "3B"  # TS: direct convention
        "9B"  # T0: TA1 and TD1 follow; 11 historical bytes
        "96"  # TA1: Fi=512, Di=32 (common UICC value)
        "80"  # TD1: TD2 follows; protocol T=0
        "1F"  # TD2: TA3 follows; T=15 (global interface bytes)
        "C7"  # TA3: clock stop, no preference; classes A, B and C (5 V, 3 V, 1.8 V)
        # Historical bytes, neutral (no vendor hints): category indicator 80, compact TLV.
        "80"
        "31A0"  # card service data: select by full DF name; EF.DIR (records) holds BER-TLV
        "73B6211F"  # card capabilities: select by full name/path/FID, SFI, record number;
        #            data coding 21; no chaining; channels assigned by card and terminal, >= 8
        "83059000"  # status indicator: LCS 05 (operational), SW 90 00
    )
)

#: Largest reassembled STORE DATA request accepted (a BPP segment or AuthenticateServer is a
#: few KiB); bounds what a hostile client can make the card hold.
MAX_REQUEST_SIZE = 64 * 1024

_SW_OK = b"\x90\x00"
_SW_6F00 = sw_bytes(SW_NO_PRECISE_DIAGNOSIS)
_INS_GET_RESPONSE = 0xC0
_INS_STORE_DATA = 0xE2
_STORE_DATA_MORE = 0x11
_STORE_DATA_LAST = 0x91

_Handler = Callable[["_Channel", int, bool, Command], bytes]


class _Channel:
    """The state of one open logical channel."""

    __slots__ = (
        "app",
        "file",
        "pending",
        "pending_pos",
        "pending_sw",
        "sd_buffer",
        "sd_next",
        "uicc",
    )

    def __init__(
        self, app: Application | None, file: File | None, uicc: ChannelState | None = None
    ) -> None:
        self.app = app
        self.file = file  # current file when no application is selected
        self.uicc = uicc  # selection on the UICC side, when the card has one
        self.pending: bytes | None = None  # response data waiting for GET RESPONSE
        self.pending_pos = 0
        self.pending_sw = _SW_OK  # status word that ends the last slice
        self.sd_buffer = bytearray()  # STORE DATA blocks received so far
        self.sd_next = 0  # expected STORE DATA block number


def _as_bytes(value: object) -> bytes:
    if type(value) is bytes:
        return value
    # memoryview() refuses ints, so a handler returning a count cannot become b"\0" * n.
    return memoryview(value).tobytes()  # type: ignore[arg-type]


def _tlv_span(data: bytes, pos: int) -> tuple[int, int]:
    """(value start, end) of the BER-TLV at ``pos``; ``ValueError`` if malformed."""
    n = len(data)
    if (data[pos] & 0x1F) == 0x1F:  # high tag number form: more tag bytes while b8 is set
        pos += 1
        while pos < n and data[pos] & 0x80:
            pos += 1
    pos += 1
    if pos >= n:
        raise ValueError("truncated TLV")
    first = data[pos]
    pos += 1
    if first < 0x80:
        length = first
    elif 0x81 <= first <= 0x83:
        count = first & 0x7F
        if pos + count > n:
            raise ValueError("truncated length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        raise ValueError("indefinite or oversized length")
    end = pos + length
    if end > n:
        raise ValueError("truncated value")
    return pos, end


def _is_terminal_capability(data: bytes) -> bool:
    """``A9 { TLV* }`` filling the whole data field (ETSI TS 102 221 §11.1.19)."""
    try:
        pos, end = _tlv_span(data, 0)
        if data[0] != 0xA9 or end != len(data):
            return False
        while pos < end:
            pos = _tlv_span(data, pos)[1]
        return True
    except (ValueError, IndexError):
        return False


class CardOS:
    """ISO/IEC 7816-4 card OS hosting ``applications`` over the UICC ``filesystem``.

    ``transmit`` never raises: status words answer every error, and an unexpected exception
    (a bug) answers ``6F 00`` with the traceback logged at ERROR.
    """

    def __init__(
        self,
        applications: Iterable[Application],
        filesystem: FileSystem | None = None,
        *,
        atr: bytes = ATR,
        max_request_size: int = MAX_REQUEST_SIZE,
        uicc: Uicc | None = None,
        proactive: ProactiveSession | None = None,
    ) -> None:
        self._apps: dict[bytes, Application] = {}
        for app in applications:
            aid = bytes(app.aid)
            if aid in self._apps:
                raise ValueError(f"two applications with AID {aid.hex().upper()}")
            self._apps[aid] = app
        self._fs = filesystem if filesystem is not None else FileSystem()
        self._uicc = uicc
        self._atr = bytes(atr)
        self._max_request = max_request_size
        self._proactive = proactive if proactive is not None else ProactiveSession()
        self._handlers: dict[int, _Handler] = {
            0xA4: self._select,
            _INS_GET_RESPONSE: self._get_response,
            _INS_STORE_DATA: self._store_data,
            0x70: self._manage_channel,
            0xAA: self._terminal_capability,
            0xB0: self._read_binary,
            0xB2: self._read_record,
            0xCA: self._get_data,
            0xF2: self._get_status,
            0x10: self._terminal_profile,
            0x12: self._fetch,
            0x14: self._terminal_response,
        }
        self._channels: list[_Channel | None] = []
        self._power_on()

    @property
    def atr(self) -> bytes:
        """The Answer To Reset."""
        return self._atr

    @property
    def open_channels(self) -> tuple[int, ...]:
        """Numbers of the open logical channels (0 is always open)."""
        return tuple(i for i, ch in enumerate(self._channels) if ch is not None)

    def reset(self) -> bytes:
        """Cold/warm reset: close all logical channels, drop pending responses and STORE DATA
        buffers, reset every application; return the ATR."""
        if self._uicc is not None:
            self._uicc.reset()  # the profile enabled now becomes visible
        self._power_on()
        for app in self._apps.values():
            try:
                app.reset()
            except Exception:
                log.error("application %s failed to reset", bytes(app.aid).hex(), exc_info=True)
        return self._atr

    def _power_on(self) -> None:
        uicc = self._uicc.open_channel() if self._uicc is not None else None
        self._channels = [_Channel(None, self._fs.mf, uicc)] + [None] * MAX_CHANNEL
        self._proactive.reset()

    # -- dispatch ---------------------------------------------------------------------------

    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; return response data + SW1 SW2."""
        debug = log.isEnabledFor(logging.DEBUG)
        try:
            try:
                if type(apdu) is not bytes:
                    apdu = _as_bytes(apdu)
                if debug:
                    log.debug("C-APDU %s", apdu.hex())
                response = self._process(apdu)
            except StatusWordError as exc:
                response = sw_bytes(exc.sw)
            if response[-2:] == _SW_OK:
                # A pending proactive command turns a plain success into 91xx (TS 102 221).
                indication = self._proactive.indication()
                if indication is not None:
                    response = response[:-2] + indication
        except Exception:
            log.error("unexpected error processing APDU; answering 6F00", exc_info=True)
            response = _SW_6F00
        if debug:
            log.debug("R-APDU %s", response.hex())
        return response

    def _process(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            raise StatusWordError(SW_WRONG_LENGTH)
        cls = CLASS_BYTES[apdu[0]]
        if cls is None:
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        proprietary, number, secure_messaging, chaining = cls
        if secure_messaging:
            raise StatusWordError(SW_SECURE_MESSAGING_NOT_SUPPORTED)
        if chaining:
            raise StatusWordError(SW_COMMAND_CHAINING_NOT_SUPPORTED)
        channel = self._channels[number]
        if channel is None:
            raise StatusWordError(SW_LOGICAL_CHANNEL_NOT_SUPPORTED)
        ins = apdu[1]
        # Transient state belongs to the exchange that created it: any other command on the
        # channel ends it, whether or not that command succeeds.
        if ins != _INS_GET_RESPONSE and channel.pending is not None:
            channel.pending = None
        if ins != _INS_STORE_DATA and (channel.sd_next or channel.sd_buffer):
            self._abort_store_data(channel)
        if self._uicc is not None and ins in _UICC_INSTRUCTIONS:
            cmd = parse_command(apdu)
            if not self._selects_app(cmd) if ins == 0xA4 else channel.app is None:
                return self._uicc_command(channel, proprietary, cmd)
            handler = self._handlers.get(ins)
            if handler is None:
                raise StatusWordError(SW_INS_NOT_SUPPORTED)
            return handler(channel, number, proprietary, cmd)
        handler = self._handlers.get(ins)
        if handler is None:
            raise StatusWordError(SW_INS_NOT_SUPPORTED)
        return handler(channel, number, proprietary, parse_command(apdu))

    # -- UICC side ------------------------------------------------------------------------------

    def _selects_app(self, cmd: Command) -> bool:
        return cmd.p1 == 0x04 and cmd.data in self._apps

    def _uicc_command(self, ch: _Channel, proprietary: bool, cmd: Command) -> bytes:
        assert self._uicc is not None and ch.uicc is not None
        data, t0 = self._uicc.command(ch.uicc, cmd, proprietary)
        if cmd.ins == 0xA4:
            ch.app = None  # a file or ADF is selected now
        return self._respond_t0(ch, data) if t0 else self._respond_direct(ch, data, cmd.le)

    # -- response buffering -----------------------------------------------------------------

    @staticmethod
    def _respond_t0(channel: _Channel, data: object, sw: bytes = _SW_OK) -> bytes:
        """Answer a command that carried data: ``61 xx`` and keep the data for GET RESPONSE
        (whose last slice ends with ``sw``)."""
        data = _as_bytes(data)
        if not data:
            return sw
        channel.pending = data
        channel.pending_pos = 0
        channel.pending_sw = sw
        n = len(data)
        return bytes((0x61, n if n < 256 else 0))

    @staticmethod
    def _respond_direct(channel: _Channel, data: object, le: int | None) -> bytes:
        """Answer a command that only asks for data: up to ``Le`` bytes now, rest pending."""
        channel.pending = _as_bytes(data)
        channel.pending_pos = 0
        channel.pending_sw = _SW_OK
        return CardOS._next_slice(channel, 256 if le is None else le)

    @staticmethod
    def _next_slice(channel: _Channel, le: int) -> bytes:
        data = channel.pending
        assert data is not None
        start = channel.pending_pos
        end = start + le
        remaining = len(data) - end
        if remaining <= 0:
            channel.pending = None
            sw = channel.pending_sw
            return data[start:] + sw if start else data + sw
        channel.pending_pos = end
        return data[start:end] + bytes((0x61, remaining if remaining < 256 else 0))

    # -- GET RESPONSE (ISO/IEC 7816-4 §11.5.4 / ETSI TS 102 221 §10.1.5) ---------------------

    def _get_response(self, ch: _Channel, number: int, proprietary: bool, cmd: Command) -> bytes:
        # Either class (ISO/IEC 7816-4 §5.4.1): some open-source LPAs send 8x, some IPAs 0x.
        if cmd.p1 or cmd.p2:
            raise StatusWordError(SW_INCORRECT_P1P2)
        if cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        if ch.pending is None:
            raise StatusWordError(SW_CONDITIONS_NOT_SATISFIED)
        return self._next_slice(ch, 256 if cmd.le is None else cmd.le)

    # -- SELECT (ISO/IEC 7816-4 §11.2.2 / ETSI TS 102 221 §11.1.1) ----------------------------

    def _select(self, ch: _Channel, number: int, proprietary: bool, cmd: Command) -> bytes:
        if proprietary:
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        p2 = cmd.p2
        # 00 FCI, 04 FCP, 0C no data; first or only occurrence only.
        if p2 != 0x00 and p2 != 0x04 and p2 != 0x0C:
            raise StatusWordError(SW_INCORRECT_P1P2)
        if cmd.p1 == 0x04:
            app = self._apps.get(cmd.data)
            if app is None:
                raise StatusWordError(SW_FILE_NOT_FOUND)
            response = b"" if p2 == 0x0C else app.select_response()
            ch.app, ch.file = app, None
            return self._respond_t0(ch, response)
        file = self._fs.select(cmd.p1, cmd.data)
        # Files have no FCI of their own: P2=00 gets the FCP too, as UICCs answer it.
        response = b"" if p2 == 0x0C else self._fs.fcp(file)
        ch.app, ch.file = None, file
        return self._respond_t0(ch, response)

    # -- STORE DATA (GlobalPlatform §11.11, SGP.22 §5.7.2) -----------------------------------

    def _store_data(self, ch: _Channel, number: int, proprietary: bool, cmd: Command) -> bytes:
        p1, p2, data = cmd.p1, cmd.p2, cmd.data
        if not proprietary:
            self._abort_store_data(ch)
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        if p1 != _STORE_DATA_LAST and p1 != _STORE_DATA_MORE:
            self._abort_store_data(ch)
            raise StatusWordError(SW_INCORRECT_P1P2)
        if not data:
            self._abort_store_data(ch)
            raise StatusWordError(SW_WRONG_LENGTH)
        app = ch.app
        if app is None:
            self._abort_store_data(ch)
            raise StatusWordError(SW_CONDITIONS_NOT_SATISFIED)
        if p2 != ch.sd_next:
            self._abort_store_data(ch)
            if p2 != 0:
                raise StatusWordError(SW_CONDITIONS_NOT_SATISFIED)
        buffer = ch.sd_buffer
        if len(buffer) + len(data) > self._max_request:
            self._abort_store_data(ch)
            raise StatusWordError(SW_NOT_ENOUGH_MEMORY)
        if p1 == _STORE_DATA_MORE:
            buffer += data
            ch.sd_next = p2 + 1
            return _SW_OK
        if buffer:
            request = bytes(buffer) + data
            self._abort_store_data(ch)
        else:
            request = data  # the common single-block case: no copy
            ch.sd_next = 0
        return self._respond_t0(ch, app.store_data(number, request))

    @staticmethod
    def _abort_store_data(ch: _Channel) -> None:
        ch.sd_buffer = bytearray()
        ch.sd_next = 0

    # -- MANAGE CHANNEL (ISO/IEC 7816-4 §11.1.2 / ETSI TS 102 221 §11.1.17) -------------------

    def _manage_channel(self, ch: _Channel, number: int, proprietary: bool, cmd: Command) -> bytes:
        if proprietary:
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        if cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        p1, p2 = cmd.p1, cmd.p2
        channels = self._channels
        if p1 == 0x00:
            if p2 == 0:
                if cmd.le is None:  # the card must be able to return the number it picked
                    raise StatusWordError(SW_WRONG_LENGTH)
                free = next((i for i in range(1, MAX_CHANNEL + 1) if channels[i] is None), None)
                if free is None:
                    raise StatusWordError(SW_FUNCTION_NOT_SUPPORTED)
                channels[free] = self._new_channel(number, ch)
                return bytes((free, 0x90, 0x00))
            if p2 > MAX_CHANNEL or channels[p2] is not None:
                raise StatusWordError(SW_INCORRECT_P1P2)
            channels[p2] = self._new_channel(number, ch)
            return _SW_OK
        if p1 == 0x80:
            if p2 == 0 or p2 > MAX_CHANNEL:
                raise StatusWordError(SW_INCORRECT_P1P2)
            closing = channels[p2]
            if closing is None:
                raise StatusWordError(SW_LOGICAL_CHANNEL_NOT_SUPPORTED)
            channels[p2] = None
            if closing.app is not None:
                closing.app.channel_closed(p2)
            return _SW_OK
        raise StatusWordError(SW_INCORRECT_P1P2)

    def _new_channel(self, origin_number: int, origin: _Channel) -> _Channel:
        uicc = self._uicc
        if origin_number == 0:
            return _Channel(None, self._fs.mf, uicc.open_channel() if uicc is not None else None)
        copied = origin.uicc.copy() if origin.uicc is not None else None
        return _Channel(origin.app, origin.file, copied)

    # -- TERMINAL CAPABILITY (ETSI TS 102 221 §11.1.19) ---------------------------------------

    def _terminal_capability(
        self, ch: _Channel, number: int, proprietary: bool, cmd: Command
    ) -> bytes:
        if not proprietary:
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        if cmd.p1 or cmd.p2:
            raise StatusWordError(SW_INCORRECT_P1P2)
        if not cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        if not _is_terminal_capability(cmd.data):
            raise StatusWordError(SW_INCORRECT_DATA)
        return _SW_OK  # accepted and ignored: nothing on this card depends on it

    # -- READ BINARY / READ RECORD (ETSI TS 102 221 §11.1.3, §11.1.5) -------------------------

    def _current_ef(self, ch: _Channel, sfi: int) -> File:
        if sfi:
            ch.app, ch.file = None, self._fs.by_sfi(sfi)  # SFI referencing selects the EF
        file = ch.file
        if ch.app is not None or file is None or not file.is_ef:
            raise StatusWordError(SW_NO_CURRENT_EF)
        return file

    def _read_binary(self, ch: _Channel, number: int, proprietary: bool, cmd: Command) -> bytes:
        if proprietary:
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        if cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        p1 = cmd.p1
        if p1 & 0x80:  # b8=1: b5-b1 SFI, offset in P2
            if p1 & 0x60:
                raise StatusWordError(SW_INCORRECT_P1P2)
            file, offset = self._current_ef(ch, p1 & 0x1F), cmd.p2
        else:
            file, offset = self._current_ef(ch, 0), (p1 << 8) | cmd.p2
        if file.type is not FileType.TRANSPARENT:
            raise StatusWordError(SW_INCOMPATIBLE_FILE_STRUCTURE)
        content = self._fs.read_binary(file)
        if offset >= len(content):
            raise StatusWordError(SW_WRONG_P1P2)
        le = 256 if cmd.le is None else cmd.le
        return content[offset : offset + le] + _SW_OK

    def _read_record(self, ch: _Channel, number: int, proprietary: bool, cmd: Command) -> bytes:
        if proprietary:
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        if cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        p2 = cmd.p2
        sfi = p2 >> 3
        if p2 & 0x07 != 0x04 or sfi == 0x1F:  # absolute record number only
            raise StatusWordError(SW_INCORRECT_P1P2)
        file = self._current_ef(ch, sfi)
        if file.type is not FileType.LINEAR_FIXED:
            raise StatusWordError(SW_INCOMPATIBLE_FILE_STRUCTURE)
        records = self._fs.read_records(file)
        if not 1 <= cmd.p1 <= len(records):  # P1=00 (current record): none is kept
            raise StatusWordError(SW_RECORD_NOT_FOUND)
        le = 256 if cmd.le is None else cmd.le
        return records[cmd.p1 - 1][:le] + _SW_OK

    # -- GET DATA (ISO/IEC 7816-4 §11.4.3; SGP.02 EID on the ECASD) --------------------------

    def _get_data(self, ch: _Channel, number: int, proprietary: bool, cmd: Command) -> bytes:
        hook = getattr(ch.app, "get_data", None) if ch.app is not None else None
        if hook is None:
            raise StatusWordError(SW_INS_NOT_SUPPORTED)
        if cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        return self._respond_direct(ch, hook((cmd.p1 << 8) | cmd.p2), cmd.le)

    # -- GET STATUS (GlobalPlatform Card Specification 2.3 §11.4) ------------------------------

    def _get_status(self, ch: _Channel, number: int, proprietary: bool, cmd: Command) -> bytes:
        hook = getattr(ch.app, "get_status", None) if ch.app is not None else None
        if hook is None:
            raise StatusWordError(SW_INS_NOT_SUPPORTED)
        if not proprietary:
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        data, sw = hook(number, cmd.p1, cmd.p2, cmd.data)
        return self._respond_t0(ch, data, sw_bytes(sw))

    # -- proactive UICC (ETSI TS 102 221 §10.1.x, TS 102 223) -------------------------------

    @staticmethod
    def _check_cat_class(number: int, proprietary: bool) -> None:
        if not proprietary:
            raise StatusWordError(SW_CLA_NOT_SUPPORTED)
        if number:
            raise StatusWordError(SW_LOGICAL_CHANNEL_NOT_SUPPORTED)

    def _terminal_profile(
        self, ch: _Channel, number: int, proprietary: bool, cmd: Command
    ) -> bytes:
        self._check_cat_class(number, proprietary)
        if cmd.p1 or cmd.p2:
            raise StatusWordError(SW_INCORRECT_P1P2)
        self._proactive.set_terminal_profile(cmd.data)
        return _SW_OK

    def _fetch(self, ch: _Channel, number: int, proprietary: bool, cmd: Command) -> bytes:
        self._check_cat_class(number, proprietary)
        if cmd.p1 or cmd.p2:
            raise StatusWordError(SW_INCORRECT_P1P2)
        if cmd.data:
            raise StatusWordError(SW_WRONG_LENGTH)
        return self._proactive.fetch(cmd.le)

    def _terminal_response(
        self, ch: _Channel, number: int, proprietary: bool, cmd: Command
    ) -> bytes:
        self._check_cat_class(number, proprietary)
        if cmd.p1 or cmd.p2:
            raise StatusWordError(SW_INCORRECT_P1P2)
        self._proactive.terminal_response(cmd.data)
        return _SW_OK
