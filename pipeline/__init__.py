"""netsem: the Kubernetes networking model of "Kubernetes Networking Semantics" (004),
its C fast path, and a soft switch that agree packet by packet."""

__version__ = "0.2.0"
