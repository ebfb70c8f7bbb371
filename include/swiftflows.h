/*
 * swiftflows.h — the C API of SwiftFlows, a normalizing-flow engine.
 *
 * A flow maps data x to latent z = f(x) through a chain of invertible layers, with an exact
 * log-density  log p(x) = log p_Z(f(x)) + log|det df/dx|.  This API loads and saves models
 * (HDF5 files, schema in docs/model-format.md), builds them from a JSON architecture spec, and
 * evaluates them on caller-owned, row-major float32 buffers of n samples.
 *
 * Conventions
 * - Every fallible function returns an sf_status: SF_OK (0) on success, otherwise an error code
 *   whose text is sf_status_string(code); a message describing the last failure on the calling
 *   thread is available from sf_last_error(). On failure, output buffers may have been partly
 *   written and output handles are set to NULL.
 * - Data buffers hold n * event_size floats, sample-major: sample i occupies
 *   [i * event_size, (i + 1) * event_size). Image models use [N, C, H, W] order.
 * - Log-densities and log-determinants are double buffers of n entries (summed in double).
 * - Ownership: the caller owns every buffer it passes; the library never keeps a pointer to one
 *   after the call returns. Memory the library returns (sf_model_save_memory, sf_model_spec,
 *   sf_preset_defaults) is released with sf_buffer_free; models with sf_model_free. Every *_free accepts NULL.
 * - Nothing in this library aborts the process: every pointer, size and file is validated first,
 *   and what a call allocates is bounded by the memory limit (sf_set_memory_limit) and checked
 *   before it is allocated; an allocation the system refuses gives SF_ERR_MEMORY.
 *   Non-finite inputs are not refused: they propagate to NaN/Inf outputs.
 * - Files: the library opens only the paths it is given (never a file a model file names), opens
 *   them without blocking, and reads or replaces only regular files (a FIFO, device or socket is
 *   refused with SF_ERR_IO).
 *
 * Thread safety
 * - The library is thread-safe. A model is read-only during sf_forward, sf_inverse, sf_log_prob,
 *   sf_sample, sf_model_save, sf_model_save_memory, sf_model_spec, sf_model_event_size and
 *   sf_model_event_shape: any number of threads may call these on one model at once, and get
 *   the same results as one thread would.
 * - sf_train takes a model exclusively: calls on the same model from other threads wait until
 *   it returns (a readers-writer lock per model). The lock prefers writers: once sf_train waits,
 *   calls that arrive after it wait behind it, so a stream of readers cannot starve training.
 * - sf_cancel may be called from any thread at any time while the model exists (a watchdog
 *   thread, another request's handler); it takes no lock and returns at once.
 * - sf_model_free must not overlap with any other call on the same model (sf_cancel included).
 * - File I/O is serialised internally (the HDF5 library has one global lock).
 * - Batch work is spread over sf_get_num_threads() threads (default: the environment variable
 *   SWIFTFLOWS_NUM_THREADS, else the number of processors). Results do not depend on it.
 */
#ifndef SWIFTFLOWS_H
#define SWIFTFLOWS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this header; sf_version_number() gives the library's at run time. */
#define SF_VERSION_MAJOR 0
#define SF_VERSION_MINOR 1
#define SF_VERSION_PATCH 0
#define SF_VERSION_NUMBER (SF_VERSION_MAJOR * 10000 + SF_VERSION_MINOR * 100 + SF_VERSION_PATCH)
#define SF_VERSION_STRING "0.1.0"

/* Model file format version this library writes (docs/model-format.md). Readers accept any
 * file of the same major version and refuse a newer major version. */
#define SF_FORMAT_VERSION_MAJOR 1
#define SF_FORMAT_VERSION_MINOR 0

/* Largest rank of an event shape. */
#define SF_MAX_EVENT_RANK 4

