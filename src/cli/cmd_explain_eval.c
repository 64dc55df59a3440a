/* cmd_explain_eval.c — `dfd explain-eval` (hidden: a measurement, not a user's command):
 * how faithful the heat maps are, on self-blended fakes whose blended region is known.
 *
 * For each real photo (in name order, every other one from the second: the half of
 * utkface-real that dfd-image-2 never trained on), the largest face is cut by the model's
 * crop contract and turned into a self-blended fake (dfd_sbi, the same blend training
 * uses, its ellipse placed for the contract's margin), whose blend mask says where the
 * forgery is. Then, per method:
 *   pointing game  the map's peak cell lies inside the blended region (cell mask mean > 0.5);
 *   mass inside    the map's share of its total inside that region, against the region's
 *                  share of the crop's cells (what a uniform map would give: chance);
 *   deletion       P(fake) after blanking (grey) the map's top 20% cells, against after
 *                  blanking 20% of the cells at random.
 * Figures and the command that makes them: docs/explain.md. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "detect/detect.h"
#include "face/face.h"
#include "media/media.h"
#include "train/train.h"

const char cmd_explain_eval_help[] =
    "Usage: dfd explain-eval [OPTIONS] DIR\n\n"
    "Measures the heat maps on self-blended fakes made from the real photos in DIR (every\n"
    "other file in name order, from the second): pointing game, map mass inside the\n"
    "blended region against chance, and a deletion check. See docs/explain.md.\n\n"
    "Options:\n"
    "  --model PATH     image model (default: the shipped one)\n"
    "  --method M       gradcam++ (default: what scan --explain makes), gradcam, gradcam-mid,\n"
    "                   gradxinput or occlusion;\n"
    "                   up to five, to compare\n"
    "  -n N             fakes to make (default 500)\n"
    "  --seed S         blend randomness (default 1)\n"
    "  --threads N      CPU threads (default: all cores)\n";

typedef struct method_stats {
    int method;
    long n, n_flagged, hits, hits_flagged;
    double mass_in, mass_in_flagged, drop_top, drop_rand;
    long top_beats_rand;
    double ms;
} method_stats;

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Cells by decreasing map value (ties by index). */
static const float *g_sort_map;
static int cmp_cell(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_sort_map[i] != g_sort_map[j]) return g_sort_map[i] > g_sort_map[j] ? -1 : 1;
    return i - j;
}

