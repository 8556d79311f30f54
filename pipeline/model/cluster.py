"""Cluster state and the seed's lifecycle and mapping primitives (004): addPod,
removePod, addService, removeService, the pod<->service mappings, and
add/update/removeNetworkPolicy. Address mappings live in the address plane
(`addresses.py`), keyed by (IP address domain, address)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from .addresses import DEFAULT_DOMAIN, DEFAULT_NODE, AddressPlane, Attachment, NodeAddress
from .networks import CLUSTER_NETWORK, Network, network
from .objects import (NAMESPACE_NAME_LABEL, EndpointSlice, MultiNetworkPolicy, Namespace,
                      NetworkAttachmentDefinition, NetworkPolicy, Node, Pod, Service)

DEFAULT_POD_CIDRS = ("198.18.0.0/16", "2001:db8:1::/64")
DEFAULT_SERVICE_CIDRS = ("198.19.0.0/17", "2001:db8:2::/112")
# The node's addresses; hostNetwork pods without an address in the manifest get them.
DEFAULT_NODE_IPS = ("198.19.128.1", "2001:db8:3::1")


@dataclass(frozen=True)
class ClusterConfig:
    """pod_cidrs: one CIDR per family; a family listed here is allocated to pods that
    have no address of any family in their manifest. Default: IPv4 only.
    police_node_traffic: police traffic from a node to the pods on it like any other
    (strict); by default it is always allowed, as Kubernetes requires."""

    pod_cidrs: tuple[str, ...] = (DEFAULT_POD_CIDRS[0],)
    service_cidrs: tuple[str, ...] = DEFAULT_SERVICE_CIDRS
    node_ips: tuple[str, ...] = DEFAULT_NODE_IPS
    police_node_traffic: bool = False
    route_pod_addresses: bool = False


class Cluster:
    def __init__(self, config: ClusterConfig | None = None):
        self.config = config or ClusterConfig()
        self.namespaces: dict[str, Namespace] = {}
        self.pods: dict[str, Pod] = {}                  # "ns/name" -> Pod (finished ones too)
        self.services: dict[str, Service] = {}
        self.endpoint_slices: dict[str, EndpointSlice] = {}
        self.policies: dict[str, NetworkPolicy] = {}
        self.networks: dict[str, Network] = {CLUSTER_NETWORK.name: CLUSTER_NETWORK}
        self.routable: set[frozenset] = set()          # pairs of networks that meet (type 1)
        self.network_attachment_definitions: dict[str, NetworkAttachmentDefinition] = {}
        self.multi_policies: dict[str, MultiNetworkPolicy] = {}
        self.admin_policies: dict = {}                  # kind/name -> admin.AdminPolicy
        self.nodes: dict[str, Node] = {}                # Node objects, by name
        self.plane = AddressPlane()
        for ip in self.config.node_ips:
            self.plane.add_node_address(DEFAULT_DOMAIN, ip, DEFAULT_NODE)
        self._pod_to_services: dict[str, set[str]] = {}
        self._service_to_pods: dict[str, set[str]] = {}
        # Indexes that keep pod <-> service mapping O(candidates), not O(pods x
        # services): pods by (namespace, label, value); selector Services by their
        # first selector pair; slices by Service; Services by the addresses their
        # slices list.
        self._pods_by_label: dict[tuple, set[str]] = {}
        self._services_by_label: dict[tuple, set[str]] = {}
        self._slices: dict[str, dict[str, EndpointSlice]] = {}
        self._services_by_slice_address: dict = {}
        self.generation = 0                             # bumped on every change

    # -- networks (004 steps 2-3) ---------------------------------------------------
    def add_network_attachment_definition(self, nad: NetworkAttachmentDefinition) -> Network:
        """The definition's network, added on first sight: definitions whose CNI
        configs share a name are one network (as OVN-Kubernetes has it), which must
        then be in one domain (ValueError otherwise)."""
        net = self.networks.get(nad.network)
        if net is None:
            net = self.networks[nad.network] = network(nad.network, nad.domain)
        elif net.domain != nad.domain:
            raise ValueError(f"network {net.name!r} is in IP address domain {net.domain!r}, not {nad.domain!r}")
        self.network_attachment_definitions[nad.key] = nad
        self.ensure_namespace(nad.namespace)
        self.generation += 1
        return net

    def declare_routable(self, a: str, b: str) -> None:
        """Networks a and b have L3 reachability with each other (004's "type 1"); only
        networks of one IP address domain can (ValueError otherwise)."""
        for n in (a, b):
            if n not in self.networks:
                raise ValueError(f"no network named {n!r}")
        if self.networks[a].domain != self.networks[b].domain:
            raise ValueError(f"networks {a!r} and {b!r} are in different IP address domains "
                             f"({self.networks[a].domain}, {self.networks[b].domain}): no route joins them")
        if a != b:
            self.routable.add(frozenset((a, b)))
            self.generation += 1

    def networks_meet(self, a: str, b: str) -> bool:
        """Traffic passes between networks a and b: they are one, or declared routable
        to each other. By default networks are isolated (004's "type 2")."""
        return a == b or frozenset((a, b)) in self.routable

    # -- nodes and cluster-wide policy (003; model/admin.py) -------------------------
    def add_node(self, node: Node) -> None:
        """A Node and its InternalIP addresses, in the cluster's domain. Raises
        AddressError when an address is taken by another."""
        for ip in node.addresses:
            self.plane.check_free(DEFAULT_DOMAIN, ip, NodeAddress(node.name, DEFAULT_DOMAIN))
        for ip in node.addresses:
            self.plane.add_node_address(DEFAULT_DOMAIN, ip, node.name)
        self.nodes[node.name] = node
        self.generation += 1

    def node_at(self, address, domain: str = DEFAULT_DOMAIN) -> Optional[Node]:
        """The Node object whose address this is (hostNetwork pods have it too)."""
        e = self.plane.lookup(domain, address)
        return self.nodes.get(e.node) if isinstance(e, NodeAddress) else None

    def add_admin_policy(self, policy) -> None:
        self.admin_policies[policy.key] = policy
        self.generation += 1

    def remove_admin_policy(self, key: str) -> None:
        self.admin_policies.pop(key, None)
        self.generation += 1

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
        """Maps the pod's addresses in the cluster's domain: on its eth0, or, for a
        hostNetwork pod, as its node's. A finished pod maps none. Raises AddressError,
        with nothing changed, when an address is taken."""
        if pod.key in self.pods:
            self.remove_pod(pod.key)
        self.ensure_namespace(pod.namespace)
        node = pod.node_name or DEFAULT_NODE
        if not pod.finished:
            mine = NodeAddress(node, DEFAULT_DOMAIN) if pod.host_network else None
            for ip in pod.ips:             # all or nothing
                self.plane.check_free(DEFAULT_DOMAIN, ip, mine)
            if pod.host_network:
                self.plane.add_host_network_pod(pod.key, DEFAULT_DOMAIN, pod.ips, node)
            else:
                for ip in pod.ips:
                    self.plane.add_address_to_pod_mapping(DEFAULT_DOMAIN, ip, pod.key, node=node)
        self.pods[pod.key] = pod
        for k, v in pod.labels.items():
            self._pods_by_label.setdefault((pod.namespace, k, v), set()).add(pod.key)
        self._map_pod_to_services(pod.key)
        self.generation += 1

    def remove_pod(self, key: str) -> None:
        self.remove_pod_to_service_mappings(key)
        self.plane.remove_pod_to_address_mappings(key)
        pod = self.pods.pop(key, None)
        for k, v in (pod.labels.items() if pod else ()):
            self._pods_by_label.get((pod.namespace, k, v), set()).discard(key)
        self.generation += 1

    def snat_address(self, family: int):
        """The address pods' connections to the outside are masqueraded to, and hairpin
        connections source-translated to: the node's of that family (config.node_ips),
        or None (that family leaves with the pod's own address)."""
        for ip in self.config.node_ips:
            a = ipaddress.ip_address(ip)
            if a.version == family:
                return a
        return None

    # -- lookups through the address plane --------------------------------------------------
    def pod_at(self, address, domain: str = DEFAULT_DOMAIN) -> Optional[Pod]:
        """The pod whose interface has `address` (lookupAddress2PodMapping), or None."""
        key = self.plane.lookup_address_to_pod_mapping(domain, address)
        return self.pods[key] if key is not None else None

    def attachment(self, pod: str) -> Optional[Attachment]:
        """The pod's primary interface; None for hostNetwork, finished or address-less pods."""
        return self.plane.attachment(pod)

    def pod_address(self, pod: str, family: Optional[int] = None):
        """The address a pod is reached at (its primary interface's, or its node's for a
        hostNetwork pod), of `family` when given."""
        for _, ip in self.plane.lookup_pod_to_address_mappings(pod):
            if family is None or ip.version == family:
                return ip
        return None

    # -- service lifecycle ----------------------------------------------------------------
    def add_service(self, svc: Service) -> None:
        if svc.key in self.services:
            self.remove_service(svc.key)
        self.ensure_namespace(svc.namespace)
        # externalIPs are the Service's too: traffic to ip:port is load balanced alike.
        for ip in svc.cluster_ips + svc.external_ips:
            self.plane.add_address_to_service_mapping(DEFAULT_DOMAIN, ip, svc.key)
        self.services[svc.key] = svc
        if svc.selector:
            self._services_by_label.setdefault(self._first_pair(svc), set()).add(svc.key)
        self._map_service_to_pods(svc.key)
        self.generation += 1

    def remove_service(self, key: str) -> None:
        self.remove_service_to_pod_mappings(key)
        self.plane.remove_service_to_address_mappings(key)
        svc = self.services.pop(key, None)
        if svc is not None and svc.selector:
            self._services_by_label.get(self._first_pair(svc), set()).discard(key)
        self.generation += 1

    @staticmethod
    def _first_pair(svc: Service) -> tuple:
        k = min(svc.selector)
        return (svc.namespace, k, svc.selector[k])

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
        if svc.namespace != pod.namespace or not svc.selector or self.attachment(pod.key) is None:
            return False
        return all(pod.labels.get(k) == v for k, v in svc.selector.items())

    def slices_of(self, svc: str) -> list[EndpointSlice]:
        return [sl for _, sl in sorted(self._slices.get(svc, {}).items())]

    def _map_service_to_pods(self, key: str) -> None:
        """EndpointSlices, when a service has any, say which pods back it; otherwise its
        selector does (what the EndpointSlice controller would compute)."""
        svc = self.services[key]
        slices = self.slices_of(key)
        if slices:
            for sl in slices:
                for ip in sl.addresses:
                    pod = self.plane.lookup_address_to_pod_mapping(DEFAULT_DOMAIN, ip)
                    if pod:
                        self.add_pod_to_service_mapping(pod, key)
            return
        if not svc.selector:
            return
        for pod_key in self._pods_by_label.get(self._first_pair(svc), ()):
            if self._service_selects(svc, self.pods[pod_key]):
                self.add_pod_to_service_mapping(pod_key, key)

    def _map_pod_to_services(self, pod_key: str) -> None:
        for key in self._services_of(pod_key):
            self.add_pod_to_service_mapping(pod_key, key)

    def _services_of(self, pod_key: str) -> set[str]:
        """The Services that pod backs: those whose slices list its addresses, or, for
        a Service without slices, whose selector matches it."""
        pod = self.pods[pod_key]
        out = set()
        mine = {ip for _, ip in self.plane.lookup_pod_to_address_mappings(pod_key)} \
            if self.attachment(pod_key) else set()
        candidates = set().union(*(self._services_by_label.get((pod.namespace, k, v), ())
                                   for k, v in pod.labels.items()),
                                 *(self._services_by_slice_address.get(ip, ()) for ip in mine))
        for key in candidates:
            svc = self.services.get(key)
            if svc is None:
                continue
            slices = self.slices_of(key)
            if slices:
                if any(ip in mine for sl in slices for ip in sl.addresses):
                    out.add(key)
            elif self._service_selects(svc, pod):
                out.add(key)
        return out

    def relabeled(self, labels: dict[str, dict]) -> "Cluster":
        """The next generation with only these pods' labels changed (generations.py)."""
        from .generations import relabeled
        return relabeled(self, labels)

    def with_policies(self, put: list = (), removed: list = ()) -> "Cluster":
        """The next generation with NetworkPolicies put and removed (generations.py)."""
        from .generations import with_policies
        return with_policies(self, put, removed)

    def with_pods(self, added: list[Pod] = (), removed: list[str] = ()) -> "Cluster":
        """The next generation with pods come and gone (generations.py)."""
        from .generations import with_pods
        return with_pods(self, added, removed)

    def add_endpoint_slice(self, sl: EndpointSlice) -> None:
        name = f"{sl.namespace}/{sl.name}"
        old = self.endpoint_slices.get(name)
        if old is not None and old.service:
            self._slices.get(f"{old.namespace}/{old.service}", {}).pop(name, None)
        self.endpoint_slices[name] = sl
        if sl.service:
            key = f"{sl.namespace}/{sl.service}"
            self._slices.setdefault(key, {})[name] = sl
            for ip in sl.addresses:
                self._services_by_slice_address.setdefault(ip, set()).add(key)
            if key in self.services:
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

    def network_of_definition(self, key: str) -> Optional[Network]:
        """The network of NetworkAttachmentDefinition `ns/name`, or None."""
        nad = self.network_attachment_definitions.get(key)
        return self.networks[nad.network] if nad is not None else None

    def add_multi_network_policy(self, policy: MultiNetworkPolicy) -> None:
        """`policy.networks` names the networks it is for (resolved from policy-for)."""
        self.ensure_namespace(policy.namespace)
        self.multi_policies[policy.key] = policy
        self.generation += 1

    def remove_multi_network_policy(self, key: str) -> None:
        self.multi_policies.pop(key, None)
        self.generation += 1

    def multi_policy_list(self, network: str) -> list[MultiNetworkPolicy]:
        """The MultiNetworkPolicies for `network`, sorted by namespace/name."""
        return sorted((p for p in self.multi_policies.values() if network in p.networks),
                      key=lambda p: (p.namespace, p.name))

    # -- helpers ------------------------------------------------------------------
    def pod_list(self, namespace: str | None = None) -> list[Pod]:
        """Pods that hold an address (not finished), sorted by namespace/name: the order
        of matrices."""
        return sorted((p for p in self.pods.values()
                       if namespace in (None, p.namespace) and not p.finished
                       and self.plane.lookup_pod_to_address_mappings(p.key)),
                      key=lambda p: (p.namespace, p.name))

    def policy_list(self) -> list[NetworkPolicy]:
        """Policies sorted by namespace/name: the order that numbers rules."""
        return sorted(self.policies.values(), key=lambda p: (p.namespace, p.name))
