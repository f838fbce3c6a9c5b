// Linux APIs the Glibc module leaves out (they need _GNU_SOURCE or are not in its umbrella):
// epoll and eventfd, for the socket server's reactor threads, mallopt, and naming a thread.
// Like swift-nio's CNIOLinux.
#ifndef MXRESOLVED_CLINUX_SHIM_H
#define MXRESOLVED_CLINUX_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <malloc.h>

// Names the calling thread (top -H, core dumps); Linux keeps the first 15 bytes. prctl is variadic.
static inline int clinux_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

// glibc gives each thread that allocates its own malloc arena; a daemon with a few busy threads
// then keeps far more memory than it uses. M_ARENA_MAX is a macro Swift cannot import.
static inline int clinux_limit_malloc_arenas(int count) { return mallopt(M_ARENA_MAX, count); }
#endif
