#!/usr/bin/env bash
# Prints the path of a cached binary (helm, etcd, kube-apiserver, kubelet...),
# building its component first if needed (progress goes to stderr).
# Usage: bin-path.sh <binary>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  helm) component=helm dir="${HELM_BIN_DIR}" ;;
  etcd) component=etcd dir="${ETCD_BIN_DIR}" ;;
  coredns) component=coredns dir="${COREDNS_BIN_DIR}" ;;
  versitygw) component=versitygw dir="${VERSITYGW_BIN_DIR}" ;;
  kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy | kubectl)
    component=kubernetes dir="${K8S_BIN_DIR}" ;;
  *) die "usage: bin-path.sh helm|etcd|coredns|versitygw|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl" ;;
esac
"${HACK_DIR}/build-binaries.sh" "${component}" >&2
echo "${dir}/$1"
