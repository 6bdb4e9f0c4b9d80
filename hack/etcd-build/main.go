// Command etcd is upstream etcd's server entry point, built from the Go module
// proxy because Debian's etcd is too old for the Kubernetes 1.34 API server.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
