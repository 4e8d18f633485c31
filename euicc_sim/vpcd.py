"""Serve a card object to pcscd's vsmartcard *vpcd* driver, so every PC/SC client sees it.

vpcd is a pcscd reader driver (Debian package ``vsmartcard-vpcd``). Each of its reader slots
listens on a TCP port (slot 0 on 35963, slot 1 on 35964 with the packaged
``/etc/reader.conf.d/vpcd``); a *virtual card* connects to the port, and the card is in the
reader for as long as the connection lasts. This module is that virtual card, for any object
with ``transmit(apdu) -> response`` and ``reset() -> ATR`` (:class:`euicc_sim.card.Euicc`).

The protocol, as the installed vpcd speaks it (checked against vsmartcard-vpcd 3.3 in pcscd
1.9.9):

* every message, in both directions, is a 2-byte big-endian length and that many bytes;
* vpcd to card, 1 byte: a control code, ``00`` power off, ``01`` power on, ``02`` reset,
  ``04`` get ATR; only get ATR is answered (with the ATR). vpcd sends get ATR about twice a
  second as its presence check, and twice more before powering the card on;
* vpcd to card, more than 1 byte: a command APDU, answered with the response APDU (data +
  SW1 SW2). Nothing else is ever sent unasked.

Rules of this adapter:

* A new connection is a card insertion: the card is reset (channels closed, sessions
  aborted) and its ATR kept for get ATR. Power on and reset reset the card again; power off
  only marks it unpowered (an APDU that still arrives is answered).
* The connection is re-established with exponential back-off whenever it cannot be made or
  drops (pcscd not running, restarted, or the reader slot taken), until :meth:`VpcdClient.stop`.
* The card persists its own state on every command, so stopping only closes the socket.
* One thread per card: a card object is only ever used by the thread that serves it.

Logging on this module's logger: connections at INFO, control codes and every APDU and
response (hex) at DEBUG; the frequent get-ATR polls are not logged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, Protocol

__all__ = [
    "CTRL_ATR",
    "CTRL_POWER_OFF",
    "CTRL_POWER_ON",
    "CTRL_RESET",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ServedCard",
    "VpcdClient",
    "add_serve_command",
    "main",
    "parse_address",
    "serve",
    "serve_many",
]

log = logging.getLogger("euicc_sim.vpcd")  # also when run as __main__

#: Where vpcd's first reader slot listens (the packaged reader.conf; slot n is port + n).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963

#: Control codes, the only 1-byte messages vpcd sends.
CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04

_CTRL_NAMES = {CTRL_POWER_OFF: "power off", CTRL_POWER_ON: "power on", CTRL_RESET: "reset"}
_LENGTH = struct.Struct(">H")
_SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"
# How often a blocked receive wakes up to look at the stop flag.
_POLL_INTERVAL = 0.25
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class ServedCard(Protocol):
    """What the adapter needs from a card."""

    def transmit(self, apdu: bytes) -> bytes: ...

    def reset(self) -> bytes: ...


class _Stopped(Exception):
    """The client was asked to stop while waiting for data."""


class _Disconnected(Exception):
    """vpcd closed the connection."""


class VpcdClient:
    """One card connected to one vpcd reader slot.

    ``run()`` blocks until :meth:`stop`; :meth:`start` runs it in a daemon thread::

        client = VpcdClient(Euicc.open("mycard"), port=35963)
        client.start()
        client.wait_connected(timeout=5)
        ...
        client.stop()
        client.join()

    Args:
        card: the card to serve (only this client's thread uses it).
        host, port: where vpcd listens.
        min_delay, max_delay: reconnection back-off, doubling from ``min_delay`` up to
            ``max_delay`` seconds; back to ``min_delay`` after a connection that worked.
        connect_timeout: timeout of one TCP connection attempt, in seconds.
    """

    def __init__(
        self,
        card: ServedCard,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        min_delay: float = 0.1,
        max_delay: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1..65535, got {port}")
        if not 0 < min_delay <= max_delay:
            raise ValueError("need 0 < min_delay <= max_delay")
        self.card = card
        self.host = host
        self.port = port
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.connect_timeout = connect_timeout
        #: Number of connections vpcd accepted so far (each one is a card insertion).
        self.connections = 0
        #: Whether the card is powered, as vpcd last said.
        self.powered = False
        self._atr = b""
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()  # guards _sock between run() and stop()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._tag = f"vpcd {host}:{port}"

    # -- life cycle ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` of the vpcd slot."""
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """Whether the card is in the reader: connected, and vpcd has spoken to it."""
        return self._connected.is_set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until the card is in the reader (see :attr:`connected`); return whether it is."""
        return self._connected.wait(timeout)

    def start(self) -> threading.Thread:
        """Run :meth:`run` in a daemon thread and return the thread."""
        if self._thread is not None:
            raise RuntimeError("this client was already started")
        self._thread = threading.Thread(target=self.run, name=self._tag, daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread started by :meth:`start` to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        """Ask :meth:`run` to return: the connection is closed (the card leaves the reader).

        Safe from any thread; returns at once (:meth:`join` waits for the thread).
        """
        self._stop.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run(self) -> None:
        """Connect to vpcd and serve the card until :meth:`stop`, reconnecting as needed."""
        delay = self.min_delay
        failures = 0
        while not self._stop.is_set():
            sock = self._connect()
            accepted = False
            if sock is not None:
                try:
                    accepted = self._serve_connection(sock)
                finally:
                    self._connected.clear()
                    with self._lock:
                        self._sock = None
                    sock.close()
            if accepted:
                # Back-off starts again after a connection vpcd took; one it never spoke on
                # (or could not be made) counts as a failed attempt.
                failures, delay = 0, self.min_delay
            else:
                failures += 1
                if failures == 1:
                    log.info("%s: vpcd not there (pcscd not running?); retrying", self._tag)
            self._stop.wait(delay)
            if not accepted:
                delay = min(delay * 2, self.max_delay)
        log.info("%s: stopped", self._tag)

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            log.debug("%s: connect failed: %s", self._tag, exc)
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(_POLL_INTERVAL)
        with self._lock:
            if self._stop.is_set():
                sock.close()
                return None
            self._sock = sock
        return sock

    # -- one connection -----------------------------------------------------------------

    def _serve_connection(self, sock: socket.socket) -> bool:
        """Serve one connection until it ends; return whether vpcd ever took the card."""
        # A new connection is a card insertion: start from a freshly reset card.
        self._atr = bytes(self.card.reset())
        self.powered = False
        log.debug("%s: connected; waiting for vpcd to take the card", self._tag)
        try:
            while True:
                message = self._receive(sock)
                if not self._connected.is_set():
                    # vpcd asks for the ATR as soon as it accepts a card; until then the
                    # connection may only sit in the listen backlog (slot taken by another).
                    self.connections += 1
                    self._connected.set()
                    log.info("%s: card inserted (connection %d)", self._tag, self.connections)
                reply = self.handle(message)
                if reply is not None:
                    sock.sendall(_LENGTH.pack(len(reply)) + reply)
        except _Stopped:
            log.debug("%s: stopping", self._tag)
        except _Disconnected:
            log.info("%s: vpcd closed the connection (card removed)", self._tag)
        except OSError as exc:
            if not self._stop.is_set():
                log.info("%s: connection lost: %s", self._tag, exc)
        return self._connected.is_set()

    def _receive(self, sock: socket.socket) -> bytes:
        (length,) = _LENGTH.unpack(self._receive_exactly(sock, 2))
        return self._receive_exactly(sock, length)

    def _receive_exactly(self, sock: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = sock.recv(n - len(buf))
            except TimeoutError:
                if self._stop.is_set():
                    raise _Stopped from None
                continue
            if not chunk:
                if self._stop.is_set():
                    raise _Stopped
                raise _Disconnected
            buf += chunk
            if _QUICKACK is not None:
                # vpcd writes the length and the body in two send() calls; acknowledging at
                # once lets its Nagle algorithm release the body without a delayed-ACK wait.
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return bytes(buf)

    def handle(self, message: bytes) -> bytes | None:
        """Answer one message from vpcd: the reply to send, or ``None`` when none is due.

        The protocol without the socket: a test (or another transport) can drive the card
        with it directly.
        """
        if len(message) == 1:
            code = message[0]
            if code == CTRL_ATR:
                return self._atr
            if code == CTRL_POWER_OFF:
                log.debug("%s: power off", self._tag)
                self.powered = False
            elif code in (CTRL_POWER_ON, CTRL_RESET):
                log.debug("%s: %s", self._tag, _CTRL_NAMES[code])
                self._atr = bytes(self.card.reset())
                self.powered = True
            else:
                log.warning("%s: unknown control code %02X ignored", self._tag, code)
            return None
        if not message:
            log.warning("%s: empty message ignored", self._tag)
            return None
        trace = log.isEnabledFor(logging.DEBUG)
        if trace:
            log.debug("%s: -> %s", self._tag, message.hex().upper())
        if not self.powered:
            log.debug("%s: APDU while unpowered, answering anyway", self._tag)
        try:
            response = bytes(self.card.transmit(message))
        except Exception:
            # The card must never let an exception out; if it does, the reader still gets
            # an answer rather than a dead connection.
            log.exception("%s: card raised on %s", self._tag, message.hex().upper())
            response = _SW_NO_PRECISE_DIAGNOSIS
        if trace:
            log.debug("%s: <- %s", self._tag, response.hex().upper())
        return response


def serve(
    card: ServedCard,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    stop_event: threading.Event | None = None,
) -> None:
    """Serve ``card`` to vpcd at ``host:port`` in this thread until ``stop_event`` is set."""
    serve_many([card], host, port, stop_event=stop_event)


def serve_many(
    cards: Sequence[ServedCard],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    stop_event: threading.Event | None = None,
    on_start: Callable[[list[VpcdClient]], None] | None = None,
) -> None:
    """Serve ``cards`` to vpcd slots on ports ``port``, ``port + 1``... until ``stop_event``.

    Each card gets its own :class:`VpcdClient` in its own thread; this thread waits for
    ``stop_event`` (``None``: forever), then stops them all and waits for them to finish.
    ``on_start`` is called with the clients once they run.
    """
    if port + len(cards) - 1 > 65535:
        raise ValueError(f"{len(cards)} cards from port {port} run past port 65535")
    stop = stop_event if stop_event is not None else threading.Event()
    clients = [VpcdClient(card, host, port + i) for i, card in enumerate(cards)]
    for client in clients:
        client.start()
    try:
        if on_start is not None:
            on_start(clients)
        while not stop.wait(_POLL_INTERVAL):
            pass
    finally:
        for client in clients:
            client.stop()
        for client in clients:
            client.join()


# -- command line ---------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``PORT`` (IPv6 as ``[::1]:PORT``) to a pair."""
    host, port = DEFAULT_HOST, DEFAULT_PORT
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad address {text!r}")
            port = _parse_port(rest[1:], text)
    elif text.isdigit():
        port = _parse_port(text, text)
    elif text.count(":") == 1:
        name, _, number = text.partition(":")
        host = name or DEFAULT_HOST
        port = _parse_port(number, text)
    elif text:
        host = text
    return host, port


def _parse_port(number: str, text: str) -> int:
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise ValueError(f"bad address {text!r}: port must be 1..65535")
    return int(number)


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve DIR [DIR...] [--vpcd HOST:PORT]`` to an ``add_subparsers()`` object.

    The command sets ``run`` (called with the parsed arguments, returns the exit status).
    """
    p = subparsers.add_parser(
        "serve",
        help="put cards into pcscd's virtual readers (vsmartcard vpcd)",
        description="Serve the cards kept in DIR... to pcscd through the vsmartcard vpcd "
        "driver: the first card on HOST:PORT, the next ones on the following ports. Runs "
        "until interrupted; reconnects when pcscd restarts.",
    )
    p.add_argument("directories", nargs="+", metavar="DIR", help="card directory")
    p.add_argument(
        "--vpcd",
        metavar="HOST:PORT",
        nargs="?",
        const=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
        default=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
        help=f"where vpcd listens (default {DEFAULT_HOST}:{DEFAULT_PORT})",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v connections, -vv every APDU"
    )
    p.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="if another process has a card open, wait up to SECONDS for it (default: fail)",
    )
    p.set_defaults(run=_serve_command)
    return p


def _serve_command(args: argparse.Namespace) -> int:
    from .card import Euicc

    host, port = parse_address(args.vpcd)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cards: list[Euicc] = []
    try:
        for directory in args.directories:
            cards.append(Euicc.open(directory, wait=args.wait))
        _serve_cards(args, cards, host, port)
    finally:
        for card in cards:
            card.close()
    return 0


def _serve_cards(args: argparse.Namespace, cards: list[Any], host: str, port: int) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i, (directory, card) in enumerate(zip(args.directories, cards, strict=True)):
            print(f"serving {card.eid} ({directory}) to vpcd at {host}:{port + i}", flush=True)
        started = time.monotonic()
        serve_many(cards, host, port, stop_event=stop)
        log.info("served for %.1f s", time.monotonic() - started)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m euicc_sim.vpcd serve DIR...``: the serve command on its own."""
    from .card import CardError

    parser = argparse.ArgumentParser(prog="python -m euicc_sim.vpcd", description=__doc__)
    add_serve_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (CardError, OSError, ValueError) as exc:
        print(f"euicc-sim: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
