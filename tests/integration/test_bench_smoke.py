"""`kzero bench` runs end to end: real setups, a table, ratio and ceiling lines.

Speed is never asserted: this machine is shared and noisy. The test checks
that every setup produced figures and that they are positive numbers.

Setup d (llama.cpp's C++ llama-server) needs a 10-minute build that CI does not
do, so the smoke names the setups it measures (--setups a,b,c); a second test
checks that leaving d in without a build fails loudly instead of skipping it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
# The installed `kzero` command: the bench is found beside predictor/ in this checkout.
KZERO = str(Path(sys.executable).with_name("kzero"))
SETUP_ROWS = ("a raw llama-cpp-python", "b kzero", "c llama_cpp.server")
NUMBER = r"[0-9]+(?:\.[0-9]+)?"


def run_bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KZERO, "bench", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def test_bench_prints_setups_a_b_c_with_positive_ratios_and_the_ceiling(tmp_path: Path):
    raw_json = tmp_path / "bench.json"
    result = run_bench(
        "--setups", "a,b,c", "--rounds", "1", "--concurrency", "1", "--max_tokens", "8",
        "--bandwidth_mib", "32", "--json", str(raw_json),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "setups interleaved a, b, c in every round" in result.stdout

    for name in SETUP_ROWS:
        # tok/s, TTFT p50, TTFT p95 (too few samples: '-'), ITL p50, ITL p95 ('-'), tok/event
        row = re.search(
            rf"^{re.escape(name)}\s+1\s+({NUMBER})\s+({NUMBER})\s+-\s+({NUMBER})\s+-\s+({NUMBER})\s+1/1$",
            result.stdout,
            re.M,
        )
        assert row, f"no row for {name}:\n{result.stdout}"
        assert all(float(value) > 0 for value in row.groups())

    for pair in ("b/a", "b/c", "c/a"):
        line = re.search(
            rf"^ratio {pair} concurrency 1: tok/s ({NUMBER})  TTFT p50 ({NUMBER})  paired tok/s ({NUMBER})  TTFT p95 n/a$",
            result.stdout,
            re.M,
        )
        assert line, f"no {pair} ratio line:\n{result.stdout}"
        assert all(float(value) > 0 for value in line.groups())
    assert "ratio b/d" not in result.stdout and "target " not in result.stdout

    bandwidth = re.search(rf"^ceiling: .*; used: ({NUMBER}) GB/s$", result.stdout, re.M)
    assert bandwidth and float(bandwidth.group(1)) > 0, result.stdout
    assert re.search(
        rf"^ceiling b kzero concurrency 1: .* ({NUMBER})% of the DRAM copy bandwidth",
        result.stdout,
        re.M,
    )

    payload = json.loads(raw_json.read_text())
    assert sorted(item["setup"] for item in payload["summary"]) == ["a", "b", "c"]
    assert payload["step_bytes"]["weights"] > 0
    # Before the servers start and after the rounds, with STREAM-sized and weight-sized arrays.
    assert len(payload["bandwidth_dram"]) == len(payload["bandwidth_weight_sized"]) == 2
    assert "--max_running_requests" in payload["server_commands"]["b"]


def test_bench_refuses_to_drop_llama_server_silently_when_it_is_not_built(tmp_path: Path):
    # An empty cache: setup d (in the default --setups) has no binary.
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    result = run_bench("--rounds", "1", "--concurrency", "1", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no llama-server build" in result.stderr
    assert "kzero bench build-llama-server" in result.stderr
    assert "--setups a,b,c" in result.stderr


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


def test_attention_bench_times_decode_steps_with_flash_attention_off_and_on(tmp_path: Path):
    raw_json = tmp_path / "attention.json"
    result = run_bench(
        "attention", "--contexts", "16,300", "--sequences", "2", "--rounds", "1",
        "--json", str(raw_json),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for context in (16, 300):
        row = re.search(
            rf"^\| {context} \| 2 \| ({NUMBER}) ms \| ({NUMBER}) ms \| ({NUMBER}) \|$",
            result.stdout,
            re.M,
        )
        assert row, f"no row for a {context}-token context:\n{result.stdout}"
        off, on, ratio = map(float, row.groups())
        assert (
            off > 0 and on > 0 and ratio == pytest.approx(off / on, rel=0.03)
        )  # of the unrounded times
    rows = json.loads(raw_json.read_text())["rows"]
    assert [(r["context"], r["sequences"]) for r in rows] == [(16, 2), (300, 2)]
