"""ES10c: local profile management (GetProfilesInfo, Enable, Disable, Delete, SetNickname,
GetEID, eUICCMemoryReset in its SGP.22 and SGP.32 forms).

The rules themselves live in :mod:`euicc_sim.profiles`; this module only translates between
the ES10c messages and those rules, commits the new state and creates notifications.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from euicc_protocol import schema, tlv

from . import notifications, profiles
from .registry import HandlerTable
from .state import CardState, Profile, ProfileState

HANDLERS = HandlerTable()

_PROFILE_INFO_TYPE = "SGP32-ProfileInfo"
_UNDEFINED_ERROR = 127
CAT_BUSY = 5


@cache
def _profile_info_tags() -> dict[bytes, str]:
    """Encoded member tag -> ASN.1 field name of ProfileInfo, read from the schema."""
    compiled = schema.spec().types[_PROFILE_INFO_TYPE].type
    return {bytes(m.tag): m.name for m in compiled.root_members}


def _profile_fields(p: Profile) -> dict[str, Any]:
    value: dict[str, Any] = {
        "iccid": p.iccid,
        "isdpAid": p.isdp_aid,
        "profileState": int(p.state),
        "profileClass": int(p.profile_class),
    }
    if p.nickname is not None:
        value["profileNickname"] = p.nickname
    if p.service_provider_name is not None:
        value["serviceProviderName"] = p.service_provider_name
    if p.profile_name is not None:
        value["profileName"] = p.profile_name
    if p.icon_type is not None:
        value["iconType"] = p.icon_type
    if p.icon is not None:
        value["icon"] = p.icon
    if p.notification_config:
        value["notificationConfigurationInfo"] = [
            {
                "profileManagementOperation": schema.bits(int(e) for e in c.events),
                "notificationAddress": c.address,
            }
            for c in p.notification_config
        ]
    if p.profile_owner is not None:
        owner: dict[str, Any] = {"mccMnc": p.profile_owner.mcc_mnc}
        if p.profile_owner.gid1 is not None:
            owner["gid1"] = p.profile_owner.gid1
        if p.profile_owner.gid2 is not None:
            owner["gid2"] = p.profile_owner.gid2
        value["profileOwner"] = owner
    if p.fallback_attribute:  # BOOLEAN DEFAULT FALSE: DER leaves the default out
        value["fallbackAttribute"] = True
    if p.fallback_allowed:
        value["fallbackAllowed"] = True
    if p.ppr1 or p.ppr2:
        value["profilePolicyRules"] = schema.bits(
            bit for bit, on in ((1, p.ppr1), (2, p.ppr2)) if on
        )
    return value


@cache
def _encoded_profile_info(profile: Profile, wanted: frozenset[str] | None) -> bytes:
    # Profiles are immutable values, so (profile, tag set) fully determines the bytes.
    value = _profile_fields(profile)
    if wanted is not None:
        value = {k: v for k, v in value.items() if k in wanted}
    return schema.encode(_PROFILE_INFO_TYPE, value)


def _parse_tag_list(tag_list: bytes) -> frozenset[str] | None:
    known = _profile_info_tags()
    names = set()
    offset = 0
    while offset < len(tag_list):
        tag, offset = tlv.read_tag(tag_list, offset)
        name = known.get(tag)
        if name is not None:  # unknown tags are skipped: a newer LPA may ask for more
            names.add(name)
    return frozenset(names)


def _matches(p: Profile, criteria: tuple[str, Any] | None) -> bool:
    if criteria is None:
        return True
    kind, wanted = criteria
    if kind == "isdpAid":
        return p.isdp_aid == wanted
    if kind == "iccid":
        return p.iccid == wanted
    return int(p.profile_class) == wanted


@HANDLERS.handles("ProfileInfoListRequest")
def get_profiles_info(ctx: Any, request: dict) -> bytes:
    wanted: frozenset[str] | None = None
    if "tagList" in request:
        try:
            wanted = _parse_tag_list(request["tagList"])
        except tlv.TlvError:
            return schema.encode("SGP32-ProfileInfoListResponse", ("profileInfoListError", 1))
    elif not ctx.config.icon_in_default_profile_info:
        wanted = frozenset(_profile_info_tags().values()) - {"icon"}
    criteria = request.get("searchCriteria")
    infos = b"".join(
        _encoded_profile_info(p, wanted) for p in ctx.state.profiles if _matches(p, criteria)
    )
    # SEQUENCE OF inside an untagged CHOICE's first alternative: automatic tag A0.
    return tlv.encode_tlv(b"\xbf\x2d", tlv.encode_tlv(b"\xa0", infos))


def _target(choice: Any) -> dict[str, Any] | None:
    """profileIdentifier / DeleteProfileRequest CHOICE -> keyword for the rules module.

    None for an alternative this card does not know (EXTENSIBILITY IMPLIED lets one through).
    """
    kind, value = choice
    if kind == "iccid" and value is not None:
        return {"iccid": value}
    if kind == "isdpAid" and value is not None:
        return {"isdp_aid": value}
    return None


def _apply(ctx: Any, transition: profiles.Transition) -> None:
    if transition.result == 0:
        new_state = notifications.add_events(
            transition.state, ctx.credentials.chain_for(None), transition.events
        )
        ctx.commit(new_state)


def _profile_operation(ctx: Any, operation: Any, choice: Any) -> int:
    target = _target(choice)
    if target is None:
        return profiles.ICCID_OR_AID_NOT_FOUND
    t = operation(ctx.state, **target)
    _apply(ctx, t)
    return int(t.result)


def _switch(ctx: Any, operation: Any, request: dict) -> int:
    """Enable/Disable with refreshFlag: catBusy while a proactive command is outstanding,
    a REFRESH queued after a committed switch (:mod:`euicc_sim.proactive` rules 1-3)."""
    refresh = bool(request["refreshFlag"])
    if ctx.cat_busy(refresh):
        return CAT_BUSY
    result = _profile_operation(ctx, operation, request["profileIdentifier"])
    if result == 0:
        ctx.refresh_after_switch(refresh)
    return result


@HANDLERS.handles("EnableProfileRequest")
def enable_profile(ctx: Any, request: dict) -> dict:
    return {"enableResult": _switch(ctx, profiles.enable, request)}


@HANDLERS.handles("DisableProfileRequest")
def disable_profile(ctx: Any, request: dict) -> dict:
    return {"disableResult": _switch(ctx, profiles.disable, request)}


@HANDLERS.handles("DeleteProfileRequest")
def delete_profile(ctx: Any, request: tuple[str, bytes]) -> dict:
    return {"deleteResult": _profile_operation(ctx, profiles.delete, request)}


@HANDLERS.handles("SetNicknameRequest")
def set_nickname(ctx: Any, request: dict) -> dict:
    t = profiles.set_nickname(ctx.state, request["iccid"], request["profileNickname"])
    _apply(ctx, t)
    return {"setNicknameResult": t.result}


@HANDLERS.handles("GetEuiccDataRequest")
def get_eid(ctx: Any, request: dict) -> bytes:
    # The tag list SHALL be 5A; the response type has no other field and eidValue is
    # mandatory, so whatever the list says the only valid answer is the EID.
    cached = ctx.cache.get("eid-response")
    if cached is None:
        cached = schema.encode("GetEuiccDataResponse", {"eidValue": ctx.eid})
        ctx.cache["eid-response"] = cached
    return cached


def _memory_reset(ctx: Any, options: frozenset[int]) -> profiles.MemoryResetTransition:
    t = profiles.memory_reset(ctx.state, options)
    ctx.commit(t.state)  # a no-op when nothing changed
    return t


#: eUICCMemoryReset with the card's option numbers, committed (for the v1.0.1 form too).
memory_reset_transition = _memory_reset


@HANDLERS.handles("EuiccMemoryResetRequest")
def euicc_memory_reset(ctx: Any, request: dict) -> dict:
    options = schema.bit_positions(request["resetOptions"]) & {0, 1, 2}
    return {"resetResult": _memory_reset(ctx, options).result}


@HANDLERS.handles("SGP32-EuiccMemoryResetRequest")
def euicc_memory_reset_iot(ctx: Any, request: dict) -> dict:
    options = schema.bit_positions(request["resetOptions"])
    t = _memory_reset(ctx, options)
    response: dict[str, Any] = {"resetResult": t.result}
    if t.reset_eim_result is not None:
        response["resetEimResult"] = t.reset_eim_result
    if t.reset_immediate_enable_config_result is not None:
        response["resetImmediateEnableConfigResult"] = t.reset_immediate_enable_config_result
    return response


def enabled_iccid(state: CardState) -> bytes | None:
    """EF.ICCID content of the enabled profile (for the card's file system)."""
    p = state.enabled_profile
    return p.iccid if p is not None and p.state is ProfileState.ENABLED else None