/* Status codes. New codes may be added in minor versions; treat unknown non-zero codes as errors. */
typedef enum sf_status {
    SF_OK = 0,
    SF_ERR_INVALID_ARGUMENT = 1,    /* NULL pointer, zero/overflowing size, bad option      */
    SF_ERR_SHAPE = 2,               /* buffer or dataset of the wrong shape                 */
    SF_ERR_SPEC = 3,                /* the JSON architecture spec is malformed or invalid   */
    SF_ERR_IO = 4,                  /* a file could not be read or written                  */
    SF_ERR_FORMAT = 5,              /* not a valid SwiftFlows model file                    */
    SF_ERR_UNSUPPORTED_VERSION = 6, /* model file of a newer major format version           */
    SF_ERR_UNKNOWN_TYPE = 7,        /* unknown layer, distribution or preset type           */
    SF_ERR_LIMIT = 8,               /* a size limit was exceeded (dimensions, counts, text,
                                       the memory limit: sf_set_memory_limit)               */
    SF_ERR_NUMERIC = 9,             /* non-finite values: computed, or stored in a model file */
    SF_ERR_CANCELLED = 10,          /* cancelled by a callback or sf_cancel                 */
    SF_ERR_INTERNAL = 11,           /* a bug in SwiftFlows: please report it                */
    SF_ERR_CORRUPT = 12,            /* damaged model file: checksum mismatch, truncated or
                                       extended, damaged checksum block or HDF5 structures  */
    SF_ERR_MEMORY = 13              /* an allocation failed: the system is out of memory (a
                                       request above the memory limit is SF_ERR_LIMIT)      */
} sf_status;

/* Largest magnitude of a stored log-scale (the "log_scale" datasets of diagonal_normal, actnorm,
 * lu_linear and the LU invertible_conv1x1): e^30 keeps every scale and its inverse inside float32. */
#define SF_MAX_LOG_SCALE 30

/* Largest condition number ||W||_1 ||W^-1||_1 of an lu_linear or invertible_conv1x1 weight (plain or
 * LU): beyond it the float32 inverse no longer undoes the forward map. */
#define SF_MAX_CONDITION_NUMBER 1e6

/* Largest "max_steps" of a cnf layer (steps of one ODE solve; docs/model-format.md, "cnf"). */
#define SF_MAX_SOLVER_STEPS 100000

/* The default memory limit (bytes): see sf_set_memory_limit. */
#define SF_DEFAULT_MEMORY_LIMIT ((uint64_t)2 << 30)

/* An opaque model: a flow (layers + base distribution) and its parameters. */
typedef struct sf_model sf_model;

/* ---- Library information ---------------------------------------------------------------- */

/* "MAJOR.MINOR.PATCH" of the loaded library. Static storage; never NULL. */
const char *sf_version_string(void);

/* MAJOR * 10000 + MINOR * 100 + PATCH of the loaded library. */
int sf_version_number(void);

/* A fixed English description of a status code ("unknown status" for other values).
 * Static storage; never NULL. */
const char *sf_status_string(int status);

/* The message of the last failed call on this thread, or "" if none failed yet. The pointer
 * stays valid until the next failing sf_ call on the same thread; copy it to keep it. */
const char *sf_last_error(void);

/* Threads used for batch work (1..256); process-wide. Results do not depend on it. Raising it
 * above the largest count used so far (initially SWIFTFLOWS_NUM_THREADS, else the number of
 * processors) first warms OpenBLAS's work buffers for the new threads: one 512^3 product per
 * thread, up to 16 threads, a few milliseconds each (see FlowRuntime+BLASWarmUp.swift). */
int sf_set_num_threads(int num_threads);
int sf_get_num_threads(void);

/* The memory limit: the most bytes one call may allocate, process-wide (default
 * SF_DEFAULT_MEMORY_LIMIT, 2 GiB; the environment variable SWIFTFLOWS_MEMORY_LIMIT sets the
 * initial value in bytes). Everything is charged before it is allocated, and a call that would
 * pass the limit fails with SF_ERR_LIMIT without taking the memory:
 * - sf_model_create / sf_model_load / sf_model_load_memory / sf_train_resume: the model
 *   (parameters and their gradients, packed copies of weights, masks and plans, one chunk's
 *   scratch) and, for loads, the file's bytes (about three copies while HDF5 opens them);
 * - sf_train: the copies of the rows, the optimiser state and the gradient copies of a batch;
 * - evaluations: their scratch (calls run on fewer threads rather than pass the limit; results
 *   do not change).
 * A model of P float32 parameters needs about 12·P bytes (16·P to 24·P for autoregressive layers);
 * training adds about (16 + 4·copies)·P (copies: up to 16 gradient copies per batch).
 * sf_set_memory_limit: SF_ERR_INVALID_ARGUMENT below 1 MiB (1 << 20). Thread-safe; calls already
 * running keep the limit they started with. */
