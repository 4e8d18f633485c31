"""Running the SM-DP+: uvicorn over HTTPS on loopback, in the foreground (``euicc-sim smdpp``)
or in a background thread for tests and benchmarks (:func:`run_in_thread`, from
:mod:`euicc_servers.common.serve`). HTTPS uses CERT.DP.TLS and its key.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from ..common.auth import add_auth_arguments, announce_auth
from ..common.serve import RunningServer, run_in_thread, serve
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
        open_operator_api=args.no_auth,
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
    announce_auth(core.auth, args.state)
    serve(
        create_app(core, profiles_dir=profiles),
        host=args.host,
        port=args.port,
        tls=tls,
        limits=core.config.limits,
    )
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
    add_auth_arguments(p, "/admin")
    p.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    p.set_defaults(run=_run)
