"""The frames `netsem probe` crafts (scapy): TCP SYNs, UDP datagrams and SCTP INITs
carrying the probe's tag, and the parsing of what comes back."""

from __future__ import annotations

import struct
from typing import Optional

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit

from ..dataplane import constants as K


def sctp_init(sport: int, dport: int, tag: int) -> bytes:
    """An SCTP INIT (the tag as its initiate tag), checksum included, for a raw socket."""
    return bytes(SCTP(sport=sport, dport=dport, tag=0) /
                 SCTPChunkInit(init_tag=tag, a_rwnd=65536, n_out_streams=1, n_in_streams=1, init_tsn=tag))


def craft(pod_mac: bytes, gw_mac: bytes, src_ip, dst_ip, protocol: str, sport: int, dport: int,
          tag: int) -> bytes:
    """A probe's first packet as an Ethernet frame from the pod to its gateway: a TCP
    SYN (sequence number = tag) or a UDP datagram (payload = tag)."""
    mac = lambda b: ":".join(f"{x:02x}" for x in b)     # noqa: E731
    l3 = (IP(src=str(src_ip), dst=str(dst_ip), ttl=64) if dst_ip.version == 4
          else IPv6(src=str(src_ip), dst=str(dst_ip), hlim=64))
    l4 = (TCP(sport=sport, dport=dport, flags="S", seq=tag, window=65535) if protocol == "TCP"
          else UDP(sport=sport, dport=dport) / struct.pack("!I", tag))
    return bytes(Ether(src=mac(pod_mac), dst=mac(gw_mac)) / l3 / l4)


def parse_reply(frame: bytes) -> Optional[tuple]:
    """-> (proto, src, dst, sport, dport, tcp_flags, payload) of an IPv4/IPv6 TCP/UDP
    frame, or None."""
    pkt = Ether(frame)
    ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    if ip is None:
        return None
    if TCP in pkt:
        t = pkt[TCP]
        return (K.TCP, ip.src, ip.dst, t.sport, t.dport, int(t.flags), b"")
    if UDP in pkt:
        u = pkt[UDP]
        return (K.UDP, ip.src, ip.dst, u.sport, u.dport, 0, bytes(u.payload))
    return None
