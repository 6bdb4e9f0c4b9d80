#!/usr/bin/env bash
# Container images without a registry.
#   images.sh pause          build the static pause image (cached), print its archive
#   images.sh coredns        the same for the cluster DNS (CoreDNS built by build-binaries.sh)
#   images.sh base [FLAVOR]  debootstrap a bookworm base image (cached), print its name:
#                            python (default: python3, pip, venv), debian (the bare system) or
#                            runtime (Python's runtime alone: no pip, ensurepip, apt, dpkg or shell)
#   images.sh build [DIR]... buildah-build images/<dir>/Dockerfile (default: every one in
#                            images/) on the local base standing in for its default BASE_IMAGE
#                            (python:* or debian:*) and RUNTIME_IMAGE (python:*: the runtime
#                            flavor), import into the cluster's containerd
#   images.sh test           the same for hack/testdata/* (images our own tests use)
#   images.sh run DIR CMD... run CMD (no shell) in a new container of images/<dir>'s built image,
#                            with buildah's chroot isolation: no container runtime or node needed
#   images.sh size [DIR]...  one JSON line per built image (or image name:tag): its layers' bytes
#                            unpacked (the tars the node imports) and gzip-compressed (what a
#                            registry would store)
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
# python3-system: the system the runtime flavor is cut from (runtime_base_image).
declare -A BASE_PACKAGES=(
  [python]="python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
  [debian]="ca-certificates"
  [python3-system]="python3,ca-certificates,netbase,libstdc++6"
)
# The runtime flavor: what a venv built on the python flavor needs to run, and no more. It keeps
# the files of these packages and of everything they depend on, but for the package management
# the closure would otherwise drag in (dpkg: python3-minimal's Depends; debconf, and perl through
# it: tzdata's). libstdc++6: the C++ extensions of wheels (LightGBM, pyarrow, DuckDB) link it, as
# distroless's python image (on its cc image) has it.
RUNTIME_ROOTS="python3 libstdc++6 tzdata netbase base-files"
RUNTIME_EXCLUDED="dpkg debconf debconf-2.0 perl-base install-info"
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

