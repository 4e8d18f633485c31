"""The batching of durability fsyncs on the event loop (euicc_servers.eim.durability): answers
that arrive while an fsync runs share the next one, a failed fsync fails the answers it was to
cover, and nothing returns before its commits are durable. Real SQLite files and threads."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from euicc_servers.eim.durability import DurableAcks
from euicc_servers.eim.store import EimStore


class _GatedSync:
    """os.fdatasync that counts calls and, for the first, waits until the test opens a gate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        self.calls = 0
        self.inside = threading.Event()
        self.gate = threading.Event()
        self.fail = fail
        real = os.fdatasync

        def sync(fd: int) -> None:
            self.calls += 1
            if self.calls == 1:
                self.inside.set()
                assert self.gate.wait(10)
                if self.fail:
                    raise OSError(5, "Input/output error")
            real(fd)

        monkeypatch.setattr(os, "fdatasync", sync)


async def _until(event: threading.Event) -> None:
    for _ in range(1000):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the fsync thread never started")


def test_answers_arriving_during_an_fsync_share_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EimStore(tmp_path)
    acks = DurableAcks(store)
    gated = _GatedSync(monkeypatch)

    async def run() -> list[int]:
        store.acknowledged = 1  # as a commit that took acknowledgements leaves it
        first = asyncio.ensure_future(acks.wait(1))
        await _until(gated.inside)
        store.acknowledged = 3  # two more commits while the first fsync runs
        later = [asyncio.ensure_future(acks.wait(2)), asyncio.ensure_future(acks.wait(3))]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(t.done() for t in later)  # none before durable
        gated.gate.set()
        await asyncio.gather(first, *later)
        return [store.durable, gated.calls]

    assert asyncio.run(run()) == [3, 2]  # three answers, two fsyncs
    store.close()


def test_a_failed_fsync_fails_the_answers_it_was_to_cover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EimStore(tmp_path)
    acks = DurableAcks(store)
    gated = _GatedSync(monkeypatch, fail=True)

    async def run() -> None:
        store.acknowledged = 1
        first = asyncio.ensure_future(acks.wait(1))
        await _until(gated.inside)
        gated.gate.set()
        with pytest.raises(OSError):
            await first
        assert store.durable == 0
        await acks.wait(1)  # the next answer's fsync succeeds and covers the commit
        assert store.durable == 1

    asyncio.run(run())
    store.close()


def test_nothing_waits_when_the_commits_are_durable_already(tmp_path: Path) -> None:
    store = EimStore(tmp_path)
    acks = DurableAcks(store)
    asyncio.run(acks.wait(0))
    assert acks._thread is None  # no thread started for nothing
    store.close()


def test_answers_within_the_gather_time_share_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EimStore(tmp_path)
    acks = DurableAcks(store, gather=0.05)
    calls: list[int] = []
    real = os.fdatasync

    def sync(fd: int) -> None:
        calls.append(store.acknowledged)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", sync)

    async def run() -> None:
        store.acknowledged = 1
        first = asyncio.ensure_future(acks.wait(1))
        await asyncio.sleep(0.01)  # inside the gather time: no fsync yet, nothing returned
        assert calls == [] and not first.done()
        store.acknowledged = 2
        second = asyncio.ensure_future(acks.wait(2))
        await asyncio.gather(first, second)

    asyncio.run(run())
    assert calls == [2]  # one fsync, started after the second commit, covered both
    assert store.durable == 2
    store.close()


def test_without_gathering_the_fsync_starts_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EimStore(tmp_path)
    acks = DurableAcks(store, gather=0)
    gated = _GatedSync(monkeypatch)

    async def run() -> None:
        store.acknowledged = 1
        first = asyncio.ensure_future(acks.wait(1))
        await _until(gated.inside)  # started without waiting for company
        gated.gate.set()
        await first

    asyncio.run(run())
    assert store.durable == 1 and gated.calls == 1
    store.close()
