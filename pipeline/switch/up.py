"""`netsem up`: the topology, the switch in the foreground with a status line, flow
records and metrics; it follows its cluster (SIGHUP re-reads the manifests; with
--kubeconfig every change of the API server is applied as it comes): pods that come
are wired, pods that go unwired, tables swapped, established connections kept.
Ctrl-C or SIGTERM tears everything down. Everything it prints is flushed line by line, and it says (on
stderr, and as "ready" in the run's state file) when the switch forwards."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Optional

from ..dataplane.compiler import compile_cluster
from ..dataplane.compiler.delta import compile_next
from ..dataplane.flows import FlowBuilder
from ..load.errors import ManifestErrors
from ..model.dns import DEFAULT_DNS_ADDRESS, add_cluster_dns
from .capture import Recorder
from .dns import ClusterDNS
from .switch import Switch, status_line, topology_pods
from .netns import STATE_DIR, _ns_path, conntrack_path
from .sources import ApiSource, FileSource
from .topology import Topology

EVENT_RING = 1 << 16


class _Flows:
    """Writes one flow record per event out of the pipeline's ring (`--flows`)."""

    def __init__(self, switch: Switch, path: str):
        self.switch = switch
        self.f = sys.stdout if path == "-" else open(path, "a", buffering=1)
        self.wall_offset = time.time_ns() - time.monotonic_ns()   # the switch runs on CLOCK_MONOTONIC
        self._builders: dict = {}
        self.written = 0

    def drain(self) -> None:
        dp = self.switch.datapath
        with self.switch.locked():          # workers write the ring meanwhile
            events = dp.events()
        for ev in events:
            compiled = dp.compiled_at(ev.generation)
            b = self._builders.get(id(compiled))
            if b is None:
                b = self._builders[id(compiled)] = FlowBuilder(compiled)
                if len(self._builders) > dp.KEEP:
                    self._builders.pop(next(iter(self._builders)))
            self.f.write(json.dumps(b.from_event(ev, self.wall_offset)) + "\n")
            self.written += 1
        self.f.flush()

    def close(self) -> None:
        self.drain()
        if self.f is not sys.stdout:
            self.f.close()


