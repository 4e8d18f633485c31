"""``ipa``: drive an eUICC through the IPAd's ES10 client from the command line.

The card is chosen with ``--card DIR`` (an emulated card kept in a directory, run in this
process), ``--reader NAME`` (a card in a PC/SC reader, through pyscard) or ``--modem DEVICE``
(a card inside a cellular module, through its AT port and pyserial). The emulator is loaded
only for ``--card``: the IPAd itself never depends on it.

Global options (card selection, ``--json``, ``-v``, ``--log-level``) may stand before or after
the command. Output, the ``--json`` envelope and exit codes: :mod:`euicc_cli.output`,
:mod:`euicc_cli.exits` and ``docs/cli.md``. Modules a command needs are imported when it runs,
so ``ipa eid`` does not pay for the HTTP stack of ``ipa download``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from euicc_cli.exits import CommandError, ExitCode, UsageError, classify
from euicc_cli.options import (
    OUTPUT_DEFAULTS,
    CommandParser,
    add_output_options,
    add_version_option,
    global_options,
)
from euicc_cli.output import Output
from euicc_cli.runner import run_command

if TYPE_CHECKING:
    from ipa.es10 import Es10Client
    from ipa.transport import Transport
    from ipa.types import ProfileInfo

__all__ = ["build_parser", "main", "open_transport", "profile_target"]

log = logging.getLogger(__name__)

#: What a sub-command runs on: an ES10 client (channel open, ISD-R selected), the bare card
#: transport, or nothing (the command opens what it needs itself).
CLIENT, TRANSPORT, NOTHING = "client", "transport", "nothing"


def open_transport(args: argparse.Namespace) -> Transport:
    """The card transport named on the command line.

    Raises:
        UsageError: no card or two cards named, reader options without a reader.
        CommandError: (exit code 3) the card cannot be opened; the message names the
            directory or reader and says why.
    """
    if sum(bool(x) for x in (args.card, args.reader, args.modem)) > 1:
        raise UsageError("use one of --card, --reader and --modem")
    if not args.reader and (args.protocol != "any" or args.exclusive):
        raise UsageError("--protocol and --exclusive are for --reader")
    if args.wait is not None and not args.card:
        raise UsageError("--wait is for --card (and ipa fleet)")
    if not args.modem and (args.baud is not None or args.quirks is not None):
        raise UsageError("--baud and --quirks are for --modem")
    if args.modem:
        from ipa.modem import open_modem_transport  # pyserial is optional: import on demand

        return open_modem_transport(
            args.modem, baud=args.baud or 115200, quirks=args.quirks or "auto"
        )
    if args.reader:
        from ipa.pcsc import open_reader_transport  # pyscard is optional: import on demand

        return open_reader_transport(args.reader, protocol=args.protocol, exclusive=args.exclusive)
    if args.card:
        from euicc_sim.card import Euicc  # the emulator is loaded only when a command uses it
        from ipa.transport import InProcessTransport

        try:
            card = Euicc.open(args.card, wait=args.wait)
        except Exception as exc:  # a damaged or foreign directory: say which, never a traceback
            if type(exc).__name__ == "CardBusy":  # another process has it: the message says who
                raise classify(exc) from exc
            raise CommandError(
                f"cannot open the card in {args.card}: {exc}", ExitCode.UNREACHABLE
            ) from exc
        return InProcessTransport(card)
    raise UsageError("say which card to use: --card DIR or --reader NAME (or --modem DEVICE)")


# -- targets: a profile by ICCID or by ISD-P AID ----------------------------------------------

_ICCID = re.compile(r"\d{18,20}[fF]?")
_AID = re.compile(r"(?:[0-9a-fA-F]{2}){5,16}")


def profile_target(text: str) -> tuple[str, str | bytes]:
    """A profile named on the command line: ``("iccid", digits)`` or ``("isdpAid", bytes)``.

    SGP.22 ProfileIdentifier is a CHOICE of ``isdpAid [APPLICATION 15]`` and ``iccid``. An ICCID
    is 18 to 20 digits (ITU-T E.118, beginning ``89``); an AID is 5 to 16 bytes in hex (ISO/IEC
    7816-5) whose first nibble is the registration category (``A`` international, ``D``
    national), so the two never look alike. ``iccid:`` or ``aid:`` in front forces the reading.
    """
    kind, sep, value = text.partition(":")
    if sep and kind.lower() in ("iccid", "aid"):
        if kind.lower() == "iccid":
            return "iccid", value
        if not _AID.fullmatch(value):
            raise UsageError(f"{value!r} is not an AID (5 to 16 bytes in hex)")
        return "isdpAid", bytes.fromhex(value)
    if _ICCID.fullmatch(text):
        return "iccid", text
    if _AID.fullmatch(text) and text[0] in "AaDd":
        return "isdpAid", bytes.fromhex(text)
    raise UsageError(f"{text!r} is neither an ICCID (18-20 digits) nor an ISD-P AID (hex, A0...)")


def _target_kwargs(target: str) -> dict[str, Any]:
    kind, value = profile_target(target)
    return {"iccid": value} if kind == "iccid" else {"isdp_aid": value}


# -- commands ---------------------------------------------------------------------------------


def _profile_line(p: ProfileInfo) -> str:
    state = p.profile_state.asn1_name if p.profile_state is not None else "?"
    klass = p.profile_class.asn1_name if p.profile_class is not None else "?"
    nickname = f" '{p.profile_nickname}'" if p.profile_nickname else ""
    aid = p.isdp_aid.hex().upper() if p.isdp_aid else "-"
    return f"{p.iccid or '-':<20} {state:<9} {klass:<12} {aid} {p.profile_name or ''}{nickname}"


def cmd_eid(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    eid = client.get_eid()
    out.success({"eidValue": eid}, text=eid)


def cmd_info(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    info: dict[str, Any] = {
        "eidValue": client.get_eid(),
        "euiccInfo1": client.get_euicc_info1().to_json(),
        "euiccInfo2": client.get_euicc_info2().to_json(),
        "euiccConfiguredAddresses": client.get_euicc_configured_addresses().to_json(),
    }
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
    out.success(info, text=[f"{key:<22} {value}" for key, value in rows])


def cmd_profiles(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    profiles = client.get_profiles_info()
    lines = [_profile_line(p) for p in profiles] or ["no profiles"]
    out.success({"profileInfoListOk": [p.to_json() for p in profiles]}, text=lines)


def _done(out: Output, function: str, result: str = "ok") -> None:
    out.success({function: result}, message=f"{function}: {result}", text=f"{function}: {result}")


def cmd_enable(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    client.enable_profile(**_target_kwargs(args.target), refresh=args.refresh)
    _done(out, "enableResult")


def cmd_disable(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    client.disable_profile(**_target_kwargs(args.target), refresh=args.refresh)
    _done(out, "disableResult")


def cmd_delete(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    client.delete_profile(**_target_kwargs(args.target))
    _done(out, "deleteResult")


def cmd_nickname(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    kind, value = profile_target(args.target)
    if kind == "isdpAid":  # SetNickname names the profile by ICCID only (SGP.22 §5.7.21)
        assert isinstance(value, bytes)
        found = client.get_profiles_info(isdp_aid=value, tags=("iccid",))
        if not found or not found[0].iccid:
            raise CommandError(f"no profile in ISD-P {value.hex().upper()}")
        value = found[0].iccid
    assert isinstance(value, str)
    client.set_nickname(value, args.nickname)
    _done(out, "setNicknameResult")


def cmd_default_smdp(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    """ES10a.GetEuiccConfiguredAddresses, or SetDefaultDpAddress with ADDRESS / --clear."""
    if args.clear and args.address is not None:
        raise UsageError("give either ADDRESS or --clear")
    if args.clear or args.address is not None:
        address = "" if args.clear else args.address
        client.set_default_dp_address(address)
        _done(out, "setDefaultDpAddressResult")
        return
    addresses = client.get_euicc_configured_addresses()
    out.success(
        addresses.to_json(),
        text=[
            f"default SM-DP+ {addresses.default_dp_address or '-'}",
            f"root SM-DS     {addresses.root_ds_address}",
        ],
    )


def cmd_memory_reset(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    from ipa.codes import ResetOption

    by_name = {o.asn1_name: o for o in ResetOption if o.is_known}
    options = [by_name[name] for name in args.options]
    result = client.euicc_memory_reset(options, sgp22=args.sgp22)
    data = result.to_json()
    text = [f"{key}: {value}" for key, value in data.items()]
    out.success(data, message="resetResult: ok", text=text)


def cmd_es10(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    """A raw ES10 request TLV to ISD-R; prints the response TLV (and, in JSON, its decoding)."""
    request = _hex_argument(args.request, "ES10 request")
    response = client.exchange(request)
    data: dict[str, Any] = {"request": request.hex().upper(), "response": response.hex().upper()}
    decoded = _decode_es10_response(request, response)
    if decoded is not None:
        data.update(decoded)
    out.success(data, text=response.hex().upper())


def _decode_es10_response(request: bytes, response: bytes) -> dict[str, Any] | None:
    """``{"function", "responseType", "decoded"}`` when the catalogue knows the request's tag
    and the response decodes as that function's response type (SGP.32 form first)."""
    from euicc_protocol import es10 as catalogue
    from euicc_protocol import schema

    tag = request[:2] if request[0] & 0x1F == 0x1F else request[:1]
    for profile in ("sgp32", "sgp22"):
        fn = catalogue.lookup(tag, profile)
        if fn is None or not response:
            continue
        try:
            value = schema.decode(fn.response_type, response)
        except Exception:  # noqa: BLE001 - undecodable: the raw TLV is the answer
            continue
        return {"function": f"{fn.interface}.{fn.name}", "responseType": fn.response_type,
                "decoded": _jsonable(value)}  # fmt: skip
    return None


