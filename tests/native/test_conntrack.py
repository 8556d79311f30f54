"""Connection tracker: state machines, directions, timeouts, capacity."""
from scapy.layers.inet import ICMP, IP, TCP, UDP, UDPerror, IPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.sctp import (SCTP, SCTPChunkAbort, SCTPChunkData, SCTPChunkInit,
                               SCTPChunkInitAck, SCTPChunkShutdown)

from conftest import A, A6, B, B6, ENDPOINTS, SEC, X, Pipe, ffi, lib, make_tables

from conftest import E  # noqa: E402


def tcp(src, dst, sport, dport, flags):
    return E / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags)


def ab(flags):
    return (tcp(A, B, 1000, 80, flags), 1)


def ba(flags):
    return (tcp(B, A, 80, 1000, flags), 2)


def st(p, now=0):
    return p.state(A, B, 1000, 80, 6, now)


def test_tcp_handshake_and_close(pipe):
    r = pipe.run([ab("S")], now=0)[0]
    assert (r.reason, r.ct, r.out_port) == ("new", "new", 2)
    assert st(pipe) == "SYN_SENT" and pipe.state(B, A, 80, 1000, 6) == "SYN_SENT"
    r = pipe.run([ba("SA")], now=1)[0]
    assert (r.reason, r.ct, r.out_port) == ("reply", "reply", 1)
    assert st(pipe) == "SYN_RECV"
    assert pipe.run([ab("A")], now=2)[0].reason == "established"
    assert st(pipe) == "ESTABLISHED"
    assert pipe.run([ba("PA")], now=3)[0].reason == "reply"
    assert st(pipe) == "ESTABLISHED"
    assert pipe.run([ab("FA")], now=4)[0].reason == "established"
    assert st(pipe) == "FIN_WAIT"
    # another FIN from the same side keeps FIN_WAIT
    pipe.run([ab("FA")], now=5)
    assert st(pipe) == "FIN_WAIT"
    assert pipe.run([ba("FA")], now=6)[0].reason == "reply"
    assert st(pipe) == "LAST_ACK"
    # the responder's retransmitted FIN still passes; its ACK alone changes nothing
    assert pipe.run([ba("FA")], now=6)[0].reason == "reply"
    assert st(pipe) == "LAST_ACK"
    # the first closer acknowledges the second FIN: the connection is over
    assert pipe.run([ab("A")], now=7)[0].reason == "established"
    assert st(pipe) == "TIME_WAIT"
    # in TIME_WAIT only an opening packet gets through
    assert pipe.run([ab("A")], now=7)[0].reason == "connection_closed"
    assert pipe.run([ba("PA")], now=7)[0].reason == "connection_closed"
    assert st(pipe) == "TIME_WAIT"
    # TIME_WAIT lasts 30 s from the ACK that entered it (dropped packets refresh nothing)
    assert st(pipe, now=7 + 30 * SEC - 1) == "TIME_WAIT"
    assert st(pipe, now=7 + 30 * SEC) is None
    # a SYN reopens a TIME_WAIT connection as new
    r = pipe.run([ab("S")], now=8)[0]
    assert (r.reason, r.ct) == ("new", "new")
    assert st(pipe) == "SYN_SENT"
    assert pipe.connections == 1


def test_tcp_fin_from_responder(pipe):
    pipe.run([ab("S"), ba("SA"), ab("A"), ba("F"), ba("F")])
    assert st(pipe) == "FIN_WAIT"
    pipe.run([ab("FA")])
    assert st(pipe) == "LAST_ACK"
    pipe.run([ab("A")])            # not from the first closer: no change
    assert st(pipe) == "LAST_ACK"
    pipe.run([ba("A")])
    assert st(pipe) == "TIME_WAIT"


def test_tcp_out_of_order_keeps_state(pipe):
    pipe.run([ab("S")])
    assert pipe.run([ab("A")])[0].reason == "established"   # ACK in SYN_SENT: no change
    assert st(pipe) == "SYN_SENT"
    pipe.run([ab("SA")])   # SYN+ACK from the original direction: no change
    assert st(pipe) == "SYN_SENT"
    pipe.run([ba("SA")])
    pipe.run([ba("A")])     # ACK from the reply direction in SYN_RECV: no change
    assert st(pipe) == "SYN_RECV"
    pipe.run([ab("SA")])    # has SYN: no change
    assert st(pipe) == "SYN_RECV"


def test_tcp_rst(pipe):
    pipe.run([ab("S"), ba("SA"), ab("A")], now=0)
    r = pipe.run([ba("R")], now=SEC)[0]
    assert r.reason == "reply"
    assert st(pipe, SEC) == "CLOSED"
    assert st(pipe, 11 * SEC - 1) == "CLOSED"
    assert st(pipe, 11 * SEC) is None
    # a reset connection stays dead: nothing but an opening packet gets through
    assert pipe.run([ab("A")], now=2 * SEC)[0].reason == "connection_closed"
    assert pipe.run([ba("PA")], now=2 * SEC)[0].reason == "connection_closed"
    assert pipe.run([ab("R")], now=2 * SEC)[0].reason == "connection_closed"
    assert st(pipe, 2 * SEC) == "CLOSED"
    # SYN reopens
    assert pipe.run([ab("S")], now=3 * SEC)[0].reason == "new"
    assert st(pipe, 3 * SEC) == "SYN_SENT"
    # RST in SYN_SENT also closes
    pipe.run([ab("R")], now=4 * SEC)
    assert st(pipe, 4 * SEC) == "CLOSED"


def test_tcp_no_connection(pipe):
    for flags in ("A", "SA", "SR", "F", "R", ""):
        assert pipe.run([ab(flags)])[0].reason == "no_connection", flags
    # SYN+FIN can open (SYN without ACK/RST)
    assert pipe.run([ab("SF")])[0].reason == "new"


def test_tcp_timeouts(pipe):
    pipe.run([ab("S")], now=0)
    assert st(pipe, 30 * SEC - 1) == "SYN_SENT"
    assert st(pipe, 30 * SEC) is None
    assert pipe.run([ba("SA")], now=30 * SEC)[0].reason == "no_connection"
    assert pipe.connections == 0   # the expired entry was freed on lookup
    pipe.run([ab("S"), ba("SA"), ab("A")], now=100 * SEC)
    assert st(pipe, 100 * SEC + 86400 * SEC - 1) == "ESTABLISHED"
    assert st(pipe, 100 * SEC + 86400 * SEC) is None
    pipe.run([ab("F")], now=200 * SEC)
    assert st(pipe, 320 * SEC - 1) == "FIN_WAIT"
    assert st(pipe, 320 * SEC) is None


def test_udp(pipe):
    f = (E / IP(src=A, dst=B) / UDP(sport=5000, dport=53), 1)
    g = (E / IP(src=B, dst=A) / UDP(sport=53, dport=5000), 2)
    assert pipe.run([f], now=0)[0].reason == "new"
    assert pipe.state(A, B, 5000, 53, 17) == "UDP_FIRST"
    assert pipe.run([f], now=SEC)[0].reason == "established"
    assert pipe.state(A, B, 5000, 53, 17, SEC + 30 * SEC - 1) == "UDP_FIRST"
    assert pipe.state(A, B, 5000, 53, 17, SEC + 30 * SEC) is None
    assert pipe.run([g], now=2 * SEC)[0].reason == "reply"
    assert pipe.state(A, B, 5000, 53, 17, 2 * SEC) == "UDP_REPLIED"
    assert pipe.run([f], now=3 * SEC)[0].reason == "established"
    assert pipe.state(A, B, 5000, 53, 17, 3 * SEC + 180 * SEC - 1) == "UDP_REPLIED"
    assert pipe.state(A, B, 5000, 53, 17, 3 * SEC + 180 * SEC) is None
    # after expiry the reply direction is a new connection of its own
    r = pipe.run([g], now=3 * SEC + 180 * SEC)[0]
    assert (r.reason, r.out_port) == ("new", 1)


