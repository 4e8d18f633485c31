"""The backend layer of the ES10 conformance suite.

The tests talk to a card only through the ES10 client (fixture ``es10``) and say what they
need from the card through the ``card`` fixture, a :class:`CardBackend`:

* ``card.provision([ProfileSpec(...), ...])`` returns one :class:`CardProfile` per spec. The
  emulator preloads TS.48 packages to match; a card in a reader has existing profiles that
  fit picked instead, and the test is skipped, naming what it needs, when there are none.
* ``card.power_cycle()`` and ``card.reopen()`` return a new client. ``reopen`` proves
  persistence: the emulator builds a new card object from its storage (from the directory
  for tests marked ``persistence``); a card in a reader is reset through PC/SC.
* ``card.can_modify``: tests marked ``modifies_card`` run only on a backend that may be
  changed freely (the emulator, in process or through vpcd) or when ``--allow-card-changes``
  is given. Tests marked ``exclusive_card`` need ``card.exclusive``.

Which cards a run uses (each test runs once per :class:`CardTarget`, a backend and a client
framing of :data:`FRAMINGS`):

* no option: the ``emulator`` through every framing, and the ``vpcd`` backend (the emulator
  through pcscd + vpcd + pyscard) through :data:`VPCD_DEFAULT_FRAMING`; the vpcd tests carry
  the ``pcsc`` mark and skip when the PC/SC stack is missing (fail under ``CI=true`` or
  ``EUICC_SIM_REQUIRE_PCSC=1``);
* ``--backend emulator`` or ``--backend vpcd``: that backend through every framing;
* ``--reader NAME`` (or ``--backend pcsc --reader NAME``): the card in that PC/SC reader
  through every framing;
* ``--backend modem``: the emulator behind ``euicc-sim modem`` on a pty (quirks profile
  ``--modem-quirks``, default :data:`MODEM_DEFAULT_QUIRKS`) through every framing; without
  ``--backend`` it runs through :data:`MODEM_DEFAULT_FRAMING` only;
* ``--modem DEVICE``: the card inside the cellular module on that AT port (a real one, or
  ``euicc-sim modem`` started by hand) through every framing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import (
    BACKENDS,
    FRAMINGS,
    KINDS,
    CardBackend,
    CardTarget,
    EmulatorBackend,
    ModemBackend,
    ModemDeviceBackend,
    ModemSlot,
    PcscBackend,
    SwitchableCard,
    VpcdBackend,
    VpcdSlot,
)
from modem_support import served_modem
from pcsc_support import VpcdCard, require_pcsc, vpcd_port

from euicc_sim.card import Euicc
from ipa.channel import ChannelConfig
from ipa.es10 import Es10Client
from ipa.modem import ModemError, open_modem_transport
from ipa.pcsc import PcscError, open_reader_transport

#: The framing the vpcd backend runs through when no ``--backend`` is given (all with it).
VPCD_DEFAULT_FRAMING = "assigned-ch-255"
#: The same for the emulated-modem backend, and the module family it behaves like.
MODEM_DEFAULT_FRAMING = "assigned-ch-255"
MODEM_DEFAULT_QUIRKS = "quectel"


def card_targets(config: pytest.Config) -> list[CardTarget]:
    """The (backend, framing) pairs this run's options select.

    Raises:
        pytest.UsageError: contradictory or unknown options.
    """
    backend: str | None = config.getoption("--backend", None)
    reader: str | None = config.getoption("--reader", None)
    modem: str | None = config.getoption("--modem", None)
    if modem is not None:
        if reader is not None or backend not in (None, "modem-device"):
            raise pytest.UsageError("--modem selects the modem-device backend; use it alone")
        return [CardTarget("modem-device", framing) for framing in FRAMINGS]
    if reader is not None:
        if backend not in (None, "pcsc"):
            raise pytest.UsageError(
                f"--reader selects the pcsc backend; it cannot be used with --backend {backend}"
            )
        backend = "pcsc"
    if backend is None:
        # Consumer cards through every framing, an IoT card through the default one.
        targets = [CardTarget("emulator", framing, "consumer") for framing in FRAMINGS]
        targets.append(CardTarget("emulator", VPCD_DEFAULT_FRAMING, "iot"))
        return targets + [
            CardTarget("vpcd", VPCD_DEFAULT_FRAMING, "consumer"),
            CardTarget("modem", MODEM_DEFAULT_FRAMING, "consumer"),
        ]
    if backend not in BACKENDS:
        raise pytest.UsageError(
            f"--backend {backend!r}: unknown card backend; available: {', '.join(BACKENDS)}"
        )
    if backend == "modem-device":
        raise pytest.UsageError("--backend modem-device needs --modem DEVICE")
    if backend == "pcsc" and reader is None:
        raise pytest.UsageError("--backend pcsc needs --reader NAME (the reader holding the card)")
    if not BACKENDS[backend].fresh_cards:  # a card in a reader or modem is what it is
        return [CardTarget(backend, framing) for framing in FRAMINGS]
    return [CardTarget(backend, framing, kind) for kind in KINDS for framing in FRAMINGS]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "exclusive_card: the test compares the whole card (every profile, every notification) "
        "and needs a backend whose card holds only what the test provisioned",
    )
    config.addinivalue_line(
        "markers",
        "kind(name): the test needs an eUICC of this kind ('iot' or 'consumer') and is "
        "skipped on the other",
    )
    card_targets(config)  # option errors now, not once per test
    reader = config.getoption("--reader", None)
    if reader is not None and not hasattr(config, "workerinput"):
        # Once, in the controlling process: a reader that cannot be used is a usage error.
        try:
            with open_reader_transport(reader):
                pass
        except PcscError as exc:
            raise pytest.UsageError(f"--reader {reader!r}: {exc}") from exc
    modem = config.getoption("--modem", None)
    if modem is not None and not hasattr(config, "workerinput"):
        try:
            open_modem_transport(modem, quirks=config.getoption("--modem-quirks")).close()
        except (ModemError, ValueError) as exc:
            raise pytest.UsageError(f"--modem {modem!r}: {exc}") from exc


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "card_target" not in metafunc.fixturenames:
        return
    params = []
    for target in card_targets(metafunc.config):
        marks = [pytest.mark.pcsc] if BACKENDS[target.backend].uses_pcsc else []
        params.append(pytest.param(target, id=target.id, marks=marks))
    metafunc.parametrize("card_target", params, indirect=True)


@pytest.fixture
def card_target(request: pytest.FixtureRequest) -> CardTarget:
    """The backend and framing of this run (parametrised by ``pytest_generate_tests``)."""
    return request.param


@pytest.fixture
def framing(card_target: CardTarget) -> ChannelConfig:
    """The client framing of this run."""
    return FRAMINGS[card_target.framing]


@pytest.fixture(scope="module")
def vpcd_slot() -> Iterator[VpcdSlot]:
    """A vpcd reader slot of the real pcscd, taken for this module's vpcd tests.

    The slot serves a :class:`SwitchableCard`; each :class:`VpcdBackend` puts its own card in.
    Taken per module and given back (reader empty again) at its end, so that
    ``tests/test_pcsc.py`` on the same ``pytest -n`` worker can take a slot in between.
    """
    require_pcsc()
    with vpcd_port() as port:
        card = SwitchableCard(Euicc.create(None, fsync=False))
        served = VpcdCard(card, port)
        served.insert()
        try:
            yield VpcdSlot(card, served.reader)
        finally:
            served.remove(wait_empty=True)


@pytest.fixture(scope="module")
def modem_slot(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModemSlot]:
    """An emulated modem on a pty serving a :class:`SwitchableCard`, for this module's tests."""
    quirks = request.config.getoption("--modem-quirks") or MODEM_DEFAULT_QUIRKS
    if quirks == "auto":
        quirks = MODEM_DEFAULT_QUIRKS
    card = SwitchableCard(Euicc.create(None, fsync=False))
    with served_modem(card, tmp_path_factory.mktemp("modem"), quirks) as server:
        yield ModemSlot(card, server.url, quirks)


