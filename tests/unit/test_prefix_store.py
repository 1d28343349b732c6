"""The prefix store without a model: its file format, its checks, eviction, locking, mounts.

Blocks here are synthetic bytes: the store never looks inside one (llama.cpp
does, see tests/integration/test_prefix_persistence.py). Every bad file must
come back as nothing, with one event saying which kind of bad it was.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from predictor.backends.prefix_store import (
    CORRUPT,
    EVICTED,
    FOREIGN,
    SAVED,
    SUFFIX,
    PrefixKey,
    PrefixStore,
    StoredPrefix,
    model_digest,
    state_block,
    state_payload,
    tokens_digest,
)
from predictor.cache.locks import exclusive
from tests.unit.prefix_files import PREAMBLE, PrefixFile, read_only_view

KEY = PrefixKey(
    model_sha256="ab" * 32,
    llama_cpp_python="0.3.36",
    system_info="CPU : AVX2 = 1 | FMA = 1 |",
    type_k=1,
    type_v=1,
    flash_attn_type=0,
)
BUDGET = 1 << 20
LLAMA_STATE_MAGIC = 0xAF143CD8
EMPTY_STREAM = struct.pack("<I", 0)


def tokens_for(seed: int, count: int = 96) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1, 49152) for _ in range(count)]


def block_for(seed: int, size: int = 4096) -> bytes:
    """A stand-in for llama.cpp's stream block: a non-zero cell count, then bytes."""
    return struct.pack("<I", 96) + random.Random(seed).randbytes(size - 4)


TOKENS = tokens_for(1)
BLOCK = block_for(1)


Events = list[str]  # what a store reported through ``on_event``, in order


def open_store(
    directory: Path, key: PrefixKey = KEY, *, max_bytes: int = BUDGET
) -> tuple[PrefixStore, Events]:
    events: Events = []
    return PrefixStore(directory, key, max_bytes=max_bytes, on_event=events.append), events


def save_now(store: PrefixStore, tokens: list[int], block: bytes) -> None:
    """Save and wait for the background writer."""
    store.save(tokens, block)
    store.close()


def file_name(tokens: list[int], key: PrefixKey = KEY) -> str:
    return f"{key.fingerprint()[:16]}-{tokens_digest(tokens)[:40]}{SUFFIX}"


def saved_file(directory: Path, tokens: list[int] = TOKENS, block: bytes = BLOCK) -> Path:
    """The file a store saved for ``tokens`` in ``directory``."""
    store, events = open_store(directory)
    save_now(store, tokens, block)
    assert events == [SAVED]
    path = directory / file_name(tokens)
    assert path.is_file()
    return path


def prefix_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def leftovers(directory: Path) -> list[str]:
    """Files other than prefix files, the lock and digest memos: temporary files, probes."""
    return sorted(
        path.name
        for path in directory.iterdir()
        if path.suffix != SUFFIX and path.name != ".lock" and not path.name.startswith(".digest-")
    )


# ---- round trip ---------------------------------------------------------


def test_a_saved_prefix_loads_back_with_its_tokens_and_block(tmp_path: Path):
    path = saved_file(tmp_path)
    assert prefix_files(tmp_path) == [path]
    assert leftovers(tmp_path) == []

    reader, events = open_store(tmp_path)
    (prefix,) = reader.load_recent(4)
    assert (prefix.path, prefix.tokens, prefix.block) == (path, TOKENS, BLOCK)
    assert events == []  # restored is the engine's to report, once llama.cpp took it
    assert not reader.wants(TOKENS)  # on disk already: never saved twice
    assert reader.wants(tokens_for(2))


def test_a_store_saves_one_prefix_once(tmp_path: Path):
    store, events = open_store(tmp_path)
    store.save(TOKENS, BLOCK)
    store.save(TOKENS, BLOCK)
    store.close()
    assert events == [SAVED]
    assert len(prefix_files(tmp_path)) == 1


def test_the_most_recently_used_prefixes_load_first_up_to_the_limit(tmp_path: Path):
    paths = [saved_file(tmp_path / "d", tokens_for(seed), block_for(seed)) for seed in range(3)]
    for path, mtime in zip(paths, (1_000, 2_000, 3_000), strict=True):  # paths[2] newest
        os.utime(path, (mtime, mtime))
    reader, events = open_store(tmp_path / "d")
    loaded = reader.load_recent(2)
    assert [p.path for p in loaded] == [paths[2], paths[1]]
    assert events == []


