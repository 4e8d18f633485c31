"""The shipped Locust user (``euicc_cli.locust_users``): a short headless run with two worker
processes against the reference eIM on 127.0.0.1, judged by Locust's CSV statistics."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from euicc_servers.eim import OrderState, build_eim, run_in_thread

# Not imported here: Locust monkey-patches the standard library with gevent on import.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="needs Locust (the load extra)"
)

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "locust-test-token"


@pytest.fixture
def eim(tmp_path: Path) -> Iterator[tuple[Any, Path, Any]]:
    server = build_eim("sgp26", state_dir=tmp_path / "eim", admin_token=TOKEN)
    trust = server.core.settings.tls_trust_certificate
    assert trust is not None
    ca = tmp_path / "ci.pem"
    ca.write_bytes(x509.load_der_x509_certificate(trust).public_bytes(Encoding.PEM))
    with run_in_thread(server.core, tls=server.tls) as running:
        yield running, ca, server.core


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="") as f:
        return {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}


def test_headless_two_workers_report_esipa_functions_and_cycles(
    eim: tuple[Any, Path, Any], tmp_path: Path
) -> None:
    running, ca, core = eim
    prefix = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), EIM_ADMIN_TOKEN=TOKEN)
    command = [
        sys.executable,
        "-m",
        "euicc_cli.ipa_command",
        "fleet",
        "--eim-url",
        running.base_url,
        "--ca-cert",
        str(ca),
        "--locust",
        "--",
        "--headless",
        "--processes",
        "2",
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--run-time",
        "12s",
        "--csv",
        str(prefix),
        "--html",
        str(tmp_path / "report.html"),
        "--loglevel",
        "WARNING",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(Path(f"{prefix}_stats.csv"))
    for function in ("getEimPackage", "provideEimPackageResult"):
        row = rows[("ESipa", function)]
        assert int(row["Request Count"]) > 0
        assert int(row["Failure Count"]) == 0
    cycles = rows[("PSMO", "cycle")]
    assert int(cycles["Request Count"]) >= 4
    assert int(cycles["Failure Count"]) == 0
    assert int(rows[("operator", "register")]["Request Count"]) == 4
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0
    assert (tmp_path / "report.html").stat().st_size > 0
    # The eIM's side: four devices (EIDs from two workers, distinct), every executed order
    # verified; an order queued just before the stop may still wait.
    euiccs = core.store.euiccs()
    assert len({e.eid for e in euiccs}) == 4
    orders = core.store.orders()
    done_orders = [o for o in orders if o.state == OrderState.DONE]
    assert len(done_orders) >= int(cycles["Request Count"])
    assert all(o.verified for o in done_orders)
    assert all(o.state in (OrderState.DONE, OrderState.QUEUED, OrderState.SENT) for o in orders)