sf_status sf_set_memory_limit(uint64_t bytes);
uint64_t sf_get_memory_limit(void);

/* ---- Creating, loading, saving ----------------------------------------------------------- */

/* Builds a new model from a JSON architecture spec (docs/model-format.md), e.g.
 *   {"preset": "realnvp", "dim": 2, "layers": 8, "hidden": [64, 64]}
 * Presets: "realnvp" (affine couplings), "nice" (additive couplings), "nsf" (rational-quadratic
 * spline couplings), and for images "glow" and "realnvp_image" (e.g. {"preset": "glow",
 * "shape": [1, 28, 28], "levels": 2, "steps": 8, "hidden": 64}); or an explicit
 * {"event_shape": [...], "base": {...}, "layers": [...]}. Image models take integer levels
 * (their first layer is "dequantize"); sf_train adds the dequantisation noise itself.
 * Parameters are initialised from `seed` (any value, including 0); a new coupling flow is the
 * identity map. On success *out_model owns a new model; free it with sf_model_free. */
sf_status sf_model_create(const char *spec_json, uint64_t seed, sf_model **out_model);

/* The presets sf_model_create accepts: sf_preset_count() of them, named sf_preset_name(i) for
 * i < sf_preset_count() (NULL for a larger index), e.g. "realnvp". The names are in static
 * storage and never change while the library is loaded. Thread-safe. */
size_t sf_preset_count(void);
const char *sf_preset_name(size_t index);

/* The options of the preset `preset` (a name from sf_preset_name) with their defaults, as a
 * NUL-terminated JSON object owned by the caller (release with sf_buffer_free), e.g. for "nice"
 *   {"activation":"relu","base":"diagonal_normal","context":0,"dim":null,"hidden":[64,64],"layers":4,
 *    "mixing":"alternate"}
 * Every option a spec of this preset may give appears once (besides "preset"). null marks an
 * option without a default: the required ones ("dim", "shape") and ones left out unless given
 * ("data_levels"; glow's "alpha", which is 1e-6 with "preprocess": "logit"). *out_json is set to
 * NULL on failure. Statuses: SF_ERR_INVALID_ARGUMENT (NULL argument), SF_ERR_UNKNOWN_TYPE
 * (unknown preset; the message lists the known ones). Thread-safe. */
sf_status sf_preset_defaults(const char *preset, char **out_json);

/* Loads a model from an HDF5 file at `path` (UTF-8).
 * The path is opened without blocking and must be a regular file (a FIFO, device or directory
 * gives SF_ERR_IO at once). Its first bytes must start a model file (a SwiftFlows checksum block,
 * or the HDF5 signature at byte 0, 512, 1024, ...) before the rest is read (SF_ERR_FORMAT), and
 * its size counts against the memory limit (SF_ERR_LIMIT).
 * Before HDF5 parses anything, the file is checked (docs/model-format.md, "File checksum and
 * pre-checks"): files written by SwiftFlows carry a CRC-32 of their bytes, and a mismatch, a
 * truncated or extended file or a damaged checksum block gives SF_ERR_CORRUPT (a checksum block
 * of a newer version: SF_ERR_UNSUPPORTED_VERSION). Files without the block (written by h5py)
 * load after a structural pre-check. A file that would make HDF5 open another file — a dataset
 * with external storage, a virtual dataset, an external link — gives SF_ERR_FORMAT naming the
 * object, before any value is read. Other failures: SF_ERR_IO (cannot read the path),
 * SF_ERR_FORMAT (not a model file, missing/extra/mistyped groups, attributes or datasets, a
 * log-scale outside +-SF_MAX_LOG_SCALE), SF_ERR_UNSUPPORTED_VERSION (newer format major version),
 * SF_ERR_UNKNOWN_TYPE, SF_ERR_LIMIT (sizes, the memory limit, a cnf layer's solver limits),
 * SF_ERR_MEMORY, SF_ERR_NUMERIC (NaN or infinite parameter values; an lu_linear or
 * invertible_conv1x1 weight that is singular or has a condition number above
 * SF_MAX_CONDITION_NUMBER).
 * A model that loads has finite parameters and an inverse; its outputs are finite for finite
 * inputs unless an intermediate value overflows float32 (docs/model-format.md, "Readers"). */
