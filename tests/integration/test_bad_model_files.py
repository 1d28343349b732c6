"""Bad model files: a real ``kzero serve`` refuses them with one line and exit 1.

Each case copies the bundled SmolLM2 GGUF, breaks it the way a failed download
or a hostile file would, and runs the real CLI on it. The process must stop on
its own (never hang), before the port opens, with no traceback and a last log
line that names the problem. A chat template carrying an injection payload is
served instead, and must answer with a clean 400 while running nothing.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bench.harness.process import PredictorProcess, free_port
from predictor.backends.gguf_metadata import read_gguf_metadata
from predictor.default_model import default_model_path

pytestmark = pytest.mark.integration

KZERO = str(Path(sys.executable).with_name("kzero"))
# Imports take a few seconds on a CPU node; a hang would run into this.
EXIT_TIMEOUT_S = 60


def _n_dims_at(data: bytes) -> int:
    """Byte offset of the first tensor-table entry's ``n_dims`` field in ``data``."""
    name = read_gguf_metadata(default_model_path()).tensors[0].name.encode()
    return data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)


def _truncate_at_half(data: bytearray) -> bytearray:
    return data[: len(data) // 2]


def _truncate_in_header(data: bytearray) -> bytearray:
    # The key/value section (tokenizer vocabulary) alone is over a megabyte.
    return data[:1000]


def _bad_magic(data: bytearray) -> bytearray:
    data[:4] = b"GGML"
    return data


def _huge_tensor_count(data: bytearray) -> bytearray:
    data[8:16] = struct.pack("<Q", 2**60)
    return data


def _absurd_dims(data: bytearray) -> bytearray:
    # First dimension 2**62: the element count overflows ggml's int64.
    at = _n_dims_at(data) + 4
    data[at : at + 8] = struct.pack("<Q", 2**62)
    return data


def _too_many_dims(data: bytearray) -> bytearray:
    at = _n_dims_at(data)
    data[at : at + 4] = struct.pack("<I", 5000)
    return data


def _unknown_tensor_type(data: bytearray) -> bytearray:
    at = _n_dims_at(data)
    (n_dims,) = struct.unpack_from("<I", data, at)
    type_at = at + 4 + 8 * n_dims
    data[type_at : type_at + 4] = struct.pack("<I", 4242)
    return data


CASES: dict[str, tuple[Callable[[bytearray], bytearray], str]] = {
    "truncated_at_half": (_truncate_at_half, "file is truncated: tensor"),
    "truncated_in_header": (_truncate_in_header, "file is truncated inside the GGUF header"),
    "bad_magic": (_bad_magic, "not a GGUF file (bad magic b'GGML')"),
    "tensor_count_2_60": (_huge_tensor_count, "implausible header: 1152921504606846976 tensors"),
    "absurd_dims": (_absurd_dims, "has an absurd shape"),
    "too_many_dims": (_too_many_dims, "has 5000 dimensions (at most 4)"),
    "unknown_tensor_type": (_unknown_tensor_type, "has unknown ggml type 4242"),
}


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return default_model_path().read_bytes()


@pytest.fixture
def bad_model(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "bad.gguf"
    yield path
    # 100 MB per case: don't leave them in pytest's retained temp directories.
    path.unlink(missing_ok=True)


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_gguf_stops_startup_with_one_clear_line(
    case: str, model_bytes: bytes, bad_model: Path
) -> None:
    corrupt, expected = CASES[case]
    bad_model.write_bytes(corrupt(bytearray(model_bytes)))
    result = subprocess.run(
        [KZERO, "serve", "--model", str(bad_model), "--http_port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,  # raises if the process hangs
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert "ERROR" in last and expected in last and str(bad_model) in last, last
    # It stopped before choosing a backend, let alone opening the port.
    assert "serving " not in output and "Uvicorn running" not in output


def test_the_intact_copy_passes_the_same_checks(model_bytes: bytes, bad_model: Path) -> None:
    # The control: the same copy, unbroken, is accepted by the checks that refuse the others.
    from predictor.backends.select import ModelFormat, locate_model

    bad_model.write_bytes(model_bytes)
    assert locate_model(bad_model).format is ModelFormat.GGUF


# --- a chat template carrying an injection payload ------------------------------

PAYLOAD = (
    "{% if messages[0]['content'] == 'attack' %}"
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}"
    "{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "<|im_start|>assistant\n"
)


def _with_chat_template(model: bytes, template: str) -> bytes:
    """``model`` with its chat template replaced in place by ``template``.

    The new template is padded with a Jinja comment to the old one's byte
    length, so no offset in the file moves and the tensor data stays valid.
    """
    old = read_gguf_metadata(default_model_path()).chat_template
    assert old is not None
    old_bytes = old.encode()
    new_bytes = template.encode()
    padding = len(old_bytes) - len(new_bytes) - len("{##}")
    assert padding >= 0, "payload longer than the bundled template"
    new_bytes += b"{#" + b" " * padding + b"#}"
    start = model.index(struct.pack("<Q", len(old_bytes)) + old_bytes) + 8
    return model[:start] + new_bytes + model[start + len(old_bytes) :]


@pytest.fixture
def injected_model(model_bytes: bytes, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    marker = tmp_path / "pwned"
    path = tmp_path / "injected.gguf"
    path.write_bytes(_with_chat_template(model_bytes, PAYLOAD.replace("MARKER", str(marker))))
    yield path, marker
    path.unlink(missing_ok=True)


def test_an_injected_chat_template_is_refused_at_render_and_runs_nothing(
    injected_model: tuple[Path, Path],
) -> None:
    path, marker = injected_model
    assert read_gguf_metadata(path).chat_template.startswith("{% if messages")  # type: ignore[union-attr]
    server = PredictorProcess(["--model", str(path), "--model_name", "injected"])
    try:
        server.wait_ready("injected")
        # KServe logs a traceback for each 503 while the model loads: look only after.
        log_start = len(server.log())

        def chat(content: str) -> httpx.Response:
            body = {
                "model": "injected",
                "messages": [{"role": "user", "content": content}],
                "max_tokens": 4,
            }
            return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)

        attacked = chat("attack")
        assert attacked.status_code == 400, attacked.text
        error = attacked.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert "chat template failed" in error["message"]
        assert not marker.exists()
        # The sandbox refused one render; the server keeps serving ordinary chats.
        ordinary = chat("hi")
        assert ordinary.status_code == 200, ordinary.text
        assert ordinary.json()["usage"]["completion_tokens"] > 0
        assert "Traceback" not in server.log()[log_start:]
    finally:
        server.stop()
    assert not marker.exists()
