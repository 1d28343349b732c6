"""Shared prefixes survive a restart: one server saves, the next restores, bad files are ignored.

Real servers with the bundled model, real HTTP, a real prefix directory. The
first server answers two chats that share a long system prompt, which saves
that prefix; its first answer, given with nothing to reuse, is the reference
every later server must match token for token. A server started on the saved
file must skip the prefix's prefill (``cached_tokens``, the ``disk`` counter)
and answer exactly alike; one started on a damaged copy must start, say what
was wrong, count it, and answer exactly like the fresh server.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.harness.metrics import Samples, scrape, value
from bench.harness.process import PredictorProcess
from predictor.backends.llamacpp_engine import PERSIST_MIN_TOKENS
from predictor.backends.prefix_store import FILE_RESULTS, SUFFIX
from tests.unit.prefix_files import PrefixFile, llama_layer_count_offset, read_only_view

pytestmark = pytest.mark.integration

NAME = "persist"
MAX_TOKENS = 24
SAVE_TIMEOUT_S = 30.0
# About 600 tokens, shared by every request here.
SYSTEM = (
    "You are the assistant of a small bakery. Keep every answer short and friendly. "
    + " ".join(
        f"Rule {n}: when asked about loaf number {n}, say it is baked fresh each morning."
        for n in range(1, 36)
    )
)
# Different first words, so that the saved prefix ends where the user's turn starts.
REFERENCE_QUESTION = "Which bread keeps longest?"
OTHER_QUESTION = "Why does dough rise?"


@dataclass(frozen=True)
class Answer:
    content: str
    completion_tokens: int
    finish_reason: str
    cached_tokens: int

    def same_text(self, other: Answer) -> bool:
        return (self.content, self.completion_tokens, self.finish_reason) == (
            other.content,
            other.completion_tokens,
            other.finish_reason,
        )


def ask(server: PredictorProcess, question: str) -> Answer:
    body = {
        "model": NAME,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
        ],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    payload = response.json()
    choice, usage = payload["choices"][0], payload["usage"]
    return Answer(
        content=choice["message"]["content"],
        completion_tokens=usage["completion_tokens"],
        finish_reason=choice["finish_reason"],
        cached_tokens=usage["prompt_tokens_details"]["cached_tokens"],
    )


def serve(directory: Path, *extra: str) -> PredictorProcess:
    server = PredictorProcess(
        ["--model_name", NAME, "--prefix_cache_dir", str(directory), *extra], name="persist"
    )
    try:
        server.wait_ready(NAME)
    except BaseException:
        server.stop()
        raise
    return server


def file_results(samples: Samples) -> dict[str, float]:
    """kzero_prefix_cache_files_total by result."""
    return {
        result: value(samples, "kzero_prefix_cache_files_total", model_name=NAME, result=result)
        for result in FILE_RESULTS
    }


def only(results: dict[str, float], **expected: float) -> dict[str, float]:
    """Every result at 0 but ``expected``: what ``file_results`` should read."""
    return {result: expected.get(result, 0.0) for result in results}


def cached_from(samples: Samples, source: str) -> float:
    return value(samples, "kzero_prompt_tokens_cached_total", model_name=NAME, source=source)


@dataclass(frozen=True)
class Saved:
    """What the first server left: its prefix file, and its answers and counts."""

    directory: Path
    name: str
    data: bytes
    reference: Answer  # the answer with nothing to reuse
    second: Answer
    files: dict[str, float]  # kzero_prefix_cache_files_total before it stopped
    log: str
    listing: list[str]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    directory = tmp_path_factory.mktemp("prefixes")
    with serve(directory) as server:
        reference = ask(server, REFERENCE_QUESTION)
        second = ask(server, OTHER_QUESTION)  # shares the system prompt: saved, in the background
        deadline = time.monotonic() + SAVE_TIMEOUT_S
        files = file_results(scrape(server.url))
        while files["saved"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            files = file_results(scrape(server.url))
        prefix_files = sorted(directory.glob(f"*{SUFFIX}"))  # there before the server stops
    assert len(prefix_files) == 1, (prefix_files, server.log()[-3000:])
    return Saved(
        directory=directory,
        name=prefix_files[0].name,
        data=prefix_files[0].read_bytes(),
        reference=reference,
        second=second,
        files=files,
        log=server.log(),
        listing=sorted(path.name for path in directory.iterdir()),
    )


def directory_holding(root: Path, name: str, data: bytes) -> Path:
    directory = root / "prefixes"
    directory.mkdir()
    (directory / name).write_bytes(data)
    return directory


def test_a_prefix_two_chats_shared_is_saved_before_the_server_stops(saved: Saved):
    assert saved.reference.cached_tokens == 0  # a fresh server: the reference
    assert saved.second.cached_tokens >= PERSIST_MIN_TOKENS
    assert saved.files == only(saved.files, saved=1)
    prefix = PrefixFile(saved.data)
    # The saved prefix is what the two prompts shared, and every cell of it.
    assert prefix.header["n_tokens"] == saved.second.cached_tokens
    assert struct.unpack_from("<I", prefix.block)[0] == saved.second.cached_tokens
    assert f"saved a {saved.second.cached_tokens}-token prefix" in saved.log
    # Nothing else left behind: no temporary file, no probe.
    assert [n for n in saved.listing if n != ".lock" and not n.startswith(".digest-")] == [
        saved.name
    ]


def test_a_new_server_restores_the_prefix_and_answers_like_a_fresh_one(saved: Saved):
    # The same volume, as after a scale to zero, on a pod with another number of
    # sequences than the first's default (an even number): the block is rebuilt for 3 streams.
    with serve(saved.directory, "--max_running_requests", "3") as server:
        before = scrape(server.url)
        answer = ask(server, REFERENCE_QUESTION)
        after = scrape(server.url)
    n_tokens = PrefixFile(saved.data).header["n_tokens"]
    assert file_results(before) == only(file_results(before), restored=1)
    assert answer.cached_tokens == n_tokens
    assert cached_from(after, "disk") - cached_from(before, "disk") == answer.cached_tokens
    assert cached_from(after, "memory") == cached_from(after, "copy") == 0
    assert answer.same_text(saved.reference), (answer, saved.reference)
    assert f"restored a {n_tokens}-token prefix" in server.log()
    assert [p.name for p in saved.directory.glob(f"*{SUFFIX}")] == [saved.name]


def flipped_in_block(prefix: PrefixFile) -> bytes:
    return prefix.flipped(prefix.block_start + len(prefix.block) // 2)


def truncated(prefix: PrefixFile) -> bytes:
    return prefix.data[: prefix.block_start + len(prefix.block) // 3]


def another_model(prefix: PrefixFile) -> bytes:
    return prefix.with_key(model_sha256="0" * 64)


def another_llama_cpp_python(prefix: PrefixFile) -> bytes:
    return prefix.with_key(llama_cpp_python="0.0.1")


def wrong_layer_count(prefix: PrefixFile) -> bytes:
    """A sound file (lengths, checksum) whose llama.cpp block claims one layer too few."""
    block = bytearray(prefix.block)
    offset = llama_layer_count_offset(prefix.block)
    (layers,) = struct.unpack_from("<I", block, offset)
    assert layers == 30, layers  # SmolLM2-135M's layer count: the block was read right
    struct.pack_into("<I", block, offset, layers - 1)
    return prefix.with_block(bytes(block))


DAMAGED: dict[str, tuple[Callable[[PrefixFile], bytes], str, str]] = {
    "a flipped byte in the KV block": (flipped_in_block, "corrupt", "checksum mismatch"),
    "truncated in the KV block": (truncated, "corrupt", "(truncated?)"),
    "a header for another model": (another_model, "foreign", "saved for another model"),
    "a header for another llama-cpp-python": (
        another_llama_cpp_python,
        "foreign",
        "saved for another model",
    ),
    "a block llama.cpp refuses": (wrong_layer_count, "rejected", "llama.cpp refused"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_server_on_a_damaged_prefix_file_starts_and_answers_like_a_fresh_one(
    saved: Saved, tmp_path: Path, case: str
):
    damage, result, line = DAMAGED[case]
    directory = directory_holding(tmp_path, saved.name, damage(PrefixFile(saved.data)))
    with serve(directory) as server:
        files = file_results(scrape(server.url))
        answer = ask(server, REFERENCE_QUESTION)
    assert files == only(files, **{result: 1})
    assert answer.cached_tokens == 0
    assert answer.same_text(saved.reference), (answer, saved.reference)
    assert any(line in entry and "prefix cache" in entry for entry in server.log().splitlines())


def test_a_read_only_prefix_directory_is_restored_from_and_never_written(
    saved: Saved, tmp_path: Path
):
    directory = directory_holding(tmp_path, saved.name, saved.data)
    before = listing(directory)
    with read_only_view(directory, tmp_path / "read-only") as read_only:
        with serve(read_only) as server:
            first = ask(server, REFERENCE_QUESTION)
            second = ask(server, OTHER_QUESTION)  # would save the shared prefix if it could
            files = file_results(scrape(server.url))
        assert listing(read_only) == before
    assert listing(directory) == before  # no lock, probe, memo or mtime change either
    assert files == only(files, restored=1)
    assert first.cached_tokens == PrefixFile(saved.data).header["n_tokens"]
    assert first.same_text(saved.reference)
    assert second.same_text(saved.second)
    assert "could not save" not in server.log()


def listing(directory: Path) -> list[tuple[str, int, int]]:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir())
