"""Setup (d): llama.cpp's own C++ ``llama-server``, built from the llama.cpp
sources that the pinned llama-cpp-python sdist vendors, so that it runs the very
ggml and llama code that setups (a) to (c) load through Python.

The build is cached under ``~/.cache/kzero/llama-server/<version>/`` and never
enters the repository. Only the ``llama-server`` target is built (Release,
static, no web UI, no TLS), with the compiler flags the Makefile gives the
llama-cpp-python build: native instruction sets except AMX, which some VMs
report without enabling (the AMX matmul then faults). About 10 minutes on 2
cores; the bench builds it only when asked (``--build-llama-server`` or
``kzero bench build-llama-server``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from bench.workload import Workload

DISTRIBUTION = "llama-cpp-python"
BINARY_NAME = "llama-server"
BUILD_INFO = "build-info.json"
# The same flags as the Makefile's CMAKE_ARGS, for the same reason.
NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
# Inside the sdist: llama-cpp-python-<version>/vendor/llama.cpp/
VENDORED_LLAMA_CPP = "vendor/llama.cpp"


class LlamaServerMissing(RuntimeError):
    """No cached build, and the bench was not asked to build one."""


def installed_version() -> str:
    """The llama-cpp-python version setups (a)-(c) run; (d) is built from its sdist."""
    return metadata.version(DISTRIBUTION)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kzero" / "llama-server"


def cached_binary(version: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / version / BINARY_NAME


def compiler_flags(machine: str | None = None) -> str:
    """Extra C/C++ flags: no AMX on x86-64 (as the Makefile), nothing elsewhere."""
    machine = machine or platform.machine()
    return NO_AMX_FLAGS if machine in ("x86_64", "AMD64") else ""


def sdist_download_command(version: str, dest: Path) -> list[str]:
    return [
        sys.executable, "-m", "pip", "download",
        "--no-binary", ":all:", "--no-deps", "--disable-pip-version-check",
        f"{DISTRIBUTION}=={version}",
        "-d", str(dest),
    ]  # fmt: skip


def cmake_configure_command(source: Path, build: Path, flags: str) -> list[str]:
    """Configure llama.cpp alone (not llama-cpp-python's wrapper project) for llama-server.

    ggml's defaults stay as llama-cpp-python's build has them (native CPU
    features, OpenMP); the web UI is neither built nor downloaded (there is no
    network here, and the bench never opens it).
    """
    command = [
        "cmake", "-S", str(source), "-B", str(build),
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_BUILD_UI=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_OPENSSL=OFF",
    ]  # fmt: skip
    if flags:
        command += [f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"]
    return command


def cmake_build_command(build: Path, jobs: int) -> list[str]:
    return [
        "cmake", "--build", str(build),
        "--config", "Release", "--target", BINARY_NAME, "--parallel", str(jobs),
    ]  # fmt: skip


def _run(command: list[str], log: Callable[[str], None], build_log: Path) -> None:
    """Run one step, its output appended to ``build_log``; its tail is the error."""
    log("$ " + shlex.join(command))
    with build_log.open("a") as sink:
        sink.write("$ " + shlex.join(command) + "\n")
        sink.flush()
        returncode = subprocess.run(
            command, stdout=sink, stderr=subprocess.STDOUT, check=False
        ).returncode
    if returncode != 0:
        tail = build_log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{command[0]} failed with {returncode} (log: {build_log}):\n{tail}")


def _extract_llama_cpp(sdist: Path, dest: Path) -> Path:
    """Unpack only vendor/llama.cpp from the sdist; fail if it lacks the server's sources."""
    with tarfile.open(sdist) as archive:
        members = [
            member
            for member in archive.getmembers()
            if member.name.split("/", 1)[-1].startswith(VENDORED_LLAMA_CPP + "/")
        ]
        archive.extractall(dest, members=members, filter="data")
    roots = sorted(dest.iterdir())
    if len(roots) != 1:
        raise RuntimeError(f"{sdist.name}: expected one top-level folder, found {roots}")
    source = roots[0] / VENDORED_LLAMA_CPP
    if not (source / "tools" / "server" / "CMakeLists.txt").is_file():
        raise RuntimeError(f"{sdist.name} carries no {VENDORED_LLAMA_CPP}/tools/server")
    return source


def build_llama_server(
    version: str, jobs: int, log: Callable[[str], None], root: Path | None = None
) -> Path:
    """Download the sdist, build llama-server in a scratch folder, keep only the binary."""
    target = cached_binary(version, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = compiler_flags()
    build_log = target.parent / "build.log"
    build_log.write_text("")
    log(f"build output goes to {build_log}")
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as scratch_name:
        scratch = Path(scratch_name)
        _run(sdist_download_command(version, scratch / "sdist"), log, build_log)
        sdists = sorted((scratch / "sdist").glob("*.tar.gz"))
        if len(sdists) != 1:
            raise RuntimeError(f"pip download left {sdists}, expected one .tar.gz")
        source = _extract_llama_cpp(sdists[0], scratch / "src")
        configure = cmake_configure_command(source, scratch / "build", flags)
        build = cmake_build_command(scratch / "build", jobs)
        _run(configure, log, build_log)
        log(f"building {BINARY_NAME} with {jobs} jobs (about 10 minutes on 2 cores)")
        _run(build, log, build_log)
        built = scratch / "build" / "bin" / BINARY_NAME
        if not built.is_file():
            raise RuntimeError(f"the build produced no {built}")
        # Copy then rename, so a concurrent reader never sees half a binary.
        partial = target.with_name(BINARY_NAME + ".partial")
        shutil.copy2(built, partial)
        partial.replace(target)
    info = {
        "llama_cpp_python": version,
        "source": f"{sdists[0].name}:{VENDORED_LLAMA_CPP}",
        "compiler_flags": flags,
        "configure": configure,
        "build": build,
    }
    (target.parent / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return target


def locate_llama_server(
    explicit: Path | None, build: bool, jobs: int, log: Callable[[str], None]
) -> Path:
    """The binary to run: ``--llama_server PATH``, else the cached build, else build it."""
    if explicit is not None:
        if not explicit.is_file():
            raise LlamaServerMissing(f"--llama_server {explicit}: no such file")
        return explicit
    version = installed_version()
    cached = cached_binary(version)
    if cached.is_file():
        return cached
    if not build:
        raise LlamaServerMissing(
            f"no llama-server build for llama-cpp-python {version} at {cached}. "
            "Build it once (about 10 minutes on 2 cores): 'kzero bench build-llama-server', "
            "or pass --build-llama-server; or leave setup d out with --setups a,b,c"
        )
    log(f"building llama-server from the llama-cpp-python {version} sdist into {cached.parent}")
    return build_llama_server(version, jobs, log)


def llama_server_version(binary: Path) -> str:
    """What ``llama-server --version`` says (build number and commit; "unknown" from an sdist)."""
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "version" in line]
    return "; ".join(lines) or f"exit {result.returncode}"


def llama_server_command(binary: Path, workload: Workload, port: int, alias: str) -> list[str]:
    """The C++ server, configured like kzero: same threads, batch sizes, slots and
    per-sequence context, a split (not unified) KV cache, and no prompt caching.

    - ``--parallel`` is kzero's ``--max_running_requests``; ``-c`` is the whole
      KV cache, which llama-server splits evenly between the slots when the KV
      cache is not unified, so each slot gets ``n_ctx`` cells, as in kzero.
      (llama-server unifies the cache only when ``--parallel`` is left on auto;
      ``--no-kv-unified`` states the choice.)
    - ``--no-cache-prompt``: a new request does not reuse the KV of the slot's
      previous prompt (kzero keeps no prefix cache, and the bench repeats
      prompts); ``--cache-ram 0``: no host-memory prompt cache either.
    - ``-ub`` as kzero sets it (``min(n_batch, 512)``); flash attention,
      KV types and mmap stay at both servers' shared default (llama.cpp's).
    - no warm-up skip, no web UI, no metrics endpoint: nothing the hot path uses.
    """
    return [
        *llama_server_base_command(binary, workload.model_path, workload.n_threads, port, alias),
        "--ctx-size", str(workload.n_ctx * workload.n_parallel),
        "--parallel", str(workload.n_parallel),
        "--no-kv-unified",
        "--batch-size", str(workload.n_batch),
        "--ubatch-size", str(min(workload.n_batch, 512)),
        "--no-cache-prompt",
        "--cache-ram", "0",
    ]  # fmt: skip


def llama_server_base_command(
    binary: Path, model: Path, n_threads: int, port: int, alias: str
) -> list[str]:
    """The C++ server at its own defaults but for the model, the address and the threads
    (prompt cache, slots, context and batch sizes as llama-server picks them), without
    the web UI, which nothing here opens."""
    return [
        str(binary),
        "--model", str(model),
        "--alias", alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--threads", str(n_threads),
        "--threads-batch", str(n_threads),
        "--no-webui",
    ]  # fmt: skip


def add_llama_server_arguments(parser: argparse.ArgumentParser, used_for: str) -> None:
    """``--llama_server`` and ``--build_llama_server``, as every bench command takes them."""
    parser.add_argument(
        "--llama_server",
        type=Path,
        default=None,
        help=f"llama-server binary for {used_for}. Default: the cached build "
        "(~/.cache/kzero/llama-server/<llama-cpp-python version>/llama-server, made by "
        "kzero bench build-llama-server).",
    )
    parser.add_argument(
        "--build_llama_server",
        action="store_true",
        help="Build llama-server from the llama-cpp-python sdist if no cached build exists.",
    )
