/* A UDP echo for the cross-node tests: `udp-echo serve PORT` answers each datagram with
 * "<hostname> <datagram>"; `udp-echo ask IP PORT TEXT` sends TEXT and prints the answer
 * (exit 1 after 2 s without one). Built static, so it runs in the busybox test image. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char buf[512], out[1024], host[256];
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return 2;
    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        a.sin_port = htons(atoi(argv[2]));
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) return 2;
        gethostname(host, sizeof host);
        for (;;) {
            struct sockaddr_in from;
            socklen_t len = sizeof from;
            ssize_t n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len);
            if (n < 0) continue;
            buf[n] = 0;
            int m = snprintf(out, sizeof out, "%s %s", host, buf);
            sendto(s, out, m, 0, (struct sockaddr *)&from, len);
        }
    }
    if (argc == 5 && strcmp(argv[1], "ask") == 0) {
        a.sin_port = htons(atoi(argv[3]));
        if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) return 2;
        struct timeval tv = {2, 0};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sendto(s, argv[4], strlen(argv[4]), 0, (struct sockaddr *)&a, sizeof a);
        ssize_t n = recv(s, buf, sizeof buf - 1, 0);
        if (n < 0) return 1;
        buf[n] = 0;
        printf("%s\n", buf);
        return 0;
    }
    fprintf(stderr, "usage: udp-echo serve PORT | ask IP PORT TEXT\n");
    return 2;
}
