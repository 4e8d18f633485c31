"""Card storage: JSON round trip, directory layout rules, damage detection and crash safety."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from euicc_sim.state import (
    CardState,
    NotificationConfig,
    NotificationEvent,
    PendingNotification,
    Profile,
    ProfileClass,
    ProfileOwner,
    ProfileState,
)
from euicc_sim.storage import (
    STATE_FILE,
    CrashingIO,
    DirectoryStorage,
    FileIO,
    MemoryStorage,
    OsFileIO,
    SimulatedCrash,
    StorageError,
    referenced_blobs,
    state_from_json,
    state_to_json,
)

# --- strategies -----------------------------------------------------------------------------

text = st.text(max_size=24)
small_bytes = st.binary(max_size=24)
digests = st.binary(min_size=32, max_size=32).map(bytes.hex)
events = st.sampled_from(NotificationEvent)

profiles = st.builds(
    Profile,
    iccid=st.binary(min_size=10, max_size=10),
    isdp_aid=st.binary(min_size=16, max_size=16),
    state=st.sampled_from(ProfileState),
    profile_class=st.sampled_from(ProfileClass),
    nickname=st.none() | text,
    service_provider_name=st.none() | text,
    profile_name=st.none() | text,
    icon_type=st.none() | st.integers(0, 1),
    icon=st.none() | small_bytes,
    notification_config=st.lists(
        st.builds(NotificationConfig, events=st.frozensets(events), address=text), max_size=3
    ).map(tuple),
    profile_owner=st.none()
    | st.builds(
        ProfileOwner,
        mcc_mnc=st.binary(min_size=3, max_size=3),
        gid1=st.none() | small_bytes,
        gid2=st.none() | small_bytes,
    ),
    ppr1=st.booleans(),
    ppr2=st.booleans(),
    package_digest=st.none() | digests,
    preloaded=st.booleans(),
    package_size=st.integers(0, 2**40),
)

pending_notifications = st.builds(
    PendingNotification,
    seq_number=st.integers(0, 2**31),
    event=events,
    address=text,
    iccid=st.none() | st.binary(min_size=10, max_size=10),
    encoded=st.binary(max_size=80),
)

card_states = st.builds(
    CardState,
    profiles=st.lists(profiles, max_size=4).map(tuple),
    notifications=st.lists(pending_notifications, max_size=4).map(tuple),
    next_seq_number=st.integers(0, 2**63),
    next_isdp_index=st.integers(0, 0xFFFF),
    default_dp_address=st.none() | text,
    root_ds_address=text,
)


# --- serialization --------------------------------------------------------------------------


@given(card_states)
@settings(max_examples=200, deadline=None)
def test_state_json_round_trip(state: CardState) -> None:
    text = state_to_json(state)
    assert state_from_json(text) == state
    assert state_from_json(text.encode()) == state
    assert state_to_json(state_from_json(text)) == text  # canonical: same state, same bytes


@given(card_states)
@settings(max_examples=30, deadline=None)
def test_memory_storage_serializing_round_trip(state: CardState) -> None:
    storage = MemoryStorage(serialize=True)
    for d in referenced_blobs(state):
        storage._blobs[d] = b""  # the state only needs the names to exist
    storage.commit(state)
    assert storage.load() == state


def test_state_json_encodes_bytes_as_hex_and_enums_by_value() -> None:
    p = Profile(iccid=bytes.fromhex("989444999999990920F3"), isdp_aid=b"\xa0", ppr1=True)
    doc = json.loads(state_to_json(CardState(profiles=(p,))))
    assert doc["format"] == 1
    (got,) = doc["state"]["profiles"]
    assert got["iccid"] == "989444999999990920f3"
    assert got["state"] == 0 and got["profile_class"] == 2 and got["ppr1"] is True


def test_lone_surrogate_survives_round_trip() -> None:
    p = Profile(iccid=bytes(10), isdp_aid=bytes(16), nickname="a\ud800b")
    state = CardState(profiles=(p,))
    assert state_from_json(state_to_json(state)) == state


def _document(state_obj: object) -> str:
    body = json.dumps(state_obj, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(body.encode()).hexdigest()
    return json.dumps({"format": 1, "sha256": digest, "state": state_obj})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(surprise=1), "unknown fields"),
        (lambda s: s.update(next_seq_number=True), "expected int"),
        (lambda s: s.update(next_seq_number="1"), "expected int"),
        (lambda s: s["profiles"][0].update(state=7), "not a ProfileState"),
        (lambda s: s["profiles"][0].update(iccid="zz"), "expected hex"),
        (lambda s: s["profiles"][0].pop("iccid"), "missing field 'iccid'"),
        (lambda s: s.update(profiles={}), "expected a list"),
        (lambda s: s["profiles"][0].update(notification_config=[5]), "expected an object"),
    ],
)
def test_well_formed_but_invalid_state_is_rejected(
    mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    state = CardState(profiles=(Profile(iccid=bytes(10), isdp_aid=bytes(16)),))
    obj = json.loads(state_to_json(state))["state"]
    mutate(obj)
    with pytest.raises(StorageError, match=message):
        state_from_json(_document(obj))


def test_missing_fields_with_defaults_take_the_default() -> None:
    # Files written before a field was added stay readable.
    obj = json.loads(state_to_json(CardState()))["state"]
    del obj["root_ds_address"]
    assert state_from_json(_document(obj)) == CardState()


# --- directory storage ----------------------------------------------------------------------

PKG1 = b"package one" * 100
PKG2 = b"package two" * 100
D1 = hashlib.sha256(PKG1).hexdigest()
D2 = hashlib.sha256(PKG2).hexdigest()


def _profile(n: int, digest: str | None = None) -> Profile:
    return Profile(iccid=bytes([n]) * 10, isdp_aid=bytes([n]) * 16, package_digest=digest)


def test_fresh_directory_loads_none(tmp_path: Path) -> None:
    assert DirectoryStorage(tmp_path / "card").load() is None


def test_commit_then_reopen(tmp_path: Path) -> None:
    s = DirectoryStorage(tmp_path)
    s.load()
    digest = s.put_blob(PKG1)
    assert digest == D1
    state = CardState(profiles=(_profile(1, digest),), next_seq_number=7)
    s.commit(state)
    s.close()
    again = DirectoryStorage(tmp_path)
    assert again.load() == state
    assert again.get_blob(D1) == PKG1


def test_put_blob_is_idempotent(tmp_path: Path) -> None:
    io = CrashingIO()
    s = DirectoryStorage(tmp_path, io=io)
    s.load()
    assert s.put_blob(PKG1) == s.put_blob(PKG1) == D1
    assert sum(e.startswith("write") for e in io.log) == 1


def test_fixed_files(tmp_path: Path) -> None:
    s = DirectoryStorage(tmp_path)
    assert s.read_file("eid") is None
    s.write_file("eid", b"\x89" * 16)
    s.write_file("eid", b"\x89" * 16)
    s.close()
    assert DirectoryStorage(tmp_path).read_file("eid") == b"\x89" * 16
    DirectoryStorage(tmp_path).load()  # garbage collection leaves fixed files alone
    assert DirectoryStorage(tmp_path).read_file("eid") == b"\x89" * 16


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", ".tmp-x", "x" * 200])
def test_file_names_are_checked(tmp_path: Path, name: str) -> None:
    with pytest.raises(StorageError):
        DirectoryStorage(tmp_path).write_file(name, b"")


@pytest.mark.parametrize("digest", ["", "../state.json", "A" * 64, "a" * 63])
def test_blob_names_are_checked(tmp_path: Path, digest: str) -> None:
    with pytest.raises(StorageError):
        DirectoryStorage(tmp_path).get_blob(digest)


def test_changing_before_load_is_refused(tmp_path: Path) -> None:
    s = DirectoryStorage(tmp_path)
    with pytest.raises(StorageError, match="load"):
        s.commit(CardState())
    with pytest.raises(StorageError, match="load"):
        s.put_blob(b"x")


def test_commit_of_state_with_unknown_blob_is_refused(tmp_path: Path) -> None:
    s = DirectoryStorage(tmp_path)
    s.load()
    with pytest.raises(StorageError, match="never stored"):
        s.commit(CardState(profiles=(_profile(1, D1),)))
    with pytest.raises(StorageError, match="never stored"):
        MemoryStorage().commit(CardState(profiles=(_profile(1, D1),)))


def test_load_removes_unreferenced_blobs_and_temporary_files(tmp_path: Path) -> None:
    s = DirectoryStorage(tmp_path)
    s.load()
    s.put_blob(PKG1)
    s.put_blob(PKG2)
    s.commit(CardState(profiles=(_profile(1, D1),)))
    for stray in (tmp_path / ".tmp-state.json", tmp_path / "blobs" / ".tmp-x"):
        stray.write_bytes(b"half a write")
    s.close()
    assert DirectoryStorage(tmp_path).load() is not None
    assert sorted(os.listdir(tmp_path / "blobs")) == [D1]
    assert not (tmp_path / ".tmp-state.json").exists()


def test_blob_of_deleted_profile_survives_until_next_load(tmp_path: Path) -> None:
    s = DirectoryStorage(tmp_path)
    s.load()
    s.put_blob(PKG1)
    s.commit(CardState(profiles=(_profile(1, D1),)))
    s.commit(CardState())
    assert s.get_blob(D1) == PKG1  # never deleted before or at the commit
    s.close()
    DirectoryStorage(tmp_path).load()
    with pytest.raises(StorageError, match="not found"):
        s.get_blob(D1)


# --- damage ---------------------------------------------------------------------------------


def _committed(tmp_path: Path) -> Path:
    s = DirectoryStorage(tmp_path)
    s.load()
    s.put_blob(PKG1)
    s.commit(CardState(profiles=(_profile(1, D1),), default_dp_address="smdp.example.com"))
    return tmp_path / STATE_FILE


def test_truncated_state_file_is_an_error(tmp_path: Path) -> None:
    path = _committed(tmp_path)
    data = path.read_bytes()
    for cut in (0, 1, len(data) // 3, len(data) // 2, len(data) - 3):
        path.write_bytes(data[:cut])
        with pytest.raises(StorageError):
            DirectoryStorage(tmp_path).load()
    # An error must not have cleaned anything up.
    assert (tmp_path / "blobs" / D1).exists()


def test_damaged_state_file_is_an_error(tmp_path: Path) -> None:
    path = _committed(tmp_path)
    data = path.read_bytes()
    i = data.index(b"smdp.example.com")
    path.write_bytes(data[:i] + b"X" + data[i + 1 :])
    with pytest.raises(StorageError, match="checksum"):
        DirectoryStorage(tmp_path).load()


def test_unknown_format_version_is_an_error(tmp_path: Path) -> None:
    path = _committed(tmp_path)
    doc = json.loads(path.read_bytes())
    doc["format"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(StorageError, match="format 99"):
        DirectoryStorage(tmp_path).load()


def test_missing_referenced_blob_is_an_error(tmp_path: Path) -> None:
    _committed(tmp_path)
    (tmp_path / "blobs" / D1).unlink()
    with pytest.raises(StorageError, match="missing blobs"):
        DirectoryStorage(tmp_path).load()


def test_damaged_blob_is_an_error(tmp_path: Path) -> None:
    _committed(tmp_path)
    (tmp_path / "blobs" / D1).write_bytes(b"other")
    with pytest.raises(StorageError, match="damaged"):
        DirectoryStorage(tmp_path).get_blob(D1)


# --- crash safety ---------------------------------------------------------------------------


def test_simulated_crash_is_not_an_exception() -> None:
    with pytest.raises(SimulatedCrash):
        try:
            CrashingIO(0).unlink("/nonexistent")
        except Exception:  # the card's catch-all must not swallow a power cut
            pytest.fail("SimulatedCrash was caught by except Exception")


def test_crashing_io_stays_dead_after_the_crash(tmp_path: Path) -> None:
    io = CrashingIO(1)
    io.write(str(tmp_path / "a"), b"1")
    with pytest.raises(SimulatedCrash):
        io.write(str(tmp_path / "b"), b"2")
    with pytest.raises(SimulatedCrash):
        io.write(str(tmp_path / "c"), b"3")
    assert io.count == 1 and not (tmp_path / "c").exists()


S1 = CardState(profiles=(_profile(1, D1),), next_seq_number=2)
S2 = replace(S1, profiles=S1.profiles + (_profile(2, D2),), next_isdp_index=0x12)
S3 = replace(S2, profiles=S2.profiles[1:], default_dp_address="smdp.example.com")
S4 = replace(
    S3,
    notifications=(PendingNotification(2, NotificationEvent.DELETE, "x", bytes(10), b"\x30"),),
)
S5 = replace(S4, profiles=())


@dataclass
class Progress:
    committed: CardState | None = None
    attempt: CardState | None = None


def _scenario(path: str, io: FileIO, fsync: bool, progress: Progress) -> None:
    """Create a card, install two packages, delete one, add a notification, delete the other."""
    storage = DirectoryStorage(path, io=io, fsync=fsync)
    assert storage.load() is None
    storage.write_file("eid", b"\x89" * 16)
    for blob, state in ((PKG1, S1), (PKG2, S2), (None, S3), (None, S4), (None, S5)):
        if blob is not None:
            storage.put_blob(blob)
        progress.attempt = state
        storage.commit(state)
        progress.committed = state


def _check_reopened(path: str, io: FileIO, progress: Progress) -> None:
    storage = DirectoryStorage(path, io=io)
    state = storage.load()
    assert state in (progress.committed, progress.attempt)
    wanted = referenced_blobs(state)
    blobs_dir = os.path.join(path, "blobs")
    assert set(io.listdir(blobs_dir)) == wanted  # no stray blobs, no temporary files
    assert not [n for n in io.listdir(path) if n.startswith(".")]
    for digest in wanted:
        storage.get_blob(digest)
    # Whatever the crash left, the card keeps working.
    storage.put_blob(PKG1)
    storage.put_blob(PKG2)
    storage.commit(S2)
    storage.close()
    assert DirectoryStorage(path, io=io).load() == S2


@pytest.mark.parametrize("torn", [False, True])
def test_crash_at_every_effect_leaves_old_or_new_state(tmp_path: Path, torn: bool) -> None:
    counter = CrashingIO()
    _scenario(str(tmp_path / "count"), counter, True, Progress())
    total = counter.count
    assert total > 20
    for k in range(total + 1):
        path = str(tmp_path / f"crash{k}")
        progress = Progress()
        try:
            _scenario(path, CrashingIO(k, torn_writes=torn), True, progress)
        except SimulatedCrash:
            pass
        else:
            assert k == total
        _check_reopened(path, OsFileIO(), progress)


class PowerLossDisk:
    """An in-memory :class:`FileIO` that forgets whatever was not made durable.

    Pessimistic ext4-like model: file contents survive a power loss only once fsynced (an
    un-fsynced file comes back with its last fsynced contents, empty if never), and
    creations, renames and removals only once their directory was fsynced. Directories
    themselves are durable at once.
    """

    @dataclass
    class Inode:
        data: bytes
        durable: bytes = b""

    def __init__(self) -> None:
        self.dirs: set[str] = set()
        self.entries: dict[str, PowerLossDisk.Inode] = {}
        self.durable_entries: dict[str, PowerLossDisk.Inode] = {}

    def power_loss(self) -> None:
        self.entries = dict(self.durable_entries)
        for inode in self.entries.values():
            inode.data = inode.durable

    def lock(self, directory: str, wait: float | None) -> PowerLossDisk:
        return self  # one process in this model: nobody to lock out

    def release(self) -> None:
        pass

    def read(self, path: str) -> bytes | None:
        inode = self.entries.get(path)
        return None if inode is None else inode.data

    def exists(self, path: str) -> bool:
        return path in self.entries or path in self.dirs

    def listdir(self, path: str) -> list[str]:
        return [os.path.basename(p) for p in self.entries if os.path.dirname(p) == path]

    def makedirs(self, path: str) -> None:
        while path not in ("/", ""):
            self.dirs.add(path)
            path = os.path.dirname(path)

    def write(self, path: str, data: bytes) -> None:
        assert os.path.dirname(path) in self.dirs
        inode = self.entries.get(path)
        if inode is None:
            self.entries[path] = PowerLossDisk.Inode(data)
        else:
            inode.data = data

    def fsync(self, path: str) -> None:
        inode = self.entries[path]
        inode.durable = inode.data

    def replace(self, src: str, dst: str) -> None:
        assert os.path.dirname(src) == os.path.dirname(dst)
        self.entries[dst] = self.entries.pop(src)

    def unlink(self, path: str) -> None:
        del self.entries[path]

    def fsync_dir(self, path: str) -> None:
        kept = {p: i for p, i in self.durable_entries.items() if os.path.dirname(p) != path}
        now = {p: i for p, i in self.entries.items() if os.path.dirname(p) == path}
        self.durable_entries = kept | now


def test_power_loss_at_every_effect_leaves_old_or_new_state() -> None:
    counter = CrashingIO(inner=PowerLossDisk())
    _scenario("/card", counter, True, Progress())
    total = counter.count
    for k in range(total + 1):
        disk = PowerLossDisk()
        progress = Progress()
        try:
            _scenario("/card", CrashingIO(k, inner=disk, torn_writes=True), True, progress)
        except SimulatedCrash:
            pass
        disk.power_loss()
        _check_reopened("/card", disk, progress)
        # A commit that returned is durable.
        disk.power_loss()
        assert DirectoryStorage("/card", io=disk).load() == S2


def test_power_loss_model_catches_missing_fsync() -> None:
    # The model is strict enough to matter: without fsync a returned commit is lost.
    disk = PowerLossDisk()
    progress = Progress()
    _scenario("/card", disk, False, progress)
    assert progress.committed == S5
    disk.power_loss()
    assert DirectoryStorage("/card", io=disk).load() != S5


# --- speed ----------------------------------------------------------------------------------
