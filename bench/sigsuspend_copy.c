/* Preloaded into the daemon only for the bench's callgrind profile: valgrind 3.19 writes into the
 * mask passed to rt_sigsuspend, and libdispatch's signal thread passes a read-only one (valgrind
 * then dies with SIGSEGV). Hands the kernel a writable copy; the call is otherwise the same. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, _NSIG / 8);
}
