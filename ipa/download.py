"""The direct profile download: activation code in, installed profile out
(GSMA SGP.22 v2.5 §3.1.3).

Steps, in order (E = ES10 to the card, S = ES9+ to the SM-DP+)::

    E GetEUICCInfo1, GetEUICCChallenge
    S initiateAuthentication          check serverSigned1: serverAddress, euiccChallenge
    E AuthenticateServer              ctxParams1 = matchingId + deviceInfo
    S authenticateClient              -> profileMetadata, smdpSigned2 (ccRequiredFlag)
      consent, confirmation code      hashCc = SHA256(SHA256(CC) ‖ transactionId)
    E PrepareDownload
    S getBoundProfilePackage          BPP metadata must equal profileMetadata
    E LoadBoundProfilePackage         §5.7.6 payloads -> ProfileInstallationResult (BF37)
    S handleNotification(BF37)        then E RemoveNotificationFromList, only if delivered

Failure rules:

* Before AuthenticateServer succeeds the card holds no session to cancel. An error response of
  AuthenticateServer (and of PrepareDownload) is forwarded to the SM-DP+ in the next ES9+
  call, which is how SGP.22 lets the server close its side; the server's answer is ignored.
* After AuthenticateServer and until the card answers the BPP, every failure ends with
  ES10b CancelSession and, when the card signed the cancellation, ES9+ cancelSession. Reasons:

  ================================================  ==========================
  failure                                           CancelSessionReason
  ================================================  ==========================
  consent callback answers False                    endUserRejection (0)
  confirmation code required, none available        postponed (1)
  consent callback answers a reason                 that reason (e.g. 1, 3)
  ES9+ call timed out                               timeout (2)
  BPP metadata differs from profileMetadata         metadataMismatch (4)
  BPP malformed, or the card broke off loading      loadBppExecutionError (5)
  SM-DP+ answered Failed, unreachable, bad answer;  undefinedReason (127)
  card transport failure
  ================================================  ==========================

* Once the card answered the BPP with a ``BF37`` (success or error) there is nothing to cancel:
  the result goes to the SM-DP+ as a notification. A failed installation raises
  :class:`ProfileInstallationFailed` after that delivery.

Every failure raises a :class:`DownloadError` subclass that records the step, the code the card
or the server gave, and what was cancelled where.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from euicc_protocol import schema
from ipa import es10_download as e10
from ipa.activation import ActivationCode, parse_activation_code
from ipa.errors import IpaError
from ipa.es9p import (
    AuthenticateClientOk,
    Es9Config,
    Es9ConnectionError,
    Es9Error,
    Es9PlusClient,
    Es9ProtocolError,
    Es9Timeout,
)
from ipa.es10 import Es10Client
from ipa.es10_download import CancelSessionReason, DeviceInfo, ProfileInstallationResult
from ipa.notifications import NotificationOutcome, deliver_notification
from ipa.types import ProfileInfo

__all__ = [
    "BppLoadFailed",
    "CardCommunicationError",
    "CardRefusedError",
    "ConfirmationCodeCallback",
    "ConfirmationCodeMissing",
    "ConsentCallback",
    "ConsentRefused",
    "DownloadError",
    "DownloadInterrupted",
    "DownloadResult",
    "MetadataMismatch",
    "ProfileInstallationFailed",
    "ProfileMetadata",
    "ServerAuthenticationError",
    "SmdpRefusedError",
    "SmdpUnreachableError",
    "download_profile",
    "download_profile_sync",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Profile metadata as shown to the user: a ProfileInfo built from the StoreMetadataRequest.
ProfileMetadata = ProfileInfo
#: Answers whether the user accepts the profile: True, False (endUserRejection) or a reason.
ConsentCallback = Callable[
    [ProfileMetadata], "bool | CancelSessionReason | Awaitable[bool | CancelSessionReason]"
]
#: Asks the user for the confirmation code; None when there is none.
ConfirmationCodeCallback = Callable[[ProfileMetadata], "str | None | Awaitable[str | None]"]


# -- errors -------------------------------------------------------------------------------------


class DownloadError(IpaError):
    """A download failed. Base class of every error :func:`download_profile` raises.

    Attributes:
        step: the ES10 or ES9+ function (or check) that failed, e.g. ``"authenticateClient"``.
        transaction_id: the session's transactionId once known, else None.
        cancel_reason: the CancelSessionReason used to end the session, None if none was sent.
        cancelled_on_card: ES10b CancelSession succeeded.
        cancelled_on_server: ES9+ cancelSession succeeded.
    """

    default_reason: CancelSessionReason | None = CancelSessionReason.UNDEFINED_REASON

    def __init__(
        self,
        message: str,
        *,
        step: str,
        cancel_reason: CancelSessionReason | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.transaction_id: bytes | None = None
        self.cancel_reason = cancel_reason if cancel_reason is not None else self.default_reason
        self.cancelled_on_card = False
        self.cancelled_on_server = False


class SmdpRefusedError(DownloadError):
    """The SM-DP+ answered ``Failed`` or ``Expired`` (``subject_code``, ``reason_code``,
    ``message``)."""

    def __init__(self, error: Es9Error) -> None:
        super().__init__(str(error), step=error.function)
        self.subject_code = error.subject_code
        self.reason_code = error.reason_code
        self.message = error.message


class SmdpUnreachableError(DownloadError):
    """The SM-DP+ could not be reached, timed out, or answered outside the ES9+ binding."""

    def __init__(self, message: str, *, step: str, timeout: bool = False) -> None:
        reason = CancelSessionReason.TIMEOUT if timeout else CancelSessionReason.UNDEFINED_REASON
        super().__init__(message, step=step, cancel_reason=reason)
        self.timeout = timeout


class ServerAuthenticationError(DownloadError):
    """serverSigned1 does not match this session (wrong serverAddress or euiccChallenge).

    Raised before AuthenticateServer: nothing is sent to the card, and nothing can be cancelled.
    """

    default_reason = None


class CardRefusedError(DownloadError):
    """The card answered AuthenticateServer or PrepareDownload with an error ``code``
    (:class:`~ipa.es10_download.AuthenticateErrorCode` / ``DownloadErrorCode``). The error
    response was forwarded to the SM-DP+ (``forwarded``)."""

    default_reason = None

    def __init__(self, step: str, code: e10.AuthenticateErrorCode | e10.DownloadErrorCode) -> None:
        super().__init__(f"{step} failed: {code.asn1_name} ({int(code)})", step=step)
        self.code = code
        self.forwarded = False


class CardCommunicationError(DownloadError):
    """The link to the card failed during the session (transport, status word, bad answer)."""


class ConsentRefused(DownloadError):
    """The consent callback refused the profile; ``cancel_reason`` is what it answered."""


class ConfirmationCodeMissing(DownloadError):
    """The SM-DP+ requires a confirmation code and none was given (session postponed)."""

    default_reason = CancelSessionReason.POSTPONED


class MetadataMismatch(DownloadError):
    """The BPP's StoreMetadata differs from the profileMetadata of authenticateClient."""

    default_reason = CancelSessionReason.METADATA_MISMATCH


