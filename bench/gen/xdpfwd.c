/* xdpfwd: one-thread AF_XDP L2 forwarder between two interfaces (an experiment
 * against the switch's AF_PACKET TPACKET_V2 RX ring + sendmmsg path: CPU per
 * forwarded 64-byte frame on veth).
 *
 *   xdpfwd IFA IFB MAC_TO_B MAC_TO_A SECONDS
 *
 * Frames received on IFA leave on IFB with destination MAC_TO_B and source IFB's
 * own MAC; frames received on IFB leave on IFA with destination MAC_TO_A and
 * source IFA's MAC. Queue 0 of each interface, XDP_COPY bind, libxdp's default
 * XSK program (xsk_def_xdp_prog, through the dispatcher when bpffs is mounted)
 * attached in native (driver) mode, or in SKB (generic) mode when the driver
 * refuses native mode (or when XDPFWD_MODE=skb is set). One UMEM per socket: a frame received on A is copied
 * into one of B's TX frames (its RX frame goes straight back to A's fill ring).
 * The RX rings are busy-polled; poll() with a 1 ms timeout only after a round
 * that found nothing. Batches of 64. No allocation after setup.
 *
 * Prints on exit (stdout):
 *   xdpfwd rx_a N rx_b N tx_a N tx_b N mode drv|skb
 * rx_X: frames read from X's RX ring; tx_X: frames the kernel completed on X.
 * On stderr: drops for want of a free TX frame and the kernel's XDP_STATISTICS.
 *
 * Build: gcc -O2 -o /tmp/xdpfwd bench/gen/xdpfwd.c -lxdp -lbpf
 * (Debian: apt-get install libxdp-dev libbpf-dev; libxdp1 ships the BPF objects.) */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#define BATCH 64
#define FRAME_SIZE 2048u                  /* aligned chunks: a power of two >= 2048 */
#define RING_SIZE 2048u                   /* each of fill, comp, rx, tx */
#define RX_FRAMES RING_SIZE               /* frames owned by fill + rx rings */
#define TX_FRAMES RING_SIZE               /* frames owned by tx + comp rings or free */
#define NUM_FRAMES (RX_FRAMES + TX_FRAMES)
#define UMEM_SIZE ((uint64_t)NUM_FRAMES * FRAME_SIZE)

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9                /* Linux 6.17+: descriptors one copy-mode sendto() sends */
#endif

struct port {
    const char *name;
    int ifindex;
    uint8_t mac[6];
    void *area;
    struct xsk_umem *umem;
    struct xsk_socket *xsk;
    struct xsk_ring_prod fill;
    struct xsk_ring_cons comp;
    struct xsk_ring_cons rx;
    struct xsk_ring_prod tx;
    uint64_t free_tx[TX_FRAMES];          /* stack of free TX frame addresses */
    uint32_t nfree;
    int budget_ok;
    uint64_t rx_pkts, tx_done, tx_sent, drop_notx, kicks;
};

static struct port ports[2];
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int parse_mac(const char *s, uint8_t *m)
{
    return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) == 6;
}

static int own_mac(const char *ifname, uint8_t *mac)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    int rc = ioctl(fd, SIOCGIFHWADDR, &ifr);
    close(fd);
    if (rc < 0)
        return -1;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}

static void close_port(struct port *p)
{
    if (p->xsk)
        xsk_socket__delete(p->xsk);          /* also detaches libxdp's program */
    p->xsk = NULL;
    if (p->umem)
        if (xsk_umem__delete(p->umem))
            fprintf(stderr, "xdpfwd: %s: xsk_umem__delete: busy\n", p->name);
    p->umem = NULL;
}

