"""Model URI parsing: schemes, digest pins, redaction, traversal."""

from __future__ import annotations

from pathlib import Path

import pytest

from predictor.cache.errors import CacheError
from predictor.cache.uri import parse_model_uri

DIGEST = "ab" * 32


@pytest.mark.parametrize(
    ("text", "scheme", "remote"),
    [
        ("/models/m.gguf", "", False),
        ("file:///models/m.gguf", "file", False),
        ("pvc://claim/models/m.gguf", "pvc", False),
        ("https://example.com/m.gguf", "https", True),
        ("http://example.com/m.gguf", "http", True),
        ("s3://bucket/m.gguf", "s3", True),
        ("gs://bucket/m.gguf", "gs", True),
        ("hf://HuggingFaceTB/SmolLM2-135M-Instruct", "hf", True),
    ],
)
def test_schemes(text: str, scheme: str, remote: bool):
    uri = parse_model_uri(text)
    assert (uri.scheme, uri.is_remote) == (scheme, remote)


def test_local_paths():
    assert parse_model_uri("file:///models/m.gguf").local_path() == Path("/models/m.gguf")
    assert parse_model_uri("pvc://claim/dir/m.gguf").local_path(Path("/mnt/pvc")) == Path(
        "/mnt/pvc/dir/m.gguf"
    )


def test_a_sha256_fragment_is_the_pin_and_not_part_of_the_key():
    pinned = parse_model_uri(f"https://example.com/m.gguf#sha256={DIGEST.upper()}")
    plain = parse_model_uri("https://example.com/m.gguf")
    assert pinned.expected_sha256 == DIGEST
    assert pinned.key == plain.key


def test_different_uris_or_revisions_get_different_entries():
    keys = {
        parse_model_uri(text).key
        for text in ("hf://org/model", "hf://org/model:v2", "https://example.com/m.gguf")
    }
    assert len(keys) == 3


@pytest.mark.parametrize(
    "fragment", ["#sha256=abc", "#md5=" + "a" * 32, "#sha256=" + "g" * 64, "#anything"]
)
def test_other_fragments_are_refused(fragment: str):
    with pytest.raises(CacheError, match="only #sha256"):
        parse_model_uri("https://example.com/m.gguf" + fragment)


def test_unknown_schemes_are_refused():
    with pytest.raises(CacheError, match="unsupported URI scheme 'ftp://'"):
        parse_model_uri("ftp://example.com/m.gguf")


def test_redaction_drops_credentials_and_query():
    uri = parse_model_uri("https://user:secret@example.com:8443/m.gguf?X-Amz-Signature=s3cr3t")
    assert uri.redacted() == "https://example.com:8443/m.gguf"


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com/a/../../m.gguf",
        "https://example.com/models/..%2fm.gguf",
        "https://example.com/models/%2e%2e",
        "https://example.com/models/a%5cb.gguf",
        "pvc://claim/../etc/passwd",
        "s3://bucket/a/../../b",
        "hf://org/../model",
    ],
)
def test_traversal_is_refused(text: str):
    with pytest.raises(CacheError, match="path traversal refused"):
        parse_model_uri(text)


def test_http_file_names_and_archives():
    assert parse_model_uri("https://h/x/model%20a.gguf").file_name() == "model a.gguf"
    assert parse_model_uri("https://h/").file_name() == "model"
    assert parse_model_uri("https://h/m.tar.gz").is_archive()
    assert not parse_model_uri("s3://b/m.tar.gz").is_archive()
