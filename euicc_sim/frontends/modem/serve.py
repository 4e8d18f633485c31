"""Put an emulated modem on a pseudo-terminal or a TCP port: ``euicc-sim modem``.

The I/O edge of :class:`~.mt.Modem`: bytes read from the TE go to :meth:`Modem.receive`, what
it returns is written back. One thread serves one modem (the card is only touched there).

* ``--pty PATH``: a pseudo-terminal pair (``os.openpty``) in raw mode; PATH becomes a symlink
  to the slave device (``/dev/pts/N``), which any serial program opens like a modem's port
  (``ipa --modem PATH``, minicom, firmware under test through a serial bridge). The server
  keeps its own slave descriptor open, so clients may come and go.
* ``--tcp HOST:PORT``: a TCP server, one client at a time (a serial port has one user);
  pyserial reaches it as ``socket://HOST:PORT``.

At start the modem emits its profile's ready URCs, as a module does after power-up.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import socket
import threading
import tty
from pathlib import Path
from types import FrameType

from .mt import Modem
from .quirks import PROFILES

__all__ = ["ModemServer", "add_modem_arguments", "parse_tcp_address", "serve_until_signalled"]

log = logging.getLogger(__name__)

_POLL = 0.2


def parse_tcp_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair.

    Raises:
        ValueError: no port, or a port outside 0..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class ModemServer:
    """Serves ``modem`` on a pseudo-terminal linked at ``pty_path`` or on a TCP ``address``.

    Use :meth:`start` (a daemon thread) and :meth:`stop`, or :meth:`serve` in the calling
    thread until :meth:`stop` is called from elsewhere (or a signal handler).
    """

    def __init__(
        self,
        modem: Modem,
        *,
        pty_path: str | os.PathLike[str] | None = None,
        address: tuple[str, int] | None = None,
    ) -> None:
        if (pty_path is None) == (address is None):
            raise ValueError("give exactly one of pty_path and address")
        self.modem = modem
        self.pty_path = Path(pty_path) if pty_path is not None else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._listener: socket.socket | None = None
        self.device: str | None = None
        if self.pty_path is not None:
            self._open_pty(self.pty_path)
        else:
            assert address is not None
            self._listener = socket.create_server(address)
            self._listener.settimeout(_POLL)
        self._greeting = modem.power_on()
        if self._master is not None:
            # Written now, before any TE opens the port (opening a serial port flushes what
            # arrived before, as with a module that was powered up before the TE started).
            _write_all_fd(self._master, self._greeting)
            self._greeting = b""

    @property
    def address(self) -> tuple[str, int]:
        """The TCP address listened on (the real port when 0 was asked for)."""
        if self._listener is None:
            raise ValueError("not a TCP server")
        host, port = self._listener.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        """What pyserial opens: the pty path, or ``socket://host:port``."""
        if self.pty_path is not None:
            return str(self.pty_path)
        host, port = self.address
        return f"socket://{host}:{port}"

    def _open_pty(self, path: Path) -> None:
        if path.exists() and not path.is_symlink():
            raise FileExistsError(f"{path} exists and is not a symlink; not replacing it")
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF mapping: the modem does its own echo
        self._master, self._slave = master, slave
        self.device = os.ttyname(slave)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.symlink_to(self.device)
        log.info("modem on %s (%s)", path, self.device)

    # -- running -------------------------------------------------------------------------

    def start(self) -> ModemServer:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve, name="euicc-sim-modem", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the pty or socket and remove the symlink.

        Safe from a signal handler while :meth:`serve` runs in the same thread: it then only
        asks the loop to end, and :meth:`serve` closes everything on its way out.
        """
        self._stop.set()
        if self._thread is None:
            return
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._close()

    def serve(self) -> None:
        """Serve until :meth:`stop`."""
        try:
            if self._master is not None:
                self._serve_pty(self._master)
            else:
                self._serve_tcp()
        finally:
            self._close()

    def _close(self) -> None:
        for fd_name in ("_master", "_slave"):
            fd = getattr(self, fd_name)
            if fd is not None:
                setattr(self, fd_name, None)
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.pty_path is not None and self.pty_path.is_symlink():
            with contextlib.suppress(OSError):
                self.pty_path.unlink()

    def _serve_pty(self, master: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([master], [], [], _POLL)
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO while no one holds the slave: wait for the next client
                self._stop.wait(_POLL)
                continue
            if data:
                _write_all_fd(master, self.modem.receive(data))

    def _serve_tcp(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stop.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            log.info("TE connected from %s", peer)
            with conn:
                conn.settimeout(_POLL)
                if self._greeting:
                    conn.sendall(self._greeting)
                    self._greeting = b""
                while not self._stop.is_set():
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    try:
                        conn.sendall(self.modem.receive(data))
                    except OSError:
                        break
            log.info("TE disconnected")


def _write_all_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# -- euicc-sim modem (the command's arguments; euicc_cli wires it) ----------------------------


def add_modem_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``euicc-sim modem``."""
    p.add_argument("directory", metavar="DIR")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", metavar="PATH", help="make PATH a symlink to a pseudo-terminal")
    where.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP port instead")
    p.add_argument(
        "--quirks",
        default="generic",
        choices=sorted(PROFILES),
        help="module family to behave like (default: generic TS 27.007)",
    )


def serve_until_signalled(server: ModemServer) -> None:
    """Serve in this thread until SIGINT or SIGTERM (the previous handlers come back after)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
