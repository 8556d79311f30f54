"""pytest-benchmark: the reachability matrix of a 1,000-pod, 500-policy cluster.
Run: pytest bench/test_bench_reach.py --benchmark-enable"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from reach_bench import build  # noqa: E402

from pipeline.model.reach import ReachComputer  # noqa: E402


def test_reach_matrix_1000_pods_500_policies(benchmark):
    cluster = build(1000, 50, 500)
    m = benchmark.pedantic(lambda: ReachComputer(cluster).matrix("TCP", 80), rounds=3, iterations=1)
    assert m.allowed.shape == (1000, 1000)
