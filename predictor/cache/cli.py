"""``kzero cache``: warm, list, verify and prune the model cache.

The cache root is ``--cache_dir``, else ``KZERO_CACHE_DIR``, else
``$XDG_CACHE_HOME/kzero`` (``~/.cache/kzero``). In Kubernetes the root is the
model-cache PVC: a warm Job runs ``kzero cache warm`` and the serving pods
mount the same volume read-only.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ByteSize, TypeAdapter, ValidationError

from predictor.cache.config import cache_dir_from_env, max_bytes_from_env
from predictor.cache.errors import CacheError
from predictor.cache.progress import format_bytes
from predictor.cache.store import ModelCache
from predictor.cache.uri import parse_model_uri
from predictor.cli_parsing import ArgumentParser, CommandError, set_run

logger = logging.getLogger("predictor.cache")


def _byte_size(text: str) -> int:
    try:
        return int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a size: use bytes or a unit, e.g. 500MB, 20GiB"
        ) from None


def build_parser(prog: str = "kzero cache") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Fetch models once onto a (shared) volume, verify them, evict the least used.",
    )
    parser.add_argument(
        "--cache_dir",
        type=Path,
        default=None,
        help="Cache root. Default: KZERO_CACHE_DIR, else $XDG_CACHE_HOME/kzero (~/.cache/kzero).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    warm = commands.add_parser(
        "warm",
        help="fetch URIs into the cache (a no-op for ones already complete)",
        description="Fetch each URI into the cache. Accepts paths, file://, pvc://, http(s)://, "
        "s3://, gs:// and hf://, each optionally ending in #sha256=<hex>.",
    )
    set_run(warm, _with_cache(_warm))
    warm.add_argument("uris", nargs="+", metavar="URI")
    warm.add_argument("--force", action="store_true", help="fetch again even when cached")
    warm.add_argument("--max_bytes", type=_byte_size, default=None, help=_BUDGET_HELP)
    set_run(
        commands.add_parser("ls", help="list entries: size, last use, in use or not"),
        _with_cache(_ls),
    )
    verify = commands.add_parser(
        "verify", help="re-hash entries against the digests recorded when they were fetched"
    )
    set_run(verify, _with_cache(_verify))
    verify.add_argument("uris", nargs="*", metavar="URI", help="default: every entry")
    prune = commands.add_parser(
        "prune",
        help="evict least-recently-used entries beyond the budget and abandoned partial fetches",
    )
    set_run(prune, _with_cache(_prune))
    prune.add_argument("--max_bytes", type=_byte_size, default=None, help=_BUDGET_HELP)
    prune.add_argument("--dry_run", action="store_true", help="only show what would go")
    return parser


_BUDGET_HELP = "size budget for the cache, e.g. 20GiB. Default: KZERO_CACHE_MAX_BYTES, else none."


CacheCommand = Callable[[ModelCache, argparse.Namespace], int]


def _with_cache(command: CacheCommand) -> Callable[[argparse.Namespace], int]:
    """The subcommand run on the cache the flags and environment name."""

    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            max_bytes = getattr(args, "max_bytes", None) or max_bytes_from_env()
            root = args.cache_dir or cache_dir_from_env()
            cache = ModelCache(root, max_bytes=max_bytes, progress_bar=sys.stderr.isatty())
            return command(cache, args)
        except CacheError as exc:
            raise CommandError(str(exc), status=1) from exc

    return run


def _warm(cache: ModelCache, args: argparse.Namespace) -> int:
    _require_writable(cache)
    for text in args.uris:
        uri = parse_model_uri(text)
        resolution = cache.ensure(uri, verify=False, force=args.force)
        state = "fetched" if resolution.result == "miss" else "already cached"
        print(f"{state}: {uri.redacted()} -> {resolution.path}")
    return 0


def _ls(cache: ModelCache, _: argparse.Namespace) -> int:
    entries = cache.entries()
    print(f"{'KEY':12}  {'SIZE':>10}  {'LAST USED (UTC)':19}  {'IN USE':6}  URI")
    for entry in entries:
        used = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.last_used))
        in_use = {True: "yes", False: "no", None: "?"}[cache.in_use(entry.key)]
        print(
            f"{entry.key[:12]}  {format_bytes(entry.total_bytes):>10}  {used}  {in_use:6}  {entry.uri}"
        )
    for path in cache.incomplete():
        print(f"{path.name[:12]:12}  {'-':>10}  {'-':19}  {'-':6}  (incomplete: {path})")
    total = sum(entry.total_bytes for entry in entries)
    budget = f" of {format_bytes(cache.max_bytes)}" if cache.max_bytes else ""
    print(f"{len(entries)} entries, {format_bytes(total)}{budget} in {cache.root}")
    return 0


def _verify(cache: ModelCache, args: argparse.Namespace) -> int:
    if args.uris:
        entries = []
        for text in args.uris:
            uri = parse_model_uri(text)
            entry = cache.lookup(uri)
            if entry is None:
                raise CacheError(f"{uri.redacted()} is not in the cache at {cache.root}")
            entries.append(entry)
    else:
        entries = cache.entries()
    damaged = 0
    for entry in entries:
        problems = cache.verify(entry)
        if problems:
            damaged += 1
            print(f"DAMAGED {entry.uri}: {'; '.join(problems)}")
        else:
            print(f"ok      {entry.uri}")
    print(f"{len(entries)} checked, {damaged} damaged")
    return 1 if damaged else 0


def _prune(cache: ModelCache, args: argparse.Namespace) -> int:
    _require_writable(cache)
    evicted, leftovers = cache.prune(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for entry in evicted:
        print(f"{verb} {entry.uri} ({format_bytes(entry.total_bytes)}, least recently used)")
    for path in leftovers:
        print(f"{verb} {path} (abandoned partial fetch)")
    freed = sum(entry.total_bytes for entry in evicted)
    print(f"{verb} {len(evicted)} entries ({format_bytes(freed)}) and {len(leftovers)} leftovers")
    return 0


def _require_writable(cache: ModelCache) -> None:
    if not cache.writable:
        raise CacheError(f"the cache at {cache.root} is read-only here")
