"""ES9+ client (IPAd ↔ SM-DP+), JSON binding over HTTPS (GSMA SGP.22 v2.5 §6.5; §5.6).

One POST per function to ``<base URL>/gsma/rsp2/es9plus/<function>`` with the headers
``Content-Type: application/json``, ``X-Admin-Protocol: gsma/rsp/v2.5.0`` and a
``User-Agent``. Value encoding, as every real SM-DP+ expects it:

* ASN.1 objects travel as standard base64 of the **complete TLV** (tag and length included):
  ``euiccInfo1`` = ``BF20...``, ``serverSignature1`` = ``5F37 40...``, ``euiccCiPKIdToBeUsed``
  = ``04 14...``; certificates as base64 of their DER.
* ``euiccChallenge`` is the exception: base64 of the raw 16 bytes.
* ``transactionId`` is the hex text of the TransactionId bytes (upper case).

The fields of each function and how they travel are read from
:data:`euicc_protocol.bindings.ES9PLUS`, the table the reference servers use too.

Answers: HTTP 200 with ``header.functionExecutionStatus.status`` ``Executed-Success`` (or
``Executed-WithWarning``, logged); ``Failed``/``Expired`` raise :class:`Es9Error` with the
``statusCodeData`` subject and reason codes. handleNotification answers HTTP 204 with no body
(an empty 200 is accepted too). Everything that breaks the binding (another HTTP status, a body
that is not the expected JSON, a field with the wrong tag) raises :class:`Es9ProtocolError`;
connection and TLS failures raise :class:`Es9ConnectionError`, timeouts :class:`Es9Timeout`.

HTTP: a client keeps one HTTP/1.1 connection alive across its calls (a download's four
functions and its notification share one TLS handshake), over the lean pooled transport of
:mod:`ipa.http_pool` rather than httpx's own pool, which costs more per request than the
SM-DP+ takes to answer on a local network. The TLS context of a set of anchors is built once
per process and shared.

TLS is verified by default. The trust anchors are the certificates configured in
:class:`Es9Config` (the GSMA CI certificate(s) that issued CERT.DP.TLS, or any PEM bundle),
otherwise the system's. ``insecure=True`` turns verification off and must be asked for.
Plain HTTP is used only when asked for: an explicit ``http://`` base URL, or
``Es9Config(scheme="http")`` (local test servers).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import ssl
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from euicc_protocol import bindings
from ipa.errors import IpaError
from ipa.tls import https_client, shared_client_context

__all__ = [
    "ADMIN_PROTOCOL",
    "USER_AGENT",
    "AuthenticateClientOk",
    "Es9Config",
    "Es9ConnectionError",
    "Es9Error",
    "Es9PlusClient",
    "Es9ProtocolError",
    "Es9Timeout",
    "GetBoundProfilePackageOk",
    "InitiateAuthenticationOk",
    "base_url_for",
    "load_trust_anchors",
]

log = logging.getLogger(__name__)

#: X-Admin-Protocol sent with every request (the SGP.22 version whose binding this follows).
ADMIN_PROTOCOL = "gsma/rsp/v2.5.0"
#: User-Agent the reference LPAs (lpac, pySim) send.
USER_AGENT = "gsma-rsp-lpad"
PATH_PREFIX = "/gsma/rsp2/es9plus/"

INITIATE_AUTHENTICATION = "initiateAuthentication"
AUTHENTICATE_CLIENT = "authenticateClient"
GET_BOUND_PROFILE_PACKAGE = "getBoundProfilePackage"
HANDLE_NOTIFICATION = "handleNotification"
CANCEL_SESSION = "cancelSession"

_SUCCESS = ("Executed-Success", "Executed-WithWarning")
_FAILURE = ("Failed", "Expired")
# Functions whose success carries no data: the server may answer 204 or an empty 200.
_NO_DATA = (HANDLE_NOTIFICATION, CANCEL_SESSION)


# -- errors -----------------------------------------------------------------------------------


class Es9Error(IpaError):
    """The SM-DP+ answered ``Failed`` (or ``Expired``) with a subject and a reason code.

    Attributes:
        subject_code: ``statusCodeData.subjectCode`` (``"8.1.1"``), ``""`` if the server sent
            none.
        reason_code: ``statusCodeData.reasonCode`` (``"3.8"``), ``""`` if none.
        message: ``statusCodeData.message`` (optional free text).
        function: the ES9+ function that failed (``"authenticateClient"``).
        status: ``"Failed"`` or ``"Expired"``.
        subject_identifier: ``statusCodeData.subjectIdentifier`` when present.
    """

    def __init__(
        self,
        subject_code: str,
        reason_code: str,
        message: str = "",
        *,
        function: str = "",
        status: str = "Failed",
        subject_identifier: str | None = None,
    ) -> None:
        self.subject_code = subject_code
        self.reason_code = reason_code
        self.message = message
        self.function = function
        self.status = status
        self.subject_identifier = subject_identifier
        where = f"ES9+.{function} " if function else "ES9+ "
        text = f"{where}{status}: subject {subject_code or '?'} reason {reason_code or '?'}"
        super().__init__(text + (f" ({message})" if message else ""))


class Es9ProtocolError(IpaError):
    """The server's answer breaks the ES9+ JSON binding (HTTP status, JSON, a field's form).

    ``status_code`` is the HTTP status of the answer (None when it never arrived).
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class Es9ConnectionError(IpaError):
    """The SM-DP+ could not be reached: DNS, TCP, TLS (certificate) or the connection broke."""


