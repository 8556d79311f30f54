/* The switch's wake-ups (see switch.h): which ports to drain, and when to sleep.
 *
 * Ports that may hold frames are on the pending list: those epoll reported ready,
 * and those a drain left non-empty because the batch filled. A wake-up drains only
 * them, round-robin, so a thousand idle ports cost nothing (poll() over every port,
 * or a walk over every ring, costs each wake-up a cache miss per port). A port is
 * dropped from the list when a drain empties it; epoll (level-triggered) reports it
 * again when a frame comes.
 *
 * While ports are pending the switch still looks for others without waiting, so a
 * busy port cannot starve them: at the rings themselves when there are few, else
 * epoll every SW_ASK_EVERY wake-ups. Busy poll (ns_switch_set_busy_poll) spins instead of
 * sleeping: it peeks at the rings directly (no system call) while frames keep
 * coming, and sleeps in epoll_wait only after busy_us without one, like DPDK's and
 * VPP's adaptive polling: the wake-up latency of a sleeping thread (tens of
 * microseconds in a VM) is what bounds a request/response rate. */
#include "switch_int.h"
#include <sys/prctl.h>

/* Above this many ports a busy spin asks epoll (one system call) instead of peeking
 * at every ring (one cache miss each). */
#define SW_PEEK_MAX 64
#define SW_ASK_EVERY 8

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ volatile("" ::: "memory");
#endif
}

static void mark_pending(struct ns_switch *sw, uint16_t port)
{
    uint16_t slot = sw->slot_of[port];
    if (slot == SW_NO_SLOT || sw->ports[slot].pending)
        return;
    sw->ports[slot].pending = 1;
    sw->pending[sw->npending++] = port;
}

/* A device that went down or away under the switch (a link flap; its run taken down
 * by another process) leaves an error on the packet socket that epoll reports until
 * it is read: read it (SO_ERROR clears it), or the loop spins at full CPU. A
 * descriptor that is hung up is no longer watched. */
static void port_error(struct ns_switch *sw, uint16_t port, uint32_t events)
{
    uint16_t slot = sw->slot_of[port];
    if (slot == SW_NO_SLOT)
        return;
    int fd = sw->ports[slot].fd, big = sw->ports[slot].big_fd, err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (big >= 0)              /* the event does not say which of the port's sockets */
        getsockopt(big, SOL_SOCKET, SO_ERROR, &err, &len);
    if (events & EPOLLHUP) {
        epoll_ctl(sw->epfd, EPOLL_CTL_DEL, fd, NULL);
        if (big >= 0)
            epoll_ctl(sw->epfd, EPOLL_CTL_DEL, big, NULL);
    }
    sw->counter[NS_SW_C_PORT_ERRORS]++;
}

/* Learns which ports have frames: epoll, waiting up to timeout_ms. Returns -errno
 * on failure, else how many ports it reported. */
static int collect(struct ns_switch *sw, int timeout_ms)
{
    int r = epoll_wait(sw->epfd, sw->evs, SW_EP_EVENTS, timeout_ms);
    if (timeout_ms)
        sw->counter[NS_SW_C_SLEEPS]++;
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    for (int k = 0; k < r; k++) {
        if (NS_UNLIKELY(sw->evs[k].data.u32 == SW_WAKE_EVENT)) {
            uint64_t v;
            if (read(sw->wakefd, &v, sizeof(v)) < 0) {
                /* already read: nothing to clear */
            }
            continue;
        }
        uint16_t port = (uint16_t)sw->evs[k].data.u32;
        if (NS_UNLIKELY(sw->evs[k].events & (EPOLLERR | EPOLLHUP)))
            port_error(sw, port, sw->evs[k].events);
        if (sw->evs[k].events & EPOLLIN)
            mark_pending(sw, port);
    }
    return r;
}

