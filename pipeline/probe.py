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
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from .reach import ReachComputer, declared_ports
from .topology import Topology, in_netns

RESEND = 0.25
MAX_IN_FLIGHT = 400
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


# -- SCTP INIT, with its CRC32c (RFC 3309) ---------------------------------------------

def _crc32c_table():
    tab = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        tab.append(c)
    return tab


_CRC_TAB = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TAB[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def sctp_init(sport: int, dport: int, tag: int) -> bytes:
    chunk = struct.pack("!BBHIIHHI", 1, 0, 20, tag, 65536, 1, 1, tag)
    pkt = struct.pack("!HHII", sport, dport, 0, 0) + chunk
    crc = crc32c(pkt)
    return pkt[:8] + struct.pack("<I", crc) + pkt[12:]


# -- probes ----------------------------------------------------------------------------

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


def start_switch(compiled, topo: Topology, cpu: Optional[int] = None, pcap: Optional[str] = None,
                 connections: int = 0) -> int:
    """Forks the switch; returns its pid once its ports are open. connections: the
    conntrack capacity (0: the pipeline's default)."""
    from .switch import Switch
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:           # the switch
        code = 0
        try:
            os.close(r)
            stop = []
            signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if cpu is not None:
                try:
                    os.sched_setaffinity(0, {cpu})
                except OSError:
                    pass
            sw = Switch(compiled, topo, connections=connections)
            rec = None
            if pcap:
                from .switch_pcap import Recorder
                rec = Recorder(sw, pcap)
            os.write(w, b"ok")
            os.close(w)
            while not stop:
                sw.run_for(0.05 if rec else 0.1)
                if rec is not None:
                    rec.drain()
            if rec is not None:
                rec.close()
        except BaseException as e:    # report, never raise into the parent's code
            try:
                os.write(w, f"error {e}".encode())
            except OSError:
                pass
            code = 1
        os._exit(code)
    os.close(w)
    msg = os.read(r, 4096).decode()
    os.close(r)
    if msg != "ok":
        stop_switch(pid)
        raise RuntimeError(f"switch failed to start: {msg or 'died'}")
    return pid


def stop_switch(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def craft(pp, p: "Probe") -> bytes:
    """The first packet of probe `p` as an Ethernet frame from pod port `pp` to the
    gateway: a TCP SYN (sequence number = tag) or a UDP datagram (payload = tag)."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    mac = lambda b: ":".join(f"{x:02x}" for x in b)     # noqa: E731
    l3 = (IP(src=str(p.src_ip), dst=str(p.dst_ip), ttl=64) if p.dst_ip.version == 4
          else IPv6(src=str(p.src_ip), dst=str(p.dst_ip), hlim=64))
    l4 = (TCP(sport=p.sport, dport=p.port, flags="S", seq=p.tag, window=65535) if p.protocol == "TCP"
          else UDP(sport=p.sport, dport=p.port) / struct.pack("!I", p.tag))
    return bytes(Ether(src=mac(pp.pod_mac), dst=mac(pp.gw_mac)) / l3 / l4)


def parse_reply(frame: bytes):
    """-> (proto, src, dst, sport, dport, tcp_flags, payload) of an IPv4/IPv6 TCP/UDP
    frame, or None."""
    if len(frame) < 14:
        return None
    et = struct.unpack("!H", frame[12:14])[0]
    if et == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0xF) * 4
        proto, src, dst = frame[23], frame[26:30], frame[30:34]
        l4 = frame[14 + ihl:]
        fam = socket.AF_INET
    elif et == 0x86DD and len(frame) >= 54:
        proto, src, dst = frame[20], frame[22:38], frame[38:54]
        l4 = frame[54:]
        fam = socket.AF_INET6
    else:
        return None
    if proto not in (6, 17) or len(l4) < 8:
        return None
    sport, dport = struct.unpack("!HH", l4[:4])
    if proto == 6:
        if len(l4) < 20:
            return None
        return (6, socket.inet_ntop(fam, src), socket.inet_ntop(fam, dst), sport, dport, l4[13], b"")
    return (17, socket.inet_ntop(fam, src), socket.inet_ntop(fam, dst), sport, dport, 0, l4[8:])


def run_probes(topo: Topology, pods: list, combos: list, expected: dict, timeout: float,
               mode: str = "sockets") -> list[Probe]:
    """Runs every probe; `expected[(proto, port)]` is the model's Matrix.allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ns_of = {pp.key: pp.netns for pp in topo.ports.values()}
    port_of = {pp.key: pp for pp in topo.ports.values()}
    loop = _Loop()
    probes: list[Probe] = []
    by_tag: dict[int, Probe] = {}
    try:
        # listeners
        for pod in pods:
            for proto, port in combos:
                if proto == "SCTP":
                    continue
                for ip in pod.ips:
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
                for fam in {ip.version for ip in pod.ips}:
                    s = _sock(ns_of[pod.key], socket.AF_INET if fam == 4 else socket.AF_INET6,
                              socket.SOCK_RAW, 132)
                    loop.add(s, selectors.EVENT_READ, ("sctp-watch", fam))
        # the probes
        tag = 0x4E530000
        for proto, port in combos:
            allowed = expected[(proto, port)]
            for i, src in enumerate(pods):
                for j, dst in enumerate(pods):
                    p = Probe(src, dst, proto, port, bool(allowed[i][j]))
                    p.dst_ip = dst.ips[0]
                    p.src_ip = src.address(p.dst_ip.version)
                    if p.src_ip is None:
                        p.detail = "no source address of the family"
                        continue
                    tag += 1
                    p.tag = tag
                    by_tag[tag] = p
                    probes.append(p)
        sctp_tx: dict = {}
        pkt_sock: dict = {}       # --mode packets: source pod key -> AF_PACKET socket on its eth0
        pkt_probe: dict = {}      # (proto, reply src, reply dst, reply sport, reply dport) -> Probe
        pending = [p for p in probes if p.tag]
        active: list[Probe] = []
        deadline_of: dict[int, float] = {}

        def finish(p: Probe, allowed: bool, detail: str):
            if p.allowed is not None:
                return
            p.allowed, p.detail = allowed, detail
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
                    s.bind(("eth0", ETH_P_ALL))
                    loop.add(s, selectors.EVENT_READ, ("pkt-rx", None))
                    pkt_sock[p.src.key] = s
                p.sport = 20000 + (p.tag & 0x7FFF) % 40000
                p.frame = craft(port_of[p.src.key], p)
                pkt_probe[(6 if p.protocol == "TCP" else 17, str(p.dst_ip), str(p.src_ip),
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
                    sctp_tx[key] = _sock(ns, fam, socket.SOCK_RAW, 132)
                    sctp_tx[key].setblocking(False)
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
                            if r[0] == 6 and r[5] & 0x12 == 0x12:
                                finish(q, True, "SYN-ACK received")
                            elif r[0] == 6 and r[5] & 0x04:
                                finish(q, True, "RST received")
                            elif r[0] == 17 and r[6][:4] == struct.pack("!I", q.tag):
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


# -- output ------------------------------------------------------------------------------

def _cell(obs: Optional[bool], exp: bool) -> str:
    if obs is None:
        return "?"
    c = "." if obs else "X"
    return c if obs == exp else c + "!"


def render_table(pods: list, combos: list, results: dict, out) -> None:
    names = [p.key for p in pods]
    num = max(2, len(str(len(names))))
    width = max((len(n) for n in names), default=0)
    for k, (proto, port) in enumerate(combos):
        if k:
            print(file=out)
        print(f"{proto}/{port}  observed (row: from, column: to; . allowed, X denied, "
              f"! differs from the model)", file=out)
        print(f"{'':>{len(str(len(names)))}}  {'':<{width}}  " +
              " ".join(f"{j + 1:>{num}}" for j in range(len(names))), file=out)
        for i, name in enumerate(names):
            cells = []
            for j in range(len(names)):
                p = results.get((proto, port, i, j))
                cells.append(f"{_cell(p.allowed if p else None, p.expected if p else True):>{num}}")
            print(f"{i + 1:>{len(str(len(names)))}}  {name:<{width}}  " + " ".join(cells), file=out)


def run_probe(cluster, ports=None, protocols=None, output="table", timeout=1.0, mode="sockets",
              prefix=None, port_type="veth", out=sys.stdout, pcap=None) -> int:
    from .compiler import compile_cluster
    from .switch import topology_pods
    if ports:
        combos = [(proto, port) for proto in (protocols or ["TCP", "UDP", "SCTP"]) for port in ports]
    else:
        combos = declared_ports(cluster, protocols)
    all_pods = cluster.pod_list()
    ported = cluster.switch_ports()
    pods = [p for p in all_pods if p.key in ported]
    skipped = [p.key for p in all_pods if p not in pods]
    if skipped:
        print(f"note: not probed (hostNetwork or no address): {', '.join(skipped)}", file=sys.stderr)
    computer = ReachComputer(cluster, pods)
    expected = {(proto, port): computer.matrix(proto, port).allowed for proto, port in combos}
    compiled = compile_cluster(cluster)
    topo = Topology.build(topology_pods(compiled), prefix=prefix, port_type=port_type)
    pid = None
    try:
        cpus = sorted(os.sched_getaffinity(0))
        pid = start_switch(compiled, topo, cpu=cpus[-1] if len(cpus) > 1 else None, pcap=pcap)
        probes = run_probes(topo, pods, combos, expected, timeout, mode=mode)
    finally:
        if pid is not None:
            stop_switch(pid)
        topo.teardown()
    index = {p.key: i for i, p in enumerate(pods)}
    results = {(p.protocol, p.port, index[p.src.key], index[p.dst.key]): p for p in probes}
    differ = [p for p in probes if p.allowed is not None and p.allowed != p.expected]
    if output == "json":
        json.dump([{"from": p.src.key, "to": p.dst.key, "protocol": p.protocol, "port": p.port,
                    "allowed": p.allowed, "expected": p.expected, "detail": p.detail}
                   for p in probes], out, indent=1)
        print(file=out)
    else:
        render_table(pods, combos, results, out)
        print(file=out)
        if differ:
            print(f"{len(differ)} of {len(probes)} probes differ from the model:", file=out)
            for p in differ:
                print(f"  {p.src.key} -> {p.dst.key} {p.protocol}/{p.port}: observed "
                      f"{'allowed' if p.allowed else 'denied'} ({p.detail}), model "
                      f"{'allowed' if p.expected else 'denied'}", file=out)
        else:
            print(f"all {len(probes)} probes agree with the model", file=out)
    return 1 if differ else 0