sf_status sf_model_load(const char *path, sf_model **out_model);

/* Loads a model from an HDF5 file image of `size` bytes at `data` (e.g. read from a database).
 * The bytes are copied; the caller keeps ownership of `data`. Same checks and statuses as
 * sf_model_load (an image never makes the library open a file). */
sf_status sf_model_load_memory(const void *data, size_t size, sf_model **out_model);

/* Saves the model to `path` as HDF5. The file is written beside the target as a temporary file
 * and renamed into place, so an existing file is replaced whole or not at all.
 * - `path` must be a regular file or not exist: a FIFO, device, socket or directory is refused
 *   with SF_ERR_IO (nothing is written). A symbolic link is followed: the regular file it points
 *   to is replaced and the link stays (a dangling link or a loop: SF_ERR_IO).
 * - The temporary file is created exclusively: on Linux file systems with O_TMPFILE (ext4, xfs,
 *   btrfs, tmpfs) it has no name until it is complete, so a process killed mid-save leaves
 *   nothing; elsewhere it is ".<name>.tmp.<16 random hex digits>" from the start and a killed
 *   process can leave it. The library removes only the temporary file of its own save, never
 *   another file. */
sf_status sf_model_save(const sf_model *model, const char *path);

/* Serialises the model as an HDF5 file image. On success *out_data points to *out_size bytes
 * owned by the caller, to be released with sf_buffer_free. */
sf_status sf_model_save_memory(const sf_model *model, void **out_data, size_t *out_size);

/* The model's resolved architecture spec as a NUL-terminated JSON string owned by the caller
 * (release with sf_buffer_free). */
sf_status sf_model_spec(const sf_model *model, char **out_json);

/* Releases memory returned by the library. NULL is a no-op. */
void sf_buffer_free(void *buffer);

/* Releases a model. NULL is a no-op. */
void sf_model_free(sf_model *model);

/* Cancels the calls on `model` that are running or waiting for the model when sf_cancel is
 * called: each returns SF_ERR_CANCELLED at its next check — between chunks of rows, at every
 * function evaluation of a cnf layer's ODE solver, after every training step — with its outputs
 * partly written (sf_train: the model keeps the parameters of its last step). Calls that start
 * after sf_cancel returns run normally. Does not wait for the calls to stop. Thread-safe and
 * lock-free (see "Thread safety"). SF_ERR_INVALID_ARGUMENT for NULL. sf_train_resume builds its
 * model inside the call: cancel it from its progress callback. */
sf_status sf_cancel(const sf_model *model);

/* ---- Shape ------------------------------------------------------------------------------- */

/* Number of floats per sample (the product of the event shape). */
sf_status sf_model_event_size(const sf_model *model, size_t *out_size);

/* The event shape, e.g. {2} or {1, 28, 28}. Writes the rank to *out_ndim and, if `shape` is not
 * NULL, min(rank, capacity) extents to shape[]. Fails with SF_ERR_INVALID_ARGUMENT when shape is
 * not NULL and capacity < rank (*out_ndim still tells the rank needed). */
sf_status sf_model_event_shape(const sf_model *model, size_t *shape, size_t capacity, size_t *out_ndim);

/* Number of learnable parameters (scalars). */
sf_status sf_model_num_parameters(const sf_model *model, size_t *out_count);

/* ---- Evaluation -------------------------------------------------------------------------- */
/* n may be 0: nothing is read or written and the buffers may be NULL. n * event_size must not
 * overflow (SF_ERR_INVALID_ARGUMENT). `x`/`z` may be the
 * same buffer in sf_forward and sf_inverse (in-place). */

/* z = f(x) for n samples; if logdet is not NULL, logdet[i] = log|det df/dx| at x_i. */
sf_status sf_forward(const sf_model *model, const float *x, size_t n, float *z, double *logdet);

/* x = f^-1(z) for n samples; if logdet is not NULL, logdet[i] = log|det df^-1/dz| at z_i
 * (= minus the forward log-determinant at x_i). */
sf_status sf_inverse(const sf_model *model, const float *z, size_t n, float *x, double *logdet);

/* out[i] = log p(x_i) in nats. */
sf_status sf_log_prob(const sf_model *model, const float *x, size_t n, double *out);

