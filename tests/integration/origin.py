"""A real HTTP origin on loopback that serves files slowly on request and counts downloads."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK_BYTES = 256 * 1024


class Origin:
    """Serves ``files`` (URL path -> bytes). ``rate`` limits bytes/s per response;
    ``hold``, when given, stops every response after its first chunk until it is set."""

    def __init__(
        self,
        files: dict[str, bytes],
        rate: float | None = None,
        declare_length: bool = True,
        hold: threading.Event | None = None,
    ) -> None:
        self.files = files
        self.rate = rate
        self.hold = hold
        # Without Content-Length the body ends when the connection closes, so the
        # client learns the size only by reading it all.
        self.declare_length = declare_length
        self.started: Counter[str] = Counter()  # GETs begun, per path
        self.completed: Counter[str] = Counter()  # bodies sent to the last byte
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                body = origin.files.get(path)
                if body is None:
                    self.send_error(404)
                    return
                with origin._lock:
                    origin.started[path] += 1
                self.send_response(200)
                if origin.declare_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for offset in range(0, len(body), CHUNK_BYTES):
                        self.wfile.write(body[offset : offset + CHUNK_BYTES])
                        if origin.rate:
                            time.sleep(CHUNK_BYTES / origin.rate)
                        if origin.hold is not None:
                            origin.hold.wait()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client went away (killed mid-transfer)
                with origin._lock:
                    origin.completed[path] += 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop answering: later connections are refused."""
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def serving(
    files: dict[str, bytes],
    rate: float | None = None,
    declare_length: bool = True,
    hold: threading.Event | None = None,
) -> Iterator[Origin]:
    origin = Origin(files, rate, declare_length, hold)
    try:
        yield origin
    finally:
        if hold is not None:
            hold.set()  # let held responses end, so that the server's threads can stop
        origin.close()
