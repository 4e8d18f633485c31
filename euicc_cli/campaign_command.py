"""``euicc-sim eim campaign ...``: campaigns on a running eIM, through its operator API.

    euicc-sim eim campaign create --url https://127.0.0.1:8444 --state eim-state --pki pki \\
        --name enable --label site=berlin --order '{"type": "psmo", ...}' \\
        --batch-size 50 --max-failures 2
    euicc-sim eim campaign watch 1 ...      # progress until done or stopped
    euicc-sim eim campaign show|pause|resume|abort ID ...
    euicc-sim eim campaign list ...

The token comes from ``--token``, ``$EIM_ADMIN_TOKEN`` or the eIM's state directory
(``--state DIR``: ``DIR/admin-token``); TLS is verified against ``--ca PEM`` or the CIs of a
test PKI (``--pki``), unless ``--insecure``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from euicc_cli.exits import CommandError, ExitCode, UsageError
from euicc_cli.options import (
    OUTPUT_DEFAULTS,
    CommandParser,
    add_output_options,
    global_options,
    url,
)
from euicc_cli.output import Output
from euicc_cli.runner import run_command

__all__ = ["build_parser", "main"]

PROG = "euicc-sim eim campaign"


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", type=url, default="https://127.0.0.1:8444", help="the eIM")
    p.add_argument("--token", help="operator API token (default: $EIM_ADMIN_TOKEN or --state)")
    p.add_argument("--state", help="the eIM's state directory (its admin-token file)")
    p.add_argument("--ca", metavar="PEM", help="CA certificate(s) of the eIM's TLS certificate")
    p.add_argument("--pki", help="test PKI directory or 'sgp26': trust its CIs for TLS")
    p.add_argument("--insecure", action="store_true", help="do not verify the eIM's TLS")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``euicc-sim eim campaign``."""
    top, common = global_options(add_output_options), global_options(add_output_options)
    parser = CommandParser(
        prog=PROG,
        description="campaigns on a running eIM, through its operator API (docs/campaigns.md)",
        parents=[top],
    )
    parser.set_defaults(**OUTPUT_DEFAULTS)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("create", help="start a campaign", parents=[common])
    _connection(p)
    p.add_argument("--name", required=True)
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--all", action="store_true", help="every registered eUICC")
    chosen.add_argument("--eid", action="append", help="an EID (repeatable)")
    chosen.add_argument("--label", action="append", metavar="KEY=VALUE", help="repeatable")
    p.add_argument("--order", required=True, help="the order as JSON, or @FILE")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--pause", type=float, dest="pause_seconds", help="seconds between waves")
    p.add_argument("--max-failures", type=int)
    p.add_argument("--max-failure-rate", type=float)
    p.add_argument("--min-results", type=int)
    p.add_argument("--wave-timeout", type=float)
    p.add_argument("--follow", action="store_true", help="devices registered later join")
    p = sub.add_parser("list", help="every campaign with its counts", parents=[common])
    _connection(p)
    for name, text in [
        ("show", "a campaign's state, counts and devices"),
        ("pause", "start no further wave"),
        ("resume", "carry on with a paused campaign"),
        ("abort", "stop for good (queued orders are cancelled)"),
        ("watch", "print progress until the campaign is done or stopped"),
    ]:
        p = sub.add_parser(name, help=text, parents=[common])
        _connection(p)
        p.add_argument("id", type=int)
        if name == "watch":
            p.add_argument("--interval", type=float, default=1.0)
    return parser


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token)
    if os.environ.get("EIM_ADMIN_TOKEN"):
        return os.environ["EIM_ADMIN_TOKEN"]
    if args.state:
        path = Path(args.state) / "admin-token"
        try:
            return path.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise UsageError(f"cannot read the token in {path}: {exc.strerror}") from None
    return None


def _verify(args: argparse.Namespace) -> Any:
    import ssl

    if args.insecure:
        return False
    if args.ca:
        return ssl.create_default_context(cafile=args.ca)
    if args.pki:
        from euicc_servers.common.pkisets import load_pki_sets

        pem = b"".join(s.ci.cert_pem for s in load_pki_sets(args.pki)).decode()
        return ssl.create_default_context(cadata=pem)
    return True


def _order(text: str) -> Any:
    try:
        raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
        return json.loads(raw)
    except OSError as exc:
        raise UsageError(f"--order: {exc.strerror}: {text[1:]}") from None
    except ValueError as exc:
        raise UsageError(f"--order is not JSON: {exc}") from None


def _select(args: argparse.Namespace) -> Any:
    if args.all:
        return "all"
    if args.eid:
        return {"eids": args.eid}
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return {"labels": labels}


def _rollout(args: argparse.Namespace) -> dict[str, Any] | None:
    names = {
        "batch_size": "batchSize",
        "pause_seconds": "pauseSeconds",
        "max_failures": "maxFailures",
        "max_failure_rate": "maxFailureRate",
        "min_results": "minResults",
        "wave_timeout": "waveTimeoutSeconds",
    }
    rollout = {api: getattr(args, attr) for attr, api in names.items()}
    rollout = {k: v for k, v in rollout.items() if v is not None}
    return rollout or None


def progress_line(view: dict[str, Any]) -> str:
    """One line of campaign progress for people."""
    counts = view["counts"]
    parts = " ".join(f"{k} {v}" for k, v in counts.items())
    reason = f" ({view['reason']})" if view.get("reason") else ""
    head = f"campaign {view['id']} {view['name']!r}: {view['state']}{reason}"
    return f"{head}, wave {view['wave']}: {parts}"


def _execute(args: argparse.Namespace, out: Output) -> None:
    import httpx

    from euicc_servers.eim.client import EimApi, EimApiError

    try:
        with EimApi(args.url, _token(args), verify=_verify(args)) as api:
            if args.action == "create":
                view = api.create_campaign(
                    args.name, _select(args), _order(args.order), _rollout(args), follow=args.follow
                )
            elif args.action == "list":
                listing = api.campaigns()
                out.success(listing, text=[progress_line(c) for c in listing])
                return
            elif args.action == "watch":
                while True:
                    view = api.campaign(args.id)
                    out.event(
                        "progress",
                        {k: view[k] for k in ("id", "state", "wave", "counts")},
                        progress_line(view),
                    )
                    if view["state"] in ("done", "stopped"):
                        break
                    time.sleep(args.interval)
                out.finish()
                return
            else:
                view = getattr(api, "campaign" if args.action == "show" else args.action)(args.id)
    except EimApiError as exc:
        code = ExitCode.USAGE if exc.status == 400 else ExitCode.FAILED
        raise CommandError(
            f"the eIM refused: {exc.message}", code, {"status": exc.status}
        ) from None
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {args.url}: {exc}", ExitCode.UNREACHABLE) from None
    lines = [progress_line(view)]
    if args.action == "show":
        lines += [f"  {d['eid']} wave {d['wave']}: {d['status']}" for d in view.get("devices", [])]
    out.success(view, text=lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``euicc-sim eim campaign``; returns the exit status."""
    return run_command(PROG, build_parser, argv, _execute)


if __name__ == "__main__":
    sys.exit(main())
