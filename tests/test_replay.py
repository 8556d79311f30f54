"""netsem replay on real capture files: the bundled example captures, pcapng
interface names as arrival ports, --check, --write, and bad input."""

import json
import os
import subprocess
import sys

import pytest
from scapy.all import IP, TCP, Ether, raw, rdpcap

from pipeline.cli import main
from pipeline.dataplane.pcap import PcapngWriter, read_capture, write_pcap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOP = os.path.join(ROOT, "examples", "shop")
CAPTURES = os.path.join(ROOT, "examples", "captures")


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    """Regenerates the example captures with the bundled script, as a user would."""
    out = tmp_path_factory.mktemp("captures")
    script = os.path.join(CAPTURES, "make_captures.py")
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, script, str(out)], check=True, env=env, capture_output=True)
    # What the script writes now is what the repository ships.
    for name in ("shop.pcapng", "shop.pcap"):
        assert (out / name).read_bytes() == open(os.path.join(CAPTURES, name), "rb").read()
    return str(out)


def run(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_check_agrees_on_the_example_captures(captures, capsys):
    for name in ("shop.pcapng", "shop.pcap"):
        rc, out, err = run(["replay", "-f", SHOP, "--pcap", os.path.join(captures, name), "--check",
                            "-o", "jsonl"], capsys)
        assert rc == 0, err
        lines = [json.loads(x) for x in out.splitlines()]
        assert len(lines) == 39 and all(x["netsem"]["oracle_agrees"] for x in lines)
        assert "oracle agrees on all 39" in err


def test_pcapng_interfaces_give_arrival_ports_and_verdicts(captures, capsys):
    rc, out, err = run(["replay", "-f", SHOP, "--pcap", os.path.join(captures, "shop.pcapng"), "-o", "jsonl"], capsys)
    rows = [json.loads(x) for x in out.splitlines()]
    first = rows[0]
    # Hubble's flow vocabulary, with netsem's own details under "netsem".
    assert first["verdict"] == "FORWARDED" and first["traffic_direction"] == "EGRESS"
    assert (first["source"]["namespace"], first["source"]["pod_name"]) == ("shop", "frontend-0")
    assert "k8s:app=frontend" in first["source"]["labels"]
    assert first["destination"]["pod_name"] == "backend-0"
    assert first["IP"] == {"source": "198.18.0.4", "destination": "198.18.0.3", "ipVersion": "IPv4"}
    assert first["l4"] == {"TCP": {"source_port": 40000, "destination_port": 8080}}
    assert first["ingress_allowed_by"] == [{"kind": "NetworkPolicy", "namespace": "shop",
                                            "name": "backend-allow-frontend", "rule": "ingress[0]"}]
    ns = first["netsem"]
    assert (ns["in_port"], ns["out_port"], ns["reason"], ns["event"]) == \
        ("shop/frontend-0", "shop/backend-0", "new", "new")
    by_reason = {}
    for r in rows:
        by_reason.setdefault(r["netsem"]["reason"], []).append(r)
    # Through shop/backend's ClusterIP: the record shows the packet as it leaves and
    # names the side the service mapper rewrote.
    to_vip, back, on = rows[32:35]
    assert to_vip["netsem"]["translated_destination"] == {"address": "198.18.0.3", "port": 8080}
    assert to_vip["IP"]["destination"] == "198.18.0.3" and to_vip["netsem"]["reason"] == "new"
    assert back["netsem"]["translated_source"] == {"address": "198.19.0.2", "port": 80}
    assert on["netsem"]["reason"] == "established" and "translated_destination" in on["netsem"]
    assert by_reason["service_port_unknown"][0]["drop_reason_desc"] == "SERVICE_BACKEND_NOT_FOUND"
    assert by_reason["spoofed_source"][0]["netsem"]["in_port"] == "shop/frontend-0"
    assert by_reason["spoofed_source"][0]["drop_reason_desc"] == "INVALID_SOURCE_IP"
    denied = by_reason["denied_egress"]
    assert {r["IP"]["destination"] for r in denied} >= {"198.19.200.200"}
    assert all(r["verdict"] == "DROPPED" and r["drop_reason_desc"] == "POLICY_DENIED" for r in denied)
    # The default deny names the policies that isolate the pod.
    ingress_denied = by_reason["denied_ingress"][0]
    assert ingress_denied["traffic_direction"] == "INGRESS" and ingress_denied["ingress_denied_by"]
    assert len(by_reason["fragment"]) == 2 and len(by_reason["fragment_unknown"]) == 2
    # Classic pcap: no interface names, so the spoofed packet is not caught.
    rc, out, err = run(["replay", "-f", SHOP, "--pcap", os.path.join(captures, "shop.pcap"), "-o", "jsonl"], capsys)
    assert "spoofed_source" not in out and "anti-spoofing was not applied" in err
    assert all(json.loads(x)["netsem"]["in_port"] is None for x in out.splitlines())


def test_write_keeps_forwarded_packets_per_output_port(captures, capsys, tmp_path):
    out_file = tmp_path / "fwd.pcapng"
    rc, out, err = run(["replay", "-f", SHOP, "--pcap", os.path.join(captures, "shop.pcapng"), "-q",
                        "--write", str(out_file)], capsys)
    assert rc == 0 and out == ""
    pkts = rdpcap(str(out_file))
    assert len(pkts) == 23
    assert {p.sniffed_on for p in pkts} == {"shop/backend-0", "shop/frontend-0", "data/db-0", "uplink"}
    # The ClusterIP connection leaves translated, checksums recomputed: to backend-0,
    # and its reply to frontend-0 from the VIP.
    to_backend, reply = [p for p in pkts if TCP in p and 48000 in (p[TCP].sport, p[TCP].dport)][:2]
    assert (to_backend.sniffed_on, to_backend[IP].dst, to_backend[TCP].dport) == ("shop/backend-0", "198.18.0.3", 8080)
    assert (reply.sniffed_on, reply[IP].src, reply[TCP].sport) == ("shop/frontend-0", "198.19.0.2", 80)
    for p in (to_backend, reply):
        fixed = p.__class__(bytes(p))
        del fixed[IP].chksum, fixed[TCP].chksum
        fixed = fixed.__class__(bytes(fixed))
        assert (p[IP].chksum, p[TCP].chksum) == (fixed[IP].chksum, fixed[TCP].chksum)
    # Our own reader agrees with scapy's.
    assert [c.interface for c in read_capture(str(out_file))] == [p.sniffed_on for p in pkts]


def test_check_exits_1_on_disagreement(captures, capsys, monkeypatch):
    from pipeline.dataplane.oracle import pipeline as oracle
    original = oracle.decide

    def wrong(*a):
        reason, e, i = original(*a)
        return (None, e, i) if reason == "denied_ingress" else (reason, e, i)
    monkeypatch.setattr(oracle, "decide", wrong)
    rc, out, err = run(["replay", "-f", SHOP, "--pcap", os.path.join(captures, "shop.pcapng"), "--check"], capsys)
    assert rc == 1
    assert "packet 12: the native pipeline and the oracle disagree" in err
    assert "native: drop denied_ingress" in err and "oracle: forward" in err


def test_unknown_interface_and_bad_files_exit_2(tmp_path, capsys):
    f = tmp_path / "x.pcapng"
    with PcapngWriter(str(f)) as w:
        w.write(w.add_interface("shop/nosuchpod"), 1, raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="198.18.0.4", dst="198.18.0.3") / TCP()))
    rc, out, err = run(["replay", "-f", SHOP, "--pcap", str(f)], capsys)
    assert rc == 2 and "'shop/nosuchpod' is neither 'uplink' nor a pod" in err
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    rc, out, err = run(["replay", "-f", SHOP, "--pcap", str(junk)], capsys)
    assert rc == 2 and "not a pcap or pcapng file" in err
    cut = tmp_path / "cut.pcap"
    write_pcap(str(cut), [(1, b"\x00" * 60)])
    cut.write_bytes(cut.read_bytes()[:-10])
    rc, out, err = run(["replay", "-f", SHOP, "--pcap", str(cut)], capsys)
    assert rc == 2 and "truncated" in err
