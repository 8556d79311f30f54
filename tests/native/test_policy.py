"""LPM, rule table, policy verdicts, and policy in the pipeline."""
import random
import time

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.sctp import SCTP, SCTPChunkInit

from conftest import (A, A6, B, B6, C, ENDPOINTS, ID_A, ID_B, ID_C, NONE, X, Pipe, a16,
                      ffi, lib, make_tables)

from conftest import E  # noqa: E402
ING, EGR = 0, 1


def _mask(v, plen):
    return v >> (128 - plen) << (128 - plen) if plen else 0


def _random_prefixes(rng, n):
    """Nested IPv4 and IPv6 prefixes around a few bases, as 128-bit ints."""
    bases = [int.from_bytes(a16(f"10.{rng.randrange(4)}.0.0"), "big") for _ in range(4)]
    bases += [rng.getrandbits(128) for _ in range(4)]
    seen, out = set(), []
    while len(out) < n:
        base = rng.choice(bases)
        v4 = (base >> 32) == 0xFFFF
        plen = rng.randint(96, 128) if v4 else rng.randint(0, 128)
        v = _mask(base ^ rng.getrandbits(128 - 96 if v4 else 64), plen) if rng.random() < 0.7 \
            else _mask(rng.getrandbits(128) if not v4 else (0xFFFF << 32) | rng.getrandbits(32), plen)
        if (v, plen) in seen:
            continue
        seen.add((v, plen))
        out.append((v, plen, len(out) + 1))
    return out


def _brute(prefixes, addr):
    best = (-1, 0)
    for v, plen, cls in prefixes:
        if _mask(addr, plen) == v and plen > best[0]:
            best = (plen, cls)
    return best[1]


def _lpm_tables(prefixes, class_blocks=()):
    t = lib.ns_tables_new(ffi.new("struct ns_table_limits *", {"prefixes": len(prefixes) + 1}))
    t = ffi.gc(t, lib.ns_tables_free)
    for v, plen, cls in prefixes:
        assert lib.ns_tables_add_prefix(t, v.to_bytes(16, "big"), plen, cls) == 0
    for c, b in class_blocks:
        assert lib.ns_tables_add_class_block(t, c, b) == 0
    assert lib.ns_tables_seal(t) == 0
    return t


def test_lpm_vs_brute_force():
    rng = random.Random(1234)
    for n in (1, 5, 60, 700):
        prefixes = _random_prefixes(rng, n)
        t = _lpm_tables(prefixes)
        queries = [rng.getrandbits(128) for _ in range(100)]
        for v, plen, _ in rng.sample(prefixes, min(n, 300)):
            host = rng.getrandbits(128 - plen) if plen < 128 else 0
            queries.append(v | host)
            queries.append(v)
        for q in queries:
            got = lib.ns_tables_lookup_class(t, q.to_bytes(16, "big"))
            assert got == _brute(prefixes, q), (n, hex(q))


def test_lpm_default_route_and_v4():
    t = _lpm_tables([(int.from_bytes(a16("0.0.0.0"), "big"), 96, 1),
                     (int.from_bytes(a16("10.0.0.0"), "big"), 104, 2),
                     (int.from_bytes(a16("10.1.0.0"), "big"), 112, 3),
                     (int.from_bytes(a16("10.1.2.3"), "big"), 128, 4)])
    look = lambda s: lib.ns_tables_lookup_class(t, a16(s))
    assert [look(s) for s in ("1.2.3.4", "10.9.9.9", "10.1.9.9", "10.1.2.3", "fd00::1")] == \
        [1, 2, 3, 4, 0]
    # duplicate prefixes make seal fail
    t2 = lib.ns_tables_new(ffi.NULL)
    assert lib.ns_tables_add_prefix(t2, a16("10.0.0.0"), 104, 1) == 0
    assert lib.ns_tables_add_prefix(t2, a16("10.0.0.1"), 104, 2) == 0   # same after masking
    assert lib.ns_tables_seal(t2) == -1
    assert lib.ns_tables_add_prefix(t2, a16("10.0.0.0"), 129, 1) == -1
    lib.ns_tables_free(t2)


