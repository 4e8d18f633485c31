"""Options and markers shared by the whole suite (registered here so that any run accepts them)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI must never fail at random: the default profile is derandomized (the same examples on every
# run) and prints the blob that reproduces a failure. `make fuzz` selects "fuzz": random, and
# as many examples as the time allows.
settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None, database=None)
settings.register_profile("fuzz", derandomize=False, print_blob=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "ES10 conformance suite")
    group.addoption(
        "--backend",
        default=None,
        choices=("emulator", "vpcd", "pcsc", "modem", "modem-device"),
        help="card backend the conformance suite runs on: emulator (in process), vpcd (the "
        "emulator through pcscd + vpcd + pyscard), pcsc (the card in the --reader), modem "
        "(the emulator behind an emulated AT modem on a pty) or modem-device (the card in "
        "the --modem module). Default: the emulator, and the emulator through vpcd and "
        "through the emulated modem in one client framing.",
    )
    group.addoption(
        "--modem",
        default=None,
        metavar="DEVICE",
        help="run the conformance suite on the card inside the cellular module whose AT port "
        "is DEVICE (/dev/ttyUSB2, socket://host:port); implies --backend modem-device",
    )
    group.addoption(
        "--modem-quirks",
        default=None,
        metavar="NAME",
        help="module family for --modem (default auto) and for the emulated modem backend "
        "(default quectel)",
    )
    group.addoption(
        "--reader",
        default=None,
        metavar="NAME",
        help="run the conformance suite on the card in this PC/SC reader (a name, part of "
        "one, or an index as in 'ipa --reader'); implies --backend pcsc",
    )
    group.addoption(
        "--allow-card-changes",
        action="store_true",
        default=False,
        help="run conformance tests that change the card (enable, delete, memory reset...) "
        "on a physical card; required there because they can destroy its profiles. The "
        "emulator is always allowed.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "modifies_card: the test changes the card (needs --allow-card-changes on "
        "a backend that is not freely modifiable)",
    )
    config.addinivalue_line(
        "markers", "persistence: the test reopens the card; the emulator keeps it in a directory"
    )
