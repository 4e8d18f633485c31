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
