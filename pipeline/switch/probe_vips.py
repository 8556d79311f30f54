"""`netsem probe --services`: real connections from every pod, and from the uplink
namespace (outside the cluster), to every port of every Service with a virtual IP,
several per cell, through the switch's service mapper.
Every backend pod listens on its target ports and answers with its own name, so
each connection says which backend took it: the cells show where policy lets a
Service be reached, and the counts show how the load spread.

A cell is expected (model/reach.py `service_reach`) allowed through every ready
backend ('.'), through some ('~'), through none ('X'), or rejected ('-': no ready
backend). The observed cell differs when a connection was answered by a backend the
model denies or does not list, when one timed out although every backend allows,
when none was answered although some backend allows (with enough tries to reach
it), or when a rejected port was not refused."""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from ..model.reach import service_reach
from .netns import in_netns
from .topology import Topology

PER_CELL = 32                    # enough to meet a backend of 10 with odds 1 - 3e-2; of 3, 1 - 2e-6


@dataclass
class ServiceProbe:
    source: str
    service: str
    protocol: str
    port: int
    vip: object
    expected: str                    # '.', '~', 'X' or '-' (see the module docstring)
    allowed_backends: set            # pod keys the model allows
    listed_backends: set             # every ready backend's pod key
    answers: Counter = field(default_factory=Counter)
    timeouts: int = 0
    refused: int = 0

    @property
    def observed(self) -> str:
        if self.refused and not self.answers and not self.timeouts:
            return "-"
        if not self.answers:
            return "X"
        return "." if not self.timeouts and not self.refused else "~"

    @property
    def differs(self) -> bool:
        if set(self.answers) - self.allowed_backends:
            return True                  # answered by a backend the model denies (or unknown)
        if self.expected == "-":
            return self.observed != "-"
        if self.expected == ".":
            return self.observed != "."
        if self.expected == "X":
            return bool(self.answers) or bool(self.refused)
        return self.refused > 0          # '~': answers and timeouts may both come


def _plan(cluster, pods) -> tuple[list[ServiceProbe], set, list]:
    """(probes, listeners (pod, address, port, protocol)). A pod's own Service is
    probed too: when the connection lands on the pod itself, the switch's hairpin
    source NAT brings the reply back through it."""
    plan, listeners = [], set()
    for cell in service_reach(cluster, pods):
        if cell.protocol not in ("TCP", "UDP"):
            continue                     # SCTP has no kernel sockets on many hosts
        listeners |= {(b.pod, b.address, b.port, cell.protocol) for b, _ in cell.backends if b.pod}
        svc = cluster.services[cell.service]
        fams = {ip.version for _, ip in cluster.plane.lookup_pod_to_address_mappings(cell.source)}
        vip = next((ip for _, ip in cluster.plane.lookup_service_to_address_mappings(svc.key)
                    if ip.version in fams), None)
        if vip is None:
            continue
        plan.append(ServiceProbe(cell.source, cell.service, cell.protocol, cell.port, vip, cell.mark,
                                 {b.pod for b, ok in cell.backends if ok}, {b.pod for b, _ in cell.backends}))
    return plan + _from_uplink(cluster, plan), listeners


def _from_uplink(cluster, plan) -> list[ServiceProbe]:
    """The same Service ports from outside the cluster (the uplink namespace): each
    ready backend policed as reached from the uplink's address."""
    from ..model.connections import Connections, open_connection_with_ip_addresses
    from ..model.services import ready_backends
    from .switch import UPLINK, UPLINK_ADDRESSES
    out, seen = [], set()
    for p in plan:
        key = (p.service, p.protocol, p.port)
        if key in seen:
            continue
        seen.add(key)
        svc = cluster.services[p.service]
        src = next((ip for ip in UPLINK_ADDRESSES if ip.version == p.vip.version), None)
        backends = ready_backends(cluster, svc, svc.port(p.protocol, p.port), p.vip.version)
        ok = {b.pod: open_connection_with_ip_addresses(cluster, Connections(), src, b.address, p.protocol,
                                                       b.port).allowed for b in backends}
        mark = "-" if not ok else "." if all(ok.values()) else "X" if not any(ok.values()) else "~"
        out.append(ServiceProbe(UPLINK, p.service, p.protocol, p.port, p.vip, mark,
                                {k for k, v in ok.items() if v}, set(ok)))
    return out


def run_service_probes(cluster, topo: Topology, pods: list, timeout: float,
                       per_cell: int = PER_CELL) -> list[ServiceProbe]:
    """The probes with what they saw."""
    plan, listeners = _plan(cluster, pods)
    ns_of = {pp.key: pp.netns for pp in topo.ports.values()}
    sel = selectors.DefaultSelector()
    owned: list[socket.socket] = []

    def add(s, events, data):
        s.setblocking(False)
        sel.register(s, events, data)
        owned.append(s)

    try:
        # Every backend pod answers on its target ports with its name.
        for pod, address, port, proto in sorted(listeners, key=str):
            if pod not in ns_of:
                continue
            with in_netns(ns_of[pod]):
                s = socket.socket(socket.AF_INET if address.version == 4 else socket.AF_INET6,
                                  socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if address.version == 6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((str(address), port))
            if proto == "TCP":
                s.listen(1024)
            add(s, selectors.EVENT_READ, ("serve-" + proto, pod.encode()))
        # Clients: per_cell connections per cell, all at once, each on its own port.
        deadline = time.monotonic() + timeout
        waiting = {}
        for p in plan:
            for _ in range(per_cell):
                with in_netns(ns_of[p.source]):
                    s = socket.socket(socket.AF_INET if p.vip.version == 4 else socket.AF_INET6,
                                      socket.SOCK_STREAM if p.protocol == "TCP" else socket.SOCK_DGRAM)
                s.setblocking(False)
                if p.protocol == "TCP":
                    rc = s.connect_ex((str(p.vip), p.port))
                    if rc not in (0, errno.EINPROGRESS):
                        p.refused += 1
                        s.close()
                        continue
                else:
                    s.connect((str(p.vip), p.port))
                    s.send(b"?")
                add(s, selectors.EVENT_READ, ("client", p))
                waiting[s] = p
        while waiting and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.05):
                kind, data = key.data
                s = key.fileobj
                try:
                    if kind == "serve-TCP":
                        c, _ = s.accept()
                        c.sendall(data)
                        c.close()
                    elif kind == "serve-UDP":
                        _, addr = s.recvfrom(64)
                        s.sendto(data, addr)
                    else:
                        name = s.recv(256).decode()
                        data.answers[name] += 1
                        sel.unregister(s)
                        waiting.pop(s, None)
                except ConnectionRefusedError:
                    data.refused += 1
                    sel.unregister(s)
                    waiting.pop(s, None)
                except (BlockingIOError, InterruptedError):
                    pass
        for p in waiting.values():
            p.timeouts += 1
        return plan
    finally:
        for s in owned:
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        sel.close()