/* Whether a port's ring has a frame for user space (TAP: can't tell, say yes). */
static inline int ring_ready(const struct sw_port *pt)
{
    if (pt->is_tap || pt->v3_pkt || sw_big_ready(pt))
        return 1;
    const uint8_t *slot = pt->ring + (size_t)pt->cur * pt->slot_size;
    uint32_t status = pt->version == NS_SW_RING_V3
        ? __atomic_load_n(&((const struct tpacket_block_desc *)slot)->hdr.bh1.block_status, __ATOMIC_ACQUIRE)
        : __atomic_load_n(&((const struct tpacket2_hdr *)slot)->tp_status, __ATOMIC_ACQUIRE);
    return (status & TP_STATUS_USER) != 0;
}

static void peek_all(struct ns_switch *sw)
{
    for (uint32_t s = 0; s < sw->nports; s++)
        if (!sw->ports[s].pending && ring_ready(&sw->ports[s]))
            mark_pending(sw, sw->ports[s].port);
}

/* Drains the pending ports round-robin into one batch; ports found empty leave
 * the list. */
static uint32_t drain(struct ns_switch *sw)
{
    uint32_t n = 0, np = sw->npending, kept = 0;
    sw->big_used = 0;
    if (!np)
        return 0;
    uint32_t start = sw->rr % np;
    for (uint32_t k = 0; k < np; k++) {
        uint16_t port = sw->pending[(start + k) % np];
        struct sw_port *pt = &sw->ports[sw->slot_of[port]];
        if (n < sw->batch) {
            n = pt->is_tap ? sw_drain_tap(sw, pt, n) : sw_drain_packet(sw, pt, n);
            /* a drain stops at an empty port, a full batch, or (offloads) when the
             * batch has no super-frame slot left: only the first empties it */
            if (n < sw->batch && !(sw->offload && sw->big_used >= NS_SW_BIG_SLOTS)) {
                pt->pending = 0;          /* emptied: epoll says when it has more */
                continue;
            }
        }
        sw->still[kept++] = port;         /* the ports still pending, in order */
    }
    memcpy(sw->pending, sw->still, kept * sizeof(*sw->pending));
    sw->npending = kept;
    sw->rr = start + 1;
    return n;
}

/* Spins until frames come (returns how many were drained), the idle budget is
 * spent (returns 0, *idle set: the caller may sleep), or the timeout or a stop. */
static uint32_t busy_spin(struct ns_switch *sw, int timeout_ms, int *idle)
{
    uint64_t now = sw_mono_ns();
    const uint64_t idle_end = sw->last_frame_ns + (uint64_t)sw->busy_us * 1000u;
    const uint64_t end = now + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
    while (now < idle_end && (timeout_ms < 0 || now < end) && !sw->stop) {
        if (sw->nports <= SW_PEEK_MAX)
            peek_all(sw);
        else if (collect(sw, 0) < 0)
            return 0;
        uint32_t n = drain(sw);
        if (n)
            return n;
        for (int i = 0; i < 32; i++)
            cpu_relax();
        now = sw_mono_ns();
    }
    *idle = now >= idle_end;
    return 0;
}

