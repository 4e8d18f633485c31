"""ES10b LoadBoundProfilePackage on the eUICC: the BPP pieces (GSMA SGP.22 v2.5 §2.5, §5.7.6)
as a state machine, ending in a signed ProfileInstallationResult (§2.5.6).

Everything that decides how a piece is handled lives here; the ISD-R routes the pieces to
:func:`load_bound_profile_package` by their first tag (see :class:`~euicc_sim.isdr.RawHandler`).

Rules
=====

1. A BPP starts with ``BF36 <L>`` + the complete ``BF23`` (InitialiseSecureChannel). It needs
   a download session that has passed PrepareDownload; without one the card answers ``6985``
   (``6A80`` if the piece is not even a ``BF36`` header followed by one complete TLV), and
   no notification exists because no transaction is known.
2. The further pieces are accepted in this order (table ``_STEPS``); each piece must be one
   complete TLV or, for ``A1``/``A3``, exactly a header:

   ==============  ====================  =====================  =====================
   waiting for     accepted pieces       then                   bppCommandId charged
   ==============  ====================  =====================  =====================
   CONFIGURE_ISDP  ``A0`` (``87``...)     METADATA_HEADER        configureISDP 1
   METADATA_HDR    ``A1`` header          METADATA               storeMetadata 2
   METADATA        ``88``                 (until A1 is full)     storeMetadata 2
   AFTER_METADATA  ``A2`` / ``A3`` hdr    PROFILE_HDR / PROFILE  loadProfileElements 5
   PROFILE_HDR     ``A3`` header          PROFILE                loadProfileElements 5
   PROFILE         ``86``                 (until A3 is full)     loadProfileElements 5
   ==============  ====================  =====================  =====================

   Any other piece (out of order, a skipped piece, a second ``BF36``) fails the BPP with
   incorrectInputValues (1), charged to the command of the step the card was waiting for.
   A piece that fails while being processed is charged to its own command (``A2``:
   replaceSessionKeys 4). storeMetadata2 (3) is never used.
3. Lengths are checked against the announced ones: no piece may run past the ``BF36``
   length, the ``88``/``86`` segments must fill ``A1``/``A3`` exactly, and ``A3`` must end
   where ``BF36`` ends. The last ``86`` is the one that fills ``A3``.
4. Segment errors: C-MAC mismatch (including segments out of order or missing, which break
   the MAC chain) is scp03tSecurityError (8); bad segment length, alignment or padding is
   scp03tStructureError (7); a piece or decrypted request that does not parse is
   incorrectInputValues (1).
5. Checks per command: a piece or request the strict decoder refuses (including values
   outside SIZE constraints, e.g. an empty hostId) is incorrectInputValues (1).
   InitialiseSecureChannel: remoteOpId (5), transactionId (3), CRT
   ``88``/``10`` (4), smdpSign (2), smdpOtpk a point on the curve
   (1); the otSK is then forgotten. ConfigureISDP: room for one more profile (10).
   StoreMetadata: ICCID not on the card (9), profileClass 0..2 (6), PPRs allowed by the RAT
   (15). LoadProfileElements: the package fits the free profile memory while it arrives
   (10); at the end it parses as SAIP (12, with a simaResponse) and its header ICCID equals
   the StoreMetadata ICCID (13); :func:`euicc_sim.profiles.install` decides the rest.
6. Atomicity: the decrypted metadata and package stay in the volatile session. Success
   stores the package blob, then commits the new profile and its ``BF37`` notification at
   once. Any failure discards the session and commits only the failure ``BF37``. Further
   pieces of a failed or finished BPP get ``6A88`` (no BPP being loaded).
7. Every ``BF37`` is signed (euiccSignPIR over the ``BF27`` TLV) with the session's eUICC key
   and stored as a pending install notification to the session's serverAddress, on success
   and on every failure after rule 1, including InitialiseSecureChannel failures. Its ICCID
   is present once a StoreMetadataRequest was decoded.
8. Interruption: a card reset or a new GetEUICCChallenge drops the volatile session, so the
   download vanishes without a notification (there is no installFailedDueToInterruption
   (11) result: the session that could report it is gone, as after a power loss on a card
   that keeps it in RAM); the next piece gets ``6A88``.
9. A PPR (ppr1, ppr2) in the metadata is allowed when a RAT rule lists it for an operator
   matching the profileOwner's mccMnc (``E`` nibbles are wildcards); a profile with PPRs
   and no profileOwner is pprNotAllowed. Consent flags are the LPA's business.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from euicc_protocol import crypto, saip, schema, scp03t, tlv
from euicc_protocol.crypto import Curve

from . import download, profiles
from .apdu import StatusWordError
from .config import RatRule
from .download import BPP_KEY, DownloadSession, Phase
from .isdr import IsdrContext, RawHandler
from .notifications import metadata_value
from .registry import HandlerTable
from .state import (
    CardState,
    LastDownload,
    NotificationConfig,
    NotificationEvent,
    PendingNotification,
    Profile,
    ProfileClass,
    ProfileOwner,
)

log = logging.getLogger(__name__)

HANDLERS = HandlerTable()

# BppCommandId
INITIALISE_SECURE_CHANNEL = 0
CONFIGURE_ISDP = 1
STORE_METADATA = 2
REPLACE_SESSION_KEYS = 4
LOAD_PROFILE_ELEMENTS = 5

# ErrorReason
INCORRECT_INPUT_VALUES = 1
INVALID_SIGNATURE = 2
INVALID_TRANSACTION_ID = 3
UNSUPPORTED_CRT_VALUES = 4
UNSUPPORTED_REMOTE_OPERATION_TYPE = 5
UNSUPPORTED_PROFILE_CLASS = 6
SCP03T_STRUCTURE_ERROR = 7
SCP03T_SECURITY_ERROR = 8
INSUFFICIENT_MEMORY = 10
PE_PROCESSING_ERROR = 12
DATA_MISMATCH = 13
PPR_NOT_ALLOWED = 15

_TAG_BPP = b"\xbf\x36"
_TAG_ISC = b"\xbf\x23"
_TAG_CONFIGURE_ISDP = b"\xa0"
_TAG_METADATA = b"\xa1"
_TAG_REPLACE_KEYS = b"\xa2"
_TAG_PROFILE = b"\xa3"
_TAG_87 = b"\x87"
_TAG_88 = b"\x88"
_TAG_86 = b"\x86"
_TAG_SIGNATURE = b"\x5f\x37"
_TAG_RESULT = b"\xbf\x37"

# EUICCResponse (PEDefinitions) for simaResponse: one PEStatus ok; or the package did not
# parse (invalid-request-format) and installation was aborted.
_SIMA_OK = schema.encode("EUICCResponse", {"peStatus": [{"status": 0}]})
_SIMA_BAD_PACKAGE = schema.encode(
    "EUICCResponse", {"peStatus": [{"status": 5}], "profileInstallationAborted": None}
)
_PPR_BITS = {1: "ppr1", 2: "ppr2"}
_EVENTS = frozenset(int(e) for e in NotificationEvent)
_CLASSES = frozenset(int(c) for c in ProfileClass)


class Step(enum.Enum):
    """What the card waits for next in a BPP (rule 2)."""

    CONFIGURE_ISDP = "A0"
    METADATA_HEADER = "A1 header"
    METADATA = "88"
    AFTER_METADATA = "A2 or A3 header"
    PROFILE_HEADER = "A3 header"
    PROFILE = "86"
    DONE = "done"


class _Failure(Exception):
    """A BPP step failed: the ErrorResult to report."""

    def __init__(self, command: int, reason: int, sima_response: bytes | None = None) -> None:
        super().__init__(f"bppCommandId {command}, errorReason {reason}")
        self.command = command
        self.reason = reason
        self.sima_response = sima_response


@dataclass(eq=False)
class _Loader:
    """One BPP being loaded (volatile, in ``ctx.session``)."""

    session: DownloadSession
    channel: scp03t.SecureChannel
    bpp_left: int  # bytes of the BF36 value not received yet
    step: Step = Step.CONFIGURE_ISDP
    list_left: int = 0  # bytes of the current A1 or A3 value not received yet
    metadata: bytearray = field(default_factory=bytearray)
    package: bytearray = field(default_factory=bytearray)
    iccid: bytes | None = None
    profile: Profile | None = None  # built from StoreMetadata, installed at the end

    def feed(self, ctx: IsdrContext, tag: bytes, piece: bytes) -> bool:
        """Process one piece; True when it was the last one."""
        expected_command, accepted = _STEPS[self.step]
        handler = accepted.get(tag)
        if handler is None or len(piece) > self.bpp_left:
            log.info("BPP piece %s while waiting for %s", tag.hex().upper(), self.step.value)
            raise _Failure(expected_command, INCORRECT_INPUT_VALUES)
        self.bpp_left -= len(piece)
        self.step = handler(self, ctx, piece)
        return self.step is Step.DONE


# --- piece parsing --------------------------------------------------------------------------


def _whole(piece: bytes, command: int) -> tlv.Tlv:
    """The piece as exactly one complete TLV."""
    try:
        item = tlv.read_tlv(piece)
    except tlv.TlvError:
        raise _Failure(command, INCORRECT_INPUT_VALUES) from None
    if item.end != len(piece):
        raise _Failure(command, INCORRECT_INPUT_VALUES)
    return item


def _header(piece: bytes, command: int) -> int:
    """The length announced by a header-only piece (``A1 <L>``, ``A3 <L>``)."""
    try:
        _, pos = tlv.read_tag(piece)
        length, pos = tlv.read_length(piece, pos)
    except tlv.TlvError:
        raise _Failure(command, INCORRECT_INPUT_VALUES) from None
    if pos != len(piece) or length == 0:
        raise _Failure(command, INCORRECT_INPUT_VALUES)
    return length


def _unprotect(channel: scp03t.SecureChannel, segment: bytes, command: int) -> bytes:
    try:
        return channel.unprotect(segment)
    except scp03t.Scp03tSecurityError:
        raise _Failure(command, SCP03T_SECURITY_ERROR) from None
    except scp03t.Scp03tStructureError:
        raise _Failure(command, SCP03T_STRUCTURE_ERROR) from None


def _decrypt_sequence(channel: scp03t.SecureChannel, piece: bytes, command: int) -> bytes:
    """The plaintext of a complete ``A0``/``A2`` sequence of ``87`` segments."""
    outer = _whole(piece, command)
    plaintext = b""
    pos = outer.value_start
    try:
        segments = list(tlv.iter_tlvs(piece, outer.value_start, outer.value_end))
    except tlv.TlvError:
        raise _Failure(command, INCORRECT_INPUT_VALUES) from None
    if not segments:
        raise _Failure(command, INCORRECT_INPUT_VALUES)
    for segment in segments:
        if segment.tag != _TAG_87:
            raise _Failure(command, INCORRECT_INPUT_VALUES)
        plaintext += _unprotect(channel, piece[pos : segment.end], command)
        pos = segment.end
    return plaintext


def _decode(type_name: str, data: bytes, command: int) -> Any:
    return _decode_spans(type_name, data, command)[0]


def _decode_spans(type_name: str, data: bytes, command: int) -> tuple[Any, schema.Spans]:
    """Strictly decode a piece or a decrypted request; incorrectInputValues when it does not."""
    try:
        return schema.decode_spans(type_name, data)
    except schema.DecodeError as exc:
        log.info("BPP: undecodable %s: %s", type_name, exc)
        raise _Failure(command, INCORRECT_INPUT_VALUES) from None


# --- the steps ------------------------------------------------------------------------------


def _configure_isdp(loader: _Loader, ctx: IsdrContext, piece: bytes) -> Step:
    request = _decrypt_sequence(loader.channel, piece, CONFIGURE_ISDP)
    _decode("ConfigureISDPRequest", request, CONFIGURE_ISDP)
    state = ctx.state
    if len(state.profiles) >= ctx.config.max_profiles or profiles.next_isdp_aid(state) is None:
        raise _Failure(CONFIGURE_ISDP, INSUFFICIENT_MEMORY)
    # dpProprietaryData is not kept: ProfileInfo of this card does not report it.
    loader.session.phase = Phase.ISDP_CREATED
    return Step.METADATA_HEADER


def _metadata_header(loader: _Loader, ctx: IsdrContext, piece: bytes) -> Step:
    loader.list_left = _header(piece, STORE_METADATA)
    return Step.METADATA


def _metadata_segment(loader: _Loader, ctx: IsdrContext, piece: bytes) -> Step:
    _whole(piece, STORE_METADATA)
    if len(piece) > loader.list_left:
        raise _Failure(STORE_METADATA, INCORRECT_INPUT_VALUES)
    loader.metadata += _unprotect(loader.channel, piece, STORE_METADATA)
    loader.list_left -= len(piece)
    if loader.list_left:
        return Step.METADATA
    _store_metadata(loader, ctx)
    return Step.AFTER_METADATA


def _replace_session_keys(loader: _Loader, ctx: IsdrContext, piece: bytes) -> Step:
    request = _decrypt_sequence(loader.channel, piece, REPLACE_SESSION_KEYS)
    keys = _decode("ReplaceSessionKeysRequest", request, REPLACE_SESSION_KEYS)
    values = (keys["ppkEnc"], keys["ppkCmac"], keys["initialMacChainingValue"])
    if any(len(v) != scp03t.BLOCK_SIZE for v in values):
        raise _Failure(REPLACE_SESSION_KEYS, INCORRECT_INPUT_VALUES)
    loader.channel.replace_keys(*values)
    return Step.PROFILE_HEADER


def _profile_header(loader: _Loader, ctx: IsdrContext, piece: bytes) -> Step:
    length = _header(piece, LOAD_PROFILE_ELEMENTS)
    if length != loader.bpp_left:  # A3 is the last element of BF36
        raise _Failure(LOAD_PROFILE_ELEMENTS, INCORRECT_INPUT_VALUES)
    loader.list_left = length
    return Step.PROFILE


def _profile_segment(loader: _Loader, ctx: IsdrContext, piece: bytes) -> Step:
    _whole(piece, LOAD_PROFILE_ELEMENTS)
    if len(piece) > loader.list_left:
        raise _Failure(LOAD_PROFILE_ELEMENTS, INCORRECT_INPUT_VALUES)
    loader.package += _unprotect(loader.channel, piece, LOAD_PROFILE_ELEMENTS)
    if len(loader.package) > _free_memory(ctx):
        raise _Failure(LOAD_PROFILE_ELEMENTS, INSUFFICIENT_MEMORY)
    loader.list_left -= len(piece)
    return Step.PROFILE if loader.list_left else Step.DONE


Piece = Callable[[_Loader, IsdrContext, bytes], Step]

# fmt: off
_STEPS: dict[Step, tuple[int, dict[bytes, Piece]]] = {
    #                    charged when out of order  piece tag -> handler
    Step.CONFIGURE_ISDP:  (CONFIGURE_ISDP,        {_TAG_CONFIGURE_ISDP: _configure_isdp}),
    Step.METADATA_HEADER: (STORE_METADATA,        {_TAG_METADATA: _metadata_header}),
    Step.METADATA:        (STORE_METADATA,        {_TAG_88: _metadata_segment}),
    Step.AFTER_METADATA:  (LOAD_PROFILE_ELEMENTS, {_TAG_REPLACE_KEYS: _replace_session_keys,
                                                   _TAG_PROFILE: _profile_header}),
    Step.PROFILE_HEADER:  (LOAD_PROFILE_ELEMENTS, {_TAG_PROFILE: _profile_header}),
    Step.PROFILE:         (LOAD_PROFILE_ELEMENTS, {_TAG_86: _profile_segment}),
    Step.DONE:            (LOAD_PROFILE_ELEMENTS, {}),
}
# fmt: on

#: First tags of the pieces after ``BF36`` (routed here by the ISD-R).
CONTINUATION_TAGS = frozenset(
    {_TAG_CONFIGURE_ISDP, _TAG_METADATA, _TAG_88, _TAG_REPLACE_KEYS, _TAG_PROFILE, _TAG_86}
)


# --- InitialiseSecureChannel ----------------------------------------------------------------


def _first_piece(piece: bytes) -> tuple[int, int] | None:
    """(BF36 length, offset of BF23) when ``piece`` is a BF36 header plus one complete TLV."""
    try:
        _, pos = tlv.read_tag(piece)
        bpp_length, start = tlv.read_length(piece, pos)
        inner = tlv.read_tlv(piece, start)
    except tlv.TlvError:
        return None
    return (bpp_length, start) if inner.end == len(piece) else None


def _start(ctx: IsdrContext, piece: bytes) -> bytes:
    """The first piece: ``BF36 <L>`` + the complete ``BF23`` (rule 1)."""
    loading = ctx.session.get(BPP_KEY)
    if isinstance(loading, _Loader):  # a BF36 in the middle of a BPP
        failure = _Failure(_STEPS[loading.step][0], INCORRECT_INPUT_VALUES)
        return _failed(ctx, loading.session, failure, loading.iccid)
    layout = _first_piece(piece)
    session = download.current(ctx)
    if session is None or session.phase is not Phase.PREPARED:
        raise StatusWordError(0x6A80 if layout is None else 0x6985)
    try:
        if layout is None or not piece[layout[1] :].startswith(_TAG_ISC):
            raise _Failure(INITIALISE_SECURE_CHANNEL, INCORRECT_INPUT_VALUES)
        bpp_length, isc_start = layout
        left = bpp_length - (len(piece) - isc_start)
        if left < 0:
            raise _Failure(INITIALISE_SECURE_CHANNEL, INCORRECT_INPUT_VALUES)
        channel = _initialise_secure_channel(ctx, session, piece[isc_start:])
    except _Failure as failure:
        return _failed(ctx, session, failure, None)
    ctx.session[BPP_KEY] = _Loader(session=session, channel=channel, bpp_left=left)
    return b""


def _initialise_secure_channel(
    ctx: IsdrContext, session: DownloadSession, isc: bytes
) -> scp03t.SecureChannel:
    def fail(reason: int) -> _Failure:
        return _Failure(INITIALISE_SECURE_CHANNEL, reason)

    value, spans = _decode_spans("InitialiseSecureChannelRequest", isc, INITIALISE_SECURE_CHANNEL)
    if value["remoteOpId"] != 1:  # installBoundProfilePackage
        raise fail(UNSUPPORTED_REMOTE_OPERATION_TYPE)
    if value["transactionId"] != session.transaction_id:
        raise fail(INVALID_TRANSACTION_ID)
    crt = value["controlRefTemplate"]
    key_type, key_length, host_id = crt["keyType"], crt["keyLen"], crt["hostId"]
    if key_type != bytes([scp03t.KEY_TYPE_AES]) or key_length != bytes([scp03t.KEY_LENGTH_AES128]):
        raise fail(UNSUPPORTED_CRT_VALUES)
    if not 1 <= len(host_id) <= 16:
        raise fail(UNSUPPORTED_CRT_VALUES)
    assert session.dp_pb_key is not None and session.otsk is not None  # PREPARED has both
    signed = _before_signature(isc, spans) + session.euicc_otpk_tlv
    try:
        crypto.verify_raw(session.dp_pb_key, value["smdpSign"], signed)
    except (crypto.InvalidSignature, crypto.UnsupportedKey):
        raise fail(INVALID_SIGNATURE) from None
    try:
        smdp_otpk = crypto.public_key_from_point(Curve.of_key(session.otsk), value["smdpOtpk"])
    except crypto.InvalidPublicKey:
        raise fail(INCORRECT_INPUT_VALUES) from None
    keys = scp03t.derive_session_keys(
        crypto.ecdh_shared_secret(session.otsk, smdp_otpk), host_id=host_id, eid=ctx.eid
    )
    # The one-time key has done its job: forget it (SGP.22 §5.7.6, InitialiseSecureChannel).
    session.otsk = None
    download.drop_one_time_key(ctx)
    session.phase = Phase.LOADING
    return scp03t.SecureChannel.from_session_keys(keys)


def _before_signature(isc: bytes, spans: schema.Spans) -> bytes:
    """The ``BF23`` value up to the smdpSign TLV, as the strict parse of ``isc`` found it:
    what smdpSign covers, with the euiccOtpk."""
    _, value_start, _ = tlv.read_header(isc, 0, len(isc))
    return isc[value_start : spans[("smdpSign",)][0]]


# --- StoreMetadata --------------------------------------------------------------------------


def _operator_matches(pattern: str, mcc_mnc: bytes) -> bool:
    actual = mcc_mnc.hex().upper()
    wanted = pattern.upper()
    if len(wanted) != len(actual):
        return False
    return all(w in ("E", a) for w, a in zip(wanted, actual, strict=True))


def ppr_allowed(rat: tuple[RatRule, ...], pprs: set[int], owner: ProfileOwner | None) -> bool:
    """Whether the RAT lets the profile owner set every PPR in ``pprs`` (rule 9)."""
    if not pprs:
        return True
    if owner is None:
        return False
    return all(
        any(
            ppr in rule.ppr_ids
            and any(_operator_matches(op, owner.mcc_mnc) for op in rule.operators)
            for rule in rat
        )
        for ppr in pprs
    )


def _profile_from_metadata(value: dict[str, Any]) -> Profile:
    owner = value.get("profileOwner")
    pprs = (
        schema.bit_positions(value["profilePolicyRules"]) if "profilePolicyRules" in value else ()
    )
    configs = tuple(
        NotificationConfig(
            frozenset(
                NotificationEvent(bit)
                for bit in schema.bit_positions(entry["profileManagementOperation"])
                if bit in _EVENTS
            ),
            entry["notificationAddress"],
        )
        for entry in value.get("notificationConfigurationInfo", ())
    )
    return Profile(
        iccid=value["iccid"],
        isdp_aid=b"",
        profile_class=ProfileClass(value.get("profileClass", ProfileClass.OPERATIONAL)),
        service_provider_name=value["serviceProviderName"],
        profile_name=value["profileName"],
        icon_type=value.get("iconType"),
        icon=value.get("icon"),
        notification_config=configs,
        profile_owner=(
            ProfileOwner(owner["mccMnc"], owner.get("gid1"), owner.get("gid2")) if owner else None
        ),
        ppr1=1 in pprs,
        ppr2=2 in pprs,
        fallback_allowed=bool(value.get("fallbackAllowed", False)),
    )


def _store_metadata(loader: _Loader, ctx: IsdrContext) -> None:
    value = _decode("SGP32-StoreMetadataRequest", bytes(loader.metadata), STORE_METADATA)
    iccid = value["iccid"]
    if len(iccid) != 10:
        raise _Failure(STORE_METADATA, INCORRECT_INPUT_VALUES)
    loader.iccid = iccid
    if ctx.state.profile_by_iccid(iccid) is not None:
        raise _Failure(STORE_METADATA, profiles.INSTALL_FAILED_ICCID_ALREADY_EXISTS)
    if value.get("profileClass", ProfileClass.OPERATIONAL) not in _CLASSES:
        raise _Failure(STORE_METADATA, UNSUPPORTED_PROFILE_CLASS)
    profile = _profile_from_metadata(value)
    pprs = {bit for bit, name in _PPR_BITS.items() if getattr(profile, name)}
    if not ppr_allowed(ctx.config.rat, pprs, profile.profile_owner):
        raise _Failure(STORE_METADATA, PPR_NOT_ALLOWED)
    loader.profile = profile


# --- the end --------------------------------------------------------------------------------


def _free_memory(ctx: IsdrContext) -> int:
    used = sum(p.package_size for p in ctx.state.profiles)
    return max(ctx.config.profile_memory - used, 0)


def _with_result(
    state: CardState,
    session: DownloadSession,
    final_result: tuple[str, dict[str, Any]],
    iccid: bytes | None,
) -> tuple[CardState, bytes]:
    """``state`` plus the signed ``BF37`` as a pending install notification (rule 7)."""
    seq = state.next_seq_number
    pending = PendingNotification(
        seq, NotificationEvent.INSTALL, session.server_address, iccid, b""
    )
    data = schema.encode(
        "ProfileInstallationResultData",
        {
            "transactionId": session.transaction_id,
            "notificationMetadata": metadata_value(pending),
            "smdpOid": session.smdp_oid,
            "finalResult": final_result,
        },
    )
    signature = session.chain.sign(data)
    encoded = tlv.encode_tlv(_TAG_RESULT, data + tlv.encode_tlv(_TAG_SIGNATURE, signature))
    pending = replace(pending, encoded=encoded)
    return (
        replace(state, notifications=state.notifications + (pending,), next_seq_number=seq + 1),
        encoded,
    )


def _failed(
    ctx: IsdrContext, session: DownloadSession, failure: _Failure, iccid: bytes | None
) -> bytes:
    """End the download with an error ``BF37``; commit nothing but that notification."""
    log.info("BPP failed: %s", failure)
    download.end(ctx)
    error: dict[str, Any] = {"bppCommandId": failure.command, "errorReason": failure.reason}
    if failure.sima_response is not None:
        error["simaResponse"] = failure.sima_response
    state, encoded = _with_result(ctx.state, session, ("errorResult", error), iccid)
    ctx.commit(state)
    return encoded


def _complete(ctx: IsdrContext, loader: _Loader) -> bytes:
    """After the last ``86``: install the profile and commit it with its ``BF37`` (rule 6)."""
    download.end(ctx)
    upp = bytes(loader.package)
    assert loader.profile is not None  # StoreMetadata came before any 86
    try:
        package = saip.read_package(upp)
    except saip.SaipError as exc:
        log.info("profile package refused: %s", exc)
        raise _Failure(LOAD_PROFILE_ELEMENTS, PE_PROCESSING_ERROR, _SIMA_BAD_PACKAGE) from None
    if package.iccid_ef != loader.profile.iccid:
        raise _Failure(LOAD_PROFILE_ELEMENTS, DATA_MISMATCH)
    profile = replace(loader.profile, package_size=len(upp))
    limits = {
        "max_profiles": ctx.config.max_profiles,
        "max_package_bytes": ctx.config.profile_memory,
    }
    # A dry run first, so a refused profile leaves no blob behind.
    if (refused := profiles.install(ctx.state, profile, **limits).result) != profiles.OK:
        raise _Failure(LOAD_PROFILE_ELEMENTS, refused)
    profile = replace(profile, package_digest=ctx.storage.put_blob(upp))
    t = profiles.install(ctx.state, profile, **limits)
    installed = t.state.profiles[-1]
    success = {"aid": installed.isdp_aid, "simaResponse": _SIMA_OK}
    # Remembered for SGP.32 ImmediateEnable, in the same commit as the install.
    last = LastDownload(installed.iccid, loader.session.smdp_oid, loader.session.server_address)
    state, encoded = _with_result(
        replace(t.state, last_download=last),
        loader.session,
        ("successResult", success),
        installed.iccid,
    )
    ctx.commit(state)
    log.info("profile %s installed in %s", installed.iccid.hex(), installed.isdp_aid.hex())
    return encoded


def load_bound_profile_package(ctx: IsdrContext, piece: bytes) -> bytes:
    """ES10b.LoadBoundProfilePackage: process one piece of a BPP (see the module rules).

    Returns ``b""`` for every piece but the last, which gets the ``BF37``; a failure gets
    its ``BF37`` at once.
    """
    if tlv.first_tag(piece) == _TAG_BPP:
        return _start(ctx, piece)
    loader = ctx.session.get(BPP_KEY)
    if not isinstance(loader, _Loader):
        raise StatusWordError(0x6A88)
    try:
        if not loader.feed(ctx, tlv.first_tag(piece), piece):
            return b""
        return _complete(ctx, loader)
    except _Failure as failure:
        return _failed(ctx, loader.session, failure, loader.iccid)


HANDLERS.handles("BoundProfilePackage")(
    RawHandler(load_bound_profile_package, continuation_tags=CONTINUATION_TAGS)
)
