"""ES10b.LoadEuiccPackage (``BF51``, SGP.32 v1.2): verify an eIM-signed eUICC package, run
its PSMOs or eCOs, answer a signed EuiccPackageResult (SGP.32 v1.2 §2.11, §5.9).

Rules
=====

1. Checks, in order; the first failure answers and **changes nothing** on the card:

   ============================================  ==============================================
   condition                                     answer
   ============================================  ==============================================
   the request does not decode                   status word ``6A80``
   eimId not configured                          ``A2`` EuiccPackageErrorUnsigned {eimId,
                                                 eimTransactionId}
   eimSignature does not verify with the eIM's   ``A2`` {eimId, eimTransactionId, the eIM's
   key over the received euiccPackageSigned      associationToken}: unsigned, because the
   bytes followed by its token TLV               request is not authenticated
   eidValue is not this card's EID               ``A1`` signed error invalidEid (3)
   counterValue <= the eIM's stored counter      ``A1`` replayError (4)
   counterValue > :data:`MAX_COUNTER`            ``A1`` counterValueOutOfRange (6)
   more than :data:`MAX_OPERATIONS` operations    ``A1`` sizeOverflow (15)
   ============================================  ==============================================

   Signed errors carry no seqNumber and are not stored: the eIM gets them in the response.
2. An accepted package is executed and committed at once, in one commit: the new counter
   (stored before the operations run, so a failed operation does not roll it back and an
   updateEim of the sender may set it anew), every operation's effect, the notifications
   its profile switches create, and the signed result with the next seqNumber, which stays
   pending until RemoveNotificationFromList. The result is numbered after the notifications
   of its own operations.
3. Operations run in order, each on the state the previous ones left. A failed operation
   answers its error code, changes nothing, and does not stop the others. An operation this
   card does not know (an extension alternative) answers processingTerminated
   unknownOrDamagedCommand (2) and ends the package: later operations are not run.
4. PSMOs use :mod:`euicc_sim.profiles` as :attr:`~euicc_sim.profiles.Actor.EIM` (PPRs
   apply; provisioning profiles may be targeted), plus the SGP.32 rules of
   :mod:`euicc_sim.iot`: rollbackFlag (rollbackNotAvailable (20) when no profile is
   enabled), rollback and fallback delete guards (20, 21), the fallback attribute. A
   successful ``enable`` or ``disable`` ends fallback mode. listProfileInfo answers exactly
   what GetProfilesInfo would answer on the state at that point. getRAT answers the card's
   RAT. configureImmediateEnable replaces the immediate-enable configuration, ok (0).
   setDefaultDpAddress sets (or, when empty, clears) the default SM-DP+ address.
5. eCOs follow :mod:`euicc_sim.eim` (addEim, updateEim, deleteEim, listEim); an eIM may
   change or delete its own configuration.
6. The result (and a signed error) is signed with the eUICC chain of the sender's
   euiccCiPKId, over its DER followed by the token TLV the eimSignature verified with, as
   the sender was configured when the package arrived, even if the package changed it.
7. Executing a package ends a pending rollback (the eIM reached the device); an ``enable``
   with rollbackFlag in it records a new one (:mod:`euicc_sim.iot` rule 4).
8. A package whose PSMOs changed the enabled profile leaves a REFRESH pending once it is
   committed (:mod:`euicc_sim.proactive` rule 1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from euicc_protocol import schema, tlv
from euicc_protocol.records import evolve

from . import eim, es10b, es10c, iot, notifications, profiles
from .apdu import StatusWordError
from .config import CardConfig
from .ecasd import SigningChain
from .isdr import IsdrContext, RawHandler
from .profiles import Actor, Transition
from .registry import HandlerTable
from .state import CardState, EimConfig, RollbackInfo, StoredPackageResult

log = logging.getLogger(__name__)

HANDLERS = HandlerTable()

#: Largest counterValue accepted (the eIM configuration's limit too).
MAX_COUNTER = eim.MAX_COUNTER
#: Most operations one package may carry; more is sizeOverflow.
MAX_OPERATIONS = 32

# EuiccPackageErrorCode
INVALID_EID = 3
REPLAY_ERROR = 4
COUNTER_VALUE_OUT_OF_RANGE = 6
SIZE_OVERFLOW = 15
# processingTerminated
UNKNOWN_OR_DAMAGED_COMMAND = 2
OK = 0

_TAG_REQUEST = b"\xbf\x51"
_TAG_SIGNATURE = b"\x5f\x37"
_SIGNED: schema.FieldPath = ("euiccPackageSigned",)


@dataclass(frozen=True)
class Received:
    """A decoded EuiccPackageRequest with the received bytes signatures are checked over.

    Everything here comes from one strict parse (:func:`euicc_protocol.schema.decode_spans`):
    ``signed_bytes`` is the euiccPackageSigned TLV *of that parse* and ``operations`` are its
    operations, so the package that is verified is the package that runs.
    """

    signed: dict[str, Any]  # the decoded euiccPackageSigned
    signed_bytes: bytes  # the euiccPackageSigned TLV exactly as received
    signature: bytes  # eimSignature (r || s)
    operations: list[tuple[Any, schema.FieldPath]]  # decoded Psmo/Eco and its path in ``spans``
    raw: bytes  # the whole request
    spans: schema.Spans  # where each component of the parse lies in ``raw``

    @property
    def eim_id(self) -> str:
        return str(self.signed["eimId"])

    @property
    def transaction_id(self) -> bytes | None:
        tid = self.signed.get("eimTransactionId")
        return None if tid is None else bytes(tid)


def parse_request(request: bytes) -> Received:
    """Decode a LoadEuiccPackage request, once, strictly, with the spans of its parts.

    A second euiccPackageSigned, eimSignature or package list, bytes after the request, or
    any other encoding the strict decoder refuses never reaches the signature check.

    Raises:
        StatusWordError: ``6A80`` when it does not decode.
    """
    try:
        value, spans = schema.decode_spans("EuiccPackageRequest", request)
    except schema.DecodeError as exc:
        log.info("undecodable LoadEuiccPackage: %s", exc)
        raise StatusWordError(0x6A80) from None
    decoded = value["euiccPackageSigned"]
    kind, operations = decoded["euiccPackage"]
    if kind not in ("psmoList", "ecoList"):  # an extension alternative this card cannot run
        raise StatusWordError(0x6A80)
    start, end = spans[_SIGNED]
    paths = [(*_SIGNED, "euiccPackage", kind, i) for i in range(len(operations))]
    return Received(
        signed=decoded,
        signed_bytes=request[start:end],
        signature=value["eimSignature"],
        operations=list(zip(operations, paths, strict=True)),
        raw=request,
        spans=spans,
    )


# --- answers ----------------------------------------------------------------------------------


def _unsigned_error(received: Received, config: EimConfig | None, sgp32: str = "1.2") -> bytes:
    value: dict[str, Any] = {"eimId": received.eim_id}
    if received.transaction_id is not None and sgp32 != "1.0":  # v1.2 added the field
        value["eimTransactionId"] = received.transaction_id
    if config is not None and config.association_token is not None:
        value["associationToken"] = config.association_token
    return schema.encode("EuiccPackageResult", ("euiccPackageErrorUnsigned", value))


@dataclass(frozen=True)
class _Signer:
    """The sender as configured when the package arrived (rule 6)."""

    chain: SigningChain
    token_tlv: bytes

    def error(self, received: Received, code: int) -> bytes:
        value: dict[str, Any] = {
            "eimId": received.eim_id,
            "counterValue": received.signed["counterValue"],
            "euiccPackageErrorCode": code,
        }
        if received.transaction_id is not None:
            value["eimTransactionId"] = received.transaction_id
        data = schema.encode("EuiccPackageErrorDataSigned", value)
        return tlv.encode_tlv(
            _TAG_REQUEST, eim.signed_tlv(self.chain, b"\xa1", data, self.token_tlv)
        )


# --- execution ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ProfilesView:
    """What ES10c GetProfilesInfo reads from its context, over the package's working state."""

    state: CardState
    config: CardConfig