/* UMEM + socket on queue 0 of p->name with the given XDP attach flags. */
static int open_port(struct port *p, uint32_t xdp_flags)
{
    struct xsk_umem_config ucfg = {
        .fill_size = RING_SIZE,
        .comp_size = RING_SIZE,
        .frame_size = FRAME_SIZE,
        .frame_headroom = 0,
        .flags = 0,
    };
    struct xsk_socket_config scfg = {
        .rx_size = RING_SIZE,
        .tx_size = RING_SIZE,
        .libxdp_flags = 0,
        .xdp_flags = xdp_flags,
        .bind_flags = XDP_COPY,
    };
    int rc = xsk_umem__create(&p->umem, p->area, UMEM_SIZE, &p->fill, &p->comp, &ucfg);
    if (rc) {
        fprintf(stderr, "xdpfwd: %s: xsk_umem__create: %s\n", p->name, strerror(-rc));
        p->umem = NULL;
        return rc;
    }
    rc = xsk_socket__create(&p->xsk, p->name, 0, p->umem, &p->rx, &p->tx, &scfg);
    if (rc) {
        if (rc != -EBUSY)
            fprintf(stderr, "xdpfwd: %s: xsk_socket__create (%s mode): %s\n", p->name,
                    (xdp_flags & XDP_FLAGS_DRV_MODE) ? "drv" : "skb", strerror(-rc));
        p->xsk = NULL;
        close_port(p);
        return rc;
    }
    /* Copy mode sends at most 32 descriptors per sendto() unless told otherwise
     * (6.17+); one kick per batch of 64 where the kernel allows it. */
    unsigned int budget = BATCH;
    p->budget_ok = setsockopt(xsk_socket__fd(p->xsk), SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof(budget)) == 0;
    /* Frames [0, RX_FRAMES) go to the fill ring; the rest are TX frames. */
    uint32_t idx;
    if (xsk_ring_prod__reserve(&p->fill, RX_FRAMES, &idx) != RX_FRAMES) {
        fprintf(stderr, "xdpfwd: %s: cannot fill the fill ring\n", p->name);
        close_port(p);
        return -ENOSPC;
    }
    for (uint32_t i = 0; i < RX_FRAMES; i++)
        *xsk_ring_prod__fill_addr(&p->fill, idx + i) = (uint64_t)i * FRAME_SIZE;
    xsk_ring_prod__submit(&p->fill, RX_FRAMES);
    p->nfree = 0;
    for (uint32_t i = 0; i < TX_FRAMES; i++)
        p->free_tx[p->nfree++] = (uint64_t)(RX_FRAMES + TX_FRAMES - 1 - i) * FRAME_SIZE;
    return 0;
}

/* As open_port; EBUSY (the kernel frees a closed socket's queue binding from a
 * workqueue, so a retry right after a refused native attach can find the queue
 * still taken) is retried for up to 2 s. */
static int open_port_retry(struct port *p, uint32_t xdp_flags)
{
    int rc = open_port(p, xdp_flags);
    for (int i = 0; rc == -EBUSY && i < 100; i++) {
        usleep(20000);
        rc = open_port(p, xdp_flags);
    }
    if (rc == -EBUSY)
        fprintf(stderr, "xdpfwd: %s: queue 0 is taken by another AF_XDP socket\n", p->name);
    return rc;
}

/* Does the TX ring hold descriptors the kernel has not consumed yet? In copy
 * mode only sendto() (or poll) makes the kernel transmit them. */
static inline int tx_unconsumed(const struct xsk_ring_prod *tx)
{
    return __atomic_load_n(tx->consumer, __ATOMIC_ACQUIRE) != tx->cached_prod;
}

