"""The backend layer of the ES10 conformance suite.

The tests talk to a card only through the ES10 client (fixture ``es10``) and say what they
need from the card through the ``card`` fixture, a :class:`CardBackend`:

* ``card.provision([ProfileSpec(...), ...])`` returns one :class:`CardProfile` per spec. The
  emulator preloads TS.48 packages to match; a physical card will instead look for existing
  profiles that fit and ``pytest.skip`` with what the test needs when there are none.
* ``card.power_cycle()`` and ``card.reopen()`` return a new client. ``reopen`` proves
  persistence: the emulator builds a new card object from its storage (from the directory
  for tests marked ``persistence``); a physical card is simply powered down and up.
* ``card.can_modify``: tests marked ``modifies_card`` run only on a backend that may be
  changed freely (the emulator) or when ``--allow-card-changes`` is given.

Every backend runs the suite through each client framing of :data:`FRAMINGS`.

Options: ``--backend NAME`` (only ``emulator`` so far) and ``--allow-card-changes``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from backends import BACKENDS, FRAMINGS, CardBackend, EmulatorBackend

from ipa.channel import ChannelConfig
from ipa.es10 import Es10Client


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--backend", "emulator")
    if name not in BACKENDS:
        raise pytest.UsageError(
            f"--backend {name!r}: unknown card backend; available: {', '.join(sorted(BACKENDS))}"
        )


@pytest.fixture(params=sorted(FRAMINGS), ids=sorted(FRAMINGS))
def framing(request: pytest.FixtureRequest) -> ChannelConfig:
    """The client framing of this run."""
    return FRAMINGS[request.param]


def _backend_class(config: pytest.Config) -> Callable[..., CardBackend]:
    return BACKENDS[config.getoption("--backend", "emulator")]


@pytest.fixture
def card(
    request: pytest.FixtureRequest, framing: ChannelConfig, tmp_path_factory: pytest.TempPathFactory
):
    """The card under test (a :class:`CardBackend`)."""
    backend_class = _backend_class(request.config)
    if request.node.get_closest_marker("modifies_card") and not (
        getattr(backend_class, "can_modify", False)
        or request.config.getoption("--allow-card-changes", False)
    ):
        pytest.skip("changes the card; give --allow-card-changes to allow it on this backend")
    if backend_class is EmulatorBackend:
        directory = None
        if request.node.get_closest_marker("persistence"):
            directory = tmp_path_factory.mktemp("card") / "euicc"
        backend = EmulatorBackend(framing, directory)
    else:
        backend = backend_class(framing)
    yield backend
    backend.close()


@pytest.fixture
def es10(card: CardBackend) -> Es10Client:
    """The ES10 client connected to the card under test."""
    return card.client()


@pytest.fixture
def card_factory(request: pytest.FixtureRequest, framing: ChannelConfig):
    """Make brand-new cards of the selected backend (for model tests: one per example)."""
    backend_class = _backend_class(request.config)
    if not getattr(backend_class, "fresh_cards", False):
        pytest.skip("needs a brand-new card per example; this backend has one fixed card")
    made: list[CardBackend] = []

    def make() -> CardBackend:
        backend = backend_class(framing)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
