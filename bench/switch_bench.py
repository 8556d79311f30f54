"""Soft-switch forwarding benchmark (bench/README.md, shared bench-anchors).

Topology as in the anchors: pods pA, pB (one namespace each, /32 addresses, default
via 169.254.1.1 with a static neighbour entry) and a switch namespace, veths with
TX offloads off. Forwarding by
  kernel  IP forwarding in the switch namespace, no rules (static routes/neighbours)
  switch  this switch (native pipeline, conntrack, no policy), in a child process
          pinned to the last CPU
measured in one run. The generator is a one-thread Python AF_PACKET sender
(PACKET_QDISC_BYPASS) in pA pinned to CPU 0; it, not the forwarder, is often the
bottleneck, so CPU per forwarded packet (switch core busy time / packets received
at pB) is the number to compare, not pps alone.

    sudo python bench/switch_bench.py [--seconds 3] [--reps 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pyroute2 import IPRoute  # noqa: E402

from pipeline.topology import Topology, in_netns, _sysctl  # noqa: E402

A, B = "198.18.1.10", "198.18.2.10"
MANIFEST = f"""
apiVersion: v1
kind: Pod
metadata: {{name: a, namespace: bench, labels: {{app: a}}}}
spec: {{containers: [{{name: c, image: x}}]}}
status: {{podIPs: [{{ip: {A}}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: b, namespace: bench, labels: {{app: b}}}}
spec: {{containers: [{{name: c, image: x}}]}}
status: {{podIPs: [{{ip: {B}}}]}}
"""


def udp_frame(dst_mac: bytes, src_mac: bytes, sport: int) -> bytes:
    """64-byte frame (60 + FCS): Ethernet + IPv4 + UDP + 18 bytes payload."""
    payload = b"\0" * 18
    udp = struct.pack("!HHHH", sport, 9, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                      socket.inet_aton(A), socket.inet_aton(B))
    s = sum(struct.unpack("!10H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    hdr = hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:]
    return dst_mac + src_mac + b"\x08\x00" + hdr + udp


def rx_packets(netns: str) -> int:
    with IPRoute(netns=netns) as ipr:
        link = ipr.link("get", index=ipr.link_lookup(ifname="eth0")[0])[0]
        return link.get_attr("IFLA_STATS64")["rx_packets"]


def generate(topo: Topology, flows: int, seconds: float) -> int:
    pa = topo.ports[1]
    with in_netns(pa.netns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.setsockopt(263, 20, 1)            # SOL_PACKET, PACKET_QDISC_BYPASS
    s.bind(("eth0", 0))
    frames = [udp_frame(pa.gw_mac, pa.pod_mac, 10000 + i % 50000) for i in range(flows)]
    frames = frames * max(1, 2000 // len(frames))
    send = s.send
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for f in frames:
            try:
                send(f)
                sent += 1
            except OSError:
                pass
    s.close()
    return sent


def kernel_forwarding(topo: Topology) -> None:
    with in_netns(topo.switch_netns):
        _sysctl("net.ipv4.ip_forward", "1")
    with IPRoute(netns=topo.switch_netns) as ipr:
        for pp in topo.ports.values():
            idx = ipr.link_lookup(ifname=pp.sw_ifname)[0]
            ip = str(pp.ips[0])
            ipr.route("add", dst=ip + "/32", oif=idx)
            ipr.neigh("add", dst=ip, lladdr=":".join(f"{b:02x}" for b in pp.pod_mac),
                      ifindex=idx, state=0x80)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(kind: str, flows: int, seconds: float) -> dict:
    from pipeline.cluster import load_cluster
    from pipeline.compiler import compile_cluster
    from pipeline.probe import start_switch, stop_switch
    from pipeline.switch import topology_pods
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(MANIFEST)
        f.flush()
        cluster, _ = load_cluster([f.name])
    compiled = compile_cluster(cluster)
    topo = Topology.build(topology_pods(compiled), static_neighbors=True)
    pid = None
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if kind == "kernel":
            kernel_forwarding(topo)
        else:
            pid = start_switch(compiled, topo, cpu=cpus[-1])
        os.sched_setaffinity(0, {cpus[0]})
        pb = topo.ports[2].netns
        generate(topo, flows, 0.3)                       # warm up (conntrack entries, caches)
        rx0, cpu0, t0 = rx_packets(pb), cpu_seconds(pid) if pid else 0.0, time.monotonic()
        sent = generate(topo, flows, seconds)
        time.sleep(0.05)
        rx1, cpu1, t1 = rx_packets(pb), cpu_seconds(pid) if pid else 0.0, time.monotonic()
        got = rx1 - rx0
        out = {"forwarder": kind, "flows": flows, "sent_pps": sent / (t1 - t0), "rx_pps": got / (t1 - t0),
               "loss": 1 - got / sent if sent else 0.0}
        if pid:
            out["cpu_us_per_packet"] = (cpu1 - cpu0) / got * 1e6 if got else None
            out["switch_core_busy"] = (cpu1 - cpu0) / (t1 - t0)
        return out
    finally:
        os.sched_setaffinity(0, set(cpus))
        if pid:
            stop_switch(pid)
        topo.teardown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("switch_bench: run as root (it creates namespaces)", file=sys.stderr)
        return 2
    rows = []
    for flows, name in ((1, "udp1"), (10000, "udp10k")):
        for kind in ("kernel", "switch"):
            runs = sorted((one_run(kind, flows, args.seconds) for _ in range(args.reps)),
                          key=lambda r: r["rx_pps"])
            r = runs[len(runs) // 2]
            r["test"] = name
            rows.append(r)
    base = {r["test"]: r["rx_pps"] for r in rows if r["forwarder"] == "kernel"}
    print(f"{'test':<8} {'forwarder':<8} {'sent pps':>10} {'rx pps':>10} {'ratio':>6} {'loss':>6} "
          f"{'µs/pkt (switch core)':>21}")
    for r in rows:
        r["ratio_to_kernel"] = r["rx_pps"] / base[r["test"]] if base.get(r["test"]) else None
        cpu = r.get("cpu_us_per_packet")
        print(f"{r['test']:<8} {r['forwarder']:<8} {r['sent_pps']:>10.0f} {r['rx_pps']:>10.0f} "
              f"{r['ratio_to_kernel']:>6.2f} {r['loss']:>6.1%} {'' if cpu is None else f'{cpu:.2f}':>21}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
