"""Turn a stream of token byte pieces into safe text deltas, honouring stop strings.

Two things make naive per-token decoding wrong:
- a UTF-8 character can be split across tokens, so a piece may end mid-character;
- a stop sequence can span tokens, so text that might be the start of a stop
  sequence must be held back until it is known not to be one, and the stop
  sequence itself is never sent.
"""

from __future__ import annotations

import codecs


class StopTextStream:
    """Feed byte pieces, get the text that is safe to send so far."""

    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._longest_stop = max((len(s) for s in self._stop), default=0)
        self._pending = ""  # decoded text not sent yet (may hold a stop prefix)
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text now safe to send.

        After a stop sequence is found, ``stopped`` is True and later pieces are ignored.
        """
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(piece)
        if not self._stop:
            text, self._pending = self._pending, ""
            return text
        cut = self._earliest_stop(self._pending)
        if cut is not None:
            self.stopped = True
            text, self._pending = self._pending[:cut], ""
            return text
        keep = self._partial_stop_suffix(self._pending)
        split = len(self._pending) - keep
        text, self._pending = self._pending[:split], self._pending[split:]
        return text

    def flush(self) -> str:
        """At the end of generation: everything still held back (no stop matched)."""
        if self.stopped:
            return ""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return text

    def _earliest_stop(self, text: str) -> int | None:
        positions = [i for i in (text.find(s) for s in self._stop) if i >= 0]
        return min(positions) if positions else None

    def _partial_stop_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        for length in range(min(len(text), self._longest_stop - 1), 0, -1):
            suffix = text[-length:]
            if any(s.startswith(suffix) for s in self._stop):
                return length
        return 0