def _open_backend(
    request: pytest.FixtureRequest,
    target: CardTarget,
    framing: ChannelConfig,
    directory: Path | None = None,
) -> CardBackend:
    kind = target.kind or "consumer"
    if target.backend == EmulatorBackend.name:
        return EmulatorBackend(framing, directory, kind)
    if target.backend == VpcdBackend.name:
        return VpcdBackend(framing, request.getfixturevalue("vpcd_slot"), directory, kind)
    if target.backend == ModemBackend.name:
        return ModemBackend(framing, request.getfixturevalue("modem_slot"), directory)
    if target.backend == ModemDeviceBackend.name:
        changes = request.node.get_closest_marker("modifies_card") is not None
        config = request.config
        return ModemDeviceBackend(
            framing,
            config.getoption("--modem"),
            config.getoption("--modem-quirks") or "auto",
            changes=changes,
        )
    if target.backend == PcscBackend.name:
        changes = request.node.get_closest_marker("modifies_card") is not None
        return PcscBackend(framing, request.config.getoption("--reader"), changes=changes)
    raise AssertionError(f"no way to open backend {target.backend!r}")


@pytest.fixture
def card(
    request: pytest.FixtureRequest,
    card_target: CardTarget,
    framing: ChannelConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CardBackend]:
    """The card under test (a :class:`CardBackend`)."""
    backend_class = BACKENDS[card_target.backend]
    if request.node.get_closest_marker("modifies_card") and not (
        backend_class.can_modify or request.config.getoption("--allow-card-changes", False)
    ):
        pytest.skip("changes the card; give --allow-card-changes to allow it on this backend")
    if request.node.get_closest_marker("exclusive_card") and not backend_class.exclusive:
        pytest.skip(
            f"compares the whole card; the {backend_class.name} backend's card may hold other "
            "profiles and notifications"
        )
    _skip_other_kind(request, card_target.kind)
    directory = None
    if request.node.get_closest_marker("persistence"):
        directory = tmp_path_factory.mktemp("card") / "euicc"
    backend = _open_backend(request, card_target, framing, directory)
    if card_target.kind is None:  # a card in a reader: ask it
        try:
            _skip_other_kind(request, backend.kind)
        except BaseException:
            backend.close()
            raise
    yield backend
    backend.close()


