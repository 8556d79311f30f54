"""The service mapper's tables through the C API: what ns_tables_add_frontend refuses
(an address that is not a Service VIP, a second frontend for one VIP/protocol/port, a
slot naming no backend, no slot at all, full tables), and a frontend's backends taken
by slot ns_flow_hash(tuple) % m, with the zone and the protocol part of the key."""
from scapy.layers.inet import IP, TCP, UDP

from conftest import E, Pipe, a16, ffi, lib

POD, SVC = lib.NS_EP_POD, lib.NS_EP_SERVICE
VIP, B1, B2, CLIENT = "10.9.1.1", "10.9.0.2", "10.9.0.3", "10.9.0.4"


def tables(limits=None):
    t = ffi.gc(lib.ns_tables_new(ffi.new("struct ns_table_limits *", limits or {})), lib.ns_tables_free)
    for zone, addr, kind, port, ident, owner in ((0, B1, POD, 2, 20, 2), (0, B2, POD, 3, 30, 3),
                                                  (0, CLIENT, POD, 4, 40, 4), (0, VIP, SVC, 0, 0, 1),
                                                  (1, VIP, SVC, 0, 0, 1)):
        assert lib.ns_tables_add_endpoint(t, zone, a16(addr), kind, port, ident, 1, owner) == 0
    return t


def add(t, zone=0, addr=VIP, proto=6, port=80, backends=((B1, 8080), (B2, 8081)), slots=(0, 1, 1, 0, 1), flags=0):
    addrs = ffi.new("uint8_t[]", b"".join(a16(a) for a, _ in backends) or b"\0")
    ports = ffi.new("uint16_t[]", [p for _, p in backends] or [0])
    s = ffi.new("uint16_t[]", list(slots) or [0])
    return lib.ns_tables_add_frontend(t, zone, a16(addr), proto, port, flags, len(backends), addrs, ports,
                                      len(slots), s)


def test_what_a_frontend_table_refuses():
    t = tables()
    assert add(t, addr=B1) == -1                        # a pod's address
    assert add(t, addr="10.9.9.9") == -1                # nothing there
    assert add(t, slots=(0, 2)) == -1                   # slot names no backend
    assert add(t, slots=()) == -1                       # m = 0
    assert add(t, flags=2) == -1                        # an unknown flag
    assert add(t) == 0
    assert add(t) == -1                                 # the same frontend twice
    assert add(t, proto=17) == 0 and add(t, port=81) == 0 and add(t, zone=1) == 0
    assert add(t, port=82, backends=(), slots=()) == -1         # m = 0 even without backends
    assert add(t, port=82, backends=(), slots=(0,)) == 0        # no backend: refused later
    full = tables({"frontends": 1})
    assert add(full) == 0 and add(full, port=81) == -1
    few = tables({"backends": 3})
    assert add(few) == 0 and add(few, port=81) == -1
    slots = tables({"maglev_slots": 6})
    assert add(slots) == 0 and add(slots, port=81) == -1
    assert lib.ns_tables_seal(t) == 0 and add(t, port=99) == -1


def test_backends_by_slot_of_the_flow_hash():
    t = tables()
    assert add(t) == 0 and add(t, port=82, backends=(), slots=(0,)) == 0
    assert lib.ns_tables_seal(t) == 0
    p = Pipe(t)
    seen = set()
    for sport in range(1000, 1040):
        r = p.one(E / IP(src=CLIENT, dst=VIP) / TCP(sport=sport, dport=80, flags="S"), 4)
        h = lib.ns_flow_hash(a16(CLIENT), a16(VIP), sport, 80, 6)
        want = ((B1, 8080), (B2, 8081))[(0, 1, 1, 0, 1)[h % 5]]
        assert (r.reason, bytes(r.dst), r.dport) == ("new", a16(want[0]), want[1]), sport
        seen.add(want)
    assert len(seen) == 2
    assert p.one(E / IP(src=CLIENT, dst=VIP) / UDP(sport=5, dport=81), 4).reason == "service_port_unknown"
    assert p.one(E / IP(src=CLIENT, dst=VIP) / TCP(sport=5, dport=82, flags="S"), 4).reason == "service_no_backend"


def test_client_ip_affinity_hashes_the_client_not_its_ports():
    t = tables()
    slots = tuple(i % 2 for i in range(251))
    assert add(t, slots=slots, flags=lib.NS_FE_CLIENT_IP) == 0 and add(t, port=81, slots=slots) == 0
    assert lib.ns_tables_seal(t) == 0
    p = Pipe(t)
    sticky = {bytes(p.one(E / IP(src=CLIENT, dst=VIP) / TCP(sport=s, dport=80, flags="S"), 4).dst)
              for s in range(2000, 2040)}
    # (other source ports: the same ones to the same backend port would clash with the
    # first connections' replies, and be dropped conntrack_clash)
    spread = {bytes(p.one(E / IP(src=CLIENT, dst=VIP) / TCP(sport=s, dport=81, flags="S"), 4).dst)
              for s in range(3000, 3040)}
    h = lib.ns_flow_hash(a16(CLIENT), a16(VIP), 0, 0, 6)
    assert sticky == {a16((B1, B2)[slots[h % 251]])} and spread == {a16(B1), a16(B2)}
