/*
 * analyze.c — the smallest complete program on libdfd's public API (dfd.h only).
 *
 * Analyses each file named on the command line (image or video) and prints one line per
 * file: the verdict, P(fake) and, for a file that could not be analysed, the status code
 * and the reason. Exit status: 0 when every file was analysed, 1 otherwise.
 *
 * Build against an installed libdfd (docs/api.md, "The C library"):
 *   cc analyze.c -o analyze $(pkg-config --cflags --libs dfd)                 # libdfd.so
 *   cc analyze.c -o analyze $(pkg-config --cflags --static --libs dfd | sed 's/-ldfd /-l:libdfd.a /')
 * Run:
 *   ./analyze astronaut.jpg        ->  astronaut.jpg: REAL p_fake=0.123
 * The models are found where `cmake --install` put them (PREFIX/share/dfd/models), or in
 * $DFD_MODELS_DIR, or in the folder given as models_dir below.
 */
#include <stdio.h>

#include <dfd/dfd.h>

/* Progress of a long analysis (videos): return non-zero to cancel it. */
static int on_progress(void *user, double fraction) {
    (void)user;
    (void)fraction;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE...   (libdfd %s)\n", argv[0], dfd_version());
        return 2;
    }
    dfd_options opts;
    dfd_options_default(&opts); /* the default shipped models, all cores, 30 frames a video */
    dfd_ctx *ctx;
    dfd_error err;
    if (dfd_ctx_create(&opts, &ctx, &err) != DFD_OK) {
        fprintf(stderr, "cannot load the models: %s\n", err.message);
        return 1;
    }
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        dfd_result *r;
        if (dfd_analyze_file(ctx, argv[i], on_progress, NULL, &r, &err) != DFD_OK) {
            /* No result at all (out of memory): rare. */
            fprintf(stderr, "%s: %s\n", argv[i], err.message);
            failed = 1;
            continue;
        }
        dfd_verdict v = dfd_result_verdict(r);
        if (v == DFD_VERDICT_ERROR) {
            /* The file could not be analysed: the status says why in a word, the message in full. */
            int status = dfd_result_status(r);
            printf("%s: ERROR status=%d (%s): %s\n", argv[i], status, dfd_strerror(status), dfd_result_error(r));
            failed = 1;
        } else if (v == DFD_VERDICT_NO_FACE) {
            printf("%s: NO_FACE\n", argv[i]);
        } else {
            const char *kind = dfd_fake_kind_name(dfd_result_kind(r)); /* NULL unless FAKE */
            printf("%s: %s p_fake=%.3f%s%s\n", argv[i], dfd_verdict_name(v), dfd_result_p_fake(r),
                   kind ? " kind=" : "", kind ? kind : "");
        }
        dfd_result_free(r);
    }
    dfd_ctx_destroy(ctx);
    return failed;
}