def _skip_other_kind(request: pytest.FixtureRequest, kind: str | None) -> None:
    """Skip a test marked ``kind(...)`` on a card of another kind (``None``: not known yet)."""
    marker = request.node.get_closest_marker("kind")
    if marker is not None and kind is not None and kind not in marker.args:
        pytest.skip(f"needs a {' or '.join(marker.args)} eUICC; this one is {kind}")


@pytest.fixture
def card_kind(card: CardBackend) -> str:
    """``"iot"`` or ``"consumer"``: the kind of the card under test."""
    return card.kind


@pytest.fixture
def es10(card: CardBackend) -> Es10Client:
    """The ES10 client connected to the card under test."""
    return card.client()


@pytest.fixture
def card_factory(
    request: pytest.FixtureRequest, card_target: CardTarget, framing: ChannelConfig
) -> Iterator[CardFactory]:
    """Make brand-new cards of the selected backend (for model tests: one per example)."""
    if not BACKENDS[card_target.backend].fresh_cards:
        pytest.skip("needs a brand-new card per example; this backend has one fixed card")
    _skip_other_kind(request, card_target.kind)
    factory = CardFactory(request, card_target, framing)
    yield factory
    factory.close()


class CardFactory:
    """Makes brand-new cards of one backend, closing the previous card when making the next."""

    def __init__(
        self, request: pytest.FixtureRequest, target: CardTarget, framing: ChannelConfig
    ) -> None:
        self._request = request
        self._target = target
        self._framing = framing
        self._current: CardBackend | None = None

    def examples(self, wanted: int) -> int:
        """How many of ``wanted`` hypothesis examples to run on this backend (at least one)."""
        return max(1, round(wanted * BACKENDS[self._target.backend].example_share))

    def __call__(self) -> CardBackend:
        self.close()
        self._current = _open_backend(self._request, self._target, self._framing)
        return self._current

    def close(self) -> None:
        """Close the card made last, if any."""
        current, self._current = self._current, None
        if current is not None:
            current.close()
