"""``ipa fleet`` and ``euicc-sim init DIR...``: card directories against the reference eIM over
HTTPS on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from euicc_cli import ipa_command as cli
from euicc_cli import sim_command as card_cli
from euicc_protocol import saip
from euicc_servers.eim import EimServer, OrderState, build_eim, run_in_thread
from euicc_sim.card import Euicc
from euicc_sim.state import CardState

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_FILE = ROOT / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der"
ICCID = saip.read_package(PACKAGE_FILE.read_bytes()).iccid
ENABLE = {"type": "psmo", "operations": [{"enable": {"iccid": ICCID}}]}


@pytest.fixture(scope="module")
def eim() -> Iterator[tuple[EimServer, str]]:
    server = build_eim("sgp26")
    with run_in_thread(server.core, tls=server.tls) as running:
        yield server, running.base_url


def on_disk(directory: Path) -> tuple[str, CardState]:
    """EID and state of the card in ``directory`` (opened and closed again)."""
    with Euicc.open(directory) as card:
        return card.eid, card.state


def make_cards(tmp_path: Path, count: int, capsys: Any) -> list[Path]:
    """``count`` card directories made by one ``euicc-sim init``, each with a TS.48 profile."""
    directories = [tmp_path / f"card{i}" for i in range(count)]
    assert card_cli.main(["init", *map(str, directories)]) == 0
    assert card_cli.main(["preload", *map(str, directories), str(PACKAGE_FILE)]) == 0
    capsys.readouterr()
    return directories


def register(server: EimServer, directories: list[Path], tmp_path: Path) -> tuple[Path, list[str]]:
    """Register every card's EID at the eIM (by EID only: the eIM asks for the certificates)
    and write each eUICC's AddInitialEimRequest (its own association token) to
    ``initial-eim/<EID>.der``."""
    eids = [on_disk(d)[0] for d in directories]
    initial = tmp_path / "initial-eim"
    initial.mkdir(exist_ok=True)
    for eid in eids:
        server.core.register(eid)
        request = server.core.configuration(eid).add_initial_eim_request()
        (initial / f"{eid}.der").write_bytes(bytes(request))
    return initial, eids


def test_init_makes_one_card_per_directory(tmp_path: Path, capsys: Any) -> None:
    directories = [tmp_path / name for name in ("a", "b", "c")]
    assert card_cli.main(["init", *map(str, directories)]) == 0
    eids = {on_disk(d)[0] for d in directories}
    assert len(eids) == 3
    assert capsys.readouterr().out.count("created eUICC") == 3


def test_init_refuses_one_eid_for_several_cards(tmp_path: Path, capsys: Any) -> None:
    eid = Euicc.create(None).eid
    assert card_cli.main(["init", str(tmp_path / "a"), str(tmp_path / "b"), "--eid", eid]) == 2
    assert "--eid makes one card" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_preload_on_several_cards_names_the_one_it_stopped_at(tmp_path: Path, capsys: Any) -> None:
    good, full, after = (tmp_path / name for name in ("good", "full", "after"))
    assert card_cli.main(["init", str(good), str(full), str(after)]) == 0
    assert card_cli.main(["preload", str(full), str(PACKAGE_FILE)]) == 0
    capsys.readouterr()
    # The second card already holds this ICCID: the command stops there and says so.
    argv = ["preload", str(good), str(full), str(after), str(PACKAGE_FILE)]
    assert card_cli.main(argv) == 1
    assert f"{full}: " in capsys.readouterr().err
    counts = [len(on_disk(d)[1].profiles) for d in (good, full, after)]
    assert counts == [1, 1, 0]


def test_fleet_once_runs_every_cards_package_and_the_eim_holds_verified_results(
    eim: tuple[EimServer, str], tmp_path: Path, capsys: Any
) -> None:
    server, url = eim
    directories = make_cards(tmp_path, 3, capsys)
    initial, eids = register(server, directories, tmp_path)
    orders = [server.core.queue(eid, ENABLE).id for eid in eids]

    argv = ["--json", "fleet", *map(str, directories), "--eim-url", url, "--once"]
    argv += ["--initial-eim", str(initial), "--state", str(tmp_path / "ipad")]
    assert cli.main(argv) == 0
    envelope = json.loads(capsys.readouterr().out)
    assert (envelope["ok"], envelope["code"]) == (True, 0)
    out = envelope["data"]
    assert [d["eidValue"] for d in out["devices"]] == eids
    for device in out["devices"]:
        assert (device["cycles"], device["failures"]) == (1, 0)
        last = device["last"]
        assert (last["state"], last["error"]) == ("IDLE", None)
        kinds = [p["kind"] for p in last["packages"] if p["delivered"]]
        assert "euiccPackageRequest" in kinds
    # The cards on disk have the profile enabled; the eIM verified every signed result.
    for directory in directories:
        enabled = on_disk(directory)[1].enabled_profile
        assert enabled is not None
    for order_id in orders:
        order = server.core.store.require_order(order_id)
        assert (order.state, order.verified, order.error) == (OrderState.DONE, True, None)
    assert sorted(p.name for p in (tmp_path / "ipad").iterdir()) == sorted(eids)


def test_fleet_once_text_output_and_failure_exit(
    eim: tuple[EimServer, str], tmp_path: Path, capsys: Any
) -> None:
    server, url = eim
    provisioned, bare = make_cards(tmp_path, 2, capsys)
    initial, _ = register(server, [provisioned], tmp_path)
    assert cli.main(["fleet", str(provisioned), "--eim-url", url, "--once",
                     "--initial-eim", str(initial)]) == 0  # fmt: skip
    assert " idle eIM " in capsys.readouterr().out
    # A card with no eIM and no --initial-eim cannot poll: its cycle fails, the command says so.
    assert cli.main(["fleet", str(provisioned), str(bare), "--eim-url", url, "--once"]) == 1
    captured = capsys.readouterr()
    assert "1 of 2 devices failed their cycle" in captured.err
    assert " unprovisioned " in captured.out


def test_fleet_runs_until_the_duration_and_reports(
    eim: tuple[EimServer, str], tmp_path: Path, capsys: Any
) -> None:
    server, url = eim
    directories = make_cards(tmp_path, 2, capsys)
    initial, eids = register(server, directories, tmp_path)
    for eid in eids:
        server.core.queue(eid, ENABLE)
    argv = ["--json", "fleet", *map(str, directories), "--eim-url", url, "--pace", "0.05"]
    argv += ["--initial-eim", str(initial), "--duration", "1.5", "--report", "0.5"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    # JSON Lines: "started", a "stats" event per report, the envelope with the totals last.
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert lines[0] == {"event": "started", "devices": 2}
    assert {line.get("event") for line in lines[1:-1]} == {"stats"}
    assert lines[-1]["ok"] is True
    out = lines[-1]["data"]
    stats = out["stats"]
    assert stats["failed"] == 0 and stats["cycles"] >= 2 * len(directories)
    assert stats["packages"] >= 2  # at least the two enables (the first cycle also does data)
    assert stats["p50Ms"] <= stats["p99Ms"] <= stats["maxMs"]
    assert all(d["cycles"] >= 2 and d["failures"] == 0 for d in out["devices"])
    assert all(on_disk(d)[1].enabled_profile is not None for d in directories)


@pytest.mark.parametrize(
    ("argv", "message", "code"),
    [
        (["--card", "x", "fleet", "x", "--eim-url", "https://e"], "not --card", 2),
        (["fleet", "{d}", "{d}", "--eim-url", "https://e"], "named twice", 2),
        (["fleet", "{d}", "--eim-url", "https://e", "--duration", "0"], "--duration", 2),
        (["fleet", "{d}", "--eim-url", "ftp://e"], "not an http:// or https:// URL", 2),
    ],
)
def test_fleet_usage_errors(
    tmp_path: Path, capsys: Any, argv: list[str], message: str, code: int
) -> None:
    Euicc.create(tmp_path / "card").close()
    argv = [a.replace("{d}", str(tmp_path / "card")) for a in argv]
    assert cli.main(argv) == code
    assert message in capsys.readouterr().err
