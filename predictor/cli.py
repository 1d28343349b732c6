"""The ``kzero`` command: ``kzero serve`` runs the predictor; other subcommands are in ``COMMANDS``.

``python -m predictor`` is ``kzero serve`` (the container entry point). Serve
flags are KServe's own (``--http_port``, ``--workers``...) plus one per field of
``Settings``, each also settable as ``KZERO_<FIELD>``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import types
import typing
from collections.abc import Sequence

from pydantic import ByteSize, ValidationError

from predictor.auth import ApiKeyConfigError
from predictor.backends.base import BackendKind, BackendLoadError
from predictor.cache.errors import CacheError
from predictor.default_model import DefaultModelMissing
from predictor.settings import Settings

logger = logging.getLogger("predictor")

# Secrets come from the environment only: a flag would show in the process list.
ENV_ONLY_SETTINGS = frozenset({"api_key"})


def _strtobool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def _flag_type(annotation: object) -> object:
    """The argparse ``type`` for a Settings field: the non-None member of ``X | None``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is bool:
        return _strtobool
    if annotation is ByteSize:
        return str  # pydantic parses "20GiB"
    if annotation is BackendKind:
        return str  # argparse checks `choices`; pydantic makes the enum
    return annotation


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--<field>`` per Settings field; unset flags fall back to env, then default."""
    for name, field in Settings.model_fields.items():
        if name in ENV_ONLY_SETTINGS:
            continue
        flag_type = _flag_type(field.annotation)
        default = field.default.value if isinstance(field.default, BackendKind) else field.default
        # KServe's flags use underscores, kzero's docs hyphens: both spellings work.
        spellings = dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}"))
        parser.add_argument(
            *spellings,
            dest=name,
            type=flag_type,
            default=None,
            choices=[kind.value for kind in BackendKind]
            if field.annotation is BackendKind
            else None,
            help=f"{field.description} [env KZERO_{name.upper()}; default: {default}]",
        )


def build_serve_parser(prog: str) -> argparse.ArgumentParser:
    # KServe's parser carries --http_port, --workers, --enable_grpc, ...
    from kserve.model_server import parser as kserve_parser

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an LLM with an OpenAI-compatible API inside KServe's model server.",
        parents=[kserve_parser],
        conflict_handler="resolve",
        # No prefixes: "--api_key sk-..." must fail, not be read as --api_key_file.
        allow_abbrev=False,
    )
    add_settings_flags(parser)
    # kzero serves LLMs over HTTP only; KServe's gRPC v2 has no generation API.
    parser.set_defaults(enable_grpc=False)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    return Settings(**given)


def configure_logging() -> None:
    from kserve.logging import KSERVE_LOGGER_DATE_FORMAT, KSERVE_LOGGER_FORMAT

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(KSERVE_LOGGER_FORMAT, KSERVE_LOGGER_DATE_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve_main(argv: Sequence[str], prog: str = "kzero serve") -> int:
    args = build_serve_parser(prog).parse_args(argv)
    configure_logging()
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        logger.error("invalid setting %s: %s", ".".join(map(str, first["loc"])), first["msg"])
        return 2
    from predictor.server import build_model, run

    try:
        model = build_model(settings)
        return run(
            model,
            http_port=args.http_port,
            enable_grpc=args.enable_grpc,
            event_loop=args.event_loop,
        )
    except (BackendLoadError, CacheError, DefaultModelMissing, ApiKeyConfigError) as exc:
        # Fail fast with one readable line: Kubernetes shows it in the crash loop.
        logger.error("cannot start: %s", exc)
        return 1


# Each command's entry point, imported only when that command runs, so that
# `kzero serve` never pays for the imports of the others.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("predictor.cli", "serve_main", "run the predictor"),
    "bench": ("bench.cli", "bench_main", "benchmark kzero against its baselines"),
    "cache": ("predictor.cache.cli", "cache_main", "warm, list, verify and prune the model cache"),
    "cost": ("autoscaling.cost_cli", "cost_main", "cost per token vs AWS Lambda and Cloud Run"),
    "report": ("autoscaling.report_cli", "report_main", "markdown report with cost/latency charts"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        usage = "\n".join(f"  {name:8} {text}" for name, (_, _, text) in COMMANDS.items())
        print(
            f"usage: kzero <command> [options]\n\ncommands:\n{usage}\n\n'kzero <command> --help' for options"
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module_name, function_name, _ = COMMANDS[argv[0]]
    entry_point = getattr(importlib.import_module(module_name), function_name)
    return entry_point(argv[1:])
