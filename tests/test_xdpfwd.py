"""bench/gen/xdpfwd.c forwards: built with gcc, run in a "switch" namespace between two
"pod" namespaces (veth pairs), UDP datagrams from pod A reach pod B and back, with the
Ethernet addresses rewritten as asked. Skipped unless root with libxdp's headers.

Pod A (198.18.1.10) and pod B (198.18.1.11) share a /24 and have static neighbour
entries that point at the *switch-side* veth MACs; the forwarder must rewrite the
destination to the other pod's MAC (else the pod's kernel drops the frame as
PACKET_OTHERHOST) and the source to its egress port's MAC (checked with a packet socket).

The pods' veths have TX checksum offload off: AF_XDP (copy mode) receives a
CHECKSUM_PARTIAL frame as plain bytes with only the pseudo-header sum in the UDP
checksum field and no metadata saying so, and the receiving pod's kernel then drops it
(Udp InCsumErrors). The real switch carries that state in virtio-net headers instead."""

import os
import secrets
import socket
import struct
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "bench", "gen", "xdpfwd.c")
A_IP, B_IP = "198.18.1.10", "198.18.1.11"
PORT = 9999
COUNT = 1000

if os.geteuid() != 0:
    pytest.skip("xdpfwd test creates network namespaces: run as root", allow_module_level=True)
if not os.path.exists("/usr/include/xdp/xsk.h"):
    pytest.skip("libxdp headers missing (apt-get install libxdp-dev libbpf-dev)", allow_module_level=True)

from pyroute2 import IPRoute, NetNS, netns  # noqa: E402

from pipeline.switch.netns import ETHTOOL_STXCSUM, NETNS_DIR, _ethtool_set, in_netns  # noqa: E402


def tx_csum_off(ns: str, ifname: str) -> None:
    """ethtool -K IFNAME tx off, in namespace `ns`."""
    with in_netns(ns):
        _ethtool_set(ifname, ETHTOOL_STXCSUM, 0)


def mac_of(ns: str, ifname: str) -> str:
    with NetNS(ns) as ipr:
        return ipr.get_links(ifname=ifname)[0].get_attr("IFLA_ADDRESS")


class Topo:
    """Namespaces {prefix}-a, {prefix}-b, {prefix}-s; veths {prefix}a|{prefix}sa and
    {prefix}b|{prefix}sb. close() removes all of it, whatever exists."""

    def __init__(self):
        self.prefix = "nsx" + secrets.token_hex(3)
        p = self.prefix
        self.ns = {k: f"{p}-{k}" for k in "abs"}
        self.ifs = {"a": f"{p}a", "b": f"{p}b", "sa": f"{p}sa", "sb": f"{p}sb"}
        for n in self.ns.values():
            netns.create(n)
        with IPRoute() as ipr:
            for pod in "ab":
                ipr.link("add", ifname=self.ifs[pod], kind="veth", peer=self.ifs["s" + pod])
                for name, ns in ((self.ifs[pod], self.ns[pod]), (self.ifs["s" + pod], self.ns["s"])):
                    ipr.link("set", index=ipr.link_lookup(ifname=name)[0], net_ns_fd=ns)
        self.mac = {}
        for name in ("sa", "sb"):
            with NetNS(self.ns["s"]) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname=self.ifs[name])[0], state="up")
            self.mac[name] = mac_of(self.ns["s"], self.ifs[name])
        for pod, ip, other_ip in (("a", A_IP, B_IP), ("b", B_IP, A_IP)):
            with NetNS(self.ns[pod]) as ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.link("set", index=lo, state="up")
                idx = ipr.link_lookup(ifname=self.ifs[pod])[0]
                ipr.link("set", index=idx, state="up")
                ipr.addr("add", index=idx, address=ip, prefixlen=24)
                ipr.neigh("add", dst=other_ip, lladdr=self.mac["s" + pod], ifindex=idx, state=0x80)  # PERMANENT
            tx_csum_off(self.ns[pod], self.ifs[pod])
            self.mac[pod] = mac_of(self.ns[pod], self.ifs[pod])

    def close(self) -> None:
        for n in self.ns.values():
            if os.path.exists(os.path.join(NETNS_DIR, n)):
                netns.remove(n)
        with IPRoute() as ipr:                 # ends not yet moved when setup failed
            for name in self.ifs.values():
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)


