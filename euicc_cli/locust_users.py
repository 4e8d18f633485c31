"""Locust users that are emulated IoT devices: one user = one in-memory card + the IPAd's pull
flow (:mod:`ipa.pull`, SGP.32 section 3.1.1 / 5.9) against any eIM.

Start it with ``ipa fleet --locust ...`` (``docs/fleet.md``) or give Locust this file::

    locust -f "$(python -c 'import euicc_cli.locust_users as m; print(m.__file__)')" \\
        --host https://eim.example:8444 --eim-token TOKEN --headless -u 1000 -r 100

Each user, when it starts, makes a card (``Euicc.create(None)``: a NIST P-256 key and an eUICC
certificate under the SGP.26 test EUM), registers it with the eIM through the eIM's operator API
(``POST /api/euiccs`` with ``Authorization: Bearer <token>``, the card's certificates, so the eIM
knows its key) and installs the returned AddInitialEimRequest on the card (SGP.32 section
5.9.17). Its EID is ``--eid-prefix`` + a serial made of the run's ``--eid-base``, the Locust
worker index and the user's number in that worker: workers never collide, and each provisions
its own devices. An EID registered already (a re-run) gets its certificates updated instead.

Its task is one PSMO cycle: queue a PSMO for the device through the operator API
(``--psmo``: ``listProfileInfo`` by default), then one pull-flow cycle with ``max_packages=1``
(GetEimPackage, the card's LoadEuiccPackage, ProvideEimPackageResult). Locust records:

- one request per ESipa function call (type ``ESipa``, name ``getEimPackage``,
  ``provideEimPackageResult``, ``handleNotification`` ...), a failure when the HTTP exchange
  fails or the eIM answers other than 200/204;
- one request per cycle (type ``PSMO``, name ``cycle``), a failure when the cycle ended with an
  error or the queued PSMO was not executed and acknowledged (lost or refused);
- the operator API calls (type ``operator``).

Concurrency design: Locust runs every user in a gevent greenlet and monkey-patches sockets and
SSL. The IPAd is asyncio code over ``httpx.AsyncClient``; here its HTTP transport is
:class:`GreenTransport`, which performs each exchange with :mod:`http.client` on a kept-alive
connection of the device's own. Those sockets are gevent's, so a call blocks only its greenlet,
and the transport never suspends the coroutine: every coroutine of the pull flow then runs to
completion in one ``send`` (:func:`run_sync`), with no event loop at all. The card is in memory
and synchronous. A device therefore costs one greenlet and one TLS connection, and thousands run
concurrently in one worker process; ``--processes N`` or master/worker runs spread them over
cores and machines.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import ssl
import time
import urllib.parse
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import gevent
import httpx
import locust.runners
from cryptography.hazmat.primitives.serialization import Encoding
from locust import User, constant, events, task
from locust.env import Environment

from euicc_protocol import pki
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import make_eid
from ipa import es10_iot
from ipa.es10 import Es10Client
from ipa.esipa import Binding, EsipaClient, EsipaConfig
from ipa.pull import PollOutcome, PullConfig, PullFlow
from ipa.transport import InProcessTransport

__all__ = [
    "EimDevice",
    "GreenTransport",
    "OperatorApi",
    "OperatorApiError",
    "SyncConnection",
    "esipa_function",
    "run_sync",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The first tag of each EsipaMessageFromIpaToEim alternative (SGP.32 section 6.1) and the
#: ESipa function it calls; the ASN.1 binding posts them all to one URL.
_FUNCTION_TAGS = {
    b"\xbf\x39": "initiateAuthentication",
    b"\xbf\x3b": "authenticateClient",
    b"\xbf\x3a": "getBoundProfilePackage",
    b"\xbf\x41": "cancelSession",
    b"\xbf\x3d": "handleNotification",
    b"\xbf\x4e": "transferEimPackage",
    b"\xbf\x4f": "getEimPackage",
    b"\xbf\x50": "provideEimPackageResult",
}


def esipa_function(path: str, body: bytes) -> str:
    """The ESipa function an IPAd request calls: the last path segment in the JSON binding,
    the message's tag in the ASN.1 binding (``"other"`` when neither says)."""
    if "/esipa/" in path:
        return path.rsplit("/", 1)[-1]
    return _FUNCTION_TAGS.get(body[:2], "other")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (all its I/O is synchronous) to its end.

    Raises:
        RuntimeError: the coroutine awaited something that suspends it (it is closed).
    """
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("the coroutine suspended: it needs an event loop")


class SyncConnection:
    """One kept-alive HTTP(S) connection to one server (gevent-cooperative under Locust).

    A request on a reused connection that the server closed meanwhile (its keep-alive timer)
    is sent again once on a new connection: nothing of it reached the server.
    """

    def __init__(
        self, base_url: str, *, context: ssl.SSLContext | None = None, timeout: float = 60.0
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.tls_context = context if context is not None else ssl.create_default_context()
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.tls_context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request; the answer's status, headers and body.

        Raises:
            OSError, http.client.HTTPException: the exchange failed (the connection is closed).
        """
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request(method, self.prefix + path, body=body, headers=headers)
                answer = self._conn.getresponse()
                data = answer.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            if answer.will_close:
                self.close()
            return answer.status, answer.getheaders(), data
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class GreenTransport(httpx.AsyncBaseTransport):
    """An httpx transport that performs each exchange synchronously on a
    :class:`SyncConnection` and reports it to Locust as request ``("ESipa", function)``.

    It never suspends the calling coroutine (see :func:`run_sync`).
    """

    def __init__(self, connection: SyncConnection, environment: Environment | None) -> None:
        self.connection = connection
        self.environment = environment

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on the device's connection (never suspends)."""
        body = request.content
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        name = esipa_function(request.url.path, body)
        start = time.perf_counter()
        exception: Exception | None = None
        status, data = 0, b""
        answer_headers: list[tuple[str, str]] = []
        try:
            status, answer_headers, data = self.connection.request(
                request.method, request.url.raw_path.decode("ascii"), body, headers
            )
            if status not in (200, 204):
                exception = RuntimeError(f"HTTP {status}")
        except (OSError, http.client.HTTPException) as exc:
            exception = exc
        self._fire(name, start, len(data), exception)
        if status == 0:
            assert exception is not None
            raise httpx.ConnectError(f"{name}: {exception!r}", request=request)
        return httpx.Response(status, headers=answer_headers, content=data, request=request)

    def _fire(self, name: str, start: float, length: int, exception: Exception | None) -> None:
        if self.environment is None:
            return
        self.environment.events.request.fire(
            request_type="ESipa",
            name=name,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )

    async def aclose(self) -> None:
        """Close the device's connection."""
        self.connection.close()