# Replaces <rootfs> by a root holding only the files of RUNTIME_ROOTS' dependency closure (dpkg's
# record of each package's files), the CA bundle and the accounts, like distroless's python
# image: a venv's interpreter, its shared libraries, time zones, nothing to install or run with.
runtime_rootfs() { # <rootfs>
  local rootfs="$1" out=/.runtime p dep alt name f link
  local -A seen=()
  local queue=() alts=()
  # shellcheck disable=SC2016 # dpkg-query's formats, not the shell's
  local depends='${Pre-Depends},${Depends}' status='${Status}'
  read -ra queue <<<"${RUNTIME_ROOTS}"
  mkdir "${rootfs}${out}"
  while [[ ${#queue[@]} -gt 0 ]]; do
    p="${queue[0]}"
    queue=("${queue[@]:1}")
    [[ -n "${seen[${p}]:-}" ]] && continue
    seen[${p}]=1
    # Each dependency is a list of alternatives: the first one installed is the one in use.
    while IFS= read -r dep; do
      [[ -z "${dep// /}" ]] && continue
      IFS='|' read -ra alts <<<"${dep}"
      for alt in "${alts[@]}"; do
        name="$(sed 's/([^)]*)//; s/:any//; s/ //g' <<<"${alt}")"
        [[ " ${RUNTIME_EXCLUDED} " == *" ${name} "* ]] && continue
        if chroot "${rootfs}" dpkg-query -W -f="${status}" "${name}" 2>/dev/null | grep -q ' installed$'; then
          queue+=("${name}")
          break
        fi
      done
    done < <(chroot "${rootfs}" dpkg-query -W -f="${depends}\n" "${p}" | tr ',' '\n')
  done
  log "runtime base packages: ${!seen[*]}"
  # usrmerge: /bin, /lib... are links into /usr, which dpkg's lists still name; made first, so
  # that the files copied below land in /usr.
  for link in bin lib lib32 lib64 libx32 sbin; do
    if [[ -L "${rootfs}/${link}" ]]; then cp -a "${rootfs}/${link}" "${rootfs}${out}/"; fi
  done
  for p in "${!seen[@]}"; do chroot "${rootfs}" dpkg-query -L "${p}"; done | sort -u |
    while IFS= read -r f; do
      # Through a usrmerge link, to where the file is (cp --parents makes directories, not links).
      link="${f#/}" && link="${link%%/*}"
      if [[ -L "${rootfs}/${link}" ]]; then f="/usr${f}"; fi
      # Directories come with their files (--parents); paths dpkg was told to skip do not exist.
      if [[ -f "${rootfs}${f}" || -L "${rootfs}${f}" ]]; then
        (cd "${rootfs}" && cp -a --parents ".${f}" "${rootfs}${out}/")
      fi
    done
  # Byte code of the standard library, which Debian's packages compile when installed rather than
  # ship (the images run on read-only root filesystems: nothing would write it later).
  (cd "${rootfs}" && find ./usr/lib/python3* -type d -name __pycache__ -prune -print) |
    while IFS= read -r f; do
      if [[ -d "${rootfs}${out}/${f%/__pycache__}" ]]; then (cd "${rootfs}" && cp -a --parents "${f}" "${rootfs}${out}/"); fi
    done
  # No package's files: the CA bundle update-ca-certificates made, the accounts, the loader's
  # configuration; then the directories every image has.
  (cd "${rootfs}" && cp -a --parents ./etc/ssl/certs ./etc/passwd ./etc/group ./etc/ld.so.conf \
    ./etc/ld.so.conf.d "${rootfs}${out}/")
  mkdir -p "${rootfs}${out}"/{tmp,var/tmp,root,dev,proc,sys,run}
  chmod 1777 "${rootfs}${out}/tmp" "${rootfs}${out}/var/tmp"
  # The loader's cache of the libraries that are left, made by the full system's ldconfig.
  chroot "${rootfs}" ldconfig -r "${out}"
  mv "${rootfs}${out}" "${rootfs}.runtime"
  rm -rf "${rootfs}"
  mv "${rootfs}.runtime" "${rootfs}"
}

# Prints the name of the runtime base image: cut from the python3-system flavor's by
# runtime_rootfs, cached as base_image caches its own.
runtime_base_image() {
  local system key name archive ctr mnt rootfs t0=$SECONDS
  system="$(base_image python3-system)"
  key="$(echo "${system} ${RUNTIME_ROOTS} ${RUNTIME_EXCLUDED}" |
    cat - <(declare -f runtime_base_image runtime_rootfs image_from_rootfs) | sha256sum | cut -c1-16)"
  name="localhost/modelyard/runtime-base:bookworm-${key}"
  archive="${IMAGE_CACHE}/runtime-base-${key}.tar"
  if [[ -f "${archive}" ]]; then
    bah inspect --type image "${name}" >/dev/null 2>&1 ||
      bah pull --quiet "oci-archive:${archive}" >/dev/null
    log "base image ${name} (cached)"
    echo "${name}"
    return
  fi
  log "building base image ${name} from ${system}"
  rootfs="$(mktemp -d "${IMAGE_CACHE}/rootfs.XXXXXX")"
  ctr="$(bah from --quiet "${system}")"
  mnt="$(bah mount "${ctr}")"
  cp -a "${mnt}/." "${rootfs}/"
  bah umount "${ctr}" >/dev/null
  bah rm "${ctr}" >/dev/null
  runtime_rootfs "${rootfs}"
  image_from_rootfs "${rootfs}" "${name}" --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd '["python3"]'
  rm -rf "${rootfs}"
  bah push --quiet "${name}" "oci-archive:${archive}.tmp:${name}"
  mv "${archive}.tmp" "${archive}"
  log "base image built in $((SECONDS - t0))s -> ${archive}"
  echo "${name}"
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
  local args=(--build-arg "BASE_IMAGE=${base}")
  # A runtime stage on a python:* image gets the runtime flavor: the same /usr/bin/python3 as the
  # python flavor's, without pip, venv or a package manager.
  default="$(sed -n 's/^ARG RUNTIME_IMAGE=//p' "${dockerfile}" | head -1)"
  case "${default}" in
    "") ;;
    python:*) args+=(--build-arg "RUNTIME_IMAGE=$(runtime_base_image)") ;;
    *) die "${dockerfile}: ARG RUNTIME_IMAGE defaults to '${default}'; images.sh has a python:* runtime base" ;;
  esac
  log "building ${name} from ${dockerfile#"${REPO_ROOT}"/}"
  # --force-rm: a failed build leaves no working container (and its mount) behind.
  (cd "${REPO_ROOT}" && bah bud --quiet --layers --force-rm "${args[@]}" \
    -t "${name}" -f "${dockerfile}" . >/dev/null)
  log "built ${name} in $((SECONDS - t0))s"
  import_image "${name}"
}