class Es9Timeout(Es9ConnectionError):
    """The SM-DP+ did not answer in time."""


# -- configuration ----------------------------------------------------------------------------


def load_trust_anchors(sources: Iterable[str | Path | bytes]) -> tuple[bytes, ...]:
    """Certificates from files or bytes, each a PEM bundle (one or more certificates) or DER.

    Paths are read; bytes are taken as they are. The result feeds :attr:`Es9Config.ca_certificates`.
    """
    out = []
    for source in sources:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        if not data.strip():
            raise ValueError(f"no certificate in {source!r}")
        out.append(bytes(data))
    return tuple(out)


def base_url_for(address: str, scheme: str = "https") -> str:
    """The base URL for an SM-DP+ ``address``: kept when it already is an ``http(s)://`` URL,
    else ``<scheme>://<address>`` (an activation code gives ``host[:port]``)."""
    lowered = address.lower()
    if lowered.startswith(("https://", "http://")):
        return address.rstrip("/")
    if scheme not in ("https", "http"):
        raise ValueError(f"scheme must be https or http, got {scheme!r}")
    return f"{scheme}://{address}"


@dataclass(frozen=True)
class Es9Config:
    """How the IPAd reaches SM-DP+ servers.

    Attributes:
        ca_certificates: trust anchors for TLS, each a PEM bundle or one DER certificate (see
            :func:`load_trust_anchors`). Empty: the system's trust store.
        insecure: skip TLS certificate verification (only when explicitly asked for).
        timeout: seconds allowed for connecting, and for each request until its whole
            answer has arrived.
        scheme: URL scheme for bare addresses; ``"http"`` only for local test servers.
        user_agent: the ``User-Agent`` header.
        admin_protocol: the ``X-Admin-Protocol`` header.
        transport: an httpx transport to use instead of the network (tests).
    """

    ca_certificates: tuple[bytes, ...] = ()
    insecure: bool = False
    timeout: float = 30.0
    scheme: str = "https"
    user_agent: str = USER_AGENT
    admin_protocol: str = ADMIN_PROTOCOL
    transport: httpx.AsyncBaseTransport | None = field(default=None, compare=False)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The ``verify`` argument for httpx: False when insecure, else a verifying context
        (made once per set of anchors and shared: do not modify it)."""
        if self.insecure:
            return False
        # Only the configured anchors when there are any: an SM-DP+ TLS certificate is issued
        # by a GSMA CI, not by the web PKI, and trusting both would widen what we accept.
        return shared_client_context(self.ca_certificates or None)

    def base_url(self, address: str) -> str:
        """The base URL of the SM-DP+ at ``address`` (see :func:`base_url_for`)."""
        return base_url_for(address, self.scheme)

    def http_client(self) -> httpx.AsyncClient:
        """A new HTTP client with these settings (the caller closes it): keep-alive
        connections over :class:`~ipa.http_pool.PooledTransport`; httpx over
        :attr:`transport` when one is set (tests), or with its own pool when the environment
        names an HTTP(S) proxy (``HTTPS_PROXY`` and the like, which only httpx follows)."""
        if self.transport is not None:
            return https_client(False, self.timeout, self.transport)
        if _proxy_configured():
            return https_client(self.ssl_context(), self.timeout)
        # Imported here: ipa.http_pool loads the ESipa client, which ES9+ alone does not need.
        from ipa.http_pool import FleetHttpClient, PooledTransport

        context = shared_client_context(self.ca_certificates or None, verify=not self.insecure)
        # probe_idle: a plain-function callback (consent, confirmation code) can block the
        # loop for minutes between two calls while the server closes the idle connection.
        pool = PooledTransport(
            ssl_context=context, max_connections=4, timeout=self.timeout, probe_idle=True
        )
        return FleetHttpClient(pool, timeout=self.timeout)


def _proxy_configured() -> bool:
    """Whether the environment names a proxy for HTTP(S) (httpx's ``trust_env`` honours it)."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("https", "http", "all"))


# -- responses --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitiateAuthenticationOk:
    """initiateAuthentication success; every ASN.1 value is the complete TLV as received."""

    transaction_id: bytes
    server_signed1: bytes  # 30 ...
    server_signature1: bytes  # 5F37 40 ...
    euicc_ci_pkid_to_be_used: bytes  # 04 14 ...
    server_certificate: bytes  # CERT.DPauth, DER


@dataclass(frozen=True, slots=True)
class AuthenticateClientOk:
    """authenticateClient success; ASN.1 values are complete TLVs as received."""

    transaction_id: bytes
    profile_metadata: bytes  # BF25 StoreMetadataRequest
    smdp_signed2: bytes  # 30 ...
    smdp_signature2: bytes  # 5F37 40 ...
    smdp_certificate: bytes  # CERT.DPpb, DER


@dataclass(frozen=True, slots=True)
class GetBoundProfilePackageOk:
    """getBoundProfilePackage success."""

    transaction_id: bytes
    bound_profile_package: bytes  # BF36 ...


# -- value encoding ---------------------------------------------------------------------------


def _tid_checked(transaction_id: bytes) -> bytes:
    if not isinstance(transaction_id, bytes) or not 1 <= len(transaction_id) <= 16:
        raise ValueError(f"transactionId must be 1..16 bytes, got {transaction_id!r}")
    return transaction_id


@functools.cache
def _required_field(function: str, name: str) -> bindings.Field:
    """The binding's field ``name`` of ``function``, made mandatory (one per field of the
    fixed ES9+ table)."""
    return dataclasses.replace(bindings.ES9PLUS[function].field(name), mandatory=True)


def _value(body: Mapping[str, Any], function: str, name: str) -> Any:
    """The response field ``name`` read with the ES9+ binding (:mod:`euicc_protocol.bindings`);
    required here even where the binding lets a server leave it out."""
    field = _required_field(function, name)
    try:
        return bindings.decode((field,), body)[name]
    except bindings.BindingError as exc:
        raise Es9ProtocolError(f"ES9+.{function}: {exc}") from None


def _tlv_field(body: Mapping[str, Any], function: str, name: str, tag: bytes) -> bytes:
    data: bytes = _value(body, function, name)  # one complete TLV with the binding's tag
    assert data.startswith(tag)
    return data


def _tid_field(body: Mapping[str, Any], function: str, expected: bytes | None = None) -> bytes:
    tid: bytes = _value(body, function, "transactionId")
    if expected is not None and tid != expected:
        raise Es9ProtocolError(
            f"ES9+.{function}: answer is for transaction {tid.hex().upper()}, "
            f"not {expected.hex().upper()}"
        )
    return tid


def _request(function: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON request of ``function`` (the binding checks every value before sending)."""
    return bindings.encode(bindings.ES9PLUS[function].request, values)


# -- client -----------------------------------------------------------------------------------


class Es9PlusClient:
    """ES9+ functions against one SM-DP+, as coroutines.

    ``server`` is the SM-DP+ address of an activation code (``smdp.example.com[:port]``,
    reached over HTTPS) or a base URL (``https://...``, or ``http://...`` for a local test
    server)::

        async with Es9PlusClient("smdp.example.com", Es9Config(ca_certificates=anchors)) as es9:
            ok = await es9.initiate_authentication(challenge, info1)
    """

    def __init__(
        self,
        server: str,
        config: Es9Config | None = None,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config if config is not None else Es9Config()
        self.base_url = self.config.base_url(server)
        self._http = http if http is not None else self.config.http_client()
        self._owns_http = http is None

    @property
    def smdp_address(self) -> str:
        """The address part of the base URL (``host[:port]``), as sent in ``smdpAddress``."""
        return self.base_url.split("://", 1)[1].split("/", 1)[0]

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Es9PlusClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the five functions -------------------------------------------------------------

    async def initiate_authentication(
        self, euicc_challenge: bytes, euicc_info1: bytes, smdp_address: str | None = None
    ) -> InitiateAuthenticationOk:
        """ES9+.InitiateAuthentication.

        ``euicc_challenge`` is the raw 16 bytes, ``euicc_info1`` the card's ``BF20`` TLV,
        ``smdp_address`` the address the IPAd was given (default: this client's).
        """
        if len(euicc_challenge) != 16:
            raise ValueError(f"euiccChallenge must be 16 bytes, got {len(euicc_challenge)}")
        fn = INITIATE_AUTHENTICATION
        body = await self.call(
            fn,
            _request(
                fn,
                {
                    "euiccChallenge": euicc_challenge,
                    "euiccInfo1": _expect(euicc_info1, b"\xbf\x20", "euiccInfo1"),
                    "smdpAddress": smdp_address if smdp_address is not None else self.smdp_address,
                },
            ),
        )
        return InitiateAuthenticationOk(
            transaction_id=_tid_field(body, fn),
            server_signed1=_tlv_field(body, fn, "serverSigned1", b"\x30"),
            server_signature1=_tlv_field(body, fn, "serverSignature1", b"\x5f\x37"),
            euicc_ci_pkid_to_be_used=_tlv_field(body, fn, "euiccCiPKIdToBeUsed", b"\x04"),
            server_certificate=_tlv_field(body, fn, "serverCertificate", b"\x30"),
        )

    async def authenticate_client(
        self, transaction_id: bytes, authenticate_server_response: bytes
    ) -> AuthenticateClientOk:
        """ES9+.AuthenticateClient with the card's ``BF38`` AuthenticateServerResponse."""
        fn = AUTHENTICATE_CLIENT
        response = _expect(authenticate_server_response, b"\xbf\x38", "authenticateServerResponse")
        request = _request(
            fn,
            {"transactionId": _tid_checked(transaction_id), "authenticateServerResponse": response},
        )
        body = await self.call(fn, request)
        return AuthenticateClientOk(
            transaction_id=_tid_field(body, fn, transaction_id),
            profile_metadata=_tlv_field(body, fn, "profileMetadata", b"\xbf\x25"),
            smdp_signed2=_tlv_field(body, fn, "smdpSigned2", b"\x30"),
            smdp_signature2=_tlv_field(body, fn, "smdpSignature2", b"\x5f\x37"),
            smdp_certificate=_tlv_field(body, fn, "smdpCertificate", b"\x30"),
        )

    async def get_bound_profile_package(
        self, transaction_id: bytes, prepare_download_response: bytes
    ) -> GetBoundProfilePackageOk:
        """ES9+.GetBoundProfilePackage with the card's ``BF21`` PrepareDownloadResponse."""
        fn = GET_BOUND_PROFILE_PACKAGE
        response = _expect(prepare_download_response, b"\xbf\x21", "prepareDownloadResponse")
        body = await self.call(
            fn,
            _request(
                fn,
                {
                    "transactionId": _tid_checked(transaction_id),
                    "prepareDownloadResponse": response,
                },
            ),
        )
        return GetBoundProfilePackageOk(
            transaction_id=_tid_field(body, fn, transaction_id),
            bound_profile_package=_tlv_field(body, fn, "boundProfilePackage", b"\xbf\x36"),
        )

    async def handle_notification(self, pending_notification: bytes) -> None:
        """ES9+.HandleNotification with a ``BF37`` ProfileInstallationResult or a ``30``
        OtherSignedNotification, exactly as the card returned it."""
        if not pending_notification.startswith((b"\xbf\x37", b"\x30")):
            raise ValueError("pendingNotification must be a BF37 or 30 TLV")
        request = _request(HANDLE_NOTIFICATION, {"pendingNotification": pending_notification})
        await self.call(HANDLE_NOTIFICATION, request)

    async def cancel_session(self, transaction_id: bytes, cancel_session_response: bytes) -> None:
        """ES9+.CancelSession with the card's ``BF41`` CancelSessionResponse."""
        response = _expect(cancel_session_response, b"\xbf\x41", "cancelSessionResponse")
        body = await self.call(
            CANCEL_SESSION,
            _request(
                CANCEL_SESSION,
                {"transactionId": _tid_checked(transaction_id), "cancelSessionResponse": response},
            ),
        )
        if body.get("transactionId") is not None:  # optional echo (osmo-smdpp sends it)
            _tid_field(body, CANCEL_SESSION, transaction_id)

    # -- transport ----------------------------------------------------------------------

    async def call(self, function: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``request`` to ES9+ ``function``; return the JSON answer of a success
        (``{}`` for an answer without body).

        Raises:
            Es9Error: the server reported Failed or Expired.
            Es9ProtocolError: the answer breaks the binding.
            Es9ConnectionError, Es9Timeout: the server could not be reached in time.
        """
        url = self.base_url + PATH_PREFIX + function
        headers = {
            "Content-Type": "application/json",
            "X-Admin-Protocol": self.config.admin_protocol,
            "User-Agent": self.config.user_agent,
        }
        content = json.dumps(request, separators=(",", ":")).encode("utf-8")
        debug = log.isEnabledFor(logging.DEBUG)
        if debug:
            log.debug("ES9+ %s -> %s %s", function, url, content.decode())
        try:
            answer = await self._http.post(url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            message = f"ES9+.{function}: no answer from {self.base_url} ({exc!r})"
            raise Es9Timeout(message) from exc
        except httpx.HTTPError as exc:
            message = f"ES9+.{function}: cannot reach {self.base_url}: {exc!r}"
            raise Es9ConnectionError(message) from exc
        if debug:
            log.debug("ES9+ %s <- HTTP %d %s", function, answer.status_code, answer.text)
        return _parse_answer(function, answer)


def _expect(value: bytes, tag: bytes, name: str) -> bytes:
    if not isinstance(value, bytes) or not value.startswith(tag):
        raise ValueError(f"{name} must be a complete {tag.hex().upper()} TLV")
    return value


def _parse_answer(function: str, answer: httpx.Response) -> dict[str, Any]:
    status = answer.status_code
    raw = answer.content
    if not raw.strip():
        if function in _NO_DATA and status in (200, 204):
            return {}
        raise Es9ProtocolError(f"ES9+.{function}: HTTP {status} without a body", status_code=status)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Es9ProtocolError(
            f"ES9+.{function}: HTTP {status}, body is not a JSON object: {raw[:80]!r}",
            status_code=status,
        )
    header = body.get("header")
    execution = header.get("functionExecutionStatus") if isinstance(header, dict) else None
    if not isinstance(execution, dict):
        execution = {}
    outcome = execution.get("status")
    # A Failed status is the server's word on the function even when it came with an HTTP
    # error status; raise it as such, never as a transport problem.
    if outcome in _FAILURE:
        raise _es9_error(function, outcome, execution.get("statusCodeData"))
    if status != 200:
        raise Es9ProtocolError(f"ES9+.{function}: HTTP {status}", status_code=status)
    if outcome not in _SUCCESS:
        raise Es9ProtocolError(
            f"ES9+.{function}: functionExecutionStatus.status is {outcome!r}", status_code=status
        )
    if outcome == "Executed-WithWarning":
        log.warning("ES9+.%s executed with warning: %s", function, execution.get("statusCodeData"))
    return body


def _es9_error(function: str, outcome: str, data: Any) -> Es9Error:
    data = data if isinstance(data, dict) else {}

    def text(key: str) -> str:
        value = data.get(key)
        return value if isinstance(value, str) else ""

    return Es9Error(
        text("subjectCode"),
        text("reasonCode"),
        text("message"),
        function=function,
        status=outcome,
        subject_identifier=data.get("subjectIdentifier") or None,
    )
