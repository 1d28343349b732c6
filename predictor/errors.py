"""What can go wrong with a generation request, in the serving layer's own terms.

Nothing here knows HTTP. Each door maps these errors its own way: the OpenAI
routes through ``openai/errors.py`` (status, type, code, Retry-After), KServe's
``:predict`` through ``model.py``. ``outcome`` is the ``status`` label of
``kzero_requests_total`` a refused or failed request is counted under:

- ``invalid``: the request itself is wrong; retrying it unchanged cannot help.
- ``rejected``: refused for now (loading, draining, full); a retry will succeed.
  Kept apart from errors so that alerts do not page on every cold start.
- ``error``: the server failed the request.
"""

from __future__ import annotations

from typing import Literal

Outcome = Literal["invalid", "rejected", "error"]


class ServingError(Exception):
    """Base class; ``param`` names the request field at fault, when there is one."""

    outcome: Outcome = "error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidParam(ServingError):
    """A request field is out of bounds or unusable for this model."""

    outcome: Outcome = "invalid"


class InvalidBody(InvalidParam):
    """The request body is not what the door accepts (not JSON, wrong shape)."""


class ContextTooLong(InvalidParam):
    """Prompt plus requested completion do not fit the context window."""


class UnknownModel(InvalidParam):
    """The request names a model this server does not serve."""

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist", param="model")


class Unavailable(ServingError):
    """Refused for now; ``retry_after`` is the seconds a client should wait."""

    outcome: Outcome = "rejected"
    retry_after = 1


class NotReady(Unavailable):
    """The model is still being fetched or loaded."""

    retry_after = 5

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' is still loading; retry shortly")


class Draining(Unavailable):
    """SIGTERM arrived: this replica takes no new work, and cuts off what outlives the drain."""

    def __init__(self) -> None:
        super().__init__("This server is shutting down; retry the request")


class EngineDead(Unavailable):
    """The engine failed; the process is exiting so that Kubernetes restarts it."""

    retry_after = 5

    def __init__(self) -> None:
        super().__init__("The inference engine failed and is restarting; retry shortly")


class Overloaded(Unavailable):
    """Every running and queued place is taken."""


class RequestTimedOut(ServingError):
    """The request passed its deadline (queueing included) and was aborted."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"The request did not finish within this server's {timeout_s:g} s limit")
        self.timeout_s = timeout_s


class GenerationFailed(ServingError):
    """The engine failed on an accepted request; the message carries no internals."""

    def __init__(self) -> None:
        super().__init__("the engine failed while generating; see server logs")
