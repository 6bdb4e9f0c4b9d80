#!/usr/bin/env bash
# One lock of dependency versions for every image: uv.lock, resolved by uv from pyproject.toml's
# dependencies and extras, with the hashes of every file. Each image installs an export of it
# limited to its own extra (images/<image>/requirements.txt), so the trainer and the server get
# the same scikit-learn, numpy and joblib by construction.
#   lock.sh          re-resolve (keeps the versions locked before where pyproject allows; needs PyPI)
#   lock.sh upgrade  the same, every package at its newest allowed version
#   lock.sh check    offline: fails when pyproject.toml changed without re-locking, or when an
#                    export differs from the lock
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UV="${UV:-${REPO_ROOT}/.venv/bin/uv}"
[[ -x "${UV}" ]] || die "uv not found at ${UV} (make install)"
# The images' Python is the base's (bookworm's 3.11); never download another.
export UV_PYTHON_DOWNLOADS=never
# image:extra
IMAGES=(operator:operator trainer:train server:serve dask-operator:dask-operator)

# Prints images/<image>/requirements.txt as the lock says it should be.
export_for() { # <extra>
  # --no-emit-project: the package itself is installed from source in its own layer.
  "${UV}" export --quiet --frozen --no-emit-project --no-default-groups --extra "$1" \
    --format requirements.txt --project "${REPO_ROOT}" --no-header
}

header() { # <image> <extra>
  printf '# The %s image'"'"'s dependencies (extra "%s"), exported from uv.lock by hack/lock.sh:\n' "$1" "$2"
  printf '# edit pyproject.toml, then `make lock`. pip installs it with --require-hashes.\n'
}

cd "${REPO_ROOT}"
case "${1:-lock}" in
  lock | upgrade)
    args=()
    [[ "${1:-}" == upgrade ]] && args=(--upgrade)
    "${UV}" lock --project "${REPO_ROOT}" "${args[@]}"
    for pair in "${IMAGES[@]}"; do
      image="${pair%%:*}" extra="${pair#*:}"
      { header "${image}" "${extra}"; export_for "${extra}"; } >"images/${image}/requirements.txt"
      log "images/${image}/requirements.txt: $(grep -c '^[a-z0-9]' "images/${image}/requirements.txt") packages"
    done
    ;;
  check)
    "${UV}" lock --check --offline --quiet --project "${REPO_ROOT}" ||
      die "uv.lock does not match pyproject.toml's dependencies: run \`make lock\`"
    for pair in "${IMAGES[@]}"; do
      image="${pair%%:*}" extra="${pair#*:}"
      diff -u "images/${image}/requirements.txt" <(header "${image}" "${extra}"; export_for "${extra}") >&2 ||
        die "images/${image}/requirements.txt is not the export of uv.lock: run \`make lock\`"
    done
    ;;
  *) die "usage: lock.sh [lock|upgrade|check]" ;;
esac
