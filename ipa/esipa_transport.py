"""The two ESipa bindings as seen from the IPAd (GSMA SGP.32 v1.2 §6; ASN.1 binding §6.3):
how a message reaches the eIM and how the answer's envelope is checked.

**ASN.1 binding** (the default): one URL for every function, ``POST <eIM>/gsma/rsp2/asn1`` with
``Content-Type: application/x-gsma-rsp-asn1`` and ``X-Admin-Protocol: gsma/rsp/v2.1.0``. The
body is the DER of ``EsipaMessageFromIpaToEim``, an untagged CHOICE, so it starts directly with
the message's own tag (``BF4F`` GetEimPackageRequest ...). The answer is HTTP 200 with the DER
of ``EsipaMessageFromEimToIpa`` (``BF4F 03 02 01 01`` = "no package"); HandleNotification has
no answer message (HTTP 200 or 204, empty body).

**JSON binding**: ``POST <eIM>/gsma/rsp2/esipa/<function>`` with the ES9+ JSON conventions:
ASN.1 values as base64 of the complete TLV, ``transactionId``/``eimTransactionId`` and
``eidValue`` as upper-case hex, ``euiccChallenge`` as base64 of the raw 16 bytes, function
errors as HTTP 200 with ``functionExecutionStatus.status`` ``Failed`` and ``statusCodeData``.

TLS is verified by default: against the configured trust anchors (a PEM bundle or DER
certificates), else the system store. ``pinned_public_key`` pins the eIM's TLS key instead (the
``trustedEimPkTls`` of the eIM configuration); ``insecure`` turns checking off and must be asked
for. Plain HTTP only when the URL says ``http://`` or the config's scheme is ``"http"``.
"""

from __future__ import annotations

import base64
import enum
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from euicc_protocol import schema, tlv
from ipa.esipa_codes import (
    AUTHENTICATE_CLIENT,
    CANCEL_SESSION,
    GET_BOUND_PROFILE_PACKAGE,
    GET_EIM_PACKAGE,
    INITIATE_AUTHENTICATION,
    PROVIDE_EIM_PACKAGE_RESULT,
    EsipaConnectionError,
    EsipaError,
    EsipaFunctionError,
    EsipaProtocolError,
    EsipaTimeout,
    TlsPinMismatch,
)
from ipa.tls import (
    anchored_context,
    certificate_public_key,
    https_client,
    unverified_context,
)

__all__ = [
    "ADMIN_PROTOCOL",
    "ASN1_PATH",
    "CONTENT_TYPE_ASN1",
    "JSON_PATH_PREFIX",
    "USER_AGENT",
    "Binding",
    "EsipaConfig",
    "EsipaTransport",
    "b64",
]

log = logging.getLogger(__name__)

#: X-Admin-Protocol of ESipa requests (the value open-source IPAds and eIMs send).
ADMIN_PROTOCOL = "gsma/rsp/v2.1.0"
ASN1_PATH = "/gsma/rsp2/asn1"
JSON_PATH_PREFIX = "/gsma/rsp2/esipa/"
CONTENT_TYPE_ASN1 = "application/x-gsma-rsp-asn1"
USER_AGENT = "euicc-sim-ipad"

# The answer alternative of EsipaMessageFromEimToIpa each function expects.
_ANSWER_OF = {
    GET_EIM_PACKAGE: "getEimPackageResponse",
    PROVIDE_EIM_PACKAGE_RESULT: "provideEimPackageResultResponse",
    INITIATE_AUTHENTICATION: "initiateAuthenticationResponseEsipa",
    AUTHENTICATE_CLIENT: "authenticateClientResponseEsipa",
    GET_BOUND_PROFILE_PACKAGE: "getBoundProfilePackageResponseEsipa",
    CANCEL_SESSION: "cancelSessionResponseEsipa",
}
_SUCCESS = ("Executed-Success", "Executed-WithWarning")
_FAILURE = ("Failed", "Expired")


