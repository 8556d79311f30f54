/* The switch's capture ring (netsem up --pcap; see switch.h): the hot path copies
 * frames in, the owner drains them between run slices. Never waits: a full ring
 * counts capture_dropped. */
#include "switch_int.h"


void sw_cap_free(struct sw_capture *c)
{
    free(c->rec);
    free(c->data);
    free(c->batch_seq);
    memset(c, 0, sizeof(*c));
}

int ns_switch_set_capture(struct ns_switch *sw, uint32_t frames)
{
    if (frames > (1u << 20))
        return -EINVAL;
    sw_cap_free(&sw->cap);
    if (!frames)
        return 0;
    sw->cap.rec = calloc(frames, sizeof(*sw->cap.rec));
    sw->cap.data = malloc((size_t)frames * NS_SW_FRAME_MAX);
    sw->cap.batch_seq = malloc((size_t)sw->batch * sizeof(*sw->cap.batch_seq));
    if (!sw->cap.rec || !sw->cap.data || !sw->cap.batch_seq) {
        sw_cap_free(&sw->cap);
        return -ENOMEM;
    }
    sw->cap.slots = frames;
    return 0;
}

/* Copies one frame into the ring, or counts it as capture_dropped. */
void sw_cap_push(struct ns_switch *sw, uint16_t port, uint8_t dir, uint64_t ts_ns,
                 const uint8_t *data, uint32_t len, uint32_t wire_len, uint32_t batch_slot,
                 const struct ns_offload *ol)
{
    struct sw_capture *c = &sw->cap;
    if (batch_slot < sw->batch)
        c->batch_seq[batch_slot] = UINT64_MAX;
    if (c->head - c->tail >= c->slots) {
        sw->counter[NS_SW_C_CAPTURE_DROPPED]++;
        return;
    }
    if (batch_slot < sw->batch)
        c->batch_seq[batch_slot] = c->head;
    uint32_t i = (uint32_t)(c->head % c->slots);
    if (len > NS_SW_FRAME_MAX)
        len = NS_SW_FRAME_MAX;
    memcpy(c->data + (size_t)i * NS_SW_FRAME_MAX, data, len);
    c->rec[i].ts_ns = ts_ns;
    c->rec[i].len = (uint16_t)len;
    c->rec[i].wire_len = wire_len;
    if (ol)
        c->rec[i].ol = *ol;
    else
        memset(&c->rec[i].ol, 0, sizeof(c->rec[i].ol));
    c->rec[i].port = port;
    c->rec[i].dir = dir;
    c->rec[i].reason = NS_SW_CAP_NOT_JUDGED;
    c->rec[i].generation = 0;
    c->head++;
    sw->counter[NS_SW_C_CAPTURED]++;
}

/* Between the pipeline and the actions, in the same ns_switch_poll as the pushes:
 * the records are still in the ring (it is drained only between run slices). */
void sw_cap_judged(struct ns_switch *sw, uint32_t n)
{
    struct sw_capture *c = &sw->cap;
    uint32_t gen = ns_pipeline_generation(sw->p);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t seq = c->batch_seq[i];
        if (seq != UINT64_MAX) {
            struct ns_switch_capture *r = &c->rec[seq % c->slots];
            r->reason = (uint8_t)sw->res[i].reason;
            r->generation = gen;
        }
    }
}

uint32_t ns_switch_capture_read(struct ns_switch *sw, struct ns_switch_capture *recs, uint32_t max,
                                uint8_t *buf, uint32_t buf_len)
{
    struct sw_capture *c = &sw->cap;
    uint32_t n = 0, off = 0;
    while (n < max && c->tail < c->head) {
        uint32_t i = (uint32_t)(c->tail % c->slots);
        if (off + c->rec[i].len > buf_len)
            break;
        memcpy(buf + off, c->data + (size_t)i * NS_SW_FRAME_MAX, c->rec[i].len);
        recs[n] = c->rec[i];
        recs[n].off = off;
        off += c->rec[i].len;
        c->tail++;
        n++;
    }
    return n;
}
