"""Server children get the configuration we give them, not the shell's."""

from __future__ import annotations

import sys

import pytest

from bench.harness.process import ServerProcess, free_port


def test_a_kzero_setting_in_the_shell_does_not_reach_a_server_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KZERO_API_KEY", "would-make-every-request-401")
    monkeypatch.setenv("KZERO_BENCH_UNRELATED_CHECK", "1")
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
    # Exits 0 only when the only KZERO_* variable is the one passed explicitly
    # and the rest of the environment arrived.
    child = (
        "import os, sys; "
        "sys.exit([k for k in os.environ if k.startswith('KZERO_')] != ['KZERO_GIVEN'] "
        "or os.environ.get('PYTHONNOUSERSITE') != '1' or os.environ.get('EXTRA') != 'yes')"
    )
    with ServerProcess(
        "env-check",
        [sys.executable, "-c", child],
        free_port(),
        env={"EXTRA": "yes", "KZERO_GIVEN": "1"},
    ) as server:
        assert server.wait_exit(30) == 0, server.log()
