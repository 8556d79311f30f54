/* The connection tracker's per-protocol state machines (docs/pipeline.md state
 * table), after OVS's conntrack-tcp.c / conntrack-other.c, and the state names. */
#include "conntrack.h"
#include "sanity.h"

static const char *const state_name[CT_STATE_COUNT] = {
    [CT_FREE] = "FREE",
    [CT_TCP_SYN_SENT] = "SYN_SENT",
    [CT_TCP_SYN_RECV] = "SYN_RECV",
    [CT_TCP_ESTABLISHED] = "ESTABLISHED",
    [CT_TCP_FIN_WAIT] = "FIN_WAIT",
    [CT_TCP_TIME_WAIT] = "TIME_WAIT",
    [CT_TCP_CLOSED] = "CLOSED",
    [CT_UDP_FIRST] = "UDP_FIRST",
    [CT_UDP_REPLIED] = "UDP_REPLIED",
    [CT_SCTP_INIT] = "SCTP_INIT",
    [CT_SCTP_ESTABLISHED] = "SCTP_ESTABLISHED",
    [CT_SCTP_CLOSED] = "SCTP_CLOSED",
    [CT_ICMP] = "ICMP",
    [CT_TCP_LAST_ACK] = "LAST_ACK",
};

int ns_ct_state_count(void)
{
    return CT_STATE_COUNT;
}

const char *ns_ct_state_name(int state)
{
    return (state >= 0 && state < CT_STATE_COUNT) ? state_name[state] : NULL;
}

/* ---- per-protocol transitions (docs/pipeline.md state table) ---- */
static uint8_t tcp_next(struct ct_entry *e, int dir, uint8_t flags)
{
    if (flags & NS_TCP_RST)
        return CT_TCP_CLOSED;
    switch (e->state) {
    case CT_TCP_SYN_SENT:
        if (dir == CT_DIR_REPLY && (flags & NS_TCP_SYN) && (flags & NS_TCP_ACK))
            return CT_TCP_SYN_RECV;
        break;
    case CT_TCP_SYN_RECV:
        if (dir == CT_DIR_ORIG && (flags & NS_TCP_ACK) && !(flags & NS_TCP_SYN))
            return CT_TCP_ESTABLISHED;
        break;
    case CT_TCP_ESTABLISHED:
        if (flags & NS_TCP_FIN) {
            e->fin_dir = (uint8_t)dir;
            return CT_TCP_FIN_WAIT;
        }
        break;
    case CT_TCP_FIN_WAIT:
        if ((flags & NS_TCP_FIN) && dir != e->fin_dir)
            return CT_TCP_LAST_ACK;
        break;
    case CT_TCP_LAST_ACK:
        /* the first closer acknowledges the second FIN */
        if (dir == e->fin_dir && (flags & NS_TCP_ACK) && !(flags & (NS_TCP_FIN | NS_TCP_SYN)))
            return CT_TCP_TIME_WAIT;
        break;
    default:
        break;
    }
    return e->state;
}

static uint8_t sctp_next(const struct ct_entry *e, int dir, uint8_t chunk)
{
    if (chunk == NS_SCTP_ABORT || chunk == NS_SCTP_SHUTDOWN || chunk == NS_SCTP_SHUTDOWN_ACK ||
        chunk == NS_SCTP_SHUTDOWN_COMPLETE)
        return CT_SCTP_CLOSED;
    if (e->state == CT_SCTP_INIT && dir == CT_DIR_REPLY && chunk == NS_SCTP_INIT_ACK)
        return CT_SCTP_ESTABLISHED;
    return e->state;
}

uint8_t ct_update(struct ct_table *ct, uint32_t i, int dir, uint8_t l4info, uint64_t now)
{
    struct ct_entry *e = &ct->e[i];
    uint8_t s = e->state;
    switch (e->key.proto) {
    case NS_PROTO_TCP:
        s = tcp_next(e, dir, l4info);
        break;
    case NS_PROTO_UDP:
        if (dir == CT_DIR_REPLY)
            s = CT_UDP_REPLIED;
        break;
    case NS_PROTO_SCTP:
        s = sctp_next(e, dir, l4info);
        break;
    default:   /* ICMP echo: one state */
        break;
    }
    ct_refresh(ct, i, s, now);
    return s;
}
