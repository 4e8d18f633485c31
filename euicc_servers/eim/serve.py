"""Running the eIM: uvicorn on 127.0.0.1 over HTTPS (or plain HTTP), in the foreground
(``euicc-sim eim``) or in a background thread for tests and benchmarks (:func:`run_in_thread`).

The server machinery (uvicorn, TLS files, the thread) is the SM-DP+'s
(:mod:`euicc_servers.smdpp.serve`); this module builds the eIM from a test PKI directory:

* the eIM signing key is the PKI's eIM credential (P-256 in a NIST set);
* HTTPS uses a TLS certificate issued at start under the PKI's CI, for ``localhost``,
  ``127.0.0.1`` and the host served (so it need not be kept); eUICCs get the CI certificate
  as trustedCertificateTls, which stays valid across restarts;
* eUICC chains are trusted under every CI of the PKI, and the default euiccCiPKId is the
  first (NIST) CI;
* downloads are relayed to SM-DP+s whose TLS certificate chains to ``--smdp-ca`` (PEM), by
  default to one of the PKI's CIs.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

from euicc_protocol.pki import CertRole
from euicc_protocol.testpki import Credential, TestPki, issue_server_certificate

from ..common.auth import add_auth_arguments, announce_auth
from ..common.pkisets import load_pki_sets
from ..common.serve import RunningServer
from ..common.serve import run_in_thread as _run_app_in_thread
from ..common.serve import serve as _serve_app
from .app import create_app
from .esipa import EimCore, EimSettings
from .relay import Es9Client, SmdpRelay
from .store import EimStore

__all__ = [
    "DEFAULT_EIM_ID",
    "EimServer",
    "add_eim_arguments",
    "add_eim_command",
    "build_eim",
    "build_from_args",
    "issue_tls_credential",
    "run_in_thread",
]

log = logging.getLogger(__name__)

#: The eimId when none is configured.
DEFAULT_EIM_ID = "eim.euicc-sim.test"
#: The registeredID put in the eIM's TLS certificate (a private test arc, as SGP.26's).
EIM_TLS_OID = "2.999.20"


@dataclasses.dataclass(frozen=True)
class EimServer:
    """An eIM ready to serve: the core and, for HTTPS, its TLS credential."""

    core: EimCore
    tls: Credential | None

    @property
    def admin_token(self) -> str | None:
        """The operator API token (send ``Authorization: Bearer <token>``)."""
        return self.core.admin_token


def issue_tls_credential(test_pki: TestPki, host: str = "127.0.0.1") -> Credential:
    """A TLS server certificate for the eIM under the PKI's CI (SAN localhost, 127.0.0.1 and
    ``host``)."""
    dns, ips = ["localhost"], ["127.0.0.1"]
    try:
        ipaddress.ip_address(host)
        ips.append(host)
    except ValueError:
        dns.append(host)
    return issue_server_certificate(
        test_pki.ci,
        CertRole.DP_TLS,
        EIM_TLS_OID,
        common_name="euicc-sim eIM",
        dns_names=sorted(set(dns)),
        ip_addresses=sorted(set(ips)),
    )


def build_eim(
    pki: str | os.PathLike[str] | TestPki,
    *,
    eim_id: str = DEFAULT_EIM_ID,
    eim_fqdn: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    tls: bool = True,
    host: str = "127.0.0.1",
    smdp_ca: bytes | None = None,
    smdp_scheme: str = "https",
    **settings: Any,
) -> EimServer:
    """An eIM from a test PKI (a directory, ``"sgp26"``, or a :class:`TestPki`), its state in
    ``state_dir`` (in memory without it). ``settings`` are further :class:`EimSettings`
    fields (``default_smdp_address``, ``admin_token``, ``session_timeout``, ...)."""
    sets = [pki] if isinstance(pki, TestPki) else load_pki_sets(pki)
    first = sets[0]  # NIST first when the directory has both curves
    credential = issue_tls_credential(first, host) if tls else None
    settings.setdefault("push_ca", b"".join(s.ci.cert_pem for s in sets))
    eim_settings = EimSettings(
        eim_id=eim_id,
        signing_key=first.eim.key,
        eim_fqdn=eim_fqdn,
        tls_trust_certificate=first.ci.cert_der if tls else None,
        trusted_ci_keys={s.ci.ski: s.ci.public_key for s in sets},
        euicc_ci_pkid=first.ci.ski,
        **settings,
    )
    ca = smdp_ca if smdp_ca is not None else b"".join(s.ci.cert_pem for s in sets)
    relay = SmdpRelay(Es9Client(ca_pem=ca, scheme=smdp_scheme, requester=eim_id))
    return EimServer(EimCore(eim_settings, EimStore(state_dir), relay), credential)


def run_in_thread(
    core: EimCore,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: Credential | None = None,
    log_level: str = "warning",
) -> RunningServer:
    """Serve ``core`` with uvicorn in a daemon thread (port 0: a free one), within the core's
    limits; returns once it accepts connections. An eIM without a configured eimFqdn takes
    ``host:port``. Stopping it also closes the relay's connections to SM-DP+s."""
    running = _run_app_in_thread(
        create_app(core),
        host=host,
        port=port,
        tls=tls,
        log_level=log_level,
        limits=core.settings.limits,  # the request deadline too, as the foreground server
    )
    if core.eim_fqdn is None:
        core.eim_fqdn = running.address

    def stop() -> None:
        running.stop()
        # A kept-alive connection to an SM-DP+ would hold up that server's own shutdown.
        core.close_connections()

    return dataclasses.replace(running, stop=stop)


