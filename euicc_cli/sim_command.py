"""``euicc-sim``: make, load and inspect software eUICCs kept in directories."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from euicc_protocol.crypto import Curve
from euicc_protocol.iccid import iccid_from_ef
from euicc_sim.card import CardError, Euicc
from euicc_sim.state import ProfileClass, ProfileState
from euicc_sim.vpcd import add_serve_command

_CURVES = {
    "nist": (Curve.NIST_P256,),
    "brainpool": (Curve.BRAINPOOL_P256R1,),
    "both": (Curve.NIST_P256, Curve.BRAINPOOL_P256R1),
}


def card_summary(card: Euicc) -> dict:
    """The card's identity, profiles and notifications, keyed by ASN.1 field names."""
    state = card.state
    return {
        "eid": card.eid,
        "euiccCiPKIdListForSigning": [k.hex().upper() for k in card.credentials.pkids_for_signing],
        "euiccCiPKIdListForVerification": [
            k.hex().upper() for k in card.credentials.pkids_for_verification
        ],
        "defaultDpAddress": state.default_dp_address,
        "rootDsAddress": state.root_ds_address,
        "profileInfoList": [
            {
                "iccid": iccid_from_ef(p.iccid),
                "isdpAid": p.isdp_aid.hex().upper(),
                "profileState": ProfileState(p.state).name.lower(),
                "profileNickname": p.nickname,
                "serviceProviderName": p.service_provider_name,
                "profileName": p.profile_name,
                "profileClass": ProfileClass(p.profile_class).name.lower(),
                "profilePolicyRules": [n for n, on in (("ppr1", p.ppr1), ("ppr2", p.ppr2)) if on],
            }
            for p in state.profiles
        ],
        "notificationList": [
            {
                "seqNumber": n.seq_number,
                "profileManagementOperation": n.event.name.lower(),
                "notificationAddress": n.address,
                "iccid": iccid_from_ef(n.iccid) if n.iccid else None,
            }
            for n in state.notifications
        ],
    }


def _print_summary(summary: dict) -> None:
    print(f"EID {summary['eid']}")
    print(f"default SM-DP+ {summary['defaultDpAddress'] or '-'}")
    print(f"root SM-DS     {summary['rootDsAddress']}")
    print(f"profiles ({len(summary['profileInfoList'])}):")
    for p in summary["profileInfoList"]:
        nick = f" '{p['profileNickname']}'" if p["profileNickname"] else ""
        print(
            f"  {p['iccid']:<20} {p['profileState']:<8} {p['profileClass']:<12} "
            f"{p['isdpAid']} {p['profileName'] or ''}{nick}"
        )
    print(f"pending notifications ({len(summary['notificationList'])}):")
    for n in summary["notificationList"]:
        print(
            f"  #{n['seqNumber']} {n['profileManagementOperation']} {n['iccid']} -> "
            f"{n['notificationAddress']}"
        )


class _StoppedAt(Exception):
    """A command over several cards stopped at one of them (the earlier ones are done)."""


@contextlib.contextmanager
def _naming(directory: str, several: bool) -> Iterator[None]:
    """With several cards, a failure names the card it stopped at."""
    try:
        yield
    except (CardError, OSError, ValueError) as exc:
        if not several:
            raise
        raise _StoppedAt(f"{directory}: {exc} (stopped there)") from exc


def _init(args: argparse.Namespace) -> int:
    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    one_card_only = {"--eid": args.eid, "--euicc-key": args.euicc_key}
    if len(args.directories) > 1:
        for option, value in one_card_only.items():
            if value is not None:
                raise ValueError(f"{option} makes one card; give one directory")
    ci_certificates = [Path(p).read_bytes() for p in args.ci_cert or ()]
    for directory in args.directories:
        with _naming(directory, len(args.directories) > 1):
            card = Euicc.create(
                directory,
                eid=args.eid,
                curves=_CURVES[args.curve],
                pki=args.pki,
                euicc_key=read(args.euicc_key),
                euicc_certificate=read(args.euicc_cert),
                eum_certificate=read(args.eum_cert),
                ci_certificates=ci_certificates,
                kind=args.kind,
            )
        print(f"created eUICC {card.eid} in {directory} ({card.kind})")
    return 0


