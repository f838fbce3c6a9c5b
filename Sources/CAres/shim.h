// c-ares plus the DNS constants and macros Swift cannot import as written.
#ifndef MXRESOLVED_CARES_SHIM_H
#define MXRESOLVED_CARES_SHIM_H
#include <ares.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

enum {
    CARES_TYPE_A = 1, CARES_TYPE_CNAME = 5, CARES_TYPE_SOA = 6, CARES_TYPE_AAAA = 28, CARES_TYPE_SRV = 33,
    CARES_CLASS_IN = 1,
};

static inline int cares_getsock_readable(int bits, int i) { return ARES_GETSOCK_READABLE(bits, i); }
static inline int cares_getsock_writable(int bits, int i) { return ARES_GETSOCK_WRITABLE(bits, i); }

#endif
