"""``podman run`` options that reproduce a chart container (chart_pod.Container).

What Kubernetes does with each field, and the podman option that does the same:
  runAsUser/runAsGroup          --user UID:GID
  fsGroup                       --group-add GID, and the volume's directory owned
                                by that group with the setgid bit (kubelet's
                                volume ownership change)
  readOnlyRootFilesystem        --read-only, without podman's own writable
                                tmpfs on /tmp, /var/tmp and /run
  allowPrivilegeEscalation      --security-opt no-new-privileges
  capabilities drop/add         --cap-drop / --cap-add
  resources.limits              --cpus / --memory
  emptyDir                      a fresh host directory with mode 0777 (a
                                --tmpfs over an image folder comes out
                                root-owned whatever its mode)
  persistentVolumeClaim         the given host directory, :ro when read-only
  containerPort                 --publish 127.0.0.1:<free port>:<port>
seccompProfile RuntimeDefault is podman's default profile.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .chart_pod import Container, UnsupportedSpec

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL_SUFFIXES = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def cpus(quantity: str) -> str:
    """A Kubernetes CPU quantity ("2", "500m") as podman's --cpus value."""
    if quantity.endswith("m"):
        return f"{int(quantity[:-1]) / 1000:g}"
    return f"{float(quantity):g}"


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("2Gi", "512M", "1073741824") in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i|[kMGT])?", quantity)
    if match is None:
        raise UnsupportedSpec(f"memory quantity {quantity!r}")
    number, suffix = match.groups()
    factor = _BINARY_SUFFIXES.get(suffix or "", _DECIMAL_SUFFIXES.get(suffix or "", 1))
    return int(float(number) * factor)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_volume(container: Container, name: str, host_dir: Path) -> None:
    """Make ``host_dir`` what kubelet would mount for volume ``name``."""
    mounts = [v for v in container.volumes if v.name == name]
    host_dir.mkdir(parents=True, exist_ok=True)
    if mounts[0].kind == "emptyDir":
        host_dir.chmod(0o777)
    elif container.fs_group is not None:
        # fsGroup: the volume's files belong to the group, which may write them.
        os.chown(host_dir, 0, container.fs_group)
        host_dir.chmod(0o2775)
    for mount in mounts:
        if mount.sub_path:
            # The chart's warm Job makes each subPath directory (prefixCache)
            # as the predictors' UID before they start.
            parts = Path(mount.sub_path).parts
            for depth in range(1, len(parts) + 1):
                path = host_dir.joinpath(*parts[:depth])
                path.mkdir(exist_ok=True)
                if container.run_as_user is not None:
                    group = container.run_as_group if container.run_as_group is not None else -1
                    os.chown(path, container.run_as_user, group)
                path.chmod(0o770)


@dataclass(frozen=True)
class RunPlan:
    """The options and the arguments after the image."""

    options: list[str]
    args: list[str]
    published: dict[int, int]  # container port -> host port on 127.0.0.1


def run_plan(container: Container, volume_dirs: dict[str, Path]) -> RunPlan:
    options: list[str] = []
    if container.run_as_user is not None:
        user = str(container.run_as_user)
        if container.run_as_group is not None:
            user += f":{container.run_as_group}"
        options.append(f"--user={user}")
    if container.fs_group is not None:
        options.append(f"--group-add={container.fs_group}")
    if container.read_only_root:
        options += ["--read-only", "--read-only-tmpfs=false"]
    if container.no_new_privileges:
        options.append("--security-opt=no-new-privileges")
    options += [f"--cap-drop={c.lower()}" for c in container.dropped_capabilities]
    options += [f"--cap-add={c.lower()}" for c in container.added_capabilities]
    if container.cpu_limit is not None:
        options.append(f"--cpus={cpus(container.cpu_limit)}")
    if container.memory_limit is not None:
        options.append(f"--memory={memory_bytes(container.memory_limit)}")
    for volume in container.volumes:
        mode = "ro" if volume.read_only else "rw"
        source = volume_dirs[volume.name] / volume.sub_path
        options.append(f"--volume={source}:{volume.mount_path}:{mode}")
    options += [f"--env={name}={value}" for name, value in container.env.items()]
    published = {port: free_port() for port in container.ports}
    options += [f"--publish=127.0.0.1:{host}:{port}" for port, host in published.items()]
    if container.command is not None:
        options.append(f"--entrypoint={json.dumps(container.command)}")
    return RunPlan(options, list(container.args), published)


def podman(*args: str, timeout_s: float = 120, check: bool = True) -> str:
    """Runs podman; its stdout, or CalledProcessError with podman's stderr."""
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout
