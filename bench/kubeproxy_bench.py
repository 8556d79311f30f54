"""Services through the soft switch against kube-proxy's iptables mode in the kernel,
in the same run, on the topology of bench/switch_bench.py (pods pA and pB, a switch
namespace between them).

N ClusterIP Services (N = 1, 1,000, 10,000), each on UDP/9 and TCP/5001, each backed
by pod pB. The traffic goes to the last one's VIP:

  kube-proxy N   kernel forwarding in the switch namespace plus the nat rules
                 kube-proxy's iptables mode writes: PREROUTING -> KUBE-SERVICES (one
                 rule per Service port, the test Service's last) -> KUBE-SVC-* ->
                 KUBE-SEP-* (DNAT to pB). Linux conntrack DNATs a connection's first
                 packet there; its later packets skip the nat table.
  switch N       netsem's switch with the same N Services in its manifests.

Tests: udp10k (64-byte UDP, 10,000 flows to VIP:9, established after the first
pass: the translated steady state) and conn/s (TCP connections per second to
VIP:5001: every one walks the nat table in the kernel, the service mapper in the
switch). Received = pB eth0's rx_packets (an nftables netdev ingress rule drops the
UDP traffic there). The switch rows print the verdict mix of what they forwarded.

    sudo python bench/kubeproxy_bench.py [--seconds 3] [--reps 3] [--services 1,1000,10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from switch_bench import (A, B, SWITCH_CONNECTIONS, ROOT, Bench, build_tools, kernel_forwarding,  # noqa: E402
                          preflight, run_in, verdict_mix)

from pipeline.switch.topology import Topology  # noqa: E402


def vip(i: int) -> str:
    return f"198.19.{i // 250}.{i % 250 + 1}"


def manifests(n: int) -> list[dict]:
    docs = [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": name, "namespace": "bench", "labels": {"app": name}},
             "spec": {"containers": [{"name": "c", "image": "x"}]},
             "status": {"podIPs": [{"ip": ip}]}} for name, ip in (("a", A), ("b", B))]
    for i in range(n):
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "bench"},
                     "spec": {"selector": {"app": "b"}, "clusterIP": vip(i),
                              "ports": [{"name": "udp", "port": 9, "protocol": "UDP"},
                                        {"name": "tcp", "port": 5001, "protocol": "TCP"}]}})
    return docs


def kube_proxy_rules(n: int) -> str:
    """What kube-proxy (iptables mode) writes for n one-endpoint Services, the chains
    named as it names them (a hash of the Service port; an index here)."""
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]"]
    rules = []
    for i in range(n):
        for proto, port in (("udp", 9), ("tcp", 5001)):
            svc, sep = f"KUBE-SVC-{i:06d}{proto.upper()}", f"KUBE-SEP-{i:06d}{proto.upper()}"
            lines += [f":{svc} - [0:0]", f":{sep} - [0:0]"]
            rules += [f"-A KUBE-SERVICES -d {vip(i)}/32 -p {proto} -m {proto} --dport {port} -j {svc}",
                      f"-A {svc} -j {sep}",
                      f"-A {sep} -p {proto} -m {proto} -j DNAT --to-destination {B}:{port}"]
    return "\n".join(lines + ["-A PREROUTING -j KUBE-SERVICES"] + rules + ["COMMIT", ""])


class ServiceBench(Bench):
    def config(self, kind: str, n: int) -> list[dict]:
        import yaml

        from pipeline.dataplane.compiler import compile_cluster
        from pipeline.load.build import load_cluster
        from pipeline.switch.process import start_switch, stop_switch
        from pipeline.switch.switch import topology_pods
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump_all(manifests(n), f)
            f.flush()
            cluster, _ = load_cluster([f.name])
        t = time.monotonic()
        compiled = compile_cluster(cluster)
        compile_s = time.monotonic() - t
        topo = Topology.build(topology_pods(compiled), static_neighbors=True)
        target = vip(n - 1)
        rows, pid = [], None
        try:
            pb = topo.ports[2].netns
            run_in(pb, ["nft", "-f", "-"], stdin='table netdev bench {\n chain in {\n  type filter hook ingress '
                   'device "eth0" priority 0;\n  ip protocol udp counter drop\n }\n}\n')
            if kind == "kube-proxy":
                kernel_forwarding(topo)
                run_in(topo.switch_netns, ["iptables-legacy-restore"], stdin=kube_proxy_rules(n), timeout=600)
            udp, cps = [], []
            for _ in range(self.reps):
                counters = os.path.join(self.tmp, "counters.json")
                if kind == "switch":
                    pid = start_switch(compiled, topo, cpu=self.sw_cpu, connections=SWITCH_CONNECTIONS,
                                       counters=counters)
                try:
                    m = self.measure(topo, 10000, self.sw_cpu if kind == "switch" else self.gen_cpu, dst=target)
                    cps.append(self.conn_rate(topo, dst=target))
                finally:
                    if pid:
                        stop_switch(pid)
                        pid = None
                        with open(counters) as cf:
                            m["verdicts"] = json.load(cf)["reasons"]
                udp.append(m)
            med = sorted(udp, key=lambda r: r["rx_pps"])[len(udp) // 2]
            rows.append({"forwarder": kind, "services": n, "test": "udp10k", "sent_pps": med["sent_pps"],
                         "rx_pps": med["rx_pps"], "loss": 1 - med["received"] / max(1, med["sent"]),
                         "verdicts": med.get("verdicts"), "compile_s": compile_s if kind == "switch" else None,
                         "reps": udp})
            rows.append({"forwarder": kind, "services": n, "test": "conn/s", "cps": statistics.median(cps),
                         "reps": cps})
        finally:
            if pid:
                stop_switch(pid)
            topo.teardown()
        return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--services", default="1,1000,10000", help="comma-separated N")
    ap.add_argument("--json", metavar="FILE", help="default: bench/results/kubeproxy-<time>.json")
    args = ap.parse_args(argv)
    if not preflight("kubeproxy_bench", ["gcc", "nft", "iptables-legacy-restore"]):
        return 2
    tmp = tempfile.mkdtemp(prefix="netsem-bench-")
    bench = ServiceBench(build_tools(tmp), args.seconds, args.reps, tcp=False)
    rows = []
    try:
        for n in [int(x) for x in args.services.split(",") if x]:
            for kind in ("kube-proxy", "switch"):
                t = time.monotonic()
                rows += bench.config(kind, n)
                print(f"  {kind} N={n}: {time.monotonic() - t:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    by = {(r["forwarder"], r["services"], r["test"]): r for r in rows}
    print(f"{'Services':>9}  {'kube-proxy udp10k':>18} {'switch udp10k':>14} {'ratio':>6}   "
          f"{'kube-proxy conn/s':>17} {'switch conn/s':>13} {'ratio':>6}   switch verdicts (both tests)")
    for n in sorted({r["services"] for r in rows}):
        k, s = by[("kube-proxy", n, "udp10k")], by[("switch", n, "udp10k")]
        kc, sc = by[("kube-proxy", n, "conn/s")], by[("switch", n, "conn/s")]
        print(f"{n:>9}  {k['rx_pps'] / 1e6:>14.2f} Mpps {s['rx_pps'] / 1e6:>9.2f} Mpps "
              f"{s['rx_pps'] / max(1, k['rx_pps']):>6.2f}   {kc['cps']:>17,.0f} {sc['cps']:>13,.0f} "
              f"{sc['cps'] / max(1, kc['cps']):>6.2f}   {verdict_mix(s.get('verdicts'))}")
    path = args.json or os.path.join(ROOT, "bench", "results", time.strftime("kubeproxy-%Y%m%d-%H%M%S.json"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"seconds": args.seconds, "reps": args.reps, "rows": rows}, f, indent=1)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
