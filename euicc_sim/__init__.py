"""euicc-sim: a software GSMA eUICC (SGP.22 / SGP.32).

The names most programs need are importable from the package root, each loaded from its module
on first use::

    from euicc_sim import Euicc

    card = Euicc.create("card")           # a new card kept in the directory "card"
    card.preload(profile_package, enable=True)
    response = card.transmit(bytes.fromhex("00A4040010A0000005591010FFFFFFFF8900000100"))

The card never imports the IPAd or the reference servers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from euicc_sim.card import CardBusy, CardError, Euicc
    from euicc_sim.config import CardConfig
    from euicc_sim.state import ProfileClass, ProfileState
    from euicc_sim.storage import StorageError

#: Public name -> the module that defines it.
_EXPORTS = {
    "CardBusy": "euicc_sim.card",
    "CardError": "euicc_sim.card",
    "Euicc": "euicc_sim.card",
    "CardConfig": "euicc_sim.config",
    "ProfileClass": "euicc_sim.state",
    "ProfileState": "euicc_sim.state",
    "StorageError": "euicc_sim.storage",
}

__all__ = [
    "__version__",
    "CardBusy",
    "CardConfig",
    "CardError",
    "Euicc",
    "ProfileClass",
    "ProfileState",
    "StorageError",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from euicc_protocol.version import version

        return version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'euicc_sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
