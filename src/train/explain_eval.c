/* explain_eval.c — dfd_explain_eval_run (`dfd explain-eval`, hidden: a measurement, not a
 * user's command):
 * how faithful the heat maps are, on self-blended fakes whose blended region is known.
 *
 * For each real photo (in name order, every other one from the second: the half of
 * utkface-real that dfd-image-2 never trained on), the largest face is cut by the model's
 * crop contract and turned into a self-blended fake (dfd_sbi, the same blend training
 * uses, its ellipse placed for the contract's margin; or, with `landmarks`, along the
 * crop's own Face Mesh landmarks, as `dfd train --sbi-mask landmarks` blends), whose blend
 * mask says where the forgery is. Then, per method:
 *   pointing game  the map's peak cell lies inside the blended region (cells whose mean
 *                  mask is over half the mask's peak, the blend ratio);
 *   mass inside    the map's share of its total inside that region, against the region's
 *                  share of the crop's cells (what a uniform map would give: chance);
 *   deletion       P(fake) after blanking the map's top 20% cells, against after
 *                  blanking 20% of the cells at random; blanking is grey, a blurred copy
 *                  of the crop (`blank` 1: no new sharp edges), or the real face the fake
 *                  was made from (`blank` 2: the forgery undone in those cells).
 * Two reference "methods" draw their map from the blend mask instead of the model: ref-inside
 * (the mask itself) and ref-edge (the blend's boundary, where a cell is half blended): what
 * a map that knew where the forgery is would score, so the deletion check can tell a poor
 * map from a check the model cannot pass.
 * Figures and the command that makes them: docs/explain.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect/detect.h"
#include "face/face.h"
#include "media/media.h"
#include "train/train.h"

/* The two reference maps (method ids past the classifier's). */
enum { REF_INSIDE = 100, REF_EDGE = 101, REF_CENTRE = 102 };

typedef struct method_stats {
    int method;
    long n, n_flagged, hits, hits_flagged;
    double mass_in, mass_in_flagged, drop_top, drop_rand;
    long top_beats_rand;
    double ms;
} method_stats;

/* Cells by decreasing map value (ties by index). */
static const float *g_sort_map;
static int cmp_cell(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_sort_map[i] != g_sort_map[j]) return g_sort_map[i] > g_sort_map[j] ? -1 : 1;
    return i - j;
}

static int eval_one(dfd_classifier *cls, const dfd_image *fake, const float *cell_mask, method_stats *st,
                    double p_fake, double p0, int how, const dfd_image *orig, nn_rng *rng, dfd_error *err) {
    float map[DFD_HEAT_CELLS];
    double t0 = dfd_now_ms();
    int rc = DFD_OK;
    if (st->method == REF_CENTRE) {
        const int G = DFD_HEAT_GRID;
        for (int i = 0; i < DFD_HEAT_CELLS; i++) {
            float dy = (float)(i / G) + 0.5f - G / 2.0f, dx = (float)(i % G) + 0.5f - G / 2.0f;
            map[i] = 1.0f - sqrtf(dx * dx + dy * dy) / (G * 0.7072f); /* just above 0 in the corners */
        }
    } else if (st->method == REF_INSIDE || st->method == REF_EDGE) {
        /* Reference maps drawn from the blend mask itself, not from the model: what a map
         * that knew the forgery would score. The edge map peaks where a cell is half blended. */
        for (int i = 0; i < DFD_HEAT_CELLS; i++) {
            float m = cell_mask[i];
            map[i] = st->method == REF_INSIDE ? m : m > 0.02f && m < 0.98f ? 1.0f - fabsf(2.0f * m - 1.0f) : 0.0f;
        }
    } else {
        rc = dfd_classifier_explain(cls, fake, st->method, map, err);
    }
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
    double pt, pr;
    if ((rc = dfd_classifier_score_blanked(cls, fake, top, how, orig, &pt, err))) return rc;
    if ((rc = dfd_classifier_score_blanked(cls, fake, rnd, how, orig, &pr, err))) return rc;
    st->drop_top += p0 - pt, st->drop_rand += p0 - pr;
    st->top_beats_rand += (p0 - pt) > (p0 - pr);
    return DFD_OK;
}

void dfd_explain_eval_options_default(dfd_explain_eval_options *o) {
    memset(o, 0, sizeof *o);
    o->fakes = 500;
    o->seed = 1;
}

static const char *method_name(int m) {
    return m == REF_INSIDE ? "ref-inside" : m == REF_EDGE ? "ref-edge" : m == REF_CENTRE ? "ref-centre" : dfd_explain_method_name(m);
}

