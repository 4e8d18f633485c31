"""Options and markers shared by the whole suite (registered here so that any run accepts them)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "ES10 conformance suite")
    group.addoption(
        "--backend",
        default="emulator",
        help="card backend the conformance suite runs on (available: emulator)",
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
