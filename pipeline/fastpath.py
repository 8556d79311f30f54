"""Drives the native pipeline: one C call per batch (style P2), tables swapped in
between batches (P7). Owns the batch buffers and the installed tables; C never keeps
a pointer into Python memory after a call returns (X5)."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from ._native import ffi, lib
from .addresses import from16
from .results import Result

PORT_UPLINK = lib.NS_PORT_UPLINK
PORT_UNKNOWN = lib.NS_PORT_UNKNOWN
RULE_NONE = lib.NS_RULE_NONE
VERDICTS = {lib.NS_FORWARD: "forward", lib.NS_DROP: "drop", lib.NS_LOCAL: "local"}
CT_STATES = {lib.NS_CT_NONE: "none", lib.NS_CT_NEW: "new", lib.NS_CT_ESTABLISHED: "established",
             lib.NS_CT_REPLY: "reply", lib.NS_CT_RELATED: "related"}
REASONS = [ffi.string(lib.ns_reason_name(i)).decode() for i in range(lib.ns_reason_count())]
SECOND = 1_000_000_000


def result_from_c(r) -> Result:
    fam = r.family
    src = dst = None
    if fam in (4, 6):
        src = str(from16(bytes(ffi.buffer(r.src, 16)), fam))
        dst = str(from16(bytes(ffi.buffer(r.dst, 16)), fam))
    return Result(VERDICTS[r.verdict], REASONS[r.reason], r.out_port if r.verdict == lib.NS_FORWARD else 0,
                  CT_STATES[r.ct_state],
                  None if r.egress_rule == RULE_NONE else r.egress_rule,
                  None if r.ingress_rule == RULE_NONE else r.ingress_rule,
                  fam, r.proto, src, dst, r.sport, r.dport)


class FastPath:
    def __init__(self, connections: int = 0, fragments: int = 0, reclaim_per_batch: int = 0,
                 max_batch: int = 256, max_frame: int = 2048):
        limits = ffi.new("struct ns_ct_limits *")
        limits.connections = connections
        limits.fragments = fragments
        limits.reclaim_per_batch = reclaim_per_batch
        p = lib.ns_pipeline_new(limits)
        if p == ffi.NULL:
            raise MemoryError("ns_pipeline_new failed")
        self._p = ffi.gc(p, lib.ns_pipeline_free)
        self.compiled = None
        self.max_batch = max_batch
        self.max_frame = max_frame
        self._buf = np.zeros(max_batch * max_frame, dtype=np.uint8)
        self._off = np.zeros(max_batch, dtype=np.uint32)
        self._len = np.zeros(max_batch, dtype=np.uint16)
        self._port = np.zeros(max_batch, dtype=np.uint16)
        self._res = ffi.new("struct ns_result[]", max_batch)

    def install(self, compiled, recheck: bool = False) -> int:
        """Swaps in compiled tables between batches; returns how many connections the
        recheck deleted. The previous tables are freed with their Compiled object."""
        deleted = ffi.new("uint32_t *")
        ffi.gc(compiled.tables, None)           # the pipeline owns it now
        old = lib.ns_pipeline_swap_tables(self._p, compiled.tables, 1 if recheck else 0, deleted)
        if self.compiled is not None and old != ffi.NULL:
            lib.ns_tables_free(old)
            self.compiled.tables = None
        self.compiled = compiled
        return deleted[0]

    def __del__(self):
        # ns_pipeline_free does not free tables; take them back first.
        p = getattr(self, "_p", None)
        if p is not None and self.compiled is not None:
            old = lib.ns_pipeline_swap_tables(p, ffi.NULL, 0, ffi.NULL)
            if old != ffi.NULL:
                lib.ns_tables_free(old)

    def run_batch(self, frames: Sequence[bytes], in_ports: Sequence[int], now_ns: int) -> list[Result]:
        n = len(frames)
        assert n <= self.max_batch
        pos = 0
        for i, f in enumerate(frames):
            ln = min(len(f), self.max_frame)
            self._buf[pos:pos + ln] = np.frombuffer(f[:ln], dtype=np.uint8)
            self._off[i] = pos
            self._len[i] = ln
            self._port[i] = in_ports[i]
            pos += ln
        lib.ns_pipeline_run(self._p, ffi.from_buffer("uint8_t[]", self._buf),
                            ffi.from_buffer("uint32_t[]", self._off), ffi.from_buffer("uint16_t[]", self._len),
                            ffi.from_buffer("uint16_t[]", self._port), n, now_ns, self._res)
        return [result_from_c(self._res[i]) for i in range(n)]

    def run(self, frames: Iterable[bytes], in_ports: Iterable[int], times_ns: Iterable[int]) -> list[Result]:
        """Runs packets in batches; a batch never spans two timestamps' worth of
        reordering: packets of one batch share the first packet's `now`."""
        out: list[Result] = []
        batch, ports, t0 = [], [], None
        for f, p, t in zip(frames, in_ports, times_ns):
            if batch and (len(batch) == self.max_batch or t != t0):
                out += self.run_batch(batch, ports, t0)
                batch, ports = [], []
            if not batch:
                t0 = t
            batch.append(f)
            ports.append(p)
        if batch:
            out += self.run_batch(batch, ports, t0)
        return out

    def counters(self) -> dict[str, int]:
        return {name: lib.ns_pipeline_counter(self._p, i) for i, name in enumerate(REASONS)
                if lib.ns_pipeline_counter(self._p, i)}

    @property
    def connections(self) -> int:
        return lib.ns_pipeline_connections(self._p)
