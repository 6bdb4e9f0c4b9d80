# Local Kubernetes cluster targets, included by the top-level Makefile.
# Everything runs from hack/; see docs/local-cluster.md.

CLUSTER_NODES ?= 1
MODELYARD_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/modelyard
MODELYARD_STATE_DIR ?= $(MODELYARD_CACHE_DIR)/cluster
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
CLUSTER_KUBECONFIG ?= $(MODELYARD_STATE_DIR)/kubeconfig

export CLUSTER_NODES MODELYARD_CACHE_DIR MODELYARD_STATE_DIR IMAGE_TAG

.PHONY: cluster-deps binaries cluster-up cluster-down images images-test

## cluster-deps: apt-install containerd, runc, CNI plugins, buildah, debootstrap... (root)
cluster-deps:
	hack/install-deps.sh

## binaries: build etcd, Kubernetes and Helm from Go modules (cached by version)
binaries:
	hack/build-binaries.sh

## cluster-up: start the local cluster (CLUSTER_NODES=0: control plane only)
cluster-up:
	hack/cluster-up.sh

## cluster-down: stop every cluster process and remove its state
cluster-down:
	hack/cluster-down.sh

## images: build images/*/Dockerfile on a local base and import them into the node
images:
	hack/images.sh build

## images-test: build the images the cluster's own tests use (hack/testdata)
images-test:
	hack/images.sh test
