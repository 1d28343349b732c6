"""Flags every bench subcommand spells the same way."""

from __future__ import annotations

import argparse
from pathlib import Path

from predictor.cli_parsing import positive_int


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", type=Path, default=None, help="GGUF file. Default: the bundled SmolLM2."
    )


def add_threads_argument(parser: argparse.ArgumentParser, whose: str) -> None:
    parser.add_argument(
        "--n_threads",
        type=positive_int,
        default=None,
        help=f"Threads for {whose}. Default: the CPUs this process may use, as kzero serve.",
    )


def add_ready_timeout_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ready_timeout",
        type=float,
        default=300.0,
        help="Seconds to wait for a server to load the model. Default: 300.",
    )
