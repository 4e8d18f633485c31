"""Test helpers for the emulated modem: serve a card on a real pseudo-terminal, stub cards."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from euicc_sim.frontends.modem import Modem, quirks_named
from euicc_sim.frontends.modem.serve import ModemServer
from ipa.modem import ModemTransport, open_modem_transport

ISD_R = bytes.fromhex("A0000005591010FFFFFFFF8900000100")


class LockedCard:
    """A card shared by the modem's thread and the test's thread (each call under a lock)."""

    def __init__(self, card: Any) -> None:
        self.lock = threading.RLock()
        self.card = card

    def transmit(self, apdu: bytes) -> bytes:
        with self.lock:
            return bytes(self.card.transmit(apdu))

    def reset(self) -> bytes:
        with self.lock:
            return bytes(self.card.reset())


@contextlib.contextmanager
def served_modem(card: Any, directory: Path, quirks: str = "generic") -> Iterator[ModemServer]:
    """``card`` behind an emulated modem of profile ``quirks`` on a pty linked in
    ``directory``."""
    server = ModemServer(Modem(card, quirks_named(quirks)), pty_path=directory / "modem").start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def modem_transport(
    card: Any, directory: Path, quirks: str = "generic", ipa_quirks: str = "auto"
) -> Iterator[ModemTransport]:
    """An IPAd transport through a served modem (both closed at the end)."""
    with served_modem(card, directory, quirks) as server:
        transport = open_modem_transport(server.url, quirks=ipa_quirks, timeout=10)
        try:
            yield transport
        finally:
            transport.close()


def refresh_command(qualifier: int, number: int = 1) -> bytes:
    """A proactive REFRESH (ETSI TS 102 223 §6.6.13) from the UICC to the terminal."""
    body = bytes((0x81, 0x03, number, 0x01, qualifier, 0x82, 0x02, 0x81, 0x82))
    return bytes((0xD0, len(body))) + body


class RefreshingCard:
    """A real card that, once armed, ends its next ``90 00`` with ``91 xx`` and serves a
    proactive REFRESH through FETCH; records FETCH, TERMINAL RESPONSE and resets.

    ``arm_on``: a STORE DATA whose request starts with these bytes arms it (``BF31``
    EnableProfile), or ``None`` to arm by hand (:attr:`armed`).
    """

    def __init__(self, card: Any, qualifier: int = 0x04, arm_on: bytes | None = None) -> None:
        self.card = card
        self.qualifier = qualifier
        self.arm_on = arm_on
        self.armed = False
        self._pending: bytes | None = None
        self.fetches = 0
        self.terminal_responses: list[bytes] = []
        self.resets = 0

    def transmit(self, apdu: bytes) -> bytes:
        apdu = bytes(apdu)
        if apdu[:2] == b"\x80\x12":
            self.fetches += 1
            if self._pending is None:
                return b"\x69\x85"
            command, self._pending = self._pending, None
            return command + b"\x90\x00"
        if apdu[:2] == b"\x80\x14":
            self.terminal_responses.append(apdu)
            return b"\x90\x00"
        if self.arm_on is not None and apdu[1] == 0xE2 and apdu[5:].startswith(self.arm_on):
            self.armed = True
        response = bytes(self.card.transmit(apdu))
        if self.armed and response[-2:] == b"\x90\x00":
            self.armed = False
            self._pending = refresh_command(self.qualifier)
            return response[:-2] + bytes((0x91, len(self._pending)))
        return response

    def reset(self) -> bytes:
        self.resets += 1
        self._pending = None
        return bytes(self.card.reset())
