"""Model URIs: what may be fetched, from where, and the digest it must have.

Accepted: plain paths, ``file://``, ``pvc://<claim>/<path>`` (a PVC KServe has
already mounted under ``/mnt/pvc``), ``http(s)://``, ``s3://``, ``gs://`` and
``hf://``. A ``#sha256=<hex>`` suffix pins the expected digest of a single-file
model. Anything that could write outside the cache entry (``..`` segments, an
encoded slash in a file name) is refused here, before any I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from predictor.cache.errors import CacheError

# Served in place: the bytes are already on a local or mounted filesystem.
LOCAL_SCHEMES = frozenset({"", "file", "pvc"})
# Fetched into the cache: http(s) by kzero itself, the rest through kserve-storage.
REMOTE_SCHEMES = frozenset({"http", "https", "s3", "gs", "hf"})
# Where KServe's webhook mounts a pvc:// storageUri in the pod.
PVC_MOUNT_ROOT = Path("/mnt/pvc")

_SHA256_FRAGMENT = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


@dataclass(frozen=True)
class ModelURI:
    """A parsed model URI. ``text`` excludes the ``#sha256=`` fragment."""

    text: str
    scheme: str
    expected_sha256: str | None

    @property
    def is_remote(self) -> bool:
        return self.scheme in REMOTE_SCHEMES

    @property
    def key(self) -> str:
        """The cache entry's name: one entry per URI (a revision is part of the URI)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:32]

    def redacted(self) -> str:
        """The URI without credentials or query string, safe to log and to store."""
        if self.scheme in ("", "file", "pvc"):
            return self.text
        parts = urlsplit(self.text)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    def local_path(self, pvc_root: Path = PVC_MOUNT_ROOT) -> Path:
        """Where a local URI's bytes are on this machine."""
        if self.scheme == "":
            return Path(self.text)
        parts = urlsplit(self.text)
        if self.scheme == "file":
            return Path(unquote(parts.netloc + parts.path))
        if self.scheme == "pvc":
            # pvc://<claim>/<path>: KServe mounts the claim itself at /mnt/pvc.
            return pvc_root / unquote(parts.path).lstrip("/")
        raise ValueError(f"{self.redacted()} is not a local URI")

    def file_name(self) -> str:
        """The name a single downloaded file gets inside its entry (http(s) only)."""
        segment = urlsplit(self.text).path.rsplit("/", 1)[-1]
        name = unquote(segment)
        if not name:
            return "model"
        return name

    def is_archive(self) -> bool:
        return self.scheme in ("http", "https") and self.file_name().endswith(_ARCHIVE_SUFFIXES)


def parse_model_uri(text: str) -> ModelURI:
    """Parse and validate; raises ``CacheError`` with the reason."""
    text = text.strip()
    if not text:
        raise CacheError("empty model URI")
    body, _, fragment = text.partition("#")
    expected: str | None = None
    if fragment:
        match = _SHA256_FRAGMENT.match(fragment)
        if match is None:
            raise CacheError(
                f"unsupported URI fragment '#{fragment[:40]}': only #sha256=<64 hex digits> is allowed"
            )
        expected = match.group(1).lower()
    scheme = urlsplit(body).scheme.lower() if "://" in body else ""
    if scheme not in LOCAL_SCHEMES | REMOTE_SCHEMES:
        supported = ", ".join(sorted(f"{s}://" for s in (LOCAL_SCHEMES | REMOTE_SCHEMES) - {""}))
        raise CacheError(f"unsupported URI scheme '{scheme}://': use a path or {supported}")
    uri = ModelURI(text=body, scheme=scheme, expected_sha256=expected)
    _refuse_traversal(uri)
    return uri


def _refuse_traversal(uri: ModelURI) -> None:
    if uri.scheme in ("", "file"):
        return  # the operator's own filesystem: any path they name is theirs to serve
    path = unquote(urlsplit(uri.text).path)
    segments = path.split("/")
    if ".." in segments or "\\" in path or "\x00" in path:
        raise CacheError(f"path traversal refused in URI {uri.redacted()}")
    if uri.scheme in ("http", "https"):
        name = uri.file_name()
        raw_segment = urlsplit(uri.text).path.rsplit("/", 1)[-1].lower()
        if name in (".", "..") or "/" in name or "%2f" in raw_segment or "%5c" in raw_segment:
            raise CacheError(f"path traversal refused in URI {uri.redacted()}")
