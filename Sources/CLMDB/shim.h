// LMDB: the header imports as is; this shim only fixes the version string macro Swift cannot import.
#ifndef MXRESOLVED_CLMDB_SHIM_H
#define MXRESOLVED_CLMDB_SHIM_H
#include <lmdb.h>
static inline const char *clmdb_version_string(void) { return MDB_VERSION_STRING; }
#endif