def test_lpm_100k_prefixes():
    rng = random.Random(7)
    prefixes, seen = [], set()
    while len(prefixes) < 100_000:
        plen = rng.choice((104, 112, 116, 120, 124, 128, 32, 48, 56, 64))
        v = _mask(((0xFFFF << 32) | rng.getrandbits(32)) if plen >= 96 else rng.getrandbits(128),
                  plen)
        if (v, plen) not in seen:
            seen.add((v, plen))
            prefixes.append((v, plen, len(prefixes) + 1))
    t0 = time.perf_counter()
    t = _lpm_tables(prefixes)
    assert time.perf_counter() - t0 < 5
    table = {(v, plen): cls for v, plen, cls in prefixes}
    lens = sorted({p for _, p, _ in prefixes}, reverse=True)

    def ref(q):
        for plen in lens:
            cls = table.get((_mask(q, plen), plen))
            if cls is not None:
                return cls
        return 0

    for v, plen, _ in rng.sample(prefixes, 2000):
        q = v | (rng.getrandbits(128 - plen) if plen < 128 else 0)
        assert lib.ns_tables_lookup_class(t, q.to_bytes(16, "big")) == ref(q)
    assert lib.ns_tables_memory(t) < 64 * 1024 * 1024


def check(t, d, local, peer, addr, proto, dport):
    rule = ffi.new("uint32_t *")
    ok = lib.ns_tables_policy_check(t, d, local, peer, a16(addr), proto, dport, rule)
    return ok, (None if rule[0] == NONE else rule[0])


def test_policy_check_wildcards_and_smallest_rule():
    # 192.168.0.0/16 (class 1, block 7) except 192.168.1.0/24 (class 2, no blocks)
    t = make_tables(
        endpoints=ENDPOINTS, isolation={ID_A: 3, ID_B: 1},
        prefixes=[("192.168.0.0", 112, 1), ("192.168.1.0", 120, 2), ("10.0.0.0", 104, 3)],
        class_blocks=[(1, 7), (3, 8)],
        rules=[
            (ID_B, ING, ID_A, 0, 6, 80, 80, 5),        # from A, tcp/80
            (ID_B, ING, 0, 0, 17, 53, 53, 9),          # anyone, udp/53
            (ID_B, ING, 0, 0, 6, 80, 90, 3),           # anyone, tcp/80-90 (smaller id)
            (ID_B, ING, 0, 7, 0, 0, 65535, 11),        # from 192.168/16 except .1/24
            (ID_B, ING, ID_C, 8, 6, 443, 443, 2),      # C at an address inside 10/8
            (ID_A, EGR, 0, 0, 0, 0, 65535, 20),        # egress anything
            (ID_A, EGR, ID_B, 0, 132, 1, 100, 1),      # egress SCTP to B
        ])
    assert check(t, ING, ID_B, ID_A, A, 6, 80) == (1, 3)
    assert check(t, ING, ID_B, ID_A, A, 6, 85) == (1, 3)
    assert check(t, ING, ID_B, ID_A, A, 6, 91) == (0, None)
    assert check(t, ING, ID_B, 0, X, 17, 53) == (1, 9)
    assert check(t, ING, ID_B, 0, X, 17, 54) == (0, None)
    assert check(t, ING, ID_B, 0, "192.168.5.5", 17, 999) == (1, 11)
    assert check(t, ING, ID_B, 0, "192.168.5.5", 1, 0) == (1, 11)     # ICMP: proto-0 rule
    assert check(t, ING, ID_B, 0, "192.168.1.5", 17, 999) == (0, None)  # except
    assert check(t, ING, ID_B, ID_C, C, 6, 443) == (1, 2)
    assert check(t, ING, ID_B, 0, C, 6, 443) == (0, None)              # peer identity needed
    assert check(t, ING, ID_B, ID_A, A, 6, 443) == (0, None)
    # ICMP never matches rules with a protocol or a port range without 0
    assert check(t, ING, ID_B, ID_A, A, 1, 80) == (0, None)
    assert check(t, ING, ID_B, ID_A, A, 58, 0) == (0, None)
    assert check(t, EGR, ID_A, ID_B, B, 132, 50) == (1, 1)
    assert check(t, EGR, ID_A, ID_B, B, 6, 50) == (1, 20)
    assert check(t, EGR, ID_A, 0, X, 1, 0) == (1, 20)
    # not isolated in that direction, or not a pod: allowed with no rule
    assert check(t, EGR, ID_B, 0, X, 6, 1) == (1, None)
    assert check(t, ING, ID_C, 0, X, 6, 1) == (1, None)
    assert check(t, ING, 0, 0, X, 6, 1) == (1, None)
    # isolated without rules: denied
    assert check(t, ING, ID_A, ID_B, B, 6, 1) == (0, None)


