"""The vLLM backend against a fake ``vllm`` package (tests/fakes/vllm).

The fake goes on ``sys.path`` only inside the ``fake_vllm`` fixture, so every
other test sees the machine's real import state (on CPU: no vllm).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from predictor.backends.base import (
    Backend,
    BackendDeadError,
    BackendLoadError,
    GenerationChunk,
    OnStart,
    Prompt,
    RequestAborted,
    SamplingOptions,
)
from predictor.backends.chat_template import ChatTemplateError
from predictor.backends.select import BadModelFileError
from predictor.backends.vllm import VllmBackend, check_model_dir

FAKES = Path(__file__).resolve().parents[1] / "fakes"
REPO = Path(__file__).resolve().parents[2]


def _vllm_modules() -> dict[str, ModuleType]:
    return {
        name: module
        for name, module in sys.modules.items()
        if name == "vllm" or name.startswith("vllm.")
    }


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make ``import vllm`` find the fake; yield its ``AsyncLLM`` class."""
    saved = _vllm_modules()
    for name in saved:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(FAKES))
    from vllm.v1.engine.async_llm import AsyncLLM

    yield AsyncLLM
    for name in _vllm_modules():
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    config = {
        "architectures": ["LlamaForCausalLM"],
        "max_position_embeddings": 512,
        "torch_dtype": "bfloat16",
    }
    (root / "config.json").write_text(json.dumps(config))
    (root / "model.safetensors").write_bytes(b"not really tensors")
    return root


async def _loaded(model_dir: Path, **kwargs: Any) -> VllmBackend:
    backend = VllmBackend(str(model_dir), **kwargs)
    await backend.load()
    return backend


async def _collect(
    backend: VllmBackend,
    request_id: str,
    prompt: Prompt,
    options: SamplingOptions,
    on_start: OnStart | None = None,
) -> list[GenerationChunk]:
    return [chunk async for chunk in backend.generate(request_id, prompt, options, on_start)]


