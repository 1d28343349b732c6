"""Runs the helm binary that `make helm` installs (or $HELM, or the one on PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kzero"
INSTALLED_HELM = REPO / ".tools" / "bin" / "helm"


class HelmMissing(RuntimeError):
    pass


def helm_binary() -> str:
    """$HELM, else .tools/bin/helm (scripts/install-helm.sh), else helm on PATH."""
    for candidate in (os.environ.get("HELM"), str(INSTALLED_HELM), shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise HelmMissing("helm not found: run `make helm` (scripts/install-helm.sh) or set $HELM")


@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str


def run_helm(*args: str) -> HelmResult:
    done = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    return HelmResult(done.returncode, done.stdout, done.stderr)


def template(*args: str, release: str = "kzero", namespace: str = "kzero") -> list[dict]:
    """`helm template` of the chart; the rendered objects, or AssertionError with helm's stderr."""
    result = run_helm("template", release, str(CHART), "--namespace", namespace, *args)
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def scenario_files() -> list[Path]:
    return sorted((CHART / "ci").glob("*-values.yaml"))


def notes(*args: str, release: str = "kzero", namespace: str = "kzero") -> str:
    """NOTES.txt as `helm install` prints it, from a client-side dry run (no cluster)."""
    result = run_helm(
        "install", release, str(CHART), "--namespace", namespace, "--dry-run=client", *args
    )
    assert result.returncode == 0, (
        f"helm install --dry-run {' '.join(args)} failed:\n{result.stderr}"
    )
    return result.stdout.split("NOTES:\n", 1)[1]
