"""The SGP.32 versions the IPAd speaks, and how one is picked from a card's iotVersion list.

SGP.32 v1.0.1 and v1.2 are not wire compatible (ESipa ProvideEimPackageResult and
GetEimPackage, IpaEuiccData tags, ES10b eUICCMemoryReset and immediate enable, ...; see
``docs/sgp32-versions.md``). Both are spoken; the card's EUICCInfo2 iotVersion says which, and
configuration may override it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = ["Sgp32Version", "version_of"]


class Sgp32Version(enum.StrEnum):
    """An SGP.32 version as the protocol package names it (``schema.decode(..., sgp32=v)``)."""

    V1_0 = "1.0"  # v1.0.1 (v1.0.0 and v1.0.2 share its ASN.1)
    V1_2 = "1.2"

    @property
    def label(self) -> str:
        """The version as the standard's front page writes it."""
        return "v1.0.1" if self is Sgp32Version.V1_0 else "v1.2"


def version_of(iot_versions: Iterable[bytes]) -> Sgp32Version:
    """The highest version this IPAd speaks among a card's iotVersion values (3-byte
    VersionType, major.minor.revision); v1.2 for an empty list or only later versions.

    A 1.1.x or later card speaks v1.2's ASN.1 as far as this IPAd is concerned; only a card
    that announces nothing newer than 1.0.x is spoken to in v1.0.1.
    """
    majors = [tuple(v[:2]) for v in iot_versions if len(v) >= 2]
    if majors and all(v <= (1, 0) for v in majors):
        return Sgp32Version.V1_0
    return Sgp32Version.V1_2