def _jsonable(value: Any) -> Any:
    """asn1tools' Python form as JSON: bytes in hex, CHOICEs as one-key objects, BIT STRINGs
    as hex with their length."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex().upper()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, tuple) and len(value) == 2:
        first, second = value
        if isinstance(first, str):  # CHOICE (alternative, value)
            return {first: _jsonable(second)}
        if isinstance(first, bytes | bytearray) and isinstance(second, int):  # BIT STRING
            return {"bits": bytes(first).hex().upper(), "length": second}
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def cmd_apdu(transport: Transport, args: argparse.Namespace, out: Output) -> None:
    """Raw command APDUs on the card as it is (no channel opened, nothing selected)."""
    commands = [_hex_argument(a, "APDU") for a in args.apdus]
    exchanges = []
    lines = []
    for command in commands:
        if len(command) < 4:
            raise UsageError(f"{command.hex().upper()}: an APDU has at least CLA INS P1 P2")
        response = bytes(transport.transmit(command))
        data, sw = response[:-2], response[-2:]
        exchanges.append(
            {"command": command.hex().upper(), "data": data.hex().upper(), "sw": sw.hex().upper()}
        )
        lines.append(f"{data.hex().upper()} {sw.hex().upper()}".lstrip())
    out.success({"exchanges": exchanges}, text=lines)


def cmd_readers(args: argparse.Namespace, out: Output) -> None:
    from ipa.pcsc import reader_states

    states = reader_states()
    readers = [{"name": name, "cardPresent": present} for name, present in states.items()]
    lines = [f"{i}: {r['name']}{'' if r['cardPresent'] else ' (empty)'}" for i, r in
             enumerate(readers)] or ["no readers"]  # fmt: skip
    out.success({"readers": readers}, text=lines)


def _hex_argument(text: str, what: str) -> bytes:
    cleaned = "".join(text.split())
    try:
        value = bytes.fromhex(cleaned)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not hex") from None
    if not value:
        raise UsageError(f"{what} is empty")
    return value


def _es9_config(args: argparse.Namespace) -> Any:
    """ES9+ settings from --ca-cert / --insecure (TLS stays verified unless --insecure)."""
    from ipa.es9p import Es9Config, load_trust_anchors

    return Es9Config(ca_certificates=load_trust_anchors(args.ca_cert), insecure=args.insecure)


def _ask_confirmation_code(metadata: ProfileInfo) -> str | None:
    import getpass

    # Only a person at a terminal can answer; a script gets "postponed" instead of a hang.
    if not sys.stdin.isatty():
        return None
    name = metadata.profile_name or metadata.iccid or "the profile"
    return getpass.getpass(f"Confirmation code for {name}: ") or None


def cmd_download(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    from ipa.download import download_profile_sync

    result = download_profile_sync(
        client,
        args.activation_code,
        confirmation_code=args.confirmation_code,
        ask_confirmation_code=_ask_confirmation_code,
        config=_es9_config(args),
    )
    delivered = "delivered" if result.notification_delivered else "NOT delivered (still pending)"
    out.success(
        result.to_json(),
        message=f"installed {result.iccid}",
        text=[
            f"installed {result.iccid} in ISD-P {result.isdp_aid.hex().upper()}",
            f"install notification #{result.seq_number} {delivered}",
        ],
    )


def _process_notifications(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    from ipa.notifications import process_notifications_sync

    outcomes = process_notifications_sync(client, config=_es9_config(args))
    lines = []
    for o in outcomes:
        status = "delivered and removed" if o.removed else (o.error or "kept")
        if o.delivered and not o.removed:
            status = f"delivered, not removed: {o.error}"
        lines.append(f"#{o.seq_number} {o.kind:<26} -> {o.address or '-'}: {status}")
    data = {"notifications": [o.to_json() for o in outcomes]}
    kept = sum(not o.removed for o in outcomes)
    if kept:
        for line in lines:
            out.text(line)
        raise CommandError(f"{kept} notification(s) still pending", ExitCode.FAILED, data)
    out.success(data, text=lines or ["no pending notifications"])


def cmd_notifications(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    if args.process:
        if args.remove is not None:
            raise UsageError("use either --process or --remove, not both")
        _process_notifications(client, args, out)
        return
    if args.remove is not None:
        client.remove_notification_from_list(args.remove)
        _done(out, "deleteNotificationStatus")
        return
    pending = client.retrieve_notifications_list()
    lines = []
    for n in pending:
        meta = n.notification_metadata
        if meta is None:
            lines.append(f"#{n.seq_number} {n.kind}")
            continue
        events = ",".join(e.asn1_name for e in meta.profile_management_operation)
        lines.append(
            f"#{n.seq_number} {events:<20} {meta.iccid or '-':<20} -> {meta.notification_address}"
        )
    out.success(
        {"notificationList": [n.to_json() for n in pending]},
        text=lines or ["no pending notifications"],
    )


def cmd_poll(client: Es10Client, args: argparse.Namespace, out: Output) -> None:
    """Poll the card's eIM once (--once) or until interrupted (JSON Lines: one per cycle)."""
    import asyncio

    from euicc_cli.pull_options import pull_config
    from ipa.pull import PollOutcome, PullFlow

    flow = PullFlow(client, pull_config(args, eim_url=args.eim_url), state_dir=args.state)

    def show(outcome: PollOutcome) -> None:
        eim_id = flow.eim.eim_id if flow.eim is not None else None
        counts = f"{len(outcome.packages)} package(s), {outcome.notifications} notification(s)"
        lines = [
            f"{outcome.state.value} {outcome.state.name.lower()} eIM {eim_id or '-'}: {counts}"
        ]
        for p in outcome.packages:
            kind = p.kind.value if p.kind is not None else "pending result"
            lines.append(f"  {kind}: {'delivered' if p.delivered else 'NOT delivered'} {p.detail}")
        aside = len(outcome.set_aside_results), len(outcome.set_aside_notifications)
        if any(aside):
            lines.append(
                f"  set aside (the eIM refused them): {aside[0]} result(s), "
                f"{aside[1]} notification(s)"
            )
        if outcome.error:
            lines.append(f"  error: {outcome.error}")
        log.info("poll cycle: %s", lines[0])
        version = None if flow.sgp32 is None else str(flow.sgp32)
        data = {"eidValue": flow.eid, "eimId": eim_id, "sgp32": version, **outcome.to_json()}
        out.event("poll", data, text="\n".join(lines))

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
        out.success(message="stopped")  # polling until interrupted: Ctrl-C is the normal end
        return
    if outcome.error is not None or outcome.state.name == "UNPROVISIONED":
        raise CommandError(outcome.error or "no eIM is configured (give --initial-eim)")
    out.success(message=f"polled: {outcome.state.name.lower()}")


