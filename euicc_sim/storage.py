"""Persistence of the card: one atomically committed state, content-addressed blobs, fixed files.

A card keeps three kinds of data:

* its :class:`~euicc_sim.state.CardState`, replaced as a whole by :meth:`CardStorage.commit`;
* blobs (profile packages), immutable and named by their SHA-256, referenced from the state
  by fields whose name ends in ``_digest``;
* fixed files written when the card is created (keys, certificates, configuration).

:class:`DirectoryStorage` layout and rules::

    <dir>/state.json        {"format": 1, "sha256": <of the state JSON>, "state": {...}}
    <dir>/blobs/<sha256>    blob contents
    <dir>/files/<name>      fixed files

* A commit writes ``.tmp-state.json``, fsyncs it, renames it over ``state.json`` and fsyncs the
  directory. The rename is the one commit point: a crash before it leaves the old state, a
  crash after it the new one.
* A blob is written and fsynced (file and directory) before :meth:`put_blob` returns, so it is
  durable before any state that references it is committed.
* :meth:`load` reads the committed state and only then removes what no committed state can
  need: temporary files and unreferenced blobs. Nothing is ever deleted before a commit.
  Call :meth:`load` once before :meth:`commit` / :meth:`put_blob`.
* A damaged state file raises :class:`StorageError`; it is never silently replaced.
* A :class:`DirectoryStorage` owns its directory: it holds the directory's lock
  (:mod:`euicc_sim.dirlock`) from construction until :meth:`DirectoryStorage.close`, and
  refuses to change anything once closed.
* A filesystem effect that fails raises :class:`StorageWriteError`. Its ``committed`` says
  whether the failure came after the rename of a commit (only the directory fsync failed: the
  new state is in place, its durability is in doubt) or before it (the old state stands).
  :meth:`DirectoryStorage.recover` then syncs the directories and reads the state again.

Every filesystem effect goes through a :class:`FileIO`, so tests can count effects and crash
before any one of them (:class:`CrashingIO`) or make any one of them fail (:class:`FaultyIO`).
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import hashlib
import json
import os
import re
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, Protocol

from euicc_sim.dirlock import DirectoryLock
from euicc_sim.state import CardState

FORMAT_VERSION = 1
STATE_FILE = "state.json"
TMP_PREFIX = ".tmp-"
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class StorageError(Exception):
    """Stored data is missing, damaged or of an unknown format, or the storage was misused."""


class StorageWriteError(StorageError):
    """A filesystem effect failed (the :class:`OSError` is the ``__cause__``).

    ``committed``: the new state file had already replaced the old one when the failure came
    (only the directory fsync after the rename failed), so the new state is the one in place.
    Otherwise nothing the operation meant to change is in effect.
    """

    def __init__(self, message: str, *, committed: bool) -> None:
        super().__init__(message)
        self.committed = committed


class SimulatedCrash(BaseException):
    """A simulated power cut (a BaseException so that ``except Exception`` does not eat it)."""


# --- serialization --------------------------------------------------------------------------


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _union_arm(tp: Any) -> Any | None:
    """For ``X | None`` return X; for anything else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(arms) != 1:
            raise TypeError(f"unsupported union {tp}")
        return arms[0]
    return None


def _identity(value: Any) -> Any:
    return value


@cache
def _encoder(tp: Any) -> Callable[[Any], Any]:
    """A function turning values of type ``tp`` into JSON data (compiled once per type).

    bytes become hex, enums their value, frozensets sorted lists, dataclasses objects.
    """
    arm = _union_arm(tp)
    if arm is not None:
        inner = _encoder(arm)
        return lambda v: None if v is None else inner(v)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _encoder(args[0])
            return lambda v: [item(x) for x in v]
        items = [_encoder(a) for a in args]
        return lambda v: [e(x) for e, x in zip(items, v, strict=True)]
    if origin is frozenset:
        item = _encoder(args[0])
        return lambda v: sorted(item(x) for x in v)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        fields = [(f.name, _encoder(hints[f.name])) for f in dataclasses.fields(tp)]
        return lambda v: {name: enc(getattr(v, name)) for name, enc in fields}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_type = tp
        return lambda v: enum_type(v).value
    if tp is bytes:
        return lambda v: bytes(v).hex()
    if tp in (str, int, bool):
        return _identity
    raise TypeError(f"cannot serialize values of type {tp}")


