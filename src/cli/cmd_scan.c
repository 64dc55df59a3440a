/* cmd_scan.c — `dfd scan`: verdicts for images and videos, a line per file or one JSON
 * document per run. The models are loaded once for all files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

enum { O_JSON = 256, O_THRESH, O_AGG, O_THREADS, O_EXPLAIN, O_EXPLAIN_DIR };

static const cli_opt scan_opts[] = {
    {NULL, 0, NULL, "Options:"},
    {"json", O_JSON, NULL, "print one dfd.result/1 JSON document (docs/result-schema.md)"},
    CLI_MODEL_OPTS,
    {"threshold", O_THRESH, "T", "the image model's decision threshold (default: its own; the\n"
                                 "synthetic-face model always uses its own)"},
    {"aggregate", O_AGG, "HOW", "confident (default) or mean, over a track's frames"},
    {"threads", O_THREADS, "N", "CPU threads (default: all cores)"},
    {"explain", O_EXPLAIN, NULL, "a heat map per face in the JSON (faces[].heatmap): where in the\n"
                                 "face's crop the evidence for \"fake\" is, per detector"},
    {"explain-dir", O_EXPLAIN_DIR, "DIR", "with --explain, also write per face a PNG of its crop (videos: of\n"
                                          "the track's most suspicious frame) with the map blended over it\n"
                                          "(DIR/FILE_faceN.png; with a synthetic-face model, its map beside)"},
    {"recursive", 'r', NULL, "walk sub-directories"},
    {"quiet", 'q', NULL, "no progress bar"},
    {0}};

const cli_command cmd_scan_cmd = {
    "scan",
    "Usage: dfd scan [OPTIONS] FILE|DIR...\n\n"
    "Says whether the faces in images and videos are real or fake. Images and videos are\n"
    "told apart by content. A directory is scanned for media files (-r: and its\n"
    "sub-directories); files in it that are not images or videos are skipped.\n\n",
    scan_opts,
    "Verdicts: FAKE, REAL, NO_FACE (no face to judge), ERROR (the file could not be read).\n"
    "A file is FAKE when either detector reaches its own threshold; the percentage is the score\n"
    "of the detector that went furthest past (or came closest to) its threshold. With a\n"
    "synthetic-face detector, each line also gives both scores and, for FAKE, the kind:\n"
    "manipulated (a real face swapped or altered), synthetic (a generated face) or both.\n"
    "Exit codes: 0 every file was analysed (whatever the verdicts), 1 some file failed,\n"
    "2 usage error.\n"};

typedef struct scan_progress {
    cli_progress bar;
    int file, nfiles;
    const char *name;
} scan_progress;

static int on_progress(void *user, double fraction) {
    scan_progress *p = user;
    char detail[96];
    snprintf(detail, sizeof detail, "%d/%d %.60s", p->file + 1, p->nfiles, p->name);
    cli_progress_update(&p->bar, (p->file + fraction) / p->nfiles, detail);
    return 0;
}

static void print_human(const dfd_result *r, int color) {
    dfd_verdict verdict = dfd_result_verdict(r);
    const char *col = "", *off = color ? "\033[0m" : "";
    if (color) {
        switch (verdict) {
        case DFD_VERDICT_FAKE: col = "\033[1;31m"; break;
        case DFD_VERDICT_REAL: col = "\033[1;32m"; break;
        case DFD_VERDICT_NO_FACE: col = "\033[90m"; break;
        default: col = "\033[1;33m"; break;
        }
    }
    char score[16] = "     -";
    double p_fake = dfd_result_p_fake(r), p_m = dfd_result_p_manipulated(r), p_s = dfd_result_p_synthetic(r);
    if (!isnan(p_fake)) snprintf(score, sizeof score, "%5.1f%%", 100.0 * p_fake);
    printf("%s%-7s%s %s  %s", col, dfd_verdict_name(verdict), off, score, dfd_result_file(r));
    if (verdict == DFD_VERDICT_ERROR) {
        const char *e = dfd_result_error(r);
        printf("  (%s)\n", e ? e : "error");
        return;
    }
    int n_faces = dfd_result_face_count(r);
    if (dfd_result_media(r) == DFD_MEDIA_VIDEO) {
        printf("  (%d %s, %d frames", n_faces, n_faces == 1 ? "face track" : "face tracks", dfd_result_frame_count(r));
        if (dfd_result_frames_skipped(r)) printf(", %d skipped", dfd_result_frames_skipped(r));
        printf(")");
    } else {
        printf("  (%d %s)", n_faces, n_faces == 1 ? "face" : "faces");
    }
    /* Both detectors' scores when a synthetic-face detector ran (without one the line is
     * as it always was, and a FAKE is necessarily a manipulation). */
    if (!isnan(p_s) && !isnan(p_m)) {
        printf("  manipulated %.1f%%, synthetic %.1f%%", 100.0 * p_m, 100.0 * p_s);
        const char *kind = verdict == DFD_VERDICT_FAKE ? dfd_fake_kind_name(dfd_result_kind(r)) : NULL;
        if (kind) printf(": %s", kind);
    }
    printf("\n");
}