static int method_id(const char *name) {
    if (name && !strcmp(name, "ref-inside")) return REF_INSIDE;
    if (name && !strcmp(name, "ref-edge")) return REF_EDGE;
    if (name && !strcmp(name, "ref-centre")) return REF_CENTRE;
    for (int m = DFD_EXPLAIN_GRADCAM; m <= DFD_EXPLAIN_GRADCAM_FULL; m++)
        if (name && dfd_explain_method_name(m) && strcmp(name, dfd_explain_method_name(m)) == 0) return m;
    return -1;
}

int dfd_explain_eval_run(const dfd_explain_eval_options *o, const char *const *files, int n_files,
                         dfd_explain_eval_result *res, dfd_error *err) {
    if (!o || !res || (n_files > 0 && !files)) return dfd_fail(err, DFD_E_ARG, "dfd_explain_eval_run: no options, files or result");
    memset(res, 0, sizeof *res);
    method_stats st[DFD_EXPLAIN_EVAL_METHODS];
    memset(st, 0, sizeof st);
    int n_methods = 0;
    for (int i = 0; i < o->n_methods; i++) {
        int m = i < DFD_EXPLAIN_EVAL_METHODS ? method_id(o->methods[i]) : -1;
        if (m < 0)
            return dfd_fail(err, DFD_E_ARG,
                            "--method: gradcam, gradcam++, gradcam++fine, gradcam-full, gradcam-mid, gradxinput, cam, occlusion, occlusion-fast, "
                            "ref-inside, "
                            "ref-edge or ref-centre, "
                            "at most %d",
                            DFD_EXPLAIN_EVAL_METHODS);
        st[n_methods++].method = m;
    }
    if (n_methods == 0) st[n_methods++].method = DFD_EXPLAIN_GRADCAMPP; /* what scan --explain makes */
    if (o->fakes < 1) return dfd_fail(err, DFD_E_ARG, "fakes must be at least 1");
    if (o->parts && o->landmarks) return dfd_fail(err, DFD_E_ARG, "part blends are ellipses: not with landmarks");
    const char *model = o->model;
    char path[DFD_PATH_MAX];
    int rc;
    if (!model) {
        if ((rc = dfd_default_image_model(NULL, path, sizeof path, err))) return rc;
        model = path;
    }
    dfd_classifier *cls = NULL;
    dfd_face_detector *fd = NULL;
    dfd_landmarker *lm = NULL;
    float *mask = NULL;
    const int how = o->blank == 2 ? DFD_BLANK_SOURCE : o->blank == 1 ? DFD_BLANK_BLUR : DFD_BLANK_GREY;
    dfd_face_opts fo;
    dfd_face_opts_default(&fo);
    if ((rc = dfd_classifier_load(model, o->threads, &cls, err)) || (rc = dfd_face_detector_create(&fo, &fd, err))) goto out;
    const dfd_crop_contract *cc = dfd_classifier_contract(cls);
    const int S = cc->size, G = DFD_HEAT_GRID;
    dfd_sbi_opts so;
    dfd_sbi_opts_default(&so);
    dfd_sbi_opts_for_margin(&so, cc->margin, cc->shift_y);
    dfd_ds_landmark_opts lo;
    dfd_ds_landmark_opts_default(&lo);
    lo.models_dir = o->models_dir;
    lo.margin = cc->margin;
    lo.shift_y = cc->shift_y;
    if (o->landmarks && (rc = dfd_landmarker_create(o->models_dir, lo.backend, o->threads, &lm, err))) goto out;
    if (!(mask = malloc((size_t)S * S * sizeof *mask))) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto out;
    }
    nn_rng rng, drng;
    nn_rng_seed(&rng, (uint64_t)o->seed);
    nn_rng_seed(&drng, (uint64_t)o->seed + 1000);
    nn_rng prng;
    nn_rng_seed(&prng, (uint64_t)o->seed + 2000);
    long made = 0, flagged = 0;
    double chance = 0, p_sum = 0;
    dfd_error e;
    for (int i = 1; i < n_files && made < o->fakes; i += 2) {
        dfd_image img = {0}, crop = {0}, orig = {0};
        dfd_face *faces = NULL;
        int nf = 0;
        if (dfd_image_load(files[i], NULL, &img, NULL, &e) || dfd_face_detect(fd, &img, &faces, &nf, &e) || nf == 0) {
            dfd_image_free(&img);
            free(faces);
            continue;
        }
        int best = dfd_face_largest(faces, nf);
        rc = dfd_face_crop(&img, &faces[best], cc, &crop, err);
        dfd_image_free(&img);
        free(faces);
        if (rc == DFD_OK) rc = dfd_image_copy(&crop, &orig, err); /* the real face, before blending */
        if (rc == DFD_OK && lm) {
            /* The mesh of the crop; a crop it finds no face in is skipped (and counted),
             * as training falls back to the ellipse for such faces. */
            dfd_face_mesh mesh;
            float pts[DFD_SBI_POINTS][2];
            rc = dfd_crop_landmarks(lm, &crop, &lo, &mesh, err);
            if (rc == DFD_OK && !(mesh.presence >= lo.min_presence)) {
                res->no_mesh++;
                dfd_image_free(&crop);
                dfd_image_free(&orig);
                continue;
            }
            if (rc == DFD_OK) {
                dfd_sbi_points_from_mesh(&mesh, 1.0f, 1.0f, pts);
                rc = dfd_sbi_landmarks(&crop, &so, (const float(*)[2])pts, &rng, mask, err);
            }
        } else if (rc == DFD_OK && o->parts) {
            /* a part of the face: centre uniform over the inner 60% of the face ellipse
             * (by area), axes 35-55% of the face's (placement draws apart from the blend's) */
            dfd_sbi_opts po = so;
            double a = 2 * M_PI * nn_rng_uniform(&prng), r = 0.6 * sqrt(nn_rng_uniform(&prng));
            float scale = 0.35f + 0.2f * nn_rng_uniform(&prng);
            po.cx = so.cx + (float)(r * cos(a)) * so.rx, po.cy = so.cy + (float)(r * sin(a)) * so.ry;
            po.rx = so.rx * scale, po.ry = so.ry * scale;
            rc = dfd_sbi(&crop, &po, &rng, mask, err);
        } else if (rc == DFD_OK) {
            rc = dfd_sbi(&crop, &so, &rng, mask, err);
        }
        /* The blended region: cells whose mean mask is over half the mask's peak. The peak
         * is the blend ratio (0.25 to 1), so a fake blended at 0.25 or 0.5 still has one
         * (measured against 0.5 itself, a third of the fakes had no region at all). */
        float cell_mask[DFD_HEAT_CELLS], peak = 0;
        double inside = 0;
        for (int i = 0; rc == DFD_OK && i < S * S; i++)
            if (mask[i] > peak) peak = mask[i];
        if (!(peak > 0)) peak = 1;
        for (int gy = 0; rc == DFD_OK && gy < G; gy++)
            for (int gx = 0; gx < G; gx++) {
                int y0 = gy * S / G, y1 = (gy + 1) * S / G, x0 = gx * S / G, x1 = (gx + 1) * S / G;
                double m = 0;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) m += mask[y * S + x];
                cell_mask[gy * G + gx] = (float)(m / ((double)(y1 - y0) * (x1 - x0)) / peak);
                inside += cell_mask[gy * G + gx] > 0.5f;
            }
        /* p: the score the verdict uses (mirror averaged); p0: the deletion check's baseline,
         * the same single pass it blanks, whatever the method */
        double p = NAN, p0 = NAN;
        if (rc == DFD_OK) rc = dfd_classifier_score(cls, &crop, 1, 1, &p, err);
        if (rc == DFD_OK) rc = dfd_classifier_score_blanked(cls, &crop, NULL, how, &orig, &p0, err);
        for (int m = 0; rc == DFD_OK && m < n_methods; m++)
            rc = eval_one(cls, &crop, cell_mask, &st[m], p, p0, how, &orig, &drng, err);
        dfd_image_free(&crop);
        dfd_image_free(&orig);
        if (rc) {
            if (err) {
                dfd_error inner = *err;
                dfd_fail(err, inner.code, "%s: %s", files[i], inner.message);
            }
            goto out;
        }
        made++;
        flagged += p >= dfd_classifier_threshold(cls);
        chance += inside / DFD_HEAT_CELLS;
        p_sum += p;
    }
    if (made == 0) {
        rc = dfd_fail(err, DFD_E_NOT_FOUND, "no face found in the photos");
        goto out;
    }
    snprintf(res->model, sizeof res->model, "%s", dfd_classifier_name(cls));
    res->fakes = made;
    res->flagged = flagged;
    res->threshold = dfd_classifier_threshold(cls);
    res->mean_p_fake = p_sum / made;
    res->chance = chance / made;
    res->n_methods = n_methods;
    for (int m = 0; m < n_methods; m++) {
        const method_stats *s = &st[m];
        dfd_explain_eval_method *r = &res->methods[m];
        double nfl = s->n_flagged ? (double)s->n_flagged : 1;
        r->method = method_name(s->method);
        r->pointing = (double)s->hits / s->n;
        r->pointing_flagged = s->hits_flagged / nfl;
        r->mass_inside = s->mass_in / s->n;
        r->mass_inside_flagged = s->mass_in_flagged / nfl;
        r->drop_top = s->drop_top / s->n;
        r->drop_random = s->drop_rand / s->n;
        r->top_beats_random = (double)s->top_beats_rand / s->n;
        r->ms_per_face = s->ms / s->n;
    }
    rc = DFD_OK;
out:
    free(mask);
    dfd_landmarker_free(lm);
    dfd_face_detector_free(fd);
    dfd_classifier_free(cls);
    return rc;
}