def _bad(path: str, msg: str) -> StorageError:
    return StorageError(f"state file: {path or 'state'}: {msg}")


def _from_plain(obj: Any, tp: Any, path: str) -> Any:
    """Inverse of :func:`_to_plain`, checking every type on the way."""
    arm = _union_arm(tp)
    if arm is not None:
        return None if obj is None else _from_plain(obj, arm, path)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (tuple, frozenset):
        if not isinstance(obj, list):
            raise _bad(path, "expected a list")
        if origin is frozenset:
            return frozenset(_from_plain(v, args[0], f"{path}[{i}]") for i, v in enumerate(obj))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(v, args[0], f"{path}[{i}]") for i, v in enumerate(obj))
        if len(obj) != len(args):
            raise _bad(path, f"expected {len(args)} items")
        return tuple(
            _from_plain(v, a, f"{path}[{i}]")
            for i, (v, a) in enumerate(zip(obj, args, strict=True))
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass_from_plain(obj, tp, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(obj, bool):
            raise _bad(path, f"not a {tp.__name__}: {obj!r}")
        try:
            return tp(obj)
        except ValueError:
            raise _bad(path, f"not a {tp.__name__}: {obj!r}") from None
    if tp is bytes:
        if not isinstance(obj, str):
            raise _bad(path, "expected hex")
        try:
            return bytes.fromhex(obj)
        except ValueError:
            raise _bad(path, "expected hex") from None
    if tp is int and isinstance(obj, int) and not isinstance(obj, bool):
        return obj
    if tp in (str, bool) and isinstance(obj, tp):
        return obj
    raise _bad(path, f"expected {getattr(tp, '__name__', tp)}, got {type(obj).__name__}")


def _dataclass_from_plain(obj: Any, cls: type, path: str) -> Any:
    if not isinstance(obj, dict):
        raise _bad(path, "expected an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(obj) - set(fields)
    if unknown:
        raise _bad(path, f"unknown fields {sorted(unknown)}")
    hints = _hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in obj:
            kwargs[name] = _from_plain(obj[name], hints[name], f"{path}.{name}".lstrip("."))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _bad(path, f"missing field {name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise _bad(path, str(exc)) from exc


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def state_to_json(state: CardState) -> str:
    """The state file document: format version, checksum and the state as JSON."""
    body = _canonical(_encoder(CardState)(state))
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{{"format":{FORMAT_VERSION},"sha256":"{digest}","state":{body}}}\n'


def state_from_json(text: str | bytes) -> CardState:
    """Parse a state file document; raise :class:`StorageError` if it is damaged in any way."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StorageError(f"state file is not valid JSON (truncated or damaged): {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"format", "sha256", "state"}:
        raise StorageError("state file does not have the expected structure")
    if doc["format"] != FORMAT_VERSION:
        raise StorageError(f"state file format {doc['format']!r} is not supported")
    body = _canonical(doc["state"])
    if hashlib.sha256(body.encode()).hexdigest() != doc["sha256"]:
        raise StorageError("state file checksum mismatch (damaged)")
    state: CardState = _from_plain(doc["state"], CardState, "")
    return state


Collector = Callable[[Any, set[str]], None]


@cache
def _collector(tp: Any) -> Collector | None:
    """A function adding the blob digests inside a ``tp`` value to a set; None if it has none."""
    arm = _union_arm(tp)
    if arm is not None:
        inner = _collector(arm)
        if inner is None:
            return None
        return lambda v, out: None if v is None else inner(v, out)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (tuple, frozenset):
        items = [c for c in map(_collector, {a for a in args if a is not Ellipsis}) if c]
        if not items:
            return None

        def collect_items(v: Any, out: set[str]) -> None:
            for x in v:
                for c in items:
                    c(x, out)

        return collect_items
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        digests = [
            f.name
            for f in dataclasses.fields(tp)
            if f.name.endswith("_digest") and _union_arm(hints[f.name]) in (str, None)
        ]
        nested = [(f.name, _collector(hints[f.name])) for f in dataclasses.fields(tp)]
        parts = [(name, c) for name, c in nested if c is not None and name not in digests]
        if not digests and not parts:
            return None

        def collect_fields(v: Any, out: set[str]) -> None:
            for name in digests:
                d = getattr(v, name)
                if d is not None:
                    out.add(d)
            for name, c in parts:
                c(getattr(v, name), out)

        return collect_fields
    return None


def referenced_blobs(state: CardState | None) -> frozenset[str]:
    """Digests the state refers to: every ``str`` field whose name ends in ``_digest``."""
    found: set[str] = set()
    collect = _collector(CardState)
    if state is not None and collect is not None:
        collect(state, found)
    return frozenset(found)


# --- filesystem effects ---------------------------------------------------------------------


class HeldLock(Protocol):
    """An exclusive lock on a directory (see :mod:`euicc_sim.dirlock`)."""

    def release(self) -> None:
        """Let go of the directory (idempotent)."""
        ...


class FileIO(Protocol):
    """Every filesystem access of :class:`DirectoryStorage`; methods marked *effect* change it."""

    def lock(self, directory: str, wait: float | None) -> HeldLock:
        """Own ``directory`` exclusively (raise ``CardBusy`` if it is owned elsewhere).

        Not an effect: it changes nothing the card's state depends on.
        """
        ...

    def read(self, path: str) -> bytes | None:
        """The file's contents, or ``None`` if it does not exist."""
        ...

    def exists(self, path: str) -> bool: ...

    def listdir(self, path: str) -> list[str]:
        """Names in a directory (empty if it does not exist)."""
        ...

    def makedirs(self, path: str) -> None:
        """*Effect*: create a directory and its parents (existing ones are fine)."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """*Effect*: create or truncate a file and write ``data`` (not yet durable)."""
        ...

    def fsync(self, path: str) -> None:
        """*Effect*: make a file's contents durable."""
        ...

    def replace(self, src: str, dst: str) -> None:
        """*Effect*: atomically rename ``src`` over ``dst`` (same directory)."""
        ...

    def unlink(self, path: str) -> None:
        """*Effect*: remove a file."""
        ...

    def fsync_dir(self, path: str) -> None:
        """*Effect*: make a directory's entries (creations, renames, removals) durable."""
        ...


class OsFileIO:
    """:class:`FileIO` on the real filesystem."""

    def lock(self, directory: str, wait: float | None) -> HeldLock:
        return DirectoryLock(directory, wait=wait)

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def write(self, path: str, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)

    def fsync(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _WrappedIO:
    """What the test wrappers below pass straight to ``inner``: everything but the effects."""

    inner: FileIO

    def lock(self, directory: str, wait: float | None) -> HeldLock:
        return self.inner.lock(directory, wait)

    def read(self, path: str) -> bytes | None:
        return self.inner.read(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)


class CrashingIO(_WrappedIO):
    """A :class:`FileIO` wrapper that counts effects and crashes before effect ``fail_at``.

    Effects are numbered from 0. With ``fail_at=None`` it only counts (``count``, ``log``).
    After the crash every further effect crashes too: the power is off. With
    ``torn_writes`` a crashing ``write`` first writes half of its data, as a torn write would.
    """

    def __init__(
        self,
        fail_at: int | None = None,
        *,
        inner: FileIO | None = None,
        torn_writes: bool = False,
    ) -> None:
        self.fail_at = fail_at
        self.inner: FileIO = inner if inner is not None else OsFileIO()
        self.torn_writes = torn_writes
        self.count = 0
        self.crashed = False
        self.log: list[str] = []

    def _effect(self, name: str, path: str, *, torn: bytes | None = None) -> None:
        if self.crashed:
            raise SimulatedCrash(f"power is off: {name} {path}")
        if self.fail_at is not None and self.count >= self.fail_at:
            self.crashed = True
            if torn is not None and self.torn_writes:
                self.inner.write(path, torn[: len(torn) // 2])
            raise SimulatedCrash(f"simulated crash before effect #{self.count}: {name} {path}")
        self.count += 1
        self.log.append(f"{name} {path}")

    def makedirs(self, path: str) -> None:
        self._effect("makedirs", path)
        self.inner.makedirs(path)

    def write(self, path: str, data: bytes) -> None:
        self._effect("write", path, torn=data)
        self.inner.write(path, data)

    def fsync(self, path: str) -> None:
        self._effect("fsync", path)
        self.inner.fsync(path)

    def replace(self, src: str, dst: str) -> None:
        self._effect("replace", f"{src} -> {dst}")
        self.inner.replace(src, dst)

    def unlink(self, path: str) -> None:
        self._effect("unlink", path)
        self.inner.unlink(path)

    def fsync_dir(self, path: str) -> None:
        self._effect("fsync_dir", path)
        self.inner.fsync_dir(path)


class FaultyIO(_WrappedIO):
    """A :class:`FileIO` wrapper whose effect number ``fail_at`` fails with ``OSError(EIO)``.

    Unlike :class:`CrashingIO` the process lives on: this is a disk that reports an error.
    Effects are numbered from 0; ``fail_at=None`` only counts them (``count``, ``log``).
    ``done``: the failing effect takes place before the error is reported (a rename that
    happened, a write that reached the file). ``persistent``: every later effect fails too,
    until :meth:`repair`. ``failures`` counts the errors raised.
    """

    def __init__(
        self,
        fail_at: int | None = None,
        *,
        inner: FileIO | None = None,
        done: bool = False,
        persistent: bool = False,
    ) -> None:
        self.fail_at = fail_at
        self.inner: FileIO = inner if inner is not None else OsFileIO()
        self.done = done
        self.persistent = persistent
        self.count = 0
        self.failures = 0
        self.log: list[str] = []

    def repair(self) -> None:
        """The disk works again."""
        self.fail_at = None

    def _effect(self, name: str, path: str, perform: Callable[[], None]) -> None:
        index = self.count
        self.count += 1
        self.log.append(f"{name} {path}")
        failing = self.fail_at is not None and (
            index == self.fail_at or (self.persistent and index > self.fail_at)
        )
        if not failing:
            perform()
            return
        if self.done:
            perform()
        self.failures += 1
        raise OSError(errno.EIO, f"injected I/O error at effect #{index}: {name}", path)

    def makedirs(self, path: str) -> None:
        self._effect("makedirs", path, lambda: self.inner.makedirs(path))

    def write(self, path: str, data: bytes) -> None:
        self._effect("write", path, lambda: self.inner.write(path, data))

    def fsync(self, path: str) -> None:
        self._effect("fsync", path, lambda: self.inner.fsync(path))

    def replace(self, src: str, dst: str) -> None:
        self._effect("replace", f"{src} -> {dst}", lambda: self.inner.replace(src, dst))

    def unlink(self, path: str) -> None:
        self._effect("unlink", path, lambda: self.inner.unlink(path))

    def fsync_dir(self, path: str) -> None:
        self._effect("fsync_dir", path, lambda: self.inner.fsync_dir(path))


# --- storages -------------------------------------------------------------------------------


class CardStorage(Protocol):
    """What the card needs to persist itself."""

    def load(self) -> CardState | None:
        """The committed state, or ``None`` for a card that was never committed."""
        ...

    def commit(self, state: CardState) -> None:
        """Make ``state`` the committed state, atomically and durably."""
        ...

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` durably; return its SHA-256 hex digest (idempotent)."""
        ...

    def get_blob(self, digest: str) -> bytes:
        """A stored blob; :class:`StorageError` if it is missing or damaged."""
        ...

    def read_file(self, name: str) -> bytes | None:
        """A fixed file written at card creation, or ``None``."""
        ...

    def write_file(self, name: str, data: bytes) -> None:
        """Write a fixed file atomically and durably."""
        ...


def _check_digest(digest: str) -> None:
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise StorageError(f"not a SHA-256 hex digest: {digest!r}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise StorageError(f"invalid file name: {name!r}")


class DirectoryStorage:
    """A card in a directory on disk (see the module docstring for layout and rules)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = True,
        io: FileIO | None = None,
        wait: float | None = None,
    ):
        """Take ownership of the directory ``path`` (made if missing) and its subdirectories.

        Raises :class:`~euicc_sim.errors.CardBusy` if another storage holds the directory and
        does not let go within ``wait`` seconds (``None``: do not wait).
        """
        self.path = os.fspath(path)
        self._io: FileIO = io if io is not None else OsFileIO()
        self._sync = fsync
        self._loaded = False
        self._blobs = os.path.join(self.path, "blobs")
        self._files = os.path.join(self.path, "files")
        self._make_dir(self.path)
        # Locked before anything else is read or changed: load() collects garbage, which
        # would delete the temporary file of another owner's commit in flight.
        self._lock: HeldLock | None = self._io.lock(self.path, wait)
        try:
            for d in (self._blobs, self._files):
                self._make_dir(d)
        except BaseException:
            self.close()
            raise

    def _make_dir(self, d: str) -> None:
        if not self._io.exists(d):
            self._io.makedirs(d)
            self._sync_dir(os.path.dirname(os.path.abspath(d)))

    def close(self) -> None:
        """Release the directory (idempotent); the storage can no longer change it."""
        self._loaded = False
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._lock is None

    def _sync_file(self, path: str) -> None:
        if self._sync:
            self._io.fsync(path)

    def _sync_dir(self, path: str) -> None:
        if self._sync:
            self._io.fsync_dir(path)

    def _write_atomic(self, directory: str, name: str, data: bytes) -> None:
        tmp = os.path.join(directory, TMP_PREFIX + name)
        target = os.path.join(directory, name)
        try:
            self._io.write(tmp, data)
            self._sync_file(tmp)
            self._io.replace(tmp, target)
        except OSError as exc:
            raise StorageWriteError(f"cannot write {target}: {exc}", committed=False) from exc
        try:
            self._sync_dir(directory)
        except OSError as exc:
            raise StorageWriteError(
                f"{target} is in place but {directory} did not sync: {exc}", committed=True
            ) from exc

    def load(self) -> CardState | None:
        """Read the committed state (``None``: never committed), then collect garbage."""
        if self._lock is None:
            raise StorageError(f"{self.path}: the storage is closed")
        raw = self._io.read(os.path.join(self.path, STATE_FILE))
        try:
            state = None if raw is None else state_from_json(raw)
        except StorageError as exc:  # name the file: the user is told which one is damaged
            raise StorageError(f"{STATE_FILE}: {exc}") from exc
        wanted = referenced_blobs(state)
        missing = [d for d in sorted(wanted) if not self._io.exists(os.path.join(self._blobs, d))]
        if missing:
            raise StorageError(f"state refers to missing blobs {missing}")
        self._collect_garbage(wanted)
        self._loaded = True
        return state

    def _collect_garbage(self, wanted: frozenset[str]) -> None:
        # Safe only here: the committed state has been read, so nothing it needs is removed,
        # and anything a crashed command left behind was never committed.
        for directory in (self.path, self._blobs, self._files):
            for name in self._io.listdir(directory):
                stray_blob = directory == self._blobs and _DIGEST_RE.fullmatch(name)
                if name.startswith(TMP_PREFIX) or (stray_blob and name not in wanted):
                    self._io.unlink(os.path.join(directory, name))

    def recover(self) -> CardState | None:
        """After a :class:`StorageWriteError`: sync the directories (a rename whose directory
        fsync failed becomes durable now) and read the committed state again, as
        :meth:`load`. Raises :class:`OSError` or :class:`StorageError` if that fails too."""
        if self._lock is None:
            raise StorageError(f"{self.path}: the storage is closed")
        self._loaded = False
        for d in (self._blobs, self._files, self.path):
            self._sync_dir(d)
        return self.load()

    def _require_loaded(self) -> None:
        if self._lock is None:
            raise StorageError(f"{self.path}: the storage is closed")
        if not self._loaded:
            raise StorageError("load() must be called before changing the storage")

    def commit(self, state: CardState) -> None:
        """Atomically and durably replace the state; its blobs must already be stored."""
        self._require_loaded()
        for digest in sorted(referenced_blobs(state)):
            _check_digest(digest)
            if not self._io.exists(os.path.join(self._blobs, digest)):
                raise StorageError(f"commit refers to blob {digest} that was never stored")
        self._write_atomic(self.path, STATE_FILE, state_to_json(state).encode())

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` durably under its SHA-256 hex digest and return the digest."""
        self._require_loaded()
        digest = hashlib.sha256(data).hexdigest()
        if not self._io.exists(os.path.join(self._blobs, digest)):
            try:
                self._write_atomic(self._blobs, digest, bytes(data))
            except StorageWriteError as exc:
                # A blob not known to be durable must not be referenced by a commit that is.
                raise StorageWriteError(str(exc), committed=False) from exc.__cause__
        return digest

    def get_blob(self, digest: str) -> bytes:
        """A stored blob, checked against its digest."""
        _check_digest(digest)
        data = self._io.read(os.path.join(self._blobs, digest))
        if data is None:
            raise StorageError(f"blob {digest} not found")
        if hashlib.sha256(data).hexdigest() != digest:
            raise StorageError(f"blob {digest} is damaged")
        return data

    def read_file(self, name: str) -> bytes | None:
        """A fixed file, or ``None`` if it was never written."""
        _check_name(name)
        return self._io.read(os.path.join(self._files, name))

    def write_file(self, name: str, data: bytes) -> None:
        """Write a fixed file atomically and durably."""
        _check_name(name)
        self._write_atomic(self._files, name, bytes(data))


class MemoryStorage:
    """A storage in memory, for tests and benchmarks.

    With ``serialize`` every commit goes through :func:`state_to_json` and every load through
    :func:`state_from_json`, as on disk.
    """

    def __init__(self, *, serialize: bool = False) -> None:
        self._serialize = serialize
        self._state: CardState | str | None = None
        self._blobs: dict[str, bytes] = {}
        self._files: dict[str, bytes] = {}
        self.commits = 0

    def close(self) -> None:
        """Nothing to release (present for symmetry with :class:`DirectoryStorage`)."""

    def recover(self) -> CardState | None:
        """The committed state again (memory cannot fail)."""
        return self.load()

    def load(self) -> CardState | None:
        if isinstance(self._state, str):
            return state_from_json(self._state)
        return self._state

    def commit(self, state: CardState) -> None:
        for digest in referenced_blobs(state):
            if digest not in self._blobs:
                raise StorageError(f"commit refers to blob {digest} that was never stored")
        self._state = state_to_json(state) if self._serialize else state
        self.commits += 1

    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._blobs.setdefault(digest, bytes(data))
        return digest

    def get_blob(self, digest: str) -> bytes:
        _check_digest(digest)
        try:
            return self._blobs[digest]
        except KeyError:
            raise StorageError(f"blob {digest} not found") from None

    def read_file(self, name: str) -> bytes | None:
        _check_name(name)
        return self._files.get(name)

    def write_file(self, name: str, data: bytes) -> None:
        _check_name(name)
        self._files[name] = bytes(data)
