"""IP address domains in the C tables (004 step 3): the same address in two zones is
two endpoints; a port's zone decides where its packets' addresses are looked up; a
connection's key carries its zone; nodes and Services are endpoints of their kind."""
from scapy.layers.inet import IP, TCP, UDP

from conftest import E, Pipe, a16, ffi, lib

POD, SVC, NODE = lib.NS_EP_POD, lib.NS_EP_SERVICE, lib.NS_EP_NODE
SHARED = "10.9.0.1"            # in zone 0 on port 1, in zone 1 on port 3


def zoned_tables(police_node=False):
    t = lib.ns_tables_new(ffi.new("struct ns_table_limits *", {}))
    t = ffi.gc(t, lib.ns_tables_free)
    rows = [(0, SHARED, POD, 1, 10, 1, 1), (0, "10.9.0.2", POD, 2, 20, 1, 2),
            (1, SHARED, POD, 3, 30, 1, 3), (1, "10.9.0.2", POD, 4, 40, 1, 4),
            (0, "10.9.1.1", SVC, 0, 0, 0, 1), (0, "10.9.2.1", NODE, 0, 0, 1, 1),
            (0, "10.9.2.2", NODE, 0, 0, 2, 2)]
    for zone, addr, kind, port, ident, node, owner in rows:
        assert lib.ns_tables_add_endpoint(t, zone, a16(addr), kind, port, ident, node, owner) == 0
    assert lib.ns_tables_set_port_zone(t, 3, 1) == 0 and lib.ns_tables_set_port_zone(t, 4, 1) == 0
    # everything isolated for ingress, no rule: only the exemptions get through
    for ident in (10, 20, 30, 40):
        assert lib.ns_tables_set_isolation(t, ident, lib.NS_ISOLATED_INGRESS) == 0
    if police_node:
        assert lib.ns_tables_set_options(t, lib.NS_OPT_POLICE_NODE_TRAFFIC) == 0
    assert lib.ns_tables_set_options(t, 8) == -1
    assert lib.ns_tables_seal(t) == 0
    return t


def syn(src, dst, sport=1000):
    return E / IP(src=src, dst=dst) / TCP(sport=sport, dport=80, flags="S")


def test_the_same_address_in_two_zones():
    p = Pipe(zoned_tables())
    # from port 1 (zone 0) the shared address is pod 1's; from port 3 (zone 1) pod 3's
    assert p.one(syn(SHARED, "10.9.0.2"), 1).reason == "denied_ingress"
    assert p.one(syn(SHARED, "10.9.0.2"), 3).reason == "denied_ingress"
    assert p.one(syn(SHARED, "10.9.0.2"), 2).reason == "spoofed_source"     # port 2 is not its
    # own address within a zone is not policed; the zone is part of the result
    r = p.one(syn(SHARED, SHARED), 3)
    assert (r.reason, r.out_port) == ("new", 3)
    r = p.run([(syn(SHARED, SHARED), 1)])[0]
    assert (r.reason, r.out_port) == ("new", 1)
    res = ffi.new("struct ns_result[]", 1)
    frame = bytes(syn(SHARED, SHARED, 7))
    lib.ns_pipeline_run(p.p, ffi.from_buffer(frame), ffi.new("uint32_t[]", [0]), ffi.new("uint32_t[]", [len(frame)]),
                        ffi.new("uint16_t[]", [3]), 1, 0, res)
    assert res[0].zone == 1
    # one connection per zone for the same tuple
    assert lib.ns_pipeline_ct_state(p.p, 0, a16(SHARED), a16(SHARED), 1000, 80, 6, 0, 0) > 0
    assert lib.ns_pipeline_ct_state(p.p, 1, a16(SHARED), a16(SHARED), 1000, 80, 6, 0, 0) > 0
    assert lib.ns_pipeline_ct_state(p.p, 2, a16(SHARED), a16(SHARED), 1000, 80, 6, 0, 0) == -1


def test_nodes_and_services_are_endpoints_of_their_kind():
    p = Pipe(zoned_tables())
    # the node reaches the pods on it past their ingress isolation...
    assert p.one(syn("10.9.2.1", "10.9.0.2"), 0).reason == "new"
    # ...not those on another node
    assert p.one(syn("10.9.2.2", "10.9.0.2"), 0).reason == "denied_ingress"
    # ...not with the strict option
    assert Pipe(zoned_tables(police_node=True)).one(syn("10.9.2.1", "10.9.0.2"), 0).reason == "denied_ingress"
    # a Service VIP with no frontend for the port is not routed, nor a source from outside
    assert p.one(syn("10.9.0.2", "10.9.1.1"), 2).reason == "service_port_unknown"
    assert p.one(E / IP(src="10.9.1.1", dst="10.9.0.2") / UDP(sport=1, dport=2), 0).reason == "spoofed_source"
    # a pod's address from outside is spoofed; a node's is not
    assert p.one(syn(SHARED, "10.9.0.2", 5), 0).reason == "spoofed_source"
    # a pod's egress to the node goes out the uplink, policed as to any address (not isolated here)
    r = p.one(syn("10.9.0.2", "10.9.2.1"), 2)
    assert (r.reason, r.out_port) == ("new", 0)
