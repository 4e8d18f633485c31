"""``ipa``: drive an eUICC through the IPAd's ES10 client from the command line.

The card is chosen with ``--card DIR`` (an emulated card kept in a directory, run in this
process) or ``--reader NAME`` (a card in a PC/SC reader, through pyscard). The emulator is
loaded only for ``--card``: the IPAd itself never depends on it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from euicc_cli.fleet_command import add_fleet_command, cmd_fleet
from euicc_cli.pull_options import add_pull_options, pull_config
from ipa.channel import ChannelConfig
from ipa.download import DownloadError, download_profile_sync
from ipa.errors import IpaError
from ipa.es9p import Es9Config, load_trust_anchors
from ipa.es10 import Es10Client
from ipa.notifications import process_notifications_sync
from ipa.transport import InProcessTransport, Transport
from ipa.types import ProfileInfo


class UsageError(Exception):
    """The command line asks for something that cannot be done."""


def open_transport(args: argparse.Namespace) -> Transport:
    """The card transport named on the command line."""
    if args.card and args.reader:
        raise UsageError("use either --card or --reader, not both")
    if args.wait is not None and not args.card:
        raise UsageError("--wait is for --card")
    if args.card and (args.protocol != "any" or args.exclusive):
        raise UsageError("--protocol and --exclusive are for --reader")
    if args.reader:
        from ipa.pcsc import open_reader_transport  # pyscard is optional: import on demand

        return open_reader_transport(args.reader, protocol=args.protocol, exclusive=args.exclusive)
    if args.card:
        from euicc_sim.card import Euicc  # the emulator is loaded only when a command uses it

        return InProcessTransport(Euicc.open(args.card, wait=args.wait))
    raise UsageError("say which card to use: --card DIR or --reader NAME")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _profile_line(p: ProfileInfo) -> str:
    state = p.profile_state.asn1_name if p.profile_state is not None else "?"
    klass = p.profile_class.asn1_name if p.profile_class is not None else "?"
    nickname = f" '{p.profile_nickname}'" if p.profile_nickname else ""
    aid = p.isdp_aid.hex().upper() if p.isdp_aid else "-"
    return f"{p.iccid or '-':<20} {state:<9} {klass:<12} {aid} {p.profile_name or ''}{nickname}"


def cmd_eid(client: Es10Client, args: argparse.Namespace) -> None:
    eid = client.get_eid()
    _print_json({"eidValue": eid}) if args.json else print(eid)


def cmd_info(client: Es10Client, args: argparse.Namespace) -> None:
    info: dict[str, Any] = {
        "eidValue": client.get_eid(),
        "euiccInfo1": client.get_euicc_info1().to_json(),
        "euiccInfo2": client.get_euicc_info2().to_json(),
        "euiccConfiguredAddresses": client.get_euicc_configured_addresses().to_json(),
    }
    if args.json:
        _print_json(info)
        return
    info2 = info["euiccInfo2"]
    info1 = info["euiccInfo1"]
    addresses = info["euiccConfiguredAddresses"]
    rows = [("EID", info["eidValue"])]
    rows += [(k, info2.get(k)) for k in ("svn", "profileVersion", "euiccFirmwareVer", "ppVersion")]
    rows += [
        ("sasAcreditationNumber", info2.get("sasAcreditationNumber")),
        ("CI for verification", ", ".join(info1["euiccCiPKIdListForVerification"])),
        ("CI for signing", ", ".join(info1["euiccCiPKIdListForSigning"])),
        ("default SM-DP+", addresses.get("defaultDpAddress") or "-"),
        ("root SM-DS", addresses.get("rootDsAddress")),
    ]
    for key, value in rows:
        print(f"{key:<22} {value}")


def cmd_profiles(client: Es10Client, args: argparse.Namespace) -> None:
    profiles = client.get_profiles_info()
    if args.json:
        _print_json({"profileInfoListOk": [p.to_json() for p in profiles]})
        return
    for p in profiles:
        print(_profile_line(p))
    if not profiles:
        print("no profiles")


def _done(args: argparse.Namespace, function: str, result: str = "ok") -> None:
    if args.json:
        _print_json({function: result})
    else:
        print(f"{function}: {result}")


def cmd_enable(client: Es10Client, args: argparse.Namespace) -> None:
    client.enable_profile(iccid=args.iccid, refresh=args.refresh)
    _done(args, "enableResult")


def cmd_disable(client: Es10Client, args: argparse.Namespace) -> None:
    client.disable_profile(iccid=args.iccid, refresh=args.refresh)
    _done(args, "disableResult")


def cmd_delete(client: Es10Client, args: argparse.Namespace) -> None:
    client.delete_profile(iccid=args.iccid)
    _done(args, "deleteResult")


def cmd_nickname(client: Es10Client, args: argparse.Namespace) -> None:
    client.set_nickname(args.iccid, args.nickname)
    _done(args, "setNicknameResult")


def _es9_config(args: argparse.Namespace) -> Es9Config:
    """ES9+ settings from --ca-cert / --insecure (TLS stays verified unless --insecure)."""
    return Es9Config(ca_certificates=load_trust_anchors(args.ca_cert), insecure=args.insecure)


def _ask_confirmation_code(metadata: ProfileInfo) -> str | None:
    # Only a person at a terminal can answer; a script gets "postponed" instead of a hang.
    if not sys.stdin.isatty():
        return None
    name = metadata.profile_name or metadata.iccid or "the profile"
    return getpass.getpass(f"Confirmation code for {name}: ") or None


def cmd_download(client: Es10Client, args: argparse.Namespace) -> None:
    try:
        result = download_profile_sync(
            client,
            args.activation_code,
            confirmation_code=args.confirmation_code,
            ask_confirmation_code=_ask_confirmation_code,
            config=_es9_config(args),
        )
    except DownloadError as exc:
        if exc.cancel_reason is not None:
            card = "yes" if exc.cancelled_on_card else "no"
            server = "yes" if exc.cancelled_on_server else "no"
            print(
                f"ipa: session cancelled ({exc.cancel_reason.asn1_name}): "
                f"on the card {card}, on the SM-DP+ {server}",
                file=sys.stderr,
            )
        raise
    if args.json:
        _print_json(result.to_json())
        return
    delivered = "delivered" if result.notification_delivered else "NOT delivered (still pending)"
    print(f"installed {result.iccid} in ISD-P {result.isdp_aid.hex().upper()}")
    print(f"install notification #{result.seq_number} {delivered}")


def _process_notifications(client: Es10Client, args: argparse.Namespace) -> None:
    outcomes = process_notifications_sync(client, config=_es9_config(args))
    if args.json:
        _print_json({"notifications": [o.to_json() for o in outcomes]})
    else:
        for o in outcomes:
            status = "delivered and removed" if o.removed else (o.error or "kept")
            if o.delivered and not o.removed:
                status = f"delivered, not removed: {o.error}"
            print(f"#{o.seq_number} {o.kind:<26} -> {o.address or '-'}: {status}")
        if not outcomes:
            print("no pending notifications")
    kept = sum(not o.removed for o in outcomes)
    if kept:
        raise IpaError(f"{kept} notification(s) still pending")


def cmd_notifications(client: Es10Client, args: argparse.Namespace) -> None:
    if args.process:
        if args.remove is not None:
            raise UsageError("use either --process or --remove, not both")
        _process_notifications(client, args)
        return
    if args.remove is not None:
        client.remove_notification_from_list(args.remove)
        _done(args, "deleteNotificationStatus")
        return
    pending = client.retrieve_notifications_list()
    if args.json:
        _print_json({"notificationList": [n.to_json() for n in pending]})
        return
    for n in pending:
        meta = n.notification_metadata
        if meta is None:
            print(f"#{n.seq_number} {n.kind}")
            continue
        events = ",".join(e.asn1_name for e in meta.profile_management_operation)
        print(
            f"#{n.seq_number} {events:<20} {meta.iccid or '-':<20} -> {meta.notification_address}"
        )
    if not pending:
        print("no pending notifications")


Command = Callable[[Es10Client, argparse.Namespace], None]


def build_parser() -> argparse.ArgumentParser:
    """The ``ipa`` argument parser."""
    parser = argparse.ArgumentParser(prog="ipa", description=__doc__.splitlines()[0])
    parser.add_argument("--card", metavar="DIR", help="an emulated card kept in DIR")
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="with --card: if another process has the card open, wait up to SECONDS for it "
        "(default: fail at once)",
    )
    parser.add_argument(
        "--reader", metavar="NAME", help="a card in a PC/SC reader: (part of) its name or index"
    )
    parser.add_argument(
        "--protocol",
        choices=("T0", "T1", "any"),
        default="any",
        help="with --reader: the transmission protocol to connect with (default: any)",
    )
    parser.add_argument(
        "--exclusive",
        action="store_true",
        help="with --reader: keep other applications off the card while the command runs",
    )
    parser.add_argument(
        "--channel", type=int, help="logical channel to use (default: card assigns)"
    )
    parser.add_argument("--block-size", type=int, default=255, help="STORE DATA block size")
    parser.add_argument("--json", action="store_true", help="JSON output with ASN.1 field names")
    parser.add_argument("-v", "--verbose", action="store_true", help="trace APDUs")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, run: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        p.set_defaults(run=run)
        return p

    add("eid", cmd_eid, "GetEID")
    add("info", cmd_info, "EUICCInfo1, EUICCInfo2 and configured addresses")
    add("profiles", cmd_profiles, "GetProfilesInfo")
    for name, run in (("enable", cmd_enable), ("disable", cmd_disable)):
        p = add(name, run, f"{name.capitalize()}Profile by ICCID")
        p.add_argument("iccid")
        p.add_argument("--refresh", action="store_true", help="set refreshFlag")
    add("delete", cmd_delete, "DeleteProfile by ICCID").add_argument("iccid")
    p = add("nickname", cmd_nickname, "SetNickname")
    p.add_argument("iccid")
    p.add_argument("nickname")
    p = add("notifications", cmd_notifications, "RetrieveNotificationsList")
    p.add_argument("--remove", type=int, metavar="SEQ", help="RemoveNotificationFromList")
    p.add_argument(
        "--process",
        action="store_true",
        help="send each pending notification to its address, remove those delivered",
    )
    _add_es9_options(p)
    p = add("download", cmd_download, "download a profile with an activation code")
    p.add_argument("activation_code", metavar="ACTIVATION_CODE", help="LPA:1$<SM-DP+>$<token>...")
    p.add_argument("--confirmation-code", metavar="CODE", help="the code, if the SM-DP+ asks")
    _add_es9_options(p)
    _add_poll_command(add)
    add_fleet_command(sub)
    return parser


# -- ipa poll: the SGP.32 pull flow (ipa.pull) ---------------------------------------------------


def cmd_poll(client: Es10Client, args: argparse.Namespace) -> None:
    """Poll the card's eIM once (--once) or until interrupted."""
    import asyncio

    from ipa.pull import PollOutcome, PullFlow

    flow = PullFlow(client, pull_config(args, eim_url=args.eim_url), state_dir=args.state)

    def show(outcome: PollOutcome) -> None:
        if args.json:
            eim_id = flow.eim.eim_id if flow.eim is not None else None
            _print_json({"eidValue": flow.eid, "eimId": eim_id, **outcome.to_json()})
            return
        eim = flow.eim.eim_id if flow.eim is not None else "-"
        counts = f"{len(outcome.packages)} package(s), {outcome.notifications} notification(s)"
        print(f"{outcome.state.value} {outcome.state.name.lower()} eIM {eim}: {counts}")
        for p in outcome.packages:
            kind = p.kind.value if p.kind is not None else "pending result"
            print(f"  {kind}: {'delivered' if p.delivered else 'NOT delivered'} {p.detail}")
        if outcome.error:
            print(f"  error: {outcome.error}")

    async def run() -> PollOutcome:
        try:
            while True:
                outcome = await flow.poll_once()
                show(outcome)
                if args.once:
                    return outcome
                await asyncio.sleep(outcome.next_delay)
        finally:
            await flow.aclose()

    try:
        outcome = asyncio.run(run())
    except KeyboardInterrupt:
        return
    if outcome.error is not None or outcome.state.name == "UNPROVISIONED":
        raise IpaError(outcome.error or "no eIM is configured (give --initial-eim)")


