"""The IoT Profile Assistant (IPAd): ES10 client, card transports and flows.

The names most programs need are importable from the package root; each is loaded from its
module on first use, so ``import ipa`` costs nothing until then::

    from ipa import Es10Client, InProcessTransport

    with Es10Client.open(transport) as client:
        print(client.get_eid())

The IPAd never imports the card emulator or the reference servers: it runs against a physical
card (:func:`open_reader_transport`, PC/SC) as well as an emulated one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipa.activation import ActivationCode, parse_activation_code
    from ipa.channel import ChannelConfig
    from ipa.device import Ipad
    from ipa.download import DownloadError, DownloadResult, download_profile, download_profile_sync
    from ipa.errors import Es10Error, IpaError, StatusWordError, TransportError
    from ipa.es9p import Es9Config
    from ipa.es10 import Es10Client
    from ipa.esipa import EsipaConfig
    from ipa.fleet import Fleet, FleetConfig
    from ipa.notifications import process_notifications, process_notifications_sync
    from ipa.pcsc import list_readers, open_reader_transport
    from ipa.pull import PullConfig, PullFlow
    from ipa.transport import InProcessTransport, Transport
    from ipa.types import ProfileInfo

#: Public name -> the module that defines it.
_EXPORTS = {
    "ActivationCode": "ipa.activation",
    "parse_activation_code": "ipa.activation",
    "ChannelConfig": "ipa.channel",
    "Ipad": "ipa.device",
    "DownloadError": "ipa.download",
    "DownloadResult": "ipa.download",
    "download_profile": "ipa.download",
    "download_profile_sync": "ipa.download",
    "Es10Error": "ipa.errors",
    "IpaError": "ipa.errors",
    "StatusWordError": "ipa.errors",
    "TransportError": "ipa.errors",
    "Es9Config": "ipa.es9p",
    "Es10Client": "ipa.es10",
    "EsipaConfig": "ipa.esipa",
    "Fleet": "ipa.fleet",
    "FleetConfig": "ipa.fleet",
    "process_notifications": "ipa.notifications",
    "process_notifications_sync": "ipa.notifications",
    "list_readers": "ipa.pcsc",
    "open_reader_transport": "ipa.pcsc",
    "PullConfig": "ipa.pull",
    "PullFlow": "ipa.pull",
    "InProcessTransport": "ipa.transport",
    "Transport": "ipa.transport",
    "ProfileInfo": "ipa.types",
}

__all__ = [
    "__version__",
    "ActivationCode",
    "ChannelConfig",
    "download_profile",
    "download_profile_sync",
    "DownloadError",
    "DownloadResult",
    "Es10Client",
    "Es10Error",
    "Es9Config",
    "EsipaConfig",
    "Fleet",
    "FleetConfig",
    "InProcessTransport",
    "Ipad",
    "IpaError",
    "list_readers",
    "open_reader_transport",
    "parse_activation_code",
    "process_notifications",
    "process_notifications_sync",
    "ProfileInfo",
    "PullConfig",
    "PullFlow",
    "StatusWordError",
    "Transport",
    "TransportError",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from euicc_protocol.version import version

        return version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ipa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
