import io
import textwrap

import pytest

from pipeline.model.cluster import ClusterConfig
from pipeline.load.build import build_cluster
from pipeline.load.manifests import load


def cluster_from(text: str, config: ClusterConfig | None = None):
    """Builds a Cluster from YAML given inline (dedented), as `-f -` would read it."""
    result = load(["-"], stdin=io.StringIO(textwrap.dedent(text)))
    return build_cluster(result, config)


@pytest.fixture
def make_cluster():
    return cluster_from
