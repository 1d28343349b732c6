"""Every branch of backend selection, on real files in a temporary directory."""

from pathlib import Path

import pytest

from predictor.backends.base import BackendKind, BackendLoadError
from predictor.backends.select import (
    ModelFormat,
    choose_backend,
    cuda_gpu_visible,
    locate_model,
)

from .gguf_builder import gguf_header


def gguf(path: Path) -> Path:
    path.write_bytes(gguf_header({"general.architecture": "llama"}))
    return path


def hf_dir(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    return path


def always(value: bool):
    return lambda: value


# --- locating the model -----------------------------------------------------


def test_a_gguf_file_is_gguf(tmp_path: Path):
    location = locate_model(gguf(tmp_path / "m.gguf"))
    assert location.format is ModelFormat.GGUF


def test_a_directory_with_config_json_is_huggingface(tmp_path: Path):
    assert locate_model(hf_dir(tmp_path / "hf")).format is ModelFormat.HUGGINGFACE


def test_a_directory_with_one_gguf_resolves_to_that_file(tmp_path: Path):
    # KServe's storage initializer leaves the model under /mnt/models like this.
    model = gguf(tmp_path / "only.gguf")
    assert locate_model(tmp_path).path == model


def test_split_gguf_resolves_to_the_first_shard(tmp_path: Path):
    first = gguf(tmp_path / "big-00001-of-00002.gguf")
    gguf(tmp_path / "big-00002-of-00002.gguf")
    assert locate_model(tmp_path).path == first


def test_several_unrelated_ggufs_are_ambiguous(tmp_path: Path):
    gguf(tmp_path / "a.gguf")
    gguf(tmp_path / "b.gguf")
    with pytest.raises(BackendLoadError, match="several GGUF files"):
        locate_model(tmp_path)


def test_missing_path_fails_clearly(tmp_path: Path):
    with pytest.raises(BackendLoadError, match="model not found"):
        locate_model(tmp_path / "nope.gguf")


def test_a_file_that_is_not_gguf_fails_clearly(tmp_path: Path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(BackendLoadError, match="neither a GGUF file"):
        locate_model(path)


def test_a_gguf_name_with_wrong_content_fails_clearly(tmp_path: Path):
    (tmp_path / "fake.gguf").write_bytes(b"nope")
    with pytest.raises(BackendLoadError, match="not a GGUF file"):
        locate_model(tmp_path)


def test_an_empty_directory_has_nothing_to_serve(tmp_path: Path):
    with pytest.raises(BackendLoadError, match="nothing to serve"):
        locate_model(tmp_path)


# --- choosing the engine ----------------------------------------------------


@pytest.mark.parametrize("gpu", [True, False])
@pytest.mark.parametrize("vllm", [True, False])
def test_auto_serves_gguf_with_llamacpp_whatever_the_hardware(
    tmp_path: Path, gpu: bool, vllm: bool
):
    choice = choose_backend(
        BackendKind.AUTO,
        locate_model(gguf(tmp_path / "m.gguf")),
        gpu_visible=always(gpu),
        vllm_available=always(vllm),
    )
    assert choice.kind is BackendKind.LLAMACPP
    assert "GGUF" in choice.reason


def test_auto_serves_huggingface_with_vllm_on_a_gpu(tmp_path: Path):
    choice = choose_backend(
        BackendKind.AUTO,
        locate_model(hf_dir(tmp_path / "hf")),
        gpu_visible=always(True),
        vllm_available=always(True),
    )
    assert choice.kind is BackendKind.VLLM


@pytest.mark.parametrize(
    ("gpu", "vllm", "problem"),
    [
        (False, True, "no CUDA GPU"),
        (True, False, "vllm package is not installed"),
        (False, False, "not installed"),
    ],
)
def test_auto_refuses_huggingface_without_gpu_or_vllm(
    tmp_path: Path, gpu: bool, vllm: bool, problem: str
):
    with pytest.raises(BackendLoadError, match=problem):
        choose_backend(
            BackendKind.AUTO,
            locate_model(hf_dir(tmp_path / "hf")),
            gpu_visible=always(gpu),
            vllm_available=always(vllm),
        )


def test_explicit_llamacpp_serves_gguf(tmp_path: Path):
    choice = choose_backend(BackendKind.LLAMACPP, locate_model(gguf(tmp_path / "m.gguf")))
    assert choice.kind is BackendKind.LLAMACPP


def test_explicit_llamacpp_refuses_huggingface(tmp_path: Path):
    with pytest.raises(BackendLoadError, match="serves GGUF files"):
        choose_backend(BackendKind.LLAMACPP, locate_model(hf_dir(tmp_path / "hf")))


def test_explicit_vllm_serves_huggingface_on_a_gpu(tmp_path: Path):
    choice = choose_backend(
        BackendKind.VLLM,
        locate_model(hf_dir(tmp_path / "hf")),
        gpu_visible=always(True),
        vllm_available=always(True),
    )
    assert choice.kind is BackendKind.VLLM


@pytest.mark.parametrize(
    ("make", "gpu", "vllm", "problem"),
    [
        (lambda p: gguf(p / "m.gguf"), True, True, "not GGUF files"),
        (lambda p: hf_dir(p / "hf"), False, True, "no CUDA GPU"),
        (lambda p: hf_dir(p / "hf"), True, False, "not installed"),
    ],
)
def test_explicit_vllm_fails_with_the_reason(
    tmp_path: Path, make, gpu: bool, vllm: bool, problem: str
):
    with pytest.raises(BackendLoadError, match=problem):
        choose_backend(
            BackendKind.VLLM,
            locate_model(make(tmp_path)),
            gpu_visible=always(gpu),
            vllm_available=always(vllm),
        )


@pytest.mark.parametrize("hidden", ["", "-1"])
def test_cuda_visible_devices_can_hide_every_gpu(monkeypatch: pytest.MonkeyPatch, hidden: str):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
    assert cuda_gpu_visible() is False
