"""Networks and IP address domains (004 steps 2 and 3): the seed's constructs
`ip_address_domain(name)` and `network(name, ip_address_domain)`. Every pod is on the
cluster network (its eth0, in the cluster's domain); NetworkAttachmentDefinitions add
others, each in one domain, where addresses may repeat those of other domains. What
sits at an address is the address plane's, keyed by (domain, address)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .addresses import DEFAULT_DOMAIN, DEFAULT_NETWORK


@dataclass(frozen=True)
class Network:
    name: str
    domain: str


def ip_address_domain(name: str) -> str:
    """An IP address domain is named: within one, an address is one thing's."""
    if not isinstance(name, str) or not name:
        raise ValueError("an IP address domain needs a name")
    return name


def network(name: str, domain: str = DEFAULT_DOMAIN) -> Network:
    """A network in an IP address domain (the cluster's by default)."""
    if not isinstance(name, str) or not name:
        raise ValueError("a network needs a name")
    return Network(name, ip_address_domain(domain))


CLUSTER_NETWORK = Network(DEFAULT_NETWORK, DEFAULT_DOMAIN)



def network_prefixes(cluster, name: str) -> list:
    """The prefixes a pod routes through its interface on network `name`, as its CNI
    plugin would leave them: the IPAM subnets of the network's definitions and of the
    networks routable to it, or, where a network has none (static addresses), a host
    prefix for each address on it. Sorted, without duplicates."""
    out: set = set()
    for net in [name] + sorted(n for pair in cluster.routable if name in pair for n in pair if n != name):
        subnets = {s for nad in cluster.network_attachment_definitions.values() if nad.network == net
                   for s in nad.subnets}
        if not subnets:
            subnets = {ipaddress.ip_network(ip) for a in cluster.plane.attachments() if a.network == net
                       for ip in cluster.plane.addresses(a)}
        out |= subnets
    return sorted(out, key=lambda n: (n.version, n))
