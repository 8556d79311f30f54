"""The oracle: the pipeline of docs/pipeline.md written plainly on the model, one
module per stage as native/ has one file per stage (sanity, conntrack, frag, service,
policy; pipeline chains them)."""

from .pipeline import OraclePipeline

__all__ = ["OraclePipeline"]
