"""`netsem up --metrics-port`: Prometheus metrics through prometheus_client.

The switch loop takes a snapshot of its counters between slices (`Metrics.update`,
in the loop's thread, so nothing reads C tables while a swap frees them); the HTTP
server thread only renders the latest snapshot."""

from __future__ import annotations

import threading
import time

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import start_http_server

from ..dataplane.constants import REASON_VERDICT
from .switch import SW_DROPS, Switch


class Metrics:
    def __init__(self, switch: Switch, interval: float = 1.0):
        self.switch = switch
        self.interval = interval
        self._lock = threading.Lock()
        self._snap: dict = {}
        self._next = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.update(force=True)

    def serve(self, port: int, address: str = "127.0.0.1"):
        """Starts the HTTP server thread; returns (server, thread)."""
        return start_http_server(port, addr=address, registry=self.registry)

    def update(self, force: bool = False) -> None:
        """Called between slices by the switch loop's thread."""
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval
        sw, dp = self.switch, self.switch.datapath
        st = sw.stats()
        names = {port: pp.key for port, pp in sw.topo.ports.items()}
        compiled = sw.compiled
        lim = dp.limits()
        snap = {
            "ports": {names[p]: v for p, v in st.ports.items()},
            "reasons": st.reasons,
            "switch": st.switch,
            "states": dp.ct_states(),
            "hits": dp.rule_hits(),
            "fill": {"connections": (st.connections, lim["connections"]),
                     "fragments": (dp.fragments, lim["fragments"]),
                     **{t: (n, compiled.limits[t]) for t, n in compiled.stats().items()
                        if t in compiled.limits}},
            "events_lost": dp.events_lost,
            "affinity_full": dp.affinity_full,
            "generation": st.generation,
        }
        with self._lock:
            self._snap = snap

    def collect(self):
        with self._lock:
            s = self._snap
        if not s:
            return
        pkts = CounterMetricFamily("netsem_port_packets", "Frames per switch port and direction",
                                   labels=["port", "direction"])
        byts = CounterMetricFamily("netsem_port_bytes", "Bytes per switch port and direction",
                                   labels=["port", "direction"])
        pdrops = CounterMetricFamily("netsem_port_drops", "Frames that arrived on the port and were dropped",
                                     labels=["port"])
        for name, v in sorted(s["ports"].items()):
            for d in ("rx", "tx"):
                pkts.add_metric([name, d], v[f"{d}_packets"])
                byts.add_metric([name, d], v[f"{d}_bytes"])
            pdrops.add_metric([name], v["drops"])
        yield pkts
        yield byts
        yield pdrops
        packets = CounterMetricFamily("netsem_packets", "Packets through the pipeline, by reason and verdict",
                                      labels=["reason", "verdict"])
        drops = CounterMetricFamily("netsem_drops", "Dropped packets by reason (pipeline and switch)",
                                    labels=["reason"])
        for reason, n in sorted(s["reasons"].items()):
            packets.add_metric([reason, REASON_VERDICT[reason]], n)
            if REASON_VERDICT[reason] == "drop":
                drops.add_metric([reason], n)
        for name in SW_DROPS:
            drops.add_metric([name], s["switch"][name])
        yield packets
        yield drops
        yield CounterMetricFamily("netsem_capture_missed", "Forwarded frames the capture ring had no room to record",
                                  value=s["switch"]["capture_dropped"])
        yield CounterMetricFamily("netsem_port_errors",
                                  "Errors a port's socket reported (its device went down or away under the switch)",
                                  value=s["switch"]["port_errors"])
        yield CounterMetricFamily("netsem_service_rejects",
                                  "TCP resets and ICMP port unreachables sent for Service ports without a ready backend",
                                  value=s["switch"]["rejects"])
        yield CounterMetricFamily("netsem_service_affinity_full",
                                  "New ClientIP-affinity connections that found no room for their record "
                                  "(balanced as without affinity)", value=s["affinity_full"])
        conns = GaugeMetricFamily("netsem_connections", "Tracked connections by conntrack state", labels=["state"])
        for state, n in sorted(s["states"].items()):
            conns.add_metric([state], n)
        yield conns
        hits = CounterMetricFamily("netsem_policy_rule_hits",
                                   "New connections each NetworkPolicy rule allowed",
                                   labels=["namespace", "policy", "direction", "rule"])
        for (policy, direction, index), n in sorted(s["hits"].items()):
            ns, name = policy.split("/", 1)
            hits.add_metric([ns, name, direction.lower(), str(index)], n)
        yield hits
        used = GaugeMetricFamily("netsem_table_entries", "Entries in each bounded table", labels=["table"])
        cap = GaugeMetricFamily("netsem_table_capacity", "Capacity of each bounded table", labels=["table"])
        for table, (n, c) in sorted(s["fill"].items()):
            used.add_metric([table], n)
            cap.add_metric([table], c)
        yield used
        yield cap
        yield CounterMetricFamily("netsem_events_lost", "Events dropped because the event ring was full",
                                  value=s["events_lost"])
        yield GaugeMetricFamily("netsem_tables_generation", "Table sets installed since start",
                                value=s["generation"])
