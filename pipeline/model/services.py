"""What a Service port leads to: its backends, as the EndpointSlice controller computes
them and kube-proxy reads them. 004's service mapper asks lookupService2PodMappings
and selectOnePod; a real Service answers per port, because

  - a named targetPort is resolved in each backend pod, and a pod that does not
    declare the name is no backend of that port (it may still back another port);
  - a hand-written EndpointSlice lists its own ports, and its endpoints serve only
    those (matched to the Service port by name and protocol, as kube-proxy does);
  - only ready endpoints take new connections: a pod whose Ready condition is not
    True, or a slice endpoint whose `ready` is false, is listed but never chosen,
    unless the Service sets publishNotReadyAddresses (selector Services: the
    controller then publishes every endpoint as ready)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .addresses import DEFAULT_DOMAIN
from .cluster import Cluster
from .objects import IPAddress, Pod, Service, ServicePort


@dataclass(frozen=True)
class Backend:
    """One endpoint of one Service port."""

    address: IPAddress
    port: int                        # the target port at that address
    pod: Optional[str]               # the pod at the address (address plane); None: not a pod
    ready: bool

    def __str__(self) -> str:
        where = self.pod or str(self.address)
        return f"{where} port {self.port}" + ("" if self.ready else " (not ready)")


def target_port(sp: ServicePort, pod: Pod) -> Optional[int]:
    """The port a Service port leads to on `pod`; None when the pod does not declare a
    named targetPort (for that protocol)."""
    if isinstance(sp.target_port, str):
        return pod.named_port(sp.target_port, sp.protocol)
    return sp.target_port if sp.target_port is not None else sp.port


def service_backends(cluster: Cluster, svc: Service, sp: ServicePort) -> list[Backend]:
    """Every backend of one port of a Service, ready or not, sorted by pod then address
    (the model's order; the dataplane balances over the ready ones). EndpointSlices,
    when the Service has any, are the truth; otherwise the selector is, as the
    controller would write the slices."""
    slices = cluster.slices_of(svc.key)
    out: list[Backend] = []
    if slices:
        for s in slices:
            match = next((p for p in s.ports if p.name == sp.name and p.protocol == sp.protocol), None)
            if match is None and s.ports:
                continue                       # this slice serves other ports
            port = match.port if match is not None and match.port is not None else (
                sp.target_port if isinstance(sp.target_port, int) else sp.port)
            for e in s.endpoints:
                for ip in e.addresses:
                    pod = cluster.plane.lookup_address_to_pod_mapping(DEFAULT_DOMAIN, ip)
                    out.append(Backend(ip, port, pod, e.is_ready))
    elif svc.selector:
        for key in cluster.lookup_service_to_pod_mappings(svc.key):
            pod = cluster.pods[key]
            port = target_port(sp, pod)
            if port is None:
                continue
            for domain, ip in cluster.plane.lookup_pod_to_address_mappings(key):
                if domain == DEFAULT_DOMAIN:
                    out.append(Backend(ip, port, key, pod.ready or svc.publish_not_ready))
    return sorted(out, key=lambda b: (b.pod or "~", b.address.version, int(b.address)))


def ready_backends(cluster: Cluster, svc: Service, sp: ServicePort, family: Optional[int] = None) -> list[Backend]:
    return [b for b in service_backends(cluster, svc, sp)
            if b.ready and (family is None or b.address.version == family)]


def select_one_backend(cluster: Cluster, svc: Service, sp: ServicePort,
                       family: Optional[int] = None) -> Optional[Backend]:
    """The seed's selectOnePod(), per Service port: the first ready backend in the
    model's order, so that the model's answers are deterministic. The dataplane may
    pick another; every backend is policed the same way."""
    ready = ready_backends(cluster, svc, sp, family)
    return ready[0] if ready else None
