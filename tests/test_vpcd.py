"""Tests of euicc_sim.vpcd: the vpcd protocol against a fake vpcd written here (no pcscd).

The fake plays pcscd's vpcd driver: it listens on an ephemeral port on 127.0.0.1, accepts the
virtual card's connection and speaks the length-prefixed protocol (control codes and APDUs).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from euicc_sim.card import Euicc
from euicc_sim.cardos import ATR
from euicc_sim.vpcd import (
    CTRL_ATR,
    CTRL_POWER_OFF,
    CTRL_POWER_ON,
    CTRL_RESET,
    DEFAULT_PORT,
    VpcdClient,
    add_serve_command,
    parse_address,
    serve_many,
)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 5.0


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


class FakeVpcd:
    """The pcscd side of one vpcd reader slot."""

    def __init__(self, port: int = 0) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(1)
        self.server.settimeout(TIMEOUT)
        self.port: int = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        """Wait for the virtual card to connect (it is then in the reader)."""
        self.conn, _ = self.server.accept()
        self.conn.settimeout(TIMEOUT)

    def send(self, message: bytes, *, split: bool = False) -> None:
        assert self.conn is not None
        frame = struct.pack(">H", len(message)) + message
        if split:  # vpcd writes the length and the body separately; so may TCP
            for i in range(len(frame)):
                self.conn.sendall(frame[i : i + 1])
                time.sleep(0.001)
        else:
            self.conn.sendall(frame)

    def receive(self) -> bytes:
        (length,) = struct.unpack(">H", self._exactly(2))
        return self._exactly(length)

    def _exactly(self, n: int) -> bytes:
        assert self.conn is not None
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise EOFError("the virtual card closed the connection")
            buf += chunk
        return buf

    def control(self, code: int) -> None:
        self.send(bytes((code,)))

    def atr(self) -> bytes:
        self.control(CTRL_ATR)
        return self.receive()

    def transmit(self, apdu: str | bytes, *, split: bool = False) -> bytes:
        self.send(h(apdu) if isinstance(apdu, str) else apdu, split=split)
        return self.receive()

    def power_up(self) -> bytes:
        """What vpcd does when a card arrives: get ATR twice, power on, get ATR."""
        self.atr()
        self.atr()
        self.control(CTRL_POWER_ON)
        return self.atr()

    def drop(self) -> None:
        """Close the card's connection (as when pcscd stops)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.drop()
        self.server.close()


class RecordingCard:
    """A card double that records resets and answers APDUs by echo + 90 00."""

    def __init__(self) -> None:
        self.resets = 0
        self.apdus: list[bytes] = []
        self.thread_ids: set[int] = set()

    def transmit(self, apdu: bytes) -> bytes:
        self.thread_ids.add(threading.get_ident())
        self.apdus.append(apdu)
        return apdu + b"\x90\x00"

    def reset(self) -> bytes:
        self.thread_ids.add(threading.get_ident())
        self.resets += 1
        return h("3B 00") + bytes((self.resets,))


@pytest.fixture
def vpcd() -> Iterator[FakeVpcd]:
    server = FakeVpcd()
    yield server
    server.close()


@pytest.fixture
def card() -> Euicc:
    return Euicc.create(None, fsync=False)


@pytest.fixture
def run_client() -> Iterator:
    clients: list[VpcdClient] = []

    def start(card, port: int, **kwargs) -> VpcdClient:
        client = VpcdClient(card, "127.0.0.1", port, min_delay=0.02, max_delay=0.2, **kwargs)
        clients.append(client)
        client.start()
        return client

    yield start
    for client in clients:
        client.stop()
    for client in clients:
        client.join(TIMEOUT)
        assert client._thread is not None and not client._thread.is_alive()


# -- the protocol ---------------------------------------------------------------------------


def test_card_answers_atr_power_on_and_apdus(vpcd: FakeVpcd, card: Euicc, run_client) -> None:
    client = run_client(card, vpcd.port)
    vpcd.accept()
    assert vpcd.power_up() == ATR
    assert client.wait_connected(TIMEOUT) and client.powered
    # SELECT MF with FCP: 61 xx, then the FCP through GET RESPONSE.
    response = vpcd.transmit("00 A4 00 04 02 3F 00")
    assert response[0] == 0x61
    fcp = vpcd.transmit(h("00 C0 00 00") + response[1:])
    assert fcp[0] == 0x62 and fcp[-2:] == h("90 00")
    assert vpcd.transmit("80 AA 00 00 05 A9 03 83 01 07") == h("90 00")


def test_es10_get_eid_through_the_protocol(vpcd: FakeVpcd, card: Euicc, run_client) -> None:
    run_client(card, vpcd.port)
    vpcd.accept()
    vpcd.power_up()
    assert vpcd.transmit("00 70 00 00 01") == h("01 90 00")
    isdr = "A0000005591010FFFFFFFF8900000100"
    assert vpcd.transmit("01 A4 04 00 10" + isdr)[0] == 0x61
    sw = vpcd.transmit("81 E2 91 00 06 BF3E035C015A")
    assert sw == h("61 15")
    response = vpcd.transmit("81 C0 00 00 15")
    assert response == h("BF3E 12 5A 10") + h(card.eid) + h("90 00")


