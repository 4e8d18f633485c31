"""SGP.32 v1.2 local IoT functions and the profile rules SGP.32 adds to SGP.22's: immediate
enable, rollback, fallback, emergency profile (GSMA SGP.32 v1.2 §5.9, ES10b; eUICC packages
§2.11).

The base rules (one enabled profile, PPRs, notifications) stay in :mod:`euicc_sim.profiles`;
every switch here goes through :func:`euicc_sim.profiles.enable` / ``disable`` as
:attr:`~euicc_sim.profiles.Actor.EIM` (the eIM authorised these mechanisms), and creates the
usual enable/disable notifications. ``refreshFlag`` TRUE queues a REFRESH after the switch,
and catBusy (5) answers while a proactive command is outstanding (:mod:`euicc_sim.proactive`).

Rules
=====

1. Results of the local functions (checks in table order, first failure answers; a refused
   function changes nothing):

   ===============================  ==========================================  ===========
   function                         refused when                                result
   ===============================  ==========================================  ===========
   ImmediateEnable, ProfileRollback, refreshFlag TRUE while a proactive command    5
   ExecuteFallbackMechanism,        is outstanding (:mod:`euicc_sim.proactive`)  (catBusy)
   ReturnFromFallback
   ImmediateEnable ``BF5A``         no immediate-enable configuration, or its   1
                                    immediateEnableFlag is absent
                                    no ``last_download``, its profile is gone,   4
                                    or the download's SM-DP+ OID / address
                                    (case-insensitive) differs from the
                                    configured one (an absent one matches all)
                                    the profile rules refuse the enable         127
   ProfileRollback ``BF58``         no rollback recorded, the profile the       1
                                    rollback-enabled PSMO enabled is no longer
                                    enabled, the previous profile or the eIM
                                    is gone
                                    the profile rules refuse the enable         127
   ExecuteFallbackMechanism         no profile has the fallback attribute       6
   ``BF5D``                         the Fallback Profile is enabled             2
                                    the profile rules refuse the enable         127
   ReturnFromFallback ``BF5E``      no profile has the fallback attribute       6
                                    fallback mode is not active, or the         7
                                    Fallback Profile is no longer enabled
                                    the profile rules refuse the switch         127
   EnableEmergencyProfile ``BF5B``  always: no eCall support                    8
   DisableEmergencyProfile ``BF5C`` always: no emergency profile is enabled     2
   ConfigureImmediateProfile-       an eIM is configured (then only the PSMO    2
   Enabling ``BF59``                configureImmediateEnable may change it)
   GetConnectivityParameters        no httpParams stored (factory setting       1
   ``BF5F``                         ``CardState.connectivity_parameters``)
   IpaeActivation ``BF42``          always: this card's IPA is an IPAd          1
   ===============================  ==========================================  ===========

2. The card does not support the eCall emergency mechanism: EUICCInfo2 does not announce
   ecallSupported, and ecallActive (104) never occurs. It does support fallback
   (fallbackSupported is announced).
3. Immediate enable enables the profile of ``CardState.last_download`` (set by the download
   code when a profile is installed) and consumes it; a second call is noSessionContext.
4. Rollback: an ``enable`` PSMO with rollbackFlag records the previously enabled profile
   (rollbackNotAvailable (20) when none was enabled). ProfileRollback re-enables it and
   answers a new signed EuiccPackageResult for the original package (same eimId,
   counterValue and eimTransactionId, a new seqNumber, the original results followed by
   rollbackResult ok) that replaces the original in the pending results. The record ends
   with the rollback, with the next executed eUICC package, with any other switch by a
   function of this module, and with eUICCMemoryReset of the eIM configuration.
5. Fallback: at most one profile has the fallback attribute. ExecuteFallbackMechanism
   enables it and remembers the profile enabled before; ReturnFromFallback re-enables that
   one (or disables the Fallback Profile when none was enabled). Fallback mode ends with
   ReturnFromFallback, with any ``enable``/``disable`` PSMO, with ImmediateEnable and with
   ProfileRollback.
6. PSMO setFallbackAttribute: unknown ICCID iccidOrAidNotFound (1); the profile's metadata
   does not allow fallback fallbackNotAllowed (2); the profile that has the attribute now is
   enabled fallbackProfileEnabled (3); otherwise the attribute moves to the target.
   unsetFallbackAttribute: no profile has it noFallbackAttribute (2); that profile is
   enabled fallbackProfileEnabled (3).
7. PSMO ``delete`` of the profile a pending rollback would re-enable is rollbackNotAvailable
   (20), of the profile ReturnFromFallback would re-enable while fallback mode is active
   returnFallbackProfile (21); both only after the base rules allowed the delete. A record
   whose profile was switched away by other means (the SGP.22 ES10c functions, which this
   module does not watch) is stale: it neither guards nor can be used.
8. Stored EuiccPackageResults are listed by RetrieveNotificationsList (search criterion
   euiccPackageResults, or the seqNumber of a result) and removed by
   RemoveNotificationFromList, in :mod:`euicc_sim.es10b`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from euicc_protocol import schema, tlv

from . import eim, notifications, profiles
from .isdr import IsdrContext
from .profiles import Actor, Transition
from .registry import HandlerTable
from .state import (
    CardState,
    FallbackInfo,
    ImmediateEnableConfig,
    Profile,
    ProfileState,
    StoredPackageResult,
)

log = logging.getLogger(__name__)

HANDLERS = HandlerTable()

OK = 0
UNDEFINED_ERROR = 127
# ImmediateEnableResponse
IMMEDIATE_ENABLE_NOT_AVAILABLE = 1
NO_SESSION_CONTEXT = 4
# ProfileRollbackResponse
ROLLBACK_NOT_ALLOWED = 1
# ExecuteFallbackMechanism / ReturnFromFallback / emergency profile
PROFILE_NOT_IN_DISABLED_STATE = 2
PROFILE_NOT_IN_ENABLED_STATE = 2
FALLBACK_NOT_AVAILABLE = 6
COMMAND_ERROR = 7
ECALL_NOT_AVAILABLE = 8
# ConfigureImmediateProfileEnabling
ASSOCIATED_EIM_ALREADY_EXISTS = 2
# GetConnectivityParameters / IpaeActivation
PARAMETERS_NOT_AVAILABLE = 1
NOT_SUPPORTED = 1
# PSMO results of rules 4, 6 and 7
ROLLBACK_NOT_AVAILABLE = 20
RETURN_FALLBACK_PROFILE = 21
FALLBACK_NOT_ALLOWED = 2
FALLBACK_PROFILE_ENABLED = 3
NO_FALLBACK_ATTRIBUTE = 2


# --- rules (pure functions on the state) ------------------------------------------------------


def fallback_profile(state: CardState) -> Profile | None:
    """The Fallback Profile: the profile with the fallback attribute (rule 5)."""
    return next((p for p in state.profiles if p.fallback_attribute), None)


def _enabled_iccid(state: CardState) -> bytes | None:
    p = state.enabled_profile
    return None if p is None else p.iccid


def _with_attribute(state: CardState, iccid: bytes | None) -> CardState:
    """The state where exactly the profile ``iccid`` (or none) has the fallback attribute."""
    profiles_ = tuple(
        p
        if p.fallback_attribute == (p.iccid == iccid)
        else replace(p, fallback_attribute=not p.fallback_attribute)
        for p in state.profiles
    )
    return replace(state, profiles=profiles_)


def set_fallback_attribute(state: CardState, iccid: bytes) -> tuple[CardState, int]:
    """PSMO setFallbackAttribute (rule 6): the state after it and SetFallbackAttributeResult."""
    target = state.profile_by_iccid(iccid)
    if target is None:
        return state, profiles.ICCID_OR_AID_NOT_FOUND
    if not target.fallback_allowed:
        return state, FALLBACK_NOT_ALLOWED
    current = fallback_profile(state)
    if current is not None and current.state is ProfileState.ENABLED:
        return state, FALLBACK_PROFILE_ENABLED
    return _with_attribute(state, iccid), OK


def unset_fallback_attribute(state: CardState) -> tuple[CardState, int]:
    """PSMO unsetFallbackAttribute (rule 6): the state after it and its result code."""
    current = fallback_profile(state)
    if current is None:
        return state, NO_FALLBACK_ATTRIBUTE
    if current.state is ProfileState.ENABLED:
        return state, FALLBACK_PROFILE_ENABLED
    return _with_attribute(state, None), OK


def rollback_pending(state: CardState) -> bool:
    """Whether a rollback is recorded and the profile it enabled is still the enabled one.

    (Other functions, e.g. the SGP.22 ES10c ones, may have switched since; the record is then
    stale and ignored.)
    """
    info = state.rollback
    return info is not None and _enabled_iccid(state) == info.enabled_iccid


def fallback_active(state: CardState) -> bool:
    """Whether fallback mode is on: recorded, and the Fallback Profile is the enabled one."""
    target = fallback_profile(state)
    return (
        state.fallback is not None and target is not None and target.state is ProfileState.ENABLED
    )


def delete_guard(state: CardState, iccid: bytes) -> int:
    """Rule 7: why a delete the base rules allow must still be refused (OK: it need not)."""
    if rollback_pending(state) and state.rollback and state.rollback.previous_iccid == iccid:
        return ROLLBACK_NOT_AVAILABLE
    if fallback_active(state) and state.fallback and state.fallback.return_iccid == iccid:
        return RETURN_FALLBACK_PROFILE
    return OK


def _refused_switch(state: CardState) -> Transition:
    """A switch the base rules refused (e.g. PPR1): the local functions answer undefinedError."""
    return Transition(state, UNDEFINED_ERROR)


def _smdp_matches(config: ImmediateEnableConfig, oid: str, address: str) -> bool:
    if config.smdp_oid is not None and config.smdp_oid != oid:
        return False
    return config.smdp_address is None or config.smdp_address.casefold() == address.casefold()


def immediate_enable(state: CardState) -> Transition:
    """ImmediateEnable (rules 1, 3)."""
    config = state.immediate_enable
    if config is None or not config.enabled:
        return Transition(state, IMMEDIATE_ENABLE_NOT_AVAILABLE)
    download = state.last_download
    if (
        download is None
        or state.profile_by_iccid(download.iccid) is None
        or not _smdp_matches(config, download.smdp_oid, download.smdp_address)
    ):
        return Transition(state, NO_SESSION_CONTEXT)
    t = profiles.enable(state, iccid=download.iccid, actor=Actor.EIM)
    if not t.ok:
        return _refused_switch(state)
    new_state = replace(t.state, last_download=None, rollback=None, fallback=None)
    return Transition(new_state, OK, t.events)


def execute_fallback(state: CardState) -> Transition:
    """ExecuteFallbackMechanism (rules 1, 5)."""
    target = fallback_profile(state)
    if target is None:
        return Transition(state, FALLBACK_NOT_AVAILABLE)
    if target.state is ProfileState.ENABLED:
        return Transition(state, PROFILE_NOT_IN_DISABLED_STATE)
    t = profiles.enable(state, iccid=target.iccid, actor=Actor.EIM)
    if not t.ok:
        return _refused_switch(state)
    info = FallbackInfo(return_iccid=_enabled_iccid(state))
    return Transition(replace(t.state, fallback=info, rollback=None), OK, t.events)


def return_from_fallback(state: CardState) -> Transition:
    """ReturnFromFallback (rules 1, 5)."""
    target = fallback_profile(state)
    if target is None:
        return Transition(state, FALLBACK_NOT_AVAILABLE)
    if state.fallback is None or not fallback_active(state):
        return Transition(state, COMMAND_ERROR)
    back = state.fallback.return_iccid
    if back is not None and state.profile_by_iccid(back) is not None:
        t = profiles.enable(state, iccid=back, actor=Actor.EIM)
    else:
        t = profiles.disable(state, iccid=target.iccid, actor=Actor.EIM)
    if not t.ok:
        return _refused_switch(state)
    return Transition(replace(t.state, fallback=None, rollback=None), OK, t.events)


def rollback(state: CardState) -> Transition:
    """The profile switch of ProfileRollback (rules 1, 4); the new result is made by the handler."""
    info = state.rollback
    if (
        info is None
        or not rollback_pending(state)
        or state.profile_by_iccid(info.previous_iccid) is None
        or state.eim_config(info.eim_id) is None
    ):
        return Transition(state, ROLLBACK_NOT_ALLOWED)
    t = profiles.enable(state, iccid=info.previous_iccid, actor=Actor.EIM)
    if not t.ok:
        return _refused_switch(state)
    return Transition(replace(t.state, rollback=None, fallback=None), OK, t.events)


# --- handlers ---------------------------------------------------------------------------------


CAT_BUSY = 5


def _commit_switch(ctx: IsdrContext, t: Transition, request: dict) -> int:
    """Commit a successful switch with its notifications (and its REFRESH when refreshFlag
    asks for one); return the result code."""
    if t.ok:
        chain = ctx.credentials.chain_for(None)
        assert chain is not None
        ctx.commit(notifications.add_events(t.state, chain, t.events))
        ctx.refresh_after_switch(bool(request.get("refreshFlag")))
    return t.result


def _switch(ctx: IsdrContext, rule: Any, request: dict) -> int:
    if ctx.cat_busy(bool(request.get("refreshFlag"))):
        return CAT_BUSY
    return _commit_switch(ctx, rule(ctx.state), request)


def immediate_enable_result(ctx: IsdrContext, request: dict | None = None) -> int:
    """ImmediateEnable (rules 1, 3) committed; its result code (also v1.0.1 EnableUsingDD's,
    which has no refreshFlag)."""
    return _switch(ctx, immediate_enable, request or {})


@HANDLERS.handles("ImmediateEnableRequest")
def immediate_enable_handler(ctx: IsdrContext, request: dict) -> dict:
    return {"immediateEnableResult": immediate_enable_result(ctx, request)}


@HANDLERS.handles("ExecuteFallbackMechanismRequest")
def execute_fallback_mechanism(ctx: IsdrContext, request: dict) -> dict:
    return {"executeFallbackMechanismResult": _switch(ctx, execute_fallback, request)}


@HANDLERS.handles("ReturnFromFallbackRequest")
def return_from_fallback_handler(ctx: IsdrContext, request: dict) -> dict:
    return {"returnFromFallbackResult": _switch(ctx, return_from_fallback, request)}


@HANDLERS.handles("ProfileRollbackRequest")
def profile_rollback(ctx: IsdrContext, request: dict) -> bytes:
    """ProfileRollback (rule 4): switch back and answer the replacing signed result."""
    refresh = bool(request.get("refreshFlag"))
    if ctx.cat_busy(refresh):
        return schema.encode("ProfileRollbackResponse", {"cmdResult": CAT_BUSY})
    info = ctx.state.rollback
    t = rollback(ctx.state)
    if not t.ok or info is None:
        return schema.encode("ProfileRollbackResponse", {"cmdResult": t.result})
    chain = ctx.credentials.chain_for(None)
    assert chain is not None
    state = notifications.add_events(t.state, chain, t.events)
    config = state.eim_config(info.eim_id)
    assert config is not None  # rollback() checked it
    seq = state.next_seq_number
    items = info.results + schema.encode("EuiccResultData", ("rollbackResult", OK))
    data = eim.result_data_signed(
        info.eim_id, info.counter_value, info.eim_transaction_id, seq, items
    )
    epr = eim.package_result(eim.signing_chain(config, ctx.credentials), data, info.token_tlv)
    kept = tuple(r for r in state.package_results if r.seq_number != info.seq_number)
    stored = StoredPackageResult(seq, info.eim_id, epr)
    ctx.commit(replace(state, package_results=kept + (stored,), next_seq_number=seq + 1))
    ctx.refresh_after_switch(refresh)
    log.info(
        "rolled back to %s; result %d replaces %d", info.previous_iccid.hex(), seq, info.seq_number
    )
    cmd_result = tlv.encode_tlv(b"\x02", b"\x00")  # universal INTEGER: ProfileRollbackResponse
    return tlv.encode_tlv(b"\xbf\x58", cmd_result + epr)


@HANDLERS.handles("ConfigureImmediateProfileEnablingRequest")
def configure_immediate_profile_enabling(ctx: IsdrContext, request: dict) -> dict:
    if ctx.state.eim_configs:
        return {"configImmediateEnableResult": ASSOCIATED_EIM_ALREADY_EXISTS}
    ctx.commit(replace(ctx.state, immediate_enable=immediate_enable_config(request)))
    return {"configImmediateEnableResult": OK}


def immediate_enable_config(value: dict[str, Any]) -> ImmediateEnableConfig:
    """The configuration of a ConfigureImmediateProfileEnablingRequest or the PSMO."""
    return ImmediateEnableConfig(
        enabled="immediateEnableFlag" in value,
        smdp_oid=value.get("defaultSmdpOid"),
        smdp_address=value.get("defaultSmdpAddress"),
    )


@HANDLERS.handles("EnableEmergencyProfileRequest")
def enable_emergency_profile(ctx: IsdrContext, request: dict) -> dict:
    return {"enableEmergencyProfileResult": ECALL_NOT_AVAILABLE}


@HANDLERS.handles("DisableEmergencyProfileRequest")
def disable_emergency_profile(ctx: IsdrContext, request: dict) -> dict:
    return {"disableEmergencyProfileResult": PROFILE_NOT_IN_ENABLED_STATE}


@HANDLERS.handles("GetConnectivityParametersRequest")
def get_connectivity_parameters(ctx: IsdrContext, request: dict) -> tuple[str, Any]:
    params = ctx.state.connectivity_parameters
    if params is None:
        return ("connectivityParametersError", PARAMETERS_NOT_AVAILABLE)
    return ("connectivityParameters", {"httpParams": params})


@HANDLERS.handles("IpaeActivationRequest")
def ipae_activation(ctx: IsdrContext, request: dict) -> dict:
    return {"ipaeActivationResult": NOT_SUPPORTED}