def test_sctp(pipe):
    def a2b(chunk):
        return (E / IP(src=A, dst=B) / SCTP(sport=7, dport=9) / chunk, 1)

    def b2a(chunk):
        return (E / IP(src=B, dst=A) / SCTP(sport=9, dport=7) / chunk, 2)

    assert pipe.run([a2b(SCTPChunkData(data=b"x"))])[0].reason == "no_connection"
    assert pipe.run([a2b(SCTPChunkInit())])[0].reason == "new"
    assert pipe.state(A, B, 7, 9, 132) == "SCTP_INIT"
    pipe.run([a2b(SCTPChunkInitAck())])   # wrong direction: no change
    assert pipe.state(A, B, 7, 9, 132) == "SCTP_INIT"
    assert pipe.run([b2a(SCTPChunkInitAck())])[0].reason == "reply"
    assert pipe.state(A, B, 7, 9, 132) == "SCTP_ESTABLISHED"
    assert pipe.run([a2b(SCTPChunkData(data=b"x"))])[0].reason == "established"
    pipe.run([b2a(SCTPChunkShutdown())], now=SEC)
    assert pipe.state(A, B, 7, 9, 132, SEC) == "SCTP_CLOSED"
    assert pipe.state(A, B, 7, 9, 132, 11 * SEC) is None
    assert pipe.run([a2b(SCTPChunkInit())], now=2 * SEC)[0].reason == "new"
    pipe.run([a2b(SCTPChunkAbort())], now=2 * SEC)
    assert pipe.state(A, B, 7, 9, 132, 2 * SEC) == "SCTP_CLOSED"


def test_icmp_echo_and_errors(pipe):
    req = (E / IP(src=A, dst=X) / ICMP(type=8, id=42), 1)
    rep = (E / IP(src=X, dst=A) / ICMP(type=0, id=42), 0)
    assert pipe.run([rep])[0].reason == "no_connection"
    r = pipe.run([req], now=0)[0]
    assert (r.reason, r.out_port, r.sport, r.dport) == ("new", 0, 42, 42)
    assert pipe.state(A, X, 42, 42, 1) == "ICMP"
    r = pipe.run([rep], now=SEC)[0]
    assert (r.reason, r.ct, r.out_port) == ("reply", "reply", 1)
    assert pipe.run([req], now=2 * SEC)[0].reason == "established"
    assert pipe.state(A, X, 42, 42, 1, 32 * SEC) is None
    # ICMP errors about a UDP flow
    pipe.run([(E / IP(src=A, dst=X) / UDP(sport=3333, dport=53), 1)], now=0)
    err = E / IP(src=X, dst=A) / ICMP(type=3, code=3) / IPerror(src=A, dst=X) / UDPerror(sport=3333, dport=53)
    r = pipe.run([(err, 0)], now=SEC)[0]
    assert (r.reason, r.ct, r.out_port, r.sport, r.dport, r.proto) == ("related", "related", 1, 0, 0, 1)
    # the error does not refresh the entry
    assert pipe.state(A, X, 3333, 53, 17, 30 * SEC) is None
    err2 = E / IP(src=X, dst=A) / ICMP(type=11) / IPerror(src=A, dst=X) / UDPerror(sport=3333, dport=54)
    assert pipe.run([(err2, 0)], now=SEC)[0].reason == "icmp_error_no_connection"
    # an error quoting the echo request
    pipe.run([req], now=5 * SEC)
    err3 = E / IP(src=X, dst=A) / ICMP(type=11) / IPerror(src=A, dst=X, proto=1) / bytes(ICMP(type=8, id=42))[:8]
    assert pipe.run([(err3, 0)], now=6 * SEC)[0].reason == "related"
    assert pipe.run([(E / IP(src=A, dst=X) / ICMP(type=13), 1)])[0].reason == "unsupported_icmp"


def test_icmpv6(pipe):
    req = (E / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=5), 1)
    rep = (E / IPv6(src=B6, dst=A6) / ICMPv6EchoReply(id=5), 2)
    assert pipe.run([req])[0].reason == "new"
    assert pipe.run([rep])[0].reason == "reply"
    assert pipe.state(A6, B6, 5, 5, 58) == "ICMP"
    pipe.run([(E / IPv6(src=A6, dst=B6) / UDP(sport=1, dport=2), 1)])
    err = E / IPv6(src=B6, dst=A6) / ICMPv6DestUnreach() / IPv6(src=A6, dst=B6) / UDP(sport=1, dport=2)
    assert pipe.run([(err, 2)])[0].reason == "related"
    err = E / IPv6(src=B6, dst=A6) / ICMPv6DestUnreach() / IPv6(src=A6, dst=B6) / UDP(sport=1, dport=3)
    assert pipe.run([(err, 2)])[0].reason == "icmp_error_no_connection"
    assert pipe.run([(E / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(type=139), 1)])[0].reason == "unsupported_icmp"
    # MLD (a listener report to ff02::16, a query) is link-local control, like ND: local
    for t, dst in ((143, "ff02::16"), (130, "ff02::1"), (131, "ff02::2")):
        assert pipe.run([(E / IPv6(src=A6, dst=dst) / ICMPv6EchoRequest(type=t), 1)])[0].reason == \
            "neighbor_discovery", t


