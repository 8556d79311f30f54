"""The soft switch's driver: Python decides, C moves packets.

`Switch` owns the native switch (native/switch.c) wrapped around a FastPath's
pipeline. Its loop is: `ns_switch_run` for a slice of time (C polls, drains, runs
batches, transmits; the GIL is released), then, between slices, apply a pending
table swap and publish counters. Tables change only by whole swap between batches
(style P7): a manifest reload compiles a complete new table set first, and a
failed compile keeps the running tables.

`run_up` is `netsem up`: topology, switch, status line, teardown on SIGINT/SIGTERM,
reload on SIGHUP.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from ._native import ffi, lib
from .fastpath import REASONS, FastPath
from .topology import Topology, in_netns

RING_VERSIONS = {"v2": lib.NS_SW_RING_V2, "v3": lib.NS_SW_RING_V3}
SW_COUNTERS = [ffi.string(lib.ns_switch_counter_name(i)).decode() for i in range(lib.NS_SW_C_COUNT)]
PORT_FIELDS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_errors", "drops", "local",
               "ring_drops")


def topology_pods(compiled) -> list[tuple[str, int, list]]:
    """(key, port, addresses) of every pod that gets a namespace. hostNetwork pods do
    not: their address is a node address, outside the pod network."""
    return [(pod.key, port, list(pod.ips)) for port, pod in sorted(compiled.pods_by_port.items())]


@dataclass
class Stats:
    t: float
    ports: dict                      # port -> {field: value}
    switch: dict                     # counter name -> value
    reasons: dict                    # pipeline reason -> packets
    connections: int
    generation: int = 0


class Switch:
    """The native switch over `topo`, with `compiled` tables installed."""

    def __init__(self, compiled, topo: Topology, batch: int = 256, ring: str = "v2",
                 ring_bytes: int = 4 << 20, connections: int = 0):
        self.topo = topo
        self.fp = FastPath(connections=connections)
        self.fp.install(compiled)
        self.generation = 1
        ports = list(topo.ports.values())
        sw = lib.ns_switch_new(self.fp._p, max(1, len(ports)), batch)
        if sw == ffi.NULL:
            raise MemoryError("ns_switch_new failed")
        self._sw = ffi.gc(sw, lib.ns_switch_free)
        rc = lib.ns_switch_set_ring(self._sw, RING_VERSIONS[ring], ring_bytes, 1)
        if rc:
            raise OSError(-rc, os.strerror(-rc), "ns_switch_set_ring")
        with in_netns(topo.switch_netns):
            for pp in ports:
                pod_mac = pp.pod_mac if pp.pod_mac else ffi.NULL
                if pp.tap_fd >= 0:
                    rc = lib.ns_switch_add_tap(self._sw, pp.port, pp.tap_fd, pp.gw_mac, pod_mac)
                else:
                    rc = lib.ns_switch_add_port(self._sw, pp.port, pp.sw_ifname.encode(), pp.gw_mac, pod_mac)
                if rc:
                    raise OSError(-rc, f"{pp.key}: {os.strerror(-rc)}", pp.sw_ifname)
        self._pstats = ffi.new("struct ns_switch_port_stats *")
        self._lock = threading.Lock()
        self._pending: list = []

    # -- the loop ------------------------------------------------------------------
    def run_for(self, seconds: float) -> int:
        """Forwards for `seconds` (C loop, GIL released). Returns frames processed."""
        n = lib.ns_switch_run(self._sw, max(1, int(seconds * 1000)))
        if n < 0:
            raise OSError(-n, os.strerror(-n), "ns_switch_run")
        return n

    def poll(self, timeout_ms: int = 0) -> int:
        n = lib.ns_switch_poll(self._sw, timeout_ms, 0)
        if n < 0:
            raise OSError(-n, os.strerror(-n), "ns_switch_poll")
        return n

    def install(self, compiled, recheck: bool = False) -> int:
        """Swaps in new tables between batches (call from the loop's thread)."""
        deleted = self.fp.install(compiled, recheck=recheck)
        self.generation += 1
        return deleted

    def request_install(self, compiled, recheck: bool = False) -> threading.Event:
        """From any thread: `serve` swaps the tables in between two slices; the
        returned event is set once they are live."""
        done = threading.Event()
        with self._lock:
            self._pending.append((compiled, recheck, done))
        return done

    def serve(self, stop: threading.Event, slice_s: float = 0.05, on_slice=None) -> None:
        """The driver loop for a thread: forward, then apply pending swaps; `on_slice`
        (e.g. a capture Recorder's drain) runs in this thread after every slice."""
        while not stop.is_set():
            self.run_for(slice_s)
            if on_slice is not None:
                on_slice()
            with self._lock:
                pending, self._pending = self._pending, []
            for compiled, recheck, done in pending:
                self.install(compiled, recheck)
                done.set()

    # -- counters ------------------------------------------------------------------
    def port_stats(self, port: int) -> dict:
        if lib.ns_switch_port_stats(self._sw, port, self._pstats) != 0:
            raise KeyError(port)
        return {f: getattr(self._pstats, f) for f in PORT_FIELDS}

    def stats(self) -> Stats:
        p = self.fp._p
        return Stats(t=time.monotonic(),
                     ports={port: self.port_stats(port) for port in self.topo.ports},
                     switch={name: lib.ns_switch_counter(self._sw, i) for i, name in enumerate(SW_COUNTERS)},
                     reasons={name: lib.ns_pipeline_counter(p, i) for i, name in enumerate(REASONS)},
                     connections=lib.ns_pipeline_connections(p), generation=self.generation)

    def close(self) -> None:
        if self._sw is not None:
            sw, self._sw = self._sw, None
            ffi.gc(sw, None)             # detach the finalizer, then free now
            lib.ns_switch_free(sw)


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
    fwd = {"established", "reply", "new", "related", "fragment", "arp", "neighbor_discovery"}
    drops = {k: v for k, v in cur.reasons.items() if v and k not in fwd}
    drops.update({k: v for k, v in cur.switch.items()
                  if v and k in ("ttl_exceeded", "no_port", "no_neighbor", "oversize", "capture_dropped")})
    d = " ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"
    return f"conns {cur.connections} | drops {d} | " + " | ".join(parts)


# -- netsem up -----------------------------------------------------------------------

@dataclass
class _Flags:
    stop: bool = False
    reload: bool = False
    signals: list = field(default_factory=list)


def _same_pods(a, b) -> bool:
    return topology_pods(a) == topology_pods(b)


def run_up(files: list[str], config=None, port_type: str = "veth", stats_interval: float = 1.0,
           prefix: Optional[str] = None, ring: str = "v2", out=sys.stderr,
           duration: Optional[float] = None, pcap: Optional[str] = None) -> int:
    from .cluster import load_cluster
    from .compiler import compile_cluster
    from .errors import ManifestErrors

    cluster, notes = load_cluster(files, config)
    for n in notes:
        print(f"note: {n}", file=out)
    compiled = compile_cluster(cluster)
    skipped = [p.key for p in cluster.pod_list() if p.key not in compiled.port_of]
    if skipped:
        print(f"note: no namespace for hostNetwork pods (node addresses): {', '.join(skipped)}", file=out)
    flags = _Flags()

    def on_stop(signum, frame):
        flags.stop = True

    def on_hup(signum, frame):
        flags.reload = True

    old = {s: signal.signal(s, on_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    topo = None
    sw = None
    rec = None
    try:
        topo = Topology.build(topology_pods(compiled), prefix=prefix, port_type=port_type)
        sw = Switch(compiled, topo, ring=ring)
        if pcap:
            from .switch_pcap import Recorder
            rec = Recorder(sw, pcap)
            print(f"netsem up: recording every frame in and out of the switch to {rec.path}/in.pcapng "
                  f"and out.pcapng", file=out)
        print(f"netsem up: prefix {topo.prefix}, {len(topo.ports)} pods "
              f"(netsem exec --prefix {topo.prefix} NS/POD -- CMD); Ctrl-C stops", file=out)
        for pp in sorted(topo.ports.values(), key=lambda p: p.port):
            print(f"  port {pp.port:>3}  {pp.key:<30} {pp.netns:<14} "
                  f"{' '.join(str(i) for i in pp.ips)}", file=out)
        prev = sw.stats()
        next_stats = time.monotonic() + stats_interval
        t_end = time.monotonic() + duration if duration else None
        while not flags.stop:
            now = time.monotonic()
            if t_end and now >= t_end:
                break
            # with a recording, shorter slices keep the bounded capture ring drained
            sw.run_for(max(0.01, min(0.05 if rec else 0.2, next_stats - now)))
            if rec is not None:
                rec.drain()
            if flags.reload:
                flags.reload = False
                try:
                    new_cluster, _ = load_cluster(files, config)
                    new = compile_cluster(new_cluster)
                    if not _same_pods(new, compiled):
                        print("\nnetsem up: reload: pods or addresses changed; restart to rewire "
                              "them (old tables kept)", file=out)
                    else:
                        sw.install(new)
                        compiled = new
                        print(f"\nnetsem up: reloaded (generation {sw.generation})", file=out)
                except ManifestErrors as e:
                    for err in e.errors:
                        print(err, file=out)
                    print("\nnetsem up: reload failed; old tables kept", file=out)
                except Exception as e:      # a compile error must not stop the switch
                    print(f"\nnetsem up: reload failed ({e}); old tables kept", file=out)
            if time.monotonic() >= next_stats:
                cur = sw.stats()
                if out.isatty():
                    out.write("\r\033[K" + status_line(prev, cur, topo)[:200])
                else:
                    out.write(status_line(prev, cur, topo) + "\n")
                out.flush()
                prev = cur
                next_stats = time.monotonic() + stats_interval
        if out.isatty():
            out.write("\n")
        return 0
    finally:
        if rec is not None:
            rec.close()
            st = sw.stats().switch
            print(f"netsem up: {rec.frames} frames recorded in {rec.path}/{{in,out}}.pcapng "
                  f"({st['capture_dropped']} not recorded: capture ring full)", file=out)
        if sw is not None:
            sw.close()
        if topo is not None:
            topo.teardown()
        for s, h in old.items():
            signal.signal(s, h)
