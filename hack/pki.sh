#!/usr/bin/env bash
# Creates the cluster's PKI with openssl under <state>/pki: one CA signs every
# certificate; a service-account key pair signs tokens. Existing files are kept, so
# certificates survive restarts (kubeconfigs handed out stay valid).
# Usage: pki.sh <pki dir> <node name> <node ip>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKI="$1" NODE_NAME="$2" NODE_IP="$3"
DAYS=3650
mkdir -p "${PKI}"
umask 077
cd "${PKI}"

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ ! -f ca.crt ]]; then
  newkey ca.key
  openssl req -x509 -new -key ca.key -days "${DAYS}" -subj "/CN=modelyard-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt
fi

# cert <name> <subject> <clientAuth|serverAuth> [subjectAltName]
cert() {
  local name="$1" subject="$2" usage="$3" san="${4:-}"
  [[ -f "${name}.crt" ]] && return
  newkey "${name}.key"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=${usage}"
    [[ -z "${san}" ]] || echo "subjectAltName=${san}"
  } >"${name}.ext"
  openssl req -new -key "${name}.key" -subj "${subject}" |
    openssl x509 -req -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -days "${DAYS}" -extfile "${name}.ext" -out "${name}.crt" 2>/dev/null
  rm -f "${name}.ext"
}

# The API server answers on loopback (control-plane tier), on the node address
# (pods, kubelet) and behind the `kubernetes` Service's cluster IP.
cert apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:${NODE_NAME},IP:127.0.0.1,IP:${SERVICE_IP},IP:${NODE_IP}"
# system:masters bypasses RBAC: only the admin and the API server's own kubelet client.
cert admin "/O=system:masters/CN=modelyard-admin" clientAuth
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert controller-manager "/CN=system:kube-controller-manager" clientAuth
cert scheduler "/CN=system:kube-scheduler" clientAuth
cert kube-proxy "/CN=system:kube-proxy" clientAuth
# The Node authorizer and NodeRestriction admission key on this exact identity.
cert kubelet-client "/O=system:nodes/CN=system:node:${NODE_NAME}" clientAuth
cert kubelet-server "/CN=${NODE_NAME}" serverAuth "DNS:${NODE_NAME},IP:${NODE_IP},IP:127.0.0.1"

if [[ ! -f sa.key ]]; then
  newkey sa.key
  openssl pkey -in sa.key -pubout -out sa.pub
fi
