"""Compiles cluster state into the C tables of docs/pipeline.md, one module per table:
`endpoints` (what sits at each address, from the address plane) and `policy`
(identities, isolation, ipBlock classes, rules).

A build that does not fit its limits fails whole; the running tables are never
touched by a failed build (style X3, P7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ...model.addresses import DEFAULT_NETWORK, Attachment
from ..addr16 import addr16
from ...model.cluster import Cluster
from .endpoints import EndpointTable, build_endpoints
from .policy import Identity, PolicyTables, build_identities, build_policy
from .services import ServiceTable, build_services

__all__ = ["CompileError", "Compiled", "Identity", "compile_cluster"]


class CompileError(Exception):
    """The cluster does not fit the table limits; nothing was installed."""


@dataclass
class Compiled:
    """The compiled form of one cluster generation. `tables` is a sealed
    `struct ns_tables *`, freed with this object unless a Datapath took it."""

    cluster: Cluster
    identities: list                 # Identity, index id-1
    identity_on: dict                # (pod key, network) -> identity id
    endpoints: EndpointTable
    policy: PolicyTables
    services: ServiceTable
    limits: dict                     # ns_table_limits, as allocated
    tables: object = None
    identity_keys: dict = None       # policy.identity_key -> id (what a delta looks up)
    delta: bool = False              # compiled as a delta of the previous generation

    @property
    def rules(self) -> dict:
        """(policy key, direction, index) -> rule id."""
        return self.policy.rules

    @property
    def attachments(self) -> dict[int, Attachment]:
        """Switch port -> the pod interface wired to it."""
        return {a.port: a for a in self.cluster.plane.attachments()}

    def port_named(self, name: str) -> Optional[int]:
        """The switch port of an interface named as captures name it: ns/pod/ifname,
        or ns/pod for its eth0."""
        for a in self.cluster.plane.attachments():
            if name in (str(a), f"{a.pod}/{a.interface}"):
                return a.port
        return None

    @property
    def identity_of(self) -> dict:
        """Pod key -> the identity of its cluster-network interface."""
        return {pod: i for (pod, net), i in self.identity_on.items() if net == DEFAULT_NETWORK}

    def stats(self) -> dict:
        """Entries per table (its capacity is `limits`)."""
        return {"interfaces": len(self.attachments), "identities": len(self.identities),
                "endpoints": len(self.endpoints.rows), "blocks": len(self.policy.blocks),
                "prefixes": len(self.policy.classes), "rule_keys": len(self.policy.entries),
                "rule_entries": self.policy.n_entries, "frontends": len(self.services.frontends),
                "backends": self.services.n_backends}


def compile_cluster(cluster: Cluster, limits_slack: float = 1.25, peer_cells: bool = True) -> Compiled:
    """peer_cells: selected peers as peer-set states (policy.PeerStates); False: one
    rule key per pair of identities, as before (the tests hold the two together)."""
    idents, identity_on, keys = build_identities(cluster)
    endpoints = build_endpoints(cluster, identity_on)
    policy = build_policy(cluster, idents, cells=peer_cells)
    services = build_services(cluster, endpoints.zones)
    return install_tables(Compiled(cluster, idents, identity_on, endpoints, policy, services, {},
                                   identity_keys=keys), limits_slack)


def install_tables(c: Compiled, limits_slack: float = 1.25, share_policy=None) -> Compiled:
    """Builds and seals C tables from a compiled generation (c.tables, c.limits),
    whether it came whole or as a delta. share_policy: sealed tables whose policy
    part (c.policy's, unchanged) the new ones take instead of building their own."""
    from ..._native import ffi, lib

    cluster, endpoints, policy, services = c.cluster, c.endpoints, c.policy, c.services
    n_entries = policy.n_entries
    limits = ffi.new("struct ns_table_limits *")
    limits.endpoints = max(16, int(len(endpoints.rows) * limits_slack))
    limits.identities = max(len(c.identities) + 2, policy.capacity)
    limits.rule_keys = max(16, int(len(policy.entries) * limits_slack))
    limits.rule_entries = max(16, int(n_entries * limits_slack))
    limits.prefixes = max(16, int(len(policy.classes) * limits_slack))
    limits.class_blocks = max(16, int(len(policy.classes) * limits_slack))
    limits.rules = max(1, len(policy.rules))
    limits.frontends = max(16, int(len(services.frontends) * limits_slack))
    limits.backends = max(16, int(services.n_backends * limits_slack))
    limits.maglev_slots = max(256, int(services.n_slots * limits_slack))
    limits.networks = len(endpoints.networks)
    if limits.networks > lib.NS_MAX_NETWORKS:
        raise CompileError(f"{limits.networks} networks: the tables hold {lib.NS_MAX_NETWORKS} at most")
    t = lib.ns_tables_new(limits)
    if t == ffi.NULL:
        raise CompileError("cannot allocate tables")
    t = ffi.gc(t, lib.ns_tables_free)

    def check(rc, what):
        if rc != 0:
            raise CompileError(f"table full or invalid: {what}")

    endpoints.install(lib, t, check)
    options = (lib.NS_OPT_POLICE_NODE_TRAFFIC if cluster.config.police_node_traffic else 0) | \
        (lib.NS_OPT_ROUTE_POD_ADDRESSES if cluster.config.route_pod_addresses else 0)
    check(lib.ns_tables_set_options(t, options), "options")
    for family in (4, 6):
        a = cluster.snat_address(family)
        if a is not None:
            check(lib.ns_tables_set_snat_address(t, addr16(a)), "source NAT address")
    if share_policy is not None:
        check(lib.ns_tables_share_policy(t, share_policy), "shared policy tables")
    else:
        policy.install(lib, t, check)
    services.install(lib, ffi, t, check)
    check(lib.ns_tables_seal(t), "seal")
    allocated = {f: getattr(limits, f) for f in ("endpoints", "identities", "rule_keys", "rule_entries",
                                                  "prefixes", "class_blocks", "rules", "frontends",
                                                  "backends", "maglev_slots")}
    c.limits, c.tables = allocated, t
    return c
