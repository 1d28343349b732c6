"""``kzero bench coldstart --vs_llama_server`` end to end; never a wall-clock assertion.

llama-server needs a 10-minute build (``kzero bench build-llama-server``) that CI
does not do: without the cached build, the test is skipped, and the bench
itself refuses to run rather than drop the comparison.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.llama_server import cached_binary, installed_version
from tests.integration.test_bench_smoke import run_bench

pytestmark = pytest.mark.integration


@pytest.mark.skipif(
    not cached_binary(installed_version()).is_file(),
    reason="no llama-server build: kzero bench build-llama-server",
)
def test_kzero_and_llama_server_start_in_turn_with_one_configuration(tmp_path: Path):
    raw_json = tmp_path / "coldstart.json"
    args = ("coldstart", "--runs", "2", "--states", "local", "--vs_llama_server")
    result = run_bench(*args, "--json", str(raw_json))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kzero / llama-server: ready" in result.stdout

    payload = json.loads(raw_json.read_text())
    servers = [run["server"] for run in payload["runs"]]
    assert servers == ["kzero", "llama-server"] * 2  # interleaved
    for run in payload["runs"]:
        assert 0 < run["ready_s"] < run["first_token_s"]
    for run in payload["runs"][::2]:  # kzero's own phases, the warm-up included
        assert {"process_start", "load", "warm_up", "ready"} <= set(run["phases"])
    versus = payload["summary"]["vs_llama_server"]
    assert versus["ready_ratio"] > 0 and len(versus["ready_ratio_by_round"]) == 2


def test_the_comparison_refuses_to_run_without_a_llama_server_build(tmp_path: Path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    result = run_bench("coldstart", "--runs", "1", "--vs_llama_server", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no llama-server build" in result.stderr
    assert "kzero bench build-llama-server" in result.stderr
    assert "leave out --vs_llama_server" in result.stderr