def test_add_validation():
    t = lib.ns_tables_new(ffi.new("struct ns_table_limits *", {"endpoints": 2, "identities": 100,
                                                               "rule_keys": 1, "rule_entries": 2}))
    try:
        pod, svc, node = lib.NS_EP_POD, lib.NS_EP_SERVICE, lib.NS_EP_NODE

        def add(addr, port, ident, kind=pod, zone=0):
            return lib.ns_tables_add_endpoint(t, zone, a16(addr), kind, port, ident, 1, port)
        assert add(A, 1, 1) == 0
        assert add(A, 2, 1) == -1                   # duplicate in the zone
        assert add(B, 0, 1) == -1                   # uplink port
        assert add(B, 0xFFFF, 1) == -1
        assert add(B, 2, 0) == -1                   # world identity
        assert add(B, 2, 100) == -1                 # out of range
        assert add(B, 2, 1, kind=svc) == -1         # a service has no port nor identity
        assert add(B, 0, 0, kind=9) == -1           # no such kind
        assert add(B, 0, 0, kind=node, zone=0) == 0
        assert add(C, 3, 3) == -1                   # full
        assert lib.ns_tables_set_isolation(t, 0, 1) == -1
        assert lib.ns_tables_set_isolation(t, 5, 4) == -1
        assert lib.ns_tables_add_rule(t, 1, 0, 0, 0, 6, 80, 79, 1) == -1   # lo > hi
        assert lib.ns_tables_add_rule(t, 1, 6, 0, 0, 6, 80, 80, 1) == -1   # bad dir (NS_DIRS)
        assert lib.ns_tables_add_rule(t, 1, 0, 0, 0, 6, 80, 80, 1) == 0
        assert lib.ns_tables_add_rule(t, 1, 1, 0, 0, 6, 80, 80, 1) == -1   # second key: full
        assert lib.ns_tables_add_rule(t, 1, 0, 0, 0, 6, 81, 81, 2) == 0
        assert lib.ns_tables_add_rule(t, 1, 0, 0, 0, 6, 82, 82, 3) == -1   # entries full
        kind, port, ident = ffi.new("uint8_t *"), ffi.new("uint16_t *"), ffi.new("uint32_t *")
        assert lib.ns_tables_lookup_endpoint(t, 0, a16(B), kind, port, ident) == 0
        assert (kind[0], port[0], ident[0]) == (node, 0, 0)
        assert lib.ns_tables_lookup_endpoint(t, 0, a16(A), kind, port, ident) == 0
        assert (kind[0], port[0], ident[0]) == (pod, 1, 1)
        assert lib.ns_tables_lookup_endpoint(t, 1, a16(A), kind, port, ident) == -1   # other zone
        assert lib.ns_tables_lookup_endpoint(t, 0, a16(C), kind, port, ident) == -1
        assert lib.ns_tables_seal(t) == 0
        assert lib.ns_tables_seal(t) == -1
        assert add(C, 3, 3) == -1                   # sealed
    finally:
        lib.ns_tables_free(t)


def test_lookup_cost_independent_of_policy_count():
    """Many keys for other identities do not slow one identity's lookup."""
    small = make_tables(isolation={1: 1}, rules=[(1, ING, 0, 0, 6, 80, 80, 0)])
    rules = [(i, ING, j, 0, 6, 80, 80, i * 10 + j) for i in range(2, 400) for j in range(50)]
    big = make_tables(isolation={1: 1}, rules=[(1, ING, 0, 0, 6, 80, 80, 0)] + rules,
                      limits={"rule_keys": 30000, "rule_entries": 30000})

    def cost(t):
        t0 = time.perf_counter()
        for _ in range(3000):
            check(t, ING, 1, 3, X, 6, 80)
        return time.perf_counter() - t0

    assert check(big, ING, 1, 3, X, 6, 80) == (1, 0)
    assert cost(big) < 3 * cost(small) + 0.05


def policy_tables(**kw):
    return make_tables(endpoints=ENDPOINTS, **kw)


def syn(src, dst, dport=80, sport=1111):
    return E / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S")


