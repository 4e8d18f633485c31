"""The package roots, the shipped profiles, the version, and what start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import euicc_protocol
import euicc_sim
import ipa
from euicc_protocol import profiles

ROOT = Path(__file__).resolve().parent.parent


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("package", [euicc_sim, ipa])
def test_every_root_export_resolves(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert names and "__version__" in names
    for name in names:
        assert getattr(package, name) is not None, name
    assert set(names) <= set(dir(package))


def test_root_exports_are_the_defining_modules_objects() -> None:
    from euicc_sim.card import Euicc
    from ipa.es10 import Es10Client
    from ipa.transport import InProcessTransport

    assert euicc_sim.Euicc is Euicc
    assert (ipa.Es10Client, ipa.InProcessTransport) == (Es10Client, InProcessTransport)
    with pytest.raises(AttributeError):
        ipa.NoSuchThing  # noqa: B018


def test_importing_the_roots_loads_nothing_heavy() -> None:
    loaded = fresh_python(
        "import sys, euicc_sim, ipa, euicc_protocol\n"
        "ours = ('euicc_protocol', 'euicc_sim', 'ipa', 'asn1tools')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ours))"
    )
    assert json.loads(loaded.replace("'", '"')) == ["euicc_protocol", "euicc_sim", "ipa"]


def test_version_is_the_distributions() -> None:
    from importlib.metadata import version

    assert euicc_sim.__version__ == ipa.__version__ == euicc_protocol.__version__
    assert euicc_sim.__version__ == version("euicc-sim")


def test_profiles_by_name() -> None:
    names = profiles.names()
    assert "TS48V1-A-UNIQUE" in names and names == sorted(names)
    expected = (ROOT / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der").read_bytes()
    assert profiles.load("TS48V1-A-UNIQUE") == expected
    assert profiles.load("ts48v1-a-unique.der") == expected
    with pytest.raises(profiles.UnknownProfileError, match="TS48V1-B-UNIQUE"):
        profiles.path("TS48V0-NOTHING")


def test_every_package_is_typed() -> None:
    for package in ("euicc_protocol", "euicc_sim", "ipa", "euicc_servers", "euicc_cli"):
        assert (ROOT / package / "py.typed").is_file()


# -- asn1tools without its grammar parser (start-up) -------------------------------------------


def test_a_cached_schema_loads_without_the_asn1_parser() -> None:
    out = fresh_python(
        "import sys\n"
        "from euicc_protocol import schema\n"
        "schema.spec()\n"
        "print(schema.decode('GetEuiccDataRequest', bytes.fromhex('BF3E035C015A')))\n"
        "print('pyparsing' in sys.modules, 'asn1tools.source.c' in sys.modules)\n"
    )
    assert out.splitlines() == ["{'tagList': b'Z'}", "False False"]


def test_asn1tools_is_whole_for_code_that_imports_it_after_the_schema() -> None:
    out = fresh_python(
        "from euicc_protocol import schema\n"
        "import asn1tools\n"
        "spec = asn1tools.compile_string(\n"
        "    'M DEFINITIONS ::= BEGIN T ::= SEQUENCE { a INTEGER } END', 'uper')\n"
        "print(spec.encode('T', {'a': 5}).hex(), asn1tools.ParseError.__name__)\n"
        "try:\n"
        "    asn1tools.parse_string('not asn.1')\n"
        "except asn1tools.ParseError:\n"
        "    print('ParseError')\n"
    )
    assert out.splitlines() == ["0105 ParseError", "ParseError"]


def test_the_startup_benchmark_reports_its_ratios() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cli.py"), "--json", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["median_ms"]) == {"python_pass", "ipa_eid", "euicc_sim_info"}
    assert set(result["ratio_to_python"]) == {"ipa_eid", "euicc_sim_info"}
    assert result["limit"] == 15.0 and isinstance(result["ok"], bool)


def test_short_commands_do_not_load_http_or_servers(tmp_path: Path) -> None:
    """``ipa --card DIR eid`` and ``euicc-sim info DIR`` stay quick: no HTTP stack, no
    servers, no fleet runner, no ASN.1 grammar parser (those load with their commands)."""
    card = tmp_path / "card"
    out = fresh_python(
        "import contextlib, io, sys\n"
        "from euicc_cli import ipa_command, sim_command\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert sim_command.main(['init', {str(card)!r}]) == 0\n"
        f"    assert ipa_command.main(['--card', {str(card)!r}, 'eid']) == 0\n"
        f"    assert sim_command.main(['info', {str(card)!r}]) == 0\n"
        "heavy = ('httpx', 'uvicorn', 'starlette', 'euicc_servers', 'ipa.fleet', 'ipa.pull',\n"
        "         'pyparsing', 'asn1tools.codecs.per', 'asn1tools.codecs.uper')\n"
        "loaded = [m for m, mod in sys.modules.items() if type(mod).__name__ != '_StandIn']\n"
        "print(sorted(m for m in loaded if m in heavy or m.startswith(heavy[:5])))\n"
    )
    assert out.strip() == "[]"


def test_the_schema_is_loaded_once_however_its_version_is_named() -> None:
    from euicc_protocol import schema

    assert schema.spec() is schema.spec("1.2") is schema.spec(sgp32="1.2")