# -- the parser -------------------------------------------------------------------------------

Command = Callable[..., None]


def _card_options(group: argparse.ArgumentParser) -> None:
    """Card selection, channel and output options (every one accepted before or after the
    command; their defaults are in :data:`GLOBAL_DEFAULTS`)."""
    s = argparse.SUPPRESS
    group.add_argument("--card", metavar="DIR", default=s, help="an emulated card kept in DIR")
    group.add_argument(
        "--reader",
        metavar="NAME",
        default=s,
        help="a card in a PC/SC reader: (part of) its name or index",
    )
    group.add_argument(
        "--protocol",
        choices=("T0", "T1", "any"),
        default=s,
        help="with --reader: the transmission protocol to connect with (default: any)",
    )
    group.add_argument(
        "--exclusive",
        action="store_true",
        default=s,
        help="with --reader: keep other applications off the card while the command runs",
    )
    group.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        default=s,
        help="with --card or ipa fleet: if another process has the card open, wait up to "
        "SECONDS for it (default: fail at once)",
    )
    group.add_argument(
        "--modem",
        metavar="DEVICE",
        default=s,
        help="a card in a cellular module: its AT port (/dev/ttyUSB2, socket://host:port)",
    )
    group.add_argument(
        "--baud", type=int, default=s, help="with --modem: serial speed (default 115200)"
    )
    group.add_argument(
        "--quirks",
        metavar="NAME",
        default=s,
        help="with --modem: module family (auto, generic, quectel, simcom, ublox, telit, "
        "huawei, fibocom, sierra; default: auto)",
    )
    group.add_argument(
        "--channel", type=int, default=s, help="logical channel to use (default: card assigns)"
    )
    group.add_argument(
        "--block-size", type=int, default=s, help="STORE DATA block size (default 255)"
    )
    add_output_options(group)