/* Draws n samples into out (n * event_size floats). The same seed gives the same samples on every
 * run and for any thread count. The base draw of sample i depends only on (seed, i), so the first
 * k samples of a larger draw equal a draw of k samples up to float rounding. If log_prob is not
 * NULL, log_prob[i] = log p(out_i). */
sf_status sf_sample(const sf_model *model, size_t n, uint64_t seed, float *out, double *log_prob);

/* As sf_sample, with the base distribution's standard deviation scaled by `temperature` (> 0;
 * Glow's T). log_prob, if given, is the density of the model at temperature 1. */
sf_status sf_sample_temperature(const sf_model *model, size_t n, uint64_t seed, float temperature,
                                float *out, double *log_prob);

/* ---- Conditional models ------------------------------------------------------------------
 *
 * A conditional model p(x | c) (format 1.1, "context" in its spec) takes one context row of
 * sf_model_context_size values per data row. The functions above that take no context refuse
 * a conditional model (SF_ERR_INVALID_ARGUMENT, naming the _context variant); the _context
 * variants below accept both kinds: `context` must be NULL for an unconditional model (a
 * context given to it is refused with SF_ERR_INVALID_ARGUMENT) and non-NULL for a conditional
 * one when n > 0. `context` holds n rows of sf_model_context_size floats, borrowed for the call.
 * Thread safety, statuses and ownership as for the functions without context.
 * The base distribution may read the context too ("base": "conditional_diagonal_normal" in the
 * spec or a vector preset: its mean and log-scale are functions of the encoded context); specs
 * and files carry it, and the functions below evaluate, sample and train it unchanged. */

/* *out_size = context values per row (0: the model is unconditional). */
sf_status sf_model_context_size(const sf_model *model, size_t *out_size);

/* sf_forward, sf_inverse and sf_log_prob at context rows: log p(x_i | c_i) for sf_log_prob_context. */
sf_status sf_forward_context(const sf_model *model, const float *x, const float *context, size_t n, float *z,
                             double *logdet);
sf_status sf_inverse_context(const sf_model *model, const float *z, const float *context, size_t n, float *x,
                             double *logdet);
sf_status sf_log_prob_context(const sf_model *model, const float *x, const float *context, size_t n, double *out);

/* Draws n samples of a conditional model from n_context context rows: n_context = n gives one
 * context per sample; n_context = 1 broadcasts one context to all n; otherwise n_context must
 * divide n, and context row j gives samples j·(n/n_context) … (j+1)·(n/n_context) − 1 (n samples
 * for each of m observations, as sbi draws them). Sample i's base draw depends only on (seed, i),
 * as for sf_sample. log_prob (may be NULL) receives log p(x_i | c_i). For an unconditional model
 * pass context = NULL and n_context = 0 (then it is sf_sample). */
sf_status sf_sample_context(const sf_model *model, size_t n, uint64_t seed, const float *context, size_t n_context,
                            float *out, double *log_prob);

/* ---- Training ---------------------------------------------------------------------------- */
/* Maximum-likelihood training in the library: minibatches drawn in a seeded random order,
 * gradients by hand-derived backward passes, an optimiser step per minibatch. ActNorm layers
 * that are not initialised yet are initialised from the first minibatch (data-dependent init).
 * The result depends only on the model, the data and the options, not on the thread count. */

typedef enum sf_optimizer {
    SF_OPTIMIZER_ADAM = 0,   /* Adam with decoupled weight decay (AdamW)      */
    SF_OPTIMIZER_ADAMAX = 1, /* Adamax (Glow's optimiser)                     */
    SF_OPTIMIZER_SGD = 2     /* SGD with heavy-ball momentum                  */
} sf_optimizer;

typedef enum sf_schedule {
    SF_SCHEDULE_CONSTANT = 0, /* the learning rate after warm-up stays constant                     */
    SF_SCHEDULE_COSINE = 1,   /* cosine decay to min_lr_factor * learning_rate at the last step     */
    SF_SCHEDULE_STEP = 2      /* multiplied by gamma every step_size steps after warm-up           */
} sf_schedule;

