/* fuzz_csv — libFuzzer harness for the dataset manifest readers (src/train/dataset.c):
 * labels.csv / manifest.csv (RFC 4180 quoting, header columns in any order, labels,
 * frames, boxes, splits), which `dfd train`, `dfd eval` and `dfd prepare` read from any
 * dataset folder, and the manifest writer on top.
 *
 * The input is written as labels.csv in a private folder (made once per process, removed
 * at exit) and opened as a generic dataset; whatever loads is written back with
 * dfd_dataset_write_manifest and read again, which must give the same items (count,
 * labels, frames, splits): the writer's quoting must be what the reader reads. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/train.h"

static char dir[64], dir2[80];

static void cleanup(void) {
    char p[128];
    snprintf(p, sizeof p, "%s/labels.csv", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/manifest.csv", dir2);
    unlink(p);
    rmdir(dir2);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        /* In memory where there is a tmpfs: the manifest writer fsyncs, and on a disk that
         * wait, not the parsing, set the pace (about 200 runs a second on a busy machine). */
        struct stat st;
        const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/fuzz-csv-XXXXXX", base);
        if (!mkdtemp(dir)) abort();
        snprintf(dir2, sizeof dir2, "%s/again", dir);
        if (mkdir(dir2, 0700) != 0) abort();
        atexit(cleanup);
    }
    char p[128];
    snprintf(p, sizeof p, "%s/labels.csv", dir);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    dfd_dataset *d = NULL;
    dfd_error e;
    if (dfd_dataset_open(dir, DFD_LAYOUT_GENERIC, &d, &e) != DFD_OK) {
        if (d) abort();
        return 0;
    }
    char m[128];
    snprintf(m, sizeof m, "%s/manifest.csv", dir2);
    if (dfd_dataset_write_manifest(d, m, &e) != DFD_OK) abort();
    dfd_dataset *d2 = NULL;
    if (dfd_dataset_open(dir2, DFD_LAYOUT_GENERIC, &d2, &e) != DFD_OK) {
        fprintf(stderr, "written manifest does not read back: %s\n", e.message);
        abort();
    }
    if (d2->n != d->n) abort();
    for (size_t i = 0; i < d->n; i++) {
        const dfd_item *a = &d->items[i], *b = &d2->items[i];
        if (a->label != b->label || a->frame != b->frame || a->split != b->split) {
            fprintf(stderr, "item %zu differs after a round trip\n", i);
            abort();
        }
    }
    unlink(m);
    dfd_dataset_free(d2);
    dfd_dataset_free(d);
    return 0;
}
