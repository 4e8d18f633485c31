# --- 8. load (the benchmark, short) ---------------------------------------------------------


def test_load_benchmark_short_run_ends_every_order_verified() -> None:
    """benchmarks/eim_load.py with 20 devices for 2 s (the benchmark runs 200 for 30 s)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "eim_load.py"
    command = [sys.executable, str(script), "--devices", "20", "--seconds", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["devices"] == 20 and result["orders_done"] > 0
    assert (result["failed_cycles"], result["unverified"], result["stranded"]) == (0, 0, 0)
