"""``euicc-sim``: make, load and inspect software eUICCs kept in directories."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
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
    from euicc_sim.card import Euicc

__all__ = ["build_parser", "card_summary", "main"]

_CURVES = ("both", "brainpool", "nist")


def _curves(name: str) -> tuple[Any, ...]:
    from euicc_protocol.crypto import Curve

    return {
        "nist": (Curve.NIST_P256,),
        "brainpool": (Curve.BRAINPOOL_P256R1,),
        "both": (Curve.NIST_P256, Curve.BRAINPOOL_P256R1),
    }[name]


def card_summary(card: Euicc) -> dict[str, Any]:
    """The card's identity, profiles and notifications, keyed by ASN.1 field names."""
    from euicc_protocol.iccid import iccid_from_ef
    from euicc_sim.state import ProfileClass, ProfileState

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


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"EID {summary['eid']}",
        f"default SM-DP+ {summary['defaultDpAddress'] or '-'}",
        f"root SM-DS     {summary['rootDsAddress']}",
        f"profiles ({len(summary['profileInfoList'])}):",
    ]
    for p in summary["profileInfoList"]:
        nick = f" '{p['profileNickname']}'" if p["profileNickname"] else ""
        lines.append(
            f"  {p['iccid']:<20} {p['profileState']:<8} {p['profileClass']:<12} "
            f"{p['isdpAid']} {p['profileName'] or ''}{nick}"
        )
    lines.append(f"pending notifications ({len(summary['notificationList'])}):")
    for n in summary["notificationList"]:
        lines.append(
            f"  #{n['seqNumber']} {n['profileManagementOperation']} {n['iccid']} -> "
            f"{n['notificationAddress']}"
        )
    return lines


@contextlib.contextmanager
def _naming(directory: str, several: bool) -> Iterator[None]:
    """With several cards, a failure names the card it stopped at (the earlier ones are done)."""
    try:
        yield
    except Exception as exc:
        if not several:
            raise
        error = classify(exc)
        raise CommandError(
            f"{directory}: {error.message} (stopped there)", error.code, error.data
        ) from exc


def _open(directory: str, wait: float | None) -> Euicc:
    """The card kept in ``directory``, owned until it is closed (``wait``: seconds to wait
    for another owner to let go); an unusable directory is reported with exit code 3."""
    from euicc_sim.card import CardBusy, Euicc

    try:
        return Euicc.open(directory, wait=wait)
    except CardBusy as exc:  # the message names the directory and the other process
        raise classify(exc) from exc
    except Exception as exc:
        raise CommandError(
            f"cannot open the card in {directory}: {exc}", ExitCode.UNREACHABLE
        ) from exc


def _init(args: argparse.Namespace, out: Output) -> None:
    from euicc_sim.card import Euicc
    from euicc_sim.config import IOT_VERSIONS, CardConfig

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    one_card_only = {"--eid": args.eid, "--euicc-key": args.euicc_key}
    if len(args.directories) > 1:
        for option, value in one_card_only.items():
            if value is not None:
                raise UsageError(f"{option} makes one card; give one directory")
    ci_certificates = [Path(p).read_bytes() for p in args.ci_cert or ()]
    # The EID is a placeholder: create() takes the one of the eUICC certificate.
    config = CardConfig(eid="0" * 32, iot_versions=IOT_VERSIONS[args.sgp32])
    created = []
    for directory in args.directories:
        with _naming(directory, len(args.directories) > 1):
            card = Euicc.create(
                directory,
                eid=args.eid,
                curves=_curves(args.curve),
                pki=args.pki,
                euicc_key=read(args.euicc_key),
                euicc_certificate=read(args.euicc_cert),
                eum_certificate=read(args.eum_cert),
                ci_certificates=ci_certificates,
                config=config,
                kind=args.kind,
            )
            card.close()
        created.append(
            {"directory": directory, "eid": card.eid, "kind": card.kind, "sgp32": args.sgp32}
        )
        if card.kind == "iot":
            out.text(f"created eUICC {card.eid} (SGP.32 {args.sgp32}) in {directory}")
        else:
            out.text(f"created eUICC {card.eid} (consumer, SGP.22) in {directory}")
    out.success({"cards": created}, message=f"created {len(created)} card(s)")


def _package(name_or_path: str) -> bytes:
    """A profile package named on the command line: a file, or a shipped package's name."""
    file = Path(name_or_path)
    if file.is_file() or file.suffix or "/" in name_or_path:
        return file.read_bytes()
    from euicc_protocol import profiles

    try:
        return profiles.load(name_or_path)
    except profiles.UnknownProfileError as exc:
        raise UsageError(f"{name_or_path}: no such file, and {exc}") from None


