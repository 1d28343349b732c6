"""The ``kzero`` command tree: one parser shape, either flag spelling, one-line refusals."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from predictor import cli
from predictor.cli_parsing import ArgumentParser

# A long flag with a hyphen inside its name, as --help would show it.
HYPHENATED_FLAG = re.compile(r"(?<![\w-])--[a-z0-9]+-[a-z0-9-]+")


def all_parsers() -> Iterator[tuple[str, ArgumentParser]]:
    """Every command's parser and every subcommand's, by prog."""
    for command in cli.COMMANDS.values():
        build_parser = cli._parser_factory(command)
        assert build_parser is not None
        pending = [build_parser(f"kzero {command.name}")]
        while pending:
            parser = pending.pop()
            yield parser.prog, parser
            for action in parser._actions:
                if action.choices and isinstance(action.choices, dict):
                    pending.extend(action.choices.values())


def test_help_shows_every_flag_with_underscores_only():
    progs = set()
    for prog, parser in all_parsers():
        progs.add(prog)
        assert not HYPHENATED_FLAG.findall(parser.format_help()), prog
    assert {"kzero serve", "kzero cache warm", "kzero bench soak", "kzero report"} <= progs


@pytest.mark.parametrize(
    ("argv", "dest", "expected"),
    [
        (["--max_tokens_cap", "7"], "max_tokens_cap", 7),  # a Settings field
        (["--max-tokens-cap", "7"], "max_tokens_cap", 7),
        (["--http_port", "9"], "http_port", 9),  # KServe's, registered with _
        (["--http-port=9"], "http_port", 9),
        (["--event_loop", "asyncio"], "event_loop", "asyncio"),  # KServe's, registered with -
        (["--event-loop", "asyncio"], "event_loop", "asyncio"),
        (["--cache-dir", "/c"], "cache_dir", Path("/c")),
    ],
)
def test_serve_flags_take_either_spelling(argv: list[str], dest: str, expected: object):
    assert getattr(cli.build_serve_parser().parse_args(argv), dest) == expected


def test_nested_subcommands_take_either_spelling():
    bench = cli._parser_factory(cli.COMMANDS["bench"])
    assert bench is not None
    soak = bench("kzero bench").parse_args(["soak", "--max-tokens", "3", "--request_timeout", "9"])
    assert (soak.max_tokens, soak.request_timeout) == (3, 9.0)
    cache = cli._parser_factory(cli.COMMANDS["cache"])
    assert cache is not None
    prune = cache("kzero cache").parse_args(["--cache-dir", "/c", "prune", "--dry-run"])
    assert prune.dry_run and prune.cache_dir == Path("/c")


def test_a_value_after_double_dash_is_left_alone():
    parser = ArgumentParser(prog="t")
    parser.add_argument("--max_tokens")
    parser.add_argument("rest", nargs="*")
    assert parser.parse_args(["--", "--max-tokens"]).rest == ["--max-tokens"]


def test_flag_prefixes_are_never_expanded(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        cli.build_serve_parser().parse_args(["--max_tokens", "5"])  # not --max_tokens_cap
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_missing_extra_is_one_line_naming_the_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a),
    )
    assert cli.main(["report", "--cold_start_s", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "matplotlib" in err and "pip install 'kzero[report]'" in err


def test_bench_outside_a_source_checkout_says_it_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # As in the image: no bench package, and no checkout beside predictor/.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bench" else real_find_spec(name, *a),
    )
    monkeypatch.setattr(cli, "SOURCE_CHECKOUT", tmp_path)
    assert cli.main(["bench", "--rounds", "1"]) == 2
    assert "kzero bench is not installed here" in capsys.readouterr().err


def test_no_command_prints_the_commands_and_fails(capsys: pytest.CaptureFixture[str]):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in cli.COMMANDS)


# Modules of the extras (cpu, bench, report, test): the base install has none of them.
NOT_IN_THE_BASE_INSTALL = ("llama_cpp", "matplotlib", "tqdm", "grafana_foundation_sdk", "bench")
BLOCK_EXTRAS = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_IN_THE_BASE_INSTALL!r}:
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
from predictor.cli import main
"""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_cost_runs_on_the_base_install():
    result = run_python(BLOCK_EXTRAS + "raise SystemExit(main(['cost']))")
    assert result.returncode == 0, result.stderr
    assert "break-even" in result.stdout


def test_serve_never_imports_the_other_commands():
    code = (
        "import sys\nfrom predictor.cli import main\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "loaded = [m for m in ('bench', 'autoscaling', 'predictor.cache.cli') if m in sys.modules]\n"
        "raise SystemExit(f'imported {loaded}' if loaded else 0)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
