"""`--pcap`: every frame that enters or leaves the switch, per port, in pcapng."""
import socket

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

from pipeline.switch.capture import DIR_INBOUND, DIR_OUTBOUND, PcapngWriter
from tests.switch.test_switch import DENY_ALL_B


def test_writer_roundtrip(tmp_path):
    path = str(tmp_path / "x.pcapng")
    frame = bytes(range(60))
    with PcapngWriter(path) as w:
        a = w.add_interface("ns/a")
        b = w.add_interface("uplink")
        w.write(a, 1_700_000_000_123_456_789, frame, direction=DIR_INBOUND)
        w.write(b, 1_700_000_001_000_000_000, frame[:42], wire_len=60, direction=DIR_OUTBOUND)
    pk = rdpcap(path)
    assert [p.sniffed_on for p in pk] == ["ns/a", "uplink"]
    assert [p.direction for p in pk] == [DIR_INBOUND, DIR_OUTBOUND]
    assert bytes(pk[0]) == frame and len(bytes(pk[1])) == 42 and pk[1].wirelen == 60
    assert pk[0].time == pytest.approx(1_700_000_000.123456789, abs=1e-6)


def test_pcap_records_in_and_out(switch_run, tmp_path):
    r = switch_run(DENY_ALL_B, pcap=str(tmp_path))
    # UDP a -> b is denied (b is isolated for ingress); b -> a is allowed and answered.
    srv = r.sock("t/a", socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((r.ip("t/a"), 5353))
    srv.settimeout(2)
    cli = r.sock("t/b", socket.AF_INET, socket.SOCK_DGRAM)
    cli.settimeout(2)
    cli.sendto(b"ping", (r.ip("t/a"), 5353))
    data, addr = srv.recvfrom(100)
    srv.sendto(b"pong", addr)
    assert cli.recv(100) == b"pong"
    denied = r.sock("t/a", socket.AF_INET, socket.SOCK_DGRAM)
    denied.sendto(b"nope", (r.ip("t/b"), 7000))
    r.sync()
    dropped = r.sw.stats().switch["capture_dropped"]
    r.close()
    pk = list(rdpcap(str(tmp_path / "in.pcapng"))) + list(rdpcap(str(tmp_path / "out.pcapng")))
    assert {p.sniffed_on for p in pk} <= {"t/a", "t/b", "uplink"}    # the uplink: its own ND, MLD
    assert {p.direction for p in rdpcap(str(tmp_path / "in.pcapng"))} == {DIR_INBOUND}
    assert {p.direction for p in rdpcap(str(tmp_path / "out.pcapng"))} == {DIR_OUTBOUND}

    def seen(iface, direction, payload):
        return [p for p in pk if p.sniffed_on == iface and p.direction == direction
                and UDP in p and bytes(p[UDP].payload) == payload]
    # the allowed datagram entered on b and left on a; its reply the other way
    assert seen("t/b", DIR_INBOUND, b"ping") and seen("t/a", DIR_OUTBOUND, b"ping")
    assert seen("t/a", DIR_INBOUND, b"pong") and seen("t/b", DIR_OUTBOUND, b"pong")
    # the denied one entered and never left
    assert seen("t/a", DIR_INBOUND, b"nope") and not seen("t/b", DIR_OUTBOUND, b"nope")
    # TTL decremented on the way out
    assert seen("t/a", DIR_OUTBOUND, b"ping")[0].ttl == seen("t/b", DIR_INBOUND, b"ping")[0].ttl - 1
    # proxy ARP answers are recorded as leaving the switch
    assert any(ARP in p and p[ARP].op == 2 and p.direction == DIR_OUTBOUND for p in pk)
    assert dropped == 0


def test_recording_rechecks_offline(switch_run, tmp_path):
    """in.pcapng replays through `netsem replay --check` (the oracle agrees), and the
    replay forwards on the same ports as the switch sent (out.pcapng minus ARP/ND)."""
    import collections
    import subprocess
    import sys
    import textwrap
    from tests.switch.test_switch import A_TO_B_ONLY
    r = switch_run(A_TO_B_ONLY, pcap=str(tmp_path))
    ls = r.listen_tcp("t/b", 8080)
    c = r.connect_tcp("t/a", "t/b", 8080)
    a, _ = ls.accept()
    c.sendall(b"x" * 3000)
    got = b""
    while len(got) < 3000:
        got += a.recv(65536)
    assert r.connect_tcp("t/b", "t/a", 8080, timeout=0.3) is None      # denied
    for s in (a, c, ls):
        s.close()
    r.sync()
    r.close()
    manifest = tmp_path / "m.yaml"
    manifest.write_text(textwrap.dedent(A_TO_B_ONLY))
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "-f", str(manifest), "--pcap",
                          str(tmp_path / "in.pcapng"), "--check", "-q", "--write", str(tmp_path / "re.pcapng")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "oracle agrees" in out.stdout + out.stderr
    replayed = rdpcap(str(tmp_path / "re.pcapng"))
    from scapy.layers.inet6 import ICMPv6ND_NA
    sent = [p for p in rdpcap(str(tmp_path / "out.pcapng")) if ARP not in p and ICMPv6ND_NA not in p]
    assert collections.Counter(p.sniffed_on for p in replayed) == collections.Counter(p.sniffed_on for p in sent)
    assert any(TCP in p and p[TCP].flags & 0x04 == 0 for p in sent)
