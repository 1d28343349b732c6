"""The real predictor, with its model load held until a gate file exists.

A 98 MB model loads in well under a second, too fast to observe the server
answering while the model is still loading. This entry point runs the same
server, backend and model; only the start of ``load()`` waits for the file named
by ``KZERO_TEST_LOAD_GATE``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from predictor.assembly import build_predictor, serve
from predictor.cli import build_serve_parser, configure_logging, settings_from_args


class GatedBackend:
    def __init__(self, inner: Any, gate: Path) -> None:
        self._inner = inner
        self._gate = gate

    async def load(self) -> None:
        while not self._gate.exists():  # noqa: ASYNC110 - the gate is a file another process creates
            await asyncio.sleep(0.05)
        await self._inner.load()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def main() -> None:
    args = build_serve_parser("gated_predictor").parse_args(sys.argv[1:])
    configure_logging()
    path = Path(os.environ["KZERO_TEST_LOAD_GATE"])
    model = build_predictor(
        settings_from_args(args), wrap_backend=lambda backend: GatedBackend(backend, path)
    )
    serve(
        model,
        http_port=args.http_port,
        enable_grpc=args.enable_grpc,
        event_loop=args.event_loop,
    )


if __name__ == "__main__":
    main()
