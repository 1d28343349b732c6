"""The CPU image, run with podman the way the rendered chart runs it.

The chart's CPU scenario (charts/kzero/ci/cpu-values.yaml) is rendered with
one change: the model's URI points at an HTTP origin on this machine's
loopback that serves the bundled GGUF, so that the warm Job has something to
fetch and the predictor a cache entry to hit (the chart's default, a file://
path inside the image, is served in place and never touches the cache). The
warm Job's container then fills a host directory, the cache volume, and the
predictor's container mounts it read-only, exactly as the rendered objects say
(chart_pod.py reads them, podman_run.py turns them into podman options).

The warm Job runs on the host's network, so that it reaches the loopback
origin; the predictor runs on podman's bridge, where that origin does not
exist, so it can only serve what the cache holds.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from chart.helm_cli import CHART, template
from integration.origin import Origin, serving

from predictor.default_model import default_model_path

from .chart_pod import Container, predictor_container, warm_job_container
from .conftest import IMAGE_ENV
from .podman_run import podman, prepare_volume, run_plan

pytestmark = pytest.mark.image

CPU_SCENARIO = CHART / "ci" / "cpu-values.yaml"
POLL_INTERVAL_S = 0.02
# Polls after the first 200 that must all be 200: readiness does not flap.
POLLS_AFTER_READY = 10


@pytest.fixture(scope="module")
def image() -> str:
    name = os.environ[IMAGE_ENV]
    try:
        podman("image", "exists", name)
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"{IMAGE_ENV}={name}: no such podman image ({exc})", pytrace=False)
    return name


@pytest.fixture(scope="module")
def model_file() -> Path:
    return default_model_path()


@pytest.fixture(scope="module")
def origin(model_file: Path) -> Iterator[Origin]:
    with serving({f"/{model_file.name}": model_file.read_bytes()}) as running:
        yield running


@pytest.fixture(scope="module")
def model_name() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return str(values["models"][0]["name"])


@pytest.fixture(scope="module")
def rendered(
    origin: Origin, model_file: Path, model_name: str, tmp_path_factory: pytest.TempPathFactory
) -> list[dict]:
    override = tmp_path_factory.mktemp("values") / "origin-values.yaml"
    override.write_text(
        yaml.safe_dump({"models": [{"name": model_name, "uri": f"{origin.url}/{model_file.name}"}]})
    )
    return template("-f", str(CPU_SCENARIO), "-f", str(override))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


def volume_dirs(container: Container, cache_dir: Path, scratch: Path) -> dict[str, Path]:
    """The cache volume is shared; every emptyDir is a fresh directory."""
    dirs = {}
    for volume in container.volumes:
        dirs[volume.name] = cache_dir if volume.kind == "pvc" else scratch / volume.name
        prepare_volume(container, volume.name, dirs[volume.name])
    return dirs


@dataclass
class WarmRun:
    returncode: int
    output: str


@pytest.fixture(scope="module")
def warm_run(
    image: str, rendered: list[dict], cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> WarmRun:
    container = warm_job_container(rendered)
    plan = run_plan(container, volume_dirs(container, cache_dir, tmp_path_factory.mktemp("warm")))
    done = subprocess.run(
        ["podman", "run", "--rm", "--network=host", *plan.options, image, *plan.args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return WarmRun(done.returncode, done.stdout + done.stderr)


@dataclass
class ProbeLog:
    """What one probe path answered, poll by poll, from the container's start."""

    path: str
    statuses: list[int | None] = field(default_factory=list)  # None: nothing listens yet

    @property
    def ready_at(self) -> int | None:
        return self.statuses.index(200) if 200 in self.statuses else None


@dataclass
class Predictor:
    name: str
    base_url: str
    probes: dict[str, ProbeLog]  # "startup" / "readiness"
    ready_s: float

    def logs(self) -> str:
        return logs(self.name)

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", "exec", self.name, *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def status_of(client: httpx.Client, url: str) -> int | None:
    try:
        return client.get(url).status_code
    except httpx.TransportError:
        return None


