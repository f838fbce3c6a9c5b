// Linux APIs the Glibc module leaves out (they need _GNU_SOURCE or are not in its umbrella):
// epoll and eventfd, for the socket server's reactor threads. Like swift-nio's CNIOLinux.
#ifndef MXRESOLVED_CLINUX_SHIM_H
#define MXRESOLVED_CLINUX_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif
