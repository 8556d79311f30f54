"""The datapath driver: one native pipeline, batches in and results and events out,
compiled tables swapped in between batches (style P2, P7). `replay`, the soft switch,
`probe`, the benchmarks and the tests all move packets through it.

It owns the batch buffers and the installed tables; C never keeps a pointer into
Python memory after a call returns (X5). Frames of any length up to FRAME_MAX
(64 KB GSO frames, jumbo frames) are carried whole, never cut short."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from .._native import ffi, lib
from . import constants as K
from .addr16 import addr16, from16
from .results import Event, Result

SECOND = 1_000_000_000


def result_from_c(r) -> Result:
    fam = r.family
    src = dst = None
    if fam in (4, 6):
        src = str(from16(bytes(ffi.buffer(r.src, 16)), fam))
        dst = str(from16(bytes(ffi.buffer(r.dst, 16)), fam))
    return Result(K.VERDICTS[r.verdict], K.REASONS[r.reason],
                  r.out_port if r.verdict == lib.NS_FORWARD else 0, K.CT_STATES[r.ct_state],
                  None if r.egress_rule == K.RULE_NONE else r.egress_rule,
                  None if r.ingress_rule == K.RULE_NONE else r.ingress_rule,
                  fam, r.proto, src, dst, r.sport, r.dport, r.zone, r.rewrite)


def event_from_c(e) -> Event:
    fam = e.family
    return Event(K.EVENT_TYPES[e.type], e.time_ns, K.REASONS[e.reason] if e.reason < len(K.REASONS) else None,
                 e.in_port, e.out_port, e.zone, fam, e.proto,
                 str(from16(bytes(ffi.buffer(e.src, 16)), fam)), str(from16(bytes(ffi.buffer(e.dst, 16)), fam)),
                 e.sport, e.dport, e.tcp_flags,
                 None if e.egress_rule == K.RULE_NONE else e.egress_rule,
                 None if e.ingress_rule == K.RULE_NONE else e.ingress_rule,
                 str(from16(bytes(ffi.buffer(e.xdst, 16)), fam)) if e.xlated & lib.NS_XLATE_DST else None,
                 e.xport, e.generation,
                 str(from16(bytes(ffi.buffer(e.xsrc, 16)), fam)) if e.xlated & lib.NS_XLATE_SRC else None,
                 e.xsport)


@dataclass
class Packet:
    """A frame to run: its bytes, arrival port and time (ns); `ref` is the caller's."""

    frame: bytes
    in_port: int
    time_ns: int
    ref: object = None
    offload: Optional[tuple] = None   # its virtio-net header (see OraclePipeline.process)


def batches(packets: Iterable, max_batch: int, window_ns: int) -> Iterator[list]:
    """The one batcher: consecutive packets less than `window_ns` after the batch's
    first (and not before it) share a batch, at most `max_batch`; a batch runs with
    its first packet's time as `now`. window_ns=1 batches equal timestamps only."""
    batch: list = []
    for p in packets:
        if batch and (len(batch) == max_batch or p.time_ns < batch[0].time_ns
                      or p.time_ns - batch[0].time_ns >= window_ns):
            yield batch
            batch = []
        batch.append(p)
    if batch:
        yield batch


