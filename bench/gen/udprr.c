/* UDP request/response latency: `udprr server ADDR PORT` echoes datagrams;
 * `udprr client ADDR PORT SECONDS` sends one 64-byte request at a time, waits for
 * its answer (1 s timeout: counted lost) and prints
 *   "rtt N p50_us P50 p99_us P99 lost L"
 * over every round trip. Used by bench/switch_bench.py (latency rows). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return fprintf(stderr, "usage: udprr server|client ADDR PORT [SECONDS]\n"), 2;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1)
        return fprintf(stderr, "bad address %s\n", argv[2]), 2;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    char buf[2048];
    if (!strcmp(argv[1], "server")) {
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            return perror("bind"), 1;
        for (;;) {
            struct sockaddr_in from;
            socklen_t fl = sizeof(from);
            ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
            if (n > 0)
                sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
        }
    }
    double seconds = argc > 4 ? atof(argv[4]) : 3.0;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return perror("connect"), 1;
    size_t cap = 1 << 22, n = 0, lost = 0;
    double *rtt = malloc(cap * sizeof(*rtt));
    memset(buf, 'x', 64);
    double end = now_us() + seconds * 1e6;
    while (now_us() < end && n < cap) {
        double t0 = now_us();
        if (send(fd, buf, 64, 0) < 0 || recv(fd, buf, sizeof(buf), 0) < 0) {
            lost++;
            continue;
        }
        rtt[n++] = now_us() - t0;
    }
    qsort(rtt, n, sizeof(*rtt), cmp);
    printf("rtt %zu p50_us %.1f p99_us %.1f lost %zu\n", n, n ? rtt[n / 2] : 0.0,
           n ? rtt[(size_t)(n * 0.99)] : 0.0, lost);
    return 0;
}