class BppLoadFailed(DownloadError):
    """The BPP could not be split, or the card broke off loading without a result."""

    default_reason = CancelSessionReason.LOAD_BPP_EXECUTION_ERROR


class DownloadInterrupted(DownloadError):
    """Ctrl-C (KeyboardInterrupt) or task cancellation in the middle of a session.

    Never raised: it records what was cancelled, and the interruption itself propagates with
    a note saying so (``KeyboardInterrupt.__notes__``). The session is ended with
    ``postponed``: the user stopped, and the order may be downloaded again later.
    """

    default_reason = CancelSessionReason.POSTPONED


class ProfileInstallationFailed(DownloadError):
    """The card's ProfileInstallationResult reports an error (``bpp_command_id``,
    ``error_reason``); ``result`` is the decoded ``BF37``. Nothing is cancelled: the result
    was sent to the SM-DP+ (``notification_delivered``) and removed when it was taken."""

    default_reason = None

    def __init__(self, result: ProfileInstallationResult) -> None:
        assert result.bpp_command_id is not None and result.error_reason is not None
        super().__init__(
            f"profile installation failed at {result.bpp_command_id.asn1_name}: "
            f"{result.error_reason.asn1_name} ({int(result.error_reason)})",
            step=e10.F_LOAD_BPP,
        )
        self.result = result
        self.bpp_command_id = result.bpp_command_id
        self.error_reason = result.error_reason
        self.notification_delivered = False
        self.notification_removed = False


