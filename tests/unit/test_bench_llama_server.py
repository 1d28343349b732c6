"""Setup (d) without building it: the llama-server command, the build commands and
where the bench finds (or refuses to find) the binary.

The build itself takes about 10 minutes on 2 cores, so CI never runs it; the
integration smoke measures setups a, b and c and says so in its command line.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from bench import llama_server
from bench.llama_server import (
    LlamaServerMissing,
    cached_binary,
    cmake_build_command,
    cmake_configure_command,
    compiler_flags,
    llama_server_command,
    locate_llama_server,
    sdist_download_command,
)
from bench.servers import kzero_args
from bench.workload import Workload


def workload(**overrides: object) -> Workload:
    fields: dict[str, object] = {
        "model_path": Path("/models/smollm2.gguf"),
        "n_threads": 2,
        "n_ctx": 2048,
        "n_batch": 512,
        "max_tokens": 64,
        "rounds": 3,
        "concurrency": (1, 4, 8),
        "n_parallel": 8,
    }
    fields.update(overrides)
    return Workload(**fields)  # type: ignore[arg-type]


def option(command: list[str], name: str) -> str:
    """The value that follows ``name``; fails if the option is missing or repeated."""
    assert command.count(name) == 1, f"{name} appears {command.count(name)} times in {command}"
    return command[command.index(name) + 1]


def test_llama_server_gets_kzeros_threads_batch_and_slots():
    command = llama_server_command(Path("/cache/llama-server"), workload(), 8123, "kzero-bench")
    assert command[0] == "/cache/llama-server"
    assert option(command, "--model") == "/models/smollm2.gguf"
    assert option(command, "--alias") == "kzero-bench"
    assert option(command, "--host") == "127.0.0.1"
    assert option(command, "--port") == "8123"
    assert option(command, "--threads") == "2"
    assert option(command, "--threads-batch") == "2"
    assert option(command, "--parallel") == "8"
    assert option(command, "--batch-size") == "512"
    assert option(command, "--ubatch-size") == "512"


def test_llama_server_context_is_per_sequence_context_times_slots_in_a_split_cache():
    command = llama_server_command(Path("llama-server"), workload(n_ctx=2048, n_parallel=8), 1, "m")
    assert option(command, "--ctx-size") == str(2048 * 8)
    # Split: each slot owns ctx-size / parallel cells, as each kzero sequence owns n_ctx.
    assert "--no-kv-unified" in command
    assert "--kv-unified" not in command and "-kvu" not in command


def test_llama_server_and_kzero_get_the_same_per_sequence_context_and_slots():
    load = workload(n_ctx=1024, n_parallel=4)
    server = llama_server_command(Path("llama-server"), load, 1, "m")
    kzero = kzero_args(load)
    assert int(option(server, "--ctx-size")) // int(option(server, "--parallel")) == int(
        option(kzero, "--n_ctx")
    )
    assert option(server, "--parallel") == option(kzero, "--max_running_requests") == "4"
    assert option(server, "--threads") == option(kzero, "--n_threads")
    assert option(server, "--batch-size") == option(kzero, "--n_batch")


def test_llama_server_reuses_no_prompt_across_requests():
    command = llama_server_command(Path("llama-server"), workload(), 1, "m")
    assert "--no-cache-prompt" in command
    assert option(command, "--cache-ram") == "0"


def test_ubatch_follows_kzero_min_of_batch_and_512():
    small = llama_server_command(Path("s"), workload(n_batch=256), 1, "m")
    large = llama_server_command(Path("s"), workload(n_batch=2048), 1, "m")
    assert option(small, "--ubatch-size") == "256"
    assert option(large, "--ubatch-size") == "512"


def test_build_flags_leave_amx_out_on_x86_64_only():
    assert compiler_flags("x86_64") == "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    assert compiler_flags("aarch64") == ""


def test_makefile_and_bench_build_with_the_same_no_amx_flags():
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert f"NO_AMX := {llama_server.NO_AMX_FLAGS}" in makefile


def test_configure_builds_llama_cpp_release_without_ui_download_or_tests():
    command = cmake_configure_command(Path("/src"), Path("/build"), "-mno-amx-tile")
    assert command[:5] == ["cmake", "-S", "/src", "-B", "/build"]
    for define in (
        "-DCMAKE_BUILD_TYPE=Release",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_BUILD_UI=OFF",
        "-DCMAKE_C_FLAGS=-mno-amx-tile",
        "-DCMAKE_CXX_FLAGS=-mno-amx-tile",
    ):
        assert define in command
    assert not any(arg.startswith("-DCMAKE_C_FLAGS") for arg in cmake_configure_command(
        Path("/src"), Path("/build"), ""
    ))  # fmt: skip


def test_build_command_builds_only_the_server_target():
    command = cmake_build_command(Path("/build"), 2)
    assert option(command, "--target") == "llama-server"
    assert option(command, "--parallel") == "2"
    assert option(command, "--config") == "Release"


def test_sdist_download_pins_the_version_and_refuses_wheels():
    command = sdist_download_command("0.3.36", Path("/tmp/sdist"))
    assert "llama-cpp-python==0.3.36" in command
    assert option(command, "--no-binary") == ":all:"
    assert "--no-deps" in command
    assert option(command, "-d") == "/tmp/sdist"


def test_cache_path_is_per_llama_cpp_python_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert (
        cached_binary("0.3.36") == tmp_path / "kzero" / "llama-server" / "0.3.36" / "llama-server"
    )


def test_missing_build_is_an_error_that_names_the_ways_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(llama_server, "installed_version", lambda: "0.3.36")
    with pytest.raises(LlamaServerMissing) as error:
        locate_llama_server(None, build=False, jobs=2, log=lambda _: None)
    message = str(error.value)
    assert "kzero bench build-llama-server" in message
    assert "--build-llama-server" in message
    assert "--setups a,b,c" in message


def test_cached_build_is_reused_without_building(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(llama_server, "installed_version", lambda: "0.3.36")
    binary = cached_binary("0.3.36")
    binary.parent.mkdir(parents=True)
    binary.write_text("")

    def no_build(*args: object) -> Path:
        raise AssertionError("built although a cached binary exists")

    monkeypatch.setattr(llama_server, "build_llama_server", no_build)
    assert locate_llama_server(None, build=True, jobs=2, log=lambda _: None) == binary


def test_build_flag_builds_when_nothing_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(llama_server, "installed_version", lambda: "0.3.36")
    calls = []

    def fake_build(version: str, jobs: int, log: object) -> Path:
        calls.append((version, jobs))
        return tmp_path / "built"

    monkeypatch.setattr(llama_server, "build_llama_server", fake_build)
    assert locate_llama_server(None, build=True, jobs=3, log=lambda _: None) == tmp_path / "built"
    assert calls == [("0.3.36", 3)]


def test_explicit_binary_must_exist(tmp_path: Path):
    with pytest.raises(LlamaServerMissing, match="no such file"):
        locate_llama_server(tmp_path / "nope", build=True, jobs=2, log=lambda _: None)
    binary = tmp_path / "llama-server"
    binary.write_text("")
    assert locate_llama_server(binary, build=False, jobs=2, log=lambda _: None) == binary


def make_sdist(path: Path, files: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name in files:
            data = b"x"
            info = tarfile.TarInfo(f"llama_cpp_python-0.3.36/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_only_vendored_llama_cpp_is_unpacked(tmp_path: Path):
    sdist = make_sdist(
        tmp_path / "s.tar.gz",
        [
            "llama_cpp/llama.py",
            "vendor/llama.cpp/CMakeLists.txt",
            "vendor/llama.cpp/tools/server/CMakeLists.txt",
        ],
    )
    source = llama_server._extract_llama_cpp(sdist, tmp_path / "src")
    assert source == tmp_path / "src" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
    assert (source / "tools" / "server" / "CMakeLists.txt").is_file()
    assert not (tmp_path / "src" / "llama_cpp_python-0.3.36" / "llama_cpp").exists()


def test_sdist_without_server_sources_is_refused(tmp_path: Path):
    sdist = make_sdist(tmp_path / "s.tar.gz", ["vendor/llama.cpp/CMakeLists.txt"])
    with pytest.raises(RuntimeError, match=r"carries no vendor/llama\.cpp/tools/server"):
        llama_server._extract_llama_cpp(sdist, tmp_path / "src")