def _text(chunks: list[GenerationChunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


def _prompt(backend: VllmBackend, text: str = "Say something") -> Prompt:
    return Prompt(text=text, token_ids=backend.tokenize(text))


# --- import and model directory checks (no vllm needed) ---------------------


def test_module_imports_without_importing_vllm() -> None:
    code = "import sys, predictor.backends.vllm; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


@pytest.mark.asyncio
async def test_load_without_vllm_installed_names_the_extra(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _vllm_modules():
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    with pytest.raises(BackendLoadError, match=r"not installed: pip install 'kzero\[gpu\]'"):
        await VllmBackend(str(model_dir)).load()


def test_check_model_dir_accepts_config_and_safetensors(model_dir: Path) -> None:
    check_model_dir(model_dir)


def test_check_model_dir_rejects_a_file(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(BackendLoadError, match="not a directory"):
        check_model_dir(gguf)


def test_check_model_dir_requires_config_json(model_dir: Path) -> None:
    (model_dir / "config.json").unlink()
    with pytest.raises(BackendLoadError, match=r"no config\.json"):
        check_model_dir(model_dir)


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.pt", "model.pth"])
def test_check_model_dir_refuses_pickle_only_weights(model_dir: Path, weights: str) -> None:
    (model_dir / "model.safetensors").unlink()
    (model_dir / weights).write_bytes(b"pickle")
    with pytest.raises(BackendLoadError, match=re.escape(f"only pickle weights ({weights})")):
        check_model_dir(model_dir)


def test_check_model_dir_says_why_pickle_is_refused(model_dir: Path) -> None:
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(BadModelFileError, match="unpickling can execute arbitrary code"):
        check_model_dir(model_dir)


def test_remote_code_and_the_load_format_cannot_be_configured() -> None:
    # Both are fixed in load(): no setting can turn on model-repository Python
    # or pickle loading.
    parameters = inspect.signature(VllmBackend).parameters
    assert "trust_remote_code" not in parameters
    assert "load_format" not in parameters


def test_check_model_dir_requires_weights(model_dir: Path) -> None:
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(BackendLoadError, match=r"no \*\.safetensors weights"):
        check_model_dir(model_dir)


# --- load ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_load_refuses_pickle_weights_before_starting_an_engine(
    fake_vllm: Any, model_dir: Path
) -> None:
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(BackendLoadError, match="pickle"):
        await VllmBackend(str(model_dir)).load()
    assert fake_vllm.created == []


@pytest.mark.asyncio
async def test_load_passes_settings_and_locks_down_remote_code_and_pickle(
    fake_vllm: Any, model_dir: Path
) -> None:
    await _loaded(
        model_dir,
        max_model_len=256,
        gpu_memory_utilization=0.5,
        enforce_eager=True,
        dtype="half",
        served_model_name="smol",
    )
    (engine,) = fake_vllm.created
    args = engine.engine_args
    assert args.model == str(model_dir)
    assert (args.max_model_len, args.gpu_memory_utilization) == (256, 0.5)
    assert (args.enforce_eager, args.dtype, args.served_model_name) == (
        True,
        "half",
        "smol",
    )
    assert args.trust_remote_code is False
    assert args.load_format == "safetensors"
    assert engine.created_on_loop


@pytest.mark.asyncio
async def test_load_reports_engine_failure_as_backend_load_error(
    fake_vllm: Any, model_dir: Path
) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Model"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackendLoadError, match=r"could not start an engine.*trust_remote_code"):
        await VllmBackend(str(model_dir)).load()


@pytest.mark.asyncio
async def test_info_describes_the_engine(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir, max_model_len=256)
    info = backend.info
    assert (info.backend, info.device) == ("vllm", "cuda")
    assert info.context_length == 256
    assert info.quantization == "bfloat16"
    assert info.max_parallel == 256  # vLLM's own max_num_seqs default, owned by the backend


@pytest.mark.asyncio
async def test_info_takes_context_from_model_and_quantization_from_config(
    fake_vllm: Any, model_dir: Path
) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (model_dir / "config.json").write_text(json.dumps(config))
    backend = await _loaded(model_dir)
    assert backend.info.context_length == 512
    assert backend.info.quantization == "awq"


def test_info_before_load_is_an_error(model_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="not loaded"):
        _ = VllmBackend(str(model_dir)).info


@pytest.mark.asyncio
async def test_implements_the_backend_protocol(fake_vllm: Any, model_dir: Path) -> None:
    assert isinstance(await _loaded(model_dir), Backend)


@pytest.mark.asyncio
async def test_load_accepts_a_coroutine_get_tokenizer(
    fake_vllm: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def get_tokenizer(self: Any) -> Any:
        return self.tokenizer

    monkeypatch.setattr(fake_vllm, "get_tokenizer", get_tokenizer)
    backend = await _loaded(model_dir)
    assert backend.tokenize("hi") == [1, ord("h") + 3, ord("i") + 3]


# --- tokenizer and chat template -------------------------------------------


@pytest.mark.asyncio
async def test_tokenize_adds_the_special_tokens_the_model_wants(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    assert backend.tokenize("ab") == [1, ord("a") + 3, ord("b") + 3]


@pytest.mark.asyncio
async def test_render_chat_applies_template_and_tokenizes_without_extra_bos(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    prompt = backend.render_chat(messages)
    assert prompt.text == "<|system|>Be brief.\n<|user|>Hi\n<|assistant|>"
    assert prompt.token_ids == [b + 3 for b in prompt.text.encode()]


@pytest.mark.asyncio
async def test_render_chat_reports_template_errors(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir)
    with pytest.raises(ChatTemplateError, match="unsupported role"):
        backend.render_chat([{"role": "wizard", "content": "hi"}])


@pytest.mark.asyncio
async def test_render_chat_without_a_template_says_so(
    fake_vllm: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await _loaded(model_dir)
    monkeypatch.setattr(fake_vllm.created[0].tokenizer, "chat_template", None)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        backend.render_chat([{"role": "user", "content": "hi"}])


# --- generation -------------------------------------------------------------


@pytest.mark.asyncio
async def test_generate_sends_token_ids_and_sampling_settings(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    prompt = _prompt(backend)
    options = SamplingOptions(max_tokens=7, temperature=0.5, top_p=0.9, seed=3, stop=("x", "yz"))
    await _collect(backend, "r1", prompt, options)
    record = fake_vllm.created[0].requests["r1"]
    assert record.prompt_token_ids == prompt.token_ids
    params = record.params
    assert (params.max_tokens, params.temperature, params.top_p, params.seed) == (
        7,
        0.5,
        0.9,
        3,
    )
    assert params.stop == ["x", "yz"]
    assert params.output_kind.name == "DELTA"


@pytest.mark.asyncio
async def test_streamed_deltas_concatenate_to_the_full_completion(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    options = SamplingOptions(max_tokens=40, temperature=0.0)
    chunks = await _collect(backend, "r1", _prompt(backend), options)
    finished = fake_vllm.created[0].finished["r1"]
    assert len(chunks) > 1
    assert _text(chunks) == finished.text
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)


@pytest.mark.asyncio
async def test_temperature_zero_is_deterministic_and_seed_repeats_sampling(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    prompt = _prompt(backend)

    async def text(request_id: str, options: SamplingOptions) -> str:
        return _text(await _collect(backend, request_id, prompt, options))

    greedy = SamplingOptions(max_tokens=30, temperature=0.0)
    seeded = SamplingOptions(max_tokens=30, temperature=1.0, seed=42)
    assert await text("a", greedy) == await text("b", greedy)
    assert await text("c", seeded) == await text("d", seeded)


@pytest.mark.asyncio
async def test_max_tokens_ends_with_length(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir)
    chunks = await _collect(backend, "r1", _prompt(backend), SamplingOptions(max_tokens=5))
    assert chunks[-1].finish_reason == "length"
    assert sum(c.num_tokens for c in chunks) == 5
    assert len(_text(chunks)) == 5


@pytest.mark.asyncio
async def test_end_of_sequence_ends_with_stop_and_counts_the_eos_token(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    chunks = await _collect(backend, "r1", _prompt(backend), SamplingOptions(max_tokens=400))
    assert chunks[-1].finish_reason == "stop"
    # One byte per token, plus the EOS token that has no text.
    assert sum(c.num_tokens for c in chunks) == len(_text(chunks).encode()) + 1


@pytest.mark.asyncio
async def test_stop_string_ends_with_stop_and_counts_held_back_tokens(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    prompt = _prompt(backend)
    greedy = SamplingOptions(max_tokens=400, temperature=0.0)
    full = _text(await _collect(backend, "full", prompt, greedy))
    stop = full.split()[3]
    options = SamplingOptions(max_tokens=400, temperature=0.0, stop=(stop,))
    chunks = await _collect(backend, "r1", prompt, options)
    assert chunks[-1].finish_reason == "stop"
    assert _text(chunks) == full[: full.index(stop)]
    generated = fake_vllm.created[0].finished["r1"].num_tokens
    assert generated == full.index(stop) + len(stop)
    assert sum(c.num_tokens for c in chunks) == generated


@pytest.mark.asyncio
async def test_on_start_is_called_once_per_request(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir)
    calls: list[str] = []
    options = SamplingOptions(max_tokens=10)
    await _collect(backend, "r1", _prompt(backend), options, lambda: calls.append("r1"))
    assert calls == ["r1"]


@pytest.mark.asyncio
async def test_concurrent_requests_stream_independently(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir)
    options = SamplingOptions(max_tokens=20, temperature=0.0)
    prompts = {f"r{i}": _prompt(backend, f"prompt {i}") for i in range(3)}
    results = await asyncio.gather(
        *(_collect(backend, rid, prompt, options) for rid, prompt in prompts.items())
    )
    finished = fake_vllm.created[0].finished
    for rid, chunks in zip(prompts, results, strict=True):
        assert _text(chunks) == finished[rid].text
        assert chunks[-1].finish_reason == "length"


# --- abort ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_closing_the_stream_early_aborts_the_request(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir)
    stream = backend.generate("r1", _prompt(backend), SamplingOptions(max_tokens=100))
    await anext(stream)
    await anext(stream)
    await stream.aclose()
    engine = fake_vllm.created[0]
    assert engine.abort_calls == ["r1"]
    assert "r1" not in engine.finished


@pytest.mark.asyncio
async def test_cancelling_the_consumer_aborts_the_request(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir)
    engine = fake_vllm.created[0]
    engine.step_delay = 0.01
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.generate("r1", _prompt(backend), SamplingOptions(max_tokens=100)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.abort_calls == ["r1"]


@pytest.mark.asyncio
async def test_abort_ends_a_running_stream_with_request_aborted(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    chunks = []
    with pytest.raises(RequestAborted):
        async for chunk in backend.generate(
            "r1", _prompt(backend), SamplingOptions(max_tokens=100)
        ):
            chunks.append(chunk)
            if len(chunks) == 2:
                await backend.abort("r1")
    assert len(chunks) == 2
    engine = fake_vllm.created[0]
    assert engine.finished["r1"].finish_reason == "abort"
    assert engine.abort_calls == ["r1"]


@pytest.mark.asyncio
async def test_abort_of_an_unknown_request_is_a_no_op(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir)
    await backend.abort("nobody")
    await VllmBackend(str(model_dir)).abort("not loaded either")


# --- health, death and shutdown ---------------------------------------------


@pytest.mark.asyncio
async def test_healthy_only_between_load_and_engine_death(fake_vllm: Any, model_dir: Path) -> None:
    backend = VllmBackend(str(model_dir))
    assert not await backend.healthy()
    await backend.load()
    assert await backend.healthy()
    fake_vllm.created[0].kill()
    assert not await backend.healthy()


@pytest.mark.asyncio
async def test_failing_health_check_reads_as_unhealthy(
    fake_vllm: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await _loaded(model_dir)

    async def check_health() -> None:
        raise RuntimeError("engine core stopped answering")

    monkeypatch.setattr(fake_vllm.created[0], "check_health", check_health)
    assert not await backend.healthy()


@pytest.mark.asyncio
async def test_generate_on_a_dead_engine_raises_backend_dead(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    fake_vllm.created[0].kill()
    with pytest.raises(BackendDeadError):
        await _collect(backend, "r1", _prompt(backend), SamplingOptions(max_tokens=5))


@pytest.mark.asyncio
async def test_engine_death_mid_stream_raises_backend_dead(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir)
    stream = backend.generate("r1", _prompt(backend), SamplingOptions(max_tokens=100))
    await anext(stream)
    fake_vllm.created[0].kill()
    with pytest.raises(BackendDeadError):
        await anext(stream)


@pytest.mark.asyncio
async def test_generate_before_load_raises_backend_dead(model_dir: Path) -> None:
    backend = VllmBackend(str(model_dir))
    prompt = Prompt(text="hi", token_ids=[1, 2])
    with pytest.raises(BackendDeadError, match="not running"):
        await _collect(backend, "r1", prompt, SamplingOptions(max_tokens=5))


@pytest.mark.asyncio
async def test_shutdown_is_idempotent_and_leaves_the_backend_unhealthy(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    await backend.shutdown()
    await backend.shutdown()
    assert fake_vllm.created[0].shutdown_calls == 1
    assert not await backend.healthy()
    with pytest.raises(BackendDeadError):
        await _collect(backend, "r1", _prompt(backend), SamplingOptions(max_tokens=5))


def _scripted_generate(*outputs: Any) -> Any:
    """A stand-in for ``AsyncLLM.generate`` that yields ``outputs``."""

    async def generate(prompt: Any, params: Any, request_id: str) -> Any:
        for output in outputs:
            yield output

    return generate


def _output(text: str, token_ids: list[int], finish_reason: str | None) -> Any:
    from vllm.outputs import CompletionOutput, RequestOutput

    completion = CompletionOutput(0, text, token_ids, finish_reason=finish_reason)
    return RequestOutput("r1", [1], [completion], finished=finish_reason is not None)


@pytest.mark.asyncio
async def test_any_error_from_an_errored_engine_raises_backend_dead(
    fake_vllm: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When the engine core dies, vLLM can surface the transport error itself.
    backend = await _loaded(model_dir)
    engine = fake_vllm.created[0]

    async def dying(prompt: Any, params: Any, request_id: str) -> Any:
        engine.kill()
        raise RuntimeError("zmq socket closed")
        yield  # an async generator, like AsyncLLM.generate

    monkeypatch.setattr(engine, "generate", dying)
    with pytest.raises(BackendDeadError, match="zmq socket closed"):
        await _collect(backend, "r1", _prompt(backend), SamplingOptions(max_tokens=5))


@pytest.mark.asyncio
@pytest.mark.parametrize(("reason", "expected"), [("repetition", "stop"), ("stop", "stop")])
async def test_model_side_finish_reasons_map_to_stop(
    fake_vllm: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch, reason: str, expected: str
) -> None:
    backend = await _loaded(model_dir)
    script = _scripted_generate(_output("ab", [4, 5], None), _output("", [6], reason))
    monkeypatch.setattr(fake_vllm.created[0], "generate", script)
    chunks = await _collect(backend, "r1", _prompt(backend), SamplingOptions(max_tokens=5))
    assert [(c.text, c.num_tokens, c.finish_reason) for c in chunks] == [
        ("ab", 2, None),
        ("", 1, expected),
    ]


@pytest.mark.asyncio
async def test_request_error_from_vllm_is_raised(
    fake_vllm: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await _loaded(model_dir)
    script = _scripted_generate(_output("", [], "error"))
    monkeypatch.setattr(fake_vllm.created[0], "generate", script)
    with pytest.raises(RuntimeError, match="internal error"):
        await _collect(backend, "r1", _prompt(backend), SamplingOptions(max_tokens=5))
