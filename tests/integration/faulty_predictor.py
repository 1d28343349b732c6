"""The real predictor, with a decode failure injected into llama.cpp on demand.

A real engine does not fail on cue, so this entry point runs the same server,
backend and model, and wraps only the engine's ``piece`` (token to bytes),
which the decode loop calls once per generated token: once the file named by
``KZERO_TEST_FAULT_FILE`` exists, the next call raises, as a failed
``llama_decode`` would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from predictor.cli import serve_main


class FaultyBackend:
    def __init__(self, inner: Any, fault_file: Path) -> None:
        self._inner = inner
        self._fault_file = fault_file

    async def load(self) -> None:
        await self._inner.load()
        engine = self._inner._engine
        piece = engine.piece

        def faulty_piece(*args: Any, **kwargs: Any) -> bytes:
            if self._fault_file.exists():
                raise RuntimeError("injected fault: llama_decode returned -3")
            return piece(*args, **kwargs)

        engine.piece = faulty_piece

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def main() -> int:
    path = Path(os.environ["KZERO_TEST_FAULT_FILE"])
    return serve_main(
        sys.argv[1:],
        prog="faulty_predictor",
        wrap_backend=lambda backend: FaultyBackend(backend, path),
    )


if __name__ == "__main__":
    sys.exit(main())
