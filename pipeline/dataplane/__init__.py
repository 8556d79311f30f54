"""The dataplane: the model compiled into C tables and run per packet (the driver), the
same pipeline written plainly on the model (the oracle), and replay of captures."""
