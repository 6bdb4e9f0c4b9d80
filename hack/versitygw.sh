#!/usr/bin/env bash
# Prints the path of a cached versitygw (the S3 server of the workloads benchmark: objects
# and multipart parts are plain files, so a 2 GB upload costs disk, not memory), building
# it first if needed from the version pinned in hack/versitygw-build/go.mod (progress on
# stderr). Caching follows build-binaries.sh: ${MODELYARD_CACHE_DIR}/bin/versitygw-<version>/,
# filled through a temp dir renamed into place, so an interrupted build never looks cached.
# Usage: versitygw.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODDIR="${HACK_DIR}/versitygw-build"
VERSION="$(gomod_version "${MODDIR}/go.mod" github.com/versity/versitygw)"
DEST="${MODELYARD_CACHE_DIR}/bin/versitygw-${VERSION}"

if [[ ! -f "${DEST}/.complete" || ! -x "${DEST}/versitygw" ]]; then
  command -v go >/dev/null || die "go is not installed (need Go >= 1.26)"
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="-buildvcs=false -trimpath"
  tmp="${DEST}.tmp.$$"
  rm -rf "${tmp}" && mkdir -p "${tmp}"
  log "versitygw ${VERSION}: building (~600 packages: 1-3 minutes on two cores, once)"
  t0=$SECONDS
  # nice: the machine is shared, and the benchmark that waits for this is not yet timing.
  (cd "${MODDIR}" && CGO_ENABLED=0 nice -n 10 go build -p "${GO_PARALLEL:-2}" \
     -ldflags "-s -w -X main.Version=${VERSION}" -o "${tmp}/" github.com/versity/versitygw/cmd/versitygw) ||
    die "versitygw ${VERSION}: go build failed"
  touch "${tmp}/.complete"
  rm -rf "${DEST}" && mv "${tmp}" "${DEST}"
  log "versitygw ${VERSION}: built in $((SECONDS - t0))s -> ${DEST}"
fi
echo "${DEST}/versitygw"
