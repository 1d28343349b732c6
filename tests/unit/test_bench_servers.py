"""The bench's servers run with the bench's configuration, not the shell's."""

from __future__ import annotations

import sys

import pytest

from predictor.bench.servers import ServerProcess, free_port


def test_a_kzero_setting_in_the_shell_does_not_reach_a_measured_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KZERO_API_KEY", "would-make-every-request-401")
    monkeypatch.setenv("KZERO_BENCH_UNRELATED_CHECK", "1")
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
    # Exits 0 only when no KZERO_* variable arrived and the rest of the environment did.
    child = (
        "import os, sys; "
        "sys.exit(any(k.startswith('KZERO_') for k in os.environ) "
        "or os.environ.get('PYTHONNOUSERSITE') != '1' or os.environ.get('EXTRA') != 'yes')"
    )
    server = ServerProcess(
        "env-check", [sys.executable, "-c", child], free_port(), "/", env={"EXTRA": "yes"}
    )
    try:
        assert server.process.wait(timeout=30) == 0, server.log_tail()
    finally:
        server.stop()
