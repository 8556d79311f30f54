/* tcpconn: TCP connections per second, as in shared/bench-anchors.md (a
 * connect/accept/close loop). bench/switch_bench.py compiles it with gcc at run
 * time.
 *
 *   tcpconn server IP PORT           accept, close at once, forever
 *   tcpconn client IP PORT SECONDS   connect, wait for the server's FIN, close;
 *                                    prints "connections N" (completed)
 * The server closes first, so TIME_WAIT stays on its side and the client's
 * ephemeral ports come free at once. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: tcpconn server IP PORT | tcpconn client IP PORT SECONDS\n");
        return 2;
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(argv[3]));
    if (!inet_aton(argv[2], &sa.sin_addr))
        return 2;
    int one = 1;
    if (!strcmp(argv[1], "server")) {
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4096) < 0) {
            perror("server");
            return 1;
        }
        for (;;) {
            int c = accept(ls, NULL, NULL);
            if (c >= 0)
                close(c);
        }
    }
    if (argc != 5)
        return 2;
    double end = now_s() + atof(argv[4]);
    unsigned long long done = 0, failed = 0;
    char b[16];
    while (now_s() < end) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct timeval tv = {1, 0};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 && recv(s, b, sizeof(b), 0) == 0)
            done++;
        else
            failed++;
        close(s);
    }
    printf("connections %llu failed %llu\n", done, failed);
    return 0;
}
