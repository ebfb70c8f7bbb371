/*
 * CZlib shim: zlib as seen from Swift (FlowCore's IDX reader inflates .gz files with it).
 *
 * `inflateInit2` is a macro (it passes ZLIB_VERSION and sizeof(z_stream) to inflateInit2_),
 * which Swift's Clang importer cannot import; it is wrapped in a `static inline` function.
 */
#ifndef SWIFTFLOWS_CZLIB_SHIM_H
#define SWIFTFLOWS_CZLIB_SHIM_H

#include <zlib.h>

/* inflateInit2(stream, windowBits): windowBits 15 + 16 reads gzip only, 15 + 32 gzip or zlib. */
static inline int czlib_inflateInit2(z_streamp stream, int windowBits) {
    return inflateInit2(stream, windowBits);
}

#endif
