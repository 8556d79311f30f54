/* udpgen: one-thread AF_PACKET sendmmsg generator of 64-byte UDP frames, as in
 * shared/bench-anchors.md (batch 64, PACKET_QDISC_BYPASS, SO_SNDBUFFORCE).
 * bench/switch_bench.py compiles it with gcc at run time and runs it inside the
 * sender pod's namespace.
 *
 *   udpgen IFNAME SRC_MAC DST_MAC SRC_IP DST_IP FLOWS SECONDS [syn]
 *
 * syn: TCP SYNs instead of UDP (with a correct TCP checksum, so the receiving
 *      kernel answers them): with FLOWS = 0, a SYN flood (tests/switch/test_flood.py).
 * FLOWS > 0: source ports 10000.. cycle over FLOWS flows to destination port 9.
 * FLOWS = 0: every packet a new flow (source port and destination port both
 *            advance, 64,512 x 64,000 distinct pairs before any repeats).
 * Prints "sent N" (frames the kernel accepted) on exit. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define FRAME 60 /* 64 on the wire with the FCS */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int parse_mac(const char *s, uint8_t *m)
{
    return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) == 6
               ? 0 : -1;
}

static uint16_t ip_csum(const uint8_t *h)
{
    uint32_t s = 0;
    for (int i = 0; i < 20; i += 2)
        s += (uint32_t)(h[i] << 8 | h[i + 1]);
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    return (uint16_t)~s;
}

/* The TCP checksum of a 20-byte header with no payload, pseudo-header included. */
static void tcp_csum(uint8_t *t, const struct in_addr *s, const struct in_addr *d)
{
    const uint8_t *a = (const uint8_t *)&s->s_addr, *b = (const uint8_t *)&d->s_addr;
    uint32_t sum = (uint32_t)(a[0] << 8 | a[1]) + (uint32_t)(a[2] << 8 | a[3]) +
                   (uint32_t)(b[0] << 8 | b[1]) + (uint32_t)(b[2] << 8 | b[3]) + 6 + 20;
    t[16] = t[17] = 0;
    for (int i = 0; i < 20; i += 2)
        sum += (uint32_t)(t[i] << 8 | t[i + 1]);
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    sum = ~sum & 0xFFFF;
    t[16] = (uint8_t)(sum >> 8);
    t[17] = (uint8_t)sum;
}

int main(int argc, char **argv)
{
    if (argc != 8 && !(argc == 9 && strcmp(argv[8], "syn") == 0)) {
        fprintf(stderr, "usage: udpgen IFNAME SRC_MAC DST_MAC SRC_IP DST_IP FLOWS SECONDS [syn]\n");
        return 2;
    }
    const int syn = argc == 9;
    uint8_t smac[6], dmac[6];
    struct in_addr sip, dip;
    if (parse_mac(argv[2], smac) || parse_mac(argv[3], dmac) || !inet_aton(argv[4], &sip) ||
        !inet_aton(argv[5], &dip)) {
        fprintf(stderr, "udpgen: bad address\n");
        return 2;
    }
    long flows = atol(argv[6]);
    double seconds = atof(argv[7]);
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    int one = 1, sndbuf = 4 << 20;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = (int)if_nametoindex(argv[1]);
    sll.sll_protocol = 0;
    if (!sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        perror("bind");
        return 1;
    }
    static uint8_t frames[BATCH][FRAME];
    struct iovec iov[BATCH];
    struct mmsghdr msg[BATCH];
    memset(msg, 0, sizeof(msg));
    for (int i = 0; i < BATCH; i++) {
        uint8_t *f = frames[i];
        memset(f, 0, FRAME);
        memcpy(f, dmac, 6);
        memcpy(f + 6, smac, 6);
        f[12] = 0x08;
        f[13] = 0x00;
        uint8_t *ip = f + 14;
        ip[0] = 0x45;
        ip[3] = syn ? 40 : 46;   /* 20 + 20, or 20 + 8 + 18 */
        ip[8] = 64;
        ip[9] = syn ? 6 : 17;
        memcpy(ip + 12, &sip, 4);
        memcpy(ip + 16, &dip, 4);
        uint16_t c = ip_csum(ip);
        ip[10] = (uint8_t)(c >> 8);
        ip[11] = (uint8_t)c;
        uint8_t *udp = ip + 20;
        if (syn) {
            udp[12] = 0x50;   /* data offset 5 words */
            udp[13] = 0x02;   /* SYN */
            udp[14] = 0xff;   /* window */
        } else {
            udp[5] = 26;      /* length 8 + 18; checksum 0 (none, IPv4) */
        }
        iov[i].iov_base = f;
        iov[i].iov_len = FRAME;
        msg[i].msg_hdr.msg_iov = &iov[i];
        msg[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t seq = 0, sent = 0;
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
    while (now_ns() < end) {
        for (int i = 0; i < BATCH; i++, seq++) {
            uint8_t *udp = frames[i] + 34;
            uint16_t sport, dport;
            if (flows > 0) {
                sport = (uint16_t)(10000 + seq % (uint64_t)flows);
                dport = 9;
            } else {
                sport = (uint16_t)(1024 + seq % 64512);
                dport = (uint16_t)(1024 + (seq / 64512) % 64000);
            }
            udp[0] = (uint8_t)(sport >> 8);
            udp[1] = (uint8_t)sport;
            udp[2] = (uint8_t)(dport >> 8);
            udp[3] = (uint8_t)dport;
            if (syn)
                tcp_csum(udp, &sip, &dip);
        }
        int r = sendmmsg(fd, msg, BATCH, 0);
        if (r > 0)
            sent += (uint64_t)r;
        else if (r < 0 && errno != EAGAIN && errno != ENOBUFS && errno != EINTR) {
            perror("sendmmsg");
            break;
        }
    }
    printf("sent %llu\n", (unsigned long long)sent);
    return 0;
}
