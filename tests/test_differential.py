"""The native pipeline against the oracle: random clusters, random packet
sequences, every packet's fate compared (docs/pipeline.md). NETSEM_DIFF_EXAMPLES
raises the number of clusters (the documented long run, docs/testing.md)."""

import os

from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.dataplane.compiler import compile_cluster
from pipeline.dataplane.driver import Datapath, Packet
from pipeline.dataplane.oracle import OraclePipeline

from .packets import sequences
from .strategies import clusters


def pods_and_ports(c, compiled):
    """The pod interfaces the address plane wires to switch ports: [(name, [address])]
    and name -> port; and the addresses that are not pods' (Service VIPs, nodes)."""
    attachments = c.plane.attachments()
    pods = [(str(a), [str(ip) for ip in c.plane.addresses(a)]) for a in attachments]
    others = sorted({str(ip) for _, ip, e in c.plane if not hasattr(e, "pod")})
    return pods, {str(a): a.port for a in attachments}, others


def compare(fast, oracle, packets, batch_by_time=True):
    if batch_by_time:
        got = [r for _, r, _ in fast.run(Packet(f, p, t) for f, p, t in packets)]
    else:
        got = [fast.run_batch([f], [p], t)[0] for f, p, t in packets]
    for i, ((frame, port, now), g) in enumerate(zip(packets, got)):
        want = oracle.process(frame, port, now)
        assert g.comparable() == want.comparable(), (
            f"packet {i} (in_port {port}, now {now}): native {g} != oracle {want}; frame {frame.hex()}")


EXAMPLES = int(os.environ.get("NETSEM_DIFF_EXAMPLES", "120"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_native_agrees_with_oracle_on_every_packet(data):
    c = data.draw(clusters(max_pods=6, max_policies=4))
    compiled = compile_cluster(c)
    pods, ports, others = pods_and_ports(c, compiled)
    if not pods:
        return
    packets = data.draw(sequences(pods, ports, extra_dsts=others))
    # Often small tables, so that full conntrack and fragment tables are met too.
    conns, frags = data.draw(st.sampled_from([(65536, 4096), (65536, 4096), (4, 2), (16, 8)]))
    fast = Datapath(connections=conns, fragments=frags)
    fast.install(compiled)
    compare(fast, OraclePipeline(c, connections_limit=conns, fragments_limit=frags),
            packets, batch_by_time=data.draw(st.booleans()))


@settings(max_examples=max(1, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_agreement_across_a_policy_change(data):
    c = data.draw(clusters(max_pods=5, max_policies=4))
    compiled = compile_cluster(c)
    pods, ports, others = pods_and_ports(c, compiled)
    if not pods:
        return
    fast, oracle = Datapath(), OraclePipeline(c)
    fast.install(compiled)
    first = data.draw(sequences(pods, ports, max_len=15, extra_dsts=others))
    compare(fast, oracle, first)
    # Change the policies: drop one, or add deny-all, then swap, with or without recheck.
    if c.policies and data.draw(st.booleans()):
        c.remove_network_policy(data.draw(st.sampled_from(sorted(c.policies))))
    else:
        from pipeline.model.objects import NetworkPolicy
        from pipeline.model.selectors import LabelSelector
        ns = data.draw(st.sampled_from(sorted({p.namespace for p in c.pods.values()})))
        c.add_network_policy(NetworkPolicy(ns, "zz-deny-all", LabelSelector(), ("Ingress", "Egress")))
    recheck = data.draw(st.booleans())
    assert fast.install(compile_cluster(c), recheck=recheck) == oracle.install(c, recheck=recheck)
    # The clock goes on from where the first sequence left it.
    later = [(f, p, min(t + first[-1][2], (1 << 64) - 1))
             for f, p, t in data.draw(sequences(pods, ports, max_len=15, extra_dsts=others))] if first else []
    compare(fast, oracle, later)
