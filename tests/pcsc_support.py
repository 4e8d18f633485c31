"""Test helpers for the real PC/SC stack: pcscd with the vsmartcard vpcd driver, and pyscard.

Shared by ``tests/test_pcsc.py`` and the conformance suite's ``vpcd`` backend:

* :func:`require_pcsc` skips a test when pyscard or pcscd is missing, or fails it under CI
  (``CI=true``) or ``EUICC_SIM_REQUIRE_PCSC=1``, where ``make test`` installs everything;
* :func:`vpcd_port` takes one of vpcd's two reader slots (TCP 35963, 35964) under a file lock
  (``/tmp/euicc-sim-vpcd-<port>.lock``, directory ``EUICC_SIM_LOCK_DIR``), so parallel test
  workers (``pytest -n``) and test processes never share a slot;
* :class:`VpcdCard` puts a card object into that slot with :class:`euicc_sim.vpcd.VpcdClient`
  and finds the slot's reader name by watching which reader gets a card (slot and reader
  names are not tied to each other by anything pcscd reports).

A process holds at most one slot at a time in practice: the users take it per test module
and give it back (card removed, pcscd showing the reader empty) before the next one.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ipa.pcsc import PcscServiceError, list_readers, reader_states

#: vpcd's reader slots in the packaged ``/etc/reader.conf.d/vpcd`` (slot n listens on n + 35963).
VPCD_PORTS = (35963, 35964)
#: Where the cross-process lock files live.
LOCK_DIR = Path(os.environ.get("EUICC_SIM_LOCK_DIR", "/tmp"))
#: How long pcscd may take to show a card arriving in (or leaving) a reader, in seconds.
APPEAR_TIMEOUT = 10.0
#: How long to wait for a slot another process holds, in seconds.
SLOT_TIMEOUT = 300.0


def pcsc_required() -> bool:
    """Whether a missing PC/SC stack is a failure (CI, or ``EUICC_SIM_REQUIRE_PCSC=1``)."""
    return os.environ.get("EUICC_SIM_REQUIRE_PCSC") == "1" or os.environ.get("CI") == "true"


def pcsc_unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it where the PC/SC stack is required."""
    # CI (CI=true) installs the PC/SC stack through `make test`, so there a skip is a failure.
    if pcsc_required():
        pytest.fail(f"{reason} (EUICC_SIM_REQUIRE_PCSC=1 or CI=true)")
    pytest.skip(reason)


def require_pcsc() -> None:
    """Skip (or fail, see :func:`pcsc_unavailable`) unless pyscard imports and pcscd answers."""
    try:
        import smartcard.scard  # noqa: F401
    except ImportError:
        pcsc_unavailable("pyscard is not installed (run scripts/setup-pcsc.sh)")
    try:
        list_readers()
    except PcscServiceError:
        pcsc_unavailable("pcscd is not running (run scripts/setup-pcsc.sh)")


@contextlib.contextmanager
def file_lock(name: str, *, blocking: bool, timeout: float = 60.0) -> Iterator[bool]:
    """An exclusive lock shared by every process on this machine (``fcntl.flock``).

    Yields whether the lock was taken: always True when ``blocking`` (a lock still held by
    someone else after ``timeout`` seconds raises :class:`TimeoutError`), False when not
    blocking and someone else holds it.
    """
    import fcntl

    with open(LOCK_DIR / name, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if not blocking:
                    yield False
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} stayed locked for {timeout} s") from None
                time.sleep(0.05)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_name(what: str) -> str:
    """A lock file name for ``what`` (a reader name, a port...), safe on any file system."""
    return "euicc-sim-" + re.sub(r"[^A-Za-z0-9.-]+", "_", what).strip("_") + ".lock"


@contextlib.contextmanager
def vpcd_port(timeout: float = SLOT_TIMEOUT) -> Iterator[int]:
    """Take a free vpcd slot for the duration of the ``with`` block; yield its TCP port.

    Tries every slot without waiting, then waits (up to ``timeout`` seconds) for the first.
    """
    with contextlib.ExitStack() as stack:
        for port in VPCD_PORTS:
            if stack.enter_context(file_lock(f"euicc-sim-vpcd-{port}.lock", blocking=False)):
                yield port
                return
        port = VPCD_PORTS[0]
        stack.enter_context(
            file_lock(f"euicc-sim-vpcd-{port}.lock", blocking=True, timeout=timeout)
        )
        yield port


@dataclass
class VpcdCard:
    """A card object in a vpcd reader slot (hold the slot's lock, see :func:`vpcd_port`).

    Attributes:
        card: what is served (anything with ``transmit`` and ``reset``).
        port: the slot's TCP port.
        reader: the slot's reader name, once :meth:`insert` found it.
        client: the :class:`euicc_sim.vpcd.VpcdClient` while the card is in the reader.
    """

    card: Any
    port: int
    reader: str = ""
    client: Any = None

    def insert(self) -> None:
        """Connect the card to its vpcd slot and wait until pcscd shows it in a reader."""
        from euicc_sim.vpcd import VpcdClient

        if self.reader:
            wait_until_empty(self.reader)  # pcscd may not have noticed the last removal yet
        with file_lock("euicc-sim-vpcd-detect.lock", blocking=True):
            before = reader_states()
            self.client = VpcdClient(self.card, port=self.port, min_delay=0.05, max_delay=0.5)
            self.client.start()
            if not self.client.wait_connected(5):
                self.remove()
                pcsc_unavailable(
                    f"vpcd did not take the card on 127.0.0.1:{self.port} (not listening, or "
                    "another virtual card holds that slot)"
                )
            self.reader = wait_for_reader(lambda states: new_card(before, states, self.reader))

    def remove(self, *, wait_empty: bool = False) -> None:
        """Take the card out of the reader (stop its vpcd client).

        ``wait_empty``: also wait until pcscd shows the reader empty, so that whoever takes
        the slot next sees its own card arrive (do this before giving the slot back).
        """
        if self.client is not None:
            self.client.stop()
            self.client.join(5)
            self.client = None
        if wait_empty and self.reader:
            wait_until_empty(self.reader)


def new_card(before: dict[str, bool], now: dict[str, bool], known: str) -> str | None:
    """The reader that got a card between the ``before`` and ``now`` states, if any.

    ``known``: the reader found last time, taken as soon as it holds a card again.
    """
    if known and now.get(known):
        return known
    fresh = [name for name, present in now.items() if present and not before.get(name)]
    return fresh[0] if fresh else None


def wait_for_reader(
    pick: Callable[[dict[str, bool]], str | None], timeout: float = APPEAR_TIMEOUT
) -> str:
    """Poll :func:`ipa.pcsc.reader_states` until ``pick`` names a reader; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pick(reader_states())
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"pcscd did not show the emulated card in any reader within {timeout} s")


def wait_until_empty(reader: str, timeout: float = APPEAR_TIMEOUT) -> None:
    """Wait (at most ``timeout`` seconds) until pcscd shows ``reader`` without a card."""
    deadline = time.monotonic() + timeout
    while reader_states().get(reader) and time.monotonic() < deadline:
        time.sleep(0.05)