def test_touch_marks_a_restored_file_as_just_used(tmp_path: Path):
    path = saved_file(tmp_path)
    os.utime(path, (1_000_000, 1_000_000))
    reader, _ = open_store(tmp_path)
    (prefix,) = reader.load_recent(1)
    reader.touch(prefix)
    assert path.stat().st_mtime > time.time() - 60


# ---- llama.cpp's sequence state envelope ---------------------------------


def envelope(seq_id: int, streams: list[bytes]) -> bytes:
    """A sequence state as llama.cpp writes it: magic, seq id, stream count, streams."""
    header = struct.pack("<IiI", LLAMA_STATE_MAGIC, seq_id, len(streams))
    return header + b"".join(streams)


@pytest.mark.parametrize(("seq_id", "n_stream"), [(0, 1), (0, 4), (2, 4), (3, 4), (7, 8)])
def test_a_sequences_stream_block_is_cut_out_and_rebuilt_for_any_stream_count(
    seq_id: int, n_stream: int
):
    streams = [EMPTY_STREAM] * n_stream
    streams[seq_id] = BLOCK
    assert state_block(envelope(seq_id, streams), seq_id) == BLOCK
    for other in (1, 3, 8):  # a pod with another number of sequences restores it
        payload = state_payload(BLOCK, other)
        assert payload == envelope(0, [BLOCK] + [EMPTY_STREAM] * (other - 1))
        assert state_block(payload, 0) == BLOCK


def refused_states() -> dict[str, tuple[bytes, int]]:
    """States ``state_block`` must refuse. It reads no block's inside, so trailing
    bytes ending in a uint32 0 are indistinguishable from a block that ends so
    followed by an empty stream; llama.cpp's own check catches those at restore."""
    good = [EMPTY_STREAM, BLOCK, EMPTY_STREAM]
    return {
        "two non-empty streams": (envelope(1, [BLOCK, BLOCK, EMPTY_STREAM]), 1),
        "another stream non-empty": (envelope(1, [BLOCK, EMPTY_STREAM, EMPTY_STREAM]), 1),
        "the sequence's own stream empty": (envelope(1, [EMPTY_STREAM] * 3), 1),
        "a later stream non-empty": (envelope(1, [EMPTY_STREAM, BLOCK, BLOCK]), 1),
        "trailing data": (envelope(1, good) + b"\x01", 1),
        "wrong magic": (struct.pack("<IiI", 0xDEADBEEF, 1, 3) + b"".join(good), 1),
        "seq id beyond the stream count": (envelope(3, good), 3),
        "negative seq id": (envelope(1, good), -1),
        "shorter than the envelope": (struct.pack("<Ii", LLAMA_STATE_MAGIC, 0), 0),
        "no stream at all": (envelope(0, []), 0),
    }


@pytest.mark.parametrize("case", sorted(refused_states()))
def test_a_state_of_another_shape_is_not_saved(case: str):
    payload, seq_id = refused_states()[case]
    assert state_block(payload, seq_id) is None


# ---- bad files: ignored, counted, never returned ----------------------------


def load_only(directory: Path) -> tuple[list[StoredPrefix], Events]:
    reader, events = open_store(directory)
    return list(reader.load_recent(4)), events


def damage(
    tmp_path: Path, make_bad: Callable[[PrefixFile], bytes]
) -> tuple[list[StoredPrefix], Events, Path]:
    path = saved_file(tmp_path)
    path.write_bytes(make_bad(PrefixFile(path.read_bytes())))
    found, events = load_only(tmp_path)
    return found, events, path


