"""The soft switch's topology: one network namespace per pod wired to a switch
namespace, built with pyroute2 (netlink only, no `ip` subprocesses).

Names derive from a run prefix (``nsm`` + 4 hex digits by default) so that runs and
test workers never collide, and so that ``down()`` can find what a crashed run left:

    <prefix>-sw          the switch namespace (the switch's AF_PACKET sockets live here)
    <prefix>-p<port>     one namespace per pod; its interface is ``eth0``
    <prefix>p<port>      the switch side of the pod's veth, inside <prefix>-sw

Pods are addressed as Calico does: every address is a /32 or /128 on eth0 (no DAD),
with a default route via the link-local gateway 169.254.1.1 / fe80::1, which the
switch answers for (proxy ARP / ND). Only pod addresses from the manifests go into
the namespaces; this module refuses anything outside 198.18.0.0/15 and 2001:db8::/32
so a run can never route real traffic.

A state file ``/run/netsem/<prefix>.json`` records the run (pod key -> netns, port,
ifname, and ``ready`` once the switch forwards), so ``netsem exec`` and ``netsem down``
work from another process, and ``netsem exec`` can wait until the switch is ready.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import json
import os
import shutil
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

from pyroute2 import IPRoute, netns as pr_netns

STATE_DIR = "/run/netsem"
NETNS_DIR = "/run/netns"
PREFIX_BASE = "nsm"
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
ALLOWED_NETS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))
IFNAMSIZ = 15
MTU = 1500

# linux/if_tun.h, linux/ethtool.h, linux/sockios.h
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17
ETHTOOL_SSG = 0x19
ETHTOOL_STSO = 0x1F
ETHTOOL_SGSO = 0x24
IFA_F_NODAD = 0x02


def new_prefix() -> str:
    return PREFIX_BASE + secrets.token_hex(2)


def check_prefix(prefix: str) -> None:
    # "<prefix>p65535" must fit IFNAMSIZ; namespaces have no such limit.
    if not prefix or len(prefix) + 6 > IFNAMSIZ or not prefix.replace("_", "").isalnum():
        raise ValueError(f"prefix {prefix!r}: 1-{IFNAMSIZ - 6} letters or digits")
    if not prefix.startswith(PREFIX_BASE):
        raise ValueError(f"prefix {prefix!r} must start with {PREFIX_BASE!r} (so `netsem down` finds it)")


def check_address(ip) -> None:
    ip = ipaddress.ip_address(ip)
    if not any(ip in n for n in ALLOWED_NETS if n.version == ip.version):
        raise ValueError(f"address {ip} is outside 198.18.0.0/15 and 2001:db8::/32; "
                         "the soft switch only uses test ranges")


# -- namespaces ------------------------------------------------------------------

def _ns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


@contextlib.contextmanager
def in_netns(name: str):
    """Runs the body with the calling *thread* in network namespace `name` (sockets
    created inside keep that namespace after the block)."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        fd = os.open(_ns_path(name), os.O_RDONLY)
        try:
            pr_netns.setns(fd, flags=0)
        finally:
            os.close(fd)
        yield
    finally:
        pr_netns.setns(saved, flags=0)
        os.close(saved)


def _sysctl(path: str, value: str) -> None:
    with open("/proc/sys/" + path.replace(".", "/"), "w") as f:
        f.write(value)


def _ethtool_set(ifname: str, cmd: int, value: int) -> None:
    """SIOCETHTOOL set-value call (struct ethtool_value) in the thread's namespace."""
    ev = ctypes.create_string_buffer(struct.pack("II", cmd, value))
    ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(ev)) + b"\0" * 16
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)


def offloads_off(ifname: str) -> None:
    """TX checksum (and with it TSO), scatter-gather and GSO off: AF_PACKET cannot
    forward CHECKSUM_PARTIAL or GSO frames without virtio-net headers."""
    for cmd in (ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SSG):
        try:
            _ethtool_set(ifname, cmd, 0)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise


def _mac(ipr: IPRoute, idx: int) -> bytes:
    link = ipr.link("get", index=idx)[0]
    return bytes.fromhex(link.get_attr("IFLA_ADDRESS").replace(":", ""))


# -- the topology ------------------------------------------------------------------

@dataclass
class PodPort:
    key: str                 # "ns/pod"
    port: int                # switch port, 1..65534
    ips: list                # ipaddress objects
    netns: str = ""
    sw_ifname: str = ""      # veth end in the switch namespace ("" for TAP)
    pod_mac: bytes = b""
    gw_mac: bytes = b""      # the switch port's MAC: what the pod sees as its gateway
    tap_fd: int = -1         # TAP only: the fd the switch reads and writes


