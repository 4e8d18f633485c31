"""One card, one owner: opening a card directory locks it (:mod:`euicc_sim.dirlock`).

In one process and across real processes: a second opener is refused at once with
:class:`CardBusy` naming the directory and the holder's pid, or waits (``wait=``,
``--wait``); closing, leaving a ``with`` block or dying lets the next opener in; and two
processes changing one card through ``--wait`` lose nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from euicc_protocol.iccid import iccid_from_ef
from euicc_sim.card import CardBusy, CardClosed, CardError, Euicc
from euicc_sim.dirlock import LOCK_FILE

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der"
TIMEOUT = 120  # seconds; generous, for a loaded CI machine (never a timing assertion)
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "card"
    Euicc.create(path, fsync=False, kind="consumer").close()
    return path


# --- one process ------------------------------------------------------------------------------


def test_a_second_open_is_refused_at_once_naming_the_directory_and_the_pid(
    directory: Path,
) -> None:
    card = Euicc.open(directory)
    with pytest.raises(CardBusy) as refused:
        Euicc.open(directory)
    assert isinstance(refused.value, CardError)
    assert (refused.value.directory, refused.value.pid) == (str(directory), os.getpid())
    assert str(directory) in str(refused.value) and f"process {os.getpid()}" in str(refused.value)
    with pytest.raises(CardBusy):
        Euicc.create(directory)  # a card being created is owned just the same
    card.close()
    Euicc.open(directory).close()  # reopening after close is fine, as often as wanted
    Euicc.open(directory).close()


def test_the_lock_file_names_the_owner_while_it_is_open(directory: Path) -> None:
    with Euicc.open(directory):
        assert (directory / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert (directory / LOCK_FILE).read_text() == ""
    with Euicc.open(directory):  # the with block released it
        pass


def test_a_closed_card_refuses_to_be_used(directory: Path) -> None:
    card = Euicc.open(directory)
    card.close()
    card.close()  # idempotent
    assert card.closed
    with pytest.raises(CardClosed):
        card.transmit(bytes.fromhex("00A4040000"))


def test_wait_takes_the_card_as_soon_as_the_holder_closes_it(directory: Path) -> None:
    holder = Euicc.open(directory)
    opened: list[Euicc] = []
    started = threading.Event()

    def second() -> None:
        started.set()
        opened.append(Euicc.open(directory, wait=TIMEOUT))

    thread = threading.Thread(target=second)
    thread.start()
    started.wait()
    holder.close()
    thread.join(TIMEOUT)
    assert len(opened) == 1 and opened[0].eid == holder.eid
    opened[0].close()


def test_wait_gives_up_with_card_busy(directory: Path) -> None:
    with Euicc.open(directory):
        with pytest.raises(CardBusy, match="waited 0.05 s"):
            Euicc.open(directory, wait=0.05)
        with pytest.raises(ValueError, match="wait"):
            Euicc.open(directory, wait=-1)


def test_opening_a_folder_without_a_card_leaves_it_untouched(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="holds no card"):
        Euicc.open(tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- real processes -----------------------------------------------------------------------------

HOLDER = """
import sys
from euicc_sim.card import Euicc
card = Euicc.open(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
card.close()
print("closed", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def holder(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that has the card open until it reads a line."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "holding\n"
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate()


def release(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.stdout.readline() == "closed\n"


def ipa(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ipa", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def test_another_process_is_refused_at_once_then_waits_for_the_card(
    directory: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(CardBusy) as refused:
        Euicc.open(directory)
    assert refused.value.pid == holder.pid

    refused_ipa = ipa("--card", str(directory), "eid")
    out, err = refused_ipa.communicate(timeout=TIMEOUT)
    assert (refused_ipa.returncode, out) == (3, "")
    assert f"card directory {directory} is in use by process {holder.pid}" in err

    waiting = ipa("--card", str(directory), "--wait", str(TIMEOUT), "eid")
    release(holder)
    out, err = waiting.communicate(timeout=TIMEOUT)
    assert waiting.returncode == 0, err
    with Euicc.open(directory) as card:
        assert out.strip() == card.eid


def test_the_card_is_free_again_when_its_holder_dies(
    directory: Path, holder: subprocess.Popen[str]
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(TIMEOUT)
    assert (directory / LOCK_FILE).read_text() == f"{holder.pid}\n"  # stale, and harmless
    with Euicc.open(directory) as card:
        assert card.state is not None


def test_serve_refuses_a_card_another_process_has_open(
    directory: Path, holder: subprocess.Popen[str]
) -> None:
    serve = subprocess.run(
        [sys.executable, "-m", "euicc_sim", "serve", str(directory), "--vpcd", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=TIMEOUT,
    )
    assert serve.returncode == 3  # unreachable: the card cannot be opened
    assert f"is in use by process {holder.pid}" in serve.stderr


WORKER = """
import sys
from euicc_cli import ipa_command, sim_command
directory, package, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for i in range(count):
    iccid = f"8944000000000{worker}{i:04d}"
    preload = ["preload", directory, package, "--iccid", iccid, "--notify", "smdp.example"]
    if sim_command.main(preload + ["--wait", "120"]) != 0:
        sys.exit(f"preload {iccid} failed")
    if ipa_command.main(["--card", directory, "--wait", "120", "enable", iccid]) != 0:
        sys.exit(f"enable {iccid} failed")
"""


def test_two_processes_changing_one_card_with_wait_lose_no_update(directory: Path) -> None:
    """Each process preloads and enables N profiles through the CLIs with ``--wait``: all 2N
    profiles are there, and every switch left its notifications, numbered without a gap."""
    n = 4
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(directory), str(PACKAGE), str(w), str(n)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for w in (1, 2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=TIMEOUT)
        assert worker.returncode == 0, err
    with Euicc.open(directory) as card:
        state = card.state
    iccids = {f"8944000000000{w}{i:04d}" for w in (1, 2) for i in range(n)}
    assert {iccid_from_ef(p.iccid) for p in state.profiles} == iccids
    # The first enable adds one notification, every later one two (disable the old, enable
    # the new), whichever process came first.
    count = 4 * n - 1
    assert [x.seq_number for x in state.notifications] == list(range(1, count + 1))
    assert state.next_seq_number == count + 1
    assert len({p.isdp_aid for p in state.profiles}) == 2 * n
