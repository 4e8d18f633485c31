"""Indirect profile download: the card steps of :mod:`ipa.download`, the ES9+ payloads carried
by ESipa through the eIM (GSMA SGP.32 v1.2, indirect profile download; ESipa functions §5.14).

=======================================  ================================  ======================
IPAd → eUICC (ES10b)                     IPAd → eIM (ESipa)                eIM → SM-DP+ (ES9+)
=======================================  ================================  ======================
GetEUICCInfo1, GetEUICCChallenge         InitiateAuthentication            initiateAuthentication
AuthenticateServer                       AuthenticateClient                authenticateClient
PrepareDownload                          GetBoundProfilePackage            getBoundProfilePackage
LoadBoundProfilePackage → ``BF37``       HandleNotification (or the        handleNotification
                                         trigger result, see below)
CancelSession (on failure)               CancelSession                     cancelSession
=======================================  ================================  ======================

The flow itself is :func:`ipa.download.download_profile`, unchanged: :class:`EsipaRelay` is the
ES9+ client it talks to, and turns each ES9+ call into its ESipa form. Everything
:mod:`ipa.download` checks and cancels applies as it is (serverSigned1 address and challenge,
consent, confirmation code, metadata, CancelSession reasons). What the relay adds:

* the CI key id the eIM may send truncated (``euiccCiPKIdentifierToBeUsed`` of
  InitiateAuthenticationOkEsipa, SGP.32 v1.2 §6.3.2.1) is expanded
  to the full ``04 14 <SKI>`` from EUICCInfo1's euiccCiPKIdListForVerification before
  AuthenticateServer; a prefix that matches no key or several keys is a protocol error;
* the eIM's transactionId may be absent from its answers: the session's one is used;
* ESipa errors become the ES9+ errors :mod:`ipa.download` knows (an error code answered by the
  eIM → :class:`~ipa.es9p.Es9Error` whose message names the ESipa code; unreachable →
  :class:`~ipa.es9p.Es9ConnectionError` / ``Es9Timeout``; a broken answer →
  :class:`~ipa.es9p.Es9ProtocolError`); the original is the ``__cause__``;
* the ProfileInstallationResult: with ``deliver_notification`` (the default for a stand-alone
  download) it goes to the eIM in ESipa HandleNotification and is removed from the card once
  taken. The pull flow passes False: the result then stays pending on the card and goes to the
  eIM inside the ProfileDownloadTriggerResult, removed after the eIM acknowledged it
  (SGP.32 v1.2 §2.11.2.3, ProfileDownloadTriggerResult; EimAcknowledgements §2.11.1.4); the
  DownloadResult says ``notification_delivered=False``.

Not relayed: an SM-DS event answer (AuthenticateClientOkDSEsipa) and eIM-made ctxParams1 or
hashCc, which this IPAd never asks for (it does not announce eimCtxParams1Generation or
eimDownloadDataHandling).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from euicc_protocol import schema, tlv
from ipa.activation import ActivationCode, parse_activation_code
from ipa.download import DownloadResult, download_profile
from ipa.es9p import (
    AuthenticateClientOk,
    Es9Config,
    Es9ConnectionError,
    Es9Error,
    Es9PlusClient,
    Es9ProtocolError,
    Es9Timeout,
    GetBoundProfilePackageOk,
    InitiateAuthenticationOk,
)
from ipa.es10 import Es10Client
from ipa.esipa import (
    AuthenticateClientOkDs,
    EsipaClient,
    EsipaConnectionError,
    EsipaFunctionError,
    EsipaProtocolError,
    EsipaTimeout,
)

__all__ = ["EsipaRelay", "download_profile_indirect", "expand_ci_pkid"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def expand_ci_pkid(ci_pkid_tlv: bytes, known: tuple[bytes, ...]) -> bytes:
    """The ``04 14 <SKI>`` TLV for a possibly truncated key id TLV (``04 L <prefix>``).

    Raises:
        ValueError: the value is empty, or a prefix of no key or of several keys in ``known``.
    """
    item = tlv.read_tlv(ci_pkid_tlv)
    if item.tag != b"\x04" or item.end != len(ci_pkid_tlv):
        raise ValueError("euiccCiPKIdentifierToBeUsed must be one 04 TLV")
    prefix = item.value(ci_pkid_tlv)
    matches = [k for k in known if prefix and k.startswith(prefix)]
    if len(matches) != 1:
        which = "no" if not matches else "more than one"
        raise ValueError(
            f"CI key id {prefix.hex().upper()} matches {which} key id the eUICC can verify"
        )
    return tlv.encode_tlv(b"\x04", matches[0])


class EsipaRelay(Es9PlusClient):
    """The :class:`~ipa.es9p.Es9PlusClient` interface over ESipa, for :mod:`ipa.download`.

    ``esipa`` stays the caller's (not closed here); ``smdp_address`` is the activation code's.
    """

    def __init__(
        self,
        esipa: EsipaClient,
        smdp_address: str,
        *,
        eim_transaction_id: bytes | None = None,
    ) -> None:
        # Deliberately not Es9PlusClient.__init__: there is no HTTP client of our own.
        self.config = Es9Config()
        self.base_url = f"https://{smdp_address}"
        self.esipa = esipa
        self.eim_transaction_id = eim_transaction_id
        self.transaction_id: bytes | None = None

    async def aclose(self) -> None:
        """Nothing to close: the ESipa client belongs to the caller."""

    async def call(self, function: str, request: Any) -> dict[str, Any]:
        """Not available: every function goes through its ESipa form."""
        raise NotImplementedError("EsipaRelay carries ES9+ functions as ESipa messages")

    async def _relay(self, function: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except EsipaFunctionError as exc:
            raise Es9Error(
                exc.subject_code,
                exc.reason_code,
                str(exc),
                function=function,
            ) from exc
        except EsipaTimeout as exc:
            raise Es9Timeout(str(exc)) from exc
        except EsipaConnectionError as exc:
            raise Es9ConnectionError(str(exc)) from exc
        except EsipaProtocolError as exc:
            raise Es9ProtocolError(str(exc), status_code=exc.status_code) from exc

    async def initiate_authentication(
        self, euicc_challenge: bytes, euicc_info1: bytes, smdp_address: str | None = None
    ) -> InitiateAuthenticationOk:
        """ESipa.InitiateAuthentication; the CI key id comes back expanded."""
        fn = "initiateAuthentication"
        ok = await self._relay(
            fn,
            self.esipa.initiate_authentication(
                euicc_challenge,
                smdp_address=smdp_address if smdp_address is not None else self.smdp_address,
                euicc_info1=euicc_info1,
                eim_transaction_id=self.eim_transaction_id,
            ),
        )
        try:
            signed1 = schema.decode("ServerSigned1", ok.server_signed1)
            info1 = schema.decode("EUICCInfo1", euicc_info1)
            ci_pkid = expand_ci_pkid(
                ok.euicc_ci_pkid_to_be_used, tuple(info1["euiccCiPKIdListForVerification"])
            )
        except (ValueError, tlv.TlvError) as exc:  # DecodeError is a ValueError
            raise Es9ProtocolError(f"ESipa.{fn}: {exc}") from None
        if ok.ctx_params1 is not None or ok.matching_id is not None:
            log.info("the eIM sent ctxParams1/matchingId; this IPAd builds its own ctxParams1")
        self.transaction_id = ok.transaction_id or signed1["transactionId"]
        return InitiateAuthenticationOk(
            transaction_id=self.transaction_id,
            server_signed1=ok.server_signed1,
            server_signature1=ok.server_signature1,
            euicc_ci_pkid_to_be_used=ci_pkid,
            server_certificate=ok.server_certificate,
        )

    async def authenticate_client(
        self, transaction_id: bytes, authenticate_server_response: bytes
    ) -> AuthenticateClientOk:
        """ESipa.AuthenticateClient (the SM-DP+ answer; an SM-DS event is refused)."""
        fn = "authenticateClient"
        ok = await self._relay(
            fn, self.esipa.authenticate_client(transaction_id, authenticate_server_response)
        )
        if isinstance(ok, AuthenticateClientOkDs):
            raise Es9ProtocolError(f"ESipa.{fn}: an SM-DS event answer cannot be used here")
        if ok.transaction_id is not None and ok.transaction_id != transaction_id:
            raise Es9ProtocolError(f"ESipa.{fn}: answer is for another transaction")
        if ok.profile_metadata is None:
            raise Es9ProtocolError(f"ESipa.{fn}: no profileMetadata")
        if ok.hash_cc is not None:
            log.info("the eIM sent hashCc; this IPAd computes hashCc from the confirmation code")
        return AuthenticateClientOk(
            transaction_id=transaction_id,
            profile_metadata=ok.profile_metadata,
            smdp_signed2=ok.smdp_signed2,
            smdp_signature2=ok.smdp_signature2,
            smdp_certificate=ok.smdp_certificate,
        )

    async def get_bound_profile_package(
        self, transaction_id: bytes, prepare_download_response: bytes
    ) -> GetBoundProfilePackageOk:
        """ESipa.GetBoundProfilePackage."""
        fn = "getBoundProfilePackage"
        ok = await self._relay(
            fn, self.esipa.get_bound_profile_package(transaction_id, prepare_download_response)
        )
        if ok.transaction_id is not None and ok.transaction_id != transaction_id:
            raise Es9ProtocolError(f"ESipa.{fn}: answer is for another transaction")
        return GetBoundProfilePackageOk(transaction_id, ok.bound_profile_package)

    async def handle_notification(self, pending_notification: bytes) -> None:
        """ESipa.HandleNotification."""
        await self._relay(
            "handleNotification", self.esipa.handle_notification(pending_notification)
        )

    async def cancel_session(self, transaction_id: bytes, cancel_session_response: bytes) -> None:
        """ESipa.CancelSession with the card's signed CancelSessionResponse."""
        await self._relay(
            "cancelSession", self.esipa.cancel_session(transaction_id, cancel_session_response)
        )


async def download_profile_indirect(
    client: Es10Client,
    esipa: EsipaClient,
    activation_code: ActivationCode | str,
    *,
    eim_transaction_id: bytes | None = None,
    deliver_notification: bool = True,
    **options: Any,
) -> DownloadResult:
    """Download the profile of ``activation_code`` through the eIM behind ``esipa``.

    Takes the options of :func:`ipa.download.download_profile` (confirmation_code, consent,
    device_info, check_metadata, ...) except ``es9``/``config``/``smdp_url``, and raises the
    same :class:`~ipa.download.DownloadError` family. ``eim_transaction_id`` is echoed in
    InitiateAuthentication; ``deliver_notification`` False keeps the install result on the
    card (see the module doc).
    """
    for name in ("es9", "config", "smdp_url"):
        if name in options:
            raise TypeError(f"download_profile_indirect() does not take {name!r}")
    ac = (
        activation_code
        if isinstance(activation_code, ActivationCode)
        else parse_activation_code(activation_code)
    )
    relay = EsipaRelay(esipa, ac.smdp_address, eim_transaction_id=eim_transaction_id)
    return await download_profile(
        client, ac, es9=relay, deliver_install_result=deliver_notification, **options
    )
