"""pytest-benchmark: one batch of 256 packets through the native pipeline, each case
what its name says (checked after the run: every packet established, or every packet
a new allowed connection).
Run: pytest bench/test_bench_fastpath.py --benchmark-enable
(bench/fastpath_bench.py prints ns/packet for every case, with the verdict mix and the
oracle's ratio.)"""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))

from fastpath_bench import (BATCH, SECOND, cluster_of, frames_of, handshakes, mix, new_batches,  # noqa: E402
                            new_pipeline, pod_pairs, reasons, run_all, verdicts_of)
from gen_cluster import generate  # noqa: E402

from pipeline._native import ffi, lib  # noqa: E402
from pipeline.dataplane.compiler import compile_cluster  # noqa: E402


def _allowed(policies, n):
    compiled = compile_cluster(cluster_of(generate(pods=1000, namespaces=50, policies=policies)))
    syn, synack, ack = handshakes(pod_pairs(compiled, random.Random(5), n))
    keep = [i for i, r in enumerate(verdicts_of(compiled, frames_of(syn))) if r == "new"]
    return compiled, *([lst[i] for i in keep] for lst in (syn, synack, ack))


def test_established_batch(benchmark):
    compiled, syn, synack, ack = _allowed(10, 100_000)
    p = new_pipeline(compiled)
    res = ffi.new("struct ns_result[]", BATCH)
    for lst in (syn, synack, ack):
        run_all(p, frames_of(lst), SECOND, res)
    fr = frames_of(ack[:BATCH * 64])
    state = {"i": 0}
    before = reasons(p)

    def one_batch():
        i = state["i"] = (state["i"] + BATCH) % fr.n
        lib.ns_pipeline_run(p, fr._buf, fr._off + i, fr._len + i, fr._port + i, BATCH, 2 * SECOND, res)
    benchmark(one_batch)
    assert set(mix(before, reasons(p))) == {"established"}


def test_new_allowed_connections_batch(benchmark):
    compiled, syn, _, _ = _allowed(10, 100_000)
    p = new_pipeline(compiled, connections=1 << 22)
    fr = frames_of(syn)
    res = ffi.new("struct ns_result[]", BATCH)
    before = reasons(p)
    benchmark(new_batches(p, fr, res))
    assert set(mix(before, reasons(p))) == {"new"}
