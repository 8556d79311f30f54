"""Soft-switch forwarding benchmark (bench/README.md, shared/bench-anchors.md).

One topology for every row, as in the anchors: pods pA (198.18.1.10) and pB
(198.18.2.10), each a namespace with a /32 and `default via 169.254.1.1` (static
neighbour entry), wired by veths (TX offloads off) to a switch namespace. Rows:

  kernel          IP forwarding in the switch namespace, no rules
  iptables N      the same plus iptables-legacy rules of the kind policy agents
                  generate: conntrack ESTABLISHED,RELATED accept, then N rules
                  `-s X -d pB -p tcp --dport P -j ACCEPT` that the test traffic walks
                  past, then the rule that allows it (N = 10, 1,000, 10,000)
  switch N        netsem's switch with N NetworkPolicies (each: pB ingress from one
                  /32 ipBlock on one TCP port) plus one allowing pA -> pB, in a child
                  process pinned to the last CPU

Tests: udp1 / udp10k (64-byte UDP, 1 or 10,000 flows), new (every packet a new
flow), and with --tcp, TCP throughput (iperf3, 1 stream), TCP connections per
second (bench/gen/tcpconn.c: connect, server closes, client closes) and UDP
request/response latency (bench/gen/udprr.c: one 64-byte datagram at a time, echoed;
p50 and p99 of the round trip).

--offloads off,on runs every configuration with pod offloads off (AF_PACKET-only
frames, as the anchors) and on (kernel defaults: TSO/GSO, the switch carries
virtio-net headers); --busy-poll 0,1000 runs the switch rows sleeping when idle and
spinning up to 1,000 µs; --ports 2,1000 adds idle pods. The generator is
bench/gen/udpgen.c (one-thread AF_PACKET sendmmsg, batch 64, PACKET_QDISC_BYPASS),
compiled with gcc at run time, in pA pinned to CPU 0. Received = pB eth0's
rx_packets; an nftables netdev ingress rule in pB drops the UDP test traffic before
pB's stack (no ICMP back).

CPU per forwarded packet: switch rows, busy time of the switch's core (/proc/stat)
÷ packets received at pB; kernel rows (forwarding runs inline in the generator's
softirq on CPU 0), (CPU 0 busy − the generator's own cost, measured with forwarding
dropped at the switch namespace's ingress) ÷ packets received.

    sudo python bench/switch_bench.py [--seconds 3] [--reps 3] [--policies 10,1000,10000] [--tcp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pyroute2 import IPRoute, netns as pr_netns  # noqa: E402

from pipeline.switch.netns import NETNS_DIR, _sysctl, in_netns  # noqa: E402
from pipeline.switch.topology import Topology  # noqa: E402

A, B = "198.18.1.10", "198.18.2.10"
TESTS = {"udp1": 1, "udp10k": 10000, "new": 0}
SWITCH_CONNECTIONS = 1 << 22       # room for every flow of the "new" test


def pods_manifest(n_policies: int, idle: int = 0) -> list[dict]:
    """pA and pB, n_policies policies selecting pB, and `idle` more pods that send
    nothing (their ports only cost the switch what an idle port costs)."""
    pods = [("a", A), ("b", B)] + [(f"i{k:04d}", f"198.18.{16 + k // 250}.{k % 250 + 1}") for k in range(idle)]
    docs = [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": name, "namespace": "bench", "labels": {"app": name}},
             "spec": {"containers": [{"name": "c", "image": "x"}]},
             "status": {"podIPs": [{"ip": ip}]}} for name, ip in pods]
    for i in range(n_policies):
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"p{i}", "namespace": "bench"},
                     "spec": {"podSelector": {"matchLabels": {"app": "b"}},
                              "ingress": [{"from": [{"ipBlock": {"cidr": f"198.19.{i // 250}.{i % 250 + 1}/32"}}],
                                           "ports": [{"protocol": "TCP", "port": 1000 + i % 60000}]}]}})
    if n_policies:
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": "allow-test", "namespace": "bench"},
                     "spec": {"podSelector": {"matchLabels": {"app": "b"}},
                              "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]}})
    return docs


def iptables_rules(n: int) -> str:
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
             "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    for i in range(n):
        lines.append(f"-A FORWARD -s 198.19.{i // 250}.{i % 250 + 1}/32 -d {B}/32 -p tcp -m tcp "
                     f"--dport {1000 + i % 60000} -j ACCEPT")
    lines += [f"-A FORWARD -s {A}/32 -d {B}/32 -p udp -j ACCEPT",
              f"-A FORWARD -s {A}/32 -d {B}/32 -p tcp -j ACCEPT", "COMMIT", ""]
    return "\n".join(lines)


# -- helpers ------------------------------------------------------------------------

def _enter(netns: str, cpu: int | None = None):
    def pre():
        fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
        pr_netns.setns(fd, flags=0)
        os.close(fd)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return pre


def run_in(netns: str, argv: list[str], cpu: int | None = None, stdin: str | None = None,
           timeout: float = 120) -> str:
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                       preexec_fn=_enter(netns, cpu))
    if r.returncode:
        raise RuntimeError(f"{argv[0]} in {netns}: {r.stderr.strip() or r.returncode}")
    return r.stdout


def cpu_busy() -> dict:
    """cpu index (and "all": the machine) -> busy seconds (all but idle and iowait)
    from /proc/stat."""
    out = {}
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu ") or (line.startswith("cpu") and line[3].isdigit()):
                name, *v = line.split()
                v = [int(x) for x in v]
                out[int(name[3:]) if name[3:] else "all"] = (sum(v[:8]) - v[3] - v[4]) / hz
    return out


def rx_packets(netns: str) -> int:
    with IPRoute(netns=netns) as ipr:
        link = ipr.link("get", index=ipr.link_lookup(ifname="eth0")[0])[0]
        return link.get_attr("IFLA_STATS64")["rx_packets"]


def preflight(name: str, tools: list[str]) -> bool:
    """Root and the tools a benchmark needs; says what is missing on stderr."""
    if os.geteuid() != 0:
        print(f"{name}: run as root (it creates namespaces)", file=sys.stderr)
        return False
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        print(f"{name}: missing {', '.join(missing)} (scripts/install.sh installs them)", file=sys.stderr)
        return False
    return True


def build_tools(directory: str) -> dict:
    """Compiles bench/gen/*.c into `directory`; name -> path."""
    out = {}
    for name in ("udpgen", "tcpconn", "udprr"):
        out[name] = os.path.join(directory, name)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", out[name],
                        os.path.join(ROOT, "bench", "gen", name + ".c")], check=True)
    return out


def mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


class Bench:
    def __init__(self, tools: dict, seconds: float, reps: int, tcp: bool, udp: bool = True):
        self.tools, self.seconds, self.reps, self.tcp, self.udp = tools, seconds, reps, tcp, udp
        self.gen = tools["udpgen"]
        cpus = sorted(os.sched_getaffinity(0))
        self.gen_cpu, self.sw_cpu = cpus[0], cpus[-1]
        self.gen_cost: dict[str, float] = {}       # test -> generator CPU s per sent packet
        self.tmp = tempfile.mkdtemp(prefix="netsem-bench-")

    def generate(self, topo: Topology, flows: int, seconds: float, dst: str = B) -> int:
        pa = topo.ports[1]
        out = run_in(pa.netns, [self.gen, "eth0", mac(pa.pod_mac), mac(pa.gw_mac), A, dst, str(flows),
                                str(seconds)], cpu=self.gen_cpu)
        return int(out.split()[1])

    def measure(self, topo: Topology, flows: int, busy_cpu: int, count_at: str | None = "pB",
                dst: str = B) -> dict:
        """Packets sent to `dst` (pB, or an address that leads there), received at pB."""
        pb = topo.ports[2].netns
        self.generate(topo, flows, 0.3, dst)                 # warm up: caches, conntrack, neighbours
        time.sleep(0.05)
        rx0, c0, t0 = rx_packets(pb) if count_at else 0, cpu_busy(), time.monotonic()
        sent = self.generate(topo, flows, self.seconds, dst)
        time.sleep(0.05)
        rx1, c1, t1 = rx_packets(pb) if count_at else 0, cpu_busy(), time.monotonic()
        got = rx1 - rx0
        return {"sent": sent, "received": got, "sent_pps": sent / (t1 - t0), "rx_pps": got / (t1 - t0),
                "busy_s": c1[busy_cpu] - c0[busy_cpu], "elapsed_s": t1 - t0}

    def iperf(self, topo: Topology) -> float:
        pa, pb = topo.ports[1], topo.ports[2]
        srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", B], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=_enter(pb.netns, self.gen_cpu))
        try:
            time.sleep(0.3)
            out = run_in(pa.netns, ["iperf3", "-c", B, "-t", str(self.seconds), "-J"], cpu=self.gen_cpu,
                         timeout=self.seconds + 30)
            return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
        finally:
            srv.kill()
            srv.wait()

    def conn_rate(self, topo: Topology, dst: str = B) -> float:
        pa, pb = topo.ports[1], topo.ports[2]
        with in_netns(pa.netns):
            _sysctl("net.ipv4.ip_local_port_range", "1024 65535")
        srv = subprocess.Popen([self.tools["tcpconn"], "server", B, "5001"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=_enter(pb.netns, self.gen_cpu))
        try:
            time.sleep(0.2)
            out = run_in(pa.netns, [self.tools["tcpconn"], "client", dst, "5001", str(self.seconds)],
                         cpu=self.gen_cpu, timeout=self.seconds + 30)
            return int(out.split()[1]) / self.seconds
        finally:
            srv.kill()
            srv.wait()

    def latency(self, topo: Topology) -> tuple[float, float, float]:
        """UDP request/response through the forwarder: (p50, p99) round trip in µs,
        and the switch core's busy time per forwarded packet (two per round trip) at
        this low rate, where wake-ups, not batches, are the cost."""
        pa, pb = topo.ports[1], topo.ports[2]
        srv = subprocess.Popen([self.tools["udprr"], "server", B, "7"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=_enter(pb.netns, self.gen_cpu))
        try:
            time.sleep(0.2)
            c0 = cpu_busy()
            out = run_in(pa.netns, [self.tools["udprr"], "client", B, "7", str(self.seconds)],
                         cpu=self.gen_cpu, timeout=self.seconds + 30).split()
            busy = cpu_busy()[self.sw_cpu] - c0[self.sw_cpu]
            return float(out[3]), float(out[5]), busy / max(1, 2 * int(out[1])) * 1e6
        finally:
            srv.kill()
            srv.wait()

    # -- one configuration ---------------------------------------------------------
    def config(self, kind: str, n: int, ports: int = 2, offloads: bool = False, busy_us: int = 0,
               workers: int = 1, coalesce: int = 0) -> list[dict]:
        from pipeline.load.build import load_cluster
        from pipeline.dataplane.compiler import compile_cluster
        from pipeline.switch.process import start_switch, stop_switch
        from pipeline.switch.switch import topology_pods
        import yaml
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump_all(pods_manifest(n if kind == "switch" else 0, max(0, ports - 2)), f)
            f.flush()
            cluster, _ = load_cluster([f.name])
        t = time.monotonic()
        compiled = compile_cluster(cluster)
        compile_s = time.monotonic() - t
        topo = Topology.build(topology_pods(compiled), static_neighbors=True, offloads=offloads)
        tag = {"ports": ports, "offloads": offloads, "busy_us": busy_us if kind == "switch" else 0,
               "workers": workers if kind == "switch" else 1, "coalesce_us": coalesce if kind == "switch" else 0}
        # several workers run on every core: their CPU is the machine's, less the generator's
        sw_cpu = self.sw_cpu if workers == 1 else "all"
        # a thousand ports: a smaller ring each (a 64 KiB frame per slot with offloads)
        ring = (1 << 20) if ports > 64 else 0
        assert topo.ports[1].key == "bench/a" and topo.ports[2].key == "bench/b", "pA, pB are ports 1, 2"
        rows = []
        pid = None
        try:
            pb = topo.ports[2].netns
            run_in(pb, ["nft", "-f", "-"], stdin='table netdev bench {\n chain in {\n  type filter hook ingress '
                   'device "eth0" priority 0;\n  udp dport != 7 counter drop\n }\n}\n')
            if kind != "switch":
                kernel_forwarding(topo)
            if kind == "iptables":
                run_in(topo.switch_netns, ["iptables-legacy-restore"], stdin=iptables_rules(n), timeout=300)
            if kind == "kernel" and self.udp:
                self.calibrate(topo)
            for test, flows in (TESTS.items() if self.udp else ()):
                reps = []
                for _ in range(self.reps):
                    counters = os.path.join(self.tmp, "counters.json")
                    if kind == "switch":
                        # a fresh switch per repetition: every rep starts with empty conntrack
                        pid = start_switch(compiled, topo, cpu=self.sw_cpu, connections=SWITCH_CONNECTIONS,
                                           counters=counters, busy_poll_us=busy_us, ring_bytes=ring,
                                           workers=workers, coalesce_us=coalesce)
                    try:
                        m = self.measure(topo, flows, sw_cpu if kind == "switch" else self.gen_cpu)
                    finally:
                        if pid:
                            stop_switch(pid)
                            pid = None
                            with open(counters) as cf:
                                m["verdicts"] = json.load(cf)["reasons"]
                    if m["received"]:
                        if kind == "switch" and workers == 1:
                            m["cpu_us_per_packet"] = m["busy_s"] / m["received"] * 1e6
                        else:
                            fwd = m["busy_s"] - self.gen_cost.get(test, 0.0) * m["sent"]
                            m["cpu_us_per_packet"] = max(0.0, fwd) / m["received"] * 1e6
                    reps.append(m)
                rows.append(dict(summarize(kind, n, test, reps, compile_s), **tag))
            if self.tcp:
                gbps, cps, lat = [], [], []
                for _ in range(self.reps):
                    if kind == "switch":
                        pid = start_switch(compiled, topo, cpu=self.sw_cpu, connections=SWITCH_CONNECTIONS,
                                           busy_poll_us=busy_us, ring_bytes=ring, workers=workers,
                                           coalesce_us=coalesce)
                    try:
                        gbps.append(self.iperf(topo))
                        cps.append(self.conn_rate(topo))
                        lat.append(self.latency(topo))
                    finally:
                        if pid:
                            stop_switch(pid)
                            pid = None
                rows.append({"forwarder": kind, "policies": n, "test": "tcp", "gbps": statistics.median(gbps),
                             "reps": gbps, **tag})
                rows.append({"forwarder": kind, "policies": n, "test": "conn/s", "cps": statistics.median(cps),
                             "reps": cps, **tag})
                rows.append({"forwarder": kind, "policies": n, "test": "rr", "p50_us": statistics.median(
                    x[0] for x in lat), "p99_us": statistics.median(x[1] for x in lat),
                    "cpu_us_per_packet": statistics.median(x[2] for x in lat)
                    if kind == "switch" and workers == 1 else None,
                    "reps": lat, **tag})
        finally:
            if pid:
                stop_switch(pid)
            topo.teardown()
        return rows

    def calibrate(self, topo: Topology) -> None:
        """The generator's own CPU 0 cost per packet sent: the same frames, dropped by
        an nftables netdev ingress rule on the switch side of pA's veth, i.e. as early
        as the switch namespace can drop them (sender, veth transmit and receive
        only). What the kernel rows add to it is the forwarding."""
        sw_if = topo.ports[1].sw_ifname
        run_in(topo.switch_netns, ["nft", "-f", "-"],
               stdin=f'table netdev calib {{\n chain in {{\n  type filter hook ingress device "{sw_if}" '
                     'priority 0;\n  ip protocol udp counter drop\n }\n}\n')
        try:
            for test, flows in TESTS.items():
                costs = []
                for _ in range(self.reps):
                    m = self.measure(topo, flows, self.gen_cpu, count_at=None)
                    costs.append(m["busy_s"] / m["sent"] if m["sent"] else 0.0)
                self.gen_cost[test] = statistics.median(costs)
        finally:
            run_in(topo.switch_netns, ["nft", "delete", "table", "netdev", "calib"])


def summarize(kind: str, n: int, test: str, reps: list[dict], compile_s: float) -> dict:
    med = sorted(reps, key=lambda r: r["rx_pps"])[len(reps) // 2]
    cpu = [r["cpu_us_per_packet"] for r in reps if "cpu_us_per_packet" in r]
    return {"forwarder": kind, "policies": n, "test": test, "sent_pps": med["sent_pps"],
            "rx_pps": med["rx_pps"], "loss": 1 - med["received"] / med["sent"] if med["sent"] else 0.0,
            "cpu_us_per_packet": statistics.median(cpu) if cpu else None,
            "compile_s": compile_s if kind == "switch" else None, "verdicts": med.get("verdicts"),
            "reps": reps}


def kernel_forwarding(topo: Topology) -> None:
    with in_netns(topo.switch_netns):
        _sysctl("net.ipv4.ip_forward", "1")
    with IPRoute(netns=topo.switch_netns) as ipr:
        for pp in topo.ports.values():
            idx = ipr.link_lookup(ifname=pp.sw_ifname)[0]
            ip = str(pp.ips[0])
            ipr.route("add", dst=ip + "/32", oif=idx)
            ipr.neigh("add", dst=ip, lladdr=mac(pp.pod_mac), ifindex=idx, state=0x80)


def label(r: dict) -> str:
    extra = (" offl" if r.get("offloads") else "") + (f" busy={r['busy_us']}" if r.get("busy_us") else "") + \
        (f" w={r['workers']}" if r.get("workers", 1) > 1 else "") + \
        (f" co={r['coalesce_us']}" if r.get("coalesce_us") else "")
    if r["forwarder"] == "kernel":
        return "kernel" + extra
    return f"{r['forwarder']} N={r['policies']}" + (f" ports={r['ports']}" if r.get("ports", 2) > 2 else "") + extra


def _key(r: dict) -> tuple:
    return r["test"], bool(r.get("offloads"))


def print_table(rows: list[dict], out=sys.stdout) -> None:
    base = {_key(r): r for r in rows if r["forwarder"] == "kernel"}
    print(f"{'configuration':<26} {'test':<7} {'sent pps':>10} {'rx pps':>10} {'ratio':>6} {'loss':>6} "
          f"{'µs/pkt':>7}  the switch's verdicts", file=out)
    for r in rows:
        b = base.get(_key(r))
        if r["test"] == "rr":
            r["ratio_to_kernel"] = r["p50_us"] / b["p50_us"] if b and b["p50_us"] else None
            print(f"{label(r):<26} {'rr µs':<7} {'p50':>10} {r['p50_us']:>10.1f} {r['ratio_to_kernel'] or 0:>6.2f}"
                  f"  p99 {r['p99_us']:.1f}" + (f" ({r['p99_us'] / b['p99_us']:.2f})" if b else "")
                  + (f"; switch core {r['cpu_us_per_packet']:.1f} µs/packet" if r.get("cpu_us_per_packet") else ""),
                  file=out)
            continue
        if r["test"] == "conn/s":
            r["ratio_to_kernel"] = r["cps"] / b["cps"] if b and b["cps"] else None
            print(f"{label(r):<26} {'conn/s':<7} {'':>10} {r['cps']:>10.0f} "
                  f"{r['ratio_to_kernel'] or 0:>6.2f}", file=out)
            continue
        if r["test"] == "tcp":
            r["ratio_to_kernel"] = r["gbps"] / b["gbps"] if b and b["gbps"] else None
            print(f"{label(r):<26} {'tcp':<7} {'':>10} {r['gbps']:>8.2f}Gb "
                  f"{r['ratio_to_kernel'] or 0:>6.2f}", file=out)
            continue
        r["ratio_to_kernel"] = r["rx_pps"] / b["rx_pps"] if b and b["rx_pps"] else None
        cpu = r.get("cpu_us_per_packet")
        print(f"{label(r):<26} {r['test']:<7} {r['sent_pps']:>10.0f} {r['rx_pps']:>10.0f} "
              f"{r['ratio_to_kernel'] or 0:>6.2f} {r['loss']:>6.1%} {'' if cpu is None else f'{cpu:.2f}':>7}"
              f"  {verdict_mix(r.get('verdicts'))}", file=out)


def verdict_mix(counts) -> str:
    """The pipeline's reasons for the test's packets (ARP and neighbour discovery aside)."""
    if not counts:
        return ""
    counts = {k: v for k, v in counts.items() if k not in ("arp", "neighbor_discovery")}
    total = sum(counts.values()) or 1
    return ", ".join(f"{k} {v / total:.1%}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:3])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--policies", default="10,1000,10000", help="comma-separated N for iptables and switch rows")
    ap.add_argument("--only", default="kernel,iptables,switch", help="forwarders to run")
    ap.add_argument("--tcp", action="store_true",
                    help="also TCP throughput (iperf3), TCP connections per second and UDP request/response latency")
    ap.add_argument("--no-udp", action="store_true", help="skip the 64-byte UDP tests")
    ap.add_argument("--offloads", default="off", help="comma-separated: off (pod offloads off, as the anchors), "
                                                      "on (kernel defaults; the switch carries GSO frames)")
    ap.add_argument("--busy-poll", default="0", help="comma-separated busy-poll budgets (µs) for the switch rows")
    ap.add_argument("--coalesce", default="0", help="comma-separated interrupt-moderation delays (µs) for the "
                                                   "switch rows (netsem up --coalesce)")
    ap.add_argument("--workers", default="1", help="comma-separated worker counts for the switch rows (N > 1: "
                                                   "threads on every core; CPU per packet is then the machine's "
                                                   "busy time less the generator's own, as for the kernel rows)")
    ap.add_argument("--ports", default="2", help="comma-separated switch port counts: pA and pB, plus idle pods "
                                                 "to make up the number (e.g. 2,1000: CPU per packet should not "
                                                 "grow with idle ports)")
    ap.add_argument("--json", metavar="FILE", help="default: bench/results/switch-<time>.json")
    args = ap.parse_args(argv)
    only = args.only.split(",")
    ns = [int(x) for x in args.policies.split(",") if x]
    need = ["gcc", "nft"] + (["iptables-legacy-restore"] if "iptables" in only else []) + \
        (["iperf3"] if args.tcp else [])
    if not preflight("switch_bench", need):
        return 2
    tmp = tempfile.mkdtemp(prefix="netsem-bench-")
    bench = Bench(build_tools(tmp), args.seconds, args.reps, args.tcp, not args.no_udp)
    rows: list[dict] = []
    try:
        ports = [int(x) for x in args.ports.split(",") if x]
        offl = [x == "on" for x in args.offloads.split(",") if x]
        busy = [int(x) for x in args.busy_poll.split(",") if x]
        workers = [int(x) for x in args.workers.split(",") if x]
        coalesce = [int(x) for x in args.coalesce.split(",") if x]
        configs = [("kernel", 0, 2, o, 0, 1, 0) for o in offl] + \
            [("iptables", n, 2, o, 0, 1, 0) for n in ns for o in offl if "iptables" in only] + \
            [("switch", n, p, o, b, w, c) for n in ns for p in ports for o in offl for b in busy for w in workers
             for c in coalesce if "switch" in only]
        for kind, n, p, o, b, w, c in configs:
            t = time.monotonic()
            rows += bench.config(kind, n, p, o, b, w, c)
            print(f"  {kind} N={n} ports={p} offloads={o} busy={b} workers={w} coalesce={c}: "
                  f"{time.monotonic() - t:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows)
    path = args.json or os.path.join(ROOT, "bench", "results", time.strftime("switch-%Y%m%d-%H%M%S.json"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"seconds": args.seconds, "reps": args.reps, "cpus": os.cpu_count(),
                   "kernel": os.uname().release, "rows": rows}, f, indent=1)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
