"""PC/SC card transport through pyscard: a physical card in a reader, or any card pcscd sees.

:class:`PcscTransport` is a raw transport: each ``transmit`` is one ``SCardTransmit``. It
uses pyscard's low-level ``smartcard.scard`` API, which never issues GET RESPONSE or re-sends
on ``6Cxx`` by itself; :class:`ipa.channel.Es10Channel` does both, for every transport alike.
pyscard is imported on first use, so ``import ipa.pcsc`` works without it, and this module
never imports the emulator.

Choosing a reader (``reader=``): an ``int`` is an index into :func:`list_readers`; a string is
matched exactly, else as a case-insensitive substring. When several readers match (or none
is named), the first of them holding a card is used.

Every failure is a :class:`PcscError` (a :class:`~ipa.errors.TransportError`) naming what went
wrong: :class:`PyscardMissingError`, :class:`PcscServiceError` (no pcscd / PC/SC service),
:class:`NoReaderError`, :class:`ReaderNotFoundError` (lists the readers that exist),
:class:`NoCardError`, :class:`ReaderBusyError`, :class:`CardRemovedError` (card or reader
gone mid-session), :class:`CardResetError` (another application reset the card).
"""

from __future__ import annotations

import enum
import importlib
import logging
import time
from collections.abc import Sequence
from types import ModuleType, TracebackType
from typing import Any

from ipa.errors import TransportError

__all__ = [
    "CardRemovedError",
    "CardResetError",
    "Disposition",
    "NoCardError",
    "NoReaderError",
    "PcscError",
    "PcscProtocol",
    "PcscServiceError",
    "PcscTransport",
    "PyscardMissingError",
    "ReaderBusyError",
    "ReaderNotFoundError",
    "list_readers",
    "open_reader_transport",
    "reader_states",
]

log = logging.getLogger(__name__)

# PC/SC return codes (winscard.h; the same values on pcsc-lite, Windows and macOS).
_SUCCESS = 0x00000000
_E_INVALID_HANDLE = 0x80100003
_E_UNKNOWN_READER = 0x80100009
_E_TIMEOUT = 0x8010000A
_E_SHARING_VIOLATION = 0x8010000B
_E_NO_SMARTCARD = 0x8010000C
_E_PROTO_MISMATCH = 0x8010000F
_E_NOT_TRANSACTED = 0x80100016
_E_READER_UNAVAILABLE = 0x80100017
_E_NO_SERVICE = 0x8010001D
_E_SERVICE_STOPPED = 0x8010001E
_E_NO_READERS_AVAILABLE = 0x8010002E
_E_COMM_DATA_LOST = 0x8010002F
_F_COMM_ERROR = 0x80100013
_W_UNRESPONSIVE_CARD = 0x80100066
_W_UNPOWERED_CARD = 0x80100067
_W_RESET_CARD = 0x80100068
_W_REMOVED_CARD = 0x80100069

_SERVICE_GONE = {_E_NO_SERVICE, _E_SERVICE_STOPPED}
_CARD_GONE = {_W_REMOVED_CARD, _E_NO_SMARTCARD, _E_READER_UNAVAILABLE, _E_UNKNOWN_READER}
# A transmit failure that may be a removal pcscd has not noticed yet (it polls readers).
_MAYBE_GONE = {_E_NOT_TRANSACTED, _E_COMM_DATA_LOST, _F_COMM_ERROR, _W_UNRESPONSIVE_CARD}

_SCOPE_USER = 0
_SHARE_EXCLUSIVE = 1
_SHARE_SHARED = 2
_STATE_UNAWARE = 0x0000
_STATE_CHANGED = 0x0002
_STATE_EMPTY = 0x0010
_STATE_PRESENT = 0x0020

_INSTALL_HINT = (
    "PC/SC needs pyscard: pip install 'euicc-sim[pcsc]' (building it needs swig and the "
    "PC/SC headers, Debian: apt-get install swig libpcsclite-dev; scripts/setup-pcsc.sh does "
    "all of it)"
)


class PcscError(TransportError):
    """A PC/SC operation failed.

    Attributes:
        code: the PC/SC return code (``0x80100069``), or ``None`` when none applies.
        reader: the reader concerned, when there is one.
    """

    def __init__(self, message: str, *, code: int | None = None, reader: str | None = None):
        self.code = code
        self.reader = reader
        super().__init__(message)


class PyscardMissingError(PcscError):
    """pyscard is not installed."""


class PcscServiceError(PcscError):
    """No PC/SC service: pcscd is not running (or stopped while in use)."""


class NoReaderError(PcscError):
    """The PC/SC service knows no reader at all."""