def _add_poll_command(add: Callable[[str, Command, str], argparse.ArgumentParser]) -> None:
    p = add("poll", cmd_poll, "SGP.32 pull flow: poll the eIM and run its packages")
    p.add_argument("--once", action="store_true", help="one cycle, then exit")
    p.add_argument("--state", metavar="DIR", help="keep pending results in DIR across restarts")
    p.add_argument("--eim-url", metavar="URL", help="reach the eIM here instead of its eimFqdn")
    add_pull_options(p, initial_eim_help="AddInitialEimRequest for an unprovisioned card")


def _add_es9_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ca-cert",
        action="append",
        default=[],
        metavar="PEM",
        help="trust anchor for the SM-DP+ TLS certificate (PEM bundle or DER; repeatable)",
    )
    p.add_argument(
        "--insecure", action="store_true", help="do not verify the SM-DP+ TLS certificate"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ipa`` command."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        if getattr(args, "fleet", False):
            if args.card or args.reader:
                raise UsageError("ipa fleet takes card directories, not --card or --reader")
            if args.wait is not None:
                raise UsageError("give --wait after 'fleet'")
            cmd_fleet(args)
            return 0
        transport = open_transport(args)
        config = ChannelConfig(channel=args.channel, block_size=args.block_size)
        try:
            with Es10Client.open(transport, config) as client:
                args.run(client, args)
        finally:
            close = getattr(transport, "close", None)  # a reader: disconnect, release PC/SC
            if close is None:  # --card: release the card directory
                close = getattr(getattr(transport, "card", None), "close", None)
            if close is not None:
                close()
    except (UsageError, IpaError, ValueError, OSError) as exc:
        print(f"ipa: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except Exception as exc:  # the emulator's CardError and friends, without importing them
        if type(exc).__module__.startswith("euicc_sim"):
            print(f"ipa: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
