"""ES10b functions that are not part of a download: card information, challenge, RAT,
notifications and (SGP.32) GetCerts.

The download functions (AuthenticateServer, PrepareDownload, LoadBoundProfilePackage,
CancelSession) and the SGP.32 eIM functions live in their own modules.
"""

from __future__ import annotations

from typing import Any

from euicc_protocol import schema, tlv

from . import gp, notifications
from .registry import HandlerTable

HANDLERS = HandlerTable()

# RspCapability bits (RSPDefinitions)
_ADDITIONAL_PROFILE = 0
_CRL_SUPPORT = 1  # ES10b.LoadCRL (euicc_sim.crl)
_TEST_PROFILE_SUPPORT = 3
_DEVICE_INFO_EXTENSIBILITY = 4
# UICCCapability bits (PEDefinitions) this emulator accepts in profile packages.
_UICC_CAPABILITIES = (1, 2, 3, 4, 6, 7, 8, 10, 11, 14, 16, 17, 18, 19, 22, 23, 24)


def _version(v: tuple[int, int, int]) -> bytes:
    return bytes(v)


def _ext_card_resource(ctx: Any) -> bytes:
    """ETSI TS 102 226 extended card resource: installed applications, free NVM, free RAM."""
    return gp.ext_card_resources(ctx.state, ctx.config.profile_memory)


@HANDLERS.handles("GetEuiccInfo1Request")
def get_euicc_info1(ctx: Any, request: dict) -> dict:
    return {
        "svn": _version(ctx.config.svn),
        "euiccCiPKIdListForVerification": ctx.credentials.pkids_for_verification,
        "euiccCiPKIdListForSigning": ctx.credentials.pkids_for_signing,
    }


def euicc_info2_value(ctx: Any) -> dict:
    """The SGP32-EUICCInfo2 value of this card (also embedded in euiccSigned1)."""
    cfg = ctx.config
    rsp_caps = [_CRL_SUPPORT, _TEST_PROFILE_SUPPORT, _DEVICE_INFO_EXTENSIBILITY]
    if len(ctx.state.profiles) < cfg.max_profiles:
        rsp_caps.append(_ADDITIONAL_PROFILE)
    return {
        "profileVersion": _version(cfg.profile_version),
        "svn": _version(cfg.svn),
        "euiccFirmwareVer": _version(cfg.firmware_version),
        "extCardResource": _ext_card_resource(ctx),
        "uiccCapability": schema.bits(_UICC_CAPABILITIES),
        "ts102241Version": _version(cfg.ts102241_version),
        "globalplatformVersion": _version(cfg.globalplatform_version),
        "rspCapability": schema.bits(rsp_caps),
        "euiccCiPKIdListForVerification": ctx.credentials.pkids_for_verification,
        "euiccCiPKIdListForSigning": ctx.credentials.pkids_for_signing,
        "ppVersion": _version(cfg.pp_version),
        "sasAcreditationNumber": cfg.sas_accreditation_number,
        "ipaMode": 0,  # ipad: the IPA runs in the device
        # fallbackSupported; no ecallSupported: the card has no eCall support (see iot.py).
        # A v1.0.1 card has neither field (nor the fallback functions; see iot_v1_0.py).
        "iotSpecificInfo": {"iotVersion": [_version(v) for v in cfg.iot_versions]}
        | ({} if cfg.sgp32 == "1.0" else {"fallbackSupported": None}),
    }


#: EUICCInfo2 components SGP.32 adds; a consumer card (SGP.22) leaves them out.
_SGP32_INFO2_FIELDS = (
    "ipaMode",
    "euiccCiPKIdListForSigningV3",
    "additionalEuiccInfo",
    "highestSvn",
    "iotSpecificInfo",
)


def euicc_info2(ctx: Any) -> bytes:
    """This card's EUICCInfo2: the SGP.32 form on an IoT card, the SGP.22 form otherwise."""
    value = euicc_info2_value(ctx)
    if ctx.config.is_iot:
        return schema.encode("SGP32-EUICCInfo2", value)
    for name in _SGP32_INFO2_FIELDS:
        value.pop(name, None)
    return schema.encode("EUICCInfo2", value)


