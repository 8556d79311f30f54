"""The soft switch: pods as Linux network namespaces wired to a userspace switch that
moves frames over AF_PACKET rings (or TAP) through the dataplane."""
