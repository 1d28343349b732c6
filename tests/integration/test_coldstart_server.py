"""The two-stage start of ``kzero serve``: the model loads while KServe's server is imported.

Orders, not wall-clock times: which happened first, and what each start exports.
"""

from __future__ import annotations

import sys
import textwrap

import httpx
import pytest

from bench.harness.metrics import scrape, value
from bench.harness.process import PredictorProcess

pytestmark = pytest.mark.integration

NAME = "coldstart"

# The real predictor, with two observers. The backend's load records what was
# imported when it began; the parser that imports KServe's server waits (up to
# 60 s) for that record, so the log says which came first without a race.
ORDER_PROBE = textwrap.dedent(
    """
    import sys, threading
    from predictor import cli

    load_began = threading.Event()

    class Observed:
        def __init__(self, inner):
            self._inner = inner

        async def load(self):
            imported = [m for m in ("kserve.model_server", "fastapi") if m in sys.modules]
            print(f"PROBE load began; already imported: {imported}", file=sys.stderr, flush=True)
            load_began.set()
            await self._inner.load()

        def __getattr__(self, name):
            return getattr(self._inner, name)

    build_serve_parser = cli.build_serve_parser

    def observed_build_serve_parser(prog):
        first = "load" if load_began.wait(60) else "KServe's server"
        print(f"PROBE first: {first}", file=sys.stderr, flush=True)
        return build_serve_parser(prog)

    cli.build_serve_parser = observed_build_serve_parser
    sys.exit(cli.serve_main(sys.argv[1:], prog="probe", wrap_backend=Observed))
    """
)


def test_the_model_begins_to_load_before_kserves_server_is_imported():
    server = PredictorProcess(
        ["--model_name", NAME], script=[sys.executable, "-c", ORDER_PROBE], name="order-probe"
    )
    try:
        server.wait_ready(NAME)
        log = server.log()
        assert "PROBE load began; already imported: []" in log, log
        assert "PROBE first: load" in log, log
        # ...and the server it then builds is KServe's, with every door.
        assert httpx.get(f"{server.url}/v2/models/{NAME}/ready").status_code == 200
        predict = httpx.post(
            f"{server.url}/v1/models/{NAME}:predict",
            json={"instances": [{"prompt": "Hello", "max_tokens": 2}]},
            timeout=60,
        )
        assert predict.status_code == 200, predict.text
    finally:
        server.stop()


def test_a_flag_refused_after_the_load_began_exits_2_with_the_usage():
    # kzero's own flags are fine, so the model starts loading; KServe's
    # --enable_docs_url then misses its value, which only the full parser knows.
    server = PredictorProcess(["--model_name", NAME, "--enable_docs_url"])
    try:
        assert server.wait_exit() == 2
        log = server.log()
        assert f"as '{NAME}' with llamacpp" in log  # the early stage ran
        assert "--enable_docs_url: expected one argument" in log
        assert "usage:" in log
        assert "Traceback" not in log and "Fatal Python error" not in log
    finally:
        server.stop()


def test_each_cold_start_phase_is_exported_once_warm_up_included(predictor: PredictorProcess):
    samples = scrape(predictor.url)
    for phase in ("process_start", "load", "warm_up", "ready"):
        assert value(samples, "kzero_cold_start_seconds_count", phase=phase) == 1, phase
    seconds = {
        phase: value(samples, "kzero_cold_start_seconds_sum", phase=phase)
        for phase in ("process_start", "load", "warm_up", "ready")
    }
    assert 0 < seconds["process_start"] < seconds["ready"]
    assert seconds["load"] > 0 and seconds["warm_up"] > 0