class OperatorApiError(Exception):
    """The eIM's operator API refused a call (``status``: the HTTP status)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class OperatorApi:
    """The reference eIM's operator API (JSON over HTTP(S), ``docs/eim.md``), each call
    reported to Locust as request ``("operator", what)``."""

    def __init__(
        self, connection: SyncConnection, token: str | None, environment: Environment | None
    ) -> None:
        self.connection = connection
        self.token = token
        self.environment = environment

    def call(self, what: str, method: str, path: str, data: Any = None) -> Any:
        """One call; the decoded JSON answer (None when empty).

        Raises:
            OperatorApiError: the answer is not 2xx, or the exchange failed.
        """
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = None
        if data is not None:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
        start = time.perf_counter()
        error: OperatorApiError | None = None
        raw = b""
        try:
            status, _, raw = self.connection.request(method, path, body, headers)
            if not 200 <= status < 300:
                error = OperatorApiError(f"{what}: HTTP {status} {raw[:200]!r}", status)
        except (OSError, http.client.HTTPException) as exc:
            error = OperatorApiError(f"{what}: {exc!r}", 0)
        if self.environment is not None:
            self.environment.events.request.fire(
                request_type="operator",
                name=what,
                response_time=(time.perf_counter() - start) * 1000.0,
                response_length=len(raw),
                exception=error,
                context={},
            )
        if error is not None:
            raise error
        return json.loads(raw) if raw else None

    def provision(self, eid: str, euicc_certificate: bytes, eum_certificate: bytes) -> bytes:
        """Register ``eid`` with its certificates (or update them if it is registered); the
        AddInitialEimRequest (DER) the eIM gives it."""
        certificates = {
            "euiccCertificate": _pem(euicc_certificate),
            "eumCertificate": _pem(eum_certificate),
        }
        try:
            answer = self.call("register", "POST", "/api/euiccs", {"eid": eid, **certificates})
        except OperatorApiError as exc:
            if exc.status != 409:
                raise
            answer = self.call("update", "PATCH", f"/api/euiccs/{eid}", certificates)
        return bytes.fromhex(answer["addInitialEimRequest"])

    def queue(self, eid: str, order: dict[str, Any]) -> int:
        """Queue an order for ``eid``; its id."""
        return int(self.call("queue", "POST", f"/api/euiccs/{eid}/orders", order)["id"])


def _pem(der: bytes) -> str:
    return pki.load_certificate(der).public_bytes(Encoding.PEM).decode("ascii")


# -- the Locust user ------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("euicc-sim devices")
    group.add_argument(
        "--eim-token",
        env_var="EIM_ADMIN_TOKEN",
        default="",
        help="the eIM operator API token (Authorization: Bearer)",
    )
    group.add_argument(
        "--eim-ca",
        default="",
        help="PEM or DER files (comma-separated) of trust anchors for the eIM's TLS certificate",
    )
    group.add_argument(
        "--eim-insecure",
        action="store_true",
        default=False,
        help="do not check the eIM's TLS certificate",
    )
    group.add_argument("--esipa-binding", choices=["asn1", "json"], default="asn1")
    group.add_argument(
        "--psmo",
        default='[{"listProfileInfo": {}}]',
        help="the PSMO operations each cycle queues (JSON list; '' queues none)",
    )
    group.add_argument("--eid-prefix", default="89049032", help="first digits of the EIDs")
    group.add_argument(
        "--eid-base",
        type=int,
        default=int(time.time()) % 10**9,
        help="this run's part of the EID serials (default: from the clock)",
    )


_user_numbers = itertools.count()

# A device's work is CPU-bound (key generation, ECDSA, ASN.1), and on a loaded machine a
# worker can miss the master's 3-second heartbeat window and be dropped from the run: allow
# 10 s (the master reads this module too).
locust.runners.HEARTBEAT_LIVENESS = max(locust.runners.HEARTBEAT_LIVENESS, 10)


def device_eid(prefix: str, base: int, worker: int, number: int) -> str:
    """The EID of user ``number`` of worker ``worker`` in run ``base``: distinct for every
    (base, worker, number) with worker < 1000 and number < 10**7."""
    return make_eid(prefix, (base * 1000 + worker) * 10**7 + number)


class EimDevice(User):
    """One emulated IoT device (card + IPAd) polling the eIM at ``--host`` (see the module)."""

    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        self.options = options
        if not self.host:
            raise ValueError("give the eIM URL with --host")
        context = ssl.create_default_context()
        if options is not None and options.eim_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif options is not None and options.eim_ca:
            _load_anchors(context, options.eim_ca)
        self.tls_context = context
        self.operator = OperatorApi(
            SyncConnection(self.host, context=context),
            options.eim_token if options is not None else None,
            environment,
        )
        psmo = options.psmo if options is not None else ""
        self.operations = json.loads(psmo) if psmo else None
        self.flow: PullFlow | None = None
        self.eid = ""

    def on_start(self) -> None:
        """Make the card, provision it through the operator API, boot its pull flow."""
        from euicc_sim.card import Euicc  # the composition place may load the emulator

        options = self.options
        runner = self.environment.runner
        worker = getattr(runner, "worker_index", 0) if runner is not None else 0
        prefix = options.eid_prefix if options is not None else "89049032"
        base = options.eid_base if options is not None else 0
        eid = device_eid(prefix, base, worker, next(_user_numbers))
        card = Euicc.create(None, eid=eid, curves=(Curve.NIST_P256,))
        gevent.sleep(0)  # CPU-bound steps: let the other greenlets (heartbeats) run between
        chain = card.credentials.chains[0]
        request = self.operator.provision(card.eid, chain.euicc_certificate, chain.eum_certificate)
        client = Es10Client.open(InProcessTransport(card))
        es10_iot.add_initial_eim(client, request)
        gevent.sleep(0)
        binding = Binding(options.esipa_binding if options is not None else "asn1")
        assert self.host is not None
        connection = SyncConnection(self.host, context=self._esipa_context(client))
        http = httpx.AsyncClient(transport=GreenTransport(connection, self.environment))
        esipa = EsipaClient(self.host, EsipaConfig(binding=binding), http=http)
        config = PullConfig(esipa=EsipaConfig(binding=binding), max_packages=1, eim_url=self.host)
        self.flow = PullFlow(client, config, esipa=esipa, sleep=_green_sleep)
        if not run_sync(self.flow.boot()):
            raise RuntimeError(f"{eid}: no eIM configured after AddInitialEim")
        self.eid = eid

    def _esipa_context(self, client: Es10Client) -> ssl.SSLContext:
        """The TLS trust for ESipa: the options' plus the trustedCertificateTls the card got
        with its eIM configuration (SGP.32 section 2.11.1.1), as a real IPAd would use it."""
        if self.tls_context.verify_mode == ssl.CERT_NONE:
            return self.tls_context
        extra = [
            c.trusted_certificate_tls
            for c in es10_iot.get_eim_configuration_data(client)
            if c.trusted_certificate_tls is not None
        ]
        if not extra:
            return self.tls_context
        context = ssl.create_default_context()
        if self.options is not None and self.options.eim_ca:
            _load_anchors(context, self.options.eim_ca)
        for der in extra:
            context.load_verify_locations(cadata=der)
        return context

    def on_stop(self) -> None:
        """Close the device's connections."""
        if self.flow is not None and self.flow.esipa is not None:
            run_sync(self.flow.esipa.aclose())
        self.operator.connection.close()

    @task
    def psmo_cycle(self) -> None:
        """Queue a PSMO (unless ``--psmo ''``), then one pull cycle; report it as
        ``("PSMO", "cycle")``."""
        assert self.flow is not None
        if self.operations is not None:
            self.operator.queue(self.eid, {"type": "psmo", "operations": self.operations})
        start = time.perf_counter()
        exception: Exception | None = None
        outcome: PollOutcome | None = None
        try:
            outcome = run_sync(self.flow.poll_once())
            exception = _cycle_error(outcome, expect_package=self.operations is not None)
        except Exception as exc:  # a bug: Locust counts it, the device goes on
            exception = exc
        self.environment.events.request.fire(
            request_type="PSMO",
            name="cycle",
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=0 if outcome is None else len(outcome.packages),
            exception=exception,
            context={"eid": self.eid},
        )


def _load_anchors(context: ssl.SSLContext, files: str) -> None:
    """Trust the certificate files (PEM or DER) of a comma-separated list."""
    for name in files.split(","):
        if not name:
            continue
        data = Path(name).read_bytes()
        if b"-----BEGIN" in data:
            context.load_verify_locations(cadata=data.decode("ascii"))
        else:
            context.load_verify_locations(cadata=data)


async def _green_sleep(seconds: float) -> None:
    # time.sleep is gevent's under Locust: it blocks this greenlet only.
    time.sleep(seconds)


def _cycle_error(outcome: PollOutcome, *, expect_package: bool) -> Exception | None:
    """Why a cycle counts as failed, or None."""
    if outcome.error:
        return RuntimeError(outcome.error)
    for package in outcome.packages:
        if package.refused or not package.delivered:
            return RuntimeError(f"package not executed or not acknowledged: {package}")
    if expect_package and not any(p.kind is not None for p in outcome.packages):
        return RuntimeError("the queued PSMO did not arrive")
    return None


def locustfile_path() -> Path:
    """This module's file, for ``locust -f`` (Locust wants a ``.py`` path)."""
    return Path(os.path.abspath(__file__))