class ReaderNotFoundError(PcscError):
    """No reader has the name or index asked for. ``available`` lists the readers."""

    def __init__(self, message: str, *, available: Sequence[str], code: int | None = None):
        self.available = list(available)
        super().__init__(message, code=code)


class NoCardError(PcscError):
    """The reader holds no card (or the card does not answer to reset)."""


class ReaderBusyError(PcscError):
    """Another application holds the card exclusively (or this one asked for exclusive
    access while another application has it open)."""


class CardRemovedError(PcscError):
    """The card, or its reader, went away during the session."""


class CardResetError(PcscError):
    """Another application reset the card: logical channels and selections are lost."""


class PcscProtocol(enum.IntFlag):
    """Transmission protocols to accept when connecting (PC/SC ``SCARD_PROTOCOL_*``)."""

    T0 = 0x1
    T1 = 0x2
    ANY = 0x3

    @classmethod
    def parse(cls, value: PcscProtocol | str) -> PcscProtocol:
        """``"T0"``, ``"T=0"``, ``"T1"``, ``"T=1"``, ``"any"`` (case-insensitive) or a member."""
        if isinstance(value, PcscProtocol):
            return value
        key = value.strip().upper().replace("=", "")
        try:
            return {"T0": cls.T0, "T1": cls.T1, "ANY": cls.ANY}[key]
        except KeyError:
            raise ValueError(f"protocol must be T0, T1 or any, got {value!r}") from None


class Disposition(enum.IntEnum):
    """What happens to the card when the connection ends (PC/SC ``SCARD_*_CARD``)."""

    LEAVE = 0
    RESET = 1
    UNPOWER = 2
    EJECT = 3


def _load_scard() -> ModuleType:
    """pyscard's low-level module (tests replace this function with a fake)."""
    try:
        return importlib.import_module("smartcard.scard")
    except ImportError as exc:
        raise PyscardMissingError(_INSTALL_HINT) from exc


def _u32(code: int) -> int:
    return code & 0xFFFFFFFF


def _describe(scard: ModuleType, code: int) -> str:
    try:
        text = str(scard.SCardGetErrorMessage(code)).strip().rstrip(".")
    except Exception:
        text = "PC/SC error"
    return f"{text} (0x{code:08X})"


def _service_error(scard: ModuleType, code: int) -> PcscServiceError:
    return PcscServiceError(
        "no PC/SC service: is pcscd running? (start it with 'pcscd' or "
        f"'systemctl start pcscd'): {_describe(scard, code)}",
        code=code,
    )


