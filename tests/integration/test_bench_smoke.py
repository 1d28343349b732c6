"""`kzero bench` runs end to end: three real setups, a table and ratio lines.

Speed is never asserted: this machine is shared and noisy. The test checks
that every setup produced figures and that they are positive numbers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_ROWS = ("a raw llama-cpp-python", "b kzero", "c llama_cpp.server")
NUMBER = r"[0-9]+(?:\.[0-9]+)?"


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from predictor.bench.cli import bench_main; raise SystemExit(bench_main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_bench_prints_all_three_setups_and_positive_ratios(tmp_path: Path):
    raw_json = tmp_path / "bench.json"
    result = run_bench(
        "--rounds", "1", "--concurrency", "1", "--max_tokens", "8", "--json", str(raw_json)
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    for name in SETUP_ROWS:
        row = re.search(
            rf"^{re.escape(name)}\s+1\s+({NUMBER})\s+({NUMBER})\s+-\s+1/1$", result.stdout, re.M
        )
        assert row, f"no row for {name}:\n{result.stdout}"
        assert float(row.group(1)) > 0 and float(row.group(2)) > 0

    for pair in ("b/a", "b/c"):
        line = re.search(
            rf"^ratio {pair} concurrency 1: tok/s ({NUMBER})  TTFT p50 ({NUMBER})  paired tok/s ({NUMBER})$",
            result.stdout,
            re.M,
        )
        assert line, f"no {pair} ratio line:\n{result.stdout}"
        assert all(float(value) > 0 for value in line.groups())

    summary = json.loads(raw_json.read_text())["summary"]
    assert sorted(item["setup"] for item in summary) == ["a", "b", "c"]


def test_coldstart_bench_times_all_three_cache_states(tmp_path: Path):
    raw_json = tmp_path / "coldstart.json"
    result = run_bench("coldstart", "--runs", "1", "--json", str(raw_json))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cache-hit ready / (imports + disk read):" in result.stdout

    payload = json.loads(raw_json.read_text())
    assert sorted(run["state"] for run in payload["runs"]) == ["hit", "hot", "miss"]
    for run in payload["runs"]:
        assert 0 < run["phases"]["process_start"] < run["ready_s"] < run["first_token_s"]
        assert {"cache", "load", "ready"} <= set(run["phases"])
    # Only the cache miss downloads; the hits verify the copy on disk instead.
    phases_by_state = {run["state"]: set(run["phases"]) for run in payload["runs"]}
    assert "download" in phases_by_state["miss"]
    assert "download" not in phases_by_state["hit"] and "verify" in phases_by_state["hit"]
    assert payload["summary"]["disk_bandwidth_mb_s"] > 0
