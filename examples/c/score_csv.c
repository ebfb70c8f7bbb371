/*
 * score_csv — score CSV rows with a SwiftFlows model.
 *
 *     score_csv MODEL.h5 < data.csv > log_densities.txt
 *
 * Loads MODEL.h5, reads one sample per line from standard input (event_size comma-separated
 * numbers; an optional first line that is not numeric, e.g. "x,y", is taken as a header and
 * skipped; blank lines are ignored), and prints log p(x) in nats for each sample, one per line,
 * in input order. Rows are scored in batches of 1024 with sf_log_prob, so the memory used does
 * not grow with the input and results appear as the input streams in.
 *
 * Exit status 0 on success; 1 on any error (bad usage, a model that cannot be loaded, a ragged
 * or non-numeric row — reported with its line number —, a failed library call, a write error).
 * Densities of the batches before a bad row have already been printed when the error is found.
 *
 * Build (see README.md):  cc score_csv.c $(pkg-config --cflags --libs swiftflows) -o score_csv
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swiftflows.h"

#define BATCH_ROWS 1024

/* Prints "score_csv: WHAT: <status text> (<library message>)" for a failed library call. */
static void report(const char *what, sf_status status) {
    fprintf(stderr, "score_csv: %s: %s (%s)\n", what, sf_status_string(status), sf_last_error());
}

/* Reads one line of any length into *buf (grown as needed), without its line end ("\n" or
 * "\r\n"). Returns 1 for a line, 0 at the end of input, -1 on a read or memory error. */
static int read_line(FILE *in, char **buf, size_t *cap) {
    size_t len = 0;
    int c;
    while ((c = getc(in)) != EOF && c != '\n') {
        if (len + 2 > *cap) { /* room for c and the terminating NUL */
            size_t bigger_cap = *cap ? *cap * 2 : 256;
            char *bigger = realloc(*buf, bigger_cap);
            if (!bigger) return -1;
            *buf = bigger;
            *cap = bigger_cap;
        }
        (*buf)[len++] = c == '\0' ? '?' : (char)c; /* a NUL byte makes the row non-numeric */
    }
    if (ferror(in)) return -1;
    if (c == EOF && len == 0) return 0;
    if (*buf == NULL) { /* an empty line as the first read */
        if ((*buf = malloc(1)) == NULL) return -1;
        *cap = 1;
    }
    if (len > 0 && (*buf)[len - 1] == '\r') len--;
    (*buf)[len] = '\0';
    return 1;
}

/* Whether the line holds only spaces and tabs. */
static int is_blank(const char *s) {
    return s[strspn(s, " \t")] == '\0';
}

/* Parses comma-separated numbers into out[0 .. want-1]. Returns the number of fields found
 * (any count; only the first `want` are stored) or -1 if a field is not a number. */
static long parse_row(const char *line, float *out, size_t want) {
    long fields = 0;
    const char *p = line;
    for (;;) {
        char *end;
        float v = strtof(p, &end); /* skips leading white space; accepts 1e-3, nan, inf */
        if (end == p) return -1;   /* empty or not a number */
        end += strspn(end, " \t");
        if (*end != ',' && *end != '\0') return -1; /* e.g. "1.5abc" */
        if ((size_t)fields < want) out[fields] = v;
        fields++;
        if (*end == '\0') return fields;
        p = end + 1; /* after the comma */
    }
}

/* Scores `rows` samples and prints their log-densities. Returns 0 on success. */
static int score_batch(const sf_model *model, const float *x, size_t rows, double *log_p) {
    sf_status status = sf_log_prob(model, x, rows, log_p);
    if (status != SF_OK) {
        report("sf_log_prob", status);
        return -1;
    }
    for (size_t i = 0; i < rows; i++) printf("%.6f\n", log_p[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.h5 < data.csv\n"
                        "Prints log p(x) (nats) of each CSV row, one per line.\n", argv[0]);
        return 1;
    }

    /* 1. Load the model and ask how many numbers make one sample. */
    sf_model *model = NULL;
    sf_status status = sf_model_load(argv[1], &model);
    if (status != SF_OK) {
        fprintf(stderr, "score_csv: cannot load %s: %s (%s)\n", argv[1], sf_status_string(status), sf_last_error());
        return 1;
    }
    size_t event_size = 0;
    status = sf_model_event_size(model, &event_size);
    if (status != SF_OK) {
        report("sf_model_event_size", status);
        sf_model_free(model);
        return 1;
    }

    /* 2. Buffers for one batch: BATCH_ROWS samples, row-major, and their log-densities. The
     *    library never keeps these pointers; we own and free them. */
    float *batch = malloc(BATCH_ROWS * event_size * sizeof *batch);
    double *log_p = malloc(BATCH_ROWS * sizeof *log_p);
    char *line = NULL;
    size_t line_cap = 0, rows = 0;
    unsigned long line_no = 0;
    int seen_data = 0, exit_code = 0;
    if (!batch || !log_p) {
        fprintf(stderr, "score_csv: out of memory\n");
        exit_code = 1;
        goto done;
    }

    /* 3. Read, parse and score. */
    for (;;) {
        int got = read_line(stdin, &line, &line_cap);
        if (got < 0) {
            fprintf(stderr, "score_csv: error reading standard input (line %lu)\n", line_no + 1);
            exit_code = 1;
            goto done;
        }
        if (got == 0) break;
        line_no++;
        if (is_blank(line)) continue;

        long fields = parse_row(line, batch + rows * event_size, event_size);
        if (fields < 0 && !seen_data) { /* the first non-blank line is not numeric: a header */
            seen_data = 1;
            continue;
        }
        seen_data = 1;
        if (fields < 0) {
            fprintf(stderr, "score_csv: line %lu: not a comma-separated list of numbers\n", line_no);
            exit_code = 1;
            goto done;
        }
        if ((size_t)fields != event_size) {
            fprintf(stderr, "score_csv: line %lu: expected %zu values, found %ld\n", line_no, event_size, fields);
            exit_code = 1;
            goto done;
        }
        if (++rows == BATCH_ROWS) {
            if (score_batch(model, batch, rows, log_p) != 0) {
                exit_code = 1;
                goto done;
            }
            rows = 0;
        }
    }
    if (rows > 0 && score_batch(model, batch, rows, log_p) != 0) exit_code = 1;

done:
    /* 4. Release everything; report a failed write to stdout (e.g. a full disk). */
    free(line);
    free(batch);
    free(log_p);
    sf_model_free(model);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "score_csv: error writing standard output\n");
        exit_code = 1;
    }
    return exit_code;
}
