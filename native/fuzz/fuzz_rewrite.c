/* The rewrite step's invariants: a result that names a translation is written into
 * an exact-size copy of its frame (AddressSanitizer sees one byte past it), as the
 * driver does; the rewritten frame parses, carries the result's tuple (an ICMP
 * error's quote carries it reversed), keeps every checksum that was right before
 * right (the ICMP error's and SCTP's, recomputed, are right whatever they were), and
 * a second rewrite changes nothing. The same result applied to an unrelated frame
 * must not fault, and leaves it alone when it refuses it. */
#include <stdio.h>
#include "fuzz_check.h"

#define CHECK(cond, what) do { if (!(cond)) fz_fail(what, r, frame, len); } while (0)

static int ports_carried(uint8_t proto)
{
    return proto == NS_PROTO_TCP || proto == NS_PROTO_UDP || proto == NS_PROTO_SCTP;
}

/* 1 when the quoted IPv4 header of an ICMP error is whole and its checksum right,
 * 0 when wrong, -1 when there is none to check. */
static int quote_v4_csum_ok(const uint8_t *f, uint32_t len, const struct ns_pkt *p)
{
    if (p->family != 4 || p->icmp_kind != NS_ICMP_ERROR || !p->l4)
        return -1;
    uint32_t q = p->l4 + 8, end = p->l3 + rd16(f + p->l3 + 2);
    if (end > len || q + 20 > end)
        return -1;
    uint32_t qhl = (uint32_t)(f[q] & 15) * 4;
    if (qhl < 20 || q + qhl > end)
        return -1;
    return fz_ip_csum(f + q, qhl) == 0;
}

void fz_check_rewrite(const struct ns_result *r, const uint8_t *frame, uint32_t len,
                      const struct ns_pkt *pkt, const uint8_t *other, uint32_t olen)
{
    uint8_t *out = malloc(len ? len : 1), *again = malloc(len ? len : 1);
    memcpy(out, frame, len);
    CHECK(ns_rewrite_frame(out, len, r) == 0, "ns_rewrite_frame refused the frame its result came from");
    struct ns_pkt q;
    CHECK(sanity_parse(out, len, &q) == NS_R_CONTINUE, "a rewritten frame no longer parses");
    CHECK(q.family == r->family && q.proto == r->proto, "a rewritten frame changed family or protocol");
    CHECK(!memcmp(q.src, r->src, 16) && !memcmp(q.dst, r->dst, 16),
          "a rewritten frame's addresses are not its result's");
    if (ports_carried(q.proto) || q.icmp_kind == NS_ICMP_ECHO_REQUEST || q.icmp_kind == NS_ICMP_ECHO_REPLY)
        CHECK(q.sport == r->sport && q.dport == r->dport, "a rewritten frame's ports are not its result's");
    if (q.icmp_kind == NS_ICMP_ERROR) {
        /* each rewritten end of the error goes into the quote at its opposite end */
        if (r->rewrite & NS_REWRITE_DST) {
            CHECK(!memcmp(q.isrc, r->dst, 16), "the quote's source is not the error's new destination");
            if (ports_carried(q.iproto))
                CHECK(q.isport == r->dport, "the quote's source port is not the error's new port");
        }
        if (r->rewrite & NS_REWRITE_SRC) {
            CHECK(!memcmp(q.idst, r->src, 16), "the quote's destination is not the error's new source");
            if (ports_carried(q.iproto))
                CHECK(q.idport == r->sport, "the quote's destination port is not the error's new port");
        }
        CHECK(fz_l4_csum_ok(out, len, &q) != 0, "an ICMP error's checksum is wrong after the rewrite");
        if (quote_v4_csum_ok(frame, len, pkt) == 1)
            CHECK(quote_v4_csum_ok(out, len, &q) == 1, "the quoted IPv4 header's checksum broke");
    } else if (q.proto == NS_PROTO_SCTP) {
        CHECK(fz_l4_csum_ok(out, len, &q) != 0, "an SCTP CRC32c is wrong after the rewrite");
    } else if (fz_l4_csum_ok(frame, len, pkt) == 1) {
        CHECK(fz_l4_csum_ok(out, len, &q) == 1, "a right L4 checksum is wrong after the rewrite");
    }
    if (pkt->family == 4 && pkt->proto == NS_PROTO_UDP && pkt->l4 && pkt->l4 + 8 <= len &&
        rd16(frame + pkt->l4 + 6) == 0)
        CHECK(rd16(out + pkt->l4 + 6) == 0, "an IPv4 UDP datagram without a checksum got one");
    memcpy(again, out, len);
    CHECK(ns_rewrite_frame(again, len, r) == 0 && !memcmp(again, out, len), "a second rewrite changed the frame");
    free(out);
    free(again);

    uint8_t *o = malloc(olen ? olen : 1), *o2 = malloc(olen ? olen : 1);
    memcpy(o, other, olen);
    memcpy(o2, other, olen);
    if (ns_rewrite_frame(o, olen, r) != 0)
        CHECK(!memcmp(o, o2, olen), "a refused rewrite still wrote into the frame");
    free(o);
    free(o2);
}
