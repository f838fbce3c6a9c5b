// LMDB: the header imports as it is; the module map needs a header of its own to point at.
#ifndef MXRESOLVED_CLMDB_SHIM_H
#define MXRESOLVED_CLMDB_SHIM_H
#include <lmdb.h>
#endif