def run_up(source, config=None, port_type: str = "veth", stats_interval: float = 1.0,
           prefix: Optional[str] = None, ring: str = "v2", out=sys.stderr,
           duration: Optional[float] = None, pcap: Optional[str] = None, flows: Optional[str] = None,
           metrics_port: Optional[int] = None, metrics_address: str = "127.0.0.1",
           max_connections: int = 0, cluster_dns: Optional[str] = DEFAULT_DNS_ADDRESS,
           max_ports: int = 0, max_connections_per_pod: int = 0, attach: bool = False,
           offloads: bool = True, busy_poll_us: int = 0, workers: int = 1, coalesce_us: int = 0) -> int:
    """source: manifest paths (a list), or a FileSource / ApiSource (sources.py).
    attach: take over run `prefix`, whose switch was killed: its namespaces and links
    as they are, and the connections in its shared connection table; then brought to
    the manifests like a reload. Nothing of that run is removed if this fails before
    it is ready."""
    if isinstance(source, (list, tuple)):
        source = FileSource(list(source), config)
    try:
        cluster = source.initial()
    except BaseException:
        source.close()
        raise
    for n in source.notes:
        print(f"note: {n}", file=out)
    dns_pods = add_cluster_dns(cluster, cluster_dns) if cluster_dns else []
    compiled = compile_cluster(cluster)
    skipped = [p.key for p in cluster.pod_list() if cluster.attachment(p.key) is None]
    if skipped:
        print(f"note: no namespace for hostNetwork pods (their address is their node's): "
              f"{', '.join(skipped)}", file=out)
    stop = threading.Event()
    reload = threading.Event()
    old = {s: signal.signal(s, lambda *a: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *a: reload.set())
    topo = sw = rec = flow_out = metrics = server = dns = None
    owned = not attach               # a failed attach leaves the run for another try
    try:
        if attach:
            topo = Topology.attach(prefix)
        else:
            topo = Topology.build(topology_pods(compiled), prefix=prefix, port_type=port_type,
                                  offloads=offloads)
        if cluster_dns:
            dns = ClusterDNS(STATE_DIR, topo.prefix, cluster_dns)
            dns.write(cluster)
            topo.dns = cluster_dns
        sw = Switch(compiled, topo, ring=ring, connections=max_connections,
                    events=EVENT_RING if flows else 0, max_ports=max_ports,
                    per_port=max_connections_per_pod, ct_file=conntrack_path(topo.prefix), attach=attach,
                    busy_poll_us=busy_poll_us, workers=workers, coalesce_us=coalesce_us)
        if attach:
            gone, added = sw.rewire(compiled)
            print(f"netsem up: attached to run {topo.prefix}: {sw.datapath.adopted} connections taken "
                  f"over" + (f"; wired {len(added)} interfaces the manifests added" if added else "")
                  + (f"; unwired ports {', '.join(map(str, gone))}" if gone else ""), file=out)
        if pcap:
            rec = Recorder(sw, pcap)
            rec.note_generation(sw.datapath.generation, getattr(source, "texts", None), cluster_dns)
            print(f"netsem up: recording every frame in and out of the switch to {rec.path}/in.pcapng "
                  f"and out.pcapng", file=out)
        if flows:
            flow_out = _Flows(sw, flows)
        if metrics_port is not None:
            from .metrics import Metrics
            metrics = Metrics(sw)
            server = metrics.serve(metrics_port, metrics_address)
            print(f"netsem up: metrics on http://{metrics_address}:{metrics_port}/metrics", file=out)
        pods = {pp.pod for pp in topo.ports.values()} - {"uplink"}
        extra = len(topo.ports) - 1 - len(pods)
        print(f"netsem up: prefix {topo.prefix}, {len(pods)} pods"
              f"{f' ({extra} secondary interfaces)' if extra else ''} and the uplink "
              f"(netsem exec --prefix {topo.prefix} NS/POD|uplink -- CMD); Ctrl-C stops", file=out)
        for pp in sorted(topo.ports.values(), key=lambda p: p.port):
            print(f"  port {pp.port:>3}  {pp.key:<30} {pp.netns:<14} "
                  f"{' '.join(str(i) for i in pp.ips)}", file=out)
        if dns is not None:
            dns.start([_ns_path(topo.by_key(k).netns or topo.pod_netns(topo.by_key(k).port))
                       for k in dns_pods])
            print(f"netsem up: cluster DNS at {cluster_dns} (kube-system/kube-dns, served by "
                  f"{', '.join(dns_pods) or 'no ready pod'}); `netsem exec` gives pods a resolv.conf "
                  f"pointing at it", file=out)
        topo.mark_ready()
        owned = True
        print("netsem up: ready", file=out)
        out.flush()
        t_end = time.monotonic() + duration if duration else None
        state = {"prev": sw.stats(), "next": time.monotonic() + stats_interval, "compiled": compiled,
                 "rec": rec, "cluster_dns": cluster_dns}

        def tick():
            if rec is not None:
                rec.drain()
            if flow_out is not None:
                flow_out.drain()
            if metrics is not None:
                metrics.update()
            if reload.is_set() and isinstance(source, FileSource):
                reload.clear()
                _reload(source, sw, state, out, cluster_dns, dns)
            if isinstance(source, ApiSource):
                _follow(source, sw, state, out, cluster_dns, dns)
            now = time.monotonic()
            if now >= state["next"]:
                cur = sw.stats()
                line = status_line(state["prev"], cur, topo)
                out.write("\r\033[K" + line[:200] if out.isatty() else line + "\n")
                out.flush()
                state["prev"], state["next"] = cur, now + stats_interval
            if t_end is not None and now >= t_end:
                stop.set()

        sw.serve(stop, slice_s=0.05, on_slice=tick)
        if out.isatty():
            out.write("\n")
        return 0
    finally:
        if server is not None:
            server[0].shutdown()
        if rec is not None:
            rec.close()
            st = sw.stats().switch
            print(f"netsem up: {rec.frames} frames recorded in {rec.path}/{{in,out}}.pcapng "
                  f"({st['capture_dropped']} not recorded: capture ring full)", file=out)
        if flow_out is not None:
            flow_out.close()
        if dns is not None:
            dns.stop()
        if sw is not None:
            sw.close()
        if topo is not None and owned:
            topo.teardown()
        source.close()
        for s, h in old.items():
            signal.signal(s, h)


def _reload(source, sw: Switch, state: dict, out, cluster_dns=None, dns=None) -> None:
    """SIGHUP: re-read the manifests and bring the switch to them; a bad manifest or a
    failed compile keeps everything as it was."""
    try:
        new_cluster = source.reload(state["compiled"].cluster)
    except ManifestErrors as e:
        for err in e.errors:
            print(err, file=out)
        print("netsem up: reload failed; old tables kept", file=out)
        out.flush()
        return
    _rewire(new_cluster, sw, state, out, cluster_dns, dns, "reloaded", texts=source.texts)


def _follow(source, sw: Switch, state: dict, out, cluster_dns=None, dns=None) -> None:
    """--kubeconfig: the API server's changes waiting, each said, then one rewire."""
    new_cluster, seen = source.poll()
    for ch, rejected in seen:
        name = f"{ch.namespace}/{ch.name}" if ch.namespace else ch.name
        why = "" if ch.why == "watch" else f" ({ch.why})"
        if rejected:
            print(f"netsem up: {ch.kind} {name} {ch.type.lower()}{why}: rejected, nothing changed: "
                  f"{'; '.join(rejected)}", file=out)
        else:
            print(f"netsem up: {ch.kind} {name} {ch.type.lower()}{why}", file=out)
    if new_cluster is not None:
        _rewire(new_cluster, sw, state, out, cluster_dns, dns, "applied", source.delta,
                texts=source.texts if state.get("rec") is not None else None)
    elif seen:
        out.flush()


def _rewire(new_cluster, sw: Switch, state: dict, out, cluster_dns, dns, verb: str, delta=None,
            texts=None) -> None:
    """delta: sources.delta_of's account of the change; the tables follow as a delta
    of the running ones where it is one (compiler/delta.py)."""
    try:
        if cluster_dns:
            add_cluster_dns(new_cluster, cluster_dns)      # a delta's copy has it already
        new = compile_next(state.get("compiled"), new_cluster, **(delta or {}))
        if new is state.get("compiled"):
            return                                          # nothing the tables see changed
        gone, added = sw.rewire(new)
    except Exception as e:      # a compile error or a full switch must not stop it
        print(f"netsem up: {verb} failed ({e}); old tables kept", file=out)
        out.flush()
        return
    state["compiled"] = new
    if state.get("rec") is not None:
        state["rec"].note_generation(sw.datapath.generation, texts, state.get("cluster_dns"))
    if dns is not None:
        dns.write(new_cluster)
    parts = [f"generation {sw.generation}" + (", tables as a delta" if new.delta else "")]
    if added:
        parts.append("wired " + ", ".join(f"{pp.key} (port {pp.port})" for pp in added))
    if gone:
        parts.append("unwired ports " + ", ".join(map(str, gone)))
    print(f"netsem up: {verb} ({'; '.join(parts)})", file=out)
    out.flush()