@dataclass
class _Run:
    """One package being executed: the working state and the results so far."""

    ctx: IsdrContext
    received: Received
    signer: _Signer
    state: CardState
    items: list[bytes] = field(default_factory=list)

    def result(self, choice: tuple[str, Any]) -> None:
        self.items.append(schema.encode("EuiccResultData", choice))

    def switch(self, t: Transition) -> None:
        """Take a successful profile operation, with its notifications."""
        chain = self.ctx.credentials.chain_for(None)
        assert chain is not None
        self.state = notifications.add_events(t.state, chain, t.events)


Operation = Callable[[_Run, Any, schema.FieldPath], None]


def _enable(run: _Run, value: dict, op: schema.FieldPath) -> None:
    before = run.state
    previous = before.enabled_profile
    t = profiles.enable(before, iccid=value["iccid"], actor=Actor.EIM)
    code = t.result
    wants_rollback = "rollbackFlag" in value
    if t.ok and wants_rollback and previous is None:
        code = iot.ROLLBACK_NOT_AVAILABLE
    if code == OK:
        run.switch(t)
        info = None
        if wants_rollback and previous is not None:
            # results and seq_number are filled in when the package is complete
            info = RollbackInfo(
                eim_id=run.received.eim_id,
                counter_value=run.received.signed["counterValue"],
                eim_transaction_id=run.received.transaction_id,
                previous_iccid=previous.iccid,
                enabled_iccid=bytes(value["iccid"]),
                results=b"",
                token_tlv=run.signer.token_tlv,
                seq_number=0,
            )
        run.state = evolve(run.state, rollback=info, fallback=None)
    run.result(("enableResult", code))