/* One finished epoch. */
typedef struct sf_epoch_report {
    uint32_t epoch;            /* 1-based                                                      */
    uint32_t skipped_steps;    /* steps skipped because the loss or a gradient was not finite  */
    double train_nll;          /* mean NLL (nats) of the epoch's minibatches                   */
    double validation_nll;     /* mean NLL (nats) on the validation rows; NaN without them     */
    double learning_rate;      /* of the epoch's last step                                     */
    double samples_per_second; /* training rows per second                                     */
    double elapsed_seconds;    /* since sf_train started                                       */
    int32_t improved;          /* 1 if the validation NLL improved on the best so far          */
} sf_epoch_report;

typedef enum sf_progress_kind {
    SF_PROGRESS_BATCH = 0,   /* a minibatch step was taken                              */
    SF_PROGRESS_SKIPPED = 1, /* a step was skipped (non-finite loss or gradient)        */
    SF_PROGRESS_EPOCH = 2,   /* an epoch finished: `report` is set                      */
    SF_PROGRESS_STOPPED = 3  /* early stopping ends the run after `epoch`               */
} sf_progress_kind;

/* What a progress callback receives. Valid only during the callback. */
typedef struct sf_progress {
    sf_progress_kind kind;
    uint32_t epoch;             /* 1-based                                        */
    uint32_t batch;             /* 1-based, within the epoch (BATCH, SKIPPED)     */
    uint32_t batches_per_epoch;
    uint32_t best_epoch;        /* STOPPED: the epoch whose parameters are kept   */
    double loss;                /* BATCH: the minibatch's mean NLL                */
    double samples_per_second;  /* BATCH: rows per second so far in the epoch     */
    double elapsed_seconds;
    const sf_epoch_report *report; /* EPOCH only, else NULL                       */
    const char *message;        /* SKIPPED: the reason; else NULL                 */
} sf_progress;

/* Called on the training thread after every step, skipped step and epoch. Return 0 to continue,
 * non-zero to cancel: sf_train then returns SF_ERR_CANCELLED and the model keeps the parameters
 * of its last step. The callback must not call other functions on the model being trained. */
typedef int (*sf_progress_fn)(const sf_progress *progress, void *user_data);

/* Training options. Always initialise with sf_train_options_init, then change fields: new fields
 * may be appended in minor versions, and `struct_size` tells the library which ones you know. */
typedef struct sf_train_options {
    size_t struct_size;        /* sizeof(sf_train_options); set by sf_train_options_init      */
    uint32_t epochs;           /* default 50                                                   */
    uint32_t batch_size;       /* default 256                                                  */
    sf_optimizer optimizer;    /* default SF_OPTIMIZER_ADAM                                    */
    double learning_rate;      /* default 1e-3                                                 */
    double beta1, beta2;       /* default 0.9, 0.999 (Adam, Adamax)                           */
    double epsilon;            /* default 1e-8                                                 */
    double weight_decay;       /* decoupled; default 0                                         */
    double momentum;           /* SGD; default 0.9                                             */
    double clip_norm;          /* clip the global gradient norm; 0 (default) disables          */
    sf_schedule schedule;      /* default SF_SCHEDULE_CONSTANT                                 */
    uint32_t warmup_steps;     /* linear warm-up; default 0                                    */
    double min_lr_factor;      /* cosine: final rate / learning_rate; default 0                */
    uint32_t step_size;        /* step: steps between decays; default 1000                     */
    double gamma;              /* step: decay factor; default 0.5                              */
    double validation_fraction;/* held out when no validation rows are given; default 0.1      */
    uint32_t patience;         /* early stopping after this many epochs without improvement;
                                  0 (default) disables                                        */
    double min_delta;          /* an improvement must exceed this (nats); default 0            */
    int32_t restore_best;      /* restore the best validation epoch at the end; default 1      */
    uint64_t seed;             /* validation split and shuffles; default 0                     */
    const char *checkpoint_path; /* write a checkpoint (model + optimiser state, HDF5) after
                                    every epoch, atomically; NULL (default) for none          */
    sf_progress_fn progress;   /* NULL (default) for none                                      */
    void *user_data;           /* passed to progress                                           */
} sf_train_options;

/* Fills *options with the defaults above. Does nothing if options is NULL. */
void sf_train_options_init(sf_train_options *options);