# -- result -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadResult:
    """A successful download.

    Attributes:
        iccid: the installed profile's ICCID (digits).
        isdp_aid: AID of its ISD-P.
        seq_number: seqNumber of the install notification.
        transaction_id: the session's transactionId.
        smdp_address: the SM-DP+ address used.
        smdp_oid: the SM-DP+ OID the card reported (from CERT.DPpb).
        profile_metadata: the profile's metadata from authenticateClient.
        notification_delivered: the SM-DP+ took the install notification.
        notification_removed: the card removed it afterwards (else it stays pending).
        profile_installation_result: the ``BF37`` as the card signed it.
    """

    iccid: str | None
    isdp_aid: bytes
    seq_number: int
    transaction_id: bytes
    smdp_address: str
    smdp_oid: str
    profile_metadata: ProfileInfo
    notification_delivered: bool
    notification_removed: bool
    profile_installation_result: bytes

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (bytes as upper-case hex)."""
        return {
            "iccid": self.iccid,
            "isdpAid": self.isdp_aid.hex().upper(),
            "seqNumber": self.seq_number,
            "transactionId": self.transaction_id.hex().upper(),
            "smdpAddress": self.smdp_address,
            "smdpOid": self.smdp_oid,
            "profileMetadata": self.profile_metadata.to_json(),
            "notificationDelivered": self.notification_delivered,
            "notificationRemoved": self.notification_removed,
        }


# -- the flow -----------------------------------------------------------------------------------


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass
class _Session:
    """What one download needs to carry from step to step."""

    client: Es10Client
    es9: Es9PlusClient
    ac: ActivationCode
    offload: bool
    transaction_id: bytes = b""
    authenticate_response: bytes = b""  # the card's BF38, for authenticateClient

    async def card(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run an ES10 call: inline, or in a worker thread so a slow reader does not block
        the event loop (``offload_card_io``)."""
        log.info("download: ES10 %s", getattr(function, "__name__", function))
        if self.offload:
            return await asyncio.to_thread(function, *args, **kwargs)
        return function(*args, **kwargs)

    async def server(self, step: str, call: Awaitable[T]) -> T:
        """Await an ES9+ call, turning its errors into DownloadErrors."""
        log.info("download: ES9+ %s to %s", step, self.ac.smdp_address)
        try:
            return await call
        except Es9Error as exc:
            raise SmdpRefusedError(exc) from exc
        except Es9Timeout as exc:
            raise SmdpUnreachableError(str(exc), step=step, timeout=True) from exc
        except (Es9ConnectionError, Es9ProtocolError) as exc:
            raise SmdpUnreachableError(str(exc), step=step) from exc


def _decode_metadata(raw: bytes) -> tuple[ProfileInfo, Any]:
    decoded = schema.decode("SGP32-StoreMetadataRequest", raw)
    return ProfileInfo.from_asn1(decoded), decoded


