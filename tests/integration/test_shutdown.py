"""Graceful drain on SIGTERM and a non-zero exit when the engine dies, on real processes."""

from __future__ import annotations

import signal
import struct
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.harness.process import PredictorProcess
from bench.harness.sse import DONE, StreamTally, events, finish_reason
from predictor.default_model import default_model_path

pytestmark = pytest.mark.integration

NAME = "smollm2"
CHAT = "/v1/chat/completions"


def chat_body(max_tokens: int, *, stream: bool) -> dict[str, object]:
    return {
        "model": NAME,
        "messages": [{"role": "user", "content": "Tell me a long story about the sea."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }


class StreamReader(threading.Thread):
    """Reads one SSE stream to its end on a thread; first_token is set on the second event."""

    def __init__(self, url: str, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.max_tokens = max_tokens
        self.first_token = threading.Event()
        self.tally = StreamTally()
        self.status: int | None = None

    def run(self) -> None:
        with httpx.stream(
            "POST", self.url + CHAT, json=chat_body(self.max_tokens, stream=True), timeout=120
        ) as response:
            self.status = response.status_code
            for event in events(response.iter_lines()):
                self.tally.add(event)
                if len(self.tally.events) >= 2:
                    self.first_token.set()

    def finish_reasons(self) -> list[str]:
        return [reason for event in self.tally.events if (reason := finish_reason(event))]

    def errors(self) -> list[dict[str, object]]:
        return [e["error"] for e in self.tally.events if isinstance(e, dict) and "error" in e]


def start(args: list[str], **kwargs: object) -> PredictorProcess:
    server = PredictorProcess(["--model_name", NAME, *args], **kwargs)  # type: ignore[arg-type]
    server.wait_ready(NAME)
    return server


def test_sigterm_stops_new_work_at_once_and_lets_the_stream_finish_then_exits_0():
    server = start(["--drain_timeout_s", "60"])
    try:
        reader = StreamReader(server.url, max_tokens=120)
        reader.start()
        assert reader.first_token.wait(60), server.log()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # Still listening: readiness says no, and new work gets a retryable 503.
        assert httpx.get(f"{server.url}/v1/models/{NAME}", timeout=10).status_code == 503
        refused = httpx.post(server.url + CHAT, json=chat_body(4, stream=False), timeout=10)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
        assert refused.headers["retry-after"]
        reader.join(120)
        assert reader.status == 200
        assert reader.errors() == []
        assert reader.finish_reasons() == ["length"]
        assert reader.tally.events[-1] == DONE
        assert server.wait_exit(60) == 0, server.log()
    finally:
        server.stop()


def test_a_stream_outliving_the_drain_timeout_ends_with_a_503_error_event_and_exit_0():
    server = start(["--drain_timeout_s", "1", "--max_tokens_cap", "4000"])
    try:
        reader = StreamReader(server.url, max_tokens=4000)
        reader.start()
        assert reader.first_token.wait(60), server.log()
        server.process.send_signal(signal.SIGTERM)
        reader.join(60)
        assert not reader.is_alive()
        assert [error["code"] for error in reader.errors()] == ["shutting_down"]
        assert reader.finish_reasons() == []
        assert server.wait_exit(60) == 0, server.log()
    finally:
        server.stop()


def test_an_engine_failure_fails_requests_turns_health_false_and_exits_non_zero(tmp_path: Path):
    fault = tmp_path / "fault"
    script = [sys.executable, str(Path(__file__).with_name("faulty_predictor.py"))]
    server = start([], script=script, env={"KZERO_TEST_FAULT_FILE": str(fault)})
    try:
        ok = httpx.post(server.url + CHAT, json=chat_body(4, stream=False), timeout=60)
        assert ok.status_code == 200
        reader = StreamReader(server.url, max_tokens=200)
        reader.start()
        assert reader.first_token.wait(60), server.log()
        fault.touch()
        reader.join(60)
        assert not reader.is_alive()
        assert [error["code"] for error in reader.errors()] == [None]
        assert reader.tally.events[-1] == DONE
        # Whatever arrives afterwards is refused, never left hanging, until the exit.
        try:
            late = httpx.post(server.url + CHAT, json=chat_body(4, stream=False), timeout=30)
            assert late.status_code == 503
        except httpx.TransportError:
            pass  # already gone
        assert server.wait_exit(60) == 1, server.log()
        assert "engine failed" in server.log()
    finally:
        server.stop()


def test_a_model_llama_cpp_refuses_after_the_port_opened_exits_1_with_one_line(tmp_path: Path):
    # A header kzero accepts but llama.cpp cannot load: an unknown architecture
    # (the value of general.architecture, same length, so no offset moves).
    value = struct.pack("<IQ", 8, len(b"llama")) + b"llama"
    original = default_model_path().read_bytes()
    marker = b"general.architecture" + value
    assert original.count(marker) == 1
    unknown = tmp_path / "unknown-arch.gguf"
    unknown.write_bytes(original.replace(marker, marker[: -len(b"llama")] + b"zzzzz"))
    server = PredictorProcess(["--model", str(unknown)])
    try:
        assert server.wait_exit() == 1, server.log()
        errors = [line for line in server.log().splitlines() if " ERROR " in line]
        assert len(errors) == 1, server.log()
        assert "engine failed: cannot load the model" in errors[0]
        assert "Traceback" not in server.log()
    finally:
        server.stop()