@dataclass
class Topology:
    prefix: str
    ports: dict = field(default_factory=dict)     # port -> PodPort
    port_type: str = "veth"
    static_neighbors: bool = False
    ready: bool = False

    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}-sw"

    def pod_netns(self, port: int) -> str:
        return f"{self.prefix}-p{port}"

    def by_key(self, key: str) -> PodPort:
        for pp in self.ports.values():
            if pp.key == key:
                return pp
        raise KeyError(key)

    # -- build ---------------------------------------------------------------------
    @classmethod
    def build(cls, pods: Iterable[tuple], prefix: Optional[str] = None, port_type: str = "veth",
              static_neighbors: bool = False) -> "Topology":
        """pods: (key, port, [addresses]). On any failure everything already made is
        removed and the error re-raised."""
        prefix = prefix or new_prefix()
        check_prefix(prefix)
        if port_type not in ("veth", "tap"):
            raise ValueError(f"port type {port_type!r}: veth or tap")
        topo = cls(prefix=prefix, port_type=port_type, static_neighbors=static_neighbors)
        specs = []
        for key, port, ips in pods:
            if not 0 <= port <= 65534:       # 0: the uplink ("outside the cluster")
                raise ValueError(f"{key}: port {port} out of range")
            ips = [ipaddress.ip_address(str(i)) for i in ips]
            for ip in ips:
                check_address(ip)
            specs.append(PodPort(key=key, port=port, ips=ips))
        if os.path.exists(_ns_path(topo.switch_netns)):
            raise FileExistsError(f"namespace {topo.switch_netns} exists: run `netsem down --prefix {prefix}`")
        try:
            topo._write_state()
            pr_netns.create(topo.switch_netns)
            with in_netns(topo.switch_netns):
                _sysctl("net.ipv6.conf.default.disable_ipv6", "1")
                _sysctl("net.ipv6.conf.all.disable_ipv6", "1")
                _sysctl("net.ipv4.ip_forward", "0")
            for pp in specs:
                topo._add_pod(pp)
                topo.ports[pp.port] = pp
                topo._write_state()
        except BaseException:
            topo.teardown()
            raise
        return topo

    def _add_pod(self, pp: PodPort) -> None:
        pp.netns = self.pod_netns(pp.port)
        pr_netns.create(pp.netns)
        with in_netns(pp.netns):
            _sysctl("net.ipv6.conf.default.accept_dad", "0")
            _sysctl("net.ipv6.conf.all.accept_dad", "0")
            _sysctl("net.ipv6.conf.default.accept_ra", "0")
            _sysctl("net.ipv6.conf.default.router_solicitations", "0")
            if self.port_type == "tap":
                pp.tap_fd = _open_tap("eth0")
        if self.port_type == "veth":
            pp.sw_ifname = f"{self.prefix}p{pp.port}"
            with IPRoute(netns=self.switch_netns) as ipr:
                ipr.link("add", ifname=pp.sw_ifname, kind="veth",
                         peer={"ifname": "eth0", "net_ns_fd": pp.netns})
                idx = ipr.link_lookup(ifname=pp.sw_ifname)[0]
                ipr.link("set", index=idx, mtu=MTU, state="up")
                pp.gw_mac = _mac(ipr, idx)
            with in_netns(self.switch_netns):
                offloads_off(pp.sw_ifname)
        else:
            # The switch answers as gateway with a locally administered MAC of its own.
            pp.gw_mac = bytes([0x02, 0x6e, 0x73, 0x00, pp.port >> 8, pp.port & 0xFF])
        with in_netns(pp.netns):
            offloads_off("eth0")
        with IPRoute(netns=pp.netns) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=idx, mtu=MTU, state="up")
            pp.pod_mac = _mac(ipr, idx)
            for ip in pp.ips:
                ipr.addr("add", index=idx, address=str(ip), prefixlen=ip.max_prefixlen,
                         flags=IFA_F_NODAD)
            gw_mac = ":".join(f"{b:02x}" for b in pp.gw_mac)
            if any(ip.version == 4 for ip in pp.ips):
                ipr.route("add", dst="0.0.0.0/0", gateway=GATEWAY_V4, oif=idx, flags=4)  # RTNH_F_ONLINK
                if self.static_neighbors:
                    ipr.neigh("add", dst=GATEWAY_V4, lladdr=gw_mac, ifindex=idx, state=0x80)
            if any(ip.version == 6 for ip in pp.ips):
                ipr.route("add", dst="::/0", gateway=GATEWAY_V6, oif=idx, family=socket.AF_INET6)
                if self.static_neighbors:
                    ipr.neigh("add", dst=GATEWAY_V6, lladdr=gw_mac, ifindex=idx, state=0x80,
                              family=socket.AF_INET6)

    # -- state -----------------------------------------------------------------------
    def state(self) -> dict:
        return {"prefix": self.prefix, "port_type": self.port_type, "switch_netns": self.switch_netns,
                "pid": os.getpid(), "ready": self.ready, "dns": getattr(self, "dns", None),
                "pods": {pp.key: {"netns": pp.netns or self.pod_netns(pp.port), "port": pp.port,
                                  "ifname": "eth0", "switch_ifname": pp.sw_ifname,
                                  "ips": [str(i) for i in pp.ips]}
                         for pp in self.ports.values()}}

    def state_path(self) -> str:
        return os.path.join(STATE_DIR, f"{self.prefix}.json")

    def _write_state(self) -> None:
        os.makedirs(STATE_DIR, exist_ok=True)
        tmp = self.state_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state(), f, indent=1)
        os.replace(tmp, self.state_path())

    def mark_ready(self) -> None:
        """Records that the switch forwards (what `netsem exec` waits for)."""
        self.ready = True
        self._write_state()

    # -- teardown --------------------------------------------------------------------
    def teardown(self) -> None:
        """Removes every namespace of this run (the veths go with them) and the state
        file. Safe to call twice."""
        for pp in self.ports.values():
            if pp.tap_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(pp.tap_fd)
                pp.tap_fd = -1
        down(self.prefix)


