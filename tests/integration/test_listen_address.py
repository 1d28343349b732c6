"""Where the server listens: loopback unless told otherwise, on a real socket."""

from __future__ import annotations

import socket

import httpx
import pytest

from bench.harness.process import PredictorProcess

pytestmark = pytest.mark.integration

NAME = "smollm2"


def this_machines_address() -> str:
    """An address of this machine that is not loopback (no packet is sent: UDP only routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError as exc:
            pytest.skip(f"no non-loopback IPv4 interface to test with: {exc}")
        return str(probe.getsockname()[0])


def answers(host: str, port: int) -> bool:
    try:
        return httpx.get(f"http://{host}:{port}/v2/health/live", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize(
    ("args", "reachable_from_the_network"),
    [([], False), (["--host", "0.0.0.0"], True)],
    ids=["default", "all-interfaces"],
)
def test_kzero_serve_listens_on_loopback_unless_told_otherwise(
    args: list[str], reachable_from_the_network: bool
):
    address = this_machines_address()
    server = PredictorProcess(["--model_name", NAME, *args])
    try:
        server.wait_ready(NAME)
        assert answers("127.0.0.1", server.port)
        assert answers(address, server.port) is reachable_from_the_network
    finally:
        server.stop()