@HANDLERS.handles("GetEuiccInfo2Request")
def get_euicc_info2(ctx: Any, request: dict) -> bytes:
    return euicc_info2(ctx)


@HANDLERS.handles("LpaeActivationRequest")
def lpae_activation(ctx: Any, request: dict) -> dict:
    # SGP.22 consumer card: no LPAe in this card.
    return {"lpaeActivationResult": 1}  # notSupported


@HANDLERS.handles("GetEuiccChallengeRequest")
def get_euicc_challenge(ctx: Any, request: dict) -> dict:
    # A new challenge starts a new RSP session and abandons any earlier one.
    challenge = ctx.random_bytes(16)
    ctx.session.clear()
    ctx.session["challenge"] = challenge
    return {"euiccChallenge": challenge}


@HANDLERS.handles("GetRatRequest")
def get_rat(ctx: Any, request: dict) -> dict:
    rules = []
    for rule in ctx.config.rat:
        rules.append(
            {
                "pprIds": schema.bits(rule.ppr_ids),
                "allowedOperators": [{"mccMnc": bytes.fromhex(op)} for op in rule.operators],
                "pprFlags": schema.bits(rule.flags),
            }
        )
    return {"rat": rules}


def _events_filter(request: dict, field: str) -> frozenset[int] | None:
    if field not in request:
        return None
    return schema.bit_positions(request[field])


@HANDLERS.handles("ListNotificationRequest")
def list_notification(ctx: Any, request: dict) -> tuple[str, Any]:
    found = notifications.select(
        ctx.state, events=_events_filter(request, "profileManagementOperation")
    )
    return ("notificationMetadataList", [notifications.metadata_value(n) for n in found])


@HANDLERS.handles("SGP32-RetrieveNotificationsListRequest", "RetrieveNotificationsListRequest")
def retrieve_notifications_list(ctx: Any, request: dict) -> bytes:
    criteria = request.get("searchCriteria")
    if criteria is not None and criteria[0] == "euiccPackageResults":
        # SGP.32: the stored EuiccPackageResults (BF51), exactly as signed.
        results = b"".join(r.encoded for r in ctx.state.package_results)
        return tlv.encode_tlv(b"\xbf\x2b", tlv.encode_tlv(b"\xa2", results))
    seq = criteria[1] if criteria is not None and criteria[0] == "seqNumber" else None
    if seq is not None and (result := ctx.state.package_result(seq)) is not None:
        # Results share the seqNumber space with notifications; a result is no
        # PendingNotification, so it comes back in the euiccPackageResultList alternative.
        return tlv.encode_tlv(b"\xbf\x2b", tlv.encode_tlv(b"\xa2", result.encoded))
    events = (
        schema.bit_positions(criteria[1])
        if criteria is not None and criteria[0] == "profileManagementOperation"
        else None
    )
    found = notifications.select(ctx.state, seq_number=seq, events=events)
    # The stored TLVs are exactly what was signed; they are sent as they are.
    body = b"".join(n.encoded for n in found)
    return tlv.encode_tlv(b"\xbf\x2b", tlv.encode_tlv(b"\xa0", body))


@HANDLERS.handles("NotificationSentRequest")
def remove_notification_from_list(ctx: Any, request: dict) -> dict:
    seq = request["seqNumber"]
    # A seqNumber names a notification or (SGP.32) a stored EuiccPackageResult.
    new_state = notifications.remove(ctx.state, seq) or ctx.state.without_package_result(seq)
    if new_state is None:
        return {"deleteNotificationStatus": 1}  # nothingToDelete
    ctx.commit(new_state)
    return {"deleteNotificationStatus": 0}


@HANDLERS.handles("GetCertsRequest")
def get_certs(ctx: Any, request: dict) -> bytes:
    chain = ctx.credentials.chain_for(request.get("euiccCiPKId"))
    if chain is None:
        return schema.encode("GetCertsResponse", ("getCertsError", 1))  # invalidCiPKId
    # [5]/[6] IMPLICIT Certificate: the context tag replaces the certificate's outer 30.
    certs = (b"\xa5" + chain.eum_certificate[1:]) + (b"\xa6" + chain.euicc_certificate[1:])
    return tlv.encode_tlv(b"\xbf\x56", tlv.encode_tlv(b"\xa0", certs))
