"""The cache store with local sources: entries, markers, eviction, in-use protection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from predictor.cache import locks
from predictor.cache.entry import MARKER
from predictor.cache.errors import CacheError
from predictor.cache.store import ModelCache
from predictor.cache.uri import ModelURI, parse_model_uri


def source(tmp_path: Path, name: str, size: int) -> ModelURI:
    path = tmp_path / "origin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(os.urandom(size))
    return parse_model_uri(f"file://{path}")


def test_a_warmed_entry_is_complete_and_a_second_ensure_is_a_hit(tmp_path: Path):
    cache = ModelCache(tmp_path / "cache")
    uri = source(tmp_path, "m.gguf", 4096)
    first = cache.ensure(uri, verify=True)
    second = cache.ensure(uri, verify=True)
    assert (first.result, second.result) == ("miss", "hit")
    assert first.path == second.path
    assert first.path.read_bytes() == uri.local_path().read_bytes()
    assert first.downloaded_bytes == 4096
    assert set(second.seconds) == {"cache", "verify"}


def test_an_entry_without_its_marker_is_not_served_and_is_replaced(tmp_path: Path):
    cache = ModelCache(tmp_path / "cache")
    uri = source(tmp_path, "m.gguf", 4096)
    resolved = cache.ensure(uri, verify=False)
    (resolved.path.parent / MARKER).unlink()  # as if killed between rename and marker
    assert cache.lookup(uri) is None
    assert cache.incomplete() == [resolved.path.parent]
    again = cache.ensure(uri, verify=False)
    assert again.result == "miss"
    assert cache.incomplete() == []


def test_a_resolve_of_a_local_uri_serves_it_in_place(tmp_path: Path):
    cache = ModelCache(tmp_path / "cache")
    uri = source(tmp_path, "m.gguf", 100)
    resolution = cache.resolve(uri, verify=True)
    assert (resolution.result, resolution.path) == ("local", uri.local_path())
    assert not (tmp_path / "cache").exists()


def test_a_directory_source_keeps_its_layout(tmp_path: Path):
    model = tmp_path / "origin" / "hf-model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "weights.safetensors").write_bytes(b"w" * 10)
    resolution = ModelCache(tmp_path / "cache").ensure(
        parse_model_uri(f"file://{model}"), verify=False
    )
    assert resolution.path.is_dir()
    assert (resolution.path / "sub" / "weights.safetensors").read_bytes() == b"w" * 10


def test_eviction_takes_the_least_recently_used_first(tmp_path: Path):
    cache = ModelCache(tmp_path / "cache", max_bytes=3000)
    a, b, c = (source(tmp_path, f"{n}.gguf", 1000) for n in "abc")
    for uri, age in ((a, 300), (b, 200), (c, 100)):
        path = cache.ensure(uri, verify=False).path.parent
        os.utime(path, (path.stat().st_atime - age, path.stat().st_mtime - age))
    cache.release()
    cache.ensure(a, verify=False)  # a use makes "a" the most recent
    cache.release()
    cache.ensure(source(tmp_path, "d.gguf", 1000), verify=False)
    assert cache.lookup(b) is None
    assert all(cache.lookup(uri) is not None for uri in (a, c))


def test_an_entry_in_use_by_another_process_is_never_evicted(tmp_path: Path):
    root = tmp_path / "cache"
    old = source(tmp_path, "old.gguf", 1000)
    warm_job = ModelCache(root)
    warm_job.ensure(old, verify=False)
    warm_job.release()
    server = ModelCache(root)  # a serving pod: holds the shared use lock
    server.ensure(old, verify=False)
    warmer = ModelCache(root, max_bytes=1500)
    with pytest.raises(CacheError, match="remaining entries are in use"):
        warmer.ensure(source(tmp_path, "new.gguf", 1000), verify=False)
    assert warmer.lookup(old) is not None
    assert warmer.incomplete() == []
    server.release()
    assert warmer.ensure(source(tmp_path, "new.gguf", 1000), verify=False).result == "miss"
    assert warmer.lookup(old) is None


def test_prune_dry_run_shows_what_would_go_and_removes_nothing(tmp_path: Path):
    cache = ModelCache(tmp_path / "cache")
    uris = [source(tmp_path, f"{n}.gguf", 1000) for n in "ab"]
    for uri in uris:
        cache.ensure(uri, verify=False)
    cache.release()
    evicted, _ = cache.prune(max_bytes=1000, dry_run=True)
    assert len(evicted) == 1
    assert all(cache.lookup(uri) is not None for uri in uris)
    evicted_for_real, _ = cache.prune(max_bytes=1000, dry_run=False)
    assert [e.key for e in evicted_for_real] == [e.key for e in evicted]
    assert len(cache.entries()) == 1


def test_prune_removes_abandoned_partial_fetches_but_not_active_ones(tmp_path: Path):
    root = tmp_path / "cache"
    cache = ModelCache(root)
    cache.ensure(source(tmp_path, "a.gguf", 10), verify=False)
    abandoned = root / "tmp" / "deadbeef.x1"
    active = root / "tmp" / "cafef00d.x2"
    for path in (abandoned, active):
        path.mkdir()
        (path / "part").write_bytes(b"p")
    fd = locks.try_exclusive(root / "locks" / "cafef00d.lock")  # a live fetcher
    try:
        _, leftovers = cache.prune(dry_run=False)
    finally:
        assert fd is not None
        os.close(fd)
    assert leftovers == [abandoned]
    assert not abandoned.exists() and active.exists()


def test_a_model_over_the_budget_is_refused_before_anything_is_written(tmp_path: Path):
    cache = ModelCache(tmp_path / "cache", max_bytes=500)
    with pytest.raises(CacheError, match="larger than the cache budget"):
        cache.ensure(source(tmp_path, "big.gguf", 1000), verify=False)
    assert cache.entries() == [] and cache.incomplete() == []


def test_a_damaged_entry_is_fetched_again_on_a_verified_start(tmp_path: Path):
    cache = ModelCache(tmp_path / "cache")
    uri = source(tmp_path, "m.gguf", 4096)
    path = cache.ensure(uri, verify=False).path
    path.write_bytes(b"x" + path.read_bytes()[1:])
    assert cache.verify(cache.lookup(uri)) != []  # type: ignore[arg-type]
    again = cache.ensure(uri, verify=True)
    assert again.result == "miss"
    assert again.path.read_bytes() == uri.local_path().read_bytes()


def test_a_pin_on_a_directory_is_refused(tmp_path: Path):
    model = tmp_path / "dir"
    model.mkdir()
    (model / "a").write_bytes(b"a")
    (model / "b").write_bytes(b"b")
    with pytest.raises(CacheError, match="needs a URI naming one file"):
        ModelCache(tmp_path / "cache").ensure(
            parse_model_uri(f"file://{model}#sha256={'0' * 64}"), verify=False
        )
