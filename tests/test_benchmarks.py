"""Every benchmark script prints its figures as one JSON object with ``--json`` (the README's
benchmark table lists them); here each runs briefly and its figures are checked for shape
and sense. The pull benchmarks are checked in test_fleet.py, eim_load.py in
test_servers_hostile.py."""

from __future__ import annotations

import pytest
from benchmark_support import run_benchmark


def test_download_prints_its_median_the_crypto_floor_and_their_ratio() -> None:
    result = run_benchmark("download.py", "--downloads", "2")
    assert set(result) == {"download_median_ms", "crypto_floor_ms", "ratio", "download_cpu_ms"}
    assert result["download_median_ms"] > result["crypto_floor_ms"] > 0
    ratio = result["download_median_ms"] / result["crypto_floor_ms"]  # of the rounded figures
    assert result["ratio"] == pytest.approx(ratio, rel=0.05)


def test_es10_prints_rates_of_the_card_through_the_es10_client() -> None:
    result = run_benchmark("es10.py", "--seconds", "0.1")
    assert set(result) == {"get_eid_per_s", "get_profiles_info_8_per_s", "enable_disable_per_s"}
    assert all(value > 0 for value in result.values())


def test_der_prints_the_strict_decoders_costs() -> None:
    result = run_benchmark("der.py", "--seconds", "0.1")
    assert set(result) == {
        "ts48_package_us",
        "ts48_mb_per_s",
        "read_package_us",
        "certificate_us",
        "euicc_info2_us",
    }
    assert all(value > 0 for value in result.values())


def test_cli_prints_start_up_times_against_plain_python() -> None:
    result = run_benchmark("cli.py", "--runs", "1")
    assert result["runs"] == 1
    assert set(result["median_ms"]) == {"python_pass", "ipa_eid", "euicc_sim_info"}
    assert set(result["ratio_to_python"]) == {"ipa_eid", "euicc_sim_info"}
    assert isinstance(result["ok"], bool) and result["limit"] > 0