@pytest.fixture
def topo():
    t = Topo()
    try:
        yield t
    finally:
        t.close()


@pytest.fixture(scope="module")
def xdpfwd(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("xdpfwd") / "xdpfwd")
    r = subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, SRC, "-lxdp", "-lbpf"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def recv_all(sock: socket.socket, want: int, timeout: float) -> set[int]:
    got = set()
    deadline = time.monotonic() + timeout
    while len(got) < want and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(2048)
        except socket.timeout:
            break
        got.add(struct.unpack("!I", data[:4])[0])
    return got


def send_burst(src_ns: str, dst_ip: str, receiver: socket.socket) -> set[int]:
    with in_netns(src_ns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tx:
        for i in range(COUNT):
            tx.sendto(struct.pack("!I", i) + b"x" * 14, (dst_ip, PORT))   # 60-byte frames
            if i % 64 == 63:
                time.sleep(0.001)
    return recv_all(receiver, COUNT, 2.0)


@pytest.mark.parametrize("mode", ["drv", "skb"])
def test_xdpfwd_forwards_both_ways_and_rewrites_macs(topo, xdpfwd, tmp_path, mode):
    t = topo
    fd = os.open(os.path.join(NETNS_DIR, t.ns["s"]), os.O_RDONLY)
    log = open(tmp_path / "xdpfwd.err", "w+")
    proc = subprocess.Popen([xdpfwd, t.ifs["sa"], t.ifs["sb"], t.mac["b"], t.mac["a"], "4"],
                            stdout=subprocess.PIPE, stderr=log, text=True, pass_fds=(fd,),
                            env=dict(os.environ, XDPFWD_MODE=mode),
                            preexec_fn=lambda: netns.setns(fd, flags=0))
    os.close(fd)
    socks = []
    try:
        with in_netns(t.ns["b"]):
            rx_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            raw_b = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        with in_netns(t.ns["a"]):
            rx_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks = [rx_a, rx_b, raw_b]
        raw_b.bind((t.ifs["b"], 0))
        for s, ip in ((rx_a, A_IP), (rx_b, B_IP)):
            s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)     # SO_RCVBUFFORCE
            s.bind((ip, PORT))
        raw_b.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)
        deadline = time.monotonic() + 2                  # wait for the forwarder's "mode" line
        while "mode" not in open(log.name).read() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, open(log.name).read()

        got_b = send_burst(t.ns["a"], B_IP, rx_b)
        got_a = send_burst(t.ns["b"], A_IP, rx_a)
        out, _ = proc.communicate(timeout=15)
        err = open(log.name).read()
        assert proc.returncode == 0, err
        print(err + out)
        assert len(got_b) >= COUNT * 0.99, (len(got_b), err, out)
        assert len(got_a) >= COUNT * 0.99, (len(got_a), err, out)

        raw_b.settimeout(0.5)
        frame = raw_b.recv(2048)                         # a forwarded frame as pod B saw it
        assert frame[0:6] == bytes.fromhex(t.mac["b"].replace(":", ""))
        assert frame[6:12] == bytes.fromhex(t.mac["sb"].replace(":", ""))

        f = dict(zip(out.split()[1::2], out.split()[2::2]))
        assert int(f["rx_a"]) >= COUNT and int(f["tx_b"]) >= COUNT, out
        assert int(f["rx_b"]) >= COUNT and int(f["tx_a"]) >= COUNT, out
        assert f["mode"] == mode                         # veth takes native XDP
    finally:
        for s in socks:
            s.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
