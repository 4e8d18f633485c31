"""ES10a: the eUICC's configured addresses (default SM-DP+, root SM-DS)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .registry import HandlerTable

HANDLERS = HandlerTable()


@HANDLERS.handles("EuiccConfiguredAddressesRequest")
def get_euicc_configured_addresses(ctx: Any, request: dict) -> dict:
    state = ctx.state
    value: dict[str, Any] = {"rootDsAddress": state.root_ds_address}
    if state.default_dp_address:
        value["defaultDpAddress"] = state.default_dp_address
    return value


@HANDLERS.handles("SetDefaultDpAddressRequest", "SGP32-SetDefaultDpAddressRequest")
def set_default_dp_address(ctx: Any, request: dict) -> dict:
    """SGP.22 ``BF3F`` and the SGP.32 ``BF65`` form (same content, same result field)."""
    # An empty address clears the default SM-DP+ (SGP.22 allows it).
    address = request["defaultDpAddress"] or None
    ctx.commit(replace(ctx.state, default_dp_address=address))
    return {"setDefaultDpAddressResult": 0}