DAMAGES = {
    "a flipped byte in the block": (lambda f: f.flipped(f.block_start + 100), CORRUPT),
    "a flipped last byte": (lambda f: f.flipped(len(f.data) - 1), CORRUPT),
    "a flipped byte in the tokens": (lambda f: f.flipped(f.body_start + 5), CORRUPT),
    "a flipped byte in the magic": (lambda f: f.flipped(2), CORRUPT),
    "a flipped byte in the header length": (lambda f: f.flipped(13), CORRUPT),
    "a flipped header brace": (lambda f: f.flipped(f.header_start), CORRUPT),
    "a flipped byte in the header checksum": (
        lambda f: f.flipped(f.data.index(b'"sha256": "') + 12),
        CORRUPT,
    ),
    "a flipped byte in the header token count": (
        lambda f: f.flipped(f.data.index(b'"n_tokens": ') + 12),
        CORRUPT,
    ),
    "a flipped byte in the header key": (
        lambda f: f.flipped(f.data.index(b'"model_sha256": "') + 20),
        CORRUPT,  # not UTF-8 any more
    ),
    # One bit that keeps the JSON valid reads as another model's file: ignored all the same.
    "a flipped bit in the header key": (
        lambda f: f.flipped(f.data.index(b'"model_sha256": "') + 20, mask=0x01),
        FOREIGN,
    ),
    "wrong magic": (lambda f: b"NOTKZERO" + f.data[8:], CORRUPT),
    "another format version": (lambda f: f.with_version(f.version + 1), FOREIGN),
    "a header for another model": (lambda f: f.with_key(model_sha256="cd" * 32), FOREIGN),
    "a header for another llama-cpp-python": (
        lambda f: f.with_key(llama_cpp_python="0.3.99"),
        FOREIGN,
    ),
    "a header for other CPU kernels": (
        lambda f: f.with_key(system_info="CPU : NEON = 1 |"),
        FOREIGN,
    ),
    "a header for another KV type": (lambda f: f.with_key(type_k=8), FOREIGN),
    "a header that is not JSON": (
        lambda f: (
            f.data[: f.header_start]
            + b"x" * (f.body_start - f.header_start)
            + f.data[f.body_start :]
        ),
        CORRUPT,
    ),
    "a header without the checksum": (
        lambda f: f.with_header({k: v for k, v in f.header.items() if k != "sha256"}),
        CORRUPT,
    ),
    "a header claiming no tokens": (lambda f: f.with_header(f.header | {"n_tokens": 0}), CORRUPT),
    "a header with a text length": (
        lambda f: f.with_header(f.header | {"block_bytes": str(f.header["block_bytes"])}),
        CORRUPT,
    ),
    "a header nested too deep for the JSON parser": (
        lambda f: PREAMBLE.pack(b"KZPREFIX", 1, 60_000) + b"[" * 60_000 + f.data[f.body_start :],
        CORRUPT,
    ),
    "a header that is a list": (lambda f: f.with_header([]), CORRUPT),  # type: ignore[arg-type]
    "bytes appended": (lambda f: f.data + b"\x00", CORRUPT),
}


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_a_damaged_file_is_ignored_and_counted(tmp_path: Path, case: str):
    make_bad, result = DAMAGES[case]
    found, events, path = damage(tmp_path, make_bad)
    assert found == []
    assert events == [result]
    assert path.exists()  # ignored, not deleted: eviction will take it in time


def test_truncated_files_are_ignored_at_every_cut(tmp_path: Path):
    path = saved_file(tmp_path)
    good = PrefixFile(path.read_bytes())
    cuts = {
        0,
        5,
        PREAMBLE.size,
        PREAMBLE.size + 10,
        good.body_start - 1,
        good.body_start,
        good.body_start + 7,
        good.block_start,
        good.block_start + 1000,
        len(good.data) - 1,
    }
    for cut in sorted(cuts):
        path.write_bytes(good.data[:cut])
        found, events = load_only(tmp_path)
        assert (found, events) == ([], [CORRUPT]), cut


def test_a_file_whose_tokens_do_not_match_its_name_is_ignored(tmp_path: Path):
    path = saved_file(tmp_path)
    other = saved_file(tmp_path / "other", tokens_for(2))
    path.unlink()
    other.rename(path)  # a sound file under the name of other tokens
    found, events = load_only(tmp_path)
    assert (found, events) == ([], [CORRUPT])


def test_a_valid_checksum_over_impossible_lengths_is_ignored(tmp_path: Path):
    """A file with a sound checksum whose header claims a negative block: no tokens can
    be read from it, and the server must still start."""
    path = saved_file(tmp_path)
    good = PrefixFile(path.read_bytes())
    header = good.header | {
        "block_bytes": -4 * good.header["n_tokens"],  # lengths that add up to no body
        "sha256": hashlib.sha256(b"").hexdigest(),
    }
    crafted = PrefixFile(good.with_header(header))
    path.write_bytes(crafted.data[: crafted.body_start])
    found, events = load_only(tmp_path)
    assert (found, events) == ([], [CORRUPT])


def test_a_directory_named_like_a_prefix_file_is_ignored(tmp_path: Path):
    path = saved_file(tmp_path)
    path.unlink()
    path.mkdir()
    found, events = load_only(tmp_path)
    assert (found, events) == ([], [CORRUPT])


def test_another_models_files_are_counted_foreign_and_left_alone(tmp_path: Path):
    other_key = replace(KEY, model_sha256="cd" * 32)
    theirs, _ = open_store(tmp_path, other_key)
    save_now(theirs, TOKENS, BLOCK)
    ours = saved_file(tmp_path / "ours")
    ours.rename(tmp_path / ours.name)
    before = {path.name: path.read_bytes() for path in prefix_files(tmp_path)}

    reader, events = open_store(tmp_path)
    (prefix,) = reader.load_recent(4)
    assert prefix.path.name == ours.name
    assert events == [FOREIGN]
    assert {path.name: path.read_bytes() for path in prefix_files(tmp_path)} == before
    owner, owner_events = open_store(tmp_path, other_key)
    assert [p.tokens for p in owner.load_recent(4)] == [TOKENS]  # still theirs, intact
    assert owner_events == [FOREIGN]  # ours, from their side