def _preload(args: argparse.Namespace) -> int:
    package = Path(args.package).read_bytes()
    for directory in args.directories:
        with _naming(directory, len(args.directories) > 1):
            profile = Euicc.open(directory).preload(
                package,
                iccid=args.iccid,
                profile_name=args.name,
                service_provider_name=args.provider,
                profile_class=ProfileClass[args.profile_class.upper()]
                if args.profile_class
                else None,
                nickname=args.nickname,
                notification_address=args.notify,
                ppr1=args.ppr1,
                ppr2=args.ppr2,
                enable=args.enable,
            )
        state = "enabled" if profile.state is ProfileState.ENABLED else "disabled"
        iccid = iccid_from_ef(profile.iccid)
        where = f" in {directory}" if len(args.directories) > 1 else ""
        print(f"preloaded {iccid} as {profile.isdp_aid.hex().upper()} ({state}){where}")
    return 0


def _info(args: argparse.Namespace) -> int:
    summary = card_summary(Euicc.open(args.directory))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``euicc-sim`` argument parser."""
    parser = argparse.ArgumentParser(prog="euicc-sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="make a new card in DIR (one per DIR given)")
    p.add_argument("directories", nargs="+", metavar="DIR")
    p.add_argument("--eid", help="32-digit EID (default: random, SGP.26 EIN prefix 89049032)")
    p.add_argument("--curve", choices=sorted(_CURVES), default="both")
    p.add_argument("--pki", help="test PKI directory whose EUM issues the eUICC certificate")
    p.add_argument("--euicc-key", help="SK.EUICC.ECDSA (PEM) to use instead of a new key")
    p.add_argument("--euicc-cert", help="CERT.EUICC.ECDSA (DER or PEM), with --euicc-key")
    p.add_argument("--eum-cert", help="CERT.EUM.ECDSA (DER or PEM), with --euicc-key")
    p.add_argument("--ci-cert", action="append", help="a CI certificate the card trusts")
    p.add_argument(
        "--kind",
        choices=["iot", "consumer"],
        default="iot",
        help="iot: SGP.32 IoT eUICC, profiles managed through eIM packages (default); "
        "consumer: SGP.22 eUICC with local ES10c profile management",
    )
    p.set_defaults(run=_init)

    p = sub.add_parser(
        "preload", help="install a SAIP profile package as a factory would (on each DIR)"
    )
    p.add_argument("directories", nargs="+", metavar="DIR")
    p.add_argument("package", help="unprotected profile package (DER), e.g. a TS.48 file")
    p.add_argument("--enable", action="store_true", help="enable it after installing")
    p.add_argument("--iccid", help="override the ICCID from the package header")
    p.add_argument("--name", help="profile name (default: the header's profileType)")
    p.add_argument("--provider", help="service provider name")
    p.add_argument("--class", dest="profile_class", choices=["test", "provisioning", "operational"])
    p.add_argument("--nickname")
    p.add_argument(
        "--notify", metavar="ADDRESS", help="ask for enable/disable/delete notifications"
    )
    p.add_argument("--ppr1", action="store_true", help="disabling not allowed")
    p.add_argument("--ppr2", action="store_true", help="deletion not allowed")
    p.set_defaults(run=_preload)

    p = sub.add_parser("info", help="show a card's EID, profiles and notifications")
    p.add_argument("directory")
    p.add_argument("--json", action="store_true", help="JSON with the ASN.1 field names")
    p.set_defaults(run=_info)

    add_serve_command(sub)
    _add_server_commands(sub)
    return parser


def _add_server_commands(sub: argparse._SubParsersAction) -> None:
    """The reference servers' commands (``smdpp``, ``eim``)."""
    from euicc_servers.eim.serve import add_eim_command
    from euicc_servers.smdpp.serve import add_smdpp_command

    add_smdpp_command(sub)
    add_eim_command(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``euicc-sim`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (CardError, OSError, ValueError, _StoppedAt) as exc:
        print(f"euicc-sim: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