@pytest.fixture(scope="module")
def predictor(
    image: str,
    rendered: list[dict],
    model_name: str,
    cache_dir: Path,
    warm_run: WarmRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Predictor]:
    assert warm_run.returncode == 0, f"the warm Job failed:\n{warm_run.output}"
    container = predictor_container(rendered, model_name)
    assert container.startup_probe and container.readiness_probe, "the chart sets both probes"
    plan = run_plan(
        container, volume_dirs(container, cache_dir, tmp_path_factory.mktemp("predictor"))
    )
    name = f"kzero-image-check-{uuid.uuid4().hex[:8]}"
    podman("create", f"--name={name}", *plan.options, image, *plan.args)
    try:
        probes = {
            "startup": ProbeLog(container.startup_probe.path),
            "readiness": ProbeLog(container.readiness_probe.path),
        }
        ports = {container.startup_probe.port, container.readiness_probe.port}
        assert len(ports) == 1, f"the probes use one port: {ports}"
        base_url = f"http://127.0.0.1:{plan.published[ports.pop()]}"
        started = time.monotonic()
        podman("start", name)
        ready_s = poll_probes(name, base_url, probes, container.startup_probe.budget_s, started)
        yield Predictor(name, base_url, probes, ready_s)
    finally:
        podman("rm", "--force", "--time=0", name, check=False)


def poll_probes(
    name: str, base_url: str, probes: dict[str, ProbeLog], budget_s: float, started: float
) -> float:
    """Polls every probe path from the container's start until all answer 200,
    then POLLS_AFTER_READY times more; returns the seconds to the first 200 on
    the startup probe's path. Gives up after the startup probe's own budget,
    or as soon as the container exits."""
    ready_s: float | None = None
    after_ready = 0
    checked_running = started
    with httpx.Client(timeout=5) as client:
        while after_ready < POLLS_AFTER_READY:
            for log in probes.values():
                log.statuses.append(status_of(client, base_url + log.path))
            now = time.monotonic()
            if ready_s is None and probes["startup"].ready_at is not None:
                ready_s = now - started
            if all(log.ready_at is not None for log in probes.values()):
                after_ready += 1
            elif now - started > budget_s:
                pytest.fail(f"not ready within the startup probe's {budget_s} s:\n{logs(name)}")
            elif now - checked_running > 1:  # podman inspect is slow: not every poll
                checked_running = now
                if podman("inspect", "--format={{.State.Running}}", name).strip() != "true":
                    pytest.fail(f"the predictor exited while loading:\n{logs(name)}")
            time.sleep(POLL_INTERVAL_S)
    assert ready_s is not None
    return ready_s


def logs(name: str) -> str:
    return podman("logs", name, check=False)


# ---- the warm Job --------------------------------------------------------------


def test_warm_job_fills_the_cache_volume(
    warm_run: WarmRun, origin: Origin, model_file: Path, cache_dir: Path
) -> None:
    assert warm_run.returncode == 0, warm_run.output
    assert "fetched:" in warm_run.output, warm_run.output
    assert origin.completed[f"/{model_file.name}"] == 1
    cached = list((cache_dir / "entries").glob(f"*/{model_file.name}"))
    assert len(cached) == 1 and cached[0].stat().st_size == model_file.stat().st_size


# ---- the predictor -------------------------------------------------------------


def test_runs_as_a_non_root_user_and_group_without_capabilities(predictor: Predictor) -> None:
    # PID 1 is the server itself (the image's exec-form ENTRYPOINT).
    status = dict(
        line.split(":\t", 1) for line in predictor.exec("cat", "/proc/1/status").stdout.splitlines()
    )
    uids, gids = status["Uid"].split(), status["Gid"].split()
    assert "0" not in uids and "0" not in gids, f"Uid {uids} Gid {gids}"
    assert int(status["CapEff"], 16) == 0, f"capabilities left: {status['CapEff']}"
    assert status["NoNewPrivs"].strip() == "1"


WRITE_PROBE = """
import errno, json, os, sys
results = {}
for path in sys.argv[1:]:
    try:
        with open(os.path.join(path, ".kzero-write-probe"), "w") as f:
            f.write("x")
        results[path] = "written"
    except OSError as exc:
        results[path] = errno.errorcode[exc.errno]
print(json.dumps(results))
"""


