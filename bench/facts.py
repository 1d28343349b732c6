"""The machine and software a run happened on, printed and saved with its figures.

Ratios from a 2-core shared VM and a 64-core workstation are not comparable;
the facts make that visible next to every result.
"""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata
from pathlib import Path

from predictor.cpu_quota import usable_cpu_count


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def llama_cpp_system_info() -> str:
    """The CPU features ggml uses in llama-cpp-python (setups a to c); llama-server is
    built from the same sources with the same flags on the machine that runs it."""
    import llama_cpp

    return bytes(llama_cpp.llama_print_system_info()).decode(errors="replace").strip()


def machine_facts() -> dict[str, str | int]:
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count() or 0,
        "usable_cpus": usable_cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "llama_cpp_python": _version("llama-cpp-python"),
        "kzero": _version("kzero"),
    }
