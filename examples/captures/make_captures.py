"""Writes example captures of the shop (examples/shop) with scapy:

  shop.pcapng  interfaces named ns/pod and uplink (arrival ports known)
  shop.pcap    the same packets as classic pcap (no interface names)

    python examples/captures/make_captures.py [OUTDIR]
    netsem replay -f examples/shop --pcap examples/captures/shop.pcapng --check

The traffic: an allowed frontend -> backend TCP connection (handshake, data, close),
backend -> database, a denied frontend -> database attempt, the backup job, HTTP from
outside, the backend calling a payment provider (allowed and excepted addresses), a
spoofed source, a non-SYN segment, ICMP echo and an ICMP error, fragments, a UDP
datagram, a connection through a Service's ClusterIP, and malformed frames."""

from __future__ import annotations

import os
import sys

from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw, fragment, raw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

from pipeline.load.build import load_cluster  # noqa: E402
from pipeline.dataplane.constants import PORT_UPLINK  # noqa: E402
from pipeline.dataplane.oracle import OraclePipeline  # noqa: E402
from pipeline.dataplane.pcap import PcapngWriter, write_pcap  # noqa: E402

GW = "02:00:00:00:00:01"


def main() -> int:
    cluster, _ = load_cluster([os.path.join(HERE, "..", "shop")])
    ip = {k: str(cluster.pod_address(k)) for k in cluster.pods}
    fe, fe1, be, db, bk = ("shop/frontend-0", "shop/frontend-1", "shop/backend-0", "data/db-0", "data/backup-0")
    packets: list[tuple[str, bytes]] = []     # (interface, frame)

    def send(iface, pkt):
        packets.append((iface, raw(Ether(src="02:00:00:00:00:aa", dst=GW) / pkt)))

    def tcp(a, b, sp, dp, flags, data=b""):
        return IP(src=a, dst=b) / TCP(sport=sp, dport=dp, flags=flags) / (Raw(data) if data else b"")

    # frontend -> backend:8080, allowed by shop/backend-allow-frontend, full life.
    send(fe, tcp(ip[fe], ip[be], 40000, 8080, "S"))
    send(be, tcp(ip[be], ip[fe], 8080, 40000, "SA"))
    send(fe, tcp(ip[fe], ip[be], 40000, 8080, "A"))
    send(fe, tcp(ip[fe], ip[be], 40000, 8080, "PA", b"GET /cart HTTP/1.1\r\n\r\n"))
    send(be, tcp(ip[be], ip[fe], 8080, 40000, "PA", b"HTTP/1.1 200 OK\r\n\r\n"))
    send(fe, tcp(ip[fe], ip[be], 40000, 8080, "FA"))
    send(be, tcp(ip[be], ip[fe], 8080, 40000, "FA"))
    send(fe, tcp(ip[fe], ip[be], 40000, 8080, "A"))
    # The reverse direction is a new connection, and backend's egress is isolated.
    send(be, tcp(ip[be], ip[fe], 41000, 80, "S"))
    # backend -> db:5432 allowed both ways; frontend -> db denied by data's policies.
    send(be, tcp(ip[be], ip[db], 42000, 5432, "S"))
    send(db, tcp(ip[db], ip[be], 5432, 42000, "SA"))
    send(fe1, tcp(ip[fe1], ip[db], 42001, 5432, "S"))
    # The backup job reaches the database (same namespace, named port).
    send(bk, tcp(ip[bk], ip[db], 43000, 5432, "S"))
    # HTTP from outside the cluster through the frontend's NodePort (node address
    # :30080, to the frontend the service mapper picks); its reply, reverse-translated.
    # Then straight to a pod's address: not routed from outside.
    node = str(cluster.snat_address(4))
    syn = Ether(src="02:00:00:00:00:aa", dst=GW) / tcp("198.19.7.7", node, 50000, 30080, "S")
    picked = OraclePipeline(cluster).process(raw(syn), PORT_UPLINK, 1).dst
    by_ip = {v: k for k, v in ip.items()}
    send("uplink", tcp("198.19.7.7", node, 50000, 30080, "S"))
    send(by_ip[picked], tcp(picked, "198.19.7.7", 80, 50000, "SA"))
    send("uplink", tcp("198.19.7.7", ip[be], 50001, 8080, "S"))
    # backend -> payment provider: 198.19.200.0/24 allowed, except 198.19.200.128/25.
    send(be, tcp(ip[be], "198.19.200.10", 44000, 443, "S"))
    send(be, tcp(ip[be], "198.19.200.200", 44001, 443, "S"))
    # A frontend spoofing the backend's address; a segment with no connection.
    send(fe, tcp(ip[be], ip[db], 45000, 5432, "S"))
    send(fe, tcp(ip[fe], ip[be], 46000, 8080, "A"))
    # ICMP echo frontend -> frontend-1 (shop allows HTTP only: denied) and to outside,
    # masqueraded to the node's address, which the reply comes back to.
    send(fe, IP(src=ip[fe], dst=ip[fe1]) / ICMP(id=7))
    send(fe, IP(src=ip[fe], dst="198.19.9.9") / ICMP(id=8))
    send("uplink", IP(src="198.19.9.9", dst=node) / ICMP(type=0, id=8))
    # An ICMP error about the backend -> db connection, and one about nothing.
    quoted = raw(tcp(ip[be], ip[db], 42000, 5432, "S"))[:28]
    send(db, IP(src=ip[db], dst=ip[be]) / ICMP(type=3, code=4) / Raw(quoted))
    quoted = raw(tcp(ip[be], ip[db], 1, 5432, "S"))[:28]
    send(db, IP(src=ip[db], dst=ip[be]) / ICMP(type=3, code=4) / Raw(quoted))
    # A fragmented UDP datagram from outside straight to a frontend's address: not
    # routed, so its later fragments are unknown; and a fragmented allowed one,
    # backend -> db.
    for f in fragment(IP(src="198.19.7.7", dst=ip[fe], id=99) / UDP(sport=5, dport=80) / Raw(b"u" * 600), 256):
        send("uplink", f)
    for f in fragment(IP(src=ip[be], dst=ip[db], id=100, proto=6) /
                      TCP(sport=42000, dport=5432, flags="PA") / Raw(b"q" * 600), 256):
        send(be, f)
    # UDP from the backup job to the database: data allows TCP only.
    send(bk, IP(src=ip[bk], dst=ip[db]) / UDP(sport=5353, dport=5432) / Raw(b"x"))
    # Through shop/backend's ClusterIP (80 -> backend-0:8080): translated both ways;
    # a port the Service does not expose.
    vip = str(cluster.plane.lookup_service_to_address_mappings("shop/backend")[0][1])
    send(fe, tcp(ip[fe], vip, 48000, 80, "S"))
    send(be, tcp(ip[be], ip[fe], 8080, 48000, "SA"))
    send(fe, tcp(ip[fe], vip, 48000, 80, "A"))
    send(fe, tcp(ip[fe], vip, 48001, 443, "S"))
    # Malformed: truncated, bad checksum, unknown ethertype.
    good = raw(Ether(src="02:00:00:00:00:aa", dst=GW) / tcp(ip[fe], ip[be], 47000, 8080, "S"))
    packets.append((fe, good[:30]))
    bad = bytearray(good)
    bad[24] ^= 0xFF
    packets.append((fe, bytes(bad)))
    packets.append((fe, raw(Ether(src="02:00:00:00:00:aa", dst=GW, type=0x88CC) / Raw(b"\0" * 46))))

    outdir = sys.argv[1] if len(sys.argv) > 1 else HERE
    t0 = 1_700_000_000 * 1_000_000_000
    stamped = [(t0 + i * 2_000_000, iface, frame) for i, (iface, frame) in enumerate(packets)]
    with PcapngWriter(os.path.join(outdir, "shop.pcapng")) as w:
        for ts, iface, frame in stamped:
            w.write(w.add_interface(iface), ts, frame)
    write_pcap(os.path.join(outdir, "shop.pcap"), [(ts, frame) for ts, _, frame in stamped])
    print(f"wrote {len(stamped)} packets to {outdir}/shop.pcapng and shop.pcap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
