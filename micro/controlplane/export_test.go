package controlplane

import (
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// AssignmentNodes returns the node ids in the assignment named name, each
// with its health status ("HEALTHY", "UNHEALTHY"), as clients are served it.
func AssignmentNodes(cp *ControlPlane, name string) map[string]string {
	out := map[string]string{}
	cla, _ := cp.caches[resource.EndpointType].GetResources()[name].(*endpointv3.ClusterLoadAssignment)
	for _, loc := range cla.GetEndpoints() {
		for _, ep := range loc.GetLbEndpoints() {
			out[ep.GetEndpoint().GetHostname()] = ep.GetHealthStatus().String()
		}
	}
	return out
}
