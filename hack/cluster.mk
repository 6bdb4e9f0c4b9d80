# Local Kubernetes cluster verbs, included by the top-level Makefile.
# How it works, paths and measured times: docs/local-cluster.md.

CLUSTER_NODES ?= 1
MODELYARD_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/modelyard
MODELYARD_STATE_DIR ?= $(MODELYARD_CACHE_DIR)/cluster
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
# What recipes (make demo, e2e runs) hand to kubectl and helm. HELM is expanded only
# where used, and builds Helm on first use.
CLUSTER_KUBECONFIG ?= $(MODELYARD_STATE_DIR)/kubeconfig
HELM ?= $(shell hack/bin-path.sh helm)

export CLUSTER_NODES MODELYARD_CACHE_DIR MODELYARD_STATE_DIR IMAGE_TAG

.PHONY: cluster-deps binaries cluster-up cluster-down s3-wipe images images-test dask-operator

cluster-deps: ## apt-install containerd, runc, CNI plugins, buildah, debootstrap... (root)
	hack/install-deps.sh

binaries: ## build etcd, Kubernetes, CoreDNS and Helm from Go modules (cached by version)
	hack/build-binaries.sh

cluster-up: ## start the local cluster (and its S3 server); CLUSTER_NODES=0 for the control plane only
	hack/cluster-up.sh

cluster-down: ## stop every cluster process and remove the cluster's state (S3 data stays)
	hack/cluster-down.sh

s3-wipe: ## stop the local S3 server, delete its objects and credentials (~/.cache/modelyard/s3)
	hack/s3.sh wipe

images: ## build images/*/Dockerfile on the local base, import into the node (root)
	hack/images.sh build

images-test: ## build the images the cluster's own e2e tests use (hack/testdata)
	hack/images.sh test

# CLUSTER_KUBECONFIG=<yours> installs into another cluster (push the image there first).
dask-operator: install ## the Dask operator (TrainingJob spec.workers) into the cluster, with Helm and our image
	KUBECONFIG=$(CLUSTER_KUBECONFIG) PY=$(PY) hack/dask-operator.sh
