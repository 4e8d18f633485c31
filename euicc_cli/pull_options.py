"""The pull-flow options ``ipa poll`` and ``ipa fleet`` share, and the PullConfig they make."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipa.pull import PullConfig

__all__ = ["add_pull_options", "pull_config"]


def add_pull_options(
    p: argparse.ArgumentParser, *, initial_eim_help: str, initial_eim_metavar: str = "FILE.der"
) -> None:
    """ESipa binding, initial eIM, poll interval and TLS trust options."""
    p.add_argument("--binding", choices=("asn1", "json"), default="asn1", help="ESipa binding")
    p.add_argument("--initial-eim", metavar=initial_eim_metavar, help=initial_eim_help)
    p.add_argument(
        "--interval", type=float, default=60.0, metavar="S", help="seconds between polls"
    )
    p.add_argument(
        "--ca-cert",
        action="append",
        default=[],
        metavar="PEM",
        help="trust anchor for the eIM and SM-DP+ TLS certificates (repeatable)",
    )
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument(
        "--sgp32",
        choices=("1.0", "1.2"),
        help="SGP.32 version to speak with the eIM (default: the card's EUICCInfo2 iotVersion)",
    )


def pull_config(args: argparse.Namespace, **fields: Any) -> PullConfig:
    """The PullConfig of the options :func:`add_pull_options` added (``fields`` override)."""
    from ipa.es9p import Es9Config, load_trust_anchors
    from ipa.esipa import Binding, EsipaConfig
    from ipa.pull import Backoff, PullConfig

    anchors = load_trust_anchors(args.ca_cert)
    settings: dict[str, Any] = {
        "esipa": EsipaConfig(
            binding=Binding(args.binding), ca_certificates=anchors, insecure=args.insecure
        ),
        "es9": Es9Config(ca_certificates=anchors, insecure=args.insecure),
        "initial_eim": args.initial_eim,
        "backoff": Backoff(interval=args.interval),
        "sgp32": getattr(args, "sgp32", None),
    }
    return PullConfig(**(settings | fields))