def test_a_bad_file_does_not_hide_the_good_ones(tmp_path: Path):
    good = saved_file(tmp_path, tokens_for(1))
    bad = saved_file(tmp_path / "bad", tokens_for(2))
    bad = bad.rename(tmp_path / bad.name)
    bad.write_bytes(PrefixFile(bad.read_bytes()).flipped(bad.stat().st_size - 1))
    os.utime(good, (1_000_000, 1_000_000))  # the bad one is the most recent
    found, events = load_only(tmp_path)
    assert [prefix.path for prefix in found] == [good]
    assert events == [CORRUPT]


# ---- the size budget --------------------------------------------------------


def test_the_budget_evicts_the_least_recently_used_files_first(tmp_path: Path):
    sizes = []
    paths = []
    for seed in range(3):
        paths.append(saved_file(tmp_path / "d", tokens_for(seed), block_for(seed)))
        sizes.append(paths[-1].stat().st_size)
    # Least recently used first: 1, then 0, then 2.
    for path, mtime in zip(paths, (2_000, 1_000, 3_000), strict=True):
        os.utime(path, (mtime, mtime))
    # Room for exactly two files besides the new one: the oldest goes, then the next.
    store, events = open_store(tmp_path / "d", max_bytes=sizes[0] * 3)
    save_now(store, tokens_for(3), block_for(3))
    assert events == [EVICTED, SAVED]
    assert not paths[1].exists() and paths[0].exists() and paths[2].exists()

    store, events = open_store(tmp_path / "d", max_bytes=sizes[0] * 2)
    save_now(store, tokens_for(4), block_for(4))
    assert events == [EVICTED, EVICTED, SAVED]
    assert not paths[0].exists() and not paths[2].exists()
    assert len(prefix_files(tmp_path / "d")) == 2
    assert leftovers(tmp_path / "d") == []


def test_the_budget_counts_other_models_files_too(tmp_path: Path):
    theirs, _ = open_store(tmp_path, replace(KEY, model_sha256="cd" * 32))
    save_now(theirs, TOKENS, BLOCK)
    (their_file,) = prefix_files(tmp_path)
    os.utime(their_file, (1_000, 1_000))
    store, events = open_store(tmp_path, max_bytes=their_file.stat().st_size + 100)
    save_now(store, TOKENS, BLOCK)
    assert events == [EVICTED, SAVED]
    assert not their_file.exists()


def test_a_prefix_larger_than_the_whole_budget_is_not_written(tmp_path: Path):
    kept = saved_file(tmp_path)
    store, events = open_store(tmp_path, max_bytes=kept.stat().st_size + 10)
    save_now(store, tokens_for(2), block_for(2, size=64 << 10))
    assert events == []  # neither saved nor failed, and nothing evicted for it
    assert prefix_files(tmp_path) == [kept]
    assert leftovers(tmp_path) == []


def test_a_zero_budget_store_only_reads(tmp_path: Path):
    saved_file(tmp_path)
    store, _ = open_store(tmp_path, max_bytes=0)
    assert not store.writable
    assert len(store.load_recent(4)) == 1
    assert not store.wants(tokens_for(2))


# ---- concurrent writers ------------------------------------------------------

# Run from the repository root: saves the same prefixes as the test, once told to go.
WRITER = """
import sys
from pathlib import Path
from predictor.backends.prefix_store import PrefixStore
from tests.unit import test_prefix_store as t
store = PrefixStore(Path(sys.argv[1]), t.KEY, max_bytes=t.BUDGET * 64)
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
for seed in range(int(sys.argv[2])):
    store.save(t.tokens_for(seed), t.block_for(seed, size=256 << 10))
store.close()
"""


def assert_one_intact_file_per_prefix(directory: Path, count: int) -> None:
    reader, events = open_store(directory, max_bytes=BUDGET * 64)
    loaded = reader.load_recent(count + 10)
    assert events == []
    assert sorted(tokens_digest(p.tokens) for p in loaded) == sorted(
        tokens_digest(tokens_for(seed)) for seed in range(count)
    )
    for prefix in loaded:
        seed = next(s for s in range(count) if tokens_for(s) == prefix.tokens)
        assert prefix.block == block_for(seed, size=256 << 10)
    assert leftovers(directory) == []