def test_messages_split_across_tcp_segments_are_reassembled(
    vpcd: FakeVpcd, card: Euicc, run_client
) -> None:
    run_client(card, vpcd.port)
    vpcd.accept()
    vpcd.power_up()
    assert vpcd.transmit("00 70 00 00 01", split=True) == h("01 90 00")


@pytest.mark.parametrize("codes", [[CTRL_RESET], [CTRL_POWER_OFF, CTRL_POWER_ON]])
def test_reset_and_power_cycle_close_channels(
    vpcd: FakeVpcd, card: Euicc, run_client, codes: list[int]
) -> None:
    client = run_client(card, vpcd.port)
    vpcd.accept()
    vpcd.power_up()
    assert vpcd.transmit("00 70 00 00 01") == h("01 90 00")
    assert vpcd.transmit("00 70 00 00 01") == h("02 90 00")
    for code in codes:
        vpcd.control(code)
    assert vpcd.atr() == ATR
    assert vpcd.transmit("00 70 00 00 01") == h("01 90 00")  # channels 1 and 2 were closed
    assert client.powered


def test_power_off_marks_the_card_unpowered(vpcd: FakeVpcd, run_client) -> None:
    card = RecordingCard()
    client = run_client(card, vpcd.port)
    vpcd.accept()
    vpcd.power_up()
    assert card.resets == 2  # insertion, power on
    vpcd.control(CTRL_POWER_OFF)
    assert vpcd.atr() == h("3B 00 02")  # the ATR of the last reset; no reset on power off
    assert not client.powered and card.resets == 2
    vpcd.control(CTRL_RESET)
    assert vpcd.atr() == h("3B 00 03")
    assert client.powered


def test_control_codes_get_no_reply_only_atr_does(vpcd: FakeVpcd, run_client) -> None:
    card = RecordingCard()
    run_client(card, vpcd.port)
    vpcd.accept()
    for code in (CTRL_POWER_ON, CTRL_RESET, CTRL_POWER_OFF, 0x03, 0x7F):
        vpcd.control(code)
    vpcd.send(b"")  # an empty message is ignored too
    # The next message read is the answer to this APDU, so nothing was sent before.
    assert vpcd.transmit("00 B0 00 00 01") == h("00 B0 00 00 01 90 00")


def test_a_card_that_raises_answers_6f00(vpcd: FakeVpcd, run_client) -> None:
    card = RecordingCard()

    def broken(apdu: bytes) -> bytes:
        raise RuntimeError("bug")

    card.transmit = broken  # type: ignore[method-assign]
    run_client(card, vpcd.port)
    vpcd.accept()
    vpcd.power_up()
    assert vpcd.transmit("00 A4 00 04 02 3F 00") == h("6F 00")
    assert vpcd.atr() == h("3B 00 02")  # the connection is still up


def test_responses_longer_than_255_bytes_keep_their_length(vpcd: FakeVpcd, run_client) -> None:
    run_client(RecordingCard(), vpcd.port)
    vpcd.accept()
    apdu = h("80 E2 91 00 FF") + bytes(range(255)) + bytes(300)
    assert vpcd.transmit(apdu) == apdu + h("90 00")


def test_the_card_is_used_by_its_client_thread_only(vpcd: FakeVpcd, run_client) -> None:
    card = RecordingCard()
    client = run_client(card, vpcd.port)
    vpcd.accept()
    vpcd.power_up()
    vpcd.transmit("00 70 00 00 01")
    assert card.thread_ids == {client._thread.ident}


# -- connections ----------------------------------------------------------------------------


def test_reconnects_after_vpcd_drops_the_connection(
    vpcd: FakeVpcd, card: Euicc, run_client
) -> None:
    client = run_client(card, vpcd.port)
    vpcd.accept()
    vpcd.power_up()
    assert vpcd.transmit("00 70 00 00 01") == h("01 90 00")
    vpcd.drop()
    vpcd.accept()  # the client came back by itself
    vpcd.power_up()
    assert client.connections == 2
    # A new connection is a new insertion: the card was reset, channel 1 is free again.
    assert vpcd.transmit("00 70 00 00 01") == h("01 90 00")


def test_waits_for_vpcd_to_start_listening(card: Euicc, run_client) -> None:
    # Find a free port, start the client against it while nothing listens, then listen.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = run_client(card, port)
    time.sleep(0.3)  # several refused attempts
    assert not client.connected and client.connections == 0
    server = FakeVpcd(port)
    try:
        server.accept()
        assert server.power_up() == ATR
        assert client.wait_connected(TIMEOUT)
    finally:
        server.close()


def test_reconnects_when_vpcd_restarts(card: Euicc, run_client) -> None:
    first = FakeVpcd()
    port = first.port
    client = run_client(card, port)
    first.accept()
    first.power_up()
    first.close()  # pcscd stops: connection and listening socket are gone
    time.sleep(0.2)
    second = FakeVpcd(port)  # pcscd is back
    try:
        second.accept()
        assert second.power_up() == ATR
        assert client.connections == 2
    finally:
        second.close()