def _disable(run: _Run, value: dict, op: schema.FieldPath) -> None:
    t = profiles.disable(run.state, iccid=value["iccid"], actor=Actor.EIM)
    if t.ok:
        run.switch(t)
        run.state = evolve(run.state, rollback=None, fallback=None)
    run.result(("disableResult", t.result))


def _delete(run: _Run, value: dict, op: schema.FieldPath) -> None:
    t = profiles.delete(run.state, iccid=value["iccid"], actor=Actor.EIM)
    code = t.result
    if t.ok:
        code = iot.delete_guard(run.state, bytes(value["iccid"]))
    if code == OK:
        run.switch(t)
    run.result(("deleteResult", code))


def _list_profile_info(run: _Run, value: dict, op: schema.FieldPath) -> None:
    # listProfileInfoResult is [45] IMPLICIT SGP32-ProfileInfoListResponse: the BF2D that
    # GetProfilesInfo answers is exactly its encoding.
    view = _ProfilesView(run.state, run.ctx.config)
    run.items.append(es10c.get_profiles_info(view, value))


def _get_rat(run: _Run, value: dict, op: schema.FieldPath) -> None:
    run.result(("getRATResult", es10b.get_rat(run.ctx, {})["rat"]))


def _configure_immediate_enable(run: _Run, value: dict, op: schema.FieldPath) -> None:
    run.state = replace(run.state, immediate_enable=iot.immediate_enable_config(value))
    run.result(("configureImmediateEnableResult", OK))


def _set_fallback_attribute(run: _Run, value: dict, op: schema.FieldPath) -> None:
    run.state, code = iot.set_fallback_attribute(run.state, bytes(value["iccid"]))
    run.result(("setFallbackAttributeResult", code))


def _unset_fallback_attribute(run: _Run, value: dict, op: schema.FieldPath) -> None:
    run.state, code = iot.unset_fallback_attribute(run.state)
    run.result(("unsetFallbackAttributeResult", code))


def _set_default_dp_address(run: _Run, value: dict, op: schema.FieldPath) -> None:
    run.state = replace(run.state, default_dp_address=value["defaultDpAddress"] or None)
    run.result(("setDefaultDpAddressResult", {"setDefaultDpAddressResult": OK}))


def _add_eim(run: _Run, value: dict, op: schema.FieldPath) -> None:
    entry = eim.parse_entry(value, run.received.raw, run.received.spans, (*op, "addEim"))
    run.state, result = eim.add_eim(run.state, entry, run.ctx.credentials)
    run.result(("addEimResult", result))


