#!/usr/bin/env bash
# Creates the base image localhost/debian-base:local with debootstrap, unless it
# already exists: Debian bookworm (minbase) with Debian's python3 (3.11, in /usr).
#
# Why not python:3.11-slim-bookworm: Docker Hub is not reachable from this
# project's machines, a Debian mirror is. docker/cpu.Dockerfile takes either
# base through its BASE_IMAGE build argument.
#
# Usage: scripts/image/debian-base.sh [IMAGE]   (as root; DEBIAN_MIRROR overrides the mirror)
set -euo pipefail
source "$(dirname "$0")/podman-env.sh"

IMAGE="${1:-localhost/debian-base:local}"
SUITE=bookworm
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates

# The Debian mirror apt already uses (deb822 or one-line sources), else Debian's CDN.
apt_mirror() {
  local found
  found="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list \
    | grep -v security | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//' | awk '{print $1}' | head -n1)"
  echo "${found:-http://deb.debian.org/debian}"
}

# Slim like Debian's own container images (debian:bookworm-slim): no manuals,
# documentation (but the copyright files) or translations, now or from later
# apt-get installs, and no apt package caches (about 50 MB; the binary caches
# alone would add 77 MB to every image layer that runs apt-get update).
slim_rootfs() {
  local root="$1"
  cat >"$root/etc/dpkg/dpkg.cfg.d/kzero-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
  cat >"$root/etc/apt/apt.conf.d/kzero-slim" <<'CFG'
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
CFG
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/usr/share/lintian/*
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
}

if podman image exists "$IMAGE"; then
  echo "debian-base: $IMAGE exists (podman rmi $IMAGE to make it again)"
  exit 0
fi
ensure_image_tools
MIRROR="${DEBIAN_MIRROR:-$(apt_mirror)}"
ROOTFS="$(mktemp -d)"
LOG="$(mktemp)"
trap 'rm -rf "$ROOTFS" "$LOG"' EXIT
started=$SECONDS
echo "debian-base: debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$LOG" 2>&1 || {
  tail -n 20 "$LOG" >&2
  exit 1
}
slim_rootfs "$ROOTFS"
tar --numeric-owner -C "$ROOTFS" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "debian-base: $IMAGE in $((SECONDS - started)) s ($(podman run --rm "$IMAGE" python3 --version))"
