"""An SGP.32 v1.0.1 card: the ES10b forms v1.2 changed, as a card made with
``euicc-sim init --sgp32 1.0`` (``CardConfig.iot_versions`` ``((1, 0, 1),)``) answers them.

The card's rules (profiles, eIM packages, rollback, immediate enable) are those of v1.2; what
differs is the wire (SGP.32 v1.0.1 §5.9 against v1.2 §5.9):

==========================  =====================================  ===========================
function                    v1.0.1 card                            v1.2 card
==========================  =====================================  ===========================
eUICCMemoryReset            ``BF34``; resetOptions bits 3            ``BF64``; bits 3
                            resetEimConfigData, 4                    deletePreLoadedTestProfiles,
                            resetAutoEnableConfig; answer             4 deleteProvisioningProfiles,
                            resetEimResult ``81``,                    5 resetEimConfigData, 6
                            resetAutoEnableConfigResult ``82``        resetImmediateEnableConfig
EnableUsingDD /             ``BF5A`` empty → ``BF5A { 80 result }``  ImmediateEnable ``BF5A
ImmediateEnable                                                      { 01 refreshFlag }``
ExecuteFallbackMechanism,   not answered (6A88): v1.2 functions     answered
ReturnFromFallback,
Enable/DisableEmergency-
Profile, GetConnectivity-
Parameters, IpaeActivation,
SetDefaultDpAddress
``BF5B``-``BF5F``, ``BF42``,
``BF65``
EUICCInfo2 iotSpecificInfo  iotVersion 1.0.1 only                   iotVersion and
                                                                    fallbackSupported
EuiccPackageErrorUnsigned   no eimTransactionId                     ``82`` eimTransactionId
GetEimConfigurationData     no searchCriteria (every eIM); no       searchCriteria eimId;
                            ``89`` indirectProfileDownload          ``89`` when configured
==========================  =====================================  ===========================

Requests and answers of the functions in :data:`FUNCTIONS` are decoded and encoded with the
v1.0.1 module (``schema`` ``sgp32="1.0"``), with the same strict rules as every other.
"""

from __future__ import annotations

from typing import Any

from euicc_protocol import schema

from . import eim, es10c, iot
from .isdr import IsdrContext

__all__ = ["FUNCTIONS", "V1_2_ONLY_TAGS", "is_v1_0", "memory_reset_options"]

#: Request tags a v1.0.1 card does not answer (functions SGP.32 v1.2 added or moved).
V1_2_ONLY_TAGS = frozenset(
    bytes.fromhex(t) for t in ("BF64", "BF5B", "BF5C", "BF5D", "BF5E", "BF5F", "BF42", "BF65")
)

#: v1.0.1 resetOptions bit → the card's (v1.2) memory-reset option it means.
_RESET_BITS = {0: 0, 1: 1, 2: 2, 3: 5, 4: 6}


def is_v1_0(iot_versions: tuple[tuple[int, int, int], ...]) -> bool:
    """Whether a card announcing ``iot_versions`` speaks SGP.32 v1.0.1 (nothing newer)."""
    return bool(iot_versions) and all(v[:2] <= (1, 0) for v in iot_versions)


def memory_reset_options(bits: frozenset[int]) -> frozenset[int]:
    """The card's memory-reset options for v1.0.1 resetOptions bit positions (unknown bits
    are ignored, as a v1.2 card ignores bits it does not define)."""
    return frozenset(_RESET_BITS[b] for b in bits if b in _RESET_BITS)


def euicc_memory_reset(ctx: IsdrContext, request: dict[str, Any]) -> dict[str, Any]:
    """eUICCMemoryReset in its v1.0.1 form (``BF34``)."""
    t = es10c.memory_reset_transition(
        ctx, memory_reset_options(schema.bit_positions(request["resetOptions"]))
    )
    response: dict[str, Any] = {"resetResult": t.result}
    if t.reset_eim_result is not None:
        response["resetEimResult"] = t.reset_eim_result
    if t.reset_immediate_enable_config_result is not None:
        response["resetAutoEnableConfigResult"] = t.reset_immediate_enable_config_result
    return response


def enable_using_dd(ctx: IsdrContext, request: dict[str, Any]) -> dict[str, Any]:
    """EnableUsingDD (``BF5A``, v1.2's ImmediateEnable without refreshFlag; same rules and
    result codes)."""
    return {"enableUsingDDResult": iot.immediate_enable_result(ctx)}


#: request tag → (request type, response type, handler), all in the v1.0.1 module.
FUNCTIONS = {
    bytes.fromhex("BF34"): (
        "SGP32-EuiccMemoryResetRequest",
        "SGP32-EuiccMemoryResetResponse",
        euicc_memory_reset,
    ),
    bytes.fromhex("BF5A"): ("EnableUsingDDRequest", "EnableUsingDDResponse", enable_using_dd),
    # An empty SEQUENCE in v1.0.1: a v1.2 searchCriteria is an unknown extension, ignored.
    bytes.fromhex("BF55"): (
        "GetEimConfigurationDataRequest",
        "GetEimConfigurationDataResponse",
        eim.get_eim_configuration_data,
    ),
}