/* Trains `model` in place on n rows of x (n * event_size floats). Validation rows are x_val
 * (n_val rows) if n_val > 0, else a seeded validation_fraction of x. Non-finite data are
 * refused (SF_ERR_NUMERIC, naming the row and column). If history is not NULL, the first
 * min(history_capacity, epochs run) epochs are written to it; *out_epochs (if not NULL) receives
 * the number of epochs run. Training takes the model exclusively: other calls on the same model
 * from other threads wait until it returns. A step whose loss or gradient is not finite is
 * skipped, and so is a step that would make a parameter non-finite, move a log-scale past
 * +-SF_MAX_LOG_SCALE or leave an lu_linear or invertible_conv1x1 weight without a usable inverse
 * (the step is undone): the model always saves as a file that loads. Skipped steps are reported
 * (SF_PROGRESS_SKIPPED with the reason, sf_epoch_report.skipped_steps); SF_ERR_NUMERIC if 100
 * consecutive steps were skipped (lower the learning rate, clip gradients or warm up).
 * SF_ERR_IO at once if options->checkpoint_path is not a regular file (see sf_model_save);
 * SF_ERR_LIMIT / SF_ERR_MEMORY for memory (sf_set_memory_limit); SF_ERR_CANCELLED after
 * sf_cancel or a progress callback's request. */
sf_status sf_train(sf_model *model, const float *x, size_t n, const float *x_val, size_t n_val,
                   const sf_train_options *options, sf_epoch_report *history, size_t history_capacity,
                   size_t *out_epochs);

/* Continues the run saved in the checkpoint at `checkpoint_path` on the same rows (and the same
 * x_val, if one was given): the new model in *out_model then reaches exactly the state of an
 * uninterrupted run. epochs = 0 keeps the planned number of epochs, otherwise replaces it.
 * progress/user_data as in the options; the checkpoint keeps being written after each epoch.
 * Data that differ from the checkpoint's give SF_ERR_INVALID_ARGUMENT. history/out_epochs as in
 * sf_train, covering every epoch since the run began. */
sf_status sf_train_resume(const char *checkpoint_path, const float *x, size_t n, const float *x_val,
                          size_t n_val, uint32_t epochs, sf_progress_fn progress, void *user_data,
                          sf_epoch_report *history, size_t history_capacity, size_t *out_epochs,
                          sf_model **out_model);

/* sf_train_resume for callers that know how many floats their rows hold: `row_size` values per
 * row of x and x_val, checked against the checkpoint's event size before either buffer is read
 * (SF_ERR_SHAPE when they differ; 0 trusts the file, as sf_train_resume does). The checkpoint is
 * read once. */
sf_status sf_train_resume_v2(const char *checkpoint_path, const float *x, size_t n, size_t row_size,
                             const float *x_val, size_t n_val, uint32_t epochs, sf_progress_fn progress,
                             void *user_data, sf_epoch_report *history, size_t history_capacity,
                             size_t *out_epochs, sf_model **out_model);

/* sf_train with context rows: `context` holds n rows and `context_val` n_val rows of
 * sf_model_context_size floats (both NULL for an unconditional model); each context row travels
 * with its data row through the validation split and every shuffle. Otherwise as sf_train. */
sf_status sf_train_context(sf_model *model, const float *x, const float *context, size_t n, const float *x_val,
                           const float *context_val, size_t n_val, const sf_train_options *options,
                           sf_epoch_report *history, size_t history_capacity, size_t *out_epochs);

/* sf_train_resume_v2 with the context rows of a conditional run (NULL for an unconditional one);
 * `context_size` (0: trust the file) is checked against the checkpoint's model like row_size. */
sf_status sf_train_resume_context(const char *checkpoint_path, const float *x, const float *context, size_t n,
                                  size_t row_size, size_t context_size, const float *x_val,
                                  const float *context_val, size_t n_val, uint32_t epochs, sf_progress_fn progress,
                                  void *user_data, sf_epoch_report *history, size_t history_capacity,
                                  size_t *out_epochs, sf_model **out_model);

/* ---- Data -------------------------------------------------------------------------------- */

/* The built-in 2-D toy data sets (FFJORD's recipes): sf_toy_dataset_count() of them, named
 * sf_toy_dataset_name(i) for i < sf_toy_dataset_count() (NULL for a larger index): "8gaussians",
 * "checkerboard", "rings", "moons", "circles", "swissroll", "pinwheel", "2spirals". The names are
 * in static storage and never change while the library is loaded. Thread-safe. */
size_t sf_toy_dataset_count(void);
const char *sf_toy_dataset_name(size_t index);