static int eval_one(dfd_classifier *cls, const dfd_image *fake, const float *cell_mask, method_stats *st,
                    double p_fake, nn_rng *rng, dfd_error *err) {
    float map[DFD_HEAT_CELLS];
    double t0 = dfd_now_ms();
    int rc = dfd_classifier_explain(cls, fake, st->method, map, err);
    st->ms += dfd_now_ms() - t0;
    if (rc) return rc;
    int peak = 0;
    double sum = 0, in = 0;
    for (int i = 0; i < DFD_HEAT_CELLS; i++) {
        if (map[i] > map[peak]) peak = i;
        sum += map[i];
        if (cell_mask[i] > 0.5f) in += map[i];
    }
    int hit = map[peak] > 0 && cell_mask[peak] > 0.5f;
    double mass = sum > 0 ? in / sum : 0;
    int flagged = p_fake >= dfd_classifier_threshold(cls);
    st->n++, st->hits += hit, st->mass_in += mass;
    if (flagged) st->n_flagged++, st->hits_flagged += hit, st->mass_in_flagged += mass;
    /* Deletion: the top 20% cells against 20% at random. */
    const int k = DFD_HEAT_CELLS / 5;
    int order[DFD_HEAT_CELLS];
    for (int i = 0; i < DFD_HEAT_CELLS; i++) order[i] = i;
    g_sort_map = map;
    qsort(order, DFD_HEAT_CELLS, sizeof order[0], cmp_cell);
    unsigned char top[DFD_HEAT_CELLS] = {0}, rnd[DFD_HEAT_CELLS] = {0};
    for (int i = 0; i < k; i++) top[order[i]] = 1;
    for (int i = 0; i < DFD_HEAT_CELLS; i++) order[i] = i;
    for (int i = DFD_HEAT_CELLS - 1; i > 0; i--) {
        int j = (int)(nn_rng_next(rng) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    for (int i = 0; i < k; i++) rnd[order[i]] = 1;
    double p0, pt, pr;
    if ((rc = dfd_classifier_score_blanked(cls, fake, NULL, &p0, err))) return rc;
    if ((rc = dfd_classifier_score_blanked(cls, fake, top, &pt, err))) return rc;
    if ((rc = dfd_classifier_score_blanked(cls, fake, rnd, &pr, err))) return rc;
    st->drop_top += p0 - pt, st->drop_rand += p0 - pr;
    st->top_beats_rand += (p0 - pt) > (p0 - pr);
    return DFD_OK;
}

int cmd_explain_eval(int argc, char **argv) {
    enum { O_MODEL = 256, O_METHOD, O_SEED, O_THREADS };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"method", required_argument, 0, O_METHOD},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {0, 0, 0, 0}};
    const char *model = NULL;
    method_stats st[5];
    memset(st, 0, sizeof st);
    int n_methods = 0, threads = 0, c;
    long want = 500, seed = 1, v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model = optarg; break;
        case O_METHOD: {
            int m = strcmp(optarg, "gradcam") == 0 ? DFD_EXPLAIN_GRADCAM
                    : strcmp(optarg, "occlusion") == 0  ? DFD_EXPLAIN_OCCLUSION
                    : strcmp(optarg, "gradxinput") == 0 ? DFD_EXPLAIN_GRADXINPUT
                    : strcmp(optarg, "gradcam-mid") == 0 ? DFD_EXPLAIN_GRADCAM_MID
                    : strcmp(optarg, "gradcam++") == 0 ? DFD_EXPLAIN_GRADCAMPP
                                                        : -1;
            if (m < 0 || n_methods == 5)
                return cli_usage_error("explain-eval", "--method: gradcam, gradcam++, gradcam-mid, gradxinput or occlusion, at most five");
            st[n_methods++].method = m;
            break;
        }
        case 'n':
            if (cli_parse_int(optarg, 1, 100000, &want)) return cli_usage_error("explain-eval", "-n must be 1..100000");
            break;
        case O_SEED:
            if (cli_parse_int(optarg, 0, 1L << 30, &seed)) return cli_usage_error("explain-eval", "--seed must be >= 0");
            break;
        case O_THREADS:
            if (cli_parse_int(optarg, 1, 1024, &v)) return cli_usage_error("explain-eval", "--threads must be 1..1024");
            threads = (int)v;
            break;
        default: return cli_usage_error("explain-eval", "invalid option");
        }
    }
    if (optind != argc - 1) return cli_usage_error("explain-eval", "give one directory of real photos");
    if (n_methods == 0) st[n_methods++].method = DFD_EXPLAIN_GRADCAMPP; /* what scan --explain makes */

    dfd_error err;
    char path[4400];
    if (!model) {
        if (dfd_default_image_model(NULL, path, sizeof path, &err)) {
            fprintf(stderr, "dfd explain-eval: %s\n", err.message);
            return DFD_EXIT_FAILED;
        }
        model = path;
    }
    cli_file_list files = {0};
    char *dir = argv[optind];
    dfd_classifier *cls = NULL;
    dfd_face_detector *fd = NULL;
    int status = DFD_EXIT_FAILED;
    float *mask = NULL;
    if (cli_files_add(&files, &dir, 1, 0)) goto out;
    qsort(files.paths, (size_t)files.n, sizeof files.paths[0], cmp_name);
    dfd_face_opts fo;
    dfd_face_opts_default(&fo);
    if (dfd_classifier_load(model, threads, &cls, &err) || dfd_face_detector_create(&fo, &fd, &err)) {
        fprintf(stderr, "dfd explain-eval: %s\n", err.message);
        goto out;
    }
    const dfd_crop_contract *cc = dfd_classifier_contract(cls);
    const int S = cc->size, G = DFD_HEAT_GRID;
    dfd_sbi_opts so;
    dfd_sbi_opts_for_margin(&so, cc->margin, cc->shift_y);
    mask = malloc((size_t)S * S * sizeof *mask);
    if (!mask) goto out;
    nn_rng rng, drng;
    nn_rng_seed(&rng, (uint64_t)seed);
    nn_rng_seed(&drng, (uint64_t)seed + 1000);
    long made = 0, flagged = 0;
    double chance = 0, p_sum = 0;
    for (int i = 1; i < files.n && made < want; i += 2) {
        dfd_image img = {0}, crop = {0};
        dfd_face *faces = NULL;
        int nf = 0;
        if (dfd_image_load(files.paths[i], NULL, &img, NULL, &err) || dfd_face_detect(fd, &img, &faces, &nf, &err) ||
            nf == 0) {
            dfd_image_free(&img);
            free(faces);
            continue;
        }
        int best = dfd_face_largest(faces, nf);
        int rc = dfd_face_crop(&img, &faces[best], cc, &crop, &err);
        dfd_image_free(&img);
        free(faces);
        if (rc == DFD_OK) rc = dfd_sbi(&crop, &so, &rng, mask, &err);
        float cell_mask[DFD_HEAT_CELLS];
        double inside = 0;
        for (int gy = 0; rc == DFD_OK && gy < G; gy++)
            for (int gx = 0; gx < G; gx++) {
                int y0 = gy * S / G, y1 = (gy + 1) * S / G, x0 = gx * S / G, x1 = (gx + 1) * S / G;
                double m = 0;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) m += mask[y * S + x];
                cell_mask[gy * G + gx] = (float)(m / ((double)(y1 - y0) * (x1 - x0)));
                inside += cell_mask[gy * G + gx] > 0.5f;
            }
        double p = NAN;
        if (rc == DFD_OK) rc = dfd_classifier_score(cls, &crop, 1, 1, &p, &err);
        for (int m = 0; rc == DFD_OK && m < n_methods; m++) rc = eval_one(cls, &crop, cell_mask, &st[m], p, &drng, &err);
        dfd_image_free(&crop);
        if (rc) {
            fprintf(stderr, "dfd explain-eval: %s: %s\n", files.paths[i], err.message);
            goto out;
        }
        made++;
        flagged += p >= dfd_classifier_threshold(cls);
        chance += inside / DFD_HEAT_CELLS;
        p_sum += p;
    }
    if (made == 0) {
        fprintf(stderr, "dfd explain-eval: no face found in '%s'\n", dir);
        goto out;
    }
    printf("model %s, %ld self-blended fakes from %s (every other photo from the second), seed %ld\n",
           dfd_classifier_name(cls), made, dir, seed);
    printf("flagged FAKE at the model's threshold %.4f: %ld (%.1f%%), mean P(fake) %.3f\n",
           dfd_classifier_threshold(cls), flagged, 100.0 * flagged / made, p_sum / made);
    printf("blended region (cells with mask > 0.5): %.1f%% of the crop = chance\n\n", 100.0 * chance / made);
    printf("| method | pointing game | (flagged) | mass inside | x chance | (flagged) | P drop, top 20%% | P drop, random 20%% | top > random | ms/face |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < n_methods; m++) {
        const method_stats *s = &st[m];
        double nfl = s->n_flagged ? (double)s->n_flagged : 1;
        printf("| %s | %.1f%% | %.1f%% | %.1f%% | %.2f | %.1f%% | %.3f | %.3f | %.1f%% | %.1f |\n",
               dfd_explain_method_name(s->method), 100.0 * s->hits / s->n, 100.0 * s->hits_flagged / nfl,
               100.0 * s->mass_in / s->n, (s->mass_in / s->n) / (chance / made), 100.0 * s->mass_in_flagged / nfl,
               s->drop_top / s->n, s->drop_rand / s->n, 100.0 * s->top_beats_rand / s->n, s->ms / s->n);
    }
    status = DFD_EXIT_OK;
out:
    free(mask);
    dfd_face_detector_free(fd);
    dfd_classifier_free(cls);
    cli_files_free(&files);
    return status;
}