def build_from_args(args: argparse.Namespace) -> EimServer:
    """The eIM the ``eim`` command's options (:func:`add_eim_arguments`) describe."""
    smdp_ca = Path(args.smdp_ca).read_bytes() if args.smdp_ca else None
    return build_eim(
        args.pki,
        eim_id=args.eim_id,
        eim_fqdn=args.address or f"{args.host}:{args.port}",
        state_dir=args.state,
        tls=not args.http,
        host=args.host,
        smdp_ca=smdp_ca,
        smdp_scheme="http" if args.smdp_http else "https",
        default_smdp_address=args.default_smdp,
        smdp_addresses=frozenset(args.allow_smdp),
        admin_token=args.admin_token,
        open_operator_api=args.no_auth,
    )


def _run(args: argparse.Namespace) -> int:
    workers = getattr(args, "workers", 1)
    if workers > 1 and not args.state:
        raise SystemExit("--workers needs --state: the workers share the state directory")
    server = build_from_args(args)  # makes the database and the operator token first
    scheme = "http" if args.http else "https"
    log.info(
        "eIM %s on %s://%s:%d (eimFqdn %s, %d eUICC(s))",
        args.eim_id,
        scheme,
        args.host,
        args.port,
        server.core.eim_fqdn,
        len(server.core.store.euiccs()),
    )
    announce_auth(server.core.auth, args.state)
    if workers > 1:
        from .workers import serve_workers  # noqa: PLC0415 - only for several workers

        server.core.store.close()
        return serve_workers(args, workers)
    _serve_app(
        create_app(server.core),
        host=args.host,
        port=args.port,
        tls=server.tls,
        limits=server.core.settings.limits,
    )
    return 0


def add_eim_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eim`` command to an argparse ``subparsers`` object; it sets ``run``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "eim", help="run the reference eIM (ESipa over HTTPS, operator API)"
    )
    add_eim_arguments(p)
    return p


def add_eim_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``eim`` command's options to ``p``; it sets ``run`` (logging is the caller's)."""
    p.add_argument(
        "--pki",
        required=True,
        help="test PKI directory (euicc_protocol.testpki.TestPki.save) or 'sgp26'",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8444)
    p.add_argument("--state", help="directory keeping the eIM database across restarts")
    p.add_argument("--eim-id", default=DEFAULT_EIM_ID, help=f"eimId (default {DEFAULT_EIM_ID})")
    p.add_argument("--address", help="eimFqdn given to eUICCs (default HOST:PORT)")
    p.add_argument(
        "--smdp-ca", metavar="PEM", help="CA certificates for SM-DP+ TLS (default: the PKI's CIs)"
    )
    p.add_argument("--smdp-http", action="store_true", help="relay to SM-DP+s over plain HTTP")
    p.add_argument("--default-smdp", help="SM-DP+ address when a download names none")
    p.add_argument(
        "--allow-smdp",
        action="append",
        metavar="ADDR",
        default=[],
        help="another SM-DP+ the eIM may relay to (besides --default-smdp and those of its "
        "own download orders); repeatable",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes sharing one listening socket and the --state directory "
        "(the scheduler runs in the first)",
    )
    add_auth_arguments(p, "/api")
    p.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    p.set_defaults(run=_run)