def test_two_stores_saving_the_same_prefixes_at_once_leave_one_intact_file_each(
    tmp_path: Path,
):
    count = 12
    stores = [open_store(tmp_path, max_bytes=BUDGET * 64) for _ in range(2)]
    start = threading.Barrier(2)

    def save_all(store: PrefixStore) -> None:
        start.wait()
        for seed in range(count):
            store.save(tokens_for(seed), block_for(seed, size=256 << 10))
        store.close()

    threads = [threading.Thread(target=save_all, args=(store,)) for store, _ in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(events.count(SAVED) for _, events in stores) == count
    assert all(set(events) <= {SAVED} for _, events in stores)
    assert_one_intact_file_per_prefix(tmp_path, count)


def test_a_store_in_another_process_saving_the_same_prefixes_leaves_one_file_each(
    tmp_path: Path,
):
    count = 12
    root = Path(__file__).resolve().parents[2]
    other = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), str(count)],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None and other.stdin is not None
    assert other.stdout.readline() == "ready\n"
    store, events = open_store(tmp_path, max_bytes=BUDGET * 64)
    other.stdin.write("go\n")
    other.stdin.flush()
    for seed in range(count):
        store.save(tokens_for(seed), block_for(seed, size=256 << 10))
    store.close()
    assert other.wait(timeout=60) == 0
    assert set(events) <= {SAVED}
    assert_one_intact_file_per_prefix(tmp_path, count)


def test_a_save_waits_for_the_directory_lock(tmp_path: Path):
    store, events = open_store(tmp_path)
    with exclusive(tmp_path / ".lock", timeout_s=5):
        store.save(TOKENS, BLOCK)
        time.sleep(0.5)
        assert prefix_files(tmp_path) == [] and leftovers(tmp_path) == []
    store.close()
    assert events == [SAVED]
    assert len(prefix_files(tmp_path)) == 1


# ---- a read-only directory -----------------------------------------------------


def test_a_read_only_directory_is_only_read(tmp_path: Path):
    path = saved_file(tmp_path / "volume")
    os.utime(path, (1_000_000, 1_000_000))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "volume").iterdir())
    with read_only_view(tmp_path / "volume", tmp_path / "ro") as read_only:
        with pytest.raises(OSError, match="Read-only file system"):
            (read_only / "probe").write_bytes(b"")  # root itself cannot write here
        store, events = open_store(read_only)
        assert not store.writable
        (prefix,) = store.load_recent(4)
        assert prefix.tokens == TOKENS
        store.touch(prefix)
        store.save(tokens_for(2), block_for(2))
        store.close()
        assert events == []  # no save, and no save_failed either: it never tried
        assert model_digest(path, read_only) == hashlib.sha256(path.read_bytes()).hexdigest()
    after = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "volume").iterdir())
    assert after == before


# ---- the model digest memo -------------------------------------------------------


def test_the_model_digest_is_remembered_while_the_file_is_unchanged(tmp_path: Path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"weights" * 1000)
    memo_dir = tmp_path / "prefixes"
    memo_dir.mkdir()
    real = hashlib.sha256(model.read_bytes()).hexdigest()
    assert model_digest(model, memo_dir) == real
    (memo,) = memo_dir.glob(".digest-*")
    assert memo.read_text() == real

    planted = "0" * 64
    memo.write_text(planted)
    assert model_digest(model, memo_dir) == planted  # the stat matches: not hashed again

    stat = model.stat()
    model.write_bytes(b"WEIGHTS" * 1000)  # same size, in place: the inode stays
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = hashlib.sha256(model.read_bytes()).hexdigest()
    assert model_digest(model, memo_dir) == changed
    assert model_digest(model, None) == changed


def test_a_damaged_digest_memo_is_recomputed(tmp_path: Path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"weights" * 1000)
    model_digest(model, tmp_path)
    (memo,) = tmp_path.glob(".digest-*")
    memo.write_text("0" * 63)
    assert model_digest(model, tmp_path) == hashlib.sha256(model.read_bytes()).hexdigest()


def test_a_replaced_model_file_is_hashed_again(tmp_path: Path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"weights" * 1000)
    model_digest(model, tmp_path)
    for memo in tmp_path.glob(".digest-*"):
        memo.write_text("0" * 64)
    replacement = tmp_path / "new.gguf"
    replacement.write_bytes(b"other weights")
    replacement.rename(model)  # a new inode and size
    assert model_digest(model, tmp_path) == hashlib.sha256(b"other weights").hexdigest()
