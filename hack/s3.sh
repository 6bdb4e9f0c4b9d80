#!/usr/bin/env bash
# The S3-compatible server of make demo and the e2e tier: versitygw (built from Go modules by
# build-binaries.sh) with its posix backend, so objects are plain files and a multi-gigabyte
# upload costs disk, not memory. It listens on the node's bridge address, where pods reach it,
# and keeps everything under ${S3_DIR} (~/.cache/modelyard/s3): data/ (one directory per
# bucket), iam/ (extra accounts) and credentials (the root account, generated once, mode 600).
# The cluster's state dir holds only its pid and logs: cluster-down stops it, cluster-up starts
# it again on the same objects.
#   s3.sh up                      start it if the node's address is up (running: nothing to do)
#   s3.sh down                    stop it
#   s3.sh env                     print export lines for a client on this machine: endpoint and
#                                 root credentials (`eval "$(hack/s3.sh env)"`)
#   s3.sh add-account <key> <secret>  an extra account with full access, for tests that need
#                                     particular credentials to work (admin API on loopback)
#   s3.sh remove-account <key>
#   s3.sh wipe                    stop it and delete its objects, accounts and credentials
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Generates the root credentials on first use.
ensure_credentials() {
  [[ -s "${S3_CREDENTIALS}" ]] && return
  mkdir -p "${S3_DIR}"
  # Random, and the secret with the characters (+, /, =) that test quoting on the way.
  (
    umask 077
    printf 'ROOT_ACCESS_KEY_ID=MY%s\nROOT_SECRET_ACCESS_KEY=%s\n' \
      "$(openssl rand -hex 9 | tr a-f A-F)" "$(openssl rand -base64 30)" >"${S3_CREDENTIALS}.tmp"
  )
  mv "${S3_CREDENTIALS}.tmp" "${S3_CREDENTIALS}"
  log "generated S3 root credentials in ${S3_CREDENTIALS}"
}

up() {
  # (grep without -q reads all of ip's output: no SIGPIPE failing the pipeline)
  if ! ip -o addr show | grep -F " ${NODE_IP}/" >/dev/null; then
    log "no node address ${NODE_IP} on this machine (no node runs): S3 server not started"
    return
  fi
  if pid_of versitygw >/dev/null; then
    return
  fi
  local binary
  binary="$("${HACK_DIR}/bin-path.sh" versitygw)"
  ensure_credentials
  mkdir -p "${S3_DIR}/data" "${S3_DIR}/iam" "${LOG_DIR}"
  (
    # The root account by environment, never on the command line (visible in ps).
    set -a
    # shellcheck source=/dev/null
    source "${S3_CREDENTIALS}"
    set +a
    # The access log, under the state dir, also puts the state dir on the command line, which
    # is how pid_of (and cluster-down) tell the server is this cluster's.
    start_daemon versitygw "${binary}" --port "${NODE_IP}:${S3_PORT}" \
      --admin-port "127.0.0.1:${S3_ADMIN_PORT}" --iam-dir "${S3_DIR}/iam" \
      --access-log "${LOG_DIR}/versitygw-access.log" --quiet posix "${S3_DIR}/data"
  )
  # Any answer will do (403 without a signature).
  wait_for "the S3 server on ${NODE_IP}:${S3_PORT}" 30 curl -s -o /dev/null --max-time 2 \
    "http://${NODE_IP}:${S3_PORT}/"
  log "S3 server (versitygw) at http://${NODE_IP}:${S3_PORT}, data in ${S3_DIR}/data"
}

# admin <command> <args>...: versitygw's admin tool as the root account.
admin() {
  local binary
  pid_of versitygw >/dev/null || die "the S3 server is not running (s3.sh up)"
  binary="$("${HACK_DIR}/bin-path.sh" versitygw)"
  (
    # shellcheck source=/dev/null
    source "${S3_CREDENTIALS}"
    export ADMIN_ACCESS_KEY_ID="${ROOT_ACCESS_KEY_ID}" ADMIN_SECRET_ACCESS_KEY="${ROOT_SECRET_ACCESS_KEY}"
    "${binary}" admin --endpoint-url "http://127.0.0.1:${S3_ADMIN_PORT}" "$@" >/dev/null
  )
}

add_account() { # <access key> <secret>
  [[ -n "$1" && -n "$2" ]] || die "usage: s3.sh add-account <access key> <secret>"
  admin create-user --access "$1" --secret "$2" --role admin 2>/dev/null ||
    admin update-user --access "$1" --secret "$2" --role admin
}

case "${1:-}" in
  up) up ;;
  down) stop_daemon versitygw ;;
  env)
    ensure_credentials
    # shellcheck source=/dev/null
    source "${S3_CREDENTIALS}"
    printf 'export MODELYARD_S3_ENDPOINT=%q AWS_ACCESS_KEY_ID=%q AWS_SECRET_ACCESS_KEY=%q\n' \
      "http://${NODE_IP}:${S3_PORT}" "${ROOT_ACCESS_KEY_ID}" "${ROOT_SECRET_ACCESS_KEY}"
    ;;
  add-account) add_account "${2:-}" "${3:-}" ;;
  remove-account) admin delete-user --access "${2:?usage: s3.sh remove-account <access key>}" ;;
  wipe)
    stop_daemon versitygw
    rm -rf "${S3_DIR}"
    log "removed ${S3_DIR}"
    ;;
  *) die "usage: s3.sh up|down|env|add-account <access key> <secret>|remove-account <access key>|wipe" ;;
esac
