"""`netsem probe --via service`: every destination pod probed through a ClusterIP
Service of its own, as upstream's NetworkPolicy e2e suite probes (a Service per pod,
selecting only that pod). Here the Service is selector-less, backed by an
EndpointSlice listing the pod's addresses and the probed ports, which selects that
pod and no other whatever the labels are. The Services are added to the cluster the
switch runs with; the model's expectations stay those of pod-to-pod connections,
since policy sees the backend (docs/pipeline.md, stage 3)."""

from __future__ import annotations

import ipaddress

from ..model.addresses import DEFAULT_DOMAIN
from ..model.objects import EndpointSlice, Service, ServicePort, SliceEndpoint, SlicePort

# Inside the default Service CIDRs (198.19.0.0/17, 2001:db8:2::/112), in their upper
# halves, away from what the allocator hands out first.
VIA_V4 = ipaddress.ip_network("198.19.64.0/18")
VIA_V6 = ipaddress.ip_network("2001:db8:2::8000/113")


def add_probe_services(cluster, pods: list, combos: list) -> dict:
    """Adds one Service per pod; returns {(pod key, family): VIP}."""
    free = {4: (ip for ip in VIA_V4.hosts() if cluster.plane.lookup(DEFAULT_DOMAIN, ip) is None),
            6: (ip for ip in VIA_V6.hosts() if cluster.plane.lookup(DEFAULT_DOMAIN, ip) is None)}
    ports = [(proto, port, f"{proto.lower()}-{port}") for proto, port in combos]
    vips = {}
    for pod in pods:
        name = f"netsem-via-{pod.name}"[:63].rstrip("-.")
        addrs = [ip for d, ip in cluster.plane.lookup_pod_to_address_mappings(pod.key) if d == DEFAULT_DOMAIN]
        mine = tuple(next(free[ip.version]) for ip in addrs)
        for ip, vip in zip(addrs, mine):
            vips[(pod.key, ip.version)] = vip
        cluster.add_endpoint_slice(EndpointSlice(pod.namespace, name, name, (SliceEndpoint(tuple(addrs), True),),
                                                 tuple(SlicePort(port, proto, n) for proto, port, n in ports)))
        cluster.add_service(Service(pod.namespace, name, None,
                                    tuple(ServicePort(port, proto, n, port) for proto, port, n in ports), mine))
    return vips