async def _authenticate(session: _Session, device_info: DeviceInfo) -> None:
    """Steps up to AuthenticateServer; on return the card holds an authenticated session."""
    client, ac = session.client, session.ac
    info1 = await session.card(client.get_euicc_info1)
    challenge = await session.card(client.get_euicc_challenge)
    step = "initiateAuthentication"
    init = await session.server(
        step, session.es9.initiate_authentication(challenge, info1.raw, ac.smdp_address)
    )
    session.transaction_id = init.transaction_id
    try:
        signed1 = schema.decode("ServerSigned1", init.server_signed1)
    except schema.DecodeError as exc:
        raise SmdpUnreachableError(f"{step}: serverSigned1: {exc}", step=step) from None
    # The checks real LPAs make before trusting the server with the card (SGP.22 v2.5 §3.1.3).
    if signed1["serverAddress"].lower() != ac.smdp_address.lower():
        raise ServerAuthenticationError(
            f"serverSigned1.serverAddress is {signed1['serverAddress']!r}, "
            f"but the activation code names {ac.smdp_address!r}",
            step=step,
        )
    if signed1["euiccChallenge"] != challenge:
        raise ServerAuthenticationError(
            "serverSigned1.euiccChallenge is not the card's challenge", step=step
        )
    if signed1["transactionId"] != init.transaction_id:
        raise ServerAuthenticationError(
            "serverSigned1.transactionId differs from the transactionId of the answer", step=step
        )
    auth = await session.card(
        e10.authenticate_server,
        client,
        server_signed1=init.server_signed1,
        server_signature1=init.server_signature1,
        euicc_ci_pkid_to_be_used=init.euicc_ci_pkid_to_be_used,
        server_certificate=init.server_certificate,
        ctx_params1=e10.ctx_params1(ac.matching_id, device_info),
    )
    if auth.error is not None:
        error = CardRefusedError(e10.F_AUTHENTICATE_SERVER, auth.error)
        error.forwarded = await _forward(
            session.es9.authenticate_client(init.transaction_id, auth.raw)
        )
        raise error
    session.authenticate_response = auth.raw


async def _forward(call: Awaitable[Any]) -> bool:
    """Send a card's error response to the SM-DP+; it answers Failed, which is expected."""
    try:
        await call
    except Es9Error as exc:
        log.info("SM-DP+ acknowledged the card's error: %s", exc)
        return True
    except IpaError as exc:
        log.warning("could not forward the card's error to the SM-DP+: %s", exc)
        return False
    return True


async def _after_authentication(
    session: _Session,
    *,
    confirmation_code: str | None,
    ask_confirmation_code: ConfirmationCodeCallback | None,
    consent: ConsentCallback | None,
    check_metadata: bool,
) -> tuple[ProfileInfo, ProfileInstallationResult]:
    """authenticateClient .. LoadBoundProfilePackage; raises DownloadErrors to cancel."""
    client, tid = session.client, session.transaction_id
    step = "authenticateClient"
    auth_ok: AuthenticateClientOk = await session.server(
        step, session.es9.authenticate_client(tid, session.authenticate_response)
    )
    try:
        metadata, metadata_value = _decode_metadata(auth_ok.profile_metadata)
        signed2 = schema.decode("SmdpSigned2", auth_ok.smdp_signed2)
    except schema.DecodeError as exc:
        raise SmdpUnreachableError(f"{step}: {exc}", step=step) from None

    if consent is not None:
        answer = await _maybe_await(consent(metadata))
        # A reason is tested first: endUserRejection is 0, which is falsy.
        reason: CancelSessionReason | None = None
        if isinstance(answer, CancelSessionReason):
            reason = answer
        elif not answer:
            reason = CancelSessionReason.END_USER_REJECTION
        if reason is not None:
            raise ConsentRefused(
                f"the profile was refused ({reason.asn1_name})",
                step="consent",
                cancel_reason=reason,
            )

    hash_cc = None
    if signed2["ccRequiredFlag"]:
        code = confirmation_code
        if code is None and ask_confirmation_code is not None:
            code = await _maybe_await(ask_confirmation_code(metadata))
        if not code:
            raise ConfirmationCodeMissing(
                "the SM-DP+ requires a confirmation code and none was given",
                step="confirmationCode",
            )
        hash_cc = e10.confirmation_code_hash(code, tid)
    elif session.ac.confirmation_code_required:
        log.info("activation code asks for a confirmation code; the SM-DP+ does not")

    prepared = await session.card(
        e10.prepare_download,
        client,
        smdp_signed2=auth_ok.smdp_signed2,
        smdp_signature2=auth_ok.smdp_signature2,
        smdp_certificate=auth_ok.smdp_certificate,
        hash_cc=hash_cc,
    )
    step = "getBoundProfilePackage"
    if prepared.error is not None:
        error = CardRefusedError(e10.F_PREPARE_DOWNLOAD, prepared.error)
        error.forwarded = await _forward(session.es9.get_bound_profile_package(tid, prepared.raw))
        raise error
    bpp = await session.server(step, session.es9.get_bound_profile_package(tid, prepared.raw))

    try:
        payloads = e10.split_bpp(bpp.bound_profile_package)
    except ValueError as exc:
        raise BppLoadFailed(f"unusable BPP: {exc}", step=step) from exc
    if check_metadata:
        _check_metadata(auth_ok.profile_metadata, metadata_value, e10.bpp_store_metadata(payloads))

    try:
        result = await session.card(e10.load_bound_profile_package, client, payloads)
    except e10.BppLoadError as exc:
        raise BppLoadFailed(str(exc), step=e10.F_LOAD_BPP) from exc
    return metadata, result