class _Context:
    """An ``SCARDCONTEXT`` and the calls made through it."""

    def __init__(self) -> None:
        self.scard = _load_scard()
        code, handle = self.scard.SCardEstablishContext(_SCOPE_USER)
        code = _u32(code)
        if code != _SUCCESS:
            if code in _SERVICE_GONE:
                raise _service_error(self.scard, code)
            raise PcscError(f"cannot reach PC/SC: {_describe(self.scard, code)}", code=code)
        self.handle = handle

    def release(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            self.scard.SCardReleaseContext(handle)

    def readers(self) -> list[str]:
        code, names = self.scard.SCardListReaders(self.handle, [])
        code = _u32(code)
        if code == _E_NO_READERS_AVAILABLE:
            return []
        if code in _SERVICE_GONE:
            raise _service_error(self.scard, code)
        if code != _SUCCESS:
            raise PcscError(f"cannot list readers: {_describe(self.scard, code)}", code=code)
        return [str(name) for name in names]

    def state(self, reader: str, timeout_ms: int = 0, current: int = _STATE_UNAWARE) -> int:
        """The reader's ``SCARD_STATE_*`` flags, waiting up to ``timeout_ms`` for a change."""
        code, states = self.scard.SCardGetStatusChange(self.handle, timeout_ms, [(reader, current)])
        code = _u32(code)
        if code == _E_TIMEOUT:
            return current
        if code in _SERVICE_GONE:
            raise _service_error(self.scard, code)
        if code != _SUCCESS or not states:
            return 0
        return int(states[0][1])

    def has_card(self, reader: str) -> bool:
        return bool(self.state(reader) & _STATE_PRESENT)


def list_readers() -> list[str]:
    """The names of the readers the PC/SC service knows (empty when there are none).

    Raises:
        PyscardMissingError: pyscard is not installed.
        PcscServiceError: no PC/SC service is running.
    """
    context = _Context()
    try:
        return context.readers()
    finally:
        context.release()


def reader_states() -> dict[str, bool]:
    """Every reader the PC/SC service knows, and whether it holds a card.

    Raises:
        PyscardMissingError: pyscard is not installed.
        PcscServiceError: no PC/SC service is running.
    """
    context = _Context()
    try:
        return {name: context.has_card(name) for name in context.readers()}
    finally:
        context.release()


def _match_readers(wanted: str | int | None, readers: list[str]) -> list[str]:
    """The readers ``wanted`` names, in order of preference (never empty)."""
    if not readers:
        raise NoReaderError("no smart card reader found (PC/SC lists none)")
    listing = ", ".join(f"{i}: {name!r}" for i, name in enumerate(readers))
    if wanted is None:
        return readers
    if isinstance(wanted, int):
        if 0 <= wanted < len(readers):
            return [readers[wanted]]
        raise ReaderNotFoundError(
            f"no reader number {wanted}; readers are {listing}", available=readers
        )
    if wanted in readers:
        return [wanted]
    needle = wanted.casefold()
    matches = [name for name in readers if needle in name.casefold()]
    if not matches:
        raise ReaderNotFoundError(
            f"no reader matches {wanted!r}; readers are {listing}", available=readers
        )
    return matches


class PcscTransport:
    """A card in a PC/SC reader, as a raw :class:`~ipa.transport.ResettableTransport`.

    Args:
        reader: index into :func:`list_readers`, (part of) a reader name, or ``None`` for the
            first reader holding a card.
        protocol: ``"T0"``, ``"T1"`` or ``"any"`` (:class:`PcscProtocol`).
        exclusive: connect in exclusive mode (no other application may use the card).
        removal_grace: after a failed exchange, how long (seconds) to watch the reader for the
            card's removal, so that a removal is reported as :class:`CardRemovedError` even
            before pcscd's next poll notices it.

    Use as a context manager, or call :meth:`close`::

        with PcscTransport("Virtual PCD 00 00") as transport:
            client = Es10Client.open(transport)
    """

    def __init__(
        self,
        reader: str | int | None = None,
        *,
        protocol: PcscProtocol | str = PcscProtocol.ANY,
        exclusive: bool = False,
        removal_grace: float = 1.5,
    ) -> None:
        self._protocols = PcscProtocol.parse(protocol)
        self._share = _SHARE_EXCLUSIVE if exclusive else _SHARE_SHARED
        self.removal_grace = removal_grace
        self._card: Any = None
        self._active = 0
        self._atr = b""
        self._reader = ""
        self._context = _Context()
        self._scard = self._context.scard
        try:
            self._connect_first(_match_readers(reader, self._context.readers()))
        except BaseException:
            self._context.release()
            raise

    # -- connection ---------------------------------------------------------------------

    def _connect_first(self, candidates: list[str]) -> None:
        if len(candidates) == 1:
            self._connect(candidates[0])
            return
        for name in candidates:
            if self._context.has_card(name):
                self._connect(name)
                return
        names = ", ".join(repr(name) for name in candidates)
        raise NoCardError(f"no card in any of the readers {names}")

    def _connect(self, reader: str) -> None:
        scard = self._scard
        code, card, active = scard.SCardConnect(
            self._context.handle, reader, self._share, int(self._protocols)
        )
        code = _u32(code)
        if code != _SUCCESS:
            raise self._connect_error(code, reader)
        self._card = card
        self._active = int(active)
        self._reader = reader
        self._atr = self._read_atr()
        log.debug("connected to %r (%s), ATR %s", reader, self.protocol, self._atr.hex().upper())

    def _connect_error(self, code: int, reader: str) -> PcscError:
        scard = self._scard
        why = _describe(scard, code)
        if code in _SERVICE_GONE:
            return _service_error(scard, code)
        if code in (_E_NO_SMARTCARD, _W_REMOVED_CARD):
            return NoCardError(f"no card in reader {reader!r}", code=code, reader=reader)
        if code in (_W_UNRESPONSIVE_CARD, _W_UNPOWERED_CARD):
            return NoCardError(
                f"the card in reader {reader!r} does not answer to reset: {why}",
                code=code,
                reader=reader,
            )
        if code == _E_SHARING_VIOLATION:
            mode = "exclusive access" if self._share == _SHARE_EXCLUSIVE else "access"
            return ReaderBusyError(
                f"cannot get {mode} to the card in {reader!r}: another application holds it",
                code=code,
                reader=reader,
            )
        if code == _E_PROTO_MISMATCH:
            return PcscError(
                f"the card in {reader!r} offers none of the protocols asked for "
                f"({self._protocols.name}): {why}",
                code=code,
                reader=reader,
            )
        if code in (_E_UNKNOWN_READER, _E_READER_UNAVAILABLE):
            return ReaderNotFoundError(
                f"reader {reader!r} is not available: {why}",
                available=self._context.readers(),
                code=code,
            )
        return PcscError(f"cannot connect to {reader!r}: {why}", code=code, reader=reader)

    def _read_atr(self) -> bytes:
        code, _name, _state, _protocol, atr = self._scard.SCardStatus(self._card)
        code = _u32(code)
        if code != _SUCCESS:
            raise self._session_error(code, "reading the card status")
        return bytes(atr)

    # -- state --------------------------------------------------------------------------

    @property
    def reader(self) -> str:
        """The name of the reader in use."""
        return self._reader

    @property
    def atr(self) -> bytes:
        """The card's ATR (from the last connection or reset)."""
        return self._atr

    @property
    def protocol(self) -> str:
        """The active protocol, ``"T=0"`` or ``"T=1"``."""
        return "T=1" if self._active == PcscProtocol.T1 else "T=0"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._card is None

    # -- exchanges ----------------------------------------------------------------------

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return the response data followed by SW1 SW2, as is.

        Raises:
            CardRemovedError: the card or reader went away.
            CardResetError: another application reset the card.
            PcscServiceError: pcscd stopped.
            PcscError: any other failure.
        """
        if self._card is None:
            raise TransportError("PC/SC transport is closed")
        trace = log.isEnabledFor(logging.DEBUG)
        if trace:
            log.debug("-> %s", apdu.hex().upper())
        code, response = self._scard.SCardTransmit(self._card, self._active, list(apdu))
        code = _u32(code)
        if code != _SUCCESS:
            raise self._session_error(code, f"sending {apdu[:4].hex().upper()}")
        data = bytes(response)
        if trace:
            log.debug("<- %s", data.hex().upper())
        return data

    def reset(self) -> bytes:
        """Reset the card (reconnect with the reset disposition) and return its ATR.

        A card that was removed and put back is connected again.

        Raises:
            NoCardError: the reader holds no card.
            PcscError: the reset failed otherwise.
        """
        if self._card is None:
            raise TransportError("PC/SC transport is closed")
        code, active = self._scard.SCardReconnect(
            self._card, self._share, int(self._protocols), int(Disposition.RESET)
        )
        code = _u32(code)
        if code in _CARD_GONE or code == _E_INVALID_HANDLE:
            log.debug("reset: %s; connecting again", _describe(self._scard, code))
            self._scard.SCardDisconnect(self._card, int(Disposition.LEAVE))
            self._card = None
            self._connect(self._reader)
        elif code != _SUCCESS:
            raise self._session_error(code, "resetting the card")
        else:
            self._active = int(active)
            self._atr = self._read_atr()
        log.debug("reset, ATR %s", self._atr.hex().upper())
        return self._atr

    def _session_error(self, code: int, doing: str) -> PcscError:
        scard = self._scard
        reader = self._reader
        why = _describe(scard, code)
        where = f"reader {reader!r}"
        if code in _SERVICE_GONE:
            return _service_error(scard, code)
        if code in _CARD_GONE or (code in _MAYBE_GONE and self._card_left(reader)):
            return CardRemovedError(
                f"card removed from {where} while {doing}: {why}", code=code, reader=reader
            )
        if code == _W_RESET_CARD:
            return CardResetError(
                f"the card in {where} was reset by another application while {doing}; "
                "logical channels are lost",
                code=code,
                reader=reader,
            )
        return PcscError(f"{doing} failed on {where}: {why}", code=code, reader=reader)

    def _card_left(self, reader: str) -> bool:
        """Whether the card leaves ``reader`` within :attr:`removal_grace` seconds."""
        deadline = time.monotonic() + self.removal_grace
        try:
            state = self._context.state(reader)
            while not state & _STATE_EMPTY:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                state = self._context.state(reader, int(left * 1000) + 1, state & ~_STATE_CHANGED)
        except PcscError:
            return False
        return True

    # -- closing ------------------------------------------------------------------------

    def close(self, disposition: Disposition = Disposition.LEAVE) -> None:
        """Disconnect from the card (leaving it as it is by default) and release PC/SC."""
        card, self._card = self._card, None
        if card is not None:
            self._scard.SCardDisconnect(card, int(disposition))
        self._context.release()

    def __enter__(self) -> PcscTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._card is None else self.protocol
        return f"PcscTransport({self._reader!r}, {state})"


def open_reader_transport(
    name_or_index: str, *, protocol: PcscProtocol | str = PcscProtocol.ANY, exclusive: bool = False
) -> PcscTransport:
    """The transport for ``--reader NAME``: digits are an index, anything else a name;
    ``protocol`` and ``exclusive`` as for :class:`PcscTransport`."""
    text = name_or_index.strip()
    reader = int(text) if text.isdigit() else text
    return PcscTransport(reader, protocol=protocol, exclusive=exclusive)
