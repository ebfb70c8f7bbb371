// CBLAS from Debian's OpenBLAS (libopenblas-dev), plus its thread-count controls.
#ifndef SWIFTFLOWS_CBLAS_SHIM_H
#define SWIFTFLOWS_CBLAS_SHIM_H
#include <cblas.h>
#endif
