"""Plant known bugs in the C, one at a time, and check that the tests catch each.

mutmut mutates Python only; this is the C's counterpart, by hand. Every entry is
(file, text, replacement, tests that must fail). Each runs in a throwaway copy of
the tracked tree, so an interrupted run leaves the work tree and its build alone:

    python3 tests/plant_c_bugs.py          # all
    python3 tests/plant_c_bugs.py 3 7      # by index

Exit status 1 when a bug was missed (or a planting no longer applies).
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUGS = [
    ("native/policy.c", "sep->node == dep->node && !(t", "1 && !(t",
     "tests/test_regressions.py tests/native/test_zones.py"),
    ("native/ct_l4.c", "if (dir == e->fin_dir && (flags & NS_TCP_ACK)", "if ((flags & NS_TCP_ACK)",
     "tests/test_stateful.py"),
    ("native/conntrack.c", "memcpy(r->src, xdst ? xdst : k->dst, 16);", "memcpy(r->src, k->dst, 16);",
     "tests/test_translation.py"),
    ("native/sanity.c", "(addr_is_v4mapped(pkt->isrc) || addr_is_v4mapped(pkt->idst))", "0",
     "tests/test_regressions.py"),
    ("native/rewrite.c", "            csum_replace(l4sum, port, np, 2);", "            ;",
     "tests/test_translation.py"),
    ("native/pipeline.c", "if (memcmp(pkt->dst, pkt->isrc, 16) != 0)", "if (0)",
     "tests/test_regressions.py"),
    ("native/conntrack.c", "ev->generation = e->generation;", "ev->generation = 0;",
     "tests/test_events.py"),
    ("native/ct_l4.c", "return CT_TCP_LAST_ACK;", "return CT_TCP_TIME_WAIT;",
     "tests/test_stateful.py"),
    ("native/nsint.h", "return r < a ? UINT64_MAX : r;", "return r;",
     "tests/test_regressions.py"),
    ("native/pipeline_state.c", "    p->generation++;", "",
     "tests/test_events.py"),
    ("native/conntrack.c", "    if ((!nat || !nat->flags) && !ct->n_xlated)\n        return 0;   /* without", "    return 0;   /* without",
     "tests/test_translation.py tests/test_stateful.py tests/test_services_dataplane.py"),
    ("native/policy.c", "    if (!sid && !did)\n        return NS_R_NO_ROUTE;", "",
     "tests/test_stateful.py"),
    ("native/sanity.c", "            pkt->iproto = 0;", "", "tests/test_stateful.py"),
    ("native/service.c", "                     : ns_flow_hash(pkt->src, pkt->dst, pkt->sport, pkt->dport, pkt->proto);\n    uint32_t bi",
     "                     : ns_flow_hash(pkt->src, pkt->dst, pkt->sport, pkt->sport, pkt->proto);\n    uint32_t bi",
     "tests/test_services_dataplane.py"),
    ("native/service.c", "    if (!f->n_backends)\n        return NS_R_SERVICE_NO_BACKEND;\n", "",
     "tests/test_services_dataplane.py"),
    ("native/tables.c", "    if (!e || (e->kind != NS_EP_SERVICE && e->kind != NS_EP_NODE) || tables_frontend(t, zone, addr16, proto, port))",
     "    if (!e)", "tests/native/test_services.py"),
    ("native/switch.c", "sw->counter[NS_SW_C_REJECTS]++;\n                    queue_tx(sw, &ntx, sw->slot_of[in->port], out, rl, &no_offload);",
     "sw->counter[NS_SW_C_REJECTS]++;", "tests/switch/test_up.py::test_a_service_port_without_a_ready_backend_is_refused_at_once"),
    ("native/switch_local.c", "    cs[1] = (uint8_t)c;", "    cs[1] = 0;",
     "tests/switch/test_up.py::test_a_service_port_without_a_ready_backend_is_refused_at_once"),
    # Source NAT, ICMP errors about translated connections, affinity (issue 8).
    ("native/pipeline.c", "    return xlate && out == arrival;", "    return 0;",
     "tests/test_nat_dataplane.py"),
    ("native/conntrack.c", "    r->dport = xsrc ? xsport : k->sport;", "    r->dport = k->sport;",
     "tests/test_nat_dataplane.py"),
    ("native/pipeline.c", "        translate(&p->ct.e[ei], dir, res);", "        translate(&p->ct.e[ei], !dir, res);",
     "tests/test_nat_dataplane.py"),
    ("native/rewrite.c", "        rewrite_quote(ip, l4, end - pkt.l4, &pkt, r);", "        (void)end; (void)rewrite_quote;",
     "tests/test_nat_dataplane.py tests/switch/test_nat.py"),
    ("native/pipeline.c", "!(t->options & NS_OPT_ROUTE_POD_ADDRESSES)", "1",
     "tests/test_nat_dataplane.py"),
    ("native/service.c", "        if (match->generation == generation) {", "        if (1) {",
     "tests/test_affinity.py"),
    ("native/service.c", "    if (match && match->expiry > now) {", "    if (match) {",
     "tests/test_affinity.py"),
    ("native/policy.c", "if (t && !tables_networks_meet(t, snet, dnet))", "if (0)",
     "tests/test_differential.py tests/test_networks_meet.py"),
    ("native/tables.c", "    t->routable[ba >> 6] |= 1ull << (ba & 63);", "    (void)ba;",
     "tests/test_differential.py tests/test_networks_meet.py"),
    ("native/policy.c", "cells[(size_t)local_identity * width + col]",
     "cells[(size_t)col * width + local_identity]",
     "tests/test_compiler_grid.py tests/test_differential.py"),
    ("native/policy.c", ".block = pv ? k.block : 0,", ".block = 0,",
     "tests/test_compiler_grid.py tests/test_differential.py"),
    # A delta's shared policy part (ns_tables_share_policy): taken without a
    # reference, it is freed under the other table set; sealed again, its rules break.
    ("native/tables.c", "    __atomic_add_fetch(&from->pol->refs, 1, __ATOMIC_ACQ_REL);\n", "",
     "tests/test_delta.py"),
    ("native/tables.c", "    if (!pt->sealed) {      /* a shared part", "    if (1) {      /* a shared part",
     "tests/test_delta.py"),
    # The tiers of cluster-wide policy (policy.c ns_tables_direction_verdict).
    ("native/policy.c", "        if (a == NS_ACTION_DENY) {", "        if (0) {",
     "tests/test_compiler_grid.py -k cluster_wide"),
    ("native/policy.c", "    if (b == NS_ACTION_DENY) {", "    if (b == NS_ACTION_PASS) {",
     "tests/test_compiler_grid.py -k cluster_wide"),
    ("native/policy.c", "NS_DIR_EGRESS, tiers && snet == 0,", "NS_DIR_EGRESS, 0,",
     "tests/test_cluster_wide.py"),
    ("native/policy.c", "(pt->isolation[local_identity] & (1u << (tier_dir + 2)))",
     "(pt->isolation[local_identity] & (1u << (tier_dir + 1)))", "tests/test_compiler_grid.py -k cluster_wide"),
    ("native/tables.c", "    pt->tiers |= 1u << dir;", "", "tests/test_cluster_wide.py"),
    ("native/policy.c", "    if (!tiers || (local < pt->identities && (pt->isolation[local] & bit))) {",
     "    if (!tiers || (local < pt->identities && ((pt->isolation[local] & bit) || 1))) {",
     "tests/test_compiler_grid.py -k cluster_wide"),
    # --max-connections-per-pod: no reclaim before refusing, no uncounting, no check
    ("native/ct_store.c", "    ct_reclaim_expired(ct, now, UINT32_MAX);   /* so that the count is exact */",
     "",
     "tests/test_pod_limit.py"),
    ("native/conntrack.c", "        ct->port_count[e->in_port]--;", "        ;", "tests/test_pod_limit.py"),
    ("native/pipeline.c", "if (ct_port_full(&p->ct, arrival, now))", "if (0)", "tests/test_pod_limit.py"),
    # the shared connection table (--attach): expired entries adopted, duplicates kept,
    # the free list not rebuilt, the file's bump never written
    ("native/ct_store.c", "!(e->nat & ~(CT_NAT_DST | CT_NAT_SRC)) && e->expiry > now)", "!(e->nat & ~(CT_NAT_DST | CT_NAT_SRC)))",
     "tests/test_ct_file.py"),
    ("native/ct_store.c", "if (ct_find(ct, &e->key, now, &dir) != NS_NONE32 || ct_find(ct, &rkey, now, &dir) != NS_NONE32)",
     "if (0 && (ct_find(ct, &e->key, now, &dir) != NS_NONE32 || ct_find(ct, &rkey, now, &dir) != NS_NONE32))",
     "tests/test_ct_file.py"),
    ("native/ct_store.c", "            ct->free_head = i;", "            ;", "tests/test_ct_file.py"),
    ("native/ct_store.c", "        ct->file->bump = ct->bump;", "        ;", "tests/test_ct_file.py"),
    # a device gone under the switch: the error never read (the loop spins); the
    # capture noting generation 1 for every judged frame
    ("native/switch_wake.c", "    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);", "    (void)len;",
     "tests/switch/test_attach.py -k spinning"),
    ("native/capture.c", "            r->generation = gen;", "            r->generation = gen > 0;",
     "tests/switch/test_churn.py"),
    # a leak: the tables' port-zone map never freed (valgrind)
    ("native/tables.c", "    free(t->port_zone);", "", "tests/test_leaks.py"),
    # an insert into a full table that reclaims nothing first
    ("native/conntrack.c", "ct_reclaim_expired(ct, now, 1);", "ct_reclaim_expired(ct, now, 0);",
     "tests/test_stateful.py tests/test_pod_limit.py"),
    # Offloads, wake-ups, workers (issue 12): a partial checksum updated as a full
    # one; a checksum offset not checked; super-frames sent on without their
    # virtio-net header; a busy poll that sleeps when its slice ends; workers'
    # sockets outside the port's fanout group (every worker gets every frame)
    ("native/rewrite.c", "(partial ? csum_replace_partial : csum_replace)(l4sum, a, na, alen);",
     "(void)csum_replace_partial, csum_replace(l4sum, a, na, alen);", "tests/test_offload.py"),
    ("native/sanity.c", "ol->csum_start != pkt->l4 ||\n        ol->csum_offset != (tcp ? 16 : 6))",
     "ol->csum_start != pkt->l4)", "tests/test_offload.py"),
    ("native/io_packet.c", "memcpy(&sw->ol[n], data - sizeof(struct ns_offload), sizeof(struct ns_offload));",
     "memset(&sw->ol[n], 0, sizeof(struct ns_offload));", "tests/switch/test_offload.py -k veth"),
    ("native/switch_wake.c", "    *idle = now >= idle_end;", "    *idle = 1;",
     "tests/switch/test_workers.py -k busy"),
    ("native/io_packet.c", "(sw->shared && setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)) < 0)) {\n        rc = -errno;",
     "(0 && setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)) < 0)) {\n        rc = -errno;",
     "tests/switch/test_workers.py -k service"),
    # The connection index's buckets (issue 12): a fingerprint compare that counts the
    # "translated" tag bit (translated connections are never found again); an insert
    # into a full bucket that does not count itself in the overflow (lookups stop
    # short of it)
    ("native/conntrack.c", "if (!b->ref[k] || (b->tag[k] & CTX_FP) != fp)", "if (!b->ref[k] || b->tag[k] != fp)",
     "tests/test_nat_dataplane.py"),
    ("native/ct_index.h", "        b->overflow++;\n", "", "tests/native/test_conntrack.py -k overflow"),
    # interrupt moderation that never waits
    ("native/switch_wake.c", "n >= sw->coalesce_min && n < sw->batch) {", "n >= UINT32_MAX) {",
     "tests/switch/test_workers.py -k coalescing"),
    # Equivalent but for 32-bit hash collisions (the hash is seeded by the zone);
    # kept so the list says so rather than hiding it.
    ("native/tables.h", "if (e->zone == zone && memcmp", "if (memcmp",
     "tests/native/test_zones.py"),
]
EQUIVALENT = {len(BUGS) - 1}


def _tracked_copy(dst):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(ROOT, rel), "rb") as f, open(os.path.join(dst, rel), "wb") as g:
            g.write(f.read())


def plant(i, tree):
    path, old, new, tests = BUGS[i]
    full = os.path.join(tree, path)
    with open(full) as f:
        src = f.read()
    if old not in src:
        return "DOES NOT APPLY"
    try:
        with open(full, "w") as f:
            f.write(src.replace(old, new, 1))
        build = subprocess.run([sys.executable, "native/build_ffi.py"], cwd=tree,
                               capture_output=True, text=True)
        if build.returncode:
            return "BUILD FAILED " + build.stderr[-200:]
        run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
                             + tests.split(), cwd=tree, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=tree))
        return "caught" if run.returncode else "MISSED"
    finally:
        with open(full, "w") as f:
            f.write(src)


def main(argv):
    which = [int(a) for a in argv] or range(len(BUGS))
    missed = 0
    with tempfile.TemporaryDirectory(prefix="netsem-plant-") as tree:
        _tracked_copy(tree)
        for i in which:
            verdict = plant(i, tree)
            note = " (equivalent but for hash collisions)" if i in EQUIVALENT else ""
            print(f"{i:2} {BUGS[i][0]:24} {BUGS[i][2][:32]!r:36} {verdict}{note}", flush=True)
            missed += verdict != "caught" and i not in EQUIVALENT
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