static inline void kick_tx(struct port *p)
{
    if (!tx_unconsumed(&p->tx))
        return;
    p->kicks++;
    /* EAGAIN/EBUSY/ENOBUFS: the kernel took what it could; we kick again next round. */
    sendto(xsk_socket__fd(p->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0);
}

static inline void reap_completions(struct port *p)
{
    uint32_t idx;
    uint32_t n = xsk_ring_cons__peek(&p->comp, RING_SIZE, &idx);
    if (!n)
        return;
    for (uint32_t i = 0; i < n; i++)
        p->free_tx[p->nfree++] = *xsk_ring_cons__comp_addr(&p->comp, idx + i);
    xsk_ring_cons__release(&p->comp, n);
    p->tx_done += n;
}

/* Up to BATCH frames from src's RX ring onto dst's TX ring. Returns frames read. */
static inline uint32_t forward(struct port *src, struct port *dst, const uint8_t *dst_mac)
{
    uint32_t idx_rx, idx_fill, idx_tx;
    uint32_t n = xsk_ring_cons__peek(&src->rx, BATCH, &idx_rx);
    if (!n)
        return 0;
    /* The fill ring always has room: fill + rx together hold RX_FRAMES = RING_SIZE. */
    while (xsk_ring_prod__reserve(&src->fill, n, &idx_fill) != n)
        ;
    uint32_t m = n < dst->nfree ? n : dst->nfree;
    if (m && xsk_ring_prod__reserve(&dst->tx, m, &idx_tx) != m)
        m = 0;                               /* cannot happen: tx ring size == TX_FRAMES */
    for (uint32_t i = 0; i < n; i++) {
        const struct xdp_desc *d = xsk_ring_cons__rx_desc(&src->rx, idx_rx + i);
        uint64_t addr = d->addr;
        uint32_t len = d->len;
        if (i < m) {
            uint64_t taddr = dst->free_tx[--dst->nfree];
            uint8_t *out = xsk_umem__get_data(dst->area, taddr);
            memcpy(out, xsk_umem__get_data(src->area, addr), len);
            memcpy(out, dst_mac, 6);
            memcpy(out + 6, dst->mac, 6);
            struct xdp_desc *t = xsk_ring_prod__tx_desc(&dst->tx, idx_tx + i);
            t->addr = taddr;
            t->len = len;
            t->options = 0;
        }
        /* The RX frame goes back to the fill ring at once (aligned mode: chunk base). */
        *xsk_ring_prod__fill_addr(&src->fill, idx_fill + i) = xsk_umem__extract_addr(addr) & ~(uint64_t)(FRAME_SIZE - 1);
    }
    xsk_ring_cons__release(&src->rx, n);
    xsk_ring_prod__submit(&src->fill, n);
    if (m)
        xsk_ring_prod__submit(&dst->tx, m);
    src->rx_pkts += n;
    dst->tx_sent += m;
    dst->drop_notx += n - m;
    return n;
}

static void print_xdp_stats(struct port *p)
{
    struct xdp_statistics st;
    socklen_t len = sizeof(st);
    memset(&st, 0, sizeof(st));
    if (getsockopt(xsk_socket__fd(p->xsk), SOL_XDP, XDP_STATISTICS, &st, &len) < 0) {
        fprintf(stderr, "xdpfwd: %s: XDP_STATISTICS: %s\n", p->name, strerror(errno));
        return;
    }
    fprintf(stderr,
            "xdpfwd %s: rx %llu tx_submitted %llu tx_completed %llu drop_no_tx_frame %llu kicks %llu"
            " | kernel rx_dropped %llu rx_invalid_descs %llu tx_invalid_descs %llu"
            " rx_ring_full %llu rx_fill_ring_empty_descs %llu tx_ring_empty_descs %llu\n",
            p->name, (unsigned long long)p->rx_pkts, (unsigned long long)p->tx_sent,
            (unsigned long long)p->tx_done, (unsigned long long)p->drop_notx,
            (unsigned long long)p->kicks, (unsigned long long)st.rx_dropped,
            (unsigned long long)st.rx_invalid_descs, (unsigned long long)st.tx_invalid_descs,
            (unsigned long long)st.rx_ring_full, (unsigned long long)st.rx_fill_ring_empty_descs,
            (unsigned long long)st.tx_ring_empty_descs);
}

static int libxdp_log(enum libxdp_print_level level, const char *fmt, va_list args)
{
    if (level == LIBXDP_DEBUG)
        return 0;
    return vfprintf(stderr, fmt, args);
}

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list args)
{
    /* libxdp 1.3's objects carry sections (.xdp_run_config) libbpf 1.1 warns about. */
    if (level == LIBBPF_DEBUG || strstr(fmt, "skipping unrecognized data section"))
        return 0;
    return vfprintf(stderr, fmt, args);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: xdpfwd IFA IFB MAC_TO_B MAC_TO_A SECONDS\n");
        return 2;
    }
    struct port *a = &ports[0], *b = &ports[1];
    uint8_t mac_to_b[6], mac_to_a[6];
    a->name = argv[1];
    b->name = argv[2];
    if (!parse_mac(argv[3], mac_to_b) || !parse_mac(argv[4], mac_to_a)) {
        fprintf(stderr, "xdpfwd: bad MAC\n");
        return 2;
    }
    double seconds = atof(argv[5]);
    for (int i = 0; i < 2; i++) {
        struct port *p = &ports[i];
        p->ifindex = if_nametoindex(p->name);
        if (!p->ifindex || own_mac(p->name, p->mac) < 0) {
            fprintf(stderr, "xdpfwd: no interface %s\n", p->name);
            return 1;
        }
        p->area = mmap(NULL, UMEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p->area == MAP_FAILED) {
            perror("xdpfwd: mmap");
            return 1;
        }
    }
    libxdp_set_print(libxdp_log);
    libbpf_set_print(libbpf_log);

    /* Native mode on both, else SKB mode on both (XDPFWD_MODE=skb: SKB mode only). */
    const char *mode = "drv";
    const char *want = getenv("XDPFWD_MODE");
    int skb_only = want && !strcmp(want, "skb");
    if (skb_only || open_port(a, XDP_FLAGS_DRV_MODE) || open_port(b, XDP_FLAGS_DRV_MODE)) {
        close_port(a);
        close_port(b);
        if (!skb_only)
            fprintf(stderr, "xdpfwd: native XDP refused, falling back to SKB mode\n");
        mode = "skb";
        if (open_port_retry(a, XDP_FLAGS_SKB_MODE) || open_port_retry(b, XDP_FLAGS_SKB_MODE)) {
            close_port(a);
            close_port(b);
            return 1;
        }
    }
    fprintf(stderr, "xdpfwd: %s <-> %s queue 0, XDP_COPY, mode %s, tx budget per sendto %s\n", a->name, b->name,
            mode, a->budget_ok && b->budget_ok ? "64" : "32 (kernel default)");

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct pollfd pfd[2] = {
        {.fd = xsk_socket__fd(a->xsk), .events = POLLIN},
        {.fd = xsk_socket__fd(b->xsk), .events = POLLIN},
    };
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
    uint32_t rounds = 0;
    while (!stop) {
        uint32_t got = forward(a, b, mac_to_b) + forward(b, a, mac_to_a);
        kick_tx(a);
        kick_tx(b);
        reap_completions(a);
        reap_completions(b);
        if (!got) {
            /* Idle: sleep in poll() unless TX still waits for the kernel. */
            if (!tx_unconsumed(&a->tx) && !tx_unconsumed(&b->tx))
                poll(pfd, 2, 1);
            if (now_ns() >= end)
                break;
        } else if ((++rounds & 1023) == 0 && now_ns() >= end) {
            break;
        }
    }
    /* Let the last TX drain (bounded: 100 rounds of 1 ms). */
    for (int i = 0; i < 100 && (a->tx_done < a->tx_sent || b->tx_done < b->tx_sent); i++) {
        kick_tx(a);
        kick_tx(b);
        reap_completions(a);
        reap_completions(b);
        poll(NULL, 0, 1);
    }
    print_xdp_stats(a);
    print_xdp_stats(b);
    printf("xdpfwd rx_a %llu rx_b %llu tx_a %llu tx_b %llu mode %s\n",
           (unsigned long long)a->rx_pkts, (unsigned long long)b->rx_pkts,
           (unsigned long long)a->tx_done, (unsigned long long)b->tx_done, mode);
    fflush(stdout);
    close_port(a);
    close_port(b);
    munmap(a->area, UMEM_SIZE);
    munmap(b->area, UMEM_SIZE);
    return 0;
}
