// Linux APIs the Glibc module leaves out (they need _GNU_SOURCE or are not in its umbrella):
// epoll and eventfd, for the socket server's reactor threads, and mallopt. Like swift-nio's CNIOLinux.
#ifndef MXRESOLVED_CLINUX_SHIM_H
#define MXRESOLVED_CLINUX_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <malloc.h>

// glibc gives each thread that allocates its own malloc arena; a daemon with a few busy threads
// then keeps far more memory than it uses. M_ARENA_MAX is a macro Swift cannot import.
static inline int clinux_limit_malloc_arenas(int count) { return mallopt(M_ARENA_MAX, count); }
#endif
