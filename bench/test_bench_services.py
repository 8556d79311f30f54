"""pytest-benchmark: one batch of 256 new connections through a Service VIP with 100
ready backends (checked after the run: every packet a new, translated connection).
Run: pytest bench/test_bench_services.py --benchmark-enable
(bench/services_bench.py prints ns/packet against pod-to-pod in the same run.)"""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))

from fastpath_bench import BATCH, frames_of, mix, new_batches, new_pipeline, reasons, tcp_frame  # noqa: E402
from services_bench import cluster_with, clients_of, new_flows  # noqa: E402

from pipeline._native import ffi, lib  # noqa: E402
from pipeline.dataplane.compiler import compile_cluster  # noqa: E402


def test_new_connections_through_a_vip_batch(benchmark):
    compiled = compile_cluster(cluster_with(1, 100))
    flows = new_flows(random.Random(3), clients_of(compiled), ["198.19.0.1"], 50_000)
    fr = frames_of([(tcp_frame(s, d, sp, dp, 0x02), p) for s, p, d, sp, dp in flows])
    p = new_pipeline(compiled, connections=1 << 20)
    res = ffi.new("struct ns_result[]", BATCH)
    before = reasons(p)
    benchmark(new_batches(p, fr, res))
    assert set(mix(before, reasons(p))) == {"new"} and res[0].rewrite == lib.NS_REWRITE_DST