def _preload(args: argparse.Namespace, out: Output) -> None:
    from euicc_protocol.iccid import iccid_from_ef
    from euicc_sim.state import ProfileClass, ProfileState

    package = _package(args.package)
    preloaded = []
    for directory in args.directories:
        with _naming(directory, len(args.directories) > 1):
            with _open(directory, args.wait) as card:
                profile = card.preload(
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
        aid = profile.isdp_aid.hex().upper()
        preloaded.append({"directory": directory, "iccid": iccid, "isdpAid": aid, "state": state})
        where = f" in {directory}" if len(args.directories) > 1 else ""
        out.text(f"preloaded {iccid} as {aid} ({state}){where}")
    out.success({"profiles": preloaded}, message=f"preloaded {len(preloaded)} profile(s)")


def _info(args: argparse.Namespace, out: Output) -> None:
    with _open(args.directory, args.wait) as card:
        summary = card_summary(card)
    out.success(summary, text=_summary_lines(summary))


def _profiles(args: argparse.Namespace, out: Output) -> None:
    from euicc_protocol import profiles

    shipped = [{"name": n, "path": str(profiles.path(n))} for n in profiles.names()]
    out.success({"profiles": shipped}, text=[p["name"] for p in shipped])


def _serve(args: argparse.Namespace, out: Output) -> None:
    """Serve cards to pcscd's vpcd driver until Ctrl-C or SIGTERM (JSON Lines)."""
    from euicc_sim.vpcd import parse_address

    try:
        host, port = parse_address(args.vpcd)
    except ValueError as exc:
        raise UsageError(f"--vpcd: {exc}") from None
    if port + len(args.directories) - 1 > 65535:
        raise UsageError(f"--vpcd: ports {port}.. run past 65535 for {len(args.directories)} cards")
    cards: list[Euicc] = []
    try:
        for directory in args.directories:
            cards.append(_open(directory, args.wait))
        _serve_cards(args, out, cards, host, port)
    finally:
        for card in cards:
            card.close()


def _serve_cards(
    args: argparse.Namespace, out: Output, cards: list[Euicc], host: str, port: int
) -> None:
    import signal
    import threading

    from euicc_sim.vpcd import serve_many

    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        for i, (directory, card) in enumerate(zip(args.directories, cards, strict=True)):
            out.event(
                "serving",
                {"eid": card.eid, "directory": directory, "host": host, "port": port + i},
                text=f"serving {card.eid} ({directory}) to vpcd at {host}:{port + i}",
            )
        serve_many(cards, host, port, stop_event=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.success(message="stopped")


def _modem_args(p: CommandParser) -> None:
    from euicc_sim.frontends.modem.serve import add_modem_arguments

    add_modem_arguments(p)
    p.add_argument("--wait", type=float, metavar="SECONDS", help=_WAIT_HELP)


def _modem(args: argparse.Namespace, out: Output) -> None:
    """Serve a card behind an emulated AT modem until Ctrl-C or SIGTERM (JSON Lines)."""
    from euicc_sim.frontends.modem import Modem, quirks_named
    from euicc_sim.frontends.modem.serve import (
        ModemServer,
        parse_tcp_address,
        serve_until_signalled,
    )

    address = None
    if args.tcp is not None:
        try:
            address = parse_tcp_address(args.tcp)
        except ValueError as exc:
            raise UsageError(f"--tcp: {exc}") from None
    card = _open(args.directory, args.wait)
    try:
        modem = Modem(card, quirks_named(args.quirks))
        server = ModemServer(modem, pty_path=args.pty, address=address)
        out.event(
            "serving",
            {
                "eid": card.eid,
                "directory": args.directory,
                "quirks": args.quirks,
                "port": server.url,
            },
            text=f"euicc-sim modem ({args.quirks}) for EID {card.eid} on {server.url}",
        )
        out.stdout.flush()  # a script waits for this line before it opens the port
        serve_until_signalled(server)
    finally:
        card.close()
    out.success(message="stopped")


def _server(run: Callable[[argparse.Namespace], int], what: str) -> Callable[..., None]:
    """A reference server's command: announce it (JSON Lines), run it until stopped."""

    def command(args: argparse.Namespace, out: Output) -> None:
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port {args.port} is out of range (0..65535)")
        out.event(
            "starting",
            {"server": what, "host": args.host, "port": args.port},
            text=None,  # the server logs its own start line
        )
        code = _until_stopped(run, args)
        if code:
            raise CommandError(f"{what} ended with status {code}", ExitCode.FAILED)
        out.success(message="stopped")

    return command


class _Stopped(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM arrived."""


def _until_stopped(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a server until Ctrl-C or SIGTERM, which end it normally (exit status 0).

    uvicorn handles both signals while it serves and raises them again once it has shut down;
    they arrive here then.
    """
    import signal

    def stop(signum: int, frame: object) -> None:
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return run(args)
    except (KeyboardInterrupt, _Stopped):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _smdpp_args(p: CommandParser) -> None:
    from euicc_servers.smdpp.serve import add_smdpp_arguments

    add_smdpp_arguments(p)
    p.set_defaults(run=_server(p.get_default("run"), "smdpp"))


def _eim_args(p: CommandParser) -> None:
    from euicc_servers.eim.serve import add_eim_arguments

    add_eim_arguments(p)
    p.set_defaults(run=_server(p.get_default("run"), "eim"))


_WAIT_HELP = "if another process has the card open, wait up to SECONDS for it (default: fail)"


def _output_options(group: argparse.ArgumentParser) -> None:
    add_output_options(group)


def build_parser() -> argparse.ArgumentParser:
    """The ``euicc-sim`` argument parser."""
    # Two copies: set_defaults on the top parser changes its actions' defaults, which must stay
    # "not given" in the sub-commands'.
    top, common = global_options(_output_options), global_options(_output_options)
    parser = CommandParser(
        prog="euicc-sim", description=(__doc__ or "").replace("``", ""), parents=[top]
    )
    add_version_option(parser)
    parser.set_defaults(**OUTPUT_DEFAULTS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        run: Callable[[argparse.Namespace, Output], None] | None,
        help_text: str,
        build: Callable[[CommandParser], None] | None = None,
        **kw: Any,
    ) -> CommandParser:
        p: CommandParser = sub.add_parser(name, help=help_text, parents=[common], build=build, **kw)
        if run is not None:
            p.set_defaults(run=run)
        return p

    p = add("init", _init, "make a new card in DIR (one per DIR given)")
    p.add_argument("directories", nargs="+", metavar="DIR")
    p.add_argument("--eid", help="32-digit EID (default: random, SGP.26 EIN prefix 89049032)")
    p.add_argument("--curve", choices=_CURVES, default="both")
    p.add_argument("--pki", help="test PKI directory whose EUM issues the eUICC certificate")
    p.add_argument("--euicc-key", help="SK.EUICC.ECDSA (PEM) to use instead of a new key")
    p.add_argument("--euicc-cert", help="CERT.EUICC.ECDSA (DER or PEM), with --euicc-key")
    p.add_argument("--eum-cert", help="CERT.EUM.ECDSA (DER or PEM), with --euicc-key")
    p.add_argument("--ci-cert", action="append", help="a CI certificate the card trusts")
    p.add_argument(
        "--sgp32",
        choices=("1.0", "1.2"),
        default="1.2",
        help="SGP.32 version the card speaks (its EUICCInfo2 iotVersion; default 1.2)",
    )
    p.add_argument(
        "--kind",
        choices=["iot", "consumer"],
        default="iot",
        help="iot: SGP.32 IoT eUICC, profiles managed through eIM packages (default); "
        "consumer: SGP.22 eUICC with local ES10c profile management",
    )

    p = add("preload", _preload, "install a SAIP profile package as a factory would (on each DIR)")
    p.add_argument("directories", nargs="+", metavar="DIR")
    p.add_argument(
        "package",
        metavar="PACKAGE",
        help="unprotected profile package: a DER file or a shipped name ('euicc-sim profiles')",
    )
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
    p.add_argument("--wait", type=float, metavar="SECONDS", help=_WAIT_HELP)

    p = add("info", _info, "show a card's EID, profiles and notifications")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--wait", type=float, metavar="SECONDS", help=_WAIT_HELP)

    add("profiles", _profiles, "list the profile packages shipped with euicc-sim (TS.48)")

    p = add("serve", _serve, "put cards into pcscd's virtual readers (vsmartcard vpcd)")
    p.add_argument("directories", nargs="+", metavar="DIR", help="card directory")
    p.add_argument(
        "--vpcd",
        metavar="HOST:PORT",
        nargs="?",
        const="127.0.0.1:35963",
        default="127.0.0.1:35963",
        help="where vpcd listens (default 127.0.0.1:35963); further cards on the next ports",
    )
    p.add_argument("--wait", type=float, metavar="SECONDS", help=_WAIT_HELP)
    add(
        "modem",
        _modem,
        "serve the card in DIR behind an emulated AT modem (pty or TCP)",
        build=_modem_args,
    )
    add("smdpp", None, "run the reference SM-DP+ (ES9+ over HTTPS)", build=_smdpp_args)
    add(
        "eim",
        None,
        "run the reference eIM (ESipa over HTTPS, operator API); "
        "'eim campaign ...' manages campaigns on a running one",
        build=_eim_args,
    )
    return parser


def _execute(args: argparse.Namespace, out: Output) -> None:
    args.run(args, out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``euicc-sim`` command; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:2] == ["eim", "campaign"]:  # a client of a running eIM, not the server's options
        from euicc_cli.campaign_command import main as campaign_main

        return campaign_main(words[2:])
    return run_command("euicc-sim", build_parser, argv, _execute, default_level=_default_level)


def _default_level(args: argparse.Namespace) -> int:
    # The servers (and the modem) log their start line and requests at INFO: shown unless
    # asked otherwise.
    return logging.INFO if args.command in ("smdpp", "eim", "modem") else logging.WARNING


if __name__ == "__main__":
    sys.exit(main())
