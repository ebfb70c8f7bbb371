/*
 * fuzz_harness.c — runs one model file through the C API in a forked child process and reports
 * how the child ended. Used by tests/fuzz/fuzz.py (the mutation fuzzer) and by `make test`
 * (replay of the corpus in tests/fuzz/corpus).
 *
 * For each input file the child:
 *   1. loads it with sf_model_load (from the path) and sf_model_load_memory (from its bytes);
 *      both must give the same status;
 *   2. if a load succeeded: queries the shape, parameter count and spec, samples 3 rows,
 *      evaluates log_prob, forward and inverse on them and on 3 fixed rows, saves the model to
 *      memory and to a file, reloads the image and checks that log_prob is bit-identical;
 *   3. if the model loaded: calls sf_train_resume on the file with 256 rows of its event size
 *      (for 2-D models the toy set 8gaussians, seed 1, which the corpus checkpoints were trained
 *      on), cancelled after a few steps.
 * Any status is fine except SF_ERR_INTERNAL; what must never happen is a crash (a signal), a
 * hang (SIGALRM after the time limit), a sanitizer report (exit status 86), an inconsistency
 * (exit status 87) or an allocation bomb: the child sets the library's memory limit to
 * --memory-limit MB (default 512) and the parent kills it when its resident memory passes
 * --memory-cap MB (default 2048; outcome "memory"), which a model within the limit never comes
 * near. (An address-space cap would not do: AddressSanitizer maps terabytes of shadow memory.)
 * A path that is not a regular file (a FIFO, a device) is loaded by path only.
 *
 * Usage:
 *   fuzz_harness [OPTIONS] FILE...        replay: one line per file, exit 1 if any file crashed,
 *                                         hung, failed a check or gave SF_ERR_INTERNAL
 *   fuzz_harness --server [OPTIONS]       reads one path per line on stdin, answers one line per
 *                                         path on stdout (see `report` below)
 *   fuzz_harness --no-fork FILE           runs one file in this process (for a debugger)
 * OPTIONS: --timeout S, --memory-limit MB, --memory-cap MB
 *
 * The parent process never calls the library (so it has no threads when it forks).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "swiftflows.h"

#define EXIT_SANITIZER 86     /* set through ASAN_OPTIONS/UBSAN_OPTIONS exitcode by the driver */
#define EXIT_INCONSISTENT 87  /* a check of this harness failed */
#define EXIT_INTERNAL 88      /* the library returned SF_ERR_INTERNAL */
#define MAX_EVENT_EXERCISED (1u << 20) /* larger models are loaded but not evaluated */

static int g_pipe = -1; /* child -> parent: the summary line */
static unsigned long g_memory_limit_mb = 512;  /* the child's sf_set_memory_limit */
static unsigned long g_memory_cap_mb = 2048;   /* resident memory at which the parent kills the child */

