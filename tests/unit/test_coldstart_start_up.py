"""The serve path's start-up: what it imports when, and kzero's flags read before KServe's.

Import checks run in a fresh interpreter: this one has imported everything already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from predictor.cli import build_serve_parser, early_settings, settings_from_args

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def test_the_model_starts_without_kserve_or_the_web_stack():
    # Everything the first stage imports: kzero's flags, the plan, the engine object.
    code = (
        "import sys\n"
        "import predictor.cli, predictor.model_start, predictor.backends.llamacpp\n"
        "heavy = ('kserve.model_server', 'kserve.model', 'fastapi', 'uvicorn', 'pandas', 'grpc')\n"
        "loaded = [name for name in heavy if name in sys.modules]\n"
        "raise SystemExit(f'imported {loaded}' if loaded else 0)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_server_imports_without_kserves_client_sdk_yet_the_whole_package_stays_usable():
    code = (
        "import sys, gc\n"
        "from predictor.start_up import begin_start_up, start_up_done\n"
        "begin_start_up()\n"
        "assert not gc.isenabled()\n"
        "import predictor.assembly\n"
        "skipped = ('kubernetes', 'kserve.api.kserve_client', 'kserve.models')\n"
        "loaded = [name for name in skipped if name in sys.modules]\n"
        "assert not loaded, loaded\n"
        "start_up_done()\n"
        "assert gc.isenabled()\n"
        # A name only kserve/__init__.py defines runs it, once, on first use.
        "import kserve, kserve.model\n"
        "from kserve import KServeClient, Model\n"
        "assert Model is kserve.model.Model and 'kubernetes' in sys.modules\n"
        "assert not hasattr(kserve, 'no_such_name')\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--n_ctx", "1024", "--http_port", "9000", "--event-loop", "asyncio"],
        ["--model_name", "m", "--enable_docs_url", "true", "--max-tokens-cap=7", "--workers", "1"],
        ["--access_log_format", "%(h)s", "--backend", "llamacpp", "--cache_dir", "/c"],
    ],
)
def test_early_settings_are_the_full_parsers(argv: list[str]):
    full = settings_from_args(build_serve_parser().parse_args(argv))
    assert early_settings(argv) == full


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["-h"],
        ["--n_ctx", "lots"],  # the full parser says what is wrong, with its usage
        ["--backend", "tensorrt"],
        ["--max_tokens_cap", "0"],  # out of range: serve reports the setting
    ],
)
def test_the_full_parser_speaks_first_for_help_and_refusals(argv: list[str]):
    assert early_settings(argv) is None
