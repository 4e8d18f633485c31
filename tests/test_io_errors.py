"""Storage I/O errors: the card never answers from a state that is not the one on disk.

For each state-changing command of :mod:`test_crash_safety` the command first runs under a
counting :class:`FaultyIO`, which lists its file-system effects. Then, for every effect ``k``,
a fresh copy of the card runs the command with effect ``k`` failing with ``EIO``:

* ``transient``: the effect is not done and the error is reported; later effects work;
* ``transient-done``: the effect is done (the rename happened, the bytes reached the file)
  and an error is reported all the same;
* ``persistent``: effect ``k`` and every later one fail until the disk is repaired.

After the failed command the card's memory must equal the state file on disk, the answer must
say what happened (success if and only if the new state is the one on disk; otherwise
``6581`` memory failure, never ``6F00``), and nothing monotonic may go back: notification and
package-result seqNumbers, ISD-P indexes, association tokens, eIM counters, CRL numbers. With
the disk still failing the card refuses every command (``6581``); once it works again the
next command goes through, and the card reopened from disk has exactly the state the card
had in memory, complete (no temporary files, no stray blobs, notifications verify).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_crash_safety import (
    FOLLOW_UP_DP,
    ICCID_A,
    ICCID_B,
    PKG_E,
    STATE_CHANGING,
    Cards,
    Command,
    _files,
    check_complete,
    enable_profile,
    normalised,
    set_default_dp_address,
)
from usim_support import ADM1, PIN1, TS48_IMSI_EF

from euicc_sim.card import CardError, Euicc
from euicc_sim.state import CardState
from euicc_sim.storage import STATE_FILE, DirectoryStorage, FaultyIO, OsFileIO, state_from_json

TS48_PACKAGE = sorted((Path(__file__).resolve().parents[1] / "profiles" / "ts48").glob("*.der"))[
    -1
].read_bytes()
SW_MEMORY_FAILURE = b"\x65\x81"
SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"
GET_EID = bytes.fromhex("80E2910006BF3E035C015A")


@dataclass(frozen=True)
class Mode:
    name: str
    done: bool
    persistent: bool

    def __str__(self) -> str:
        return self.name


MODES = [
    Mode("transient", done=False, persistent=False),
    Mode("transient-done", done=True, persistent=False),
    Mode("persistent", done=False, persistent=True),
]


class NoFlushIO(OsFileIO):
    """The real file system without the flushes to the device (fsync calls are still made,
    so counted and failed by :class:`FaultyIO`): this module tests answers, not durability."""

    def fsync(self, path: str) -> None:
        pass

    def fsync_dir(self, path: str) -> None:
        pass


def faulty(fail_at: int | None = None, **kw: bool) -> FaultyIO:
    return FaultyIO(fail_at, inner=NoFlushIO(), **kw)


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> Cards:
    return Cards(tmp_path_factory.mktemp("io-error-cards"))


def on_disk(path: Path) -> CardState:
    """The committed state, read without opening the card (nothing is changed)."""
    return state_from_json((path / STATE_FILE).read_bytes())


def recording(card: Euicc) -> list[bytes]:
    """Record the status word of every response of ``card`` (in a list that grows)."""
    words: list[bytes] = []
    transmit = card.transmit

    def record(apdu: bytes) -> bytes:
        response = transmit(apdu)
        words.append(response[-2:])
        return response

    card.transmit = record  # type: ignore[method-assign]
    return words


def check_monotonic(old: CardState, new: CardState, where: str) -> None:
    """Nothing that must only grow went back from ``old`` to ``new``."""
    assert new.next_seq_number >= old.next_seq_number, where
    assert new.next_isdp_index >= old.next_isdp_index, where
    assert new.next_association_token >= old.next_association_token, where
    for eim in old.eim_configs:
        now = new.eim_config(eim.eim_id)
        if now is not None and now.association_token == eim.association_token:
            assert now.counter_value >= eim.counter_value, f"{where}: eIM counter went back"
    for crl in old.crls:
        now_crl = new.crl_for(crl.ci_pkid)
        if now_crl is not None:
            assert now_crl.crl_number >= crl.crl_number, f"{where}: crlNumber went back"
    numbers = [n.seq_number for n in new.notifications]
    numbers += [r.seq_number for r in new.package_results]
    assert len(numbers) == len(set(numbers)), f"{where}: a seqNumber is used twice"
    assert all(n < new.next_seq_number for n in numbers), f"{where}: seqNumber not below next"


def run(command: Command, card: Euicc) -> bool:
    """Send ``command``; True if the card answered it as done (its checks passed)."""
    try:
        command.run(card)
    except (CardError, Exception):
        return False
    return True


@dataclass
class Reference:
    """The command run once without errors: its effects and the state it leads to."""

    effects: list[str]
    before: CardState
    after: CardState
    first_new: int
    files: dict[str, bytes]


def reference(cards: Cards, tmp: Path, command: Command) -> Reference:
    start = cards.start(command)
    path = cards.copy(start, tmp, "count")
    io = faulty()
    with Euicc(DirectoryStorage(path, io=io)) as card:
        before = card.state
        command.run(card)
        after = card.state
    assert io.log, f"{command} has no effects"
    return Reference(list(io.log), before, after, before.next_seq_number, _files(start))


def fail_once_at(
    cards: Cards, tmp: Path, command: Command, ref: Reference, k: int, mode: Mode
) -> str:
    """Run ``command`` with effect ``k`` failing as ``mode`` says; check the card; return
    "done" or "refused" (what the card answered)."""
    where = f"{command}, {mode} error at effect {k} ({ref.effects[k]})"
    path = cards.copy(cards.start(command), tmp, f"{mode}-{k}")
    io = faulty(k, done=mode.done, persistent=mode.persistent)
    card = Euicc(DirectoryStorage(path, io=io))
    words = recording(card)
    done = run(command, card)
    assert io.failures >= 1, f"{where}: the error was never injected"
    assert SW_NO_PRECISE_DIAGNOSIS not in words, f"{where}: answered 6F00"
    disk = on_disk(path)
    if done:
        assert normalised(disk, ref.first_new) == normalised(ref.after, ref.first_new), (
            f"{where}: answered success but the new state is not on disk"
        )
    else:
        assert disk == ref.before, f"{where}: refused, yet the state on disk changed"
        assert SW_MEMORY_FAILURE in words or not words, f"{where}: refused without 6581"
    assert card.state == disk, f"{where}: memory and disk disagree"
    check_monotonic(ref.before, card.state, where)

    if mode.persistent and card.context.needs_recovery:
        # The disk still fails: nothing is answered from memory, not even a read.
        assert card.transmit(GET_EID) == SW_MEMORY_FAILURE, where
        assert on_disk(path) == disk
    io.repair()
    set_default_dp_address(FOLLOW_UP_DP)(card)
    assert card.state.default_dp_address == FOLLOW_UP_DP
    assert card.state == on_disk(path), f"{where}: memory and disk disagree after recovery"
    check_monotonic(disk, card.state, f"{where}, next command")
    card.close()
    with Euicc.open(path) as reopened:
        assert reopened.state == card.state, f"{where}: reopened to another state"
        check_complete(reopened, path, ref.files)
    return "done" if done else "refused"


def _commit_point(effects: list[str]) -> int:
    """Index of the rename of the new state file over ``state.json``."""
    return next(
        i for i, e in enumerate(effects) if e.startswith("replace ") and e.endswith(STATE_FILE)
    )


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("command", STATE_CHANGING, ids=str)
def test_io_error_at_every_effect_leaves_memory_and_disk_agreeing(
    cards: Cards, tmp_path: Path, command: Command, mode: Mode
) -> None:
    ref = reference(cards, tmp_path, command)
    outcomes = [
        fail_once_at(cards, tmp_path, command, ref, k, mode) for k in range(len(ref.effects))
    ]
    # Refused while the error comes before the commit point, done once the rename is in.
    commit = _commit_point(ref.effects)
    at_commit = "done" if mode.done else "refused"
    expected = ["refused"] * commit + [at_commit] + ["done"] * (len(ref.effects) - commit - 1)
    assert outcomes == expected, list(zip(ref.effects, outcomes, strict=True))


def test_a_failed_directory_fsync_after_the_rename_is_answered_as_done_and_numbers_go_on(
    cards: Cards, tmp_path: Path
) -> None:
    """The case of the issue: the rename is in, the directory fsync fails. The card answers
    the command as done, keeps the new state, and the next notification gets a new number."""
    command = STATE_CHANGING[0]  # enable B while A is enabled: notifications 5 and 6
    ref = reference(cards, tmp_path, command)
    fsync_dir = _commit_point(ref.effects) + 1
    path = cards.copy(cards.base, tmp_path, "fsync-dir")
    io = faulty(fsync_dir)
    with Euicc(DirectoryStorage(path, io=io)) as card:
        words = recording(card)
        enable_profile(ICCID_B)(card)  # raises unless the card answers enableResult ok
        assert io.failures == 1 and SW_MEMORY_FAILURE not in words
        assert card.state == on_disk(path)
        assert [n.seq_number for n in card.state.notifications] == [1, 3, 4, 5, 6]
        enable_profile(ICCID_A)(card)
        assert [n.seq_number for n in card.state.notifications] == [1, 3, 4, 5, 6, 7, 8]
        assert card.state == on_disk(path)


def test_a_preload_that_fails_on_the_disk_raises_a_card_error_and_changes_nothing(
    cards: Cards, tmp_path: Path
) -> None:
    path = cards.copy(cards.base, tmp_path, "preload")
    before = on_disk(path)
    io = faulty(0, persistent=True)
    with Euicc(DirectoryStorage(path, io=io)) as card:
        with pytest.raises(CardError, match="storage failed, nothing preloaded"):
            card.preload(PKG_E)
        assert card.state == before == on_disk(path)
        with pytest.raises(CardError, match="storage is failing"):
            card.preload(PKG_E)
        io.repair()
        card.preload(PKG_E)
        assert card.state == on_disk(path) != before


# --- the UICC side: a file update of the enabled profile ------------------------------------

NEW_IMSI = bytes.fromhex("080910101032547698")
UPDATE_PREFIX = [
    bytes.fromhex("00A4040C07A0000000871002"),  # SELECT the TS.48 USIM
    b"\x00\x20\x00\x0a\x08" + ADM1,  # VERIFY ADM1
    b"\x00\x20\x00\x01\x08" + PIN1,  # VERIFY PIN1
    bytes.fromhex("00A4000C026F07"),  # SELECT EF.IMSI
]
UPDATE_IMSI = bytes.fromhex("00D6000009") + NEW_IMSI
READ_IMSI = bytes.fromhex("00B0000009")


def _imsi(card: Euicc) -> bytes:
    card.reset()
    for command in UPDATE_PREFIX:
        assert card.transmit(command)[-2:] == b"\x90\x00"
    response = card.transmit(READ_IMSI)
    assert response[-2:] == b"\x90\x00"
    return response[:-2]


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_io_error_while_a_uicc_file_is_updated(tmp_path: Path, mode: Mode) -> None:
    """UPDATE BINARY saves the profile's UICC state blob and commits: an error at any effect
    is answered 6581 (file unchanged) or 9000 (file changed), as the disk says."""
    origin = tmp_path / "origin"
    with Euicc.create(origin, fsync=False) as card:
        card.preload(TS48_PACKAGE, enable=True)
        assert _imsi(card) == TS48_IMSI_EF
    counter = faulty()
    shutil.copytree(origin, tmp_path / "count")
    with Euicc(DirectoryStorage(tmp_path / "count", io=counter)) as card:
        for command in UPDATE_PREFIX:
            card.transmit(command)
        start = counter.count
        assert card.transmit(UPDATE_IMSI) == b"\x90\x00"
        effects = counter.log[start:]
    assert effects
    for k in range(len(effects)):
        where = f"{mode} error at effect {k} ({effects[k]})"
        path = tmp_path / f"{mode}-{k}"
        shutil.copytree(origin, path)
        io = faulty(None, done=mode.done, persistent=mode.persistent)
        card = Euicc(DirectoryStorage(path, io=io))
        card.reset()
        for command in UPDATE_PREFIX:
            assert card.transmit(command)[-2:] == b"\x90\x00"
        io.fail_at = io.count + k
        sw = card.transmit(UPDATE_IMSI)
        assert sw in (b"\x90\x00", SW_MEMORY_FAILURE), where
        assert card.state == on_disk(path), f"{where}: memory and disk disagree"
        io.repair()
        expected = NEW_IMSI if sw == b"\x90\x00" else TS48_IMSI_EF
        card.reset()
        assert _imsi(card) == expected, where
        card.close()
        with Euicc.open(path) as reopened:
            assert _imsi(reopened) == expected, f"{where}: reopened with another file content"
