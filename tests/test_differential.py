"""The native pipeline against the oracle: random clusters, random packet
sequences, every packet's fate compared (docs/pipeline.md)."""

import dataclasses

from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.compiler import compile_cluster
from pipeline.fastpath import FastPath
from pipeline.oracle.packets import OraclePipeline

from .packets import sequences
from .strategies import clusters


def pods_and_ports(c, compiled):
    pods = [(p.key, [str(ip) for ip in p.ips]) for p in c.pod_list() if p.key in compiled.port_of]
    return pods, compiled.port_of


def compare(fast, oracle, packets, batch_by_time=True):
    if batch_by_time:
        got = fast.run([f for f, _, _ in packets], [p for _, p, _ in packets], [t for _, _, t in packets])
    else:
        got = [fast.run_batch([f], [p], t)[0] for f, p, t in packets]
    for i, ((frame, port, now), g) in enumerate(zip(packets, got)):
        want = oracle.process(frame, port, now)
        assert g.comparable() == want.comparable(), (
            f"packet {i} (in_port {port}, now {now}): native {g} != oracle {want}; frame {frame.hex()}")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_native_agrees_with_oracle_on_every_packet(data):
    c = data.draw(clusters(max_pods=6, max_policies=4))
    compiled = compile_cluster(c)
    pods, ports = pods_and_ports(c, compiled)
    if not pods:
        return
    packets = data.draw(sequences(pods, ports))
    fast = FastPath()
    fast.install(compiled)
    compare(fast, OraclePipeline(c), packets, batch_by_time=data.draw(st.booleans()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_agreement_across_a_policy_change(data):
    c = data.draw(clusters(max_pods=5, max_policies=4))
    compiled = compile_cluster(c)
    pods, ports = pods_and_ports(c, compiled)
    if not pods:
        return
    fast, oracle = FastPath(), OraclePipeline(c)
    fast.install(compiled)
    first = data.draw(sequences(pods, ports, max_len=15))
    compare(fast, oracle, first)
    # Change the policies: drop one, or add deny-all, then swap, with or without recheck.
    if c.policies and data.draw(st.booleans()):
        c.remove_network_policy(data.draw(st.sampled_from(sorted(c.policies))))
    else:
        from pipeline.objects import NetworkPolicy
        from pipeline.selectors import LabelSelector
        ns = data.draw(st.sampled_from(sorted({p.namespace for p in c.pods.values()})))
        c.add_network_policy(NetworkPolicy(ns, "zz-deny-all", LabelSelector(), ("Ingress", "Egress")))
    recheck = data.draw(st.booleans())
    assert fast.install(compile_cluster(c), recheck=recheck) == oracle.install(c, recheck=recheck)
    # The clock goes on from where the first sequence left it.
    later = [(f, p, t + first[-1][2]) for f, p, t in data.draw(sequences(pods, ports, max_len=15))] \
        if first else []
    compare(fast, oracle, later)
