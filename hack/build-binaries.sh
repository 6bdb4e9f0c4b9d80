#!/usr/bin/env bash
# Builds etcd, the Kubernetes binaries, CoreDNS and Helm (and, asked by name, versitygw and
# argocd) from the Go module proxy and caches them by version under
# ${MODELYARD_CACHE_DIR}/bin/<component>-<version>/.
# A warm run only checks the cache.
# Usage: build-binaries.sh [etcd] [kubernetes] [coredns] [helm] [versitygw] [argocd]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
# Sane, reproducible flags: no VCS stamping (the wrapper modules live in our repo,
# not upstream's), no test-only code, and the tags upstream releases use.
export GOFLAGS="-buildvcs=false -trimpath"
BUILD_TAGS="selinux,notest,grpcnotrace"
# Two cores are shared with other work; Go's default already uses both, -p caps it.
GO_PARALLEL="${GO_PARALLEL:-2}"

command -v go >/dev/null || die "go is not installed (need Go >= 1.24)"

# Prints one line per 100 packages that `go build -v` reports, so a cold build that
# takes many minutes visibly progresses without flooding the log.
progress() { # <label> <total package count>
  local label="$1" total="$2" start=$SECONDS
  awk -v label="$label" -v total="$total" -v start="$start" '
    { n++; if (n % 100 == 0) { printf "[%s] %s: compiled %d/%d packages\n", strftime("%H:%M:%S"), label, n, total; fflush() } }
    END { printf "[%s] %s: compiled %d packages\n", strftime("%H:%M:%S"), label, n }'
}

# go build -o <dir> over several main packages, into a temp dir that is renamed
# into place only on success, so an interrupted build never looks cached.
go_build() { # <label> <module dir> <dest dir> <ldflags> <package>...
  local label="$1" moddir="$2" dest="$3" ldflags="$4"; shift 4
  # The cache is complete when every binary is there: adding one to the list (a new
  # version of this script) rebuilds, cheaply, from Go's build cache.
  local pkg complete=1
  for pkg in "$@"; do
    [[ -x "${dest}/$(basename "${pkg}")" ]] || complete=0
  done
  if [[ -f "${dest}/.complete" && "${complete}" == 1 ]]; then
    log "${label}: cached in ${dest}"
    return
  fi
  local total tmp
  log "${label}: resolving packages (the first run downloads the modules)"
  total="$(cd "${moddir}" && go list -tags "${BUILD_TAGS}" -deps "$@" | wc -l)"
  tmp="${dest}.tmp.$$"
  rm -rf "${tmp}" && mkdir -p "${tmp}"
  log "${label}: building $* (${total} packages; a cold build takes many minutes)"
  local t0=$SECONDS
  (cd "${moddir}" && CGO_ENABLED=0 go build -v -p "${GO_PARALLEL}" -tags "${BUILD_TAGS}" \
     -ldflags "-s -w ${ldflags}" -o "${tmp}/" "$@" 2>&1) | progress "${label}" "${total}"
  [[ "${PIPESTATUS[0]}" == 0 ]] || die "${label}: go build failed"
  touch "${tmp}/.complete"
  rm -rf "${dest}" && mv "${tmp}" "${dest}"
  log "${label}: built in $((SECONDS - t0))s -> ${dest}"
}

# A version other than the one pinned in a wrapper's go.mod is built from a copy of
# the wrapper whose requirements are all dropped and re-resolved from the wanted
# version (leftover indirect requirements would pull newer sibling modules in).
wrapper_for() { # <wrapper dir> <module> <pinned> <wanted> [staging version]
  local dir="$1" mod="$2" pinned="$3" wanted="$4" staging="${5:-}"
  if [[ "${pinned}" == "${wanted}" ]]; then
    echo "${dir}"
    return
  fi
  local copy
  copy="${MODELYARD_CACHE_DIR}/build/$(basename "${dir}")-${wanted}"
  rm -rf "${copy}" && mkdir -p "${copy}" && cp -r "${dir}/." "${copy}/"
  (
    cd "${copy}"
    awk '/^require \(/ { skip = 1; next } skip && /^\)/ { skip = 0; next } skip || /^require / { next } { print }' \
      go.mod >go.mod.new
    mv go.mod.new go.mod && rm -f go.sum
    go mod edit -require="${mod}@${wanted}"
    if [[ -n "${staging}" ]]; then
      local m
      for m in $(awk '$1 == "replace" { print $2 }' go.mod); do
        go mod edit -replace="${m}=${m}@${staging}"
      done
    fi
    go mod tidy >&2
  )
  echo "${copy}"
}

build_etcd() {
  local pinned moddir
  pinned="$(gomod_version "${HACK_DIR}/etcd-build/go.mod" go.etcd.io/etcd/server/v3)"
  moddir="$(wrapper_for "${HACK_DIR}/etcd-build" go.etcd.io/etcd/server/v3 "${pinned}" "${ETCD_VERSION}")"
  go_build "etcd ${ETCD_VERSION}" "${moddir}" "${ETCD_BIN_DIR}" "" modelyard.dev/hack/etcd
}