def _update_eim(run: _Run, value: dict, op: schema.FieldPath) -> None:
    entry = eim.parse_entry(value, run.received.raw, run.received.spans, (*op, "updateEim"))
    run.state, code = eim.update_eim(run.state, entry, run.ctx.credentials)
    run.result(("updateEimResult", code))


def _delete_eim(run: _Run, value: dict, op: schema.FieldPath) -> None:
    run.state, code = eim.delete_eim(run.state, value["eimId"])
    run.result(("deleteEimResult", code))


def _list_eim(run: _Run, value: dict, op: schema.FieldPath) -> None:
    run.result(("listEimResult", ("eimIdList", eim.list_eim(run.state))))


_PSMOS: dict[str, Operation] = {
    "enable": _enable,
    "disable": _disable,
    "delete": _delete,
    "listProfileInfo": _list_profile_info,
    "getRAT": _get_rat,
    "configureImmediateEnable": _configure_immediate_enable,
    "setFallbackAttribute": _set_fallback_attribute,
    "unsetFallbackAttribute": _unset_fallback_attribute,
    "setDefaultDpAddress": _set_default_dp_address,
}
_ECOS: dict[str, Operation] = {
    "addEim": _add_eim,
    "updateEim": _update_eim,
    "deleteEim": _delete_eim,
    "listEim": _list_eim,
}


def _execute(run: _Run) -> None:
    """Run the operations in order (rule 3)."""
    table = _PSMOS if run.received.signed["euiccPackage"][0] == "psmoList" else _ECOS
    for (name, value), op in run.received.operations:
        operation = table.get(name) if name is not None else None
        if operation is None:
            run.result(("processingTerminated", UNKNOWN_OR_DAMAGED_COMMAND))
            return
        operation(run, value, op)


def load_euicc_package(ctx: IsdrContext, request: bytes) -> bytes:
    """ES10b.LoadEuiccPackage (see the module rules)."""
    received = parse_request(request)
    state = ctx.state
    config = state.eim_config(received.eim_id)
    if config is None:
        log.info("eUICC package from unknown eIM %r", received.eim_id)
        return _unsigned_error(received, None, ctx.config.sgp32)
    token_tlv = eim.verify_signature(
        config, ctx.credentials, received.signed_bytes, received.signature
    )
    if token_tlv is None:
        log.info("eUICC package from %r: eimSignature does not verify", received.eim_id)
        return _unsigned_error(received, config, ctx.config.sgp32)
    signer = _Signer(eim.signing_chain(config, ctx.credentials), token_tlv)
    counter = received.signed["counterValue"]
    if bytes(received.signed["eidValue"]) != ctx.eid:
        return signer.error(received, INVALID_EID)
    if counter <= config.counter_value:
        return signer.error(received, REPLAY_ERROR)
    if counter > MAX_COUNTER:
        return signer.error(received, COUNTER_VALUE_OUT_OF_RANGE)
    if len(received.operations) > MAX_OPERATIONS:
        return signer.error(received, SIZE_OVERFLOW)

    stored = evolve(config, counter_value=counter)
    configs = tuple(stored if c is config else c for c in state.eim_configs)
    run = _Run(ctx, received, signer, evolve(state, eim_configs=configs, rollback=None))
    _execute(run)

    state = run.state
    seq = state.next_seq_number
    items = b"".join(run.items)
    data = eim.result_data_signed(received.eim_id, counter, received.transaction_id, seq, items)
    epr = eim.package_result(signer.chain, data, token_tlv)
    result = StoredPackageResult(seq, received.eim_id, epr)
    state = evolve(
        state, package_results=state.package_results + (result,), next_seq_number=seq + 1
    )
    if state.rollback is not None:
        state = replace(state, rollback=replace(state.rollback, results=items, seq_number=seq))
    switched = _enabled_iccid(state) != _enabled_iccid(ctx.state)
    ctx.commit(state)
    if switched:  # PSMOs carry no refreshFlag: the card always asks for the reset (rule 8)
        ctx.proactive.queue_refresh()
    return epr


def _enabled_iccid(state: CardState) -> bytes | None:
    p = state.enabled_profile
    return None if p is None else p.iccid


HANDLERS.handles("EuiccPackageRequest")(RawHandler(load_euicc_package))
