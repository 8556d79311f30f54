"""Networks and IP address domains (004 steps 2 and 3): the seed's constructs
`ip_address_domain(name)` and `network(name, ip_address_domain)`. Every pod is on the
cluster network (its eth0, in the cluster's domain); NetworkAttachmentDefinitions add
others, each in one domain, where addresses may repeat those of other domains. What
sits at an address is the address plane's, keyed by (domain, address)."""

from __future__ import annotations

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

