"""pytest-benchmark: one batch of 256 packets through the native pipeline.
Run: pytest bench/test_bench_fastpath.py --benchmark-enable
(bench/fastpath_bench.py prints ns/packet for every case, with the oracle's ratio.)"""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))

from fastpath_bench import BATCH, SECOND, Frames, cluster_of, new_pipeline, pod_pairs, tcp_frame  # noqa: E402
from gen_cluster import generate  # noqa: E402

from pipeline._native import ffi, lib  # noqa: E402
from pipeline.dataplane.compiler import compile_cluster  # noqa: E402


def _setup(policies):
    compiled = compile_cluster(cluster_of(generate(pods=1000, namespaces=50, policies=policies)))
    pairs = pod_pairs(compiled, random.Random(5), 100_000)
    return compiled, pairs


def test_established_batch(benchmark):
    compiled, pairs = _setup(10)
    p = new_pipeline(compiled)
    syn = Frames([tcp_frame(a, b, 1024 + i % 60000, 80 + i // 60000, 0x02) for i, (a, b, _) in enumerate(pairs)],
                 [port for _, _, port in pairs])
    res = ffi.new("struct ns_result[]", BATCH)
    for i in range(0, syn.n, BATCH):
        lib.ns_pipeline_run(p, syn._buf, syn._off + i, syn._len + i, syn._port + i, min(BATCH, syn.n - i), SECOND, res)
    ack = Frames([f[:47] + b"\x10" + f[48:] for f in syn.frames[:BATCH * 64]], syn.ports[:BATCH * 64])
    state = {"i": 0}

    def one_batch():
        i = state["i"] = (state["i"] + BATCH) % ack.n
        lib.ns_pipeline_run(p, ack._buf, ack._off + i, ack._len + i, ack._port + i, BATCH, 2 * SECOND, res)
    benchmark(one_batch)
    assert lib.ns_pipeline_counter(p, 0) > 0      # "established" is reason 0


def test_new_connections_batch(benchmark):
    compiled, pairs = _setup(10)
    p = new_pipeline(compiled, connections=1 << 22)
    fr = Frames([tcp_frame(a, b, 1024 + i % 60000, 80 + i // 60000, 0x02) for i, (a, b, _) in enumerate(pairs)],
                [port for _, _, port in pairs])
    res = ffi.new("struct ns_result[]", BATCH)
    state = {"i": 0, "now": SECOND}

    def one_batch():
        i = state["i"]
        if i + BATCH > fr.n:              # every packet new: move the clock past expiry
            state["i"], state["now"] = 0, state["now"] + 100 * SECOND
            i = 0
        state["i"] += BATCH
        lib.ns_pipeline_run(p, fr._buf, fr._off + i, fr._len + i, fr._port + i, BATCH, state["now"], res)
    benchmark(one_batch)
