"""Driving the commands from a script: the ``--json`` envelope and the exit codes.

    python examples/cli_scripting.py

Every command run with ``--json`` prints one JSON document, ``{"ok", "code", "message",
"data"}``, also when it fails, and exits with the documented code (docs/cli.md): a script
checks ``ok`` or the exit code and reads ``data``, and never parses text meant for people.
The commands run as ``python -m euicc_sim`` / ``python -m ipa``, the same as the installed
``euicc-sim`` / ``ipa``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def command(program: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run ``program`` (``euicc_sim`` or ``ipa``) with ``--json``: (exit code, envelope)."""
    path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    done = subprocess.run(
        [sys.executable, "-m", program, *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    envelope = json.loads(done.stdout)
    assert envelope["code"] == done.returncode  # the envelope and the exit code agree
    return done.returncode, envelope


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        card = str(Path(tmp) / "card")
        # A consumer card: local ES10c profile management (an IoT card leaves it to its eIM).
        _, made = command("euicc_sim", "init", card, "--kind", "consumer")
        print(f"card {made['data']['cards'][0]['eid']}")
        command("euicc_sim", "preload", card, "TS48V1-A-UNIQUE", "--enable")
        command("euicc_sim", "preload", card, "TS48V1-B-UNIQUE")  # installed disabled

        _, listed = command("ipa", "--card", card, "profiles")
        profiles = listed["data"]["profileInfoListOk"]
        for p in profiles:
            print(f"  {p['iccid']} {p['isdpAid']} {p['profileState']}")
        enabled = next(p for p in profiles if p["profileState"] == "enabled")

        # A refusal: exit code 1, the ES10 result in data.
        code, refused = command("ipa", "--card", card, "delete", enabled["iccid"])
        error = refused["data"]
        print(f"delete enabled profile: exit {code}, {error['result']} ({error['resultCode']})")

        # Profiles by ISD-P AID as well as by ICCID.
        command("ipa", "--card", card, "disable", enabled["isdpAid"])
        code, deleted = command("ipa", "--card", card, "delete", enabled["isdpAid"])
        print(f"disable + delete by AID: exit {code}, {deleted['message']}")

        # A card directory that does not exist: exit code 3, said in the envelope.
        code, missing = command("ipa", "--card", str(Path(tmp) / "nothing"), "eid")
        print(f"no card: exit {code}, {missing['message']}")
    print("example finished")


if __name__ == "__main__":
    main()
