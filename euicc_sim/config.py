"""Fixed, per-card configuration chosen when the card is made (what a factory burns in)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class RatRule:
    """One ProfilePolicyAuthorisationRule: which PPRs which operators may set."""

    ppr_ids: tuple[int, ...]  # PprIds bit positions: ppr1 = 1, ppr2 = 2
    operators: tuple[str, ...]  # mccMnc as 6 hex digits; 'E' nibbles are wildcards
    flags: tuple[int, ...] = ()  # pprFlags bit positions: consentRequired = 0


#: iotVersion announced by a card of each SGP.32 version (``euicc-sim init --sgp32``).
IOT_VERSIONS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "1.0": ((1, 0, 1),),
    "1.2": ((1, 2, 0),),
}

#: Any operator may set PPR1 and PPR2, with end-user consent.
DEFAULT_RAT = (RatRule((1, 2), ("EEEEEE",), (0,)),)

#: Card kinds: an SGP.32 v1.2 IoT eUICC (profile management only through eIM packages and
#: the SGP.32 ES10b functions) or an SGP.22 v2.5 consumer eUICC (local ES10c management).
IOT = "iot"
CONSUMER = "consumer"
KINDS = (IOT, CONSUMER)


@dataclass(frozen=True)
class CardConfig:
    """Card identity, versions and capacities; stored as ``config.json`` in the card directory.

    Versions are ``(major, minor, revision)`` as VersionType encodes them.
    """

    eid: str
    #: ``"iot"`` (SGP.32) or ``"consumer"`` (SGP.22): which ES10 functions the ISD-R offers.
    kind: str = IOT
    svn: tuple[int, int, int] = (2, 5, 0)
    profile_version: tuple[int, int, int] = (2, 3, 1)
    firmware_version: tuple[int, int, int] = (0, 1, 0)
    ts102241_version: tuple[int, int, int] = (15, 1, 0)
    globalplatform_version: tuple[int, int, int] = (2, 3, 0)
    pp_version: tuple[int, int, int] = (1, 0, 0)
    iot_versions: tuple[tuple[int, int, int], ...] = ((1, 2, 0),)
    sas_accreditation_number: str = "EUICC-SIM-TEST"
    max_profiles: int = 16
    #: Free non-volatile memory for profile packages, in bytes (reported in extCardResource).
    profile_memory: int = 1_000_000
    root_ds_address: str = "testrootsmds.example.com"
    #: Revoked certificates LoadCRL may keep, over all CIs (notEnoughMemorySpace beyond).
    max_crl_entries: int = 10_000
    #: Whether GetProfilesInfo without a tag list includes the icon.
    icon_in_default_profile_info: bool = True
    rat: tuple[RatRule, ...] = DEFAULT_RAT

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"card kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def is_iot(self) -> bool:
        """Whether this is an SGP.32 IoT eUICC."""
        return self.kind == IOT

    @property
    def sgp32(self) -> str:
        """The SGP.32 version the card speaks: "1.0" when ``iot_versions`` announces nothing
        newer than 1.0.x (see :mod:`euicc_sim.iot_v1_0`), else "1.2"."""
        versions = self.iot_versions
        return "1.0" if versions and all(v[:2] <= (1, 0) for v in versions) else "1.2"

    def to_json(self) -> bytes:
        """Serialise for the card directory."""
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CardConfig:
        """Parse ``config.json``; unknown keys are ignored so newer files still open."""
        raw = json.loads(data)
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {k: _tuples(v) for k, v in raw.items() if k in known}
        if "rat" in kwargs:
            kwargs["rat"] = tuple(
                RatRule(**{k: tuple(v) for k, v in rule.items()}) for rule in raw["rat"]
            )
        return cls(**kwargs)


def _tuples(value: object) -> object:
    """JSON arrays back to (nested) tuples, as the frozen dataclass declares them."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
