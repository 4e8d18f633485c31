"""ES10b download functions before the BPP: AuthenticateServer, PrepareDownload, CancelSession,
and the download session they build (GSMA SGP.22 v2.5 §3.1.3; §5.7.13, §5.7.5, §5.7.14).

The session lives in the ISD-R's volatile ``ctx.session`` under ``"download"``: a card reset
or a new GetEUICCChallenge drops it. AuthenticateServer and PrepareDownload get the request
bytes as received (:class:`~euicc_sim.isdr.RawHandler`), because the signatures they verify
cover those bytes, never a re-encoding. None of these functions changes the persistent state.

Session rules (in the order of the download procedure, SGP.22 v2.5 §3.1.3):

=================  ===============================  ==================================
function           needs                            leaves
=================  ===============================  ==================================
AuthenticateServer a challenge (GetEUICCChallenge)  AUTHENTICATED (challenge consumed)
PrepareDownload    AUTHENTICATED                    PREPARED (otSK/otPK.EUICC.ECKA)
BPP (``BF36``)     PREPARED                         see :mod:`euicc_sim.bpp`
CancelSession      AUTHENTICATED, PREPARED, or a    nothing (session and otSK dropped)
                   BPP before ConfigureISDP
=================  ===============================  ==================================

An AuthenticateServer or PrepareDownload error drops the session (the IPAd starts again with
GetEUICCChallenge).

Choices where the standard leaves it open (ours):

* AuthenticateServer checks in this order: challenge present (noSessionContext 4);
  euiccCiPKIdToBeUsed is a CI the card verifies with *and* signs under (ciPKUnknown 7);
  serverCertificate issued by that CI with role DPauth or DSauth and keyUsage
  digitalSignature (invalidCertificate 1; a certificate of another CI, including another
  CI the card knows, is invalidCertificate too); key on a supported curve
  (unsupportedCurve 3); a subjectAltName registeredID, the entity OID that later becomes
  smdpOid (invalidOid 5 when missing); serverSignature1 (invalidSignature 2); euiccChallenge
  (euiccChallengeMismatch 6). Validity dates are not checked (the card has no clock).
* ctxParams1 is copied into euiccSigned1 byte for byte; euiccSigned1 carries the SGP.32
  EUICCInfo2 this card reports in GetEUICCInfo2.
* PrepareDownload needs a session that has passed AuthenticateServer and not yet
  PrepareDownload (a second PrepareDownload is noSessionContext 4). It does not check hashCc
  against ccRequiredFlag: the SM-DP+ verifies the confirmation code.
* One-time key (PrepareDownload's bppEuiccOtpk, SGP.22 v2.5 §5.7.5): the latest generated
  pair is retained in ``ctx.retained`` (RAM that survives sessions and card resets, never
  written to disk). A PrepareDownload whose bppEuiccOtpk equals it reuses it; otherwise a
  fresh pair on the DPpb curve replaces it. It is dropped once InitialiseSecureChannel has
  used it (or by CancelSession).
* CancelSession with a transactionId that is not the session's: invalidTransactionId (5)
  and the session stays. After ConfigureISDP (the ISD-P exists) it is undefinedError (127)
  and loading continues: the BPP must end with a ProfileInstallationResult.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import crypto, pki, schema, tlv
from euicc_protocol.crypto import Curve

from .apdu import StatusWordError
from .ecasd import SigningChain
from .es10b import euicc_info2
from .isdr import IsdrContext, RawHandler
from .registry import HandlerTable

log = logging.getLogger(__name__)

HANDLERS = HandlerTable()

SESSION_KEY = "download"
#: Where :mod:`euicc_sim.bpp` keeps the state of a BPP being loaded (part of the session).
BPP_KEY = "bpp"
_RETAINED_OTSK = "download-otsk"

# AuthenticateErrorCode / DownloadErrorCode / CancelSessionResponse error values.
INVALID_CERTIFICATE = 1
INVALID_SIGNATURE = 2
UNSUPPORTED_CURVE = 3
NO_SESSION_CONTEXT = 4
INVALID_OID = 5
INVALID_TRANSACTION_ID = 5
EUICC_CHALLENGE_MISMATCH = 6
CI_PK_UNKNOWN = 7
UNDEFINED_ERROR = 127

_SIGNATURE_TAG = b"\x5f\x37"
_OTPK_TAG = b"\x5f\x49"
_SERVER_AUTH_ROLES = (pki.CertRole.DP_AUTH, pki.CertRole.DS_AUTH)


class Phase(enum.Enum):
    """Where a download session stands."""

    AUTHENTICATED = "authenticated"  # AuthenticateServer done
    PREPARED = "prepared"  # PrepareDownload done, otSK held
    LOADING = "loading"  # InitialiseSecureChannel done, BPP pieces arriving
    ISDP_CREATED = "isdp-created"  # ConfigureISDP done: CancelSession no longer allowed


@dataclass
class DownloadSession:
    """What AuthenticateServer and PrepareDownload establish for one transaction."""

    transaction_id: bytes
    server_address: str
    smdp_oid: str  # SAN registeredID of CERT.DPauth (and of CERT.DPpb)
    chain: SigningChain  # the eUICC key and certificates under euiccCiPKIdToBeUsed
    ci_key: ec.EllipticCurvePublicKey
    euicc_signature1: bytes  # the complete 5F37 TLV of AuthenticateServerResponse
    phase: Phase = Phase.AUTHENTICATED
    dp_pb_key: ec.EllipticCurvePublicKey | None = None
    otsk: ec.EllipticCurvePrivateKey | None = None
    euicc_otpk_tlv: bytes = b""  # 5F49 TLV sent in PrepareDownloadResponse

    def __repr__(self) -> str:  # never show key material
        return f"DownloadSession({self.transaction_id.hex()}, {self.phase.value})"


def current(ctx: IsdrContext) -> DownloadSession | None:
    """The download session, if any."""
    session = ctx.session.get(SESSION_KEY)
    return session if isinstance(session, DownloadSession) else None


def end(ctx: IsdrContext) -> None:
    """Forget the download session, with the BPP being loaded in it."""
    ctx.session.pop(SESSION_KEY, None)
    ctx.session.pop(BPP_KEY, None)


def keep_one_time_key(ctx: IsdrContext, key: ec.EllipticCurvePrivateKey) -> None:
    """Retain ``key`` as otSK.EUICC.ECKA, as a PrepareDownload does; a later PrepareDownload
    whose bppEuiccOtpk is its public key reuses it. Tests use this to load BPPs bound to a
    known key (the conformant test vector)."""
    ctx.retained[_RETAINED_OTSK] = key


def drop_one_time_key(ctx: IsdrContext) -> None:
    """Forget the retained one-time key (InitialiseSecureChannel used it)."""
    ctx.retained.pop(_RETAINED_OTSK, None)


def _decode(type_name: str, request: bytes) -> tuple[Any, dict[str, bytes]]:
    """Decode a raw request, strictly; also return the complete TLV of each of its fields,
    exactly as received and as that one parse found them (what signatures cover)."""
    try:
        value, spans = schema.decode_spans(type_name, request)
    except schema.DecodeError as exc:
        log.info("undecodable %s: %s", type_name, exc)
        raise StatusWordError(0x6A80) from None
    fields = {str(path[0]): request[a:b] for path, (a, b) in spans.items() if len(path) == 1}
    return value, fields


def _load_server_certificate(
    ctx: IsdrContext,
    der: bytes,
    ci_pkid: bytes,
    ci_key: ec.EllipticCurvePublicKey,
    roles: tuple[pki.CertRole, ...],
) -> tuple[ec.EllipticCurvePublicKey | None, str | None, int]:
    """Check a server certificate; return (its key, its OID, error code 0 when acceptable)."""
    try:
        cert = pki.load_certificate(der)
        role = pki.cert_role(cert)
        if role is None or role not in roles:
            return None, None, INVALID_CERTIFICATE
        if pki.rid_oid(cert) is None:
            # Checked before the full chain check, which would call it invalidCertificate.
            pki.verify_issued_by(cert, ci_key, ci_pkid, which=role.label)
            return None, None, INVALID_OID
        oid = pki.check_server_certificate(cert, {ci_pkid: ci_key}, role)
        if ctx.state.is_revoked(ci_pkid, cert.serial_number):  # on a CRL loaded by LoadCRL
            log.info("server certificate refused: serial %x is revoked", cert.serial_number)
            return None, None, INVALID_CERTIFICATE
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):  # for the type checker
            return None, None, INVALID_CERTIFICATE
        return key, oid, 0
    except pki.UnsupportedCurve:
        return None, None, UNSUPPORTED_CURVE
    except (pki.CertificateError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # UnknownCi lands here too: only the CI named by euiccCiPKIdToBeUsed may issue it.
        log.info("server certificate refused: %s", exc)
        return None, None, INVALID_CERTIFICATE


def _verifies(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        crypto.verify_raw(key, signature, data)
    except (crypto.InvalidSignature, crypto.UnsupportedKey):
        return False
    return True


# --- AuthenticateServer ---------------------------------------------------------------------


def _authenticate_error(transaction_id: bytes, code: int) -> bytes:
    return schema.encode(
        "SGP32-AuthenticateServerResponse",
        (
            "authenticateResponseError",
            {"transactionId": transaction_id, "authenticateErrorCode": code},
        ),
    )


def _authenticate_server(ctx: IsdrContext, request: bytes) -> bytes:
    value, raw = _decode("AuthenticateServerRequest", request)
    signed1 = value["serverSigned1"]
    transaction_id = signed1["transactionId"]
    challenge = ctx.session.get("challenge")
    # Whatever happens next, this challenge is used up and any older session is over.
    ctx.session.pop("challenge", None)
    end(ctx)

    def refuse(code: int) -> bytes:
        log.info("AuthenticateServer refused with code %d", code)
        return _authenticate_error(transaction_id, code)

    if challenge is None:
        return refuse(NO_SESSION_CONTEXT)
    ci_pkid = value["euiccCiPKIdToBeUsed"]
    ci_key = ctx.credentials.ci_public_keys.get(ci_pkid)
    chain = ctx.credentials.chain_for(ci_pkid)
    if ci_key is None or chain is None:
        return refuse(CI_PK_UNKNOWN)
    key, oid, code = _load_server_certificate(
        ctx, raw["serverCertificate"], ci_pkid, ci_key, _SERVER_AUTH_ROLES
    )
    if key is None or oid is None:
        return refuse(code)
    if not _verifies(key, value["serverSignature1"], raw["serverSigned1"]):
        return refuse(INVALID_SIGNATURE)
    if signed1["euiccChallenge"] != challenge:
        return refuse(EUICC_CHALLENGE_MISMATCH)

    euicc_signed1 = tlv.encode_tlv(
        b"\x30",
        tlv.encode_tlv(b"\x80", transaction_id)
        + tlv.encode_tlv(b"\x83", signed1["serverAddress"].encode())
        + tlv.encode_tlv(b"\x84", signed1["serverChallenge"])
        + euicc_info2(ctx)
        + raw["ctxParams1"],  # as received
    )
    signature1 = tlv.encode_tlv(_SIGNATURE_TAG, chain.sign(euicc_signed1))
    ctx.session[SESSION_KEY] = DownloadSession(
        transaction_id=transaction_id,
        server_address=signed1["serverAddress"],
        smdp_oid=oid,
        chain=chain,
        ci_key=ci_key,
        euicc_signature1=signature1,
    )
    ok = euicc_signed1 + signature1 + chain.euicc_certificate + chain.eum_certificate
    return tlv.encode_tlv(b"\xbf\x38", tlv.encode_tlv(b"\xa0", ok))


HANDLERS.handles("AuthenticateServerRequest")(RawHandler(_authenticate_server))


# --- PrepareDownload ------------------------------------------------------------------------


def _download_error(transaction_id: bytes, code: int) -> bytes:
    return schema.encode(
        "SGP32-PrepareDownloadResponse",
        ("downloadResponseError", {"transactionId": transaction_id, "downloadErrorCode": code}),
    )


def _one_time_key(
    ctx: IsdrContext, curve: Curve, wanted: bytes | None
) -> ec.EllipticCurvePrivateKey:
    """The kept otSK.EUICC.ECKA when ``wanted`` is its public key, else a fresh one (kept)."""
    kept = ctx.retained.get(_RETAINED_OTSK)
    if (
        wanted is not None
        and isinstance(kept, ec.EllipticCurvePrivateKey)
        and kept.curve.name == curve.ec_curve().name
        and crypto.public_point(kept.public_key()) == wanted
    ):
        return kept
    fresh = crypto.generate_private_key(curve)
    keep_one_time_key(ctx, fresh)
    return fresh


def _prepare_download(ctx: IsdrContext, request: bytes) -> bytes:
    value, raw = _decode("PrepareDownloadRequest", request)
    signed2 = value["smdpSigned2"]
    transaction_id = signed2["transactionId"]
    session = current(ctx)

    def refuse(code: int) -> bytes:
        log.info("PrepareDownload refused with code %d", code)
        end(ctx)
        return _download_error(transaction_id, code)

    if session is None or session.phase is not Phase.AUTHENTICATED:
        return refuse(NO_SESSION_CONTEXT)
    ci_pkid = session.chain.ci_pkid
    key, oid, code = _load_server_certificate(
        ctx, raw["smdpCertificate"], ci_pkid, session.ci_key, (pki.CertRole.DP_PB,)
    )
    if key is None or oid is None:
        return refuse(INVALID_CERTIFICATE if code == INVALID_OID else code)
    if oid != session.smdp_oid:
        return refuse(INVALID_CERTIFICATE)
    if transaction_id != session.transaction_id:
        return refuse(INVALID_TRANSACTION_ID)
    if not _verifies(key, value["smdpSignature2"], raw["smdpSigned2"] + session.euicc_signature1):
        return refuse(INVALID_SIGNATURE)

    otsk = _one_time_key(ctx, Curve.of_key(key), signed2.get("bppEuiccOtpk"))
    otpk_tlv = tlv.encode_tlv(_OTPK_TAG, crypto.public_point(otsk.public_key()))
    body = tlv.encode_tlv(b"\x80", transaction_id) + otpk_tlv
    if "hashCc" in value:
        body += tlv.encode_tlv(b"\x04", value["hashCc"])
    euicc_signed2 = tlv.encode_tlv(b"\x30", body)
    smdp_signature2 = raw["smdpSignature2"]  # the complete 5F37 TLV as received
    signature2 = session.chain.sign(euicc_signed2 + smdp_signature2)
    session.phase = Phase.PREPARED
    session.dp_pb_key = key
    session.otsk = otsk
    session.euicc_otpk_tlv = otpk_tlv
    ok = euicc_signed2 + tlv.encode_tlv(_SIGNATURE_TAG, signature2)
    return tlv.encode_tlv(b"\xbf\x21", tlv.encode_tlv(b"\xa0", ok))


HANDLERS.handles("PrepareDownloadRequest")(RawHandler(_prepare_download))


# --- CancelSession --------------------------------------------------------------------------


@HANDLERS.handles("CancelSessionRequest")
def cancel_session(ctx: IsdrContext, request: dict) -> Any:
    """ES10b.CancelSession: sign euiccCancelSessionSigned and forget the session."""
    session = current(ctx)
    if session is None or request["transactionId"] != session.transaction_id:
        return ("cancelSessionResponseError", INVALID_TRANSACTION_ID)
    if session.phase is Phase.ISDP_CREATED:
        return ("cancelSessionResponseError", UNDEFINED_ERROR)
    signed = schema.encode(
        "EuiccCancelSessionSigned",
        {
            "transactionId": session.transaction_id,
            "smdpOid": session.smdp_oid,
            "reason": request["reason"],
        },
    )
    signature = session.chain.sign(signed)
    end(ctx)
    drop_one_time_key(ctx)
    body = signed + tlv.encode_tlv(_SIGNATURE_TAG, signature)
    return tlv.encode_tlv(b"\xbf\x41", tlv.encode_tlv(b"\xa0", body))
