"""`netsem probe`: the reachability matrix observed with real packets through the
soft switch, next to the model's (`netsem reach`).

The switch runs in a child process pinned to one core (as it is measured). The
probes run in this process, in one thread, over non-blocking sockets: a socket
created while the thread is inside a pod's namespace stays in that namespace, so
one selector loop drives every listener and every client of every pod.

  TCP   listener in the destination; the client connects. connected (or refused:
        the packets went both ways) = allowed; timed out = denied.
  UDP   echo listener in the destination; the client sends and waits for the echo
        (the echo is a reply through the connection tracker), resending every
        250 ms. echo = allowed; nothing = denied ("reply missing").
  SCTP  kernel SCTP sockets are missing on many hosts, so a crafted INIT (raw IP
        socket in the source) and a raw socket in the destination watching for it.
        INIT seen = allowed.

With --mode packets, TCP and UDP are probed with crafted frames too (scapy, sent on
an AF_PACKET socket on the source pod's eth0, so the source kernel's own stack is
bypassed) and the answer is watched for on the same port: a SYN must come back as
a SYN-ACK or RST from the destination's kernel listener, a UDP datagram as the echo
listener's answer. Either reply is a packet of the opposite direction that the
switch only forwards because its connection tracker recorded the first one, so an
allowed verdict also proves the reply path. A pod probing itself still uses a
socket (that traffic never leaves its namespace).
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Optional

from ..dataplane import constants as K
from ..dataplane.compiler import compile_cluster
from ..model.reach import ReachComputer, declared_ports, network_matrix
from .probe_packets import craft, parse_reply, sctp_init
from .probe_services import add_probe_services
from .probe_vips import run_service_probes
from .process import start_switch, stop_switch
from .switch import topology_pods
from .netns import in_netns
from .topology import Topology

RESEND = 0.25
MAX_IN_FLIGHT = 400
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


@dataclass
class Probe:
    src: object                # Pod
    dst: object
    protocol: str
    port: int
    expected: bool
    src_ip: object = None
    dst_ip: object = None
    allowed: Optional[bool] = None
    detail: str = ""
    sock: Optional[socket.socket] = None
    next_send: float = 0.0
    tag: int = 0
    frame: bytes = b""          # --mode packets: the crafted frame (re)sent
    sport: int = 0
    via: bool = False           # dst_ip is a Service VIP of the destination


@dataclass
class _Loop:
    sel: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector)
    owned: list = field(default_factory=list)

    def add(self, sock, events, data):
        sock.setblocking(False)
        self.sel.register(sock, events, data)
        self.owned.append(sock)

    def close(self):
        for s in self.owned:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self.sel.close()


def _family(ip) -> int:
    return socket.AF_INET if ip.version == 4 else socket.AF_INET6


def _sock(netns: str, family: int, stype: int, proto: int = 0) -> socket.socket:
    with in_netns(netns):
        return socket.socket(family, stype, proto)


def run_probes(cluster, topo: Topology, pods: list, combos: list, expected: dict, timeout: float,
               mode: str = "sockets", via: dict | None = None,
               interfaces: dict | None = None) -> list[Probe]:
    """Runs every probe; `expected[(proto, port)]` is the model's Matrix.allowed.
    `via[(pod key, family)]`: the address to reach that pod at instead of its own (a
    Service VIP); a pod probing itself uses its own address, as plain probe does:
    through its Service it would be policed, and the two reports must compare.
    `interfaces[pod key]`: its interface on the network probed (eth0 by default),
    whose first address it is reached at (the model's matrix takes the same)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    interfaces = interfaces or {}
    port_of = {pod.key: next(pp for pp in topo.interfaces_of(pod.key)
                             if pp.ifname == interfaces.get(pod.key, "eth0")) for pod in pods}
    ns_of = {key: pp.netns for key, pp in port_of.items()}

    def address(key, family=None):
        return next((ip for ip in port_of[key].ips if family is None or ip.version == family), None)
    loop = _Loop()
    probes: list[Probe] = []
    by_tag: dict[int, Probe] = {}
    try:
        # listeners
        for pod in pods:
            for proto, port in combos:
                if proto == "SCTP":
                    continue
                for ip in port_of[pod.key].ips:
                    stype = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
                    s = _sock(ns_of[pod.key], _family(ip), stype)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if ip.version == 6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind((str(ip), port))
                    if proto == "TCP":
                        s.listen(1024)
                    loop.add(s, selectors.EVENT_READ, ("listen-" + proto, None))
            if any(p == "SCTP" for p, _ in combos):
                for fam in {ip.version for ip in port_of[pod.key].ips}:
                    s = _sock(ns_of[pod.key], socket.AF_INET if fam == 4 else socket.AF_INET6,
                              socket.SOCK_RAW, K.SCTP)
                    loop.add(s, selectors.EVENT_READ, ("sctp-watch", fam))
        # the probes
        tag = 0x4E530000
        for proto, port in combos:
            allowed = expected[(proto, port)]
            for i, src in enumerate(pods):
                for j, dst in enumerate(pods):
                    p = Probe(src, dst, proto, port, bool(allowed[i][j]))
                    p.dst_ip = address(dst.key)
                    p.src_ip = address(src.key, p.dst_ip.version)
                    if via and src.key != dst.key and (dst.key, p.dst_ip.version) in via:
                        p.dst_ip, p.via = via[(dst.key, p.dst_ip.version)], True
                    if p.src_ip is None:
                        p.detail = "no source address of the family"
                        continue
                    tag += 1
                    p.tag = tag
                    by_tag[tag] = p
                    probes.append(p)
        sctp_tx: dict = {}
        pkt_sock: dict = {}       # --mode packets: source pod key -> AF_PACKET socket on its interface
        pkt_probe: dict = {}      # (proto, reply src, reply dst, reply sport, reply dport) -> Probe
        pending = [p for p in probes if p.tag]
        active: list[Probe] = []
        deadline_of: dict[int, float] = {}

        def finish(p: Probe, allowed: bool, detail: str):
            if p.allowed is not None:
                return
            p.allowed, p.detail = allowed, detail + (f" via {p.dst_ip}" if p.via else "")
            if p.sock is not None:
                try:
                    loop.sel.unregister(p.sock)
                except (KeyError, ValueError):
                    pass
                p.sock.close()
                p.sock = None

        def start(p: Probe, now: float):
            fam = _family(p.dst_ip)
            ns = ns_of[p.src.key]
            deadline_of[p.tag] = now + timeout
            if mode == "packets" and p.protocol in ("TCP", "UDP") and p.src.key != p.dst.key:
                if p.src.key not in pkt_sock:
                    s = _sock(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                    s.bind((port_of[p.src.key].ifname, ETH_P_ALL))
                    loop.add(s, selectors.EVENT_READ, ("pkt-rx", None))
                    pkt_sock[p.src.key] = s
                p.sport = 20000 + (p.tag & 0x7FFF) % 40000
                pp = port_of[p.src.key]
                p.frame = craft(pp.pod_mac, pp.gw_mac, p.src_ip, p.dst_ip, p.protocol, p.sport, p.port, p.tag)
                pkt_probe[(K.PROTO_NUMBERS[p.protocol], str(p.dst_ip), str(p.src_ip),
                           p.port, p.sport)] = p
                p.next_send = now
            elif p.protocol == "TCP":
                s = _sock(ns, fam, socket.SOCK_STREAM)
                s.setblocking(False)
                s.bind((str(p.src_ip), 0))
                rc = s.connect_ex((str(p.dst_ip), p.port))
                p.sock = s
                if rc not in (0, errno.EINPROGRESS):
                    finish(p, False, os.strerror(rc))
                    return
                loop.sel.register(s, selectors.EVENT_WRITE, ("tcp-client", p))
            elif p.protocol == "UDP":
                s = _sock(ns, fam, socket.SOCK_DGRAM)
                s.setblocking(False)
                s.bind((str(p.src_ip), 0))
                s.connect((str(p.dst_ip), p.port))
                p.sock = s
                loop.sel.register(s, selectors.EVENT_READ, ("udp-client", p))
                p.next_send = now
            else:
                key = (p.src.key, fam)
                if key not in sctp_tx:
                    sctp_tx[key] = _sock(ns, fam, socket.SOCK_RAW, K.SCTP)
                    sctp_tx[key].setblocking(False)
                    sctp_tx[key].bind((str(p.src_ip), 0))     # routed by its source, as the others
                    loop.owned.append(sctp_tx[key])
                p.next_send = now

        while pending or active:
            now = time.monotonic()
            while pending and len(active) < MAX_IN_FLIGHT:
                p = pending.pop()
                active.append(p)
                start(p, now)
            for p in active:
                if p.allowed is None and p.next_send and now >= p.next_send:
                    p.next_send = now + RESEND
                    try:
                        if p.frame:
                            pkt_sock[p.src.key].send(p.frame)
                        elif p.protocol == "UDP":
                            p.sock.send(struct.pack("!I", p.tag))
                        elif p.protocol == "SCTP":
                            pkt = sctp_init(40000 + (p.tag & 0x3FFF), p.port, p.tag)
                            sctp_tx[(p.src.key, _family(p.dst_ip))].sendto(pkt, (str(p.dst_ip), 0))
                    except OSError as e:
                        if e.errno == errno.ECONNREFUSED:
                            finish(p, True, "refused")
                if p.allowed is None and now >= deadline_of[p.tag]:
                    if p.frame:
                        finish(p, False, "no SYN-ACK or RST" if p.protocol == "TCP"
                               else "echo missing")
                    else:
                        finish(p, False, {"TCP": "timed out", "UDP": "reply missing",
                                          "SCTP": "INIT not seen"}[p.protocol])
            active = [p for p in active if p.allowed is None]
            if not active and not pending:
                break
            for key, _ in loop.sel.select(timeout=0.02):
                kind, p = key.data
                s = key.fileobj
                try:
                    if kind == "listen-TCP":
                        c, _ = s.accept()
                        c.close()
                    elif kind == "listen-UDP":
                        data, addr = s.recvfrom(2048)
                        s.sendto(data, addr)
                    elif kind == "tcp-client":
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err == 0:
                            finish(p, True, "connected")
                        elif err == errno.ECONNREFUSED:
                            finish(p, True, "refused")
                        elif err != errno.EINPROGRESS:
                            finish(p, False, os.strerror(err))
                    elif kind == "udp-client":
                        try:
                            data = s.recv(2048)
                        except ConnectionRefusedError:
                            finish(p, True, "refused")
                            continue
                        if data == struct.pack("!I", p.tag):
                            finish(p, True, "connected")
                    elif kind == "pkt-rx":
                        while True:
                            try:
                                frame, addr = s.recvfrom(4096)
                            except (BlockingIOError, InterruptedError):
                                break
                            if addr[2] == PACKET_OUTGOING:
                                continue
                            r = parse_reply(frame)
                            q = pkt_probe.get(r[:5]) if r else None
                            if q is None or q.allowed is not None:
                                continue
                            if r[0] == K.TCP and r[5] & 0x12 == 0x12:
                                finish(q, True, "SYN-ACK received")
                            elif r[0] == K.TCP and r[5] & 0x04:
                                finish(q, True, "RST received")
                            elif r[0] == K.UDP and r[6][:4] == struct.pack("!I", q.tag):
                                finish(q, True, "echo received")
                    elif kind == "sctp-watch":
                        data = s.recv(4096)
                        if p == 4:
                            data = data[(data[0] & 0xF) * 4:]
                        if len(data) >= 20 and data[12] == 1:
                            t = struct.unpack("!I", data[16:20])[0]
                            q = by_tag.get(t)
                            if q is not None and q.protocol == "SCTP":
                                finish(q, True, "INIT seen")
                except (BlockingIOError, InterruptedError):
                    pass
        return [p for p in probes]
    finally:
        loop.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@dataclass
class ProbeReport:
    pods: list                       # Pod, in matrix order
    combos: list                     # (protocol, port)
    probes: list                     # Probe
    skipped: list                    # pod keys not probed (no interface of their own)
    services: list = field(default_factory=list)   # probe_vips.ServiceProbe (--services)

    @property
    def differ(self) -> list:
        return [p for p in self.probes if p.allowed is not None and p.allowed != p.expected]

    @property
    def services_differ(self) -> list:
        return [p for p in self.services if p.differs]


def probe(cluster, ports=None, protocols=None, timeout=1.0, mode="sockets", prefix=None,
          port_type="veth", pcap=None, via_service=False, services=False, network=None) -> ProbeReport:
    """Builds the topology, runs the switch in its own process, probes every pair,
    tears everything down (also on failure) and reports. via_service: every
    destination through a Service of its own (probe_services.py; adds them to
    `cluster`). services: then every Service port from every pod (probe_vips.py).
    network: a secondary network's name: probe the pods attached to it, at their
    addresses on it, against the model's matrix of that network."""
    if ports:
        combos = [(proto, port) for proto in (protocols or ["TCP", "UDP", "SCTP"]) for port in ports]
    else:
        combos = declared_ports(cluster, protocols)
    all_pods = cluster.pod_list()
    if network is None:
        pods = [p for p in all_pods if cluster.attachment(p.key) is not None]
        skipped = [p.key for p in all_pods if cluster.attachment(p.key) is None]
        computer = ReachComputer(cluster, pods)
        expected = {(proto, port): computer.matrix(proto, port).allowed for proto, port in combos}
        interfaces = None
    else:
        on = {p.key: a for p in all_pods for a in cluster.plane.attachments_of(p.key) if a.network == network}
        pods = [p for p in all_pods if p.key in on and cluster.plane.addresses(on[p.key])]
        skipped = []
        interfaces = {p.key: on[p.key].interface for p in pods}
        expected = {(proto, port): network_matrix(cluster, network, proto, port, pods).allowed
                    for proto, port in combos}
    via = add_probe_services(cluster, pods, combos) if via_service else None
    compiled = compile_cluster(cluster)
    topo = Topology.build(topology_pods(compiled), prefix=prefix, port_type=port_type)
    pid = None
    try:
        cpus = sorted(os.sched_getaffinity(0))
        pid = start_switch(compiled, topo, cpu=cpus[-1] if len(cpus) > 1 else None, pcap=pcap)
        probes = run_probes(cluster, topo, pods, combos, expected, timeout, mode=mode, via=via,
                            interfaces=interfaces)
        vips = run_service_probes(cluster, topo, pods, timeout) if services else []
    finally:
        if pid is not None:
            stop_switch(pid)
        topo.teardown()
    return ProbeReport(pods, combos, probes, skipped, vips)
