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

import hashlib
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


def node_port_service(cluster: Cluster, protocol: str, node_port: int):
    """(Service, ServicePort) a node port leads to (NodePort and LoadBalancer Services
    open it on every node address, as kube-proxy does), or None."""
    for svc in cluster.services.values():
        if svc.node_ports:
            for sp in svc.ports:
                if sp.node_port == node_port and sp.protocol == protocol:
                    return svc, sp
    return None


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


# -- Maglev: which backend a connection goes to ---------------------------------------
# The dataplane spreads new connections over the ready backends by a hash of their
# tuple (kube-proxy's iptables mode picks at random; IPVS and Cilium hash). Maglev
# (Eisenbud et al., NSDI 2016) fills a table of m slots so that every backend holds
# about m/n of them and removing one backend moves only the tuples it held. The
# compiler loads this table into C; the oracle reads it as well, so a tuple's backend
# is decided here once.

MAGLEV_SIZES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521)   # primes
MAX_BACKENDS = MAGLEV_SIZES[-1] // 10


def maglev_size(n: int) -> int:
    """The smallest table with at least 10 slots per backend (≤ 1 % imbalance)."""
    if n > MAX_BACKENDS:
        raise ValueError(f"{n} backends: at most {MAX_BACKENDS} per Service port")
    return next(m for m in MAGLEV_SIZES if m >= 10 * n)


def _digest(text: str, person: bytes, m: int) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8, person=person).digest(), "big") % m


def maglev_table(backends: list[Backend]) -> list[int]:
    """Slot -> index into `backends` (empty when there is none). Each backend's
    preference list is a permutation of the slots seeded by its address and port, so
    the table depends on which backends there are, not on the cluster's other state."""
    n = len(backends)
    if n == 0:
        return []
    m = maglev_size(n)
    names = [f"{b.address}|{b.port}" for b in backends]
    offset = [_digest(s, b"netsem-offset", m) for s in names]
    skip = [_digest(s, b"netsem-skip", m - 1) + 1 for s in names]
    table = [-1] * m
    nxt = [0] * n
    filled = 0
    while True:
        for i in range(n):
            c = (offset[i] + nxt[i] * skip[i]) % m
            while table[c] >= 0:
                nxt[i] += 1
                c = (offset[i] + nxt[i] * skip[i]) % m
            table[c] = i
            nxt[i] += 1
            filled += 1
            if filled == m:
                return table
