"""Indirect profile download: the eIM relays ESipa requests to an SM-DP+ over ES9+ (JSON).

:class:`IndirectDownload` is the ESipa side (InitiateAuthentication, AuthenticateClient,
GetBoundProfilePackage, CancelSession) with the sessions it keeps in the store.

GSMA SGP.32 v1.2 indirect profile download (ESipa functions §5.14, ASN.1 binding §6.3): the
IPAd sends the eIM the ES9+ payloads as ESipa ASN.1 messages; the eIM calls the SM-DP+ with
the ES9+ JSON binding (SGP.22 v2.5 §6.5.1: the same TLVs in standard base64,
transactionId in hex) and wraps the answer in the ESipa response. TLVs pass through byte for
byte, never re-encoded, so every signature in them still verifies.

:class:`Es9Client` does the HTTPS calls (httpx; the SM-DP+ certificate is verified against
the configured CA certificates, or the system trust store without them). :class:`SmdpRelay`
translates. A failed ES9+ function becomes the ESipa error alternative of the function
(:data:`ESIPA_ERRORS`, codes by subjectCode/reasonCode; anything else undefinedError 127);
the :class:`Answer` keeps the SM-DP+'s statusCodeData for the JSON binding.

Compact ES10 forms (``minimizeEsipaBytes``) cannot be relayed to an ES9+ server, which needs
the full objects: they are refused with undefinedError.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from euicc_protocol import bindings, pki, schema, tlv

from ..common import tlv_children
from ..common.addresses import AddressError, canonical_address, is_valid_address
from ..common.functions import FunctionFailed
from .packages import MessageError, activation_code_address, decode_message, message_parts
from .store import EimStore, Order, OrderState, Session

__all__ = [
    "ESIPA_ERRORS",
    "Answer",
    "Es9Client",
    "Es9Transport",
    "IndirectDownload",
    "SmdpRelay",
    "esipa_error",
]

log = logging.getLogger(__name__)

#: X-Admin-Protocol the eIM sends to SM-DP+s (they check the ``gsma/rsp/v2`` prefix).
ES9_ADMIN_PROTOCOL = "gsma/rsp/v2.5.0"

#: A function that POSTs an ES9+ JSON request: (SM-DP+ address, function, body) → response
#: body (None for 204), raising FunctionFailed for status Failed or a transport problem.
Es9Transport = Callable[[str, str, dict[str, Any]], "dict[str, Any] | None"]

#: ESipa error code per (function, subjectCode, reasonCode) of the ES9+ failure.
ESIPA_ERRORS: dict[str, dict[tuple[str, str], int]] = {
    "initiateAuthentication": {
        ("8.8.1", "3.8"): 1,  # invalidDpAddress
        ("8.8.3", "3.1"): 2,  # euiccVersionNotSupportedByDp
        ("8.8.2", "3.1"): 3,  # ciPKIdNotSupported
        ("8.8.4", "3.7"): 3,
    },
    "authenticateClient": {
        ("8.1.2", "6.1"): 1,  # eumCertificateInvalid
        ("8.1.2", "6.3"): 2,
        ("8.1.3", "6.1"): 3,  # euiccCertificateInvalid
        ("8.1.3", "6.3"): 4,
        ("8.1", "6.1"): 5,  # euiccSignatureInvalid
        ("8.2.6", "3.8"): 6,  # matchingIdRefused
        ("8.2.1", "3.9"): 6,
        ("8.1.1", "3.8"): 7,  # eidMismatch
        ("8.2.5", "4.3"): 8,  # noEligibleProfile
        ("8.11.1", "3.9"): 9,  # ciPKUnknown
        ("8.10.1", "3.9"): 10,  # invalidTransactionId
        ("8.1", "4.8"): 11,  # insufficientMemory
    },
    "getBoundProfilePackage": {
        ("8.1", "6.1"): 1,  # euiccSignatureInvalid
        ("8.2.7", "2.2"): 2,  # confirmationCodeMissing
        ("8.2.7", "3.8"): 3,  # confirmationCodeRefused
        ("8.2.7", "6.4"): 4,  # confirmationCodeRetriesExceeded
        ("8.2", "3.7"): 5,  # bppRebindingRefused
        ("8.8.5", "4.1"): 6,  # downloadOrderExpired
        ("8.10.1", "3.9"): 95,  # invalidTransactionId
    },
    "cancelSession": {
        ("8.10.1", "3.9"): 1,  # invalidTransactionId
        ("8.1", "6.1"): 2,  # euiccSignatureInvalid
    },
}
UNDEFINED_ERROR = 127

# The ESipa response type of each relayed function and its error alternative.
_ERROR_TYPES = {
    "initiateAuthentication": (
        "InitiateAuthenticationResponseEsipa",
        "initiateAuthenticationErrorEsipa",
    ),
    "authenticateClient": ("AuthenticateClientResponseEsipa", "authenticateClientErrorEsipa"),
    "getBoundProfilePackage": (
        "GetBoundProfilePackageResponseEsipa",
        "getBoundProfilePackageErrorEsipa",
    ),
    "cancelSession": ("CancelSessionResponseEsipa", "cancelSessionError"),
}
_RESPONSE_TAGS = {
    "initiateAuthentication": b"\xbf\x39",
    "authenticateClient": b"\xbf\x3b",
    "getBoundProfilePackage": b"\xbf\x3a",
    "cancelSession": b"\xbf\x41",
}


@dataclass(frozen=True)
class Answer:
    """An ESipa response message; ``failure`` is set when it is an error alternative (the
    JSON binding reports it as status Failed with this statusCodeData)."""

    message: bytes
    failure: FunctionFailed | None = None


def unreachable(message: str) -> FunctionFailed:
    """The failure for an SM-DP+ that cannot be reached or answers nonsense."""
    return FunctionFailed("8.8", "5.1", message)


def esipa_error(function: str, failure: FunctionFailed) -> Answer:
    """The ESipa error response of ``function`` for an ES9+ ``failure``."""
    code = ESIPA_ERRORS[function].get((failure.subject, failure.reason), UNDEFINED_ERROR)
    type_name, alternative = _ERROR_TYPES[function]
    return Answer(schema.encode(type_name, (alternative, code)), failure)


class Es9Client:
    """ES9+ JSON calls over HTTPS (or HTTP with ``scheme="http"``), thread-safe.

    ``ca_pem`` holds the CA certificates (PEM) that SM-DP+ TLS certificates must chain to;
    without it the system trust store is used. Every call is bounded: ``connect_timeout``
    to connect, ``timeout`` for each read or write, at most ``max_concurrent`` calls in
    flight (a call that finds none free within ``queue_timeout`` fails at once, as an
    unreachable SM-DP+). The address must be a well-formed host[:port]
    (:mod:`euicc_servers.common.addresses`).
    """

    def __init__(
        self,
        *,
        ca_pem: bytes | None = None,
        scheme: str = "https",
        timeout: float = 20.0,
        connect_timeout: float = 5.0,
        max_concurrent: int = 8,
        queue_timeout: float = 5.0,
        requester: str = "euicc-sim eIM",
    ) -> None:
        if scheme not in ("https", "http"):
            raise ValueError(f"scheme must be https or http, not {scheme!r}")
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.scheme = scheme
        self._requester = requester
        self._verify: ssl.SSLContext | bool = True
        if ca_pem is not None:
            self._verify = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
        # Every phase bounded: connect, each read/write, and the wait for a free pool slot.
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout, pool=queue_timeout)
        self._limits = httpx.Limits(
            max_connections=max_concurrent, max_keepalive_connections=max_concurrent
        )
        #: Calls in flight at most; more wait ``queue_timeout`` seconds, then fail.
        self.max_concurrent = max_concurrent
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._queue_timeout = queue_timeout
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._calls = 0

    def close(self) -> None:
        """Close the kept-alive connections; a later call opens new ones."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    verify=self._verify, timeout=self._timeout, limits=self._limits
                )
            return self._client

    def __call__(self, address: str, function: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if not is_valid_address(address):
            raise FunctionFailed("8.8.1", "3.8", f"invalid SM-DP+ address {address[:64]!r}")
        if not self._slots.acquire(timeout=self._queue_timeout):
            raise unreachable(f"{function} at {address}: too many SM-DP+ calls in progress")
        try:
            return self._post(address, function, body)
        finally:
            self._slots.release()

    def _post(self, address: str, function: str, body: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            self._calls += 1
            call_id = f"{self._calls}"
        payload = {
            "header": {
                "functionRequesterIdentifier": self._requester,
                "functionCallIdentifier": call_id,
            },
            **body,
        }
        url = f"{self.scheme}://{address}/gsma/rsp2/es9plus/{function}"
        headers = {
            "Content-Type": "application/json",
            "X-Admin-Protocol": ES9_ADMIN_PROTOCOL,
            "User-Agent": "euicc-sim-eim",
        }
        try:
            response = self._http().post(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise unreachable(f"{function} at {address}: {exc}") from None
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise unreachable(f"{function} at {address}: HTTP {response.status_code}")
        try:
            answer = response.json()
            status = answer["header"]["functionExecutionStatus"]
        except (ValueError, KeyError, TypeError):
            raise unreachable(f"{function} at {address}: not an ES9+ response") from None
        if status.get("status") in ("Executed-Success", "Executed-WithWarning"):
            return dict(answer)
        data = status.get("statusCodeData") or {}
        raise FunctionFailed(
            str(data.get("subjectCode", "")),
            str(data.get("reasonCode", "")),
            str(data.get("message", status.get("status", "Failed"))),
        )


class SmdpRelay:
    """ESipa ⇄ ES9+ translation over an :data:`Es9Transport` (default :class:`Es9Client`);
    the ES9+ bodies are read and written with the binding of
    :data:`euicc_protocol.bindings.ES9PLUS`."""

    def __init__(self, transport: Es9Transport) -> None:
        self.transport = transport

    def _exchange(self, address: str, function: str, values: dict[str, Any]) -> dict[str, Any]:
        """Call ES9+ ``function`` with ``values``; its response values (bytes/str).

        Raises:
            FunctionFailed: the SM-DP+ answered Failed, is unreachable or answered nonsense.
        """
        binding = bindings.ES9PLUS[function]
        try:
            body = bindings.encode(binding.request, values)
        except bindings.BindingError as exc:
            raise FunctionFailed("1.3.1", "2.1", str(exc)) from None
        log.debug("relaying %s to %s", function, address)
        answer = self.transport(address, function, body)
        if binding.empty_response:
            return {}
        try:
            return bindings.decode(binding.response, answer or {})
        except bindings.BindingError as exc:
            raise unreachable(f"the SM-DP+ answer to {function}: {exc}") from None

    @staticmethod
    def _ok(function: str, got: dict[str, Any]) -> bytes:
        """The ok alternative of an ESipa response: ``80`` transactionId, then every TLV
        field of the ES9+ response in the binding's order, bytes as received."""
        content = tlv.encode_tlv(b"\x80", got["transactionId"])
        for field in bindings.ES9PLUS[function].response:
            if field.encoding is bindings.Encoding.TLV and field.name in got:
                content += got[field.name]
        return tlv.encode_tlv(b"\xa0", content)

    def initiate_authentication(
        self, address: str, euicc_challenge: bytes, euicc_info1: bytes | None
    ) -> tuple[Answer, bytes | None]:
        """InitiateAuthentication; returns the answer and the SM-DP+'s transactionId."""
        function = "initiateAuthentication"
        if euicc_info1 is None:
            failure = FunctionFailed("1.3.1", "2.2", "euiccInfo1 is needed to relay to ES9+")
            return esipa_error(function, failure), None
        values = {"euiccChallenge": euicc_challenge, "euiccInfo1": euicc_info1}
        try:
            got = self._exchange(address, function, {**values, "smdpAddress": address})
        except FunctionFailed as exc:
            return esipa_error(function, exc), None
        return Answer(tlv.encode_tlv(b"\xbf\x39", self._ok(function, got))), got["transactionId"]

    def authenticate_client(
        self, address: str, transaction_id: bytes, authenticate_server_response: bytes
    ) -> Answer:
        """AuthenticateClient with the ``BF38`` AuthenticateServerResponse TLV."""
        function = "authenticateClient"
        values = {
            "transactionId": transaction_id,
            "authenticateServerResponse": authenticate_server_response,
        }
        try:
            got = self._exchange(address, function, values)
        except FunctionFailed as exc:
            return esipa_error(function, exc)
        return Answer(tlv.encode_tlv(b"\xbf\x3b", self._ok(function, got)))

    def get_bound_profile_package(
        self, address: str, transaction_id: bytes, prepare_download_response: bytes
    ) -> Answer:
        """GetBoundProfilePackage with the ``BF21`` PrepareDownloadResponse TLV."""
        function = "getBoundProfilePackage"
        values = {
            "transactionId": transaction_id,
            "prepareDownloadResponse": prepare_download_response,
        }
        try:
            got = self._exchange(address, function, values)
        except FunctionFailed as exc:
            return esipa_error(function, exc)
        return Answer(tlv.encode_tlv(b"\xbf\x3a", self._ok(function, got)))

    def cancel_session(
        self, address: str, transaction_id: bytes, cancel_session_response: bytes
    ) -> Answer:
        """CancelSession with the ES10b ``BF41`` CancelSessionResponse TLV."""
        values = {"transactionId": transaction_id, "cancelSessionResponse": cancel_session_response}
        try:
            self._exchange(address, "cancelSession", values)
        except FunctionFailed as exc:
            return esipa_error("cancelSession", exc)
        return Answer(schema.encode("CancelSessionResponseEsipa", ("cancelSessionOk", {})))

    def handle_notification(self, address: str, pending_notification: bytes) -> None:
        """Forward a notification (a ``BF37`` PIR) to the SM-DP+ at ``address``.

        Raises:
            FunctionFailed: it could not be delivered.
        """
        self._exchange(address, "handleNotification", {"pendingNotification": pending_notification})


def is_compact(tag: bytes, message: bytes) -> bool:
    """Whether an AuthenticateServerResponse/PrepareDownloadResponse/CancelSessionResponse
    TLV (``BF38``/``BF21``/``BF41``) holds the compact alternative (``A2``), which ES9+ cannot
    take."""
    try:
        children = tlv_children(message)
    except tlv.TlvError:
        return False
    return message[: len(tag)] == tag and bool(children) and children[0][0] == b"\xa2"


#: Called with (EID, eUICC certificate DER, EUM certificate DER) seen in an
#: AuthenticateServerResponse of a registered eUICC that the SM-DP+ accepted, so the eIM may
#: learn its key; returns whether the chain verified for that EID.
CertificateSeen = Callable[[str, bytes, bytes], bool]


class IndirectDownload:
    """The relayed ESipa functions and their sessions (one per SM-DP+ transactionId).

    The SM-DP+ is the request's smdpAddress, else the address in the activation code of the
    download order its eimTransactionId names, else ``default_smdp_address``. The eIM
    connects only to SM-DP+s it is configured for: ``default_smdp_address``,
    ``smdp_addresses``, and the activation-code address of its own download orders (the one
    the eimTransactionId names, else any queued or sent); any other is invalidDpAddress (1)
    without a connection. An
    eimTransactionId naming no download order is invalidEimTransactionId (52); a
    transactionId without session is invalidTransactionId, answered without asking the
    SM-DP+. Sessions not used for ``session_timeout`` seconds are dropped.
    """

    def __init__(
        self,
        store: EimStore,
        relay: SmdpRelay | None,
        *,
        default_smdp_address: str | None = None,
        smdp_addresses: Iterable[str] = (),
        session_timeout: float = 3600.0,
        certificate_seen: CertificateSeen | None = None,
    ) -> None:
        self.store = store
        self.relay = relay
        self.default_smdp_address = default_smdp_address
        self.smdp_addresses = tuple(smdp_addresses)
        self.session_timeout = session_timeout
        self._certificate_seen = certificate_seen

    def allowed(self, address: str, order: Order | None = None) -> bool:
        """Whether the eIM may connect to the SM-DP+ at ``address`` (rule of the class)."""
        try:
            wanted = canonical_address(address)
        except AddressError:
            return False
        known = [*self.smdp_addresses]
        if self.default_smdp_address:
            known.append(self.default_smdp_address)
        orders = (
            [order]
            if order is not None
            else self.store.orders(kinds=["download"], states=[OrderState.QUEUED, OrderState.SENT])
        )
        for item in orders:
            if "activationCode" in item.request:
                known.append(activation_code_address(item.request["activationCode"]) or "")
        return any(is_valid_address(a) and canonical_address(a) == wanted for a in known)

    def _expire_sessions(self) -> None:
        limit = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.session_timeout)
        self.store.drop_sessions_before(limit.isoformat(timespec="seconds"))

    def initiate_authentication(self, message: bytes) -> Answer:
        """ESipa.InitiateAuthentication: start a session with the SM-DP+."""
        function = "initiateAuthentication"
        request = decode_message("InitiateAuthenticationRequestEsipa", message)
        info1 = dict(message_parts(message)).get(b"\xbf\x20")
        self._expire_sessions()
        order = None
        if "eimTransactionId" in request:
            eim_tid = bytes(request["eimTransactionId"])
            order = self.store.find_order(None, kinds=["download"], eim_transaction_id=eim_tid)
            if order is None:
                failure = FunctionFailed("8.10.1", "3.9", "eimTransactionId names no download")
                error = ("initiateAuthenticationErrorEsipa", 52)  # invalidEimTransactionId
                return Answer(schema.encode(_ERROR_TYPES[function][0], error), failure)
        address = request.get("smdpAddress")
        if not address and order is not None and "activationCode" in order.request:
            address = activation_code_address(order.request["activationCode"])
        address = address or self.default_smdp_address
        if not address:
            return esipa_error(function, FunctionFailed("8.8.1", "3.8", "no SM-DP+ address"))
        if not self.allowed(address, order):
            log.warning("InitiateAuthentication for an SM-DP+ not allowed: %.64r", address)
            failure = FunctionFailed("8.8.1", "3.8", "this eIM does not relay to that SM-DP+")
            return esipa_error(function, failure)
        if self.relay is None:
            return esipa_error(function, unreachable("no SM-DP+ relay configured"))
        answer, tid = self.relay.initiate_authentication(
            address, bytes(request["euiccChallenge"]), info1
        )
        if tid is not None:
            self.store.add_session(tid.hex().upper(), address, order.id if order else None)
        return answer

    def _relayed(
        self, function: str, message: bytes, tag: bytes
    ) -> tuple[Session, bytes, bytes, SmdpRelay] | Answer:
        """(session, transactionId, ES10 response TLV with ``tag``, relay) of a request, or
        the error answer when it cannot be relayed."""
        parts = message_parts(message)
        if len(parts) != 2 or parts[0][0] != b"\x80":
            raise MessageError(f"{function}: expected transactionId and one TLV")
        tid = tlv.read_tlv(parts[0][1]).value(parts[0][1])
        response = parts[1][1]
        if tag == b"\xbf\x41":  # [1] IMPLICIT replaced the BF41 of CancelSessionResponse
            response = tlv.encode_tlv(tag, tlv.read_tlv(response).value(response))
        session = self.store.session(tid.hex().upper())
        if session is None:
            failure = FunctionFailed("8.10.1", "3.9", "transactionId unknown to this eIM")
            return esipa_error(function, failure)
        if self.relay is None:
            return esipa_error(function, unreachable("no SM-DP+ relay configured"))
        if is_compact(tag, response):
            failure = FunctionFailed("1.3.1", "2.1", "compact ES10 forms cannot be relayed")
            return esipa_error(function, failure)
        return session, tid, response, self.relay

    def authenticate_client(self, message: bytes) -> Answer:
        """ESipa.AuthenticateClient; the session learns its EID (and download order)."""
        decode_message("AuthenticateClientRequestEsipa", message)
        relayed = self._relayed("authenticateClient", message, b"\xbf\x38")
        if isinstance(relayed, Answer):
            return relayed
        session, tid, response, relay = relayed
        answer = relay.authenticate_client(session.smdp_address, tid, response)
        state = "ended" if answer.failure else "authenticated"
        self.store.update_session(session.transaction_id, state=state)
        if answer.failure is None:
            # The SM-DP+ verified euiccSignature1 with the certificate: the session is that
            # eUICC's (a certificate alone proves nothing, anyone may copy it).
            self._identify(session, response)
        return answer

    def _identify(self, session: Session, response: bytes) -> None:
        """The EID of an authenticateResponseOk (``A0 {30, 5F37, 30 euicc, 30 eum}``)."""
        try:
            ok = message_parts(response)
            if ok[0][0] != b"\xa0":
                return
            items = message_parts(ok[0][1])
            euicc_der, eum_der = items[2][1], items[3][1]
            eid = pki.subject_serial_number(pki.load_certificate(euicc_der))
        except (MessageError, IndexError, ValueError, pki.CertificateError):
            return
        if eid is None or self.store.euicc(eid) is None:
            return
        if self._certificate_seen is not None and not self._certificate_seen(
            eid, euicc_der, eum_der
        ):
            return  # the chain does not verify, or it is not the EID's
        order_id = session.order_id
        owner = self.store.order(order_id) if order_id is not None else None
        if owner is not None and owner.eid != eid:
            order_id = None  # the eimTransactionId named another eUICC's order
        if order_id is None:
            order = self.store.find_order(eid, kinds=["download"], states=[OrderState.SENT])
            order_id = order.id if order else None
        self.store.update_session(session.transaction_id, eid=eid, order_id=order_id)

    def get_bound_profile_package(self, message: bytes) -> Answer:
        """ESipa.GetBoundProfilePackage."""
        decode_message("GetBoundProfilePackageRequestEsipa", message)
        relayed = self._relayed("getBoundProfilePackage", message, b"\xbf\x21")
        if isinstance(relayed, Answer):
            return relayed
        session, tid, response, relay = relayed
        answer = relay.get_bound_profile_package(session.smdp_address, tid, response)
        self.store.update_session(session.transaction_id, state="bound")
        return answer

    def cancel_session(self, message: bytes) -> Answer:
        """ESipa.CancelSession (the ``A1`` becomes the ES10b ``BF41`` again for ES9+)."""
        decode_message("CancelSessionRequestEsipa", message)
        relayed = self._relayed("cancelSession", message, b"\xbf\x41")
        if isinstance(relayed, Answer):
            return relayed
        session, tid, response, relay = relayed
        answer = relay.cancel_session(session.smdp_address, tid, response)
        self.store.update_session(session.transaction_id, state="ended")
        return answer