def test_self_connection():
    p = Pipe(make_tables(endpoints=ENDPOINTS))
    f = (E / IP(src=A, dst=A) / ICMP(type=8, id=1), 1)
    r = p.run([f])[0]
    assert (r.reason, r.out_port) == ("new", 1)
    # an echo reply to oneself is the reply, a second request the original direction
    assert p.run([(E / IP(src=A, dst=A) / ICMP(type=0, id=1), 1)])[0].reason == "reply"
    assert p.run([f])[0].reason == "established"
    # a symmetric tuple (its own reversal) is always the original direction
    u = (E / IP(src=A, dst=A) / UDP(sport=7, dport=7), 1)
    assert [r.reason for r in p.run([u, u])] == ["new", "established"]


def test_capacity_full():
    p = Pipe(make_tables(endpoints=ENDPOINTS), connections=4, reclaim=1)
    frames = [(E / IP(src=A, dst=B) / UDP(sport=s, dport=53), 1) for s in range(1, 6)]
    res = p.run(frames, now=0)
    assert [r.reason for r in res] == ["new"] * 4 + ["conntrack_full"]
    assert p.connections == 4
    # existing connections keep working, in both directions
    assert p.run(frames[:1], now=SEC)[0].reason == "established"
    back = (E / IP(src=B, dst=A) / UDP(sport=53, dport=2), 2)
    assert p.run([back], now=SEC)[0].reason == "reply"
    assert p.counter("conntrack_full") == 1
    # once entries expire, a new connection reclaims one
    res = p.run([frames[4]], now=31 * SEC)
    assert res[0].reason == "new"
    assert p.connections <= 4


def test_index_buckets_overflow():
    """64 connections: 128 index references in 16 buckets of 10 (the most the index
    is ever loaded), so buckets overflow into their neighbours; every connection is
    found both ways, through expiry and reuse (the overflow counts taken back)."""
    p = Pipe(make_tables(endpoints=ENDPOINTS), connections=64, reclaim=1)

    def frames(base):
        out = [(E / IP(src=A, dst=B) / UDP(sport=base + s, dport=53), 1) for s in range(64)]
        back = [(E / IP(src=B, dst=A) / UDP(sport=53, dport=base + s), 2) for s in range(64)]
        return out, back

    for rnd, base in enumerate((1000, 5000, 9000)):
        now = rnd * 200 * SEC   # the previous round's connections expired (180 s)
        out, back = frames(base)
        assert [r.reason for r in p.run(out, now=now)] == ["new"] * 64
        assert p.connections == 64
        assert [r.reason for r in p.run(out, now=now + 1)] == ["established"] * 64
        assert [r.reason for r in p.run(back, now=now + 2)] == ["reply"] * 64
        assert p.run([(E / IP(src=A, dst=B) / UDP(sport=base + 64, dport=53), 1)], now=now + 3)[0].reason \
            == "conntrack_full"


def test_reclaim_per_batch():
    p = Pipe(make_tables(endpoints=ENDPOINTS), connections=64, reclaim=3)
    p.run([(E / IP(src=A, dst=B) / UDP(sport=s, dport=53), 1) for s in range(1, 11)], now=0)
    assert p.connections == 10
    p.run([], now=100 * SEC)
    assert p.connections == 7
    p.run([], now=100 * SEC)
    assert p.connections == 4


def test_entry_size_and_memory():
    assert lib.ns_ct_entry_size() <= 128
    p = lib.ns_pipeline_new(ffi.NULL)   # defaults: 1,048,576 connections
    try:
        t = make_tables(limits={"endpoints": 100_000}, seal=False)
        assert lib.ns_pipeline_memory(p) >= 1_048_576 * lib.ns_ct_entry_size()
        # the index: 16 bytes a connection (64-byte buckets of 10 references, 2 each)
        assert lib.ns_pipeline_memory(p) <= 1_048_576 * (lib.ns_ct_entry_size() + 16) + 8 * 2**20
        total = lib.ns_pipeline_memory(p) + lib.ns_tables_memory(t)
        assert total <= 256 * 1024 * 1024, total
    finally:
        lib.ns_pipeline_free(p)