def test_root_filesystem_is_read_only_and_only_the_scratch_volumes_are_writable(
    predictor: Predictor,
) -> None:
    # /var/tmp is world-writable in the image, so only a read-only root stops the write.
    paths = ["/var/tmp", "/", "/tmp", "/home/kzero", "/var/cache/kzero"]
    done = predictor.exec("python", "-c", WRITE_PROBE, *paths)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results == {
        "/var/tmp": errno.errorcode[errno.EROFS],
        "/": errno.errorcode[errno.EROFS],
        "/tmp": "written",  # emptyDir
        "/home/kzero": "written",  # emptyDir
        "/var/cache/kzero": errno.errorcode[errno.EROFS],  # the cache, mounted read-only
    }


@pytest.mark.parametrize("probe", ["startup", "readiness"])
def test_probe_path_answers_503_while_loading_and_200_after(
    predictor: Predictor, probe: str, record_property: pytest.RecordProperty
) -> None:
    log = predictor.probes[probe]
    ready_at = log.ready_at
    assert ready_at is not None
    before, after = log.statuses[:ready_at], log.statuses[ready_at:]
    # Before the port opens nothing answers (None); then 503 until the model is loaded.
    assert 503 in before, f"{log.path} never answered 503 while loading: {before}"
    first_503 = before.index(503)
    assert set(before[:first_503]) == {None} or first_503 == 0, before
    assert set(before[first_503:]) == {503}, f"{log.path} while loading: {before}"
    assert set(after) == {200}, f"{log.path} after ready: {after}"
    record_property(
        f"{probe} probe {log.path}", f"{before.count(503)} polls answered 503 before 200"
    )
    if probe == "startup":
        record_property("ready after container start (s)", f"{predictor.ready_s:.2f}")


def test_chat_completion(predictor: Predictor, model_name: str) -> None:
    response = httpx.post(
        f"{predictor.base_url}/openai/v1/chat/completions",
        json={
            "model": model_name,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
            "temperature": 0,
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"].strip(), body
    assert body["usage"]["completion_tokens"] > 0, body


def samples(metrics: str, name: str, label: str) -> dict[str, float]:
    """``name``'s samples in a Prometheus text exposition, keyed by ``label``'s value."""
    found = {}
    for line in metrics.splitlines():
        if line.startswith(name + "{") and f'{label}="' in line:
            found[line.split(f'{label}="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return found


def test_serves_the_warmed_cache_without_downloading(
    predictor: Predictor, origin: Origin, model_file: Path, record_property: pytest.RecordProperty
) -> None:
    metrics = httpx.get(f"{predictor.base_url}/metrics", timeout=30).text
    lookups = samples(metrics, "kzero_cache_lookups_total", "result")
    assert lookups.get("hit") == 1 and lookups.get("miss") == 0, lookups
    assert origin.started[f"/{model_file.name}"] == 1, "only the warm Job downloaded"
    phases = samples(metrics, "kzero_cold_start_seconds_sum", "phase")
    record_property(
        "cold start phases (s)", ", ".join(f"{k} {v:.2f}" for k, v in sorted(phases.items()))
    )


def test_llama_cpp_in_the_image_has_no_amx_kernels(
    predictor: Predictor, record_property: pytest.RecordProperty
) -> None:
    """Some VMs report AMX without enabling it for guests, and AMX kernels then
    crash (the Makefile's and the Dockerfile's notes on CMAKE_ARGS)."""
    done = predictor.exec(
        "python", "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    )
    assert done.returncode == 0, done.stderr
    features = done.stdout.strip()
    record_property("llama.cpp CPU features in the image", features)
    assert "AMX" not in features, features


def test_kzero_cost_runs_in_the_image(predictor: Predictor) -> None:
    done = predictor.exec("kzero", "cost")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "AWS Lambda" in done.stdout and "Cloud Run" in done.stdout, done.stdout


def test_sigterm_ends_the_container_with_exit_0(predictor: Predictor) -> None:
    podman("kill", "--signal=TERM", predictor.name)
    # The chart's drain timeout bounds a clean exit; the margin covers interpreter shutdown.
    exit_code = podman("wait", predictor.name, timeout_s=120).strip()
    assert exit_code == "0", f"exit code {exit_code}:\n{predictor.logs()}"