int ns_switch_poll(struct ns_switch *sw, int timeout_ms, uint64_t now_ns)
{
    int r;
    /* ports pending: look for others without sleeping (no port starves the rest):
     * at the rings themselves when there are few (no system call), else epoll every
     * SW_ASK_EVERY busy wake-ups */
    if (sw->npending) {
        if (sw->nports <= SW_PEEK_MAX)
            peek_all(sw);
        else if (++sw->busy_rounds % SW_ASK_EVERY == 0 && (r = collect(sw, 0)) < 0)
            return r;
    }
    uint32_t n = drain(sw);
    int may_sleep = 1;
    if (n == 0 && sw->busy_us)
        n = busy_spin(sw, timeout_ms, &may_sleep);
    if (n == 0 && timeout_ms != 0 && may_sleep) {
        if ((r = collect(sw, timeout_ms)) < 0)
            return r;
        n = drain(sw);
    }
    if (n == 0)
        return 0;
    if (sw->busy_us)
        sw->last_frame_ns = sw_mono_ns();
    sw->counter[NS_SW_C_WAKEUPS]++;
    sw->counter[NS_SW_C_BATCHES]++;
    /* workers: one batch in the shared pipeline at a time; I/O runs in parallel */
    ns_switch_lock(sw);
    ns_pipeline_run_offload(sw->p, sw->buf, sw->off, sw->len, sw->in_port, sw->offload ? sw->ol : NULL,
                            n, now_ns ? now_ns : sw_mono_ns(), sw->res);
    if (NS_UNLIKELY(sw->cap.slots))
        sw_cap_judged(sw, n);
    ns_switch_unlock(sw);
    sw_act(sw, n);
    /* Interrupt moderation, as a NIC's rx-usecs: after a batch of a stream (at least
     * coalesce_min frames), let frames gather for coalesce_us before looking again,
     * so the per-wake-up costs (epoll, sendmmsg, the scheduler) are shared by more of
     * them. A few frames (a request, a handshake's) never wait, and nor does a full
     * batch: more are waiting already. */
    if (sw->coalesce_us && !sw->busy_us && n >= sw->coalesce_min && n < sw->batch) {
        struct timespec ts = {0, (long)sw->coalesce_us * 1000};
        nanosleep(&ts, NULL);
    }
    return (int)n;
}

int64_t ns_switch_run(struct ns_switch *sw, uint32_t duration_ms)
{
    uint64_t end = sw_mono_ns() + (uint64_t)duration_ms * 1000000ull;
    int64_t total = 0;
    if (sw->coalesce_us)         /* sleeps of microseconds, not the default 50 µs slack */
        prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    if (sw->stop) {              /* stopped before it ran: that stop is for this run */
        sw->stop = 0;
        return 0;
    }
    for (;;) {
        uint64_t now = sw_mono_ns();
        if (sw->stop) {
            sw->stop = 0;        /* this run answered it */
            break;
        }
        if (now >= end)
            break;
        uint64_t left_ms = (end - now + 999999) / 1000000;
        int r = ns_switch_poll(sw, (int)(left_ms > 50 ? 50 : left_ms), 0);
        if (r < 0)
            return r;
        total += r;
    }
    return total;
}

void ns_switch_set_coalesce(struct ns_switch *sw, uint32_t us, uint32_t min_frames)
{
    sw->coalesce_us = us > 1000 ? 1000 : us;
    sw->coalesce_min = min_frames ? min_frames : 8;
}

void ns_switch_set_busy_poll(struct ns_switch *sw, uint32_t busy_us)
{
    sw->busy_us = busy_us;
    sw->last_frame_ns = sw_mono_ns();
}

/* ---- workers: the shared pipeline lock ---- */
int ns_switch_set_workers(struct ns_switch *sw, struct ns_switch *leader)
{
    if (!leader || sw->shared || leader->p != sw->p)
        return -EINVAL;
    if (sw->nports || leader->nports)
        return -EBUSY;
    if (!leader->shared) {
        if (leader != sw)
            return -EINVAL;      /* the leader is made first */
        struct sw_shared *sh = calloc(1, sizeof(*sh));
        if (!sh || pthread_mutex_init(&sh->mu, NULL) != 0) {
            free(sh);
            return -ENOMEM;
        }
        sh->refs = 1;
        sw->shared = sh;
        return 0;
    }
    if (leader == sw)
        return 0;
    __atomic_add_fetch(&leader->shared->refs, 1, __ATOMIC_ACQ_REL);
    sw->shared = leader->shared;
    return 0;
}

void ns_switch_lock(struct ns_switch *sw)
{
    if (sw->shared)
        pthread_mutex_lock(&sw->shared->mu);
}

void ns_switch_unlock(struct ns_switch *sw)
{
    if (sw->shared)
        pthread_mutex_unlock(&sw->shared->mu);
}
