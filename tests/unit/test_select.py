"""Every branch of backend selection, on real files in a temporary directory."""

from pathlib import Path

import pytest

from predictor.backends.base import BackendKind, BackendLoadError
from predictor.backends.select import (
    BadModelFileError,
    ModelFormat,
    choose_backend,
    cuda_gpu_visible,
    locate_model,
)

from .gguf_builder import F32, gguf_header, gguf_model


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


# --- bad model files fail in locate_model, before the port opens ------------


def test_a_truncated_gguf_is_a_bad_model_file(tmp_path: Path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_model({}, [("w", (1024,), F32)])[:-100])
    with pytest.raises(
        BadModelFileError, match=r"m\.gguf is not a usable GGUF model: file is truncated"
    ):
        locate_model(path)
    # The CLI catches BackendLoadError and prints one line.
    assert issubclass(BadModelFileError, BackendLoadError)


def test_a_gguf_name_with_bad_magic_says_bad_magic(tmp_path: Path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_header({}, magic=b"GGML"))
    with pytest.raises(BadModelFileError, match="bad magic"):
        locate_model(path)


def test_a_truncated_gguf_in_a_model_directory_is_caught(tmp_path: Path):
    (tmp_path / "only.gguf").write_bytes(gguf_model({}, [("w", (1024,), F32)])[:200])
    with pytest.raises(BadModelFileError, match="truncated"):
        locate_model(tmp_path)


def test_a_split_model_with_a_missing_shard_is_refused(tmp_path: Path):
    first = gguf(tmp_path / "big-00001-of-00003.gguf")
    gguf(tmp_path / "big-00003-of-00003.gguf")
    with pytest.raises(BadModelFileError, match=r"missing its shard big-00002-of-00003\.gguf"):
        locate_model(first)


def test_every_shard_of_a_split_model_is_checked(tmp_path: Path):
    gguf(tmp_path / "big-00001-of-00002.gguf")
    second = tmp_path / "big-00002-of-00002.gguf"
    second.write_bytes(gguf_model({}, [("w", (1024,), F32)])[:-1])
    with pytest.raises(
        BadModelFileError, match=r"big-00002-of-00002\.gguf is not a usable.*truncated"
    ):
        locate_model(tmp_path)


def test_a_chat_template_that_does_not_compile_stops_startup(tmp_path: Path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_header({"tokenizer.chat_template": "{% for %}"}))
    with pytest.raises(BadModelFileError, match="chat template does not compile"):
        locate_model(path)


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.pt", "weights.pth"])
def test_a_huggingface_directory_with_pickle_weights_is_refused(tmp_path: Path, weights: str):
    root = hf_dir(tmp_path / "hf")
    (root / "model.safetensors").unlink()
    (root / weights).write_bytes(b"\x80\x04 pickle")
    with pytest.raises(BadModelFileError, match="pickle weights") as caught:
        locate_model(root)
    assert "execute arbitrary code" in str(caught.value)
    assert weights in str(caught.value)


def test_safetensors_next_to_pickle_weights_are_accepted(tmp_path: Path):
    # vLLM loads only the safetensors (load_format="safetensors"); the .bin is ignored.
    root = hf_dir(tmp_path / "hf")
    (root / "pytorch_model.bin").write_bytes(b"pickle")
    assert locate_model(root).format is ModelFormat.HUGGINGFACE


def test_a_huggingface_directory_without_weights_is_refused(tmp_path: Path):
    root = hf_dir(tmp_path / "hf")
    (root / "model.safetensors").unlink()
    with pytest.raises(BadModelFileError, match=r"no \*\.safetensors weights"):
        locate_model(root)


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