def _check_metadata(announced_raw: bytes, announced: Any, in_bpp: bytes) -> None:
    if in_bpp == announced_raw:
        return
    try:
        same = schema.decode("SGP32-StoreMetadataRequest", in_bpp) == announced
    except schema.DecodeError:
        same = False
    if not same:
        raise MetadataMismatch(
            "the BPP's StoreMetadata differs from the profileMetadata of authenticateClient",
            step="getBoundProfilePackage",
        )


async def _cancel(session: _Session, error: DownloadError) -> None:
    """End the session on the card and, when the card signed that, on the SM-DP+ too.

    Best effort: a failure here is logged and recorded on ``error``, never raised over it.
    """
    reason = error.cancel_reason
    if reason is None or not session.transaction_id:
        return
    tid = session.transaction_id
    try:
        cancelled = await session.card(e10.cancel_session, session.client, tid, reason)
    except IpaError as exc:
        log.warning("ES10b.CancelSession failed: %s", exc)
        return
    if cancelled.error is not None:
        log.warning("ES10b.CancelSession refused: %s", cancelled.error.asn1_name)
        return
    error.cancelled_on_card = True
    try:
        await session.es9.cancel_session(tid, cancelled.raw)
    except IpaError as exc:
        log.warning("ES9+.cancelSession failed: %s", exc)
        return
    error.cancelled_on_server = True


async def download_profile(
    client: Es10Client,
    activation_code: ActivationCode | str,
    *,
    confirmation_code: str | None = None,
    ask_confirmation_code: ConfirmationCodeCallback | None = None,
    consent: ConsentCallback | None = None,
    device_info: DeviceInfo | None = None,
    config: Es9Config | None = None,
    smdp_url: str | None = None,
    es9: Es9PlusClient | None = None,
    check_metadata: bool = True,
    offload_card_io: bool = False,
    deliver_install_result: bool = True,
) -> DownloadResult:
    """Download and install the profile an activation code points to (see the module doc).

    Args:
        client: an open ES10 client to the eUICC.
        activation_code: ``LPA:1$...`` text or a parsed :class:`ActivationCode`.
        confirmation_code: the code, when the SM-DP+ asks for one.
        ask_confirmation_code: called with the profile metadata when a code is needed and
            ``confirmation_code`` is None; returns the code or None (sync or async).
        consent: called with the profile metadata before PrepareDownload; True proceeds, False
            cancels with endUserRejection, a CancelSessionReason cancels with that reason.
        device_info: TAC, device capabilities and IMEI for ctxParams1.
        config: TLS trust anchors, timeouts and headers for ES9+.
        smdp_url: base URL to reach the SM-DP+ at instead of ``https://<AC address>`` (the
            address sent and checked stays the activation code's).
        es9: an ES9+ client to use (the caller keeps ownership); overrides config/smdp_url.
        check_metadata: compare the BPP's StoreMetadata with profileMetadata.
        offload_card_io: run ES10 calls in a worker thread (slow readers, shared loops).
        deliver_install_result: send the ProfileInstallationResult to the server and remove
            it from the card once taken; False leaves it pending on the card for the caller
            to carry elsewhere (the pull flow's ProfileDownloadTriggerResult).

    Raises:
        InvalidActivationCode: the activation code text is invalid.
        DownloadError: a subclass saying what failed and what was cancelled.
        IpaError: the card failed before a session existed (GetEUICCInfo1, challenge).
    """
    ac = (
        activation_code
        if isinstance(activation_code, ActivationCode)
        else parse_activation_code(activation_code)
    )
    own = es9 is None
    es9_client = es9 or Es9PlusClient(smdp_url or ac.smdp_address, config)
    session = _Session(client, es9_client, ac, offload_card_io)
    try:
        return await _run(
            session,
            device_info=device_info or DeviceInfo(),
            confirmation_code=confirmation_code,
            ask_confirmation_code=ask_confirmation_code,
            consent=consent,
            check_metadata=check_metadata,
            deliver_install_result=deliver_install_result,
        )
    finally:
        if own:
            await es9_client.aclose()


