"""Cluster state and the seed's lifecycle and mapping primitives (004): addPod,
removePod, addService, removeService, the address<->pod, address<->service and
pod<->service mappings, and add/update/removeNetworkPolicy.

Addresses are unique (004: "an address can only be assigned once"), so
lookup_address_to_pod_mapping returns zero or one pod."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Iterable, Optional

from .errors import ManifestError, ManifestErrors
from .manifests import LoadResult
from .objects import (NAMESPACE_NAME_LABEL, EndpointSlice, IPAddress, Namespace, NetworkPolicy,
                      Pod, Service)

DEFAULT_POD_CIDRS = ("198.18.0.0/16", "2001:db8:1::/64")
DEFAULT_SERVICE_CIDRS = ("198.19.0.0/17", "2001:db8:2::/112")
# hostNetwork pods without an address in the manifest get the (single) node's address.
DEFAULT_NODE_IPS = ("198.19.128.1", "2001:db8:3::1")


@dataclass(frozen=True)
class ClusterConfig:
    """pod_cidrs: one CIDR per family; a family listed here is allocated to pods that
    have no address of any family in their manifest. Default: IPv4 only."""

    pod_cidrs: tuple[str, ...] = (DEFAULT_POD_CIDRS[0],)
    service_cidrs: tuple[str, ...] = DEFAULT_SERVICE_CIDRS
    node_ips: tuple[str, ...] = DEFAULT_NODE_IPS


class Cluster:
    def __init__(self, config: ClusterConfig | None = None):
        self.config = config or ClusterConfig()
        self.namespaces: dict[str, Namespace] = {}
        self.pods: dict[str, Pod] = {}                  # "ns/name" -> Pod
        self.services: dict[str, Service] = {}
        self.endpoint_slices: dict[str, EndpointSlice] = {}
        self.policies: dict[str, NetworkPolicy] = {}
        self._address_to_pod: dict[IPAddress, str] = {}
        self._address_to_service: dict[IPAddress, str] = {}
        self._pod_to_services: dict[str, set[str]] = {}
        self._service_to_pods: dict[str, set[str]] = {}
        self.generation = 0                             # bumped on every change

    # -- namespaces ---------------------------------------------------------
    def add_namespace(self, ns: Namespace) -> None:
        labels = dict(ns.labels)
        labels[NAMESPACE_NAME_LABEL] = ns.name   # set on every namespace, as the API server does
        self.namespaces[ns.name] = Namespace(ns.name, labels)
        self.generation += 1

    def ensure_namespace(self, name: str) -> None:
        if name not in self.namespaces:
            self.add_namespace(Namespace(name))

    # -- pod lifecycle (addPod / removePod) -----------------------------------
    def add_pod(self, pod: Pod) -> None:
        if pod.key in self.pods:
            self.remove_pod(pod.key)
        for ip in pod.ips:
            owner = self.lookup_address_to_pod_mapping(ip)
            if owner is not None and not pod.host_network:
                raise ValueError(f"address {ip} is already assigned to pod {owner}")
        self.ensure_namespace(pod.namespace)
        self.pods[pod.key] = pod
        if not pod.host_network:
            for ip in pod.ips:
                self.add_address_to_pod_mapping(ip, pod.key)
        self._map_pod_to_services(pod.key)
        self.generation += 1

    def remove_pod(self, key: str) -> None:
        self.remove_pod_to_service_mappings(key)
        self.remove_pod_to_address_mappings(key)
        self.pods.pop(key, None)
        self.generation += 1

    # -- address <-> pod --------------------------------------------------------
    def add_address_to_pod_mapping(self, ip: IPAddress, pod: str) -> None:
        self._address_to_pod[ip] = pod

    def remove_address_to_pod_mapping(self, ip: IPAddress, pod: str) -> None:
        if self._address_to_pod.get(ip) == pod:
            del self._address_to_pod[ip]

    def remove_pod_to_address_mappings(self, pod: str) -> None:
        for ip in [a for a, p in self._address_to_pod.items() if p == pod]:
            del self._address_to_pod[ip]

    def lookup_pod_to_address_mappings(self, pod: str) -> list[IPAddress]:
        p = self.pods.get(pod)
        return list(p.ips) if p else []

    def lookup_address_to_pod_mapping(self, ip) -> Optional[str]:
        return self._address_to_pod.get(ipaddress.ip_address(ip))

    # -- service lifecycle and address <-> service ---------------------------------
    def add_service(self, svc: Service) -> None:
        if svc.key in self.services:
            self.remove_service(svc.key)
        self.ensure_namespace(svc.namespace)
        self.services[svc.key] = svc
        for ip in svc.cluster_ips:
            self.add_address_to_service_mapping(ip, svc.key)
        self._map_service_to_pods(svc.key)
        self.generation += 1

    def remove_service(self, key: str) -> None:
        self.remove_service_to_pod_mappings(key)
        self.remove_service_to_address_mappings(key)
        self.services.pop(key, None)
        self.generation += 1

    def add_address_to_service_mapping(self, ip: IPAddress, svc: str) -> None:
        self._address_to_service[ip] = svc

    def remove_address_to_service_mapping(self, ip: IPAddress, svc: str) -> None:
        if self._address_to_service.get(ip) == svc:
            del self._address_to_service[ip]

    def remove_service_to_address_mappings(self, svc: str) -> None:
        for ip in [a for a, s in self._address_to_service.items() if s == svc]:
            del self._address_to_service[ip]

    def lookup_service_to_address_mappings(self, svc: str) -> list[IPAddress]:
        return [a for a, s in self._address_to_service.items() if s == svc]

    def lookup_address_to_service_mapping(self, ip) -> Optional[str]:
        return self._address_to_service.get(ipaddress.ip_address(ip))

    # -- pod <-> service ----------------------------------------------------------
    def add_pod_to_service_mapping(self, pod: str, svc: str) -> None:
        self._pod_to_services.setdefault(pod, set()).add(svc)
        self._service_to_pods.setdefault(svc, set()).add(pod)

    def remove_pod_to_service_mapping(self, pod: str, svc: str) -> None:
        self._pod_to_services.get(pod, set()).discard(svc)
        self._service_to_pods.get(svc, set()).discard(pod)

    def remove_pod_to_service_mappings(self, pod: str) -> None:
        for svc in self._pod_to_services.pop(pod, set()):
            self._service_to_pods.get(svc, set()).discard(pod)

    def remove_service_to_pod_mappings(self, svc: str) -> None:
        for pod in self._service_to_pods.pop(svc, set()):
            self._pod_to_services.get(pod, set()).discard(svc)

    def lookup_pod_to_service_mappings(self, pod: str) -> list[str]:
        return sorted(self._pod_to_services.get(pod, ()))

    def lookup_service_to_pod_mappings(self, svc: str) -> list[str]:
        return sorted(self._service_to_pods.get(svc, ()))

    def _service_selects(self, svc: Service, pod: Pod) -> bool:
        if svc.namespace != pod.namespace or not svc.selector:
            return False
        return all(pod.labels.get(k) == v for k, v in svc.selector.items())

    def _slices_of(self, svc: str) -> list[EndpointSlice]:
        return [s for s in self.endpoint_slices.values()
                if s.service is not None and f"{s.namespace}/{s.service}" == svc]

    def _map_service_to_pods(self, key: str) -> None:
        """EndpointSlices, when a service has any, say which pods back it; otherwise its
        selector does (what the EndpointSlice controller would compute)."""
        svc = self.services[key]
        slices = self._slices_of(key)
        if slices:
            for s in slices:
                for ip in s.addresses:
                    pod = self.lookup_address_to_pod_mapping(ip)
                    if pod:
                        self.add_pod_to_service_mapping(pod, key)
            return
        for pod in self.pods.values():
            if not pod.host_network and self._service_selects(svc, pod):
                self.add_pod_to_service_mapping(pod.key, key)

    def _map_pod_to_services(self, pod_key: str) -> None:
        pod = self.pods[pod_key]
        for key, svc in self.services.items():
            slices = self._slices_of(key)
            if slices:
                if any(ip in s.addresses for s in slices for ip in pod.ips):
                    self.add_pod_to_service_mapping(pod_key, key)
            elif not pod.host_network and self._service_selects(svc, pod):
                self.add_pod_to_service_mapping(pod_key, key)

    def add_endpoint_slice(self, s: EndpointSlice) -> None:
        self.endpoint_slices[f"{s.namespace}/{s.name}"] = s
        if s.service and f"{s.namespace}/{s.service}" in self.services:
            key = f"{s.namespace}/{s.service}"
            self.remove_service_to_pod_mappings(key)
            self._map_service_to_pods(key)
        self.generation += 1

    # -- network policies (add/update/removeNetworkPolicy) -------------------------
    def add_network_policy(self, policy: NetworkPolicy) -> None:
        self.ensure_namespace(policy.namespace)
        self.policies[policy.key] = policy
        self.generation += 1

    update_network_policy = add_network_policy

    def remove_network_policy(self, key: str) -> None:
        self.policies.pop(key, None)
        self.generation += 1

    # -- helpers ------------------------------------------------------------------
    def pod_list(self, namespace: str | None = None) -> list[Pod]:
        """Pods sorted by namespace/name: the order of matrices and port numbers."""
        return sorted((p for p in self.pods.values() if namespace in (None, p.namespace)),
                      key=lambda p: (p.namespace, p.name))

    def switch_ports(self) -> dict[str, int]:
        """Pod key -> switch port: pods that have an address and are not hostNetwork,
        in namespace/name order, from 1 (port 0 is the uplink)."""
        pods = [p for p in self.pod_list() if not p.host_network and p.ips]
        return {p.key: i + 1 for i, p in enumerate(pods)}

    def policy_list(self) -> list[NetworkPolicy]:
        """Policies sorted by namespace/name: the order that numbers rules."""
        return sorted(self.policies.values(), key=lambda p: (p.namespace, p.name))


def build_cluster(result: LoadResult, config: ClusterConfig | None = None) -> Cluster:
    """Applies loaded objects in a fixed order (namespaces, pods, slices, services,
    policies), allocating addresses to pods and services that have none. Raises
    ManifestErrors, with nothing applied, on a duplicate address."""
    config = config or ClusterConfig()
    cluster = Cluster(config)
    errors: list[ManifestError] = []
    by_kind: dict[type, list] = {}
    for doc, obj in result.objects:
        by_kind.setdefault(type(obj), []).append((doc, obj))

    def err(doc, field, msg):
        errors.append(ManifestError(doc.source, doc.index,
                                    (f"items[{doc.item}]." if doc.item is not None else "") + field, msg))

    for _, ns in by_kind.get(Namespace, []):
        cluster.add_namespace(ns)

    pods = by_kind.get(Pod, [])
    taken: dict[IPAddress, tuple] = {}
    for doc, pod in pods:
        if pod.host_network:
            continue
        for i, ip in enumerate(pod.ips):
            if ip in taken and taken[ip][1].key != pod.key:
                other_doc, other = taken[ip]
                err(doc, f"status.podIPs[{i}].ip",
                    f"Duplicate value: {str(ip)!r}: already assigned to pod {other.key} "
                    f"({other_doc.source}:{other_doc.index})")
            taken[ip] = (doc, pod)
    allocators = [_Allocator(c, set(taken)) for c in config.pod_cidrs]
    final_pods = {}
    for doc, pod in sorted(pods, key=lambda dp: (dp[1].namespace, dp[1].name)):
        if not pod.ips:
            if pod.host_network:
                pod = replace(pod, ips=tuple(ipaddress.ip_address(a) for a in config.node_ips[:1]))
            else:
                pod = replace(pod, ips=tuple(a.next() for a in allocators))
        final_pods[pod.key] = (doc, pod)

    slices = by_kind.get(EndpointSlice, [])
    services = by_kind.get(Service, [])
    svc_taken = {ip for _, s in services for ip in s.cluster_ips}
    for _, s in services:
        for ip in s.cluster_ips:
            if ip in taken:
                errors.append(ManifestError(_.source, _.index, "spec.clusterIPs",
                                            f"Duplicate value: {str(ip)!r}: assigned to a pod"))
    svc_alloc = _Allocator(config.service_cidrs[0], svc_taken)
    if errors:
        raise ManifestErrors(errors)

    for doc, pod in sorted(final_pods.values(), key=lambda dp: dp[1].key):
        cluster.add_pod(pod)
    for _, s in slices:
        cluster.add_endpoint_slice(s)
    for _, svc in sorted(services, key=lambda ds: ds[1].key):
        if not svc.cluster_ips and not svc.headless:
            svc = replace(svc, cluster_ips=(svc_alloc.next(),))
        cluster.add_service(svc)
    for _, pol in by_kind.get(NetworkPolicy, []):
        cluster.add_network_policy(pol)
    return cluster


class _Allocator:
    """Deterministic: the lowest free host address of the CIDR, in pod name order."""

    def __init__(self, cidr: str, taken: set):
        self.net = ipaddress.ip_network(cidr)
        self.taken = taken
        self.cursor = 1

    def next(self) -> IPAddress:
        while self.cursor < self.net.num_addresses - 1:
            ip = self.net.network_address + self.cursor
            self.cursor += 1
            if ip not in self.taken:
                self.taken.add(ip)
                return ip
        raise ManifestErrors([ManifestError("-", 0, "-", f"pod CIDR {self.net} is exhausted")])


def load_cluster(paths: Iterable[str], config: ClusterConfig | None = None, stdin=None):
    """Loads manifests into a new Cluster: (cluster, notes). Raises ManifestErrors."""
    from .manifests import load
    result = load(paths, stdin=stdin)
    return build_cluster(result, config), result.notes
