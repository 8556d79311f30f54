"""Network namespaces and runs: the netlink and ioctl helpers the topology is built
with, and what finds, waits for and removes a run from any process (its state file
``/run/netsem/<prefix>.json`` and every namespace and link named with its prefix).
Only test ranges are ever addressed (198.18.0.0/15, 2001:db8::/32)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import socket
import struct
import time
from typing import Optional

from pyroute2 import IPRoute, netns as pr_netns

STATE_DIR = "/run/netsem"
SHM_DIR = "/dev/shm"
NETNS_DIR = "/run/netns"
PREFIX_BASE = "nsm"
ALLOWED_NETS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))
IFNAMSIZ = 15
MTU = 1500

# linux/if_tun.h, linux/ethtool.h, linux/sockios.h
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6 = 0x01, 0x02, 0x04, 0x20, 0x40
VNET_HDR_LEN = 10             # struct virtio_net_hdr (struct ns_offload)
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


def _open_tap(name: str, offloads: bool = False) -> int:
    """Creates TAP `name` in the calling thread's namespace; returns the fd that owns it.
    offloads: every frame read or written carries a virtio-net header, and the pod's
    device keeps checksum offload, TSO (and UDP segmentation where the kernel has it)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if offloads else 0)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags) + b"\0" * 22)
        if offloads:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            try:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6)
            except OSError as e:      # kernels before 6.2 have no UDP segmentation offload
                if e.errno != errno.EINVAL:
                    raise
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    except BaseException:
        os.close(fd)
        raise
    return fd


def conntrack_path(prefix: str) -> str:
    """The run's connection table: a file in /dev/shm (tmpfs, memory only, as Cilium
    pins its maps in bpffs) that outlives a killed switch, so that `netsem up
    --attach` takes its connections over."""
    return os.path.join(SHM_DIR, f"{prefix}.ct")


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
    has gone before it was ready. A run whose switch was killed after it was ready is
    waited for (until `timeout`): `netsem up --attach` may take it over."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = load_state(prefix)
        except LookupError:
            state = None
            if time.monotonic() >= deadline:
                raise
        if state is not None:
            if state.get("ready") and _alive(state.get("pid")):
                return state
            alive = _alive(state.get("pid"))
            if not alive and not state.get("ready"):
                raise LookupError(f"run {state['prefix']}: its netsem up (pid {state.get('pid')}) "
                                  "is gone before it was ready")
            if not alive and time.monotonic() >= deadline:     # killed: waiting for an --attach
                raise LookupError(f"run {state['prefix']}: its netsem up (pid {state.get('pid')}) is gone; "
                                  f"`netsem up --attach {state['prefix']}` takes the run over")
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(conntrack_path(pfx))
            removed.append(f"connection table {pfx}")
        if os.path.isdir(os.path.join(STATE_DIR, f"{pfx}.dns")):
            shutil.rmtree(os.path.join(STATE_DIR, f"{pfx}.dns"), ignore_errors=True)
            removed.append(f"dns files {pfx}")
    return removed
