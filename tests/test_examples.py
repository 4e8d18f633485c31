"""The runnable examples (the README's demo among them) run to the end and show their story."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sgp32_demo_downloads_switches_and_deletes_through_the_eim() -> None:
    out = run("demo.py")
    assert "ProfileInstallationResult successResult" in out
    assert out.count("eUICC signature verified") == 5  # the download's PIR too
    assert 'results [{"enableResult":0}]' in out
    assert 'results [{"deleteResult":0}]' in out
    assert out.rstrip().endswith("demo finished")


def test_es10_demo_enables_switches_and_deletes() -> None:
    out = run("es10_demo.py")
    assert "refused: ES10c.DeleteProfile failed: deleteResult profileNotInDisabledState (2)" in out
    assert "delivered and removed; 0 left" in out
    assert out.rstrip().endswith("demo finished")


def test_modem_session_talks_at_to_the_emulated_modem() -> None:
    out = run("modem_session.py", "--quirks", "quectel")
    assert "< +CCHO: 1" in out
    eids = [line.split(":")[1].strip() for line in out.splitlines() if "EID" in line]
    assert len(eids) == 3 and len(set(eids)) == 1  # raw CGLA, ipa.modem and the card agree
    assert '< +CRSM: 144,0,"989444999999990920F3"' in out
    assert "> AT+CIMI\n< 001010123456063\n< OK" in out
    assert out.rstrip().endswith("session finished")


def test_cli_scripting_reads_envelopes_and_exit_codes() -> None:
    out = run("cli_scripting.py")
    assert "delete enabled profile: exit 1, profileNotInDisabledState (2)" in out
    assert "disable + delete by AID: exit 0, deleteResult: ok" in out
    assert "no card: exit 3, cannot open the card in" in out
    assert out.rstrip().endswith("example finished")


def test_sgp32_versions_example_speaks_each_card_in_its_version() -> None:
    out = run("sgp32_versions.py")
    assert "card 1.0: the IPAd spoke SGP.32 v1.0.1" in out
    assert "card 1.2: the IPAd spoke SGP.32 v1.2" in out
    assert "sgp32=1.0 (euiccInfo2), enable order done, verified=True" in out
    assert "sgp32=1.2 (operator), enable order done, verified=True" in out
    assert out.rstrip().endswith("demo finished")


def test_usim_startup_reads_imsi_and_authenticates() -> None:
    out = run("usim_startup.py")
    assert "application A0000000871002FF49FF0589 USIM" in out
    assert "EF.IMSI 001010123456063" in out
    assert "== XRES: authenticated" in out
    assert "synchronisation failure: the card's SQN_MS is 32" in out
    assert out.rstrip().endswith("start-up finished")
