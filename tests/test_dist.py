"""The distribution as a user gets it: sdist and wheel built, the wheel installed in a fresh
virtual environment outside the checkout, the sdist's own tests run from the unpacked sdist.

Slow (a build and a venv): marked ``slow``; ``pytest -m "not slow"`` leaves it out. The build
runs in pip's isolated environment, which needs the package index (or its cache): without it
the test skips.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("euicc_protocol", "euicc_sim", "ipa", "euicc_servers", "euicc_cli")

pytestmark = pytest.mark.slow


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{argv}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(wheel, sdist, build output) built from the checkout (the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    offline = re.compile(r"Could not find a version|Network|connection", re.I)
    if done.returncode != 0 and offline.search(done.stdout + done.stderr):
        pytest.skip("the isolated build cannot reach the package index")
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist, done.stdout + done.stderr


def test_the_build_has_no_warnings(dist: tuple[Path, Path, str]) -> None:
    *_, log = dist
    warnings = [line for line in log.splitlines() if "warning" in line.lower()]
    # setuptools says byte-compiling is off when PYTHONDONTWRITEBYTECODE is set: not ours.
    warnings = [w for w in warnings if "byte-compiling is disabled" not in w]
    assert warnings == []


def test_the_wheel_carries_the_data_and_no_generic_top_level_name(
    dist: tuple[Path, Path, str],
) -> None:
    wheel, _, _ = dist
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == set(PACKAGES)
    for package in PACKAGES:
        assert f"{package}/py.typed" in names
    shipped = {Path(n).name for n in names if n.startswith("euicc_protocol/profiles/ts48/")}
    assert {p.name for p in (ROOT / "profiles" / "ts48").glob("*.der")} <= shipped
    assert any(n.startswith("euicc_protocol/data/sgp26/CertificateIssuer/") for n in names)
    metadata = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    assert "License-Expression: Apache-2.0" in metadata
    assert any(n.endswith("licenses/LICENSE") for n in names)


@pytest.fixture(scope="module")
def venv(dist: tuple[Path, Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with the wheel installed (dependencies are taken from
    the test environment's site-packages through a .pth file, so no index is needed)."""
    wheel, _, _ = dist
    home = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(home / "env")], cwd=home, env=clean_env())
    python = home / "env" / "bin" / "python"
    purelib = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
            env=clean_env(),
        ).strip()
    )
    # (Without the checkout on PYTHONPATH: pip would take its egg-info for an installation.)
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        cwd=home, env=clean_env())  # fmt: skip
    # Then the dependencies: a .pth line adds the test environment's site-packages (after the
    # venv's own, and .pth files inside it, such as an editable install, are not processed).
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, **extra}


def test_the_installed_wheel_works_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    code = """
import euicc_sim, ipa, euicc_protocol
from euicc_sim import Euicc
from ipa import Es10Client, InProcessTransport
from euicc_protocol import profiles
assert "site-packages" in euicc_sim.__file__, euicc_sim.__file__
assert euicc_sim.__version__ == ipa.__version__ != "0+unknown"
assert "TS48V1-A-UNIQUE" in profiles.names()
print("ok")
"""
    assert run([str(venv), "-c", code], cwd=tmp_path, env=clean_env()).strip() == "ok"
    # The README's Python snippet, as written.
    readme = (ROOT / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    run([str(venv), "-c", snippet], cwd=tmp_path, env=clean_env())
    # The commands, through their entry points and python -m.
    bin_dir = venv.parent
    listed = run([str(bin_dir / "euicc-sim"), "profiles"], cwd=tmp_path, env=clean_env())
    assert "TS48V1-A-UNIQUE" in listed.split()
    run([str(bin_dir / "euicc-sim"), "init", "card"], cwd=tmp_path, env=clean_env())
    run([str(bin_dir / "euicc-sim"), "preload", "card", "TS48V1-A-UNIQUE"], cwd=tmp_path,
        env=clean_env())  # fmt: skip
    eid = run([str(venv), "-m", "ipa", "--card", "card", "eid"], cwd=tmp_path, env=clean_env())
    assert re.fullmatch(r"\d{32}\n", eid)
    version = run([str(bin_dir / "ipa"), "--version"], cwd=tmp_path, env=clean_env())
    assert version.startswith("ipa ")


def test_the_sdist_runs_its_own_tests(
    dist: tuple[Path, Path, str], venv: Path, tmp_path: Path
) -> None:
    _, sdist, _ = dist
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    fast = ["tests/test_cli.py", "tests/test_profiles.py", "tests/test_tlv.py"]
    env = clean_env(HYPOTHESIS_PROFILE="ci")
    run([str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *fast],
        cwd=unpacked, env=env)  # fmt: skip