class Binding(enum.StrEnum):
    """Which ESipa binding a client speaks."""

    ASN1 = "asn1"
    JSON = "json"


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EsipaConfig:
    """How the IPAd reaches its eIM.

    Attributes:
        binding: ASN.1 (default) or JSON.
        ca_certificates: TLS trust anchors, each a PEM bundle or one DER certificate (a
            ``trustedCertificateTls`` may be the eIM's own certificate: anchors may be leaves).
            Empty: the system's store.
        pinned_public_key: SubjectPublicKeyInfo DER the eIM's TLS certificate must carry (the
            ``trustedEimPkTls`` of the eIM configuration); replaces chain checking.
        insecure: no TLS verification at all (only when asked for).
        timeout: seconds for connecting and for each read/write.
        scheme: URL scheme for a bare ``host[:port]`` eIM address.
        user_agent, admin_protocol: the ``User-Agent`` and ``X-Admin-Protocol`` headers.
        transport: an httpx transport to use instead of the network (tests).
    """

    binding: Binding = Binding.ASN1
    ca_certificates: tuple[bytes, ...] = ()
    pinned_public_key: bytes | None = None
    insecure: bool = False
    timeout: float = 30.0
    scheme: str = "https"
    user_agent: str = USER_AGENT
    admin_protocol: str = ADMIN_PROTOCOL
    transport: httpx.AsyncBaseTransport | None = field(default=None, compare=False)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The ``verify`` argument for httpx."""
        if self.insecure:
            return False
        if self.pinned_public_key is not None:
            # The pin is checked on every new connection (see EsipaTransport._check_pin); the
            # chain is not, since a pinned eIM key needs no certificate authority.
            return unverified_context()
        if not self.ca_certificates:
            return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        # Only these anchors, and an anchor may be the eIM's own certificate.
        return anchored_context(self.ca_certificates, partial_chain=True)

    def base_url(self, eim: str) -> str:
        """``eim`` when it already is an ``http(s)://`` URL, else ``<scheme>://<eim>``."""
        if eim.lower().startswith(("https://", "http://")):
            return eim.rstrip("/")
        if self.scheme not in ("https", "http"):
            raise ValueError(f"scheme must be https or http, got {self.scheme!r}")
        return f"{self.scheme}://{eim}"

    def http_client(self) -> httpx.AsyncClient:
        """A new httpx client with these settings (the caller closes it)."""
        if self.transport is not None:
            return https_client(False, self.timeout, self.transport)
        return https_client(self.ssl_context(), self.timeout)


# -- the transport --------------------------------------------------------------------------------