GLOBAL_DEFAULTS: dict[str, Any] = {
    "card": None,
    "wait": None,
    "reader": None,
    "protocol": "any",
    "exclusive": False,
    "modem": None,
    "baud": None,
    "quirks": None,
    "channel": None,
    "block_size": 255,
    **OUTPUT_DEFAULTS,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``ipa`` argument parser."""
    # Two copies: set_defaults on the top parser changes its actions' defaults, which must stay
    # "not given" in the sub-commands'.
    top, common = global_options(_card_options), global_options(_card_options)
    parser = CommandParser(
        prog="ipa", description=(__doc__ or "").splitlines()[0].replace("``", ""), parents=[top]
    )
    add_version_option(parser)
    parser.set_defaults(**GLOBAL_DEFAULTS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        run: Command | None,
        help_text: str,
        uses: str = CLIENT,
        build: Callable[[CommandParser], None] | None = None,
    ) -> CommandParser:
        p: CommandParser = sub.add_parser(name, help=help_text, parents=[common], build=build)
        p.set_defaults(run=run, uses=uses)
        return p

    add("eid", cmd_eid, "GetEID")
    add("info", cmd_info, "EUICCInfo1, EUICCInfo2 and configured addresses")
    add("profiles", cmd_profiles, "GetProfilesInfo")
    target_help = "the profile: ICCID or ISD-P AID (hex)"
    for name, run in (("enable", cmd_enable), ("disable", cmd_disable)):
        p = add(name, run, f"{name.capitalize()}Profile by ICCID or ISD-P AID")
        p.add_argument("target", metavar="ICCID|AID", help=target_help)
        p.add_argument("--refresh", action="store_true", help="set refreshFlag")
    p = add("delete", cmd_delete, "DeleteProfile by ICCID or ISD-P AID")
    p.add_argument("target", metavar="ICCID|AID", help=target_help)
    p = add("nickname", cmd_nickname, "SetNickname (profile by ICCID or ISD-P AID)")
    p.add_argument("target", metavar="ICCID|AID", help=target_help)
    p.add_argument("nickname")
    p = add(
        "default-smdp",
        cmd_default_smdp,
        "show the configured addresses, or SetDefaultDpAddress",
    )
    p.add_argument("address", nargs="?", metavar="ADDRESS", help="the new default SM-DP+ address")
    p.add_argument("--clear", action="store_true", help="remove the default SM-DP+ address")
    p = add("memory-reset", cmd_memory_reset, "eUICCMemoryReset with the named resetOptions")
    p.add_argument(
        "options",
        nargs="+",
        metavar="OPTION",
        choices=_RESET_OPTION_NAMES,
        help=f"resetOptions bits: {', '.join(_RESET_OPTION_NAMES)}",
    )
    p.add_argument(
        "--sgp22", action="store_true", help="send the SGP.22 request (BF34) instead of BF64"
    )
    p = add("notifications", cmd_notifications, "RetrieveNotificationsList")
    p.add_argument("--remove", type=int, metavar="SEQ", help="RemoveNotificationFromList")
    p.add_argument(
        "--process",
        action="store_true",
        help="send each pending notification to its address, remove those delivered",
    )
    add_es9_options(p)
    p = add("download", cmd_download, "download a profile with an activation code")
    p.add_argument("activation_code", metavar="ACTIVATION_CODE", help="LPA:1$<SM-DP+>$<token>...")
    p.add_argument("--confirmation-code", metavar="CODE", help="the code, if the SM-DP+ asks")
    add_es9_options(p)
    add("poll", cmd_poll, "SGP.32 pull flow: poll the eIM and run its packages", build=_poll_args)
    p = add("es10", cmd_es10, "send a raw ES10 request TLV to ISD-R, print the response TLV")
    p.add_argument("request", metavar="HEX", help="the request TLV, e.g. BF3E035C015A (GetEID)")
    p = add("apdu", cmd_apdu, "send raw command APDUs, print data and status word", TRANSPORT)
    p.add_argument("apdus", nargs="+", metavar="HEX", help="a command APDU, e.g. 00A4040000")
    add("readers", cmd_readers, "list the PC/SC readers and whether they hold a card", NOTHING)
    add(
        "fleet",
        None,
        "run many emulated cards against one eIM (takes card directories)",
        NOTHING,
        build=_fleet_args,
    )
    return parser


_RESET_OPTION_NAMES = (
    "deleteOperationalProfiles",
    "deleteFieldLoadedTestProfiles",
    "resetDefaultSmdpAddress",
    "deletePreLoadedTestProfiles",
    "deleteProvisioningProfiles",
    "resetEimConfigData",
    "resetImmediateEnableConfig",
)


def _poll_args(p: CommandParser) -> None:
    from euicc_cli.options import url
    from euicc_cli.pull_options import add_pull_options

    p.add_argument("--once", action="store_true", help="one cycle, then exit")
    p.add_argument("--state", metavar="DIR", help="keep pending results in DIR across restarts")
    p.add_argument(
        "--eim-url", metavar="URL", type=url, help="reach the eIM here instead of its eimFqdn"
    )
    add_pull_options(p, initial_eim_help="AddInitialEimRequest for an unprovisioned card")


def _fleet_args(p: CommandParser) -> None:
    from euicc_cli.fleet_command import add_fleet_arguments

    add_fleet_arguments(p)


def add_es9_options(p: argparse.ArgumentParser) -> None:
    """``--ca-cert`` and ``--insecure`` for the commands that talk to an SM-DP+."""
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


def _execute(args: argparse.Namespace, out: Output) -> None:
    if args.uses == NOTHING:
        if args.command == "fleet":
            if args.card or args.reader or args.modem:
                raise UsageError("ipa fleet takes card directories, not --card/--reader/--modem")
            from euicc_cli.fleet_command import cmd_fleet

            cmd_fleet(args, out)
            return
        args.run(args, out)
        return
    if args.block_size is not None and not 1 <= args.block_size <= 255:
        raise UsageError(f"--block-size {args.block_size}: give 1..255")
    transport = open_transport(args)
    try:
        if args.uses == TRANSPORT:
            args.run(transport, args, out)
            return
        from ipa.channel import ChannelConfig
        from ipa.es10 import Es10Client

        config = ChannelConfig(channel=args.channel, block_size=args.block_size)
        with Es10Client.open(transport, config) as client:
            args.run(client, args, out)
    finally:
        close = getattr(transport, "close", None)  # a reader: disconnect, release PC/SC
        if close is None:  # --card: release the card directory
            close = getattr(getattr(transport, "card", None), "close", None)
        if close is not None:
            close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ipa`` command; returns the exit status (:mod:`euicc_cli.exits`)."""
    return run_command(
        "ipa",
        build_parser,
        argv,
        _execute,
        # The emulator traces the same APDUs the IPAd's transport does: show them once.
        quiet_loggers=("euicc_sim",),
    )


if __name__ == "__main__":
    sys.exit(main())