def _open_tap(name: str) -> int:
    """Creates TAP `name` in the calling thread's namespace; returns the fd that owns it."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI) + b"\0" * 22)
    except BaseException:
        os.close(fd)
        raise
    return fd


def load_state(prefix: Optional[str] = None) -> dict:
    """The state of run `prefix`, or of the only run when None."""
    if prefix is None:
        runs = list_runs()
        if len(runs) != 1:
            raise LookupError("no netsem run is up" if not runs else
                              f"several runs are up ({', '.join(runs)}): pass --prefix")
        prefix = runs[0]
    try:
        with open(os.path.join(STATE_DIR, f"{prefix}.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        raise LookupError(f"no netsem run with prefix {prefix!r}") from None


def wait_ready(prefix: Optional[str], timeout: float, poll: float = 0.1) -> dict:
    """The state of run `prefix` once its switch forwards. Raises LookupError when
    there is no such run, or it is not ready within `timeout` seconds, or its process
    has gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = load_state(prefix)
        except LookupError:
            state = None
            if time.monotonic() >= deadline:
                raise
        if state is not None:
            if state.get("ready"):
                return state
            if not _alive(state.get("pid")):
                raise LookupError(f"run {state['prefix']}: its netsem up (pid {state.get('pid')}) "
                                  "is gone before it was ready")
            if time.monotonic() >= deadline:
                raise LookupError(f"run {state['prefix']}: not ready after {timeout:g} s "
                                  "(netsem up is still building it; give --timeout more)")
        time.sleep(poll)


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_runs() -> list[str]:
    """Run prefixes that have a state file or a namespace."""
    runs = set()
    if os.path.isdir(STATE_DIR):
        runs |= {f[:-5] for f in os.listdir(STATE_DIR)
                 if f.endswith(".json") and f.startswith(PREFIX_BASE)}
    runs |= {n.split("-", 1)[0] for n in _netns_names() if n.startswith(PREFIX_BASE) and "-" in n}
    return sorted(runs)


def _netns_names() -> list[str]:
    return os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []


def down(prefix: Optional[str] = None) -> list[str]:
    """Removes the namespaces, links and state file of run `prefix` (every netsem run
    when None), whether or not its process is alive. Returns what it removed."""
    removed = []
    prefixes = [prefix] if prefix else list_runs()
    for pfx in prefixes:
        check_prefix(pfx)
        # Links in the initial namespace (none are made there, but a crash between
        # `add` and the move could leave one).
        with IPRoute() as ipr:
            for link in ipr.get_links():
                name = link.get_attr("IFLA_IFNAME") or ""
                if name.startswith(pfx + "p") or name.startswith(pfx + "e"):
                    with contextlib.suppress(Exception):
                        ipr.link("del", index=link["index"])
                        removed.append(f"link {name}")
        for name in sorted(_netns_names()):
            if name == f"{pfx}-sw" or name.startswith(f"{pfx}-p"):
                with contextlib.suppress(FileNotFoundError):
                    pr_netns.remove(name)
                    removed.append(f"netns {name}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(STATE_DIR, f"{pfx}.json"))
            removed.append(f"state {pfx}")
        if os.path.isdir(os.path.join(STATE_DIR, f"{pfx}.dns")):
            shutil.rmtree(os.path.join(STATE_DIR, f"{pfx}.dns"), ignore_errors=True)
            removed.append(f"dns files {pfx}")
    return removed