class HttpAnswerLike(Protocol):
    """What the transport reads of an HTTP answer (an ``httpx.Response`` has both)."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...


class EsipaTransport:
    """POSTs ESipa messages to one eIM in either binding; checks each answer's envelope.

    ``http`` is the httpx client to post with (its owner closes it); ``base_url`` the eIM's
    (see :meth:`EsipaConfig.base_url`).
    """

    def __init__(
        self, config: EsipaConfig, base_url: str, http: httpx.AsyncClient, *, sgp32: str = "1.2"
    ) -> None:
        self.config = config
        self.base_url = base_url
        self.sgp32 = sgp32
        self._http = http

    async def post_asn1(self, function: str, message: bytes, *, empty_ok: bool = False) -> bytes:
        """POST one ASN.1-binding message; return the answer message (b"" if allowed empty)."""
        body, _ = await self.post_asn1_decoded(function, message, empty_ok=empty_ok)
        return body

    async def post_asn1_decoded(
        self, function: str, message: bytes, *, empty_ok: bool = False
    ) -> tuple[bytes, Any]:
        """:meth:`post_asn1`, also returning the answer's value as the strict decoder read it
        (the value of its one EsipaMessageFromEimToIpa alternative), so the caller acts on
        that one decode; None for GetEimPackage (only its envelope is checked here) and for an
        empty answer."""
        headers = {
            "Content-Type": CONTENT_TYPE_ASN1,
            "X-Admin-Protocol": self.config.admin_protocol,
            "User-Agent": self.config.user_agent,
        }
        answer = await self._post(function, self.base_url + ASN1_PATH, message, headers)
        status, body = answer.status_code, answer.content
        if not body:
            if empty_ok and status in (200, 204):
                return b"", None
            raise EsipaProtocolError(
                f"ESipa.{function}: HTTP {status} without a body",
                function=function,
                status_code=status,
            )
        if status != 200:
            raise EsipaProtocolError(
                f"ESipa.{function}: HTTP {status}", function=function, status_code=status
            )
        if function == GET_EIM_PACKAGE:
            # Only the envelope here: a package the IPAd cannot decode is answered with
            # invalidPackageFormat (SGP.32 ESipa.ProvideEimPackageResult), which needs the
            # package in hand.
            try:
                outer = tlv.read_tlv(body)
            except tlv.TlvError as exc:
                raise EsipaProtocolError(
                    f"ESipa.{function}: malformed answer: {exc}", function=function
                ) from None
            if outer.tag != b"\xbf\x4f" or outer.end != len(body):
                raise EsipaProtocolError(
                    f"ESipa.{function}: expected one getEimPackageResponse (BF4F), got "
                    f"{body[:2].hex().upper()}",
                    function=function,
                    status_code=status,
                )
            return body, None
        expected = _ANSWER_OF.get(function)
        try:
            alternative, value = schema.decode("EsipaMessageFromEimToIpa", body, sgp32=self.sgp32)
        except schema.DecodeError as exc:
            raise EsipaProtocolError(
                f"ESipa.{function}: not an EsipaMessageFromEimToIpa: {exc}",
                function=function,
                status_code=status,
            ) from None
        if alternative is None:  # an unknown tag in the extensible CHOICE
            raise EsipaProtocolError(
                f"ESipa.{function}: not an EsipaMessageFromEimToIpa (tag {body[:2].hex()})",
                function=function,
                status_code=status,
            )
        if alternative != expected:
            raise EsipaProtocolError(
                f"ESipa.{function}: answer is a {alternative}, expected {expected}",
                function=function,
                status_code=status,
            )
        return body, value

    async def post_json(
        self, function: str, request: Mapping[str, Any], *, empty_ok: bool = False
    ) -> dict[str, Any]:
        """POST one JSON-binding request; return the JSON answer of a success."""
        headers = {
            "Content-Type": "application/json",
            "X-Admin-Protocol": self.config.admin_protocol,
            "User-Agent": self.config.user_agent,
        }
        content = json.dumps(request, separators=(",", ":")).encode("utf-8")
        url = self.base_url + JSON_PATH_PREFIX + function
        answer = await self._post(function, url, content, headers)
        return _parse_json_answer(function, answer, empty_ok)

    async def _post(
        self, function: str, url: str, content: bytes, headers: dict[str, str]
    ) -> HttpAnswerLike:
        extensions = {}
        if self.config.pinned_public_key is not None and not self.config.insecure:
            extensions["trace"] = self._check_pin
        debug = log.isEnabledFor(logging.DEBUG)
        if debug:
            log.debug("ESipa %s -> %s %s", function, url, content.hex().upper())
        # A fleet's client (ipa.http_pool.FleetHttpClient) answers a plain POST without
        # building an httpx.Response; only status_code and content are read below.
        post = getattr(self._http, "post_lean", None) or self._http.post
        try:
            answer: HttpAnswerLike = await post(
                url, content=content, headers=headers, extensions=extensions
            )
        except EsipaError:
            raise
        except httpx.TimeoutException as exc:
            raise EsipaTimeout(
                f"ESipa.{function}: no answer from {self.base_url} ({exc!r})", function=function
            ) from exc
        except httpx.HTTPError as exc:
            raise EsipaConnectionError(
                f"ESipa.{function}: cannot reach {self.base_url}: {exc!r}", function=function
            ) from exc
        if debug:
            log.debug("ESipa %s <- HTTP %d %s", function, answer.status_code, answer.content.hex())
        return answer

    async def _check_pin(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore trace hook: refuse a new TLS connection before anything is sent on it
        unless the server's certificate carries the pinned public key."""
        if event != "connection.start_tls.complete" or "return_value" not in info:
            return
        stream = info["return_value"]
        ssl_object = stream.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        pinned = self.config.pinned_public_key
        if der is not None and pinned is not None:
            if certificate_public_key(der) == pinned:
                return
        await stream.aclose()  # nothing was sent; do not leave the connection half-open
        raise TlsPinMismatch(f"{self.base_url}: the TLS certificate does not carry the pinned key")


def _parse_json_answer(function: str, answer: HttpAnswerLike, empty_ok: bool) -> dict[str, Any]:
    status, raw = answer.status_code, answer.content
    if not raw.strip():
        if empty_ok and status in (200, 204):
            return {}
        raise EsipaProtocolError(
            f"ESipa.{function}: HTTP {status} without a body", function=function, status_code=status
        )
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise EsipaProtocolError(
            f"ESipa.{function}: HTTP {status}, body is not a JSON object",
            function=function,
            status_code=status,
        )
    header = body.get("header")
    execution = header.get("functionExecutionStatus") if isinstance(header, dict) else None
    execution = execution if isinstance(execution, dict) else {}
    outcome = execution.get("status")
    if outcome in _FAILURE:
        data = execution.get("statusCodeData")
        data = data if isinstance(data, dict) else {}
        raise EsipaFunctionError(
            function,
            subject_code=str(data.get("subjectCode") or ""),
            reason_code=str(data.get("reasonCode") or ""),
            message=str(data.get("message") or ""),
        )
    if status != 200:
        raise EsipaProtocolError(
            f"ESipa.{function}: HTTP {status}", function=function, status_code=status
        )
    if outcome not in _SUCCESS:
        raise EsipaProtocolError(
            f"ESipa.{function}: functionExecutionStatus.status is {outcome!r}",
            function=function,
            status_code=status,
        )
    return body


def b64(data: bytes) -> str:
    """Standard base64 (with padding) of ``data``, as the JSON binding carries ASN.1 values."""
    return base64.b64encode(data).decode("ascii")
