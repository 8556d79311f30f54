"""A rule's port entries (protocol, lo, hi) per rule key, named ports resolved
against the identity the port belongs to (the local for ingress, the peer for
egress; towards any address, per destination identity). Shared by the rule keys
(policy.py) and the peer-set states (peer_states.py)."""

from __future__ import annotations

from ...model.policy import INGRESS
from .. import constants as K


def _port_entries(rule, direction, local, peer_id, block_id, idents, on_net, named_ports_of):
    """Yields ((peer, block), (proto, lo, hi)) for one peer key of one rule."""
    if rule.ports is None:
        yield (peer_id, block_id), (0, 0, 65535)
        return
    for p in rule.ports:
        proto = K.PROTO_NUMBERS[p.protocol]
        if p.port is None:
            yield (peer_id, block_id), (proto, 0, 65535)
        elif isinstance(p.port, int):
            yield (peer_id, block_id), (proto, p.port, p.end_port if p.end_port is not None else p.port)
        elif direction == INGRESS:
            for port in named_ports_of(local, p.port, p.protocol):
                yield (peer_id, block_id), (proto, port, port)
        elif peer_id:
            # Egress towards a selected identity: resolve against it.
            j = idents[peer_id - 1]
            for port in named_ports_of(j, p.port, p.protocol):
                yield (peer_id, block_id), (proto, port, port)
        else:
            # Egress towards any address or an ipBlock: only pods can have named
            # ports, so expand per destination identity (of the same network).
            for j_id, port in named_ports_of(on_net, p.port, p.protocol):
                yield (j_id, block_id), (proto, port, port)
