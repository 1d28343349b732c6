"""argparse as every ``kzero`` command uses it: one spelling per flag, shared value types.

Every flag is registered once, with underscores (``--http_port``,
``--max_tokens``), and also answers to its hyphenated spelling
(``--http-port``): ``--help`` shows only the underscore form. Underscores
because the serve flags are KServe's (its parser and the ServingRuntime args
KServe passes, ``--model_name``, ``--http_port``) and kzero's settings, whose
flag, field and ``KZERO_<FIELD>`` names are one word each way. Prefixes are
never expanded (``allow_abbrev=False``): ``--api_key sk-...`` must fail, not
be read as ``--api_key_file``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _key(option: str) -> str:
    """The spelling-free name of a long option: ``--http-port`` and ``--http_port`` alike."""
    return option.replace("-", "_") if option.startswith("--") else option


def _shown(option: str) -> str:
    return "--" + option[2:].replace("-", "_") if option.startswith("--") else option


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose long flags take either spelling.

    Subparsers are of this class too (argparse makes them with the parent's
    class), so every level of a command reads both spellings.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._registered_spelling(given), namespace)

    def _registered_spelling(self, args: list[str]) -> list[str]:
        """Each token naming one of this parser's flags, in the spelling it was registered with."""
        registered = {_key(option): option for option in self._option_string_actions}
        out: list[str] = []
        for index, token in enumerate(args):
            if token == "--":  # everything after it is a value
                return out + args[index:]
            name, equals, value = token.partition("=")
            option = registered.get(_key(name)) if name.startswith("--") else None
            out.append(f"{option}{equals}{value}" if option else token)
        return out

    def format_usage(self) -> str:
        return self._one_spelling(super().format_usage())

    def format_help(self) -> str:
        return self._one_spelling(super().format_help())

    def _one_spelling(self, text: str) -> str:
        # KServe registers a few flags with hyphens (--event-loop): show them as the rest.
        for option in self._option_string_actions:
            if option != _shown(option):
                text = re.sub(rf"(?<![\w-]){re.escape(option)}(?![\w-])", _shown(option), text)
        return text


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


class CommandError(Exception):
    """A command's one-line refusal, printed as ``<prog>: <message>`` with ``status``.

    2 (as argparse) for input the command cannot use; 1 for a run that failed.
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


Run = Callable[[argparse.Namespace], int]


def positive_ints(text: str) -> tuple[int, ...]:
    """``1,4,8`` -> (1, 4, 8): a comma-separated list of positive numbers, at least one."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4, got '{text}'") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("expected positive numbers")
    return values


def set_run(parser: argparse.ArgumentParser, run: Run) -> None:
    """What a (sub)command does once parsed: ``run(args)``, reported under the parser's prog."""
    parser.set_defaults(run=run, prog=parser.prog)


def run_command(
    parser: argparse.ArgumentParser, argv: Sequence[str], command_line: list[str]
) -> int:
    """Parse ``argv``, then run the chosen (sub)command; ``args.command_line`` records the
    command as typed, for results files that say how they were made."""
    args = parser.parse_args(list(argv))
    args.command_line = command_line
    return run_parsed(args)


def run_parsed(args: argparse.Namespace) -> int:
    """``args.run(args)``; a CommandError becomes its one line on stderr and its status."""
    try:
        status: int = args.run(args)
    except CommandError as exc:
        print(f"{args.prog}: {exc}", file=sys.stderr)
        return exc.status
    return status
