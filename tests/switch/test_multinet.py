"""Secondary networks in real namespaces (issue 9): one namespace per pod with an
interface per attachment (net1, ...), the same address in two IP address domains as
two pods, per-network probes equal to the model, networks that never meet, and
captures named ns/pod/ifname that replay agrees on."""
import json
import os
import socket
import subprocess
import sys

import pytest
from pyroute2 import IPRoute

from pipeline.load.build import load_cluster
from pipeline.switch.probe import probe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MULTINET = os.path.join(ROOT, "examples", "multinet")


def multinet_text() -> str:
    return "\n---\n".join(open(os.path.join(MULTINET, f)).read() for f in sorted(os.listdir(MULTINET)))


@pytest.mark.parametrize("network,mode", [("storage-net", "sockets"), ("sensors-net", "packets"),
                                          (None, "sockets")])
def test_per_network_probes_equal_the_model(network, mode):
    cluster, _ = load_cluster([MULTINET])
    report = probe(cluster, ports=[5432, 8080], protocols=["TCP", "UDP", "SCTP"], mode=mode, network=network)
    pods = [p.key for p in report.pods]
    on = {"storage-net": ["lab/app", "lab/backup", "lab/db"], "sensors-net": ["lab/app", "lab/camera", "lab/collector"],
          None: ["lab/app", "lab/backup", "lab/camera", "lab/collector", "lab/db"]}[network]
    assert pods == on
    assert report.differ == [], [(p.src.key, p.dst.key, p.protocol, p.port, p.detail) for p in report.differ]
    verdicts = {p.allowed for p in report.probes}
    assert verdicts == {True, False}               # the policies deny some and allow others


def _serve_name(r, key: str, ifname: str, port: int) -> socket.socket:
    pp = next(pp for pp in r.topo.interfaces_of(key) if pp.ifname == ifname)
    s = r.sock(key, socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((str(pp.ips[0]), port))
    s.listen(4)
    s.settimeout(2)
    return s


def test_the_same_address_in_two_domains_is_two_pods_and_networks_never_meet(switch_run):
    r = switch_run(multinet_text())
    app = {pp.ifname: pp for pp in r.topo.interfaces_of("lab/app")}
    assert sorted(app) == ["eth0", "net1", "net2"] and len({pp.netns for pp in app.values()}) == 1
    # the interfaces are named, addressed and routed as the annotation and the NAD say
    with IPRoute(netns=app["net2"].netns) as ipr:
        idx = ipr.link_lookup(ifname="net2")[0]
        assert [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=socket.AF_INET)] == \
            ["198.18.100.30"]
        # source-based routing: what its net2 address sends looks up a table routing by net2
        rule = next(r for r in ipr.get_rules(family=socket.AF_INET) if r.get_attr("FRA_SRC") == "198.18.100.30")
        table = rule.get_attr("FRA_TABLE")
        assert [(rt.get_attr("RTA_DST"), rt["dst_len"]) for rt in ipr.get_routes(table=table)
                if rt.get_attr("RTA_OIF") == idx] == [("198.18.100.0", 24)]
    servers = {"db": _serve_name(r, "lab/db", "net1", 5432), "camera": _serve_name(r, "lab/camera", "net1", 5432)}
    seen = {}
    for src_ip in ("198.18.100.21", "198.18.100.30"):            # app on storage, app on sensors
        c = r.sock("lab/app", socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(2)
        c.bind((src_ip, 0))
        c.connect(("198.18.100.10", 5432))
        for name, s in servers.items():
            try:
                conn, peer = s.accept()
            except socket.timeout:
                continue
            seen[src_ip] = (name, peer[0])
            conn.close()
            break
        c.close()
    assert seen == {"198.18.100.21": ("db", "198.18.100.21"), "198.18.100.30": ("camera", "198.18.100.30")}
    # a frame from app's storage port to a sensors-only address never crosses: there
    # is no such pod in dc-east, and a secondary network has no way out
    before = r.counter("network_unreachable")
    c = r.sock("lab/app", socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(0.5)
    c.bind(("198.18.100.21", 0))
    with pytest.raises(OSError):
        c.connect(("198.18.100.20", 7000))                       # collector's, on sensors only
    c.close()
    assert r.counter("network_unreachable") > before
    for s in servers.values():
        s.close()


def test_replay_agrees_on_a_multi_network_capture_named_ns_pod_ifname(tmp_path):
    """netsem probe --pcap records the run, interfaces named ns/pod/ifname; replay
    --check takes them back to the same ports and agrees with the oracle."""
    cluster, _ = load_cluster([MULTINET])
    probe(cluster, ports=[5432], protocols=["TCP"], network="storage-net", pcap=str(tmp_path))
    from pipeline.dataplane.pcap import read_capture
    names = {p.interface for p in read_capture(str(tmp_path / "in.pcapng"))}
    assert {"lab/app/net1", "lab/db/net1", "lab/backup/net1"} <= names
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "-f", MULTINET, "--pcap",
                          str(tmp_path / "in.pcapng"), "--check", "-o", "jsonl"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert rows and all(x["netsem"]["oracle_agrees"] for x in rows)
    verdicts = {x["verdict"] for x in rows}
    assert {"FORWARDED", "DROPPED"} <= verdicts                  # backup's egress is denied on storage
