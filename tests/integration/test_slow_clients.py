"""Slow clients cannot hold the server's sockets: a connection whose headers do not
arrive in time is closed, on a real server with real sockets."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from bench.harness.process import PredictorProcess

pytestmark = pytest.mark.integration

NAME = "smollm2"
SLOW_CLIENTS = 50
# Far above --header_timeout_s: only a server that never closes them runs into it.
CLOSE_WAIT_S = 60


def closed_by_server(connection: socket.socket, deadline: float) -> bool:
    connection.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        return connection.recv(1) == b""
    except (TimeoutError, ConnectionResetError):
        return False


def test_connections_with_unfinished_headers_are_closed_and_service_goes_on():
    server = PredictorProcess(["--model_name", NAME, "--header_timeout_s", "2"])
    try:
        server.wait_ready(NAME)
        slow = []
        for index in range(SLOW_CLIENTS):
            connection = socket.create_connection(("127.0.0.1", server.port))
            # Half the clients send part of their headers, half nothing at all.
            if index % 2:
                connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            slow.append(connection)
        deadline = time.monotonic() + CLOSE_WAIT_S
        closed = sum(closed_by_server(connection, deadline) for connection in slow)
        for connection in slow:
            connection.close()
        assert closed == SLOW_CLIENTS
        body = {"model": NAME, "prompt": "1, 2,", "max_tokens": 2}
        assert httpx.post(f"{server.url}/v1/completions", json=body, timeout=60).status_code == 200
    finally:
        server.stop()


def test_a_kept_alive_connection_serves_several_requests():
    server = PredictorProcess(["--model_name", NAME, "--header_timeout_s", "2"])
    try:
        server.wait_ready(NAME)
        body = {"model": NAME, "prompt": "1, 2,", "max_tokens": 2}
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for _ in range(3):
                assert client.post("/v1/completions", json=body).status_code == 200
                time.sleep(2.5)  # idle longer than the header deadline, between requests
    finally:
        server.stop()
