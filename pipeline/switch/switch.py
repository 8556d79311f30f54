"""The soft switch's driver: Python decides, C moves packets.

`Switch` owns the native switch (native/switch.c) around a Datapath's pipeline. Its
one loop, `serve`, is: `ns_switch_run` for a slice of time (C polls, drains, runs
batches, transmits; the GIL is released), then, between slices, apply pending table
swaps and run the caller's `on_slice` (drain the capture ring and the event ring,
print status, reload). `netsem up`, `netsem probe`'s switch process and the tests all
run it. Tables change only by whole swap between batches (style P7).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .._native import ffi, lib
from ..dataplane import constants as K
from ..dataplane.constants import FORWARD_REASONS, LOCAL_REASONS, REASONS
from ..dataplane.driver import Datapath
from ..model.addresses import DEFAULT_DOMAIN, DEFAULT_NETWORK
from .netns import in_netns
from ..model.networks import network_prefixes
from .topology import Topology, Wire

RING_VERSIONS = {"v2": lib.NS_SW_RING_V2, "v3": lib.NS_SW_RING_V3}
SW_COUNTERS = [ffi.string(lib.ns_switch_counter_name(i)).decode() for i in range(lib.NS_SW_C_COUNT)]
# Frames the switch dropped after the pipeline forwarded them. (`capture_dropped` is
# not one: the frame went on, only its copy for the capture was lost.)
SW_DROPS = ("ttl_exceeded", "no_port", "no_neighbor", "oversize", "rewrite_failed")
PORT_FIELDS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_errors", "drops", "local",
               "ring_drops")


# "Outside the cluster": a namespace on the uplink port (0) with addresses of its own,
# in 198.18.0.0/15 but in no pod, Service or node range (`netsem exec uplink -- CMD`).
UPLINK = "uplink"
UPLINK_ADDRESSES = (ipaddress.ip_address("198.19.192.1"), ipaddress.ip_address("2001:db8:4::1"))


def topology_pods(compiled) -> list[Wire]:
    """Every interface to build: the uplink's namespace, then every pod interface the
    address plane has, eth0 first (hostNetwork pods have none: their address is their
    node's). A secondary network's interface routes that network's prefixes."""
    plane = compiled.cluster.plane
    mine = [ip for ip in UPLINK_ADDRESSES if plane.lookup(DEFAULT_DOMAIN, ip) is None]
    wires = [Wire(UPLINK, K.PORT_UPLINK, mine)]
    for port, a in sorted(compiled.attachments.items()):
        routes = () if a.network == DEFAULT_NETWORK else tuple(network_prefixes(compiled.cluster, a.network))
        wires.append(Wire(str(a), port, plane.addresses(a), a.pod, a.interface, routes))
    return wires


def _same(pp, w: Wire) -> bool:
    """A wired interface is what the wire asks for."""
    return (pp.key, pp.pod, pp.ifname, list(pp.ips), tuple(pp.routes)) == \
        (w.key, w.pod or w.key, w.ifname, [ipaddress.ip_address(str(i)) for i in w.ips],
         tuple(ipaddress.ip_network(str(r), strict=False) for r in w.routes))


@dataclass
class Stats:
    t: float
    ports: dict                      # port -> {field: value}
    switch: dict                     # counter name -> value
    reasons: dict                    # pipeline reason -> packets
    connections: int
    generation: int = 0


class Switch:
    """The native switch over `topo`, forwarding through a Datapath with `compiled`
    tables installed."""

    def __init__(self, compiled, topo: Topology, batch: int = 256, ring: str = "v2",
                 ring_bytes: int = 0, connections: int = 0, events: int = 0,
                 max_ports: int = 0, per_port: int = 0, ct_file: Optional[str] = None,
                 attach: bool = False, busy_poll_us: int = 0, workers: int = 1, coalesce_us: int = 0):
        """ct_file: the connection table's shared file (netns.conntrack_path); attach:
        take over the connections a killed switch left in it. Offloads (virtio-net
        headers on every port) follow the topology's. busy_poll_us: spin on the rings,
        sleeping only after that long without a frame (0: sleep when idle). workers:
        switches over the one pipeline, each in a thread of its own, the ports'
        frames spread over them by PACKET_FANOUT (veth only)."""
        if workers < 1 or workers > 64:
            raise ValueError(f"workers: {workers} is not between 1 and 64")
        if workers > 1 and topo.port_type != "veth":
            raise ValueError("workers share a port through PACKET_FANOUT: veth ports only")
        self.topo = topo
        self.datapath = Datapath(connections=connections, events=events, per_port=per_port,
                                 ct_file=ct_file, attach=attach)
        self.datapath.install(compiled)
        self.generation = 1
        ports = list(topo.ports.values())
        # Room for pods that come later (netsem up follows its cluster): a bounded
        # table; when full, a new pod is reported and left unwired.
        self.max_ports = max_ports or max(1024, 2 * len(ports))
        # The main ring's slots are 2 KiB; with offloads each port has a second
        # ring of 64 KiB slots (4 MiB) for super-frames.
        ring_bytes = ring_bytes or (4 << 20)
        self._workers: list = []
        for _ in range(workers):
            sw = lib.ns_switch_new(self.datapath.pipeline, self.max_ports, batch)
            if sw == ffi.NULL:
                self.close()
                raise MemoryError("ns_switch_new failed")
            self._workers.append(sw)
            for rc, what in ((lib.ns_switch_set_ring(sw, RING_VERSIONS[ring], ring_bytes, 1), "set_ring"),
                             (lib.ns_switch_set_offload(sw, int(topo.offloads)), "set_offload"),
                             (lib.ns_switch_set_workers(sw, self._workers[0]) if workers > 1 else 0,
                              "set_workers")):
                if rc:
                    self.close()
                    raise OSError(-rc, os.strerror(-rc), "ns_switch_" + what)
            lib.ns_switch_set_busy_poll(sw, busy_poll_us)
            lib.ns_switch_set_coalesce(sw, coalesce_us, 0)
        self._sw = self._workers[0]
        self._go = threading.Event()          # cleared: workers park (ports change)
        self._go.set()
        self._parked = [threading.Event() for _ in self._workers]
        self.add_ports(ports)
        self._pstats = ffi.new("struct ns_switch_port_stats *")
        self._threads: list = []
        self._lock = threading.Lock()
        self._pending: list = []

    @property
    def compiled(self):
        return self.datapath.compiled

    @property
    def workers(self) -> int:
        return len(self._workers)

    def add_ports(self, ports) -> None:
        """Attaches the switch (every worker) to wired interfaces (PodPorts); between runs."""
        with in_netns(self.topo.switch_netns):
            for pp in ports:
                pod_mac = pp.pod_mac if pp.pod_mac else ffi.NULL
                for sw in self._workers:
                    if pp.tap_fd >= 0:
                        rc = lib.ns_switch_add_tap(sw, pp.port, pp.tap_fd, pp.gw_mac, pod_mac)
                    else:
                        rc = lib.ns_switch_add_port(sw, pp.port, pp.sw_ifname.encode(), pp.gw_mac, pod_mac)
                    if rc:
                        raise OSError(-rc, f"{pp.key}: {os.strerror(-rc)}", pp.sw_ifname)

    def remove_ports(self, ports) -> None:
        """Detaches the switch from ports (numbers) before their interfaces go."""
        for port in ports:
            for sw in self._workers:
                lib.ns_switch_remove_port(sw, port)

    @contextlib.contextmanager
    def locked(self):
        """The pipeline to oneself while workers run (swaps, event drains)."""
        lib.ns_switch_lock(self._sw)
        try:
            yield
        finally:
            lib.ns_switch_unlock(self._sw)

    @contextlib.contextmanager
    def paused(self):
        """Every worker but the caller's parked (ports change under them)."""
        if len(self._workers) == 1 or not self._threads:
            yield
            return
        self._go.clear()
        try:
            for k in range(1, len(self._workers)):
                lib.ns_switch_stop(self._workers[k])
            for k in range(1, len(self._workers)):
                while not self._parked[k].wait(0.1) and self._threads[k - 1].is_alive():
                    lib.ns_switch_stop(self._workers[k])
            yield
        finally:
            self._go.set()

    def _work(self, k: int, stop: threading.Event, slice_s: float) -> None:
        sw = self._workers[k]
        while not stop.is_set():
            if not self._go.is_set():
                self._parked[k].set()
                self._go.wait(0.05)
                continue
            self._parked[k].clear()
            if not self._go.is_set():
                continue
            n = lib.ns_switch_run(sw, max(1, int(slice_s * 1000)))
            if n < 0:
                raise OSError(-n, os.strerror(-n), "ns_switch_run")
        self._parked[k].set()

    def rewire(self, compiled, recheck: bool = False) -> tuple[list, list]:
        """Brings the running switch to `compiled`: the ports of interfaces that went
        (or changed) detached and unwired, the tables swapped, interfaces that came
        wired and attached, all between two runs. Interfaces that stay keep their
        ports (the address plane keeps them across generations) and connections.
        Returns (ports removed, PodPorts added)."""
        want = {w.port: w for w in topology_pods(compiled)}
        gone = [p for p, pp in self.topo.ports.items() if p not in want or not _same(pp, want[p])]
        if len(want) > self.max_ports:       # before anything changes: all or nothing
            raise OSError(f"switch full: {len(want)} ports wanted, {self.max_ports} at most (--max-ports)")
        with self.paused():
            self.remove_ports(gone)
            self.topo.remove(gone)
            self.install(compiled, recheck)
            new = [w for p, w in sorted(want.items()) if p not in self.topo.ports]
            added = self.topo.add(new)
            self.add_ports(added)
        return gone, added

    # -- the loop ------------------------------------------------------------------
    def run_for(self, seconds: float) -> int:
        """Forwards for `seconds` (C loop, GIL released). Returns frames processed."""
        n = lib.ns_switch_run(self._sw, max(1, int(seconds * 1000)))
        if n < 0:
            raise OSError(-n, os.strerror(-n), "ns_switch_run")
        return n

    def install(self, compiled, recheck: bool = False) -> int:
        """Swaps in new tables between batches (call from the loop's thread)."""
        with self.locked():
            deleted = self.datapath.install(compiled, recheck=recheck)
        self.generation += 1
        return deleted

    def request_install(self, compiled, recheck: bool = False) -> threading.Event:
        """From any thread: `serve` swaps the tables in between two slices; the
        returned event is set once they are live."""
        done = threading.Event()
        with self._lock:
            self._pending.append((compiled, recheck, done))
        return done

    def serve(self, stop: threading.Event, slice_s: float = 0.05,
              on_slice: Optional[Callable[[], None]] = None) -> None:
        """The switch loop: forward for a slice, apply pending swaps, run `on_slice`;
        until `stop` is set (by on_slice, a signal handler or another thread). The
        other workers run their loops in threads of their own meanwhile."""
        self._threads = [threading.Thread(target=self._work, args=(k, stop, slice_s), daemon=True,
                                          name=f"netsem-worker-{k}") for k in range(1, len(self._workers))]
        for t in self._threads:
            t.start()
        try:
            self._serve(stop, slice_s, on_slice)
        finally:
            stop.set()
            for k in range(1, len(self._workers)):
                lib.ns_switch_stop(self._workers[k])
            for t in self._threads:
                t.join()
            self._threads = []

    def _serve(self, stop, slice_s, on_slice) -> None:
        while not stop.is_set():
            self.run_for(slice_s)
            with self._lock:
                pending, self._pending = self._pending, []
            for compiled, recheck, done in pending:
                self.install(compiled, recheck)
                done.set()
            if on_slice is not None:
                on_slice()

    # -- counters ------------------------------------------------------------------
    def port_stats(self, port: int) -> dict:
        """A port's counters, summed over the workers."""
        out = dict.fromkeys(PORT_FIELDS, 0)
        for sw in self._workers:
            if lib.ns_switch_port_stats(sw, port, self._pstats) != 0:
                raise KeyError(port)
            for f in PORT_FIELDS:
                out[f] += getattr(self._pstats, f)
        return out

    def stats(self) -> Stats:
        p = self.datapath.pipeline
        return Stats(t=time.monotonic(),
                     ports={port: self.port_stats(port) for port in self.topo.ports},
                     switch={name: sum(lib.ns_switch_counter(sw, i) for sw in self._workers)
                             for i, name in enumerate(SW_COUNTERS)},
                     reasons={name: lib.ns_pipeline_counter(p, i) for i, name in enumerate(REASONS)},
                     connections=lib.ns_pipeline_connections(p), generation=self.generation)

    def worker_counters(self) -> list[dict]:
        """Each worker's own switch counters (wakeups, batches...)."""
        return [{name: lib.ns_switch_counter(sw, i) for i, name in enumerate(SW_COUNTERS)}
                for sw in self._workers]

    def close(self) -> None:
        workers, self._workers, self._sw = getattr(self, "_workers", []), [], None
        for sw in reversed(workers):     # the leader (holding the lock's last reference) last
            lib.ns_switch_free(sw)
        self.datapath.close()


def status_line(prev: Optional[Stats], cur: Stats, topo: Topology) -> str:
    """One line: per-port rx/tx pps, drops by reason, connections tracked."""
    dt = (cur.t - prev.t) if prev else 0.0
    parts = []
    for port, st in sorted(cur.ports.items()):
        name = topo.ports[port].key
        if prev and dt > 0:
            rx = (st["rx_packets"] - prev.ports[port]["rx_packets"]) / dt
            tx = (st["tx_packets"] - prev.ports[port]["tx_packets"]) / dt
            parts.append(f"{name} rx {rx:.0f}/s tx {tx:.0f}/s")
    drops = {k: v for k, v in cur.reasons.items() if v and k not in FORWARD_REASONS | LOCAL_REASONS}
    drops.update({k: v for k, v in cur.switch.items() if v and k in SW_DROPS})
    d = " ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"
    return f"conns {cur.connections} | drops {d} | " + " | ".join(parts)