/* ---- Heat-map overlays (--explain-dir) ---------------------------------------------- */

#define OVERLAY_SCALE 3 /* the crop enlarged 3 times: 384 px for a 128 px crop */

/* A blue-cyan-yellow-red colour ramp for v in [0, 1]. */
static void heat_color(float v, float c[3]) {
    static const float stops[5][3] = {{0, 0, 160}, {0, 160, 255}, {255, 255, 0}, {255, 128, 0}, {230, 0, 0}};
    float t = v * 4.0f;
    int k = t >= 4.0f ? 3 : (int)t;
    float f = t - (float)k;
    for (int i = 0; i < 3; i++) c[i] = stops[k][i] * (1 - f) + stops[k + 1][i] * f;
}

/* The map's value at a point of the crop (fractions of its side), bilinear between cell centres. */
static float map_at(const float *m, int g, float fx, float fy) {
    float x = fx * (float)g - 0.5f, y = fy * (float)g - 0.5f;
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    if (x > (float)(g - 1)) x = (float)(g - 1);
    if (y > (float)(g - 1)) y = (float)(g - 1);
    int x0 = (int)x, y0 = (int)y, x1 = x0 + 1 < g ? x0 + 1 : x0, y1 = y0 + 1 < g ? y0 + 1 : y0;
    float tx = x - (float)x0, ty = y - (float)y0;
    return (m[y0 * g + x0] * (1 - tx) + m[y0 * g + x1] * tx) * (1 - ty) +
           (m[y1 * g + x0] * (1 - tx) + m[y1 * g + x1] * tx) * ty;
}

/* Draws the crop enlarged with one map blended over it into a panel of out (stride W). */
static void draw_panel(uint8_t *out, int W, int x_off, const dfd_heatmap *h, const float *m) {
    const int S = h->crop_side, P = S * OVERLAY_SCALE;
    for (int y = 0; y < P; y++)
        for (int x = 0; x < P; x++) {
            int sx = x / OVERLAY_SCALE, sy = y / OVERLAY_SCALE;
            const uint8_t *px = h->crop_rgb + ((size_t)sy * S + sx) * 3;
            float v = map_at(m, h->grid, ((float)x + 0.5f) / (float)P, ((float)y + 0.5f) / (float)P);
            float col[3], a = 0.15f + 0.45f * v; /* cold regions lightly tinted, hot ones strongly */
            heat_color(v, col);
            uint8_t *o = out + ((size_t)y * W + x_off + x) * 3;
            for (int k = 0; k < 3; k++) o[k] = (uint8_t)lrintf((1 - a) * (float)px[k] + a * col[k]);
        }
}

/* One PNG per face with a heat map: DIR/NAME_faceN.png (N the face's or track's id in the
 * JSON), the manipulation detector's map and, when there is one, the synthetic-face
 * detector's beside it. */
static int write_overlays(const char *dir, const char *file, const dfd_result *r, dfd_error *err) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    for (int i = 0; i < dfd_result_face_count(r); i++) {
        dfd_heatmap h;
        if (dfd_result_face_heatmap(r, i, &h) != DFD_OK || !h.crop_rgb) continue;
        const int P = h.crop_side * OVERLAY_SCALE, panels = h.synthetic ? 2 : 1, W = P * panels;
        uint8_t *img = malloc((size_t)W * (size_t)P * 3);
        if (!img) return cli_fail(err, DFD_E_NOMEM, "out of memory");
        draw_panel(img, W, 0, &h, h.manipulated);
        if (h.synthetic) draw_panel(img, W, P, &h, h.synthetic);
        char path[4400];
        int n = snprintf(path, sizeof path, "%s/%s_face%d.png", dir, base, i);
        int rc = n < 0 || (size_t)n >= sizeof path ? cli_fail(err, DFD_E_ARG, "path too long: '%s/%s'", dir, base)
                                                   : dfd_png_write(path, img, W, P, err);
        free(img);
        if (rc) return rc;
    }
    return DFD_OK;
}

