#!/usr/bin/env bash
# Container images without a registry.
#   images.sh pause          build the static pause image (cached), print its archive
#   images.sh coredns        the same for the cluster DNS (CoreDNS built by build-binaries.sh)
#   images.sh base [FLAVOR]  debootstrap a bookworm base image (cached), print its name:
#                            python (default: python3, pip, venv) or debian (the bare system)
#   images.sh build [DIR]... buildah-build images/<dir>/Dockerfile (default: every one in
#                            images/) on the local base standing in for its default BASE_IMAGE
#                            (python:* or debian:*), import into the cluster's containerd
#   images.sh test           the same for hack/testdata/* (images our own tests use)
# Needs root (debootstrap, buildah's storage). Images are tagged ${IMAGE_TAG}, never latest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGE_CACHE="${MODELYARD_CACHE_DIR}/images"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
IMAGE_TAG="${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "${REPO_ROOT}/pyproject.toml" | head -1)}"
[[ -n "${IMAGE_TAG}" && "${IMAGE_TAG}" != latest ]] || die "IMAGE_TAG must be set and not 'latest'"
# Packages of the base images, by flavor. python: what python:3.11-slim offers a Dockerfile
# (python, pip, venv, CA certificates); bookworm's python3 is 3.11. debian: what
# debian:bookworm-slim does, for images with no Python (the router).
declare -A BASE_PACKAGES=(
  [python]="python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
  [debian]="ca-certificates"
)
mkdir -p "${IMAGE_CACHE}"

# buildah keeps its storage in our cache rather than /var/lib/containers. RUN steps
# use chroot isolation: no nested runc, which is what breaks in restricted VMs.
bah() {
  buildah --root "${MODELYARD_CACHE_DIR}/buildah/storage" \
    --runroot "${MODELYARD_CACHE_DIR}/buildah/run" --storage-driver overlay "$@"
}
export BUILDAH_ISOLATION=chroot

[[ "$(id -u)" == 0 ]] || die "images.sh needs root (debootstrap and buildah storage)"

# Builds a one-layer image from a root file system directory (<dir>) as <name>.
image_from_rootfs() { # <dir> <name> <buildah config args>...
  local dir="$1" name="$2"; shift 2
  local ctr layer
  layer="$(mktemp "${IMAGE_CACHE}/layer.XXXXXX.tar")"
  # Device nodes and pseudo file systems belong to the runtime, not the image.
  tar -C "${dir}" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "${layer}" .
  ctr="$(bah from scratch)"
  bah add --quiet "${ctr}" "${layer}" / >/dev/null
  bah config "$@" "${ctr}"
  bah commit --quiet --rm --format oci "${ctr}" "${name}" >/dev/null
  rm -f "${layer}"
}

# Commits <dir>, which holds the static binary <binary>, as a one-layer image running
# it, saved as the oci-archive <archive>.
static_image() { # <archive> <image name> <dir> <binary>
  log "building $2"
  image_from_rootfs "$3" "$2" --entrypoint "[\"/$4\"]" --user 65535:65535
  bah push --quiet "$2" "oci-archive:$1.tmp:$2"
  mv "$1.tmp" "$1"
}

pause_image() {
  local key archive tmp
  key="$(cat "${HACK_DIR}/pause/pause.c" <(declare -f pause_image static_image image_from_rootfs) |
    sha256sum | cut -c1-16)"
  archive="${IMAGE_CACHE}/pause-${key}.tar"
  if [[ ! -f "${archive}" ]]; then
    tmp="$(mktemp -d)"
    gcc -static -Os -s -o "${tmp}/pause" "${HACK_DIR}/pause/pause.c"
    static_image "${archive}" "${PAUSE_IMAGE}" "${tmp}" pause
    rm -rf "${tmp}"
  fi
  echo "${archive}"
}

