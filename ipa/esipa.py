"""ESipa client (IPAd ↔ eIM), SGP.32 v1.2 and v1.0.1, both bindings (SGP.32 v1.0.1 §6.3 and the same
functions in v1.2).

One client speaks one SGP.32 version (``sgp32``, "1.2" by default): the messages that differ
between the versions (see :mod:`ipa.esipa_messages`) are built, and the answers read, in it.

:class:`EsipaClient` runs each ESipa function as a coroutine over the binding its
:class:`EsipaConfig` names. What it is made of lives in four modules (every public name is
importable from here as well):

- :mod:`ipa.esipa_codes` — function names, the error code enums, the exceptions;
- :mod:`ipa.esipa_messages` — the requests, built byte-exact from the card's TLVs;
- :mod:`ipa.esipa_answers` — the answer types, and reading them in either binding;
- :mod:`ipa.esipa_transport` — the two bindings over HTTP(S): :class:`Binding`,
  :class:`EsipaConfig` (TLS trust anchors, pinning, time-outs), the envelope checks.

Every value the eUICC or the SM-DP+ signed is carried as the exact bytes received: requests
are assembled from the raw TLVs (never decoded and re-encoded), and answers are split with a
TLV walk after a schema check.

Errors: :class:`EsipaFunctionError` (the eIM answered the function with an error code or
``Failed``), :class:`EsipaProtocolError` (the answer breaks the binding),
:class:`EsipaConnectionError` / :class:`EsipaTimeout` (unreachable, TLS, time-out).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from euicc_protocol import bindings
from ipa.codes import Asn1Enum
from ipa.esipa_answers import (
    PACKAGE_TAGS,
    AuthenticateClientOkDp,
    AuthenticateClientOkDs,
    EimPackage,
    EimPackageKind,
    GetBoundProfilePackageOk,
    InitiateAuthenticationOk,
    acknowledgements,
    acknowledgements_v1_0,
    answer_alternative,
    authenticate_ok_dp,
    error_code,
    initiate_ok,
    json_b64,
    json_opt_b64,
    json_opt_hex,
    octet_string_value,
    tlv_value,
)
from ipa.esipa_codes import (
    AUTHENTICATE_CLIENT,
    CANCEL_SESSION,
    GET_BOUND_PROFILE_PACKAGE,
    GET_EIM_PACKAGE,
    INITIATE_AUTHENTICATION,
    PROVIDE_EIM_PACKAGE_RESULT,
    AuthenticateClientErrorEsipa,
    CancelSessionErrorEsipa,
    EimPackageErrorCode,
    EimPackageResultErrorCode,
    EsipaConnectionError,
    EsipaError,
    EsipaFunctionError,
    EsipaProtocolError,
    EsipaTimeout,
    GetBoundProfilePackageErrorEsipa,
    InitiateAuthenticationErrorEsipa,
    ProfileDownloadErrorReason,
    ProvideEimPackageResultError,
    StateChangeCause,
    TlsPinMismatch,
)
from ipa.esipa_codes import HANDLE_NOTIFICATION as HANDLE_NOTIFICATION
from ipa.esipa_messages import (
    authenticate_client_request,
    cancel_session_request,
    eid_bytes,
    epr_and_notifications,
    get_bound_profile_package_request,
    get_eim_package_request,
    handle_notification_request,
    initiate_authentication_request,
    package_result_error,
    profile_download_trigger_result,
    provide_eim_package_result,
    tid_bytes,
)
from ipa.esipa_transport import (
    ADMIN_PROTOCOL,
    ASN1_PATH,
    CONTENT_TYPE_ASN1,
    JSON_PATH_PREFIX,
    Binding,
    EsipaConfig,
    EsipaTransport,
)
from ipa.esipa_transport import USER_AGENT as USER_AGENT

__all__ = [
    "ADMIN_PROTOCOL",
    "ASN1_PATH",
    "CONTENT_TYPE_ASN1",
    "JSON_PATH_PREFIX",
    "AuthenticateClientErrorEsipa",
    "AuthenticateClientOkDp",
    "AuthenticateClientOkDs",
    "Binding",
    "CancelSessionErrorEsipa",
    "EimPackage",
    "EimPackageErrorCode",
    "EimPackageKind",
    "EimPackageResultErrorCode",
    "EsipaClient",
    "EsipaConfig",
    "EsipaConnectionError",
    "EsipaError",
    "EsipaFunctionError",
    "EsipaProtocolError",
    "EsipaTimeout",
    "GetBoundProfilePackageErrorEsipa",
    "GetBoundProfilePackageOk",
    "InitiateAuthenticationErrorEsipa",
    "InitiateAuthenticationOk",
    "ProfileDownloadErrorReason",
    "ProvideEimPackageResultError",
    "StateChangeCause",
    "TlsPinMismatch",
    "authenticate_client_request",
    "cancel_session_request",
    "epr_and_notifications",
    "get_bound_profile_package_request",
    "get_eim_package_request",
    "handle_notification_request",
    "initiate_authentication_request",
    "package_result_error",
    "profile_download_trigger_result",
    "provide_eim_package_result",
]


class EsipaClient:
    """ESipa functions against one eIM, as coroutines.

    ``eim`` is the eIM's ``eimFqdn`` (``host[:port]``, reached over HTTPS) or a base URL
    (``https://...``; ``http://...`` for a lab eIM)::

        async with EsipaClient("eim.example.com", EsipaConfig(ca_certificates=anchors)) as eim:
            package = await eim.get_eim_package(eid)
    """

    def __init__(
        self,
        eim: str,
        config: EsipaConfig | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        sgp32: str = "1.2",
    ) -> None:
        if sgp32 not in ("1.0", "1.2"):
            raise ValueError(f"sgp32 must be '1.0' or '1.2', got {sgp32!r}")
        self.config = config if config is not None else EsipaConfig()
        self.sgp32 = str(sgp32)
        self.base_url = self.config.base_url(eim)
        self._http = http if http is not None else self.config.http_client()
        self._owns_http = http is None
        self._transport = EsipaTransport(self.config, self.base_url, self._http, sgp32=self.sgp32)

    def for_version(self, sgp32: str) -> EsipaClient:
        """A client speaking ``sgp32`` to the same eIM over the same HTTP client (this one
        when it already does); the new one does not close the HTTP client."""
        if sgp32 == self.sgp32:
            return self
        return EsipaClient(self.base_url, self.config, http=self._http, sgp32=sgp32)

    @property
    def binding(self) -> Binding:
        """The binding this client speaks."""
        return self.config.binding

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> EsipaClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _asn1_answer(
        self, function: str, message: bytes, *, split: bool = True
    ) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
        """POST ``message`` in the ASN.1 binding; the answer's one alternative (see
        :func:`~ipa.esipa_answers.answer_alternative`)."""
        answer = await self._transport.post_asn1(function, message)
        return answer_alternative(function, answer, split=split)

    # -- eIM packages ----------------------------------------------------------------------

    async def get_eim_package(
        self,
        eid: bytes | str,
        *,
        notify_state_change: bool = False,
        state_change_cause: StateChangeCause | int | None = None,
        rplmn: bytes | None = None,
    ) -> EimPackage | None:
        """ESipa.GetEimPackage: the next package for ``eid``, or None (noEimPackageAvailable).

        Raises:
            EsipaFunctionError: any other eimPackageError (``code`` is an
                :class:`EimPackageErrorCode`) or a JSON ``Failed``.
        """
        fn = GET_EIM_PACKAGE
        message = get_eim_package_request(
            eid,
            notify_state_change=notify_state_change,
            state_change_cause=state_change_cause,
            rplmn=rplmn,
            sgp32=self.sgp32,
        )
        if self.binding is Binding.ASN1:
            tag, raw, _ = await self._asn1_answer(fn, message, split=False)
            if tag == b"\x02":
                return self._no_package(error_code(fn, raw))
            for kind, package_tag in PACKAGE_TAGS.items():
                if tag == package_tag:
                    return EimPackage(kind, raw)
            raise EsipaProtocolError(f"ESipa.{fn}: unexpected alternative {tag.hex()}", function=fn)
        v1_0 = self.sgp32 == "1.0"  # no stateChangeCause: notifyStateChange says it
        request = _json_request(
            fn,
            {
                "eidValue": eid_bytes(eid),
                "notifyStateChange": (
                    True
                    if notify_state_change or (v1_0 and state_change_cause is not None)
                    else None
                ),
                "stateChangeCause": (
                    None if state_change_cause is None or v1_0 else int(state_change_cause)
                ),
                "rPlmn": rplmn,
            },
        )
        body = await self._transport.post_json(fn, request)
        present = [k for k in EimPackageKind if body.get(k.value) is not None]
        error = body.get("eimPackageError")
        if len(present) + (error is not None) != 1:
            raise EsipaProtocolError(
                f"ESipa.{fn}: expected exactly one package or eimPackageError", function=fn
            )
        if error is not None:
            if isinstance(error, bool) or not isinstance(error, int):
                raise EsipaProtocolError(f"ESipa.{fn}: eimPackageError is not an integer")
            return self._no_package(EimPackageErrorCode(error))
        kind = present[0]
        return EimPackage(kind, json_b64(body, fn, kind.value, PACKAGE_TAGS[kind]))

    @staticmethod
    def _no_package(code: Asn1Enum) -> None:
        if code == EimPackageErrorCode.NO_EIM_PACKAGE_AVAILABLE:
            return None
        raise EsipaFunctionError(GET_EIM_PACKAGE, code=code)

    async def provide_eim_package_result(
        self, result: bytes, *, eid: bytes | str | None = None
    ) -> tuple[int, ...]:
        """ESipa.ProvideEimPackageResult with one EimPackageResult alternative (see
        :func:`provide_eim_package_result`); returns the eimAcknowledgements (seqNumbers the
        eIM acknowledges; empty for emptyResponse).

        Raises:
            EsipaFunctionError: provideEimPackageResultError (or JSON ``Failed``).
        """
        fn = PROVIDE_EIM_PACKAGE_RESULT
        message = provide_eim_package_result(result, eid, sgp32=self.sgp32)
        if self.binding is Binding.ASN1 and self.sgp32 == "1.0":
            # v1.0.1: SEQUENCE { eimAcknowledgements OPTIONAL }, "BF50 00" when empty.
            answer = await self._transport.post_asn1(fn, message)
            return acknowledgements_v1_0(fn, answer)
        if self.binding is Binding.ASN1:
            answer, value = await self._transport.post_asn1_decoded(fn, message)
            if value is not None and value[0] == "eimAcknowledgements":
                # the seqNumbers as the one strict decode of the answer read them
                return tuple(value[1])
            tag, raw, _ = answer_alternative(fn, answer)
            if tag == b"\x02":
                raise EsipaFunctionError(fn, code=error_code(fn, raw))
            return acknowledgements(fn, raw) if tag == b"\xbf\x53" else ()
        # v1.0.1 has no eidValue here
        eid_value = None if eid is None or self.sgp32 == "1.0" else eid_bytes(eid)
        request = _json_request(fn, {"eimPackageResult": result, "eidValue": eid_value})
        body = await self._transport.post_json(fn, request)
        error = body.get("provideEimPackageResultError")
        if isinstance(error, int) and not isinstance(error, bool):
            raise EsipaFunctionError(fn, code=ProvideEimPackageResultError(error))
        acks = body.get("eimAcknowledgements")
        if acks is None:
            return ()
        if isinstance(acks, list) and all(isinstance(a, int) for a in acks):
            return tuple(acks)  # tolerated: a plain JSON list of seqNumbers
        return acknowledgements(fn, json_b64(body, fn, "eimAcknowledgements", b"\xbf\x53"))

    async def handle_notification(self, notification: bytes) -> None:
        """ESipa.HandleNotification with a PendingNotification exactly as the card returned it
        (``BF37``, ``30``, or a compact ``A0``/``A1``), or with a ProvideEimPackageResult
        (``BF50``, e.g. from :func:`provide_eim_package_result`)."""
        fn = HANDLE_NOTIFICATION
        message = handle_notification_request(notification, sgp32=self.sgp32)
        if self.binding is Binding.ASN1:
            await self._transport.post_asn1(fn, message, empty_ok=True)
            return
        key = (
            "provideEimPackageResult" if notification[:2] == b"\xbf\x50" else "pendingNotification"
        )
        await self._transport.post_json(fn, _json_request(fn, {key: notification}), empty_ok=True)

    # -- indirect profile download ---------------------------------------------------------

    async def initiate_authentication(
        self,
        euicc_challenge: bytes,
        *,
        smdp_address: str | None = None,
        euicc_info1: bytes | None = None,
        eim_transaction_id: bytes | None = None,
    ) -> InitiateAuthenticationOk:
        """ESipa.InitiateAuthentication: the eIM relays ES9+ initiateAuthentication."""
        fn = INITIATE_AUTHENTICATION
        message = initiate_authentication_request(
            euicc_challenge,
            smdp_address=smdp_address,
            euicc_info1=euicc_info1,
            eim_transaction_id=eim_transaction_id,
            sgp32=self.sgp32,
        )
        if self.binding is Binding.ASN1:
            tag, raw, parts = await self._asn1_answer(fn, message)
            if tag != b"\xa0":
                raise EsipaFunctionError(fn, code=error_code(fn, raw))
            return initiate_ok(fn, parts)
        request = _json_request(
            fn,
            {
                "euiccChallenge": euicc_challenge,
                "euiccInfo1": euicc_info1,
                "smdpAddress": smdp_address,
                "eimTransactionId": None if self.sgp32 == "1.0" else eim_transaction_id,
            },
        )
        body = await self._transport.post_json(fn, request)
        matching_id = body.get("matchingId")
        return InitiateAuthenticationOk(
            transaction_id=json_opt_hex(body, fn, "transactionId"),
            server_signed1=json_b64(body, fn, "serverSigned1", b"\x30"),
            server_signature1=json_b64(body, fn, "serverSignature1", b"\x5f\x37"),
            euicc_ci_pkid_to_be_used=json_b64(body, fn, "euiccCiPKIdentifierToBeUsed", b"\x04"),
            server_certificate=json_b64(body, fn, "serverCertificate", b"\x30"),
            matching_id=matching_id if isinstance(matching_id, str) else None,
            ctx_params1=json_opt_b64(body, fn, "ctxParams1", b"\xa0"),
        )

    async def authenticate_client(
        self, transaction_id: bytes, authenticate_server_response: bytes
    ) -> AuthenticateClientOkDp | AuthenticateClientOkDs:
        """ESipa.AuthenticateClient with the card's ``BF38`` AuthenticateServerResponse."""
        fn = AUTHENTICATE_CLIENT
        message = authenticate_client_request(transaction_id, authenticate_server_response)
        if self.binding is Binding.ASN1:
            tag, raw, parts = await self._asn1_answer(fn, message)
            if tag == b"\xa0":
                return authenticate_ok_dp(fn, parts)
            if tag == b"\xa1":
                by_tag = dict(parts)
                if b"\x80" not in by_tag:
                    raise EsipaProtocolError(f"ESipa.{fn}: no transactionId", function=fn)
                return AuthenticateClientOkDs(tlv_value(by_tag[b"\x80"]), by_tag.get(b"\xbf\x54"))
            raise EsipaFunctionError(fn, code=error_code(fn, raw))
        body = await self._transport.post_json(
            fn,
            _json_request(
                fn,
                {
                    "transactionId": tid_bytes(transaction_id),
                    "authenticateServerResponse": authenticate_server_response,
                },
            ),
        )
        hash_cc = json_opt_b64(body, fn, "hashCc", None)
        return AuthenticateClientOkDp(
            transaction_id=json_opt_hex(body, fn, "transactionId"),
            profile_metadata=json_opt_b64(body, fn, "profileMetadata", b"\xbf\x25"),
            smdp_signed2=json_b64(body, fn, "smdpSigned2", b"\x30"),
            smdp_signature2=json_b64(body, fn, "smdpSignature2", b"\x5f\x37"),
            smdp_certificate=json_b64(body, fn, "smdpCertificate", b"\x30"),
            hash_cc=None if hash_cc is None else octet_string_value(hash_cc),
        )

    async def get_bound_profile_package(
        self, transaction_id: bytes, prepare_download_response: bytes
    ) -> GetBoundProfilePackageOk:
        """ESipa.GetBoundProfilePackage with the card's ``BF21`` PrepareDownloadResponse."""
        fn = GET_BOUND_PROFILE_PACKAGE
        message = get_bound_profile_package_request(transaction_id, prepare_download_response)
        if self.binding is Binding.ASN1:
            tag, raw, parts = await self._asn1_answer(fn, message)
            if tag != b"\xa0":
                raise EsipaFunctionError(fn, code=error_code(fn, raw))
            by_tag = dict(parts)
            if b"\xbf\x36" not in by_tag:
                raise EsipaProtocolError(f"ESipa.{fn}: no boundProfilePackage", function=fn)
            tid = by_tag.get(b"\x80")
            return GetBoundProfilePackageOk(
                None if tid is None else tlv_value(tid), by_tag[b"\xbf\x36"]
            )
        body = await self._transport.post_json(
            fn,
            _json_request(
                fn,
                {
                    "transactionId": tid_bytes(transaction_id),
                    "prepareDownloadResponse": prepare_download_response,
                },
            ),
        )
        return GetBoundProfilePackageOk(
            json_opt_hex(body, fn, "transactionId"),
            json_b64(body, fn, "boundProfilePackage", b"\xbf\x36"),
        )

    async def cancel_session(self, transaction_id: bytes, cancel_session_response: bytes) -> None:
        """ESipa.CancelSession with the card's ``BF41`` CancelSessionResponse."""
        fn = CANCEL_SESSION
        message = cancel_session_request(transaction_id, cancel_session_response)
        if self.binding is Binding.ASN1:
            tag, raw, _ = await self._asn1_answer(fn, message)
            if tag != b"\xa0":
                raise EsipaFunctionError(fn, code=error_code(fn, raw))
            return
        await self._transport.post_json(
            fn,
            _json_request(
                fn,
                {
                    "transactionId": tid_bytes(transaction_id),
                    "cancelSessionResponse": cancel_session_response,
                },
            ),
            empty_ok=True,
        )


def _json_request(function: str, values: dict[str, Any]) -> dict[str, Any]:
    """The JSON request of ESipa ``function`` from raw values (``None``: absent), written with
    the binding the eIM reads it with (:data:`euicc_protocol.bindings.ESIPA`)."""
    return bindings.encode(bindings.ESIPA[function].request, values)