int cmd_scan(int argc, char **argv) {
    dfd_options o;
    dfd_options_default(&o);
    int json = 0, recursive = 0, quiet = 0, c;
    const char *explain_dir = NULL;
    long v;
    double d;
    const char *val;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_scan_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((c = cli_next(&p, &val)) > 0) {
        switch (c) {
        case O_JSON: json = 1; break;
        case O_THRESH:
            if (cli_parse_double(val, 0, 1, &d)) return cli_usage_error("scan", "--threshold must be in [0,1]");
            o.threshold = d;
            break;
        case O_AGG:
            if (strcmp(val, "confident") == 0)
                o.aggregation = DFD_AGG_CONFIDENT;
            else if (strcmp(val, "mean") == 0)
                o.aggregation = DFD_AGG_MEAN;
            else
                return cli_usage_error("scan", "--aggregate must be 'confident' or 'mean'");
            break;
        case O_THREADS:
            if (cli_parse_int(val, 1, CLI_THREADS_MAX, &v))
                return cli_usage_error("scan", "--threads must be 1..%d", CLI_THREADS_MAX);
            o.threads = (int)v;
            break;
        case O_EXPLAIN: o.explain = 1; break;
        case O_EXPLAIN_DIR: explain_dir = val, o.explain = 1; break;
        case 'r': recursive = 1; break;
        case 'q': quiet = 1; break;
        default:
            if (cli_model_opt("scan", c, val, &o) < 0) return DFD_EXIT_USAGE;
        }
    }
    if (c < 0) return DFD_EXIT_USAGE;
    int first = p.first;
    if (first >= argc) return cli_usage_error("scan", "no file given");
    if (cli_model_opts_check("scan", &o)) return DFD_EXIT_USAGE;

    if (explain_dir) {
        struct stat st;
        if (stat(explain_dir, &st) != 0 && mkdir(explain_dir, 0777) != 0)
            return cli_usage_error("scan", "--explain-dir: cannot create '%s'", explain_dir);
        if (stat(explain_dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return cli_usage_error("scan", "--explain-dir: '%s' is not a directory", explain_dir);
    }
    cli_file_list files = {0};
    int status = DFD_EXIT_OK;
    if (cli_files_add(&files, argv + first, argc - first, recursive)) { /* missing files become ERROR results */
        fprintf(stderr, "dfd scan: out of memory\n");
        status = DFD_EXIT_FAILED;
        goto out;
    }
    if (files.n == 0) {
        fprintf(stderr, "dfd scan: no image or video files found\n");
        status = DFD_EXIT_FAILED;
        goto out;
    }

    dfd_error err;
    dfd_ctx *ctx = NULL;
    if (dfd_ctx_create(&o, &ctx, &err) != DFD_OK) {
        fprintf(stderr, "dfd scan: %s\n", err.message);
        status = DFD_EXIT_FAILED;
        goto out;
    }
    dfd_result **results = calloc((size_t)files.n, sizeof *results);
    if (!results) {
        dfd_ctx_destroy(ctx);
        status = DFD_EXIT_FAILED;
        goto out;
    }
    scan_progress prog = {.nfiles = files.n};
    cli_progress_start(&prog.bar, "scan");
    if (quiet) prog.bar.enabled = 0;
    int color = !json && cli_use_color(stdout);
    for (int i = 0; i < files.n; i++) {
        prog.file = i;
        prog.name = files.paths[i];
        on_progress(&prog, 0);
        if (dfd_analyze_file(ctx, files.paths[i], on_progress, &prog, &results[i], &err) != DFD_OK) {
            /* No result at all (out of memory): report and go on with the others. */
            cli_progress_done(&prog.bar);
            fprintf(stderr, "dfd scan: %s: %s\n", files.paths[i], err.message);
            status = DFD_EXIT_FAILED;
            continue;
        }
        if (dfd_result_verdict(results[i]) == DFD_VERDICT_ERROR) status = DFD_EXIT_FAILED;
        if (explain_dir && write_overlays(explain_dir, files.paths[i], results[i], &err) != DFD_OK) {
            cli_progress_done(&prog.bar);
            fprintf(stderr, "dfd scan: %s\n", err.message);
            status = DFD_EXIT_FAILED;
        }
        if (!json) {
            cli_progress_done(&prog.bar);
            print_human(results[i], color);
            fflush(stdout);
        }
    }
    cli_progress_done(&prog.bar);
    if (json) {
        int k = 0;
        for (int i = 0; i < files.n; i++)
            if (results[i]) results[k++] = results[i];
        char *doc = dfd_results_json((const dfd_result *const *)results, k, 1);
        if (doc) {
            puts(doc);
            dfd_free(doc);
        } else {
            status = DFD_EXIT_FAILED;
        }
        for (int i = 0; i < k; i++) dfd_result_free(results[i]);
    } else {
        for (int i = 0; i < files.n; i++) dfd_result_free(results[i]);
    }
    free(results);
    dfd_ctx_destroy(ctx);
out:
    cli_files_free(&files);
    return status;
}
