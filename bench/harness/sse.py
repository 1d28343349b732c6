"""The OpenAI stream as a client reads it: Server-Sent Events, one JSON object each, then ``[DONE]``.

Framing follows the HTML standard's event-stream rules (``data:`` lines gather
until a blank line; ``:`` starts a comment; one space after the colon is
dropped; an event cut off before its blank line is not an event), so a server
that frames events differently fails here rather than passing by luck.

Every reader in the benchmarks and the tests goes through ``events`` or
``aevents``; ``StreamTally`` accounts for what one stream carried and when.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# The last event of an OpenAI stream: not JSON.
DONE = "[DONE]"

# A decoded event: a JSON object, or DONE.
Event = dict[str, Any] | str


class _Framer:
    """Lines in, complete event payloads out."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                return None
            payload, self._data = "\n".join(self._data), []
            return payload
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" ") if colon else "")
        # event:, id: and retry: are not used by OpenAI streams.
        return None


def decode(payload: str) -> Event:
    """DONE, or the JSON object the payload holds; ValueError for anything else."""
    if payload == DONE:
        return DONE
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise ValueError(f"an event must be a JSON object, got {type(event).__name__}")
    return event


def events(lines: Iterable[str]) -> Iterator[Event]:
    framer = _Framer()
    for line in lines:
        payload = framer.feed(line)
        if payload is not None:
            yield decode(payload)


async def aevents(lines: AsyncIterable[str]) -> AsyncIterator[Event]:
    framer = _Framer()
    async for line in lines:
        payload = framer.feed(line)
        if payload is not None:
            yield decode(payload)


def content(event: Event) -> str:
    """The text the event's first choice adds: ``text`` (completions) or ``delta.content`` (chat)."""
    if event == DONE:
        return ""
    assert isinstance(event, dict)
    choices = event.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    if "delta" in choice:
        return choice["delta"].get("content") or ""
    return choice.get("text") or ""


def finish_reason(event: Event) -> str | None:
    if not isinstance(event, dict):
        return None
    choices = event.get("choices") or []
    return choices[0].get("finish_reason") if choices else None


@dataclass
class StreamTally:
    """What one stream has carried so far, timed with ``time.perf_counter``.

    ``ttft_s`` counts from ``started``; ``gaps_s`` are the times between
    consecutive content events (inter-token latencies when each event carries
    one token). An in-band error event is kept (the first one) and the stream
    is still read: the server owes ``[DONE]`` after it.
    """

    started: float = field(default_factory=time.perf_counter)
    events: list[Event] = field(default_factory=list)
    ttft_s: float | None = None
    content_events: int = 0
    gaps_s: list[float] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    error: dict[str, Any] | None = None
    done: bool = False
    _last_content_at: float | None = None

    def add(self, event: Event) -> None:
        self.events.append(event)
        if event == DONE:
            self.done = True
            return
        assert isinstance(event, dict)
        if "error" in event:
            self.error = self.error or event["error"]
            return
        if event.get("usage"):
            self.usage = event["usage"]
        if content(event):
            now = time.perf_counter()
            self.content_events += 1
            if self._last_content_at is None:
                self.ttft_s = now - self.started
            else:
                self.gaps_s.append(now - self._last_content_at)
            self._last_content_at = now
        self.finish_reason = finish_reason(event) or self.finish_reason

    @property
    def text(self) -> str:
        return "".join(content(event) for event in self.events)

    @property
    def complete(self) -> bool:
        """Ended with ``[DONE]``, a finish_reason and no error event."""
        return self.done and self.finish_reason is not None and self.error is None
