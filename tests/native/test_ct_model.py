"""Conntrack against a tiny dict model on random UDP/TCP-SYN traffic with a
small capacity: exercises insert, reverse lookup, expiry, reclaim and the
slot index's backward-shift deletion."""
import random

from scapy.layers.inet import IP, UDP

from conftest import SEC, E, Pipe, make_tables

PODS = [f"10.0.0.{i}" for i in range(1, 9)]
EPS = [(a, i + 1, 100 + i) for i, a in enumerate(PODS)]


def test_udp_against_model():
    rng = random.Random(99)
    cap = 24
    p = Pipe(make_tables(endpoints=EPS), connections=cap, reclaim=2)
    model = {}   # (src, dst, sport, dport) -> [state, expiry]
    frames_cache = {}
    now = 0
    for step in range(4000):
        now += rng.choice((0, 1, SEC // 10, SEC, 5 * SEC))
        s, d = rng.sample(range(8), 2)
        sp, dp = rng.randrange(1, 4), rng.randrange(1, 4)
        key = (s, d, sp, dp)
        if key not in frames_cache:
            frames_cache[key] = bytes(E / IP(src=PODS[s], dst=PODS[d]) / UDP(sport=sp, dport=dp))
        got = p.run([(frames_cache[key], s + 1)], now=now)[0].reason
        # model
        for k in [k for k, v in model.items() if v[1] <= now]:
            del model[k]
        rev = (d, s, dp, sp)
        if key in model:
            model[key][1] = now + (180 if model[key][0] == "R" else 30) * SEC
            want = "established"
        elif rev in model:
            model[rev] = ["R", now + 180 * SEC]
            want = "reply"
        elif len(model) >= cap:
            want = "conntrack_full"
        else:
            model[key] = ["F", now + 30 * SEC]
            want = "new"
        assert got == want, (step, key)
        if step % 97 == 0:
            for (a, b, x, y), (st, _) in model.items():
                assert p.state(PODS[a], PODS[b], x, y, 17, now) == \
                    ("UDP_REPLIED" if st == "R" else "UDP_FIRST")
    assert p.counter("conntrack_full") > 0
