#!/usr/bin/env bash
# Beckon's container image without a Docker engine or a registry: Debian's Podman builds
# deploy/Dockerfile and runs it, on a Debian 12 base made by `debootstrap` from Debian's
# packages. The image and compose tests (tests/tests/image.rs) use it; so can anyone on a
# Debian machine.
#
#   scripts/image.sh base             the base image, localhost/beckon-base:bookworm: made once
#                                     (about a minute), kept in Podman's store and as a tarball
#                                     in $BECKON_IMAGE_DIR (default /var/tmp/beckon-image)
#   scripts/image.sh build BIN_DIR    the Dockerfile's `packaged` stage on that base, holding
#                                     BIN_DIR's five binaries; prints the image's name
#   scripts/image.sh podman ARGS...   podman, with the settings this kind of machine needs
#                                     (scripts/podman-containers.conf, unless CONTAINERS_CONF
#                                     names another)
#   scripts/image.sh compose ARGS...  podman-compose ($BECKON_PODMAN_COMPOSE, from PyPI through
#                                     scripts/test-tools.sh), likewise
#   scripts/image.sh clean            removes the test containers (named beckon-e2e-<pid>-…)
#                                     whose test process is gone
#
# Podman, runc and debootstrap are installed from Debian's packages when missing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${BECKON_IMAGE_DIR:-/var/tmp/beckon-image}
mirror=${BECKON_DEBIAN_MIRROR:-http://deb.debian.org/debian}
base=localhost/beckon-base:bookworm
binaries=(ingest-api matcher invitation webhook-delivery beckon)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/scripts/podman-containers.conf}

log() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
podman() { as_root env CONTAINERS_CONF="$CONTAINERS_CONF" podman "$@"; }
# The same, in place of this script: signals sent to it (a test stopping a service) reach
# Podman, which hands them to the container.
exec_as_root() {
  if [ "$(id -u)" = 0 ]; then exec "$@"; fi
  exec sudo env CONTAINERS_CONF="$CONTAINERS_CONF" "$@"
}

ensure_tools() {
  local missing=()
  # `type -P`: `podman` is also this script's function, which `command -v` would find.
  type -P podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} = 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# The base: Debian 12 minbase, as debian:bookworm-slim is, made by debootstrap into a
# directory, packed into a tarball (kept: a store emptied by `podman system reset` is filled
# again in seconds) and imported. A build interrupted half-way leaves no tarball and is redone.
ensure_base() {
  podman image exists "$base" && return 0
  if [ ! -s "$dir/bookworm.tar" ]; then
    local rootfs=$dir/rootfs
    as_root rm -rf --one-file-system "$rootfs"
    log "building a Debian bookworm base image with debootstrap in $rootfs (once; about a minute)"
    as_root debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
      >"$dir/debootstrap.log" 2>&1 || { log "debootstrap failed; see $dir/debootstrap.log"; exit 1; }
    as_root chroot "$rootfs" apt-get clean
    as_root rm -rf "$rootfs"/var/lib/apt/lists/*
    as_root tar -C "$rootfs" -cf "$dir/bookworm.tar.partial" .
    as_root mv "$dir/bookworm.tar.partial" "$dir/bookworm.tar"
    as_root rm -rf --one-file-system "$rootfs"
  fi
  log "importing $dir/bookworm.tar as $base"
  podman import --quiet "$dir/bookworm.tar" "$base" >/dev/null
}

# The `packaged` stage, named after what went into it (the binaries' size, time and inode, the
# Dockerfile, the base), so an unchanged build is found instead of built again. Images of
# earlier builds are removed after an hour, unless a container still uses them.
build() {
  local bin_dir=${1:?usage: scripts/image.sh build BIN_DIR}
  local b paths=() key name context
  for b in "${binaries[@]}"; do
    [ -x "$bin_dir/$b" ] || { log "no $b in $bin_dir: build the binaries first"; exit 1; }
    paths+=("$bin_dir/$b")
  done
  key=$( { stat -L -c '%n %s %Y %i' "${paths[@]}"; cat "$repo/deploy/Dockerfile";
           podman image inspect --format '{{.Id}}' "$base"; } | sha256sum | cut -c1-16)
  name=localhost/beckon:packaged-$key
  if ! podman image exists "$name"; then
    context=$(mktemp -d "$dir/context.XXXXXX")
    # Hard links where the binaries share the file system, so nothing is copied twice.
    for b in "${paths[@]}"; do ln "$b" "$context/" 2>/dev/null || cp "$b" "$context/"; done
    log "packaging the binaries of $bin_dir as $name"
    if ! podman build --quiet --network host --target packaged \
         --build-arg RUNTIME_IMAGE="$base" -f "$repo/deploy/Dockerfile" -t "$name" \
         "$context" >"$dir/build.log" 2>&1; then
      rm -rf "$context"
      log "podman build failed:"; cat "$dir/build.log" >&2
      exit 1
    fi
    rm -rf "$context"
  fi
  podman images --filter reference='localhost/beckon:packaged-*' --filter until=1h \
    --format '{{.Repository}}:{{.Tag}}' | while read -r old; do
      [ "$old" = "$name" ] || podman rmi "$old" >/dev/null 2>&1 || true
    done
  echo "$name"
}

# Whether the pod or container NAME is a test's (beckon-e2e-<pid>-…; podman-compose names its
# containers <project>_<service>_1 and its pod pod_<project>) whose process is gone.
orphaned() {
  [[ $1 =~ ^(pod_)?beckon-e2e-([0-9]+)- ]] && ! kill -0 "${BASH_REMATCH[2]}" 2>/dev/null
}

clean() {
  local name
  # Without Podman (a new machine, before any image test installed it) no container exists.
  type -P podman >/dev/null || return 0
  podman pod ps --format '{{.Name}}' | while read -r name; do
    orphaned "$name" || continue
    log "removing the pod $name: its test is gone"
    podman pod rm --force --time 0 "$name" >/dev/null 2>&1 || true
  done
  podman ps --all --format '{{.Names}}' | while read -r name; do
    orphaned "$name" || continue
    log "removing the container $name: its test is gone"
    podman rm --force --time 0 "$name" >/dev/null 2>&1 || true
  done
}

case "${1:-}" in
  base | build)
    as_root mkdir -p "$dir"
    # One install and one build at a time: tests run in parallel, and two apt-get runs at
    # once would fight over dpkg's lock.
    exec 9>"$dir/.lock"
    flock 9
    ensure_tools
    ensure_base
    if [ "$1" = base ]; then echo "$base"; else build "${2:-}"; fi
    ;;
  podman) shift; exec_as_root podman "$@" ;;
  compose) shift; exec_as_root "${BECKON_PODMAN_COMPOSE:-podman-compose}" "$@" ;;
  clean) clean ;;
  *)
    sed -n '2,19p' "$0" >&2
    exit 2
    ;;
esac
