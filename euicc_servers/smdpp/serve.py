"""Running the SM-DP+: uvicorn over HTTPS on loopback, in the foreground (``euicc-sim smdpp``)
or in a background thread for tests and benchmarks (:func:`run_in_thread`).

HTTPS uses CERT.DP.TLS and its key. uvicorn reads certificates from files only, so they are
written to a private temporary directory, loaded, and deleted before the server accepts
connections.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from euicc_protocol.testpki import Credential

from .app import create_app
from .config import DEFAULT_MAX_CC_ATTEMPTS, DEFAULT_SESSION_TIMEOUT, SmdpConfig
from .es9p import SmdpCore
from .orders import OrderError, OrderStore

__all__ = [
    "RunningServer",
    "add_smdpp_arguments",
    "add_smdpp_command",
    "build_core",
    "run_in_thread",
    "serve",
]

log = logging.getLogger(__name__)


@contextmanager
def _tls_files(tls: Credential | None) -> Iterator[tuple[str | None, str | None]]:
    """(certificate file, key file) of ``tls`` in PEM, existing only inside the block."""
    if tls is None:
        yield None, None
        return
    with tempfile.TemporaryDirectory(prefix="smdpp-tls-") as tmp:  # mode 0700
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(tls.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(tls.key_pem())
        yield str(cert), str(key)


def _uvicorn_config(
    app: Any, host: str, port: int, tls: Credential | None, log_level: str
) -> uvicorn.Config:
    with _tls_files(tls) as (certfile, keyfile):
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            lifespan="off",
            # Idle keep-alive clients must not hold up a stop for uvicorn's default wait.
            timeout_graceful_shutdown=1,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        config.load()  # reads the TLS files now, while they exist
    return config


@dataclass
class RunningServer:
    """A server running in a background thread. ``base_url`` is ``https://127.0.0.1:PORT``
    (``http://`` without TLS); :meth:`stop` shuts it down. Also a context manager."""

    base_url: str
    host: str
    port: int
    stop: Callable[[], None]

    @property
    def address(self) -> str:
        """``host:port``, the SM-DP+ address a client would use."""
        return f"{self.host}:{self.port}"

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: Credential | None = None,
    log_level: str = "warning",
    start_timeout: float = 10.0,
) -> RunningServer:
    """Serve the ASGI ``app`` with uvicorn in a daemon thread; port 0 picks a free port.

    Returns once the server accepts connections. The SM-DP+ address in the app's
    configuration should leave the port out (any port then matches) when ``port`` is 0.
    """
    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets of that protocol,
    # and without it Nagle + delayed ACK hold every response for about 40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app, host, bound_port, tls, log_level))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"smdpp-{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the server on {host}:{bound_port} did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(start_timeout)
        sock.close()

    scheme = "https" if tls is not None else "http"
    return RunningServer(f"{scheme}://{host}:{bound_port}", host, bound_port, stop)


def serve(
    app: Any, *, host: str, port: int, tls: Credential | None, log_level: str = "info"
) -> None:
    """Serve the ASGI ``app`` in the foreground until interrupted."""
    uvicorn.Server(_uvicorn_config(app, host, port, tls, log_level)).run()


def build_core(
    pki: str | os.PathLike[str],
    address: str,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    tls: bool = True,
    **options: Any,
) -> SmdpCore:
    """An :class:`SmdpCore` with the credentials in ``pki`` (a test PKI directory or
    ``"sgp26"``) and orders kept in ``state_dir`` (in memory without it)."""
    config = SmdpConfig.from_pki_dir(pki, address, **options)
    if not tls:
        config = dataclasses.replace(config, tls=None)
    return SmdpCore(config, OrderStore(state_dir))


def _parse_order(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``MATCHING_ID=FILE[,cc=CODE][,eid=EID][,no-rsk]`` → (matching id, file, options)."""
    head, _, rest = spec.partition(",")
    matching_id, sep, name = head.partition("=")
    if not sep or not matching_id or not name:
        raise ValueError(f"--order {spec!r}: expected MATCHING_ID=FILE[,cc=CODE][,eid=EID]")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key == "cc" and value:
            options["confirmation_code"] = value
        elif key == "eid" and value:
            options["eid"] = value
        elif key == "no-rsk":
            options["replace_session_keys"] = False
        else:
            raise ValueError(f"--order {spec!r}: unknown option {item!r}")
    return matching_id, name, options


def _run(args: argparse.Namespace) -> int:
    address = args.address or (args.host if args.port == 443 else f"{args.host}:{args.port}")
    core = build_core(
        args.pki,
        address,
        state_dir=args.state,
        tls=not args.http,
        session_timeout=args.session_timeout,
        max_cc_attempts=args.max_cc_attempts,
        admin_token=args.admin_token,
    )
    profiles = Path(args.profiles)
    for spec in args.order or ():
        matching_id, name, options = _parse_order(spec)
        if core.orders.get(matching_id) is not None:
            log.info("order %s kept from the state directory", matching_id)
            continue
        try:
            core.orders.add_order(matching_id, profiles / name, **options)
        except OrderError as exc:
            raise ValueError(str(exc)) from exc
    tls = core.config.tls
    scheme = "https" if tls is not None else "http"
    log.info(
        "SM-DP+ %s on %s://%s:%d (%d order(s))",
        address,
        scheme,
        args.host,
        args.port,
        len(core.orders),
    )
    serve(create_app(core, profiles_dir=profiles), host=args.host, port=args.port, tls=tls)
    return 0


def add_smdpp_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``smdpp`` command to an argparse ``subparsers`` object; it sets ``run``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "smdpp", help="run the reference SM-DP+ (ES9+ over HTTPS)"
    )
    add_smdpp_arguments(p)
    return p


def add_smdpp_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``smdpp`` command's options to ``p``; it sets ``run`` (logging is the caller's)."""
    p.add_argument(
        "--pki",
        required=True,
        help="test PKI directory (euicc_protocol.testpki.TestPki.save) or 'sgp26'",
    )
    p.add_argument("--profiles", required=True, help="directory of profile packages (DER)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--address", help="SM-DP+ address clients use (default HOST:PORT)")
    p.add_argument("--state", help="directory keeping the orders across restarts")
    p.add_argument(
        "--order",
        action="append",
        metavar="ID=FILE[,cc=CODE][,eid=EID][,no-rsk]",
        help="add a download order at start (FILE in --profiles)",
    )
    p.add_argument(
        "--session-timeout",
        type=float,
        default=DEFAULT_SESSION_TIMEOUT,
        help="seconds of inactivity before a session is dropped",
    )
    p.add_argument("--max-cc-attempts", type=int, default=DEFAULT_MAX_CC_ATTEMPTS)
    p.add_argument("--admin-token", help="require 'Authorization: Bearer TOKEN' on /admin")
    p.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    p.set_defaults(run=_run)