/* The summary sent to the parent: "<path status> <memory status> <message>". */
static void summary(int st_path, int st_mem, const char *message) {
    char line[512];
    char clean[400];
    size_t k = 0;
    for (const char *p = message ? message : ""; *p && k + 1 < sizeof clean; p++)
        clean[k++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
    clean[k] = '\0';
    int len = snprintf(line, sizeof line, "%d %d %s\n", st_path, st_mem, clean);
    if (g_pipe >= 0 && len > 0) {
        ssize_t w = write(g_pipe, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
        (void)w;
    } else {
        fputs(line, stdout);
    }
}

static void inconsistent(const char *what) {
    fprintf(stderr, "fuzz_harness: inconsistency: %s (last error: %s)\n", what, sf_last_error());
    _exit(EXIT_INCONSISTENT);
}

static void check_status(int st, const char *call) {
    if (st == SF_ERR_INTERNAL) {
        fprintf(stderr, "fuzz_harness: %s returned SF_ERR_INTERNAL: %s\n", call, sf_last_error());
        _exit(EXIT_INTERNAL);
    }
    if (st < 0 || st > SF_ERR_MEMORY) {
        fprintf(stderr, "fuzz_harness: %s returned an undocumented status %d\n", call, st);
        _exit(EXIT_INCONSISTENT);
    }
}

/* The bytes of the regular file at `path` (NULL for anything else: opened without blocking, so a
 * FIFO never blocks the harness). */
static unsigned char *read_all(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
        if (len == cap) {
            unsigned char *bigger = realloc(buf, cap * 2);
            if (!bigger) { free(buf); buf = NULL; break; }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    *size = len;
    return buf;
}

static int same_bits_d(const double *a, const double *b, size_t n) {
    return memcmp(a, b, n * sizeof(double)) == 0;
}

static int cancel_after_steps(const sf_progress *p, void *user_data) {
    int *steps = user_data;
    if (p->kind == SF_PROGRESS_BATCH || p->kind == SF_PROGRESS_SKIPPED) ++*steps;
    return *steps >= 8;
}

/* Evaluates a loaded model on a few rows; every status is checked for SF_ERR_INTERNAL. */
static void exercise(sf_model *m, const char *scratch) {
    size_t d = 0, np = 0, shape[SF_MAX_EVENT_RANK + 1], nd = 0;
    check_status(sf_model_event_size(m, &d), "sf_model_event_size");
    check_status(sf_model_num_parameters(m, &np), "sf_model_num_parameters");
    check_status(sf_model_event_shape(m, shape, SF_MAX_EVENT_RANK + 1, &nd), "sf_model_event_shape");
    if (nd < 1 || nd > SF_MAX_EVENT_RANK) inconsistent("event rank outside 1...SF_MAX_EVENT_RANK");
    size_t prod = 1;
    for (size_t i = 0; i < nd; i++) prod *= shape[i];
    if (prod != d || d == 0) inconsistent("event size is not the product of the event shape");
    char *spec = NULL;
    check_status(sf_model_spec(m, &spec), "sf_model_spec");
    sf_buffer_free(spec);
    if (d > MAX_EVENT_EXERCISED) return;

    enum { N = 6 };
    float *x = calloc(N * d, sizeof(float)), *z = calloc(N * d, sizeof(float)), *y = calloc(N * d, sizeof(float));
    double lp[N], lp2[N], ld[N], ld2[N];
    if (!x || !z || !y) { free(x); free(z); free(y); return; }
    /* rows 0-2: fixed values; rows 3-5: samples */
    for (size_t i = 0; i < 3 * d; i++) x[i] = (float)((int)(i % 7) - 3) * 0.37f + (float)(i % 3);
    check_status(sf_sample(m, 3, 1, x + 3 * d, NULL), "sf_sample");
    check_status(sf_sample_temperature(m, 2, 0, 0.5f, z, lp), "sf_sample_temperature");
    check_status(sf_log_prob(m, x, N, lp), "sf_log_prob");
    int st = sf_forward(m, x, N, z, ld);
    check_status(st, "sf_forward");
    if (st == SF_OK) check_status(sf_inverse(m, z, N, y, ld2), "sf_inverse");
    check_status(sf_forward(m, x, N, x, NULL), "sf_forward (in place)");

    void *image = NULL;
    size_t size = 0;
    st = sf_model_save_memory(m, &image, &size);
    check_status(st, "sf_model_save_memory");
    if (st == SF_OK) {
        sf_model *again = NULL;
        st = sf_model_load_memory(image, size, &again);
        check_status(st, "sf_model_load_memory (saved image)");
        if (st != SF_OK) inconsistent("a saved model does not load again");
        for (size_t i = 0; i < 3 * d; i++) x[i] = (float)((int)(i % 5) - 2) * 0.61f;
        int a = sf_log_prob(m, x, 3, lp), b = sf_log_prob(again, x, 3, lp2);
        if (a != b || (a == SF_OK && !same_bits_d(lp, lp2, 3))) inconsistent("save -> load changed log_prob");
        sf_model_free(again);
        sf_buffer_free(image);
    }
    if (scratch) check_status(sf_model_save(m, scratch), "sf_model_save");
    free(x);
    free(z);
    free(y);
}

/* The work done for one file (in the child, or in this process with --no-fork). */
static void run_one(const char *path) {
    const char *scratch_dir = getenv("FUZZ_SCRATCH");
    char scratch[4096];
    int have_scratch = 0;
    if (scratch_dir && *scratch_dir) {
        snprintf(scratch, sizeof scratch, "%s/save-%ld.h5", scratch_dir, (long)getpid());
        have_scratch = 1;
    }
    sf_model *m = NULL, *mm = NULL;
    int st_path = sf_model_load(path, &m);
    check_status(st_path, "sf_model_load");
    char message[400];
    snprintf(message, sizeof message, "%s", st_path == SF_OK ? "" : sf_last_error());
    if ((st_path == SF_OK) != (m != NULL)) inconsistent("sf_model_load: status and *out_model disagree");

    size_t size = 0;
    unsigned char *bytes = read_all(path, &size);
    int st_mem = -1;
    if (bytes) {
        st_mem = sf_model_load_memory(bytes, size, &mm);
        check_status(st_mem, "sf_model_load_memory");
        if ((st_mem == SF_OK) != (mm != NULL)) inconsistent("sf_model_load_memory: status and *out_model disagree");
        /* The same bytes must give the same verdict (an empty file: FORMAT either way). */
        if (st_mem != st_path && !(size == 0)) {
            fprintf(stderr, "fuzz_harness: load from path gives %d, from memory %d (%s)\n", st_path, st_mem,
                    sf_last_error());
            _exit(EXIT_INCONSISTENT);
        }
        free(bytes);
    }
    if (m) exercise(m, have_scratch ? scratch : NULL);
    if (mm) exercise(mm, NULL);
    /* The C API cannot see the size of a data buffer: resume gets ROWS rows of the model's own
       event size (a file whose model part does not load is not resumed: the same loader refuses it). */
    size_t d = 0;
    if (m && sf_model_event_size(m, &d) != SF_OK) d = 0;
    sf_model_free(m);
    sf_model_free(mm);

    /* Checkpoints: resume on the points the corpus checkpoints were trained on (8gaussians, 2-D),
       or on fixed values for other event sizes. */
    enum { ROWS = 256, MAX_RESUME_EVENT = 4096 };
    float *points = d >= 1 && d <= MAX_RESUME_EVENT ? malloc(ROWS * d * sizeof(float)) : NULL;
    if (points && d != 2)
        for (size_t i = 0; i < ROWS * d; i++) points[i] = (float)((int)(i % 7) - 3) * 0.37f;
    if (points && (d != 2 || sf_toy_dataset("8gaussians", ROWS, 1, points) == SF_OK)) {
        int steps = 0;
        sf_model *r = NULL;
        sf_epoch_report history[4];
        size_t epochs = 0;
        if (have_scratch) {
            /* resume writes the checkpoint after each epoch: work on a copy */
            snprintf(scratch, sizeof scratch, "%s/resume-%ld.h5", scratch_dir, (long)getpid());
            size_t n = 0;
            unsigned char *b = read_all(path, &n);
            FILE *f = b ? fopen(scratch, "wb") : NULL;
            if (f) {
                fwrite(b, 1, n, f);
                fclose(f);
                int st = sf_train_resume(scratch, points, ROWS, NULL, 0, 2, cancel_after_steps, &steps, history, 4,
                                         &epochs, &r);
                check_status(st, "sf_train_resume");
                if ((st == SF_OK) != (r != NULL)) inconsistent("sf_train_resume: status and *out_model disagree");
                sf_model_free(r);
                unlink(scratch);
            }
            free(b);
        }
    }
    free(points);
    if (have_scratch) {
        snprintf(scratch, sizeof scratch, "%s/save-%ld.h5", scratch_dir, (long)getpid());
        unlink(scratch);
    }
    summary(st_path, st_mem, message);
}

typedef struct {
    char kind[16];   /* "ok" (finished), "crash", "timeout", "sanitizer", "inconsistent", "internal", "exit" */
    int signal_or_code;
    char line[512];  /* the child's summary line (without newline), if any */
} outcome;

static outcome run_forked(const char *path, unsigned timeout) {
    outcome o;
    memset(&o, 0, sizeof o);
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(o.kind, sizeof o.kind, "exit");
        o.signal_or_code = -1;
        return o;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        g_pipe = fds[1];
        alarm(timeout);
        if (sf_set_memory_limit((uint64_t)g_memory_limit_mb << 20) != SF_OK) _exit(EXIT_INCONSISTENT);
        run_one(path);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    int over_cap = 0;
    char statm[64];
    snprintf(statm, sizeof statm, "/proc/%ld/statm", (long)pid);
    long page = sysconf(_SC_PAGESIZE);
    for (;;) {
        /* Every 20 ms: the child's resident memory against the cap. */
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int ready = poll(&pfd, 1, 20);
        if (ready == 0 || (ready < 0 && errno == EINTR)) {
            FILE *f = fopen(statm, "r");
            unsigned long vm = 0, resident = 0;
            if (f) {
                if (fscanf(f, "%lu %lu", &vm, &resident) != 2) resident = 0;
                fclose(f);
            }
            if ((unsigned long long)resident * (unsigned long long)page > (unsigned long long)g_memory_cap_mb << 20) {
                over_cap = 1;
                kill(pid, SIGKILL);
                break;
            }
            continue;
        }
        ssize_t r = read(fds[0], o.line + len, sizeof o.line - 1 - len);
        if (r > 0) { len += (size_t)r; if (len >= sizeof o.line - 1) break; continue; }
        if (r < 0 && errno == EINTR) continue;
        break;
    }
    close(fds[0]);
    o.line[len] = '\0';
    if (len > 0 && o.line[len - 1] == '\n') o.line[len - 1] = '\0';
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (over_cap) {
        o.signal_or_code = (int)g_memory_cap_mb;
        snprintf(o.kind, sizeof o.kind, "memory");
    } else if (WIFSIGNALED(status)) {
        o.signal_or_code = WTERMSIG(status);
        snprintf(o.kind, sizeof o.kind, "%s", WTERMSIG(status) == SIGALRM ? "timeout" : "crash");
    } else {
        int code = WEXITSTATUS(status);
        o.signal_or_code = code;
        const char *k = code == 0 ? "ok" : code == EXIT_SANITIZER ? "sanitizer" : code == EXIT_INCONSISTENT
                        ? "inconsistent" : code == EXIT_INTERNAL ? "internal" : "exit";
        snprintf(o.kind, sizeof o.kind, "%s", k);
    }
    return o;
}

int main(int argc, char **argv) {
    unsigned timeout = 20;
    int server = 0, no_fork = 0, first = 1;
    for (; first < argc; first++) {
        if (strcmp(argv[first], "--server") == 0) server = 1;
        else if (strcmp(argv[first], "--no-fork") == 0) no_fork = 1;
        else if (strcmp(argv[first], "--timeout") == 0 && first + 1 < argc) timeout = (unsigned)atoi(argv[++first]);
        else if (strcmp(argv[first], "--memory-limit") == 0 && first + 1 < argc) g_memory_limit_mb = strtoul(argv[++first], NULL, 10);
        else if (strcmp(argv[first], "--memory-cap") == 0 && first + 1 < argc) g_memory_cap_mb = strtoul(argv[++first], NULL, 10);
        else break;
    }
    signal(SIGPIPE, SIG_IGN);
    if (no_fork) {
        if (sf_set_memory_limit((uint64_t)g_memory_limit_mb << 20) != SF_OK) return 2;
        for (int i = first; i < argc; i++) run_one(argv[i]);
        return 0;
    }
    if (server) {
        char path[8192];
        while (fgets(path, sizeof path, stdin)) {
            size_t n = strlen(path);
            while (n > 0 && (path[n - 1] == '\n' || path[n - 1] == '\r')) path[--n] = '\0';
            if (n == 0) continue;
            outcome o = run_forked(path, timeout);
            printf("%s %d %s\n", o.kind, o.signal_or_code, o.line);
            fflush(stdout);
        }
        return 0;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [--timeout S] [--memory-limit MB] [--memory-cap MB] FILE... | --server [...] | --no-fork FILE\n",
                argv[0]);
        return 2;
    }
    int bad = 0, loaded = 0;
    for (int i = first; i < argc; i++) {
        outcome o = run_forked(argv[i], timeout);
        int ok = strcmp(o.kind, "ok") == 0;
        if (!ok) {
            bad++;
            printf("FAIL %s: %s (%d) %s\n", argv[i], o.kind, o.signal_or_code, o.line);
        } else if (strncmp(o.line, "0 ", 2) == 0) {
            loaded++;
        }
    }
    printf("fuzz corpus replay: %d files, %d load, %d refused with a status, %d failed\n", argc - first, loaded,
           argc - first - loaded - bad, bad);
    return bad ? 1 : 0;
}