class Datapath:
    """One native pipeline (conntrack, fragments, events) and the tables installed in it."""

    def __init__(self, connections: int = 0, fragments: int = 0, reclaim_per_batch: int = 0,
                 max_batch: int = 256, events: int = 0, affinity: int = 0, per_port: int = 0,
                 ct_file: Optional[str] = None, attach: bool = False):
        """ct_file: keep the connection table in that (tmpfs) file, so that a process
        started after this one died can take its connections over (attach=True: map
        the file as left, its capacity winning, and keep what is live now)."""
        limits = ffi.new("struct ns_ct_limits *")
        limits.per_port = per_port
        limits.affinity = affinity
        limits.connections = connections
        limits.fragments = fragments
        limits.reclaim_per_batch = reclaim_per_batch
        limits.events = events
        self.adopted = 0                 # connections taken over from ct_file
        if ct_file is None:
            p = lib.ns_pipeline_new(limits)
            if p == ffi.NULL:
                raise MemoryError("ns_pipeline_new failed (capacity too large for memory?)")
        else:
            res = ffi.new("int64_t *")
            p = lib.ns_pipeline_new_at(limits, os.fsencode(ct_file), 1 if attach else 0,
                                       time.monotonic_ns(), res)
            if p == ffi.NULL:
                err = -res[0]
                why = ("not a netsem connection table (or of another version)" if err == errno.EINVAL
                       else os.strerror(err))
                raise OSError(err, why, ct_file)
            self.adopted = res[0]
        self._p = ffi.gc(p, lib.ns_pipeline_free)
        self.compiled = None
        self.max_batch = max_batch
        self._buf = np.zeros(max_batch * 2048, dtype=np.uint8)
        self._off = np.zeros(max_batch, dtype=np.uint32)
        self._len = np.zeros(max_batch, dtype=np.uint32)
        self._port = np.zeros(max_batch, dtype=np.uint16)
        self._res = ffi.new("struct ns_result[]", max_batch)
        self._events = ffi.new("struct ns_event[]", 1024)
        self._hits: dict = {}            # rule ref -> hits of tables swapped out
        self.generation = 0              # table sets installed (C counts the same)
        self._history: dict = {}         # generation -> Compiled, the last KEEP of them

    @property
    def pipeline(self):
        """The `struct ns_pipeline *` (the soft switch runs it directly)."""
        return self._p

    # -- tables ----------------------------------------------------------------------
    def install(self, compiled, recheck: bool = False) -> int:
        """Swaps in compiled tables between batches; returns how many connections the
        recheck deleted. The previous tables' rule hits are kept, then they are freed."""
        deleted = ffi.new("uint32_t *")
        ffi.gc(compiled.tables, None)           # the pipeline owns it now
        old = lib.ns_pipeline_swap_tables(self._p, compiled.tables, 1 if recheck else 0, deleted)
        # The same Compiled again (a recheck, or a rewire that changed only ports)
        # keeps its tables: they are the ones swapped out.
        if self.compiled is not None and old != ffi.NULL and compiled is not self.compiled:
            for ref, n in self._table_hits(self.compiled, old).items():
                self._hits[ref] = self._hits.get(ref, 0) + n
            lib.ns_tables_free(old)
            self.compiled.tables = None
        self.compiled = compiled
        self.generation += 1
        self._history[self.generation] = compiled
        self._history.pop(self.generation - self.KEEP, None)
        return deleted[0]

    KEEP = 64

    def compiled_at(self, generation: int):
        """The Compiled that was in force at `generation` (events name rules by it), or
        the current one when that is too old to be kept."""
        return self._history.get(generation, self.compiled)

    def close(self) -> None:
        """Frees the pipeline and its tables now (ns_pipeline_free does not free tables)."""
        p, self._p = self._p, None
        if p is None:
            return
        if self.compiled is not None:
            old = lib.ns_pipeline_swap_tables(p, ffi.NULL, 0, ffi.NULL)
            if old != ffi.NULL:
                lib.ns_tables_free(old)
            self.compiled.tables = None
        ffi.gc(p, None)
        lib.ns_pipeline_free(p)

    def __del__(self):
        if getattr(self, "_p", None) is not None:
            self.close()

    @staticmethod
    def _table_hits(compiled, tables) -> dict:
        out = {}
        for ref, rid in compiled.rules.items():
            n = lib.ns_tables_rule_hits(tables, rid)
            if n:
                out[ref] = n
        return out

    def rule_hits(self) -> dict:
        """(policy, direction, index) -> new connections the rule allowed, since start."""
        out = dict(self._hits)
        if self.compiled is not None and self.compiled.tables is not None:
            for ref, n in self._table_hits(self.compiled, self.compiled.tables).items():
                out[ref] = out.get(ref, 0) + n
        return out

    # -- packets ---------------------------------------------------------------------
    def run_batch(self, frames: Sequence[bytes], in_ports: Sequence[int], now_ns: int,
                  offloads: Optional[Sequence[Optional[tuple]]] = None) -> list[Result]:
        """offloads: each frame's virtio-net header tuple, or None (none at all)."""
        n = len(frames)
        if n > self.max_batch:
            raise ValueError(f"batch of {n} > max_batch {self.max_batch}")
        total = sum(len(f) for f in frames)
        if total > len(self._buf):
            self._buf = np.zeros(max(total, 2 * len(self._buf)), dtype=np.uint8)
        pos = 0
        for i, f in enumerate(frames):
            ln = len(f)
            if ln > K.FRAME_MAX:
                raise ValueError(f"frame of {ln} bytes > {K.FRAME_MAX}")
            self._buf[pos:pos + ln] = np.frombuffer(f, dtype=np.uint8)
            self._off[i] = pos
            self._len[i] = ln
            self._port[i] = in_ports[i]
            pos += ln
        ol = ffi.NULL
        if offloads is not None and any(offloads):
            ol = ffi.new("struct ns_offload[]", n)
            for i, o in enumerate(offloads):
                if o:
                    (ol[i].flags, ol[i].gso_type, ol[i].hdr_len, ol[i].gso_size, ol[i].csum_start,
                     ol[i].csum_offset) = o
        lib.ns_pipeline_run_offload(self._p, ffi.from_buffer("uint8_t[]", self._buf),
                                    ffi.from_buffer("uint32_t[]", self._off),
                                    ffi.from_buffer("uint32_t[]", self._len),
                                    ffi.from_buffer("uint16_t[]", self._port), ol, n, now_ns, self._res)
        return [result_from_c(self._res[i]) for i in range(n)]

    def run(self, packets: Iterable[Packet], window_ns: int = 1) -> Iterator[tuple[Packet, Result, int]]:
        """Every packet's (packet, result, the now it ran with), batched by `batches`."""
        for batch in batches(packets, self.max_batch, window_ns):
            now = batch[0].time_ns
            results = self.run_batch([p.frame for p in batch], [p.in_port for p in batch], now,
                                     [p.offload for p in batch])
            for p, r in zip(batch, results):
                yield p, r, now

    def rewritten(self, frame: bytes, r: Result, partial: bool = False) -> bytes:
        """The frame as it leaves the pipeline: the result's translation applied
        (partial: its L4 checksum is partial, NS_OFFLOAD_NEEDS_CSUM)."""
        if not r.rewrite:
            return frame
        c = ffi.new("struct ns_result *")
        c.family, c.proto, c.rewrite = r.family, r.proto, r.rewrite
        c.sport, c.dport = r.sport, r.dport
        ffi.memmove(c.src, addr16(r.src), 16)
        ffi.memmove(c.dst, addr16(r.dst), 16)
        out = bytearray(frame)
        if lib.ns_rewrite_frame_offload(ffi.from_buffer(out), len(out), c, int(partial)) != 0:
            raise ValueError("the frame does not match its result")
        return bytes(out)

    # -- what comes out besides results ----------------------------------------------
    def events(self) -> list[Event]:
        """Moves every pending event out of the ring (oldest first)."""
        out: list[Event] = []
        while True:
            n = lib.ns_pipeline_events_read(self._p, self._events, len(self._events))
            out += [event_from_c(self._events[i]) for i in range(n)]
            if n < len(self._events):
                return out

    @property
    def events_lost(self) -> int:
        return lib.ns_pipeline_events_lost(self._p)

    def counters(self) -> dict[str, int]:
        """Packets per reason since creation (reasons with none left out)."""
        out = {}
        for i, name in enumerate(K.REASONS):
            n = lib.ns_pipeline_counter(self._p, i)
            if n:
                out[name] = n
        return out

    def ct_states(self) -> dict[str, int]:
        return {name: lib.ns_pipeline_ct_state_count(self._p, i) for i, name in K.CT_STATE_NAMES.items()}

    @property
    def connections(self) -> int:
        return lib.ns_pipeline_connections(self._p)

    def limits(self) -> dict:
        """The pipeline's capacities: connections, fragments, reclaim_per_batch, events."""
        lim = ffi.new("struct ns_ct_limits *")
        lib.ns_pipeline_limits(self._p, lim)
        return {f: getattr(lim, f) for f in ("connections", "fragments", "reclaim_per_batch", "events",
                                              "affinity", "per_port")}

    @property
    def affinity_full(self) -> int:
        """ClientIP connections that found no room for their record (hashed without)."""
        return lib.ns_pipeline_affinity_full(self._p)

    @property
    def fragments(self) -> int:
        return lib.ns_pipeline_fragments(self._p)

    def ct_state(self, src: str, dst: str, sport: int, dport: int, proto: int, now: int,
                 zone: int = 0, echo_reply: bool = False) -> Optional[str]:
        """The conntrack state of a tuple (either direction), or None."""
        s = lib.ns_pipeline_ct_state(self._p, zone, addr16(src), addr16(dst), sport, dport, proto,
                                     1 if echo_reply else 0, now)
        return None if s < 0 else K.CT_STATE_NAMES[s]

    def commit_translated(self, src: str, dst: str, sport: int, dport: int, proto: int,
                          xdst: str, xport: int, in_port: int, now: int, zone: int = 0) -> None:
        """A connection to (dst, dport) translated to (xdst, xport), as the service
        mapper commits one (for tests and restored state)."""
        if lib.ns_pipeline_ct_commit_translated(self._p, zone, addr16(src), addr16(dst), sport, dport, proto,
                                                addr16(xdst), xport, in_port, now) != 0:
            raise RuntimeError("conntrack full or clash")
