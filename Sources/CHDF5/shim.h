/*
 * CHDF5 shim: the HDF5 C API as seen from Swift.
 *
 * Many HDF5 "constants" are macros that expand to comma expressions such as
 * `(H5open(), H5T_NATIVE_FLOAT_g)` or to casts; Swift's Clang importer cannot import them.
 * Each one used by SwiftFlows is wrapped here in a `static inline` function prefixed `chdf5_`.
 * The few helpers with logic (link iteration, per-thread error silencing) hide differences between
 * HDF5 1.10 and 1.12+ so that the Swift code compiles against either.
 */
#ifndef SWIFTFLOWS_CHDF5_SHIM_H
#define SWIFTFLOWS_CHDF5_SHIM_H

#include <hdf5.h>

/* ---- predefined datatypes (memory) ---- */
static inline hid_t chdf5_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t chdf5_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t chdf5_H5T_NATIVE_INT8(void) { return H5T_NATIVE_INT8; }
static inline hid_t chdf5_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t chdf5_H5T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t chdf5_H5T_C_S1(void) { return H5T_C_S1; }

/* ---- predefined datatypes (file, fixed byte order) ---- */
static inline hid_t chdf5_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t chdf5_H5T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline hid_t chdf5_H5T_STD_I64LE(void) { return H5T_STD_I64LE; }

/* ---- sizes and special ids ---- */
static inline size_t chdf5_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline hid_t chdf5_H5S_ALL(void) { return H5S_ALL; }
static inline hid_t chdf5_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t chdf5_H5E_DEFAULT(void) { return H5E_DEFAULT; }

/* ---- file access flags ---- */
static inline unsigned chdf5_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned chdf5_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned chdf5_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned chdf5_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }

/* ---- property list classes ---- */
static inline hid_t chdf5_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t chdf5_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t chdf5_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t chdf5_H5P_GROUP_CREATE(void) { return H5P_GROUP_CREATE; }

/*
 * Disables HDF5's file locking (flock) for files opened with `fapl`, if this HDF5 version supports it
 * (1.10.7+, 1.12.1+). Returns a negative value on failure, 0 when unsupported or done.
 */
static inline herr_t chdf5_disable_file_locking(hid_t fapl) {
#if (H5_VERS_MAJOR > 1) || (H5_VERS_MINOR > 12) || (H5_VERS_MINOR == 12 && H5_VERS_RELEASE >= 1) || \
    (H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7)
    return H5Pset_file_locking(fapl, 0, 1);
#else
    (void)fapl;
    return 0;
#endif
}

/*
 * Turns off HDF5's automatic printing of error stacks for the calling thread.
 * In a thread-safe HDF5 build every thread has its own default error stack with its own
 * "auto" handler, so one call at start-up only silences the thread that made it.
 * The thread-local flag makes repeated calls cheap.
 */
static inline void chdf5_silence_errors_on_this_thread(void) {
    static _Thread_local int chdf5_silenced = 0;
    if (!chdf5_silenced) {
        if (H5Eset_auto2(H5E_DEFAULT, NULL, NULL) >= 0) {
            chdf5_silenced = 1;
        }
    }
}

/* ---- link iteration with a version-independent callback ---- */

/* Called once per link name; return 0 to continue, a positive value to stop, negative on error. */
typedef int (*chdf5_name_callback)(const char *name, void *context);

typedef struct chdf5_name_iteration {
    chdf5_name_callback callback;
    void *context;
} chdf5_name_iteration;

#if H5_VERSION_GE(1, 12, 0)
static inline herr_t chdf5_link_trampoline(hid_t group, const char *name, const H5L_info2_t *info,
                                           void *op_data) {
#else
static inline herr_t chdf5_link_trampoline(hid_t group, const char *name, const H5L_info_t *info,
                                           void *op_data) {
#endif
    (void)group;
    (void)info;
    chdf5_name_iteration *iteration = (chdf5_name_iteration *)op_data;
    return (herr_t)iteration->callback(name, iteration->context);
}

/*
 * Calls `callback` for every link of the group `group_id` in increasing name order.
 * Returns the H5Literate result: negative on failure, the callback's positive value if it stopped
 * the iteration early, 0 otherwise.
 */
static inline herr_t chdf5_iterate_link_names(hid_t group_id, chdf5_name_callback callback, void *context) {
    chdf5_name_iteration iteration;
    hsize_t index = 0;
    iteration.callback = callback;
    iteration.context = context;
#if H5_VERSION_GE(1, 12, 0)
    return H5Literate2(group_id, H5_INDEX_NAME, H5_ITER_INC, &index, chdf5_link_trampoline, &iteration);
#else
    return H5Literate(group_id, H5_INDEX_NAME, H5_ITER_INC, &index, chdf5_link_trampoline, &iteration);
#endif
}

#endif /* SWIFTFLOWS_CHDF5_SHIM_H */
