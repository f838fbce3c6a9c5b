#define _GNU_SOURCE
/* Load client for mxresolved's line protocol (and for bench/echo.c, which mimics a hit's sizes).
 * One thread per connection; each keeps DEPTH requests `resolve NAME id=SEQ` in flight (depth 1 =
 * one request per round trip), matches answers by id and records each request's latency with
 * clock_gettime(CLOCK_MONOTONIC).
 *   loadgen SOCKET --conns N --depth D --secs S [--warmup S] --names FILE      (closed loop, names cycled)
 *   loadgen SOCKET --conns N --depth D --once --names FILE                     (each name once, then stop)
 *   loadgen SOCKET --conns N --depth D --once --ip-literals COUNT [--ip-offset K] [--max-secs S]  (names 11.x.y.1 ...)
 * Prints one JSON line: requests, seconds, rps, p50/p90/p99/max latency (µs), ok/err/cache counts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>

static const char *sock_path; static int conns = 1, depth = 1, once = 0;
static double secs = 3, warmup = 0.5;
static char **names; static long nnames; static long ipcount = 0, ipoffset = 0;
static atomic_long next_name; static atomic_int stop_flag, measuring;
static double t_start_measure, t_end, deadline = 1e300;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static long now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000L + t.tv_nsec; }

typedef struct { long *lat; long nlat, cap; long ok, err, cache, sent; pthread_t th; } worker;

static int make_name(long i, char *buf) {
    if (ipcount) { long k = i % ipcount + ipoffset; return sprintf(buf, "%ld.%ld.%ld.1", 11 + (k >> 16), (k >> 8) & 255, k & 255); }
    return sprintf(buf, "%s", names[i % nnames]);
}

static void *run(void *arg) {
    worker *w = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, sock_path, sizeof a.sun_path - 1);
    if (connect(fd, (void *)&a, sizeof a)) { perror("connect"); exit(1); }
    long *sent_at = calloc(1 << 16, sizeof(long));       /* by id (ids are per connection, mod 65536) */
    long seq = 0, inflight = 0;
    char out[64 * 600], in[1 << 16]; int inl = 0;
    static atomic_long cyc; long mycyc = atomic_fetch_add(&cyc, 7919);
    int done_sending = 0;
    for (;;) {
        int o = 0;
        while (!done_sending && inflight < depth && !atomic_load(&stop_flag)) {
            long idx;
            if (once && now() > deadline) { done_sending = 1; break; }
            if (once) { idx = atomic_fetch_add(&next_name, 1); if (idx >= (ipcount ? ipcount : nnames)) { done_sending = 1; break; } }
            else idx = mycyc++;
            char nb[300]; make_name(idx, nb);
            long id = seq++ & 0xffff;
            o += sprintf(out + o, "resolve %s id=%ld\n", nb, id);
            sent_at[id] = now_ns(); inflight++; w->sent++;
        }
        if (o && write(fd, out, o) != o) { perror("write"); exit(1); }
        if (inflight == 0 && (done_sending || atomic_load(&stop_flag))) break;
        ssize_t r = read(fd, in + inl, sizeof in - inl);
        if (r <= 0) { fprintf(stderr, "loadgen: connection closed\n"); exit(1); }
        inl += r;
        long t = now_ns(); int s = 0;
        for (int k = 0; k < inl; k++) {
            if (in[k] != '\n') continue;
            in[k] = 0; char *line = in + s; s = k + 1;
            char *p = strstr(line, " id=");
            long id = p ? strtol(p + 4, NULL, 10) : 0;
            inflight--;
            if (line[0] == 'o') w->ok++; else w->err++;
            if (strstr(line, "source=cache")) w->cache++;
            if (once || atomic_load(&measuring)) {
                if (w->nlat == w->cap) { w->cap = w->cap ? w->cap * 2 : 1 << 16; w->lat = realloc(w->lat, w->cap * sizeof(long)); }
                w->lat[w->nlat++] = t - sent_at[id];
            }
        }
        memmove(in, in + s, inl - s); inl -= s;
    }
    close(fd);
    return NULL;
}

static int cmpl(const void *a, const void *b) { long x = *(long *)a, y = *(long *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    const char *names_file = NULL;
    sock_path = argv[1];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--conns")) conns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--depth")) depth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--secs")) secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atof(argv[++i]);
        else if (!strcmp(argv[i], "--once")) once = 1;
        else if (!strcmp(argv[i], "--max-secs")) deadline = atof(argv[++i]);  /* --once: stop sending after S s */
        else if (!strcmp(argv[i], "--names")) names_file = argv[++i];
        else if (!strcmp(argv[i], "--ip-literals")) ipcount = atol(argv[++i]);
        else if (!strcmp(argv[i], "--ip-offset")) ipoffset = atol(argv[++i]);
        else { fprintf(stderr, "loadgen: unknown argument %s\n", argv[i]); return 2; }
    }
    if (depth > 250) depth = 250;
    if (names_file) {
        FILE *f = fopen(names_file, "r"); if (!f) { perror(names_file); return 2; }
        char b[300]; long cap = 1024; names = malloc(cap * sizeof *names);
        while (fgets(b, sizeof b, f)) { b[strcspn(b, "\n")] = 0; if (!*b) continue;
            if (nnames == cap) names = realloc(names, (cap *= 2) * sizeof *names);
            names[nnames++] = strdup(b); }
        fclose(f);
    } else if (!ipcount) { fprintf(stderr, "loadgen: --names or --ip-literals\n"); return 2; }
    if (!once && !ipcount && !nnames) return 2;
    worker *ws = calloc(conns, sizeof *ws);
    double t0 = now();
    if (deadline < 1e300) deadline += t0;
    for (int i = 0; i < conns; i++) pthread_create(&ws[i].th, NULL, run, &ws[i]);
    if (once) {
        atomic_store(&measuring, 1); t_start_measure = t0;
        for (int i = 0; i < conns; i++) pthread_join(ws[i].th, NULL);
        t_end = now();
    } else {
        usleep((useconds_t)(warmup * 1e6));
        atomic_store(&measuring, 1); t_start_measure = now();
        usleep((useconds_t)(secs * 1e6));
        atomic_store(&measuring, 0); t_end = now();
        atomic_store(&stop_flag, 1);
        for (int i = 0; i < conns; i++) pthread_join(ws[i].th, NULL);
    }
    long n = 0, ok = 0, err = 0, cache = 0;
    for (int i = 0; i < conns; i++) { n += ws[i].nlat; ok += ws[i].ok; err += ws[i].err; cache += ws[i].cache; }
    long *all = malloc((n + 1) * sizeof(long)), k = 0;
    for (int i = 0; i < conns; i++) { memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof(long)); k += ws[i].nlat; }
    qsort(all, n, sizeof(long), cmpl);
    double el = t_end - t_start_measure;
#define P(q) (n ? all[(long)((n - 1) * (q))] / 1000.0 : 0)
    printf("{\"conns\":%d,\"depth\":%d,\"requests\":%ld,\"seconds\":%.3f,\"rps\":%.0f,\"p50_us\":%.1f,\"p90_us\":%.1f,"
           "\"p99_us\":%.1f,\"max_us\":%.1f,\"ok\":%ld,\"err\":%ld,\"cache\":%ld}\n",
           conns, depth, n, el, n / el, P(0.5), P(0.9), P(0.99), P(1.0), ok, err, cache);
    return 0;
}
