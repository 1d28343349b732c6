"""Fake ``vllm.v1.engine.exceptions``."""


class EngineDeadError(Exception):
    """The engine core process has died; no request can be served."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args or ("EngineCore encountered an issue.",))