async def _run(
    session: _Session,
    *,
    device_info: DeviceInfo,
    confirmation_code: str | None,
    ask_confirmation_code: ConfirmationCodeCallback | None,
    consent: ConsentCallback | None,
    check_metadata: bool,
    deliver_install_result: bool,
) -> DownloadResult:
    try:
        await _authenticate(session, device_info)
    except DownloadError as error:
        error.transaction_id = session.transaction_id or None
        error.cancel_reason = None  # the card holds no session yet: nothing was cancelled
        raise
    try:
        metadata, result = await _after_authentication(
            session,
            confirmation_code=confirmation_code,
            ask_confirmation_code=ask_confirmation_code,
            consent=consent,
            check_metadata=check_metadata,
        )
    except DownloadError as error:
        error.transaction_id = session.transaction_id
        await _cancel(session, error)
        raise
    except (KeyboardInterrupt, asyncio.CancelledError) as interrupt:
        # Ctrl-C at the confirmation-code prompt, or a cancelled task: the SM-DP+ must not be
        # left with an order in progress (SGP.22 §3.1.3: the session ends with CancelSession).
        stopped = DownloadInterrupted("interrupted", step="interrupted")
        stopped.transaction_id = session.transaction_id
        await _cancel(session, stopped)
        card = "yes" if stopped.cancelled_on_card else "no"
        server = "yes" if stopped.cancelled_on_server else "no"
        note = f"download session cancelled (postponed): on the card {card}, on the SM-DP+ {server}"
        log.warning("%s", note)
        interrupt.add_note(note)
        raise
    except IpaError as exc:  # the card link broke in the middle of the session
        comm = CardCommunicationError(str(exc), step="ES10")
        comm.transaction_id = session.transaction_id
        await _cancel(session, comm)
        raise comm from exc

    # The BF37 is a pending notification on the card now, whatever it says.
    if deliver_install_result:
        outcome = await deliver_notification(
            session.client, session.es9, result.raw, result.seq_number
        )
    else:
        outcome = NotificationOutcome(
            result.seq_number, "profileInstallationResult", None, False, False, "kept on the card"
        )
    if not result.success:
        failed = ProfileInstallationFailed(result)
        failed.transaction_id = session.transaction_id
        failed.notification_delivered = outcome.delivered
        failed.notification_removed = outcome.removed
        raise failed
    assert result.isdp_aid is not None
    log.info("profile %s installed in ISD-P %s", result.iccid, result.isdp_aid.hex().upper())
    return DownloadResult(
        iccid=result.iccid,
        isdp_aid=result.isdp_aid,
        seq_number=result.seq_number,
        transaction_id=session.transaction_id,
        smdp_address=session.ac.smdp_address,
        smdp_oid=result.smdp_oid,
        profile_metadata=metadata,
        notification_delivered=outcome.delivered,
        notification_removed=outcome.removed,
        profile_installation_result=result.raw,
    )


def download_profile_sync(
    client: Es10Client, activation_code: ActivationCode | str, **options: Any
) -> DownloadResult:
    """:func:`download_profile` for synchronous callers (runs its own event loop; the
    callbacks may be plain functions). Takes the same keyword options."""
    return asyncio.run(download_profile(client, activation_code, **options))