/* The differential entropy (nats) of the toy distribution `name`, where it is known: the best
 * achievable expected test NLL. On success *out_known is 1 and *out_entropy the entropy
 * (8gaussians ~2.831, checkerboard log 32, rings ~2.624), or *out_known is 0 and *out_entropy NaN
 * for the sets whose entropy is not known. SF_ERR_INVALID_ARGUMENT for a NULL argument or an
 * unknown name (listing the known names). Thread-safe. */
sf_status sf_toy_dataset_entropy(const char *name, double *out_entropy, int *out_known);


/* Writes n points (n * 2 floats) of the toy set `name`, generated from `seed` (the same on every
 * run and machine). SF_ERR_INVALID_ARGUMENT, listing the known names, for an unknown name. */
sf_status sf_toy_dataset(const char *name, size_t n, uint64_t seed, float *out);

/* n points of a conditional toy data set with a known conditional entropy: "8gaussians-rotated"
 * (c ~ U(0, 2π), x = 8gaussians rotated by c; H(x | c) = 2.831 nats) or "checkerboard-scaled"
 * (c ~ U(−0.5, 0.5), x = e^c · checkerboard; H(x | c) = log 32 + 2c). out_x receives n × 2 floats,
 * out_context n × 1; *out_entropy (may be NULL) the mean conditional entropy in nats, the best
 * achievable test NLL. Same (name, n, seed), same bits. SF_ERR_INVALID_ARGUMENT for an unknown
 * name (listing the known ones). */
sf_status sf_toy_conditional_dataset(const char *name, size_t n, uint64_t seed, float *out_x, float *out_context,
                                     double *out_entropy);

/* ---- File checksum ----------------------------------------------------------------------- */
/* Files SwiftFlows writes start with a 512-byte checksum block (an HDF5 user block holding
 * "SWIFTFLOWS-CHECKSUM 1\nsize <bytes>\ncrc32 <8 hex digits>\n", zero-padded; docs/model-format.md,
 * "File checksum and pre-checks"), and the loaders refuse a file whose bytes do not match it
 * (SF_ERR_CORRUPT). After a deliberate edit of such a file by another HDF5 program (e.g. h5py's
 * "r+" mode), reseal it. Only reseal files changed on purpose: the loaders then accept whatever
 * bytes the file holds (the structural pre-checks still apply). */

/* Size of the checksum block. */
#define SF_FILE_CHECKSUM_BLOCK_SIZE 512

/* Writes the SF_FILE_CHECKSUM_BLOCK_SIZE-byte checksum block for the file bytes data[0, size) to
 * out_block: it records `size` and the CRC-32 (zlib's) of the bytes after the first
 * SF_FILE_CHECKSUM_BLOCK_SIZE (the data's own first bytes are ignored; any bytes are accepted).
 * data may be NULL when size is 0. SF_ERR_INVALID_ARGUMENT for a NULL pointer or out_capacity <
 * SF_FILE_CHECKSUM_BLOCK_SIZE (nothing written). Reads only the caller's buffers; thread-safe. */
sf_status sf_file_checksum_block(const void *data, size_t size, void *out_block, size_t out_capacity);

/* Rewrites in place the checksum block (the first SF_FILE_CHECKSUM_BLOCK_SIZE bytes) of the HDF5
 * file image data[0, size). SF_ERR_FORMAT, leaving the bytes untouched, if the image has no
 * 512-byte user block (the HDF5 signature at offset 512), e.g. a file written by h5py, which needs
 * no checksum; SF_ERR_INVALID_ARGUMENT for NULL data. Thread-safe on distinct buffers. */
sf_status sf_file_reseal_memory(void *data, size_t size);

/* Rewrites the checksum block of the file at `path` (UTF-8), as sf_file_reseal_memory does. The
 * file is replaced atomically as in sf_model_save (a temporary file beside it, renamed into
 * place): it holds the old bytes or the resealed ones, never a mix. Statuses: SF_ERR_IO (cannot
 * read or write the path), SF_ERR_FORMAT (no 512-byte user block: the file is left alone),
 * SF_ERR_LIMIT (larger than the loaders read), SF_ERR_INVALID_ARGUMENT (NULL path). Does not lock
 * the file: do not reseal a file that another thread or process is writing. */
sf_status sf_file_reseal(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* SWIFTFLOWS_H */