# image_size <name>: one JSON line, {"image", "unpacked", "compressed", "layers": [[unpacked,
# compressed]...]} in bytes. Unpacked: the layer tars in buildah's storage, as the node imports
# them. Compressed: the same layers gzipped, as pushed to a registry (an OCI layout, removed).
image_size() {
  local name="$1" tmp
  bah inspect --type image "${name}" >/dev/null 2>&1 || die "no image ${name}: images.sh build first"
  tmp="$(mktemp -d "${IMAGE_CACHE}/size.XXXXXX")"
  bah push --quiet --compression-format gzip "${name}" "oci:${tmp}/layout" >/dev/null
  bah inspect --type image --format '{{.Manifest}}' "${name}" >"${tmp}/manifest.json"
  python3 - "${name}" "${tmp}" <<'PY'
import json, sys
from pathlib import Path
name, tmp = sys.argv[1], Path(sys.argv[2])
unpacked = [layer["size"] for layer in json.loads((tmp / "manifest.json").read_text())["layers"]]
layout = tmp / "layout"
blob = lambda digest: layout / "blobs" / digest.replace(":", "/")
index = json.loads((layout / "index.json").read_text())
manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
compressed = [layer["size"] for layer in manifest["layers"]]
print(json.dumps({"image": name, "unpacked": sum(unpacked), "compressed": sum(compressed),
                  "layers": [list(pair) for pair in zip(unpacked, compressed, strict=True)]}))
PY
  rm -rf "${tmp}"
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
  base) if [[ "${1:-python}" == runtime ]]; then runtime_base_image; else base_image "${1:-python}"; fi ;;
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
  run)
    [[ $# -ge 2 ]] || die "usage: images.sh run <dir> <command>..."
    ctr="$(bah from --quiet "docker.io/modelyard/$1:${IMAGE_TAG}")"
    shift
    rc=0
    bah run --isolation chroot "${ctr}" -- "$@" || rc=$?
    bah rm "${ctr}" >/dev/null
    exit "${rc}"
    ;;
  size)
    dirs=("$@")
    if [[ ${#dirs[@]} -eq 0 ]]; then
      for f in "${REPO_ROOT}"/images/*/Dockerfile; do dirs+=("$(basename "$(dirname "${f}")")"); done
    fi
    for d in "${dirs[@]}"; do
      # A name with a tag is an image's own name (e.g. one built with another IMAGE_TAG).
      if [[ "${d}" == *:* ]]; then image_size "${d}"; else image_size "docker.io/modelyard/${d}:${IMAGE_TAG}"; fi
    done
    ;;
  *) die "usage: images.sh pause|coredns|base [flavor]|build [dir...]|test [dir...]|run <dir> <command>...|size [dir...]" ;;
esac
