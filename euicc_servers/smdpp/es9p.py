"""ES9+ protocol core of the SM-DP+: the five functions on bytes, no HTTP and no JSON.

Each function of :class:`SmdpCore` takes the request fields as keyword arguments named after
the ES9+ fields (``transaction_id``, ``authenticate_server_response``, ...) holding the raw
bytes (ASN.1 objects as complete TLVs, euiccChallenge as its 16 bytes) and returns a dict of
the response fields under their ES9+ names, or raises :class:`FunctionFailed` with the
statusCodeData. :mod:`euicc_servers.smdpp.app` is the JSON binding around it. Signatures are
checked over the bytes as received, never over a re-encoding.

Session rules (one session per transactionId, in memory, forgotten after ``session_timeout``
seconds without a request, then 8.10.1/3.9 like any unknown transactionId):

=====================  =======================  ==============================================
function               needs session phase      leaves
=====================  =======================  ==============================================
initiateAuthentication (none)                   INITIATED
authenticateClient     INITIATED                AUTHENTICATED; REFUSED when the eUICC was
                                                authenticated but the order was refused
                                                (only cancelSession is left); an
                                                authentication failure ends the session
getBoundProfilePackage AUTHENTICATED, BOUND     BOUND (a repeat with the same otPK returns the
                                                same BPP); a wrong confirmation code keeps
                                                AUTHENTICATED
handleNotification     any or none              session ended (ProfileInstallationResult)
cancelSession          any with a known eUICC   session ended
=====================  =======================  ==============================================

Choices where the reference leaves room:

* serverSigned1.serverAddress echoes the smdpAddress the client sent (it matched the
  configured address case-insensitively), so clients comparing byte for byte succeed.
* The CI is the first one in euiccCiPKIdListForSigning that is also in ...ForVerification and
  under which the server holds DPauth/DPpb (8.8.2/3.1 if none; 8.8.4/3.7 when the server
  trusts such a CI but has no DPauth under it). SVN below 2.0.0 is 8.8.3/3.1.
* The eUICC chain must end at the CI chosen for the session (else 8.11.1/3.9).
* An empty or absent matchingId selects the oldest released order pinned to the EID (default
  SM-DP+ flow); none is 8.2.5/4.3. Unknown or already installed matchingId: 8.2.6/3.8;
  failed or cancelled (waiting for the operator to release it again): 8.2/1.2.
* Retry of a delivered BPP (order *downloaded*, same EID): smdpSigned2 carries bppEuiccOtpk;
  if the eUICC answers with that otPK, the BPP is the earlier one with a new ``BF23``
  (new transactionId, same otPK.DP, re-signed), its segments unchanged. The earlier BPP is
  kept in memory only: after a restart the profile is bound afresh.
* A wrong confirmation code counts; the attempt that reaches ``max_cc_attempts`` answers
  8.2.7/6.4 and fails the order. A missing hashCc (8.2.7/2.2) does not count.
* A value that is not the expected ASN.1 object is 1.3.1/2.1. An eUICC error answer
  (AuthenticateServer, PrepareDownload or CancelSession error) forwarded by the client is
  8.1/6.1.
* handleNotification never fails: notifications that do not verify or match nothing are
  logged and dropped.

The pieces, each in its own module (the public names are importable from here as well):
:mod:`.received` (:class:`FunctionFailed`, reading request values as received),
:mod:`.sessions` (:class:`Session`, :class:`SessionStore`), :mod:`.binding` (confirmation
codes, binding BPPs and keeping them for a retry) and :mod:`.notifications` (what
handleNotification does with each kind of notification).
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from euicc_protocol import crypto, pki, schema, tlv

from ..common.auth import OperatorAuth
from .binding import BppBinding, SmdpBinding
from .config import DpCredentials, SmdpConfig
from .notifications import SmdpNotifications
from .orders import (
    CANCEL_FINAL_REASONS,
    Order,
    OrderError,
    OrderEvent,
    OrderState,
    OrderStore,
    ProfileSource,
    build_store_metadata,
)
from .received import (
    SIG,
    FunctionFailed,
    children,
    decode_as,
    ec_public_key,
    euicc_verification,
    expect_tags,
    hex_upper,
    invalid,
    outer_tlv,
    single_choice,
    unknown_transaction,
    verifies,
)
from .sessions import Phase, Session, SessionStore

__all__ = ["FunctionFailed", "Phase", "Session", "SessionStore", "SmdpCore", "address_matches"]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _split_address(address: str) -> tuple[str, int | None]:
    address = address.strip().lower()
    host, sep, port = address.rpartition(":")
    if sep and host and ":" not in host and port.isdigit():
        return host, int(port)
    return address, None


def address_matches(requested: str, configured: str) -> bool:
    """SM-DP+ address comparison: hosts case-insensitively; ports only when both name one."""
    host_a, port_a = _split_address(requested)
    host_b, port_b = _split_address(configured)
    return host_a == host_b and (port_a is None or port_b is None or port_a == port_b)


def _serialised(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run an ES9+ function under the core's lock, after expiring timed-out sessions."""

    @functools.wraps(method)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        core = args[0]
        assert isinstance(core, SmdpCore)
        with core._lock:
            core._expire_sessions()
            return method(*args, **kwargs)

    return run