def test_pipeline_policy():
    t = policy_tables(isolation={ID_A: 2, ID_B: 1},
                      prefixes=[("8.8.0.0", 112, 1)], class_blocks=[(1, 4)],
                      rules=[(ID_A, EGR, ID_B, 0, 6, 80, 80, 7),
                             (ID_A, EGR, 0, 4, 17, 53, 53, 8),
                             (ID_B, ING, ID_A, 0, 6, 80, 80, 3),
                             (ID_B, ING, ID_C, 0, 0, 0, 65535, 4)])
    p = Pipe(t)
    r = p.one(syn(A, B), 1)
    assert (r.reason, r.egress_rule, r.ingress_rule, r.out_port) == ("new", 7, 3, 2)
    # the reply and later packets pass without policy
    r = p.one(E / IP(src=B, dst=A) / TCP(sport=80, dport=1111, flags="SA"), 2)
    assert (r.reason, r.egress_rule, r.ingress_rule) == ("reply", NONE, NONE)
    r = p.one(syn(A, B, dport=81), 1)
    assert (r.reason, r.egress_rule, r.ingress_rule, r.out_port) == ("denied_egress", NONE, NONE, 0)
    r = p.one(E / IP(src=A, dst=X) / UDP(sport=9, dport=53), 1)
    assert (r.reason, r.egress_rule, r.ingress_rule) == ("new", 8, NONE)
    assert p.one(E / IP(src=A, dst="9.9.9.9") / UDP(sport=9, dport=53), 1).reason == "denied_egress"
    r = p.one(syn(C, B, dport=22), 3)
    assert (r.reason, r.egress_rule, r.ingress_rule) == ("new", NONE, 4)
    r = p.one(syn(X, B), 0)
    assert (r.reason, r.egress_rule, r.ingress_rule) == ("denied_ingress", NONE, NONE)
    # ICMP echo from C: proto-0 rule, dport 0
    r = p.one(E / IP(src=C, dst=B) / ICMP(type=8, id=3), 3)
    assert (r.reason, r.ingress_rule) == ("new", 4)
    # pod to its own address: no checks
    r = p.one(syn(A, A, dport=9), 1)
    assert (r.reason, r.egress_rule, r.ingress_rule, r.out_port) == ("new", NONE, NONE, 1)
    r = p.one(E / IPv6(src=A6, dst=B6) / TCP(sport=1, dport=80, flags="S"), 1)
    assert (r.reason, r.egress_rule, r.ingress_rule) == ("new", 7, 3)
    assert p.one(E / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(), 1).reason == "denied_egress"
    sctp = E / IP(src=C, dst=B) / SCTP(sport=1, dport=2) / SCTPChunkInit()
    assert p.one(sctp, 3).ingress_rule == 4
    assert p.counter("denied_egress") == 3
    assert p.counter("denied_ingress") == 1


def test_swap_and_recheck():
    open_t = policy_tables()
    p = Pipe(open_t)
    assert p.one(syn(A, B, dport=80), 1).reason == "new"
    assert p.one(syn(A, B, dport=22), 1).reason == "new"
    assert p.one(syn(X, B, dport=80), 0).reason == "new"
    assert p.one(E / IP(src=A, dst=B) / ICMP(type=8, id=1), 1).reason == "new"
    assert p.connections == 4
    # new tables without recheck: connections survive
    t2 = policy_tables(isolation={ID_B: 1},
                       rules=[(ID_B, ING, ID_A, 0, 6, 80, 80, 1), (ID_B, ING, ID_A, 0, 1, 0, 0, 2)])
    assert p.swap(t2) == 0
    assert p.one(E / IP(src=A, dst=B) / TCP(sport=1111, dport=22, flags="A"), 1).reason == \
        "established"
    assert p.one(syn(A, B, dport=23), 1).reason == "denied_ingress"
    # recheck: A->B:22 and X->B:80 and the ICMP echo (proto-1 rule does not match ICMP) go
    t3 = policy_tables(isolation={ID_B: 1},
                       rules=[(ID_B, ING, ID_A, 0, 6, 80, 80, 1), (ID_B, ING, ID_A, 0, 1, 0, 0, 2)])
    assert p.swap(t3, recheck=True) == 3
    assert p.connections == 1
    assert p.state(A, B, 1111, 80, 6) == "SYN_SENT"
    assert p.state(A, B, 1111, 22, 6) is None
    # an unsealed table is refused (returned to the caller)
    t4 = policy_tables(seal=False)
    assert lib.ns_pipeline_swap_tables(p.p, t4, 0, ffi.NULL) == t4
    # swapping NULL in: empty tables, nothing routes from the uplink
    assert p.swap(None) == 0
    assert p.one(syn(X, B), 0).reason == "no_route"