coredns_image() {
  local bin="${COREDNS_BIN_DIR}/coredns" key archive tmp
  "${HACK_DIR}/build-binaries.sh" coredns >&2
  key="$(cat "${bin}" <(declare -f coredns_image static_image image_from_rootfs) | sha256sum | cut -c1-16)"
  archive="${IMAGE_CACHE}/coredns-${key}.tar"
  if [[ ! -f "${archive}" ]]; then
    tmp="$(mktemp -d)"
    cp "${bin}" "${tmp}/coredns"
    static_image "${archive}" "${COREDNS_IMAGE}" "${tmp}" coredns
    rm -rf "${tmp}"
  fi
  echo "${archive}"
}

# Prints the name of the local base image of a flavor (python, debian), building it when its
# content key (the packages and this recipe) has no cached archive.
base_image() { # <flavor>
  local flavor="$1" key name archive rootfs t0=$SECONDS
  [[ -n "${BASE_PACKAGES[${flavor}]:-}" ]] || die "no base image flavor ${flavor} (${!BASE_PACKAGES[*]})"
  local packages="${BASE_PACKAGES[${flavor}]}"
  # The host's own CAs (e.g. a TLS-inspecting egress proxy's) go into the base, so
  # `pip install` in RUN steps reaches PyPI exactly when the host's pip does.
  local host_cas=()
  shopt -s nullglob
  host_cas=(/usr/local/share/ca-certificates/*.crt)
  shopt -u nullglob
  key="$(echo "${flavor} ${packages} ${DEBIAN_MIRROR} ${DEBIAN_SECURITY_MIRROR}" |
    cat - <(declare -f base_image image_from_rootfs) "${host_cas[@]}" | sha256sum | cut -c1-16)"
  name="localhost/modelyard/${flavor}-base:bookworm-${key}"
  archive="${IMAGE_CACHE}/${flavor}-base-${key}.tar"
  if [[ -f "${archive}" ]]; then
    bah inspect --type image "${name}" >/dev/null 2>&1 ||
      bah pull --quiet "oci-archive:${archive}" >/dev/null
    log "base image ${name} (cached)"
    echo "${name}"
    return
  fi
  log "building base image ${name} with debootstrap (about a minute)"
  rootfs="$(mktemp -d "${IMAGE_CACHE}/rootfs.XXXXXX")"
  debootstrap --variant=minbase --include="${packages}" bookworm "${rootfs}" "${DEBIAN_MIRROR}" \
    >"${IMAGE_CACHE}/debootstrap.log" 2>&1 || die "debootstrap failed; see ${IMAGE_CACHE}/debootstrap.log"
  # debootstrap configures the release alone; a Dockerfile's `apt-get install` must get the
  # fixed packages too, as it does on Debian's own images.
  cat >"${rootfs}/etc/apt/sources.list" <<SOURCES
deb ${DEBIAN_MIRROR} bookworm main
deb ${DEBIAN_MIRROR} bookworm-updates main
deb ${DEBIAN_SECURITY_MIRROR} bookworm-security main
SOURCES
  # Dockerfiles written for python:3.11-slim `pip install` into the system Python;
  # Debian marks it externally managed (PEP 668), the official image does not.
  rm -f "${rootfs}"/usr/lib/python3*/EXTERNALLY-MANAGED
  if [[ ${#host_cas[@]} -gt 0 ]]; then
    cp "${host_cas[@]}" "${rootfs}/usr/local/share/ca-certificates/"
    chroot "${rootfs}" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the base"
  fi
  # What Debian's slim images leave out, now and for whatever a Dockerfile installs later:
  # documentation but the licenses, manual pages, translations (~50 MB), apt's package caches.
  cat >"${rootfs}/etc/dpkg/dpkg.cfg.d/modelyard-slim" <<'EXCLUDES'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EXCLUDES
  printf 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' >"${rootfs}/etc/apt/apt.conf.d/modelyard-slim"
  find "${rootfs}/usr/share/doc" -type f ! -name copyright -delete
  find "${rootfs}/usr/share/doc" -depth -type d -empty -delete
  rm -rf "${rootfs}"/usr/share/{man,groff,info,lintian,locale}/* "${rootfs}"/var/cache/apt/*.bin
  rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/*
  local config=(--env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
  if [[ "${flavor}" == python ]]; then
    # pip (in a venv too) verifies with its own certifi bundle unless told otherwise.
    config+=(--env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --cmd '["python3"]')
  else
    config+=(--cmd '["bash"]')
  fi
  image_from_rootfs "${rootfs}" "${name}" "${config[@]}"
  rm -rf "${rootfs}"
  bah push --quiet "${name}" "oci-archive:${archive}.tmp:${name}"
  mv "${archive}.tmp" "${archive}"
  log "base image built in $((SECONDS - t0))s -> ${archive}"
  echo "${name}"
}

# Imports a buildah image into the cluster's containerd (k8s.io namespace, where the
# kubelet looks), if a node is running. A label records buildah's image ID, so an
# unchanged image is not exported and imported again (that takes seconds).
import_image() { # <name>
  local tmp id
  if ! pid_of containerd >/dev/null; then
    log "containerd not running; ${1} stays in buildah storage (make cluster-up, then make images)"
    return
  fi
  ctr_() { ctr --address "${CONTAINERD_SOCK}" -n k8s.io "$@"; }
  id="$(bah images --no-trunc --quiet "$1" | head -1)"
  if ctr_ images ls "name==$1" | grep -qF "modelyard.dev/image-id=${id}"; then
    log "${1} already in containerd"
    return
  fi
  tmp="$(mktemp -u "${IMAGE_CACHE}/import.XXXXXX.tar")"
  bah push --quiet "$1" "docker-archive:${tmp}:$1"
  ctr_ images import "${tmp}" >/dev/null
  ctr_ images label "$1" "modelyard.dev/image-id=${id}" >/dev/null
  rm -f "${tmp}"
  log "imported ${1} into containerd"
}

# build_dockerfile <dockerfile> <image name>: the context is the repo root, as for a
# user's `docker build -f images/<dir>/Dockerfile .`.
build_dockerfile() {
  local dockerfile="$1" name="$2" base default t0=$SECONDS
  # The local base stands in for the image the Dockerfile names by default.
  default="$(sed -n 's/^ARG BASE_IMAGE=//p' "${dockerfile}" | head -1)"
  case "${default}" in
    python:*) base="$(base_image python)" ;;
    debian:*) base="$(base_image debian)" ;;
    *) die "${dockerfile}: ARG BASE_IMAGE defaults to '${default}'; images.sh has python:* and debian:* bases" ;;
  esac
  log "building ${name} from ${dockerfile#"${REPO_ROOT}"/}"
  # --force-rm: a failed build leaves no working container (and its mount) behind.
  (cd "${REPO_ROOT}" && bah bud --quiet --layers --force-rm --build-arg "BASE_IMAGE=${base}" \
    -t "${name}" -f "${dockerfile}" . >/dev/null)
  log "built ${name} in $((SECONDS - t0))s"
  import_image "${name}"
}

build_dir() { # <parent dir> <dir name>
  [[ -f "$1/$2/Dockerfile" ]] || die "no Dockerfile in $1/$2"
  build_dockerfile "$1/$2/Dockerfile" "docker.io/modelyard/$2:${IMAGE_TAG}"
}

cmd="${1:-build}"
[[ $# -gt 0 ]] && shift
case "${cmd}" in
  pause) pause_image ;;
  coredns) coredns_image ;;
  base) base_image "${1:-python}" ;;
  build | test)
    parent="${REPO_ROOT}/images"
    [[ "${cmd}" == test ]] && parent="${HACK_DIR}/testdata"
    dirs=("$@")
    if [[ ${#dirs[@]} -eq 0 ]]; then
      for f in "${parent}"/*/Dockerfile; do
        [[ -f "${f}" ]] && dirs+=("$(basename "$(dirname "${f}")")")
      done
    fi
    [[ ${#dirs[@]} -gt 0 ]] || { log "no Dockerfiles under ${parent}"; exit 0; }
    for d in "${dirs[@]}"; do build_dir "${parent}" "${d}"; done
    ;;
  *) die "usage: images.sh pause|coredns|base|build [dir...]|test [dir...]" ;;
esac