# --------------------------------------------------------------------------- the core


class SmdpCore(SmdpBinding, SmdpNotifications):
    """The SM-DP+ side of ES9+ over a configuration and an order store.

    ``clock`` (monotonic seconds) drives session timeouts, ``wall_clock`` the certificate
    validity checks, ``random_bytes`` transactionIds and challenges; all injectable for tests.
    Thread-safe: one function runs at a time. :attr:`admin_token` is the operator API's token
    (made at first start in the order store's directory when the configuration gives none).
    """

    def __init__(
        self,
        config: SmdpConfig,
        orders: OrderStore | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.orders = orders if orders is not None else OrderStore()
        self.sessions = SessionStore(config.session_timeout, clock)
        self._wall_clock = wall_clock
        self._random = random_bytes
        self._lock = threading.RLock()
        self._bindings: dict[str, BppBinding] = {}
        self.auth = OperatorAuth.resolve(
            config.admin_token,
            open_api=config.open_operator_api,
            state_dir=self.orders.directory,
        )

    @property
    def admin_token(self) -> str | None:
        """The operator API token (``None`` only when the API was opened on purpose)."""
        return self.auth.token

    def _expire_sessions(self) -> None:
        for session in self.sessions.pop_expired():
            log.info("session %s timed out", hex_upper(session.transaction_id))
            self._release_for(session, OrderEvent.EXPIRE)

    def _release_for(self, session: Session, event: OrderEvent) -> None:
        """Apply ``event`` to the order ``session`` works on, if it still owns the order."""
        if session.matching_id is None:
            return
        order = self.orders.get(session.matching_id)
        if order is None or order.transaction_id != hex_upper(session.transaction_id):
            return
        if self.orders.can(order.matching_id, event):
            self.orders.transition(order.matching_id, event)

    def _session(self, transaction_id: bytes, *phases: Phase) -> Session:
        session = self.sessions.get(transaction_id)
        if session is None:
            raise unknown_transaction()
        if phases and session.phase not in phases:
            raise unknown_transaction(
                f"transactionId is in phase {session.phase.value}, not valid for this function"
            )
        return session

    # -- initiateAuthentication ------------------------------------------------------

    @_serialised
    def initiate_authentication(
        self, *, euicc_challenge: bytes, euicc_info1: bytes, smdp_address: str
    ) -> dict[str, bytes]:
        """ES9+.InitiateAuthentication (SGP.22 §5.6.1)."""
        if len(euicc_challenge) != 16:
            raise invalid("euiccChallenge", f"{len(euicc_challenge)} bytes, expected 16")
        outer_tlv(euicc_info1, b"\xbf\x20", "euiccInfo1")
        info1 = decode_as(("EUICCInfo1",), euicc_info1, "euiccInfo1")
        address = smdp_address.strip()
        if not address_matches(address, self.config.address):
            raise FunctionFailed("8.8.1", "3.8", f"SM-DP+ address {address!r} refused")
        svn = bytes(info1["svn"])
        if len(svn) != 3:
            raise invalid("euiccInfo1", "svn is not 3 bytes")
        if svn[0] < 2:
            raise FunctionFailed("8.8.3", "3.1", f"eUICC SVN {'.'.join(map(str, svn))} unsupported")
        credentials = self._choose_ci(info1)

        transaction_id = self._random(16)
        server_challenge = self._random(16)
        signed1 = schema.encode(
            "ServerSigned1",
            {
                "transactionId": transaction_id,
                "euiccChallenge": euicc_challenge,
                "serverAddress": address,
                "serverChallenge": server_challenge,
            },
        )
        signature1 = crypto.sign_raw(credentials.dp_auth.key, signed1)
        self.sessions.add(
            Session(transaction_id, server_challenge, credentials, touched=self.sessions.now())
        )
        log.info(
            "session %s started (CI %s)", hex_upper(transaction_id), hex_upper(credentials.ci_ski)
        )
        return {
            "transactionId": transaction_id,
            "serverSigned1": signed1,
            "serverSignature1": tlv.encode_tlv(SIG, signature1),
            "euiccCiPKIdToBeUsed": tlv.encode_tlv(b"\x04", credentials.ci_ski),
            "serverCertificate": credentials.dp_auth.cert_der,
        }

    def _choose_ci(self, info1: dict[str, Any]) -> DpCredentials:
        verification = [bytes(k) for k in info1["euiccCiPKIdListForVerification"]]
        usable = [bytes(k) for k in info1["euiccCiPKIdListForSigning"] if k in verification]
        for ski in usable:
            credentials = self.config.credentials_for(ski)
            if credentials is not None:
                return credentials
        if any(ski in self.config.trusted_ci_keys for ski in usable):
            raise FunctionFailed(
                "8.8.4", "3.7", "no DPauth certificate under a CI the eUICC can verify"
            )
        raise FunctionFailed(
            "8.8.2", "3.1", "none of the proposed CI public key identifiers is supported"
        )

    # -- authenticateClient ----------------------------------------------------------

    @_serialised
    def authenticate_client(
        self, *, transaction_id: bytes, authenticate_server_response: bytes
    ) -> dict[str, bytes]:
        """ES9+.AuthenticateClient (SGP.22 §5.6.3)."""
        session = self._session(transaction_id, Phase.INITIATED)
        try:
            signed1, signature1_tlv, euicc_cert = self._authenticate_euicc(
                session, authenticate_server_response
            )
        except FunctionFailed:
            # Nothing about this client can be trusted: end the session.
            self.sessions.drop(transaction_id)
            raise
        try:
            return self._bind_order(session, signed1, signature1_tlv, euicc_cert)
        except FunctionFailed:
            # The eUICC is authenticated; it may still cancel the session properly.
            session.phase = Phase.REFUSED
            raise

    def _authenticate_euicc(
        self, session: Session, raw: bytes
    ) -> tuple[dict[str, Any], bytes, x509.Certificate]:
        name = "authenticateServerResponse"
        tag, choice = single_choice(raw, b"\xbf\x38", name)
        value = decode_as(
            ("AuthenticateServerResponse", "SGP32-AuthenticateServerResponse"), raw, name
        )
        if tag == b"\xa1":
            code = value[1].get("authenticateErrorCode")
            raise euicc_verification(f"the eUICC refused AuthenticateServer (error {code})")
        if tag != b"\xa0":
            raise invalid(name, "only authenticateResponseOk is accepted on ES9+")
        signed1_raw, signature1_tlv, euicc_der, eum_der = expect_tags(
            children(choice, name), [b"\x30", SIG, b"\x30", b"\x30"], name
        )
        ok = value[1]
        try:
            euicc_cert = pki.load_certificate(euicc_der)
        except (pki.CertificateError, ValueError) as exc:
            raise FunctionFailed("8.1.3", "6.1", f"eUICC certificate: {exc}") from None
        try:
            eum_cert = pki.load_certificate(eum_der)
        except (pki.CertificateError, ValueError) as exc:
            raise FunctionFailed("8.1.2", "6.1", f"EUM certificate: {exc}") from None

        ci = session.credentials
        at = self._wall_clock() if self.config.check_validity else None
        try:
            eid = pki.check_euicc_chain(euicc_cert, eum_cert, {ci.ci_ski: ci.ci_public_key}, at=at)
        except pki.UnknownCi as exc:
            raise FunctionFailed("8.11.1", "3.9", f"not under the session's CI: {exc}") from None
        except pki.EidNotPermitted as exc:
            raise FunctionFailed("8.1.4", "6.1", str(exc)) from None
        except pki.CertificateError as exc:
            subject = "8.1.2" if exc.which == "EUM" else "8.1.3"
            reason = "6.3" if isinstance(exc, pki.CertificateExpired) else "6.1"
            raise FunctionFailed(subject, reason, str(exc)) from None

        if not verifies(ec_public_key(euicc_cert), ok["euiccSignature1"], signed1_raw):
            raise euicc_verification("euiccSignature1 does not verify")
        signed1 = ok["euiccSigned1"]
        if signed1["transactionId"] != session.transaction_id:
            raise unknown_transaction("euiccSigned1 names another transactionId")
        if not hmac.compare_digest(signed1["serverChallenge"], session.server_challenge):
            raise euicc_verification("serverChallenge does not match")
        session.eid = eid
        session.euicc_key = ec_public_key(euicc_cert)
        return signed1, signature1_tlv, euicc_cert

    def _find_order(self, eid: str, matching_id: str | None) -> Order:
        if not matching_id:
            order = self.orders.default_for_eid(eid)
            if order is None:
                raise FunctionFailed("8.2.5", "4.3", "no profile pending for this eUICC")
            return order
        order = self.orders.get(matching_id)
        if order is None:
            raise FunctionFailed("8.2.6", "3.8", "matchingId refused")
        if (order.eid or order.bound_eid or eid) != eid:
            raise FunctionFailed("8.1.1", "3.8", "the order is for another EID")
        if order.state is OrderState.INSTALLED:
            raise FunctionFailed("8.2.6", "3.8", "matchingId already used")
        if order.state in (OrderState.FAILED, OrderState.CANCELLED):
            raise FunctionFailed("8.2", "1.2", f"profile not released (order {order.state.value})")
        return order

    def _bind_order(
        self,
        session: Session,
        signed1: dict[str, Any],
        signature1_tlv: bytes,
        euicc_cert: x509.Certificate,
    ) -> dict[str, bytes]:
        assert session.eid is not None
        kind, ctx = signed1["ctxParams1"]
        matching_id = ctx.get("matchingId") if kind == "ctxParamsForCommonAuthentication" else None
        order = self._find_order(session.eid, matching_id)
        try:
            source = ProfileSource.read(order.profile_path)
        except OrderError as exc:
            log.error("order %s: %s", order.matching_id, exc)
            raise FunctionFailed(
                "8.2.1", "3.9", "the profile of this order is unavailable"
            ) from None

        previous = order.transaction_id
        if previous is not None and previous != hex_upper(session.transaction_id):
            # The device started over: the earlier session no longer owns the order.
            self.sessions.drop(bytes.fromhex(previous))

        metadata = build_store_metadata(
            order, source.package, self.config.address, self.config.default_service_provider
        )
        signed2_value: dict[str, Any] = {
            "transactionId": session.transaction_id,
            "ccRequiredFlag": order.cc_required,
        }
        binding = self._bindings.get(order.matching_id)
        if order.state is OrderState.DOWNLOADED and self._reusable(binding, session):
            assert binding is not None
            signed2_value["bppEuiccOtpk"] = binding.euicc_otpk
        signed2 = schema.encode("SmdpSigned2", signed2_value)
        signature2 = crypto.sign_raw(session.credentials.dp_pb.key, signed2 + signature1_tlv)
        session.smdp_signature2 = tlv.encode_tlv(SIG, signature2)

        self.orders.transition(
            order.matching_id,
            OrderEvent.START,
            bound_eid=session.eid,
            transaction_id=hex_upper(session.transaction_id),
            euicc_certificate=euicc_cert.public_bytes(Encoding.DER),
        )
        session.phase = Phase.AUTHENTICATED
        session.matching_id = order.matching_id
        session.store_metadata = metadata
        session.source = source
        log.info(
            "session %s: EID %s, order %s",
            hex_upper(session.transaction_id),
            session.eid,
            order.matching_id,
        )
        return {
            "transactionId": session.transaction_id,
            "profileMetadata": metadata,
            "smdpSigned2": signed2,
            "smdpSignature2": session.smdp_signature2,
            "smdpCertificate": session.credentials.dp_pb.cert_der,
        }

    # -- getBoundProfilePackage -------------------------------------------------------

    @_serialised
    def get_bound_profile_package(
        self, *, transaction_id: bytes, prepare_download_response: bytes
    ) -> dict[str, bytes]:
        """ES9+.GetBoundProfilePackage (SGP.22 §5.6.2)."""
        session = self._session(transaction_id, Phase.AUTHENTICATED, Phase.BOUND)
        signed2_raw, signed2, signature2 = self._parse_prepare_download(
            session, prepare_download_response
        )
        assert session.euicc_key is not None and session.matching_id is not None
        if not verifies(session.euicc_key, signature2, signed2_raw + session.smdp_signature2):
            raise euicc_verification("euiccSignature2 does not verify")
        if signed2["transactionId"] != transaction_id:
            raise unknown_transaction("euiccSigned2 names another transactionId")
        order = self.orders.get(session.matching_id)
        if order is None or order.transaction_id != hex_upper(transaction_id):
            raise FunctionFailed("8.2.6", "3.8", "the order of this session is gone")
        if order.cc_required:
            self._check_confirmation_code(session, order, signed2.get("hashCc"))

        euicc_otpk = bytes(signed2["euiccOtpk"])
        try:
            crypto.public_key_from_point(session.credentials.curve, euicc_otpk)
        except crypto.CryptoError as exc:
            raise euicc_verification(f"euiccOtpk: {exc}") from None
        if session.bpp is None or session.euicc_otpk != euicc_otpk:
            session.bpp = self._bind(session, order, euicc_otpk)
            session.euicc_otpk = euicc_otpk
        session.phase = Phase.BOUND
        self.orders.transition(order.matching_id, OrderEvent.BPP, downloads=order.downloads + 1)
        return {"transactionId": transaction_id, "boundProfilePackage": session.bpp}

    def _parse_prepare_download(
        self, session: Session, raw: bytes
    ) -> tuple[bytes, dict[str, Any], bytes]:
        name = "prepareDownloadResponse"
        tag, choice = single_choice(raw, b"\xbf\x21", name)
        value = decode_as(("SGP32-PrepareDownloadResponse",), raw, name)
        if tag == b"\xa1":
            code = value[1].get("downloadErrorCode")
            # The eUICC dropped its session: so does the server, and the order is free again.
            self.sessions.drop(session.transaction_id)
            self._release_for(session, OrderEvent.EXPIRE)
            raise euicc_verification(f"the eUICC refused PrepareDownload (error {code})")
        if tag != b"\xa0":
            raise invalid(name, "only downloadResponseOk is accepted on ES9+")
        signed2_raw, _ = expect_tags(children(choice, name), [b"\x30", SIG], name)
        return signed2_raw, value[1]["euiccSigned2"], value[1]["euiccSignature2"]

    # -- handleNotification -----------------------------------------------------------

    @_serialised
    def handle_notification(self, *, pending_notification: bytes) -> None:
        """ES9+.HandleNotification (SGP.22 §5.6.4): verify and record; never fails."""
        try:
            if pending_notification[:2] == b"\xbf\x37":
                self._installation_result(pending_notification)
            elif pending_notification[:1] == b"\x30":
                self._other_notification(pending_notification)
            else:
                log.warning("unsupported notification %s", pending_notification[:2].hex())
        except FunctionFailed as exc:
            log.warning("notification dropped: %s", exc.message)

    # -- cancelSession ----------------------------------------------------------------

    @_serialised
    def cancel_session(
        self, *, transaction_id: bytes, cancel_session_response: bytes
    ) -> dict[str, bytes]:
        """ES9+.CancelSession (SGP.22 §5.6.5)."""
        session = self._session(transaction_id)
        name = "cancelSessionResponse"
        raw = cancel_session_response
        tag, choice = single_choice(raw, b"\xbf\x41", name)
        value = decode_as(("CancelSessionResponse",), raw, name)
        if tag != b"\xa0":
            raise euicc_verification(f"the eUICC refused CancelSession (error {value[1]})")
        signed_raw, _ = expect_tags(children(choice, name), [b"\x30", SIG], name)
        if session.euicc_key is None:
            raise euicc_verification("no authenticated eUICC in this session to verify with")
        ok = value[1]
        if not verifies(session.euicc_key, ok["euiccCancelSessionSignature"], signed_raw):
            raise euicc_verification("euiccCancelSessionSignature does not verify")
        signed = ok["euiccCancelSessionSigned"]
        if signed["transactionId"] != transaction_id:
            raise unknown_transaction("euiccCancelSessionSigned names another transactionId")
        if signed["smdpOid"] != session.credentials.auth_oid:
            raise FunctionFailed("8.8", "3.1", f"SM-DP+ OID {signed['smdpOid']} is not ours")
        reason = signed["reason"]
        self.sessions.drop(transaction_id)
        if session.matching_id is not None:
            self._bindings.pop(session.matching_id, None)  # the eUICC dropped otSK.EUICC
        final = reason in CANCEL_FINAL_REASONS
        self._release_for(session, OrderEvent.CANCEL_FINAL if final else OrderEvent.CANCEL_RETRY)
        log.info("session %s cancelled, reason %s", hex_upper(transaction_id), reason)
        return {}
