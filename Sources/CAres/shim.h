// c-ares, plus the DNS class constant Swift cannot import from <arpa/nameser.h> as written
// (record types come from MXCore's DNSRecordType).
#ifndef MXRESOLVED_CARES_SHIM_H
#define MXRESOLVED_CARES_SHIM_H
#include <ares.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

enum { CARES_CLASS_IN = 1 };

#endif