build_kubernetes() {
  local pinned moddir minor major ldflags v
  pinned="$(gomod_version "${HACK_DIR}/k8s-build/go.mod" k8s.io/kubernetes)"
  moddir="$(wrapper_for "${HACK_DIR}/k8s-build" k8s.io/kubernetes "${pinned}" "${K8S_VERSION}" "v0.${K8S_VERSION#v1.}")"
  major="$(cut -d. -f1 <<<"${K8S_VERSION#v}")"
  minor="$(cut -d. -f2 <<<"${K8S_VERSION#v}")"
  ldflags=""
  # Upstream's hack/lib/version.sh stamps both packages; --version and the API's
  # /version endpoint read them.
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${v}.gitVersion=${K8S_VERSION} -X ${v}.gitMajor=${major} -X ${v}.gitMinor=${minor}"
    ldflags+=" -X ${v}.gitTreeState=clean -X ${v}.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  # The kubelet is built static too (upstream uses cgo for it): a second,
  # cgo-enabled configuration would recompile nearly every package again, and
  # nothing this cluster does needs libc's resolver or user lookup.
  go_build "kubernetes ${K8S_VERSION}" "${moddir}" "${K8S_BIN_DIR}" "${ldflags}" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
}

build_helm() {
  local pinned moddir client_go minor ldflags p
  pinned="$(gomod_version "${HACK_DIR}/helm-build/go.mod" helm.sh/helm/v3)"
  moddir="$(wrapper_for "${HACK_DIR}/helm-build" helm.sh/helm/v3 "${pinned}" "${HELM_VERSION}")"
  ldflags="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  # Without these, `helm template` and `helm lint` assume Kubernetes v1.20.0 and refuse any
  # chart with a newer kubeVersion. Upstream's Makefile stamps 1.<client-go minor>, the
  # newest version the client it was built with knows.
  client_go="$(gomod_version "${moddir}/go.mod" k8s.io/client-go)"
  minor="$(cut -d. -f2 <<<"${client_go#v}")"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X ${p}.k8sVersionMajor=1 -X ${p}.k8sVersionMinor=${minor}"
  done
  go_build "helm ${HELM_VERSION}" "${moddir}" "${HELM_BIN_DIR}" "${ldflags}" helm.sh/helm/v3/cmd/helm
}

build_coredns() {
  local pinned moddir
  pinned="$(gomod_version "${HACK_DIR}/coredns-build/go.mod" github.com/coredns/coredns)"
  moddir="$(wrapper_for "${HACK_DIR}/coredns-build" github.com/coredns/coredns "${pinned}" "${COREDNS_VERSION}")"
  go_build "coredns ${COREDNS_VERSION}" "${moddir}" "${COREDNS_BIN_DIR}" "" modelyard.dev/hack/coredns
}

# Objects and multipart parts as plain files: a 2 GB upload costs the server disk, not memory.
# Asked by name (bin-path.sh versitygw), never in the default list: by hack/s3.sh, the cluster's
# S3 server, and by the tests and the benchmark that run one of their own.
build_versitygw() {
  go_build "versitygw ${VERSITYGW_VERSION}" "${HACK_DIR}/versitygw-build" "${VERSITYGW_BIN_DIR}" \
    "-X main.Version=${VERSITYGW_VERSION}" github.com/versity/versitygw/cmd/versitygw
}

# Argo CD's one multi-call binary, for tests/e2e/test_argocd.py only (its fixture asks for it),
# never the default list. Upstream builds ./cmd as argocd and runs the components through links
# named after them (cmd/main.go dispatches on its own name): so do we.
build_argocd() {
  local pinned
  pinned="$(gomod_version "${HACK_DIR}/argocd-build/go.mod" github.com/argoproj/argo-cd/v3)"
  # Each release needs its own copy of upstream's replace block and its own gitops-engine
  # version (see the wrapper's go.mod): re-resolving another version from this one would not build.
  [[ "${ARGOCD_VERSION}" == "${pinned}" ]] ||
    die "argocd: ${pinned} is pinned; for ${ARGOCD_VERSION}, rewrite hack/argocd-build/go.mod from its go.mod"
  if [[ -f "${ARGOCD_BIN_DIR}/.complete" && -x "${ARGOCD_BIN_DIR}/argocd" &&
        -x "${ARGOCD_BIN_DIR}/git-verify-wrapper.sh" ]]; then
    log "argocd ${ARGOCD_VERSION}: cached in ${ARGOCD_BIN_DIR}"
    return
  fi
  if [[ ! -x "${ARGOCD_BIN_DIR}/argocd" ]]; then
    # The version stamps upstream's Makefile sets (`argocd version`, the components' startup log).
    local common=github.com/argoproj/argo-cd/v3/common ldflags
    ldflags="-X ${common}.version=${ARGOCD_VERSION#v} -X ${common}.gitTag=${ARGOCD_VERSION}"
    ldflags+=" -X ${common}.gitTreeState=clean"
    ldflags+=" -X ${common}.kubectlVersion=$(gomod_version "${HACK_DIR}/argocd-build/go.mod" k8s.io/client-go)"
    go_build "argocd ${ARGOCD_VERSION}" "${HACK_DIR}/argocd-build" "${ARGOCD_BIN_DIR}" "${ldflags}" \
      github.com/argoproj/argo-cd/v3/cmd
    mv "${ARGOCD_BIN_DIR}/cmd" "${ARGOCD_BIN_DIR}/argocd"
  fi
  # What upstream's image puts beside the binary (its Dockerfile): the links, and the scripts
  # the repo server runs from PATH (git-verify-wrapper.sh on every manifest generation).
  local link module_dir
  for link in argocd-application-controller argocd-repo-server argocd-server; do
    ln -sfn argocd "${ARGOCD_BIN_DIR}/${link}"
  done
  module_dir="$(cd "${HACK_DIR}/argocd-build" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)"
  install -m 0755 "${module_dir}/hack/gpg-wrapper.sh" "${module_dir}/hack/git-verify-wrapper.sh" \
    "${ARGOCD_BIN_DIR}/"
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(etcd kubernetes coredns helm)
start=$SECONDS
for c in "${components[@]}"; do
  case "${c}" in
    etcd) build_etcd ;;
    kubernetes) build_kubernetes ;;
    coredns) build_coredns ;;
    helm) build_helm ;;
    versitygw) build_versitygw ;;
    argocd) build_argocd ;;
    *) die "unknown component ${c} (etcd, kubernetes, coredns, helm, versitygw, argocd)" ;;
  esac
done
log "binaries ready in $((SECONDS - start))s"
