// Command coredns is CoreDNS with only the plugins the local cluster's DNS uses
// (upstream's binary links every plugin, cloud SDKs included). There is no forward
// plugin: names outside the cluster do not resolve, so pods never query anything
// off this machine.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
