import argparse

import pytest
from pydantic import ValidationError

from predictor.backends.base import BackendKind
from predictor.cli import add_settings_flags, build_serve_parser, settings_from_args
from predictor.settings import Settings


def parse(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    return settings_from_args(parser.parse_args(argv))


def test_defaults_without_flags_or_env():
    settings = parse([])
    assert settings.backend is BackendKind.AUTO
    assert settings.model is None
    assert settings.max_tokens_cap == 4096


def test_environment_variables_configure_every_field(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KZERO_BACKEND", "llamacpp")
    monkeypatch.setenv("KZERO_N_CTX", "2048")
    monkeypatch.setenv("KZERO_ENFORCE_EAGER", "true")
    settings = parse([])
    assert settings.backend is BackendKind.LLAMACPP
    assert settings.n_ctx == 2048
    assert settings.enforce_eager is True


def test_a_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KZERO_N_CTX", "2048")
    assert parse(["--n_ctx", "1024"]).n_ctx == 1024


def test_boolean_flags_take_true_and_false():
    assert parse(["--enforce_eager", "true"]).enforce_eager is True
    assert parse(["--enforce_eager", "false"]).enforce_eager is False


def test_backend_flag_only_accepts_known_engines(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        parse(["--backend", "tensorrt"])
    assert "invalid choice" in capsys.readouterr().err


def test_out_of_range_values_are_refused():
    with pytest.raises(ValidationError):
        parse(["--n_ctx", "4"])
    with pytest.raises(ValidationError):
        parse(["--gpu_memory_utilization", "1.5"])


def test_unknown_environment_keys_are_not_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KZERO_NOT_A_SETTING", "1")
    assert not hasattr(parse([]), "not_a_setting")


def test_every_field_has_a_description_for_help():
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"


def test_api_keys_come_from_the_environment_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    # A flag would put the key in the process list, readable by every user.
    with pytest.raises(SystemExit):
        build_serve_parser("kzero serve").parse_args(["--api_key", "sk-secret"])
    assert "unrecognized arguments" in capsys.readouterr().err
    monkeypatch.setenv("KZERO_API_KEY", "sk-secret")
    settings = parse([])
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(settings)
