#define _GNU_SOURCE
/* Minimal Unix-socket "echo" floor for the cache-hit benchmark: one thread, epoll, for every
 * request line it answers one line of exactly RESP_BYTES bytes, "ok id=<request's id> xxx...\n",
 * i.e. the same sizes as a real mxresolved cache hit. usage: echo SOCKET_PATH RESP_BYTES */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/epoll.h>

#define MAXC 1024
static char inb[MAXC][8192]; static int inl[MAXC];

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: echo SOCKET RESP_BYTES\n"); return 2; }
    int resp = atoi(argv[2]);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1); unlink(argv[1]);
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (bind(ls, (void *)&a, sizeof a) || listen(ls, 1024)) { perror("bind/listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    static char out[1 << 20];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAXC) { close(c); continue; }
                    inl[c] = 0; ev.events = EPOLLIN; ev.data.fd = c; epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            ssize_t r = read(fd, inb[fd] + inl[fd], sizeof inb[fd] - inl[fd]);
            if (r <= 0) { close(fd); continue; }
            inl[fd] += r;
            int o = 0, s = 0;
            for (int k = 0; k < inl[fd]; k++) {
                if (inb[fd][k] != '\n') continue;
                inb[fd][k] = 0;
                char *id = strstr(inb[fd] + s, " id="), *e;
                int m = 0;
                if (id) { id++; e = strchr(id, ' '); m = e ? e - id : (int)strlen(id); }
                char *p = out + o;
                memcpy(p, "ok ", 3); memcpy(p + 3, id, m); p[3 + m] = ' ';
                memset(p + 4 + m, 'x', resp - 5 - m); p[resp - 1] = '\n';
                o += resp; s = k + 1;
                if (o > (int)sizeof out - 8192) { if (write(fd, out, o) < 0) break; o = 0; }
            }
            memmove(inb[fd], inb[fd] + s, inl[fd] - s); inl[fd] -= s;
            if (o && write(fd, out, o) < 0) close(fd);
        }
    }
}
