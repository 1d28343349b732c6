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

from predictor.cli import serve_main


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


def main() -> int:
    path = Path(os.environ["KZERO_TEST_LOAD_GATE"])
    return serve_main(
        sys.argv[1:],
        prog="gated_predictor",
        wrap_backend=lambda backend: GatedBackend(backend, path),
    )


if __name__ == "__main__":
    sys.exit(main())
