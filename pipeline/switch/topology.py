"""The soft switch's topology: one network namespace per pod, one veth (or TAP) per
pod interface, each wired to its own switch port; built with pyroute2 (netlink only,
no `ip` subprocesses).

Names derive from a run prefix (``nsm`` + 4 hex digits by default) so that runs and
test workers never collide, and so that ``down()`` can find what a crashed run left:

    <prefix>-sw          the switch namespace (the switch's AF_PACKET sockets live here)
    <prefix>-p<port>     one namespace per pod, numbered by its first port; in it the
                         pod's interfaces, named as the pod asked (eth0, net1, ...)
    <prefix>p<port>      the switch side of each interface's veth, inside <prefix>-sw

Pods are addressed as Calico does: every address is a /32 or /128 (no DAD), routed
via the link-local gateway 169.254.1.1 / fe80::1, which the switch answers for (proxy
ARP / ND) on every port. eth0 carries the default routes; a secondary network's
interface carries routes for that network's prefixes only, as Multus leaves a pod
(the CNI plugin's routes; the cluster network keeps the default). Only addresses in
198.18.0.0/15 and 2001:db8::/32 are accepted, so a run can never route real traffic.

A state file ``/run/netsem/<prefix>.json`` records the run (pod -> netns and its
interfaces, and ``ready`` once the switch forwards), so ``netsem exec`` and
``netsem down`` work from another process.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Optional

from pyroute2 import IPRoute, netns as pr_netns

from .netns import (IFA_F_NODAD, MTU, STATE_DIR, _alive, _mac, _ns_path, _open_tap, _sysctl, check_address,
                    check_prefix, down, in_netns, load_state, new_prefix, offloads_off)

GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
PRIMARY = "eth0"
RTNH_F_ONLINK = 4
# Secondary interfaces' routes get metrics from here up, in interface order, so two
# interfaces routing one prefix (overlapping networks in one pod) both install and
# the first wins for unbound sockets. Each also gets a routing table of its own (the
# same number) and a rule sending what its addresses source there, as the CNI "sbr"
# (source-based routing) plugin does: a socket bound to its net2 address leaves by
# net2 even when net1 routes the same prefix.
SECONDARY_METRIC = 100
RULE_PRIORITY = 1000


class Wire(NamedTuple):
    """One interface to build: `key` names it as captures do (ns/pod for eth0,
    ns/pod/ifname for the others); `pod` is the namespace it goes in."""
    key: str
    port: int
    ips: list
    pod: str = ""                   # "" = key (a pod with one interface)
    ifname: str = PRIMARY
    routes: tuple = ()              # prefixes routed through it; () = the default routes


@dataclass
class PodPort:
    key: str                 # ns/pod or ns/pod/ifname
    port: int                # switch port, 0 (the uplink) or 1..65534
    ips: list                # ipaddress objects
    pod: str = ""            # the namespace's pod: ns/pod
    ifname: str = PRIMARY
    routes: tuple = ()       # ip_network objects; () = default routes
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
    # Pods keep their default offloads (TSO, GSO, checksum) and the switch carries
    # virtio-net headers; False: offloads off on both ends of every link.
    offloads: bool = True

    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}-sw"

    def pod_netns(self, port: int) -> str:
        return f"{self.prefix}-p{port}"

    def by_key(self, key: str) -> PodPort:
        """The interface named `key` (ns/pod is the pod's eth0, or its first)."""
        for pp in self.ports.values():
            if pp.key == key:
                return pp
        for pp in sorted(self.ports.values(), key=lambda p: p.port):
            if pp.pod == key:
                return pp
        raise KeyError(key)

    def interfaces_of(self, pod: str) -> list[PodPort]:
        return sorted((pp for pp in self.ports.values() if pp.pod == pod), key=lambda p: p.port)

    # -- build ---------------------------------------------------------------------
    @classmethod
    def build(cls, wires: Iterable[tuple], prefix: Optional[str] = None, port_type: str = "veth",
              static_neighbors: bool = False, offloads: bool = True) -> "Topology":
        """wires: Wire tuples, or (key, port, [addresses]) for one-interface pods. On any
        failure everything already made is removed and the error re-raised."""
        prefix = prefix or new_prefix()
        check_prefix(prefix)
        if port_type not in ("veth", "tap"):
            raise ValueError(f"port type {port_type!r}: veth or tap")
        topo = cls(prefix=prefix, port_type=port_type, static_neighbors=static_neighbors, offloads=offloads)
        specs = [_spec(Wire(*w)) for w in wires]
        pods: dict[str, list[PodPort]] = {}
        for pp in specs:
            mine = pods.setdefault(pp.pod, [])
            if any(o.ifname == pp.ifname for o in mine):
                raise ValueError(f"{pp.pod}: two interfaces named {pp.ifname}")
            mine.append(pp)
        if os.path.exists(_ns_path(topo.switch_netns)):
            raise FileExistsError(f"namespace {topo.switch_netns} exists: run `netsem down --prefix {prefix}`")
        try:
            topo._write_state()
            pr_netns.create(topo.switch_netns)
            with in_netns(topo.switch_netns):
                _sysctl("net.ipv6.conf.default.disable_ipv6", "1")
                _sysctl("net.ipv6.conf.all.disable_ipv6", "1")
                _sysctl("net.ipv4.ip_forward", "0")
            topo._wire(specs)
        except BaseException:
            topo.teardown()
            raise
        return topo

    @classmethod
    def attach(cls, prefix: str) -> "Topology":
        """The topology a previous `netsem up` of run `prefix` built and left (it was
        killed): read from its state file and checked against the links that are
        there. Only veth runs: a TAP device goes with the process that held it.
        Raises LookupError when there is no such run, or it is still served, or what
        the state file names is gone."""
        check_prefix(prefix)
        state = load_state(prefix)
        if _alive(state.get("pid")) and state.get("pid") != os.getpid():
            raise LookupError(f"run {prefix} is still served by netsem up (pid {state['pid']}): "
                              "stop it first, or attach to a run whose switch died")
        if state.get("port_type", "veth") != "veth":
            raise LookupError(f"run {prefix} has TAP ports: they closed with the process that held them; "
                              f"`netsem down --prefix {prefix}` and start anew")
        topo = cls(prefix=prefix, port_type="veth", offloads=state.get("offloads", False))
        if not os.path.exists(_ns_path(topo.switch_netns)):
            raise LookupError(f"run {prefix}: its switch namespace {topo.switch_netns} is gone")
        with IPRoute(netns=topo.switch_netns) as sw:
            for pod, entry in state.get("pods", {}).items():
                for ifname, i in entry.get("interfaces", {}).items():
                    pp = _spec(Wire(i.get("key") or (pod if ifname == PRIMARY else f"{pod}/{ifname}"),
                                    i["port"], i["ips"], pod, ifname, tuple(i.get("routes", ()))))
                    pp.netns, pp.sw_ifname = entry["netns"], i["switch_ifname"]
                    idx = sw.link_lookup(ifname=pp.sw_ifname)
                    if not idx or not os.path.exists(_ns_path(pp.netns)):
                        raise LookupError(f"run {prefix}: {pp.key}'s link {pp.sw_ifname} or namespace "
                                          f"{pp.netns} is gone")
                    pp.gw_mac = _mac(sw, idx[0])
                    with IPRoute(netns=pp.netns) as ipr:
                        pp.pod_mac = _mac(ipr, ipr.link_lookup(ifname=ifname)[0])
                    topo.ports[pp.port] = pp
        topo._write_state()         # this process serves it now (pid), not ready yet
        return topo

    def _wire(self, specs: list) -> list:
        """Creates the interfaces of `specs` (PodPorts), in their pods' namespaces (made
        for pods that have none yet); returns them as wired."""
        pods: dict[str, list[PodPort]] = {}
        for pp in specs:
            pods.setdefault(pp.pod, []).append(pp)
        done = []
        for pod, interfaces in sorted(pods.items(), key=lambda kv: min(p.port for p in kv[1])):
            have = self.interfaces_of(pod)
            if any(o.ifname == pp.ifname for o in have for pp in interfaces):
                raise ValueError(f"{pod}: an interface of that name exists")
            netns = have[0].netns if have else self._add_namespace(min(p.port for p in interfaces))
            for metric, pp in enumerate(sorted(interfaces, key=lambda p: p.port), SECONDARY_METRIC + len(have)):
                pp.netns = netns
                self._add_interface(pp, metric)
                self.ports[pp.port] = pp
                self._write_state()
                done.append(pp)
        return done

    def add(self, wires: Iterable[tuple]) -> list[PodPort]:
        """Wires interfaces into the running topology (pods that came). On failure
        what this call made is removed again and the error re-raised."""
        specs = [_spec(Wire(*w)) for w in wires]
        for pp in specs:
            if pp.port in self.ports:
                raise ValueError(f"{pp.key}: port {pp.port} is wired already")
        done: list[PodPort] = []
        try:
            done = self._wire(specs)
        except BaseException:
            self.remove([pp.port for pp in specs if pp.port in self.ports])
            raise
        return done

    def remove(self, ports: Iterable[int]) -> None:
        """Unwires interfaces (pods that went): a pod's namespace goes with its last
        interface, a veth alone otherwise."""
        for port in sorted(set(ports)):
            pp = self.ports.pop(port, None)
            if pp is None:
                continue
            if pp.tap_fd >= 0:
                os.close(pp.tap_fd)
                pp.tap_fd = -1
            if pp.sw_ifname:
                # Now, not when the namespace's teardown gets to it (that is
                # asynchronous): the same port may be wired again at once.
                with IPRoute(netns=self.switch_netns) as ipr:
                    for idx in ipr.link_lookup(ifname=pp.sw_ifname):
                        ipr.link("del", index=idx)
            if not self.interfaces_of(pp.pod):
                try:
                    pr_netns.remove(pp.netns)
                except FileNotFoundError:
                    pass
            self._write_state()

    def _add_namespace(self, port: int) -> str:
        netns = self.pod_netns(port)
        pr_netns.create(netns)
        with in_netns(netns):
            _sysctl("net.ipv6.conf.default.accept_dad", "0")
            _sysctl("net.ipv6.conf.all.accept_dad", "0")
            _sysctl("net.ipv6.conf.default.accept_ra", "0")
            _sysctl("net.ipv6.conf.default.router_solicitations", "0")
        with IPRoute(netns=netns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        return netns

    def _add_interface(self, pp: PodPort, metric: int) -> None:
        if self.port_type == "veth":
            pp.sw_ifname = f"{self.prefix}p{pp.port}"
            with IPRoute(netns=self.switch_netns) as ipr:
                ipr.link("add", ifname=pp.sw_ifname, kind="veth",
                         peer={"ifname": pp.ifname, "net_ns_fd": pp.netns})
                idx = ipr.link_lookup(ifname=pp.sw_ifname)[0]
                ipr.link("set", index=idx, mtu=MTU, state="up")
                pp.gw_mac = _mac(ipr, idx)
            if not self.offloads:
                with in_netns(self.switch_netns):
                    offloads_off(pp.sw_ifname)
        else:
            with in_netns(pp.netns):
                pp.tap_fd = _open_tap(pp.ifname, self.offloads)
            # The switch answers as gateway with a locally administered MAC of its own.
            pp.gw_mac = bytes([0x02, 0x6e, 0x73, 0x00, pp.port >> 8, pp.port & 0xFF])
        if not self.offloads:
            with in_netns(pp.netns):
                offloads_off(pp.ifname)
        with IPRoute(netns=pp.netns) as ipr:
            idx = ipr.link_lookup(ifname=pp.ifname)[0]
            ipr.link("set", index=idx, mtu=MTU, state="up")
            pp.pod_mac = _mac(ipr, idx)
            for ip in pp.ips:
                ipr.addr("add", index=idx, address=str(ip), prefixlen=ip.max_prefixlen,
                         flags=IFA_F_NODAD)
            families = {ip.version for ip in pp.ips}
            routes = pp.routes or [ipaddress.ip_network(d) for d, v in (("0.0.0.0/0", 4), ("::/0", 6))
                                   if v in families]
            tables = [{}] if not pp.routes else [{"priority": metric}, {"priority": metric, "table": metric}]
            for dst in routes:
                for extra in tables:
                    if dst.version == 4:
                        ipr.route("add", dst=str(dst), gateway=GATEWAY_V4, oif=idx, flags=RTNH_F_ONLINK,
                                  **extra)
                    else:
                        ipr.route("add", dst=str(dst), gateway=GATEWAY_V6, oif=idx, family=socket.AF_INET6,
                                  **extra)
            for ip in pp.ips if pp.routes else ():
                ipr.rule("add", table=metric, priority=RULE_PRIORITY + metric, src=str(ip),
                         src_len=ip.max_prefixlen, family=socket.AF_INET if ip.version == 4 else socket.AF_INET6)
            if self.static_neighbors:
                gw_mac = ":".join(f"{b:02x}" for b in pp.gw_mac)
                if any(d.version == 4 for d in routes):
                    ipr.neigh("add", dst=GATEWAY_V4, lladdr=gw_mac, ifindex=idx, state=0x80)
                if any(d.version == 6 for d in routes):
                    ipr.neigh("add", dst=GATEWAY_V6, lladdr=gw_mac, ifindex=idx, state=0x80,
                              family=socket.AF_INET6)

    # -- state -----------------------------------------------------------------------
    def state(self) -> dict:
        pods = {}
        for pp in sorted(self.ports.values(), key=lambda p: p.port):
            first = pods.setdefault(pp.pod, {
                "netns": pp.netns, "port": pp.port, "ifname": pp.ifname,
                "switch_ifname": pp.sw_ifname, "ips": [str(i) for i in pp.ips], "interfaces": {}})
            first["interfaces"][pp.ifname] = {"key": pp.key, "port": pp.port, "switch_ifname": pp.sw_ifname,
                                              "ips": [str(i) for i in pp.ips],
                                              "routes": [str(r) for r in pp.routes]}
        return {"prefix": self.prefix, "port_type": self.port_type, "offloads": self.offloads,
                "switch_netns": self.switch_netns,
                "pid": os.getpid(), "ready": self.ready, "dns": getattr(self, "dns", None),
                "pods": pods}

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
                try:
                    os.close(pp.tap_fd)
                except OSError:
                    pass
                pp.tap_fd = -1
        down(self.prefix)


def _spec(w: Wire) -> PodPort:
    if not 0 <= w.port <= 65534:       # 0: the uplink ("outside the cluster")
        raise ValueError(f"{w.key}: port {w.port} out of range")
    ips = [ipaddress.ip_address(str(i)) for i in w.ips]
    routes = tuple(ipaddress.ip_network(str(r), strict=False) for r in w.routes)
    for ip in ips:
        check_address(ip)
    for r in routes:
        check_address(r.network_address)
        check_address(r.broadcast_address)
    if not w.ifname or len(w.ifname) > 15 or "/" in w.ifname:
        raise ValueError(f"{w.key}: interface name {w.ifname!r}")
    return PodPort(key=w.key, port=w.port, ips=ips, pod=w.pod or w.key, ifname=w.ifname, routes=routes)
