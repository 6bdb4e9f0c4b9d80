#!/usr/bin/env bash
# `make demo`: the quickstart end to end, as a user would run it.
#   cluster (the one KUBECONFIG names if it answers, else the local one from hack/)
#   → S3-compatible server → images → Helm chart → examples/quickstart/ → a prediction.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAMESPACE="${DEMO_NAMESPACE:-modelyard-demo}"
RELEASE_NAMESPACE="${DEMO_RELEASE_NAMESPACE:-modelyard-system}"
PYTHON="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
S3_PORT="${MODELYARD_DEMO_S3_PORT:-9333}"
S3_KEY="modelyard-demo"
S3_SECRET="modelyard-demo-secret"
t_start=$SECONDS
step() { printf '\n\033[1m[%4ds] %s\033[0m\n' "$((SECONDS - t_start))" "$*"; }

# --- cluster --------------------------------------------------------------------------
local_cluster=true
if [[ -n "${KUBECONFIG:-}" && "${KUBECONFIG}" != "${KUBECONFIG_PATH}" ]] &&
  kubectl version --request-timeout=5s >/dev/null 2>&1; then
  local_cluster=false
  step "using the cluster in KUBECONFIG ($(kubectl config current-context))"
  [[ -n "${MODELYARD_S3_ENDPOINT:-}" ]] ||
    die "with your own cluster, set MODELYARD_S3_ENDPOINT to an S3 endpoint its pods reach (and load the images: see README)"
  S3_ENDPOINT="${MODELYARD_S3_ENDPOINT}"
else
  step "local cluster (binaries are built once and cached; a cold build takes many minutes)"
  "${HACK_DIR}/install-deps.sh"
  CLUSTER_NODES=1 "${HACK_DIR}/cluster-up.sh"
  export KUBECONFIG="${KUBECONFIG_PATH}"
  step "S3-compatible server on the node's bridge address ${NODE_IP}:${S3_PORT}"
  # The launcher lives in the state dir, so that the daemon's command line names it and
  # cluster-down can tell it is ours.
  mkdir -p "${MODELYARD_STATE_DIR}/s3"
  printf 'import sys\nfrom moto.server import main\nsys.exit(main(sys.argv[1:]))\n' \
    >"${MODELYARD_STATE_DIR}/s3/server.py"
  start_daemon s3 "${PYTHON}" "${MODELYARD_STATE_DIR}/s3/server.py" -H "${NODE_IP}" -p "${S3_PORT}"
  S3_ENDPOINT="http://${NODE_IP}:${S3_PORT}"
  wait_for "the S3 server" 30 curl -sf "${S3_ENDPOINT}/moto-api/"
  step "images (built on a local Debian base with buildah, imported into the node)"
  "${HACK_DIR}/images.sh" build
fi

# --- operator -------------------------------------------------------------------------
step "Helm chart into ${RELEASE_NAMESPACE}"
"${HACK_DIR}/build-binaries.sh" helm
helm="${HELM_BIN_DIR}/helm"
for ns in "${RELEASE_NAMESPACE}" "${NAMESPACE}"; do
  kubectl create namespace "${ns}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label namespace "${ns}" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
done
kubectl -n "${NAMESPACE}" create secret generic modelyard-s3 --dry-run=client -o yaml \
  --from-literal=AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-${S3_KEY}}" \
  --from-literal=AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-${S3_SECRET}}" | kubectl apply -f - >/dev/null
"${helm}" upgrade --install modelyard "${REPO_ROOT}/charts/modelyard" --namespace "${RELEASE_NAMESPACE}" \
  --set storage.endpoint="${S3_ENDPOINT}" --set storage.credentialsSecret=modelyard-s3 \
  --wait --timeout 5m

# --- quickstart -----------------------------------------------------------------------
step "kubectl apply -f examples/quickstart/ -n ${NAMESPACE}"
applied=$SECONDS
kubectl -n "${NAMESPACE}" apply -f "${REPO_ROOT}/examples/quickstart/"
phase() { kubectl -n "${NAMESPACE}" get "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }
deadline=$((SECONDS + ${DEMO_TIMEOUT:-900}))
last=""
until [[ "$(phase modeldeployment/iris)" == Ready ]]; do
  ((SECONDS < deadline)) || { kubectl -n "${NAMESPACE}" get modelyard,jobs,pods; die "the quickstart did not become Ready"; }
  now="Dataset $(phase dataset/iris) → TrainingJob $(phase trainingjob/iris-classifier) → ModelDeployment $(phase modeldeployment/iris)"
  [[ "${now}" != "${last}" ]] && printf '  [%4ds] %s\n' "$((SECONDS - t_start))" "${now}"
  last="${now}"
  sleep 2
done
kubectl -n "${NAMESPACE}" get modelyard

get() { kubectl -n "${NAMESPACE}" get "$1" -o jsonpath="$2"; }
step "lineage"
echo "  dataset version  $(get dataset/iris '{.status.version}')  ($(get dataset/iris '{.status.rows}') rows)"
echo "  training run     $(get modeldeployment/iris '{.status.model.trainingJob}')/$(get modeldeployment/iris '{.status.model.run}')  accuracy=$(get trainingjob/iris-classifier '{.status.metrics.accuracy}')"
echo "  model digest     $(get modeldeployment/iris '{.status.model.digest}')"
echo "  URL              $(get modeldeployment/iris '{.status.url}')"

step "a prediction through the API server's service proxy"
proxy="/api/v1/namespaces/${NAMESPACE}/services/iris:http/proxy"
payload="$(mktemp)"
echo '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], "parameters": {"probabilities": true}}' >"${payload}"
echo "  POST ${proxy}/v1/models/iris:predict"
echo "  $(kubectl create --raw "${proxy}/v1/models/iris:predict" -f "${payload}")"
rm -f "${payload}"
echo "  (from kubectl apply to first prediction: $((SECONDS - applied))s)"

step "done in $((SECONDS - t_start))s"
if ${local_cluster}; then
  echo "Tear down: make cluster-down   (stops the cluster and the S3 server, removes their state)"
else
  echo "Tear down: kubectl delete namespace ${NAMESPACE}; ${helm} uninstall modelyard -n ${RELEASE_NAMESPACE}"
fi