def test_stop_closes_the_connection_and_ends_the_thread(
    vpcd: FakeVpcd, card: Euicc, run_client
) -> None:
    client = run_client(card, vpcd.port)
    vpcd.accept()
    vpcd.power_up()
    client.stop()
    client.join(TIMEOUT)
    assert not client._thread.is_alive() and not client.connected
    with pytest.raises(EOFError):
        vpcd.receive()


def test_stop_while_nothing_listens_ends_promptly(card: Euicc) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = VpcdClient(card, "127.0.0.1", port, min_delay=5.0, max_delay=5.0)
    client.start()
    time.sleep(0.1)
    started = time.monotonic()
    client.stop()
    client.join(TIMEOUT)
    # Stopping must not sit out the 5 s reconnect delay (a bound on behaviour, not on speed).
    assert time.monotonic() - started < 4.0


def test_a_client_starts_once(card: Euicc) -> None:
    client = VpcdClient(card, port=1)
    client.start()
    try:
        with pytest.raises(RuntimeError):
            client.start()
    finally:
        client.stop()
        client.join(TIMEOUT)


def _two_consecutive_ports() -> tuple[FakeVpcd, FakeVpcd]:
    for _ in range(50):
        first = FakeVpcd()
        try:
            return first, FakeVpcd(first.port + 1)
        except OSError:
            first.close()
    pytest.skip("no two consecutive free ports")


def test_serve_many_puts_each_card_on_its_own_port() -> None:
    slot0, slot1 = _two_consecutive_ports()
    cards = [Euicc.create(None, fsync=False) for _ in range(2)]
    stop = threading.Event()
    thread = threading.Thread(
        target=serve_many, args=(cards, "127.0.0.1", slot0.port), kwargs={"stop_event": stop}
    )
    thread.start()
    try:
        for slot, card in ((slot0, cards[0]), (slot1, cards[1])):
            slot.accept()
            slot.power_up()
            assert slot.transmit("00 70 00 00 01") == h("01 90 00")
            isdr = "A0000005591010FFFFFFFF8900000100"
            assert slot.transmit("01 A4 04 00 10" + isdr)[0] == 0x61
            assert slot.transmit("81 E2 91 00 06 BF3E035C015A") == h("61 15")
            assert slot.transmit("81 C0 00 00 15")[5:21] == h(card.eid)
    finally:
        stop.set()
        thread.join(TIMEOUT)
        slot0.close()
        slot1.close()
    assert not thread.is_alive()


def test_client_validates_its_arguments(card: Euicc) -> None:
    with pytest.raises(ValueError):
        VpcdClient(card, port=0)
    with pytest.raises(ValueError):
        VpcdClient(card, min_delay=2, max_delay=1)


def test_handle_without_a_socket() -> None:
    card = RecordingCard()
    client = VpcdClient(card)
    assert client.handle(bytes((CTRL_POWER_ON,))) is None
    assert client.handle(bytes((CTRL_ATR,))) == h("3B 00 01")
    assert client.handle(h("00 A4 00 00")) == h("00 A4 00 00 90 00")


# -- command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:35963", ("127.0.0.1", 35963)),
        ("localhost", ("localhost", DEFAULT_PORT)),
        (":36000", ("127.0.0.1", 36000)),
        ("36000", ("127.0.0.1", 36000)),
        ("[::1]:35964", ("::1", 35964)),
        ("[::1]", ("::1", DEFAULT_PORT)),
        ("", ("127.0.0.1", DEFAULT_PORT)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["host:0", "host:99999", "host:x", "[::1", "[::1]x"])
def test_parse_address_rejects_bad_ports(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_serve_command_arguments() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "a", "b"])
    assert args.directories == ["a", "b"] and args.vpcd == "127.0.0.1:35963"
    args = parser.parse_args(["serve", "a", "--vpcd", "10.0.0.2:4000", "-vv"])
    assert args.vpcd == "10.0.0.2:4000" and args.verbose == 2 and callable(args.run)
    assert parser.parse_args(["serve", "a", "--vpcd"]).vpcd == "127.0.0.1:35963"


def test_serve_command_serves_a_card_directory_until_sigterm(tmp_path: Path) -> None:
    card = Euicc.create(tmp_path / "card", fsync=False)
    card.close()  # the server process owns it now
    vpcd = FakeVpcd()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "euicc_sim.vpcd", "serve", str(tmp_path / "card")]
        + ["--vpcd", f"127.0.0.1:{vpcd.port}", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        vpcd.server.settimeout(30)
        vpcd.accept()
        assert vpcd.power_up() == ATR
        assert vpcd.transmit("00 70 00 00 01") == h("01 90 00")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        vpcd.close()
    assert process.returncode == 0, err
    assert f"serving {card.eid}" in out and f"127.0.0.1:{vpcd.port}" in out
    assert "card inserted" in err


def test_serve_command_reports_a_missing_card(tmp_path: Path, capsys) -> None:
    from euicc_sim.vpcd import main

    assert main(["serve", str(tmp_path / "nothing")]) == 1
    assert "holds no card" in capsys.readouterr().err
