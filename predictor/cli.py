"""The ``kzero`` command: one table of subcommands, all of one shape.

Each command is a function ``build_parser(prog)`` that returns an argparse
parser (predictor/cli_parsing.py: every flag in either spelling) whose leaves
name what to run; a command with subcommands of its own (``cache warm``, ``bench
soak``) nests argparse subparsers built the same way. Only the chosen
command's module is imported, so ``kzero serve`` never pays for the others.

``kzero serve`` runs the predictor; ``python -m predictor`` is the same (the
container entry point). Serve flags are KServe's own (``--http_port``,
``--workers``...) plus one per field of ``Settings``, each also settable as
``KZERO_<FIELD>``.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import logging
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pydantic import ByteSize, ValidationError

from predictor.auth import ApiKeyConfigError
from predictor.backends.base import BackendKind, BackendLoadError
from predictor.cache.errors import CacheError
from predictor.cli_parsing import ArgumentParser, run_command, run_parsed, set_run
from predictor.default_model import DefaultModelMissing
from predictor.settings import Settings
from predictor.start_up import begin_start_up, start_up_done

if TYPE_CHECKING:
    from predictor.model_start import BackendWrapper, StartedModel

logger = logging.getLogger("predictor")

# Secrets come from the environment only: a flag would show in the process list.
ENV_ONLY_SETTINGS = frozenset({"api_key", "admin_api_key"})


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
        parser.add_argument(
            f"--{name}",
            dest=name,
            type=flag_type,
            default=None,
            choices=[kind.value for kind in BackendKind]
            if field.annotation is BackendKind
            else None,
            help=f"{field.description} [env KZERO_{name.upper()}; default: {default}]",
        )


def build_serve_parser(prog: str = "kzero serve") -> ArgumentParser:
    # KServe's parser carries --http_port, --workers, --enable_grpc, ...
    from kserve.model_server import parser as kserve_parser

    parser = ArgumentParser(
        prog=prog,
        description="Serve an LLM with an OpenAI-compatible API inside KServe's model server.",
        # A copy: resolving a conflict (--model_name is KServe's and kzero's) takes
        # the option string off the parent's own action, and a second serve parser
        # in the process would then read KServe's default name into model_name.
        parents=[copy.deepcopy(kserve_parser)],
        conflict_handler="resolve",
    )
    add_settings_flags(parser)
    # kzero serves LLMs over HTTP only; KServe's gRPC v2 has no generation API.
    parser.set_defaults(enable_grpc=False)
    set_run(parser, serve)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    return Settings(**given)


def configure_logging() -> None:
    """KServe's log format on the ``predictor`` logger; once per process."""
    if logger.handlers:
        return
    from kserve.logging import KSERVE_LOGGER_DATE_FORMAT, KSERVE_LOGGER_FORMAT

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(KSERVE_LOGGER_FORMAT, KSERVE_LOGGER_DATE_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@dataclass(frozen=True)
class EarlyStart:
    """The settings and the model, started before KServe's server was imported."""

    settings: Settings
    model: StartedModel


def serve(
    args: argparse.Namespace,
    wrap_backend: BackendWrapper | None = None,
    early: EarlyStart | None = None,
) -> int:
    """Settings from the flags and environment, then the model, then the server.

    ``early``: what ``serve_main`` started before the full command line was
    parsed; its settings are the ones these flags give (the same flags, read by
    the same definitions).
    """
    configure_logging()
    if early is None:
        try:
            settings = settings_from_args(args)
        except ValidationError as exc:
            log_invalid_setting(exc)
            return 2
        started = start_or_refuse(settings, wrap_backend)
        if isinstance(started, int):
            return started
        early = EarlyStart(settings, started)
    from predictor.assembly import build_predictor, serve_model

    settings = early.settings
    try:
        model = build_predictor(settings, early.model)
    except ApiKeyConfigError as exc:
        early.model.release()
        logger.error("cannot start: %s", exc)
        return 1
    return serve_model(
        model,
        host=settings.host,
        header_timeout_s=settings.header_timeout_s,
        http_port=args.http_port,
        enable_grpc=args.enable_grpc,
        event_loop=args.event_loop,
    )


def log_invalid_setting(exc: ValidationError) -> None:
    first = exc.errors(include_input=False, include_url=False)[0]
    logger.error("invalid setting %s: %s", ".".join(map(str, first["loc"])), first["msg"])


def start_or_refuse(settings: Settings, wrap_backend: BackendWrapper | None) -> StartedModel | int:
    """The started model, or exit code 1 after one line saying why it cannot be served."""
    from predictor.model_start import start_model

    try:
        return start_model(settings, wrap_backend=wrap_backend)
    except (BackendLoadError, CacheError, DefaultModelMissing) as exc:
        # Fail fast with one readable line: Kubernetes shows it in the crash loop.
        logger.error("cannot start: %s", exc)
        return 1


class _Refused(Exception):
    """The early parse met something the full parser will refuse, and say better."""


class _EarlyParser(ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Refused(message)


def early_settings(argv: Sequence[str]) -> Settings | None:
    """kzero's settings from its own flags and the environment, read before KServe is imported.

    The same flag definitions as the full parser's (``add_settings_flags``), with
    everything else (KServe's flags) left over, so the settings are the ones the
    full parse will give. None when the full parser must speak first: for
    ``--help``, and for anything it refuses, which it reports with its usage.
    """
    if "-h" in argv or "--help" in argv:
        return None
    parser = _EarlyParser(add_help=False)
    add_settings_flags(parser)
    try:
        known, _ = parser.parse_known_args(list(argv))
        return settings_from_args(known)
    except (_Refused, ValidationError):
        return None


def serve_main(
    argv: Sequence[str], prog: str = "kzero serve", wrap_backend: BackendWrapper | None = None
) -> int:
    """``kzero serve``; ``wrap_backend`` lets the integration tests inject faults.

    In two stages, so that the model loads while the server is imported (the
    longer part of a cold start, docs/architecture.md): kzero's own flags first,
    which need only pydantic, and the model's start (``model_start``); then the
    full parser, KServe's flags with kzero's, which imports KServe's server, and
    the server itself.
    """
    begin_start_up()
    try:
        early: EarlyStart | None = None
        settings = early_settings(argv)
        if settings is not None:
            configure_logging()
            started = start_or_refuse(settings, wrap_backend)
            if isinstance(started, int):
                return started
            early = EarlyStart(settings, started)
        parser = build_serve_parser(prog)
        set_run(parser, partial(serve, wrap_backend=wrap_backend, early=early))
        try:
            return run_command(parser, argv, [*prog.split(), *argv])
        except BaseException:
            # A flag refused after the model began to load (argparse's exit 2),
            # uvicorn's exit when the port is taken, Ctrl-C during start-up: the
            # process is leaving, so let the load end and free the engine first.
            if early is not None:
                early.model.release()
            raise
    finally:
        start_up_done()


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    # "module:function", the function taking prog and returning the command's parser.
    parser: str
    # Modules the command runs with, beyond the base install (its --help works
    # without them), and the install that brings them.
    needs: tuple[str, ...] = ()
    install: str = ""


COMMANDS = {
    command.name: command
    for command in (
        Command("serve", "run the predictor", "predictor.cli:build_serve_parser"),
        Command(
            "cache",
            "warm, list, verify and prune the model cache",
            "predictor.cache.cli:build_parser",
        ),
        Command(
            "bench",
            "benchmark kzero against its peers; cold start; soak",
            "bench.cli:build_parser",
            needs=("llama_cpp",),
            install="pip install -e '.[cpu,bench]' in the kzero checkout (make bench does it)",
        ),
        Command(
            "cost",
            "cost per token vs AWS Lambda and Cloud Run",
            "autoscaling.cost_cli:build_parser",
        ),
        Command(
            "report",
            "markdown report with cost/latency charts",
            "autoscaling.report_cli:build_parser",
            needs=("matplotlib", "tqdm"),
            install="pip install 'kzero[report]'",
        ),
    )
}

# The benchmarks are not part of the wheel or the image: they live beside
# predictor/ in a source checkout (an editable install included).
SOURCE_CHECKOUT = Path(__file__).resolve().parent.parent
BENCH_NOT_INSTALLED = (
    "kzero bench is not installed here: the benchmarks run from a kzero source checkout "
    "(make bench there), not from the wheel or the container image"
)


def build_kzero_parser() -> ArgumentParser:
    listing = "\n".join(f"  {name:8} {command.help}" for name, command in COMMANDS.items())
    parser = ArgumentParser(
        prog="kzero",
        description="Self-hosted serverless LLM inference: the predictor and its tools.",
        epilog=f"commands:\n{listing}\n\n'kzero <command> --help' for its options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=COMMANDS, metavar="<command>")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _parser_factory(command: Command) -> Callable[[str], ArgumentParser] | None:
    """The command's ``build_parser``; None when it is the bench and no source checkout holds it."""
    module_name, _, function_name = command.parser.partition(":")
    if command.name == "bench" and importlib.util.find_spec("bench") is None:
        if not (SOURCE_CHECKOUT / "bench" / "cli.py").is_file():
            return None
        sys.path.insert(0, str(SOURCE_CHECKOUT))
    factory: Callable[[str], ArgumentParser] = getattr(
        importlib.import_module(module_name), function_name
    )
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_kzero_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    chosen = parser.parse_args(argv)
    command = COMMANDS[chosen.command]
    if command.name == "serve":
        return serve_main(chosen.args)
    build_parser = _parser_factory(command)
    if build_parser is None:
        print(BENCH_NOT_INSTALLED, file=sys.stderr)
        return 2
    args = build_parser(f"kzero {command.name}").parse_args(chosen.args)
    args.command_line = ["kzero", *argv]
    missing = [name for name in command.needs if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"kzero {command.name} needs {', '.join(missing)}, not installed here: "
            f"{command.install}",
            file=sys.stderr,
        )
        return 2
    return run_parsed(args)
