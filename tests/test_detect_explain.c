/* test_detect_explain — heat maps (dfd_options.explain, docs/explain.md):
 *   - nn_node_grad gives a layer's gradient: in conv -> GAP -> dense(1), d(logit)/d(conv
 *     output) is the dense kernel / HW at every position, on both backends;
 *   - the deletion check's ways of hiding cells (grey, blur, the original's pixels);
 *   - on self-blended fakes that the shipped model flags (made from held-out UTKFace
 *     photos, as `dfd explain-eval` makes them), the map's peak falls inside the blended
 *     region far more often than chance;
 *   - the JSON shape (faces[].heatmap: grid 16, 16 x 16 values in [0, 1], the crop square,
 *     frame for videos), the result API, null when off, the synthetic-face detector's map
 *     beside the manipulation detector's.
 * Needs the shipped model and the face models (./setup.sh); the fakes need ../shared/data. */
#include "testutil.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "detect/detect.h"
#include "dfd/dfd.h"
#include "dfd/model.h"
#include "face/face.h"
#include "io/model_file.h"
#include "models/models.h"
#include "nn/nn.h"
#include "train/train.h"

/* ---- the engine: a node's gradient -------------------------------------------------- */

static void node_grad_is_the_layer_gradient(void **state) {
    (void)state;
    for (int be = 0; be < 2; be++) {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "in", 3, (int[]){6, 6, 3});
        nn_conv_attr a = {.kh = 3, .kw = 3, .padding = NN_PAD_SAME, .out_c = 4, .has_bias = 1, .act = NN_ACT_RELU};
        int c = nn_conv2d(g, "conv", x, &a);
        int p = nn_gap(g, "gap", c);
        int d = nn_dense(g, "dense", p, 1, 1, NN_ACT_NONE);
        nn_mark_output(g, d);
        assert_null(nn_graph_error(g));
        nn_graph_init_weights(g, 3);
        nn_exec_opts o;
        nn_exec_opts_default(&o);
        o.backend = be ? NN_BACKEND_DNNL : NN_BACKEND_REF;
        o.precision = NN_PREC_F32;
        o.max_batch = 2;
        o.training = 1;
        o.threads = 1;
        nn_exec *ex;
        dfd_error e;
        if (nn_exec_create(g, &o, &ex, &e)) fail_msg("%s", e.message);
        float in[2 * 6 * 6 * 3];
        nn_rng r;
        nn_rng_seed(&r, 5);
        for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) in[i] = nn_rng_normal(&r);
        assert_int_equal(nn_forward(ex, in, 2, &e), DFD_OK);
        float dy[2] = {1, 1};
        const float *douts[1] = {dy};
        assert_int_equal(nn_backward(ex, douts, &e), DFD_OK);
        size_t n = 0;
        const float *gr = nn_node_grad(ex, c, &n);
        assert_non_null(gr);
        assert_int_equal(n, 2 * 6 * 6 * 4);
        const float *w = nn_graph_param(g, nn_graph_node(g, d)->params[0])->data;
        for (size_t i = 0; i < n; i++) assert_float_equal(gr[i], w[i % 4] / 36.0f, 1e-6);
        nn_exec_free(ex);
        /* An inference executor has no gradients. */
        o.training = 0;
        if (nn_exec_create(g, &o, &ex, &e)) fail_msg("%s", e.message);
        assert_int_equal(nn_forward(ex, in, 1, &e), DFD_OK);
        assert_null(nn_node_grad(ex, c, NULL));
        nn_exec_free(ex);
        nn_graph_free(g);
    }
}

/* ---- faithfulness on self-blended fakes ---------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int have_models(char *shipped, size_t cap) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/models/registry/blazeface-short.safetensors", tu_source_dir());
    snprintf(shipped, cap, "%s/models/dfd-image-2.safetensors", tu_source_dir());
    if (access(probe, R_OK) != 0 || access(shipped, R_OK) != 0) {
        print_message("skipped: the shipped model or the face models are missing (run ./setup.sh)\n");
        return 0;
    }
    return 1;
}

/* The pointing game on the first 20 self-blended fakes the default model (the newest
 * models/dfd-image-N) flags, with the method scan uses for it (the file's "heatmap":
 * Grad-CAM at the grid's resolution for dfd-image-5, taught where blends are; occlusion
 * probes for the models before): the map's peak cell inside the blended region (cell mask
 * mean over half the mask's peak). docs/explain.md measures 500. */
static void map_peaks_inside_the_blend_on_flagged_fakes(void **state) {
    (void)state;
    TU_REQUIRE_SHARED_DATA();
    char shipped[4096];
    if (!have_models(shipped, sizeof shipped)) skip();
    for (int v = 9; v >= 2; v--) { /* the newest, as scan's default */
        snprintf(shipped, sizeof shipped, "%s/models/dfd-image-%d.safetensors", tu_source_dir(), v);
        if (access(shipped, R_OK) == 0) break;
    }
    char *dir = tu_shared_path("utkface-real");
    DIR *d = opendir(dir);
    if (!d) {
        print_message("skipped: %s is absent\n", dir);
        free(dir);
        skip();
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".jpg") != 0) continue;
        if (nn == cap) names = realloc(names, (cap = cap ? 2 * cap : 1024) * sizeof *names);
        names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp_str);

    dfd_classifier *cls;
    dfd_face_detector *fd;
    dfd_error e;
    if (dfd_classifier_load(shipped, 0, &cls, &e)) fail_msg("%s", e.message);
    char reg[4200];
    snprintf(reg, sizeof reg, "%s/models/registry", tu_source_dir());
    dfd_face_opts fo;
    dfd_face_opts_default(&fo);
    fo.models_dir = reg;
    if (dfd_face_detector_create(&fo, &fd, &e)) fail_msg("%s", e.message);
    const dfd_crop_contract *cc = dfd_classifier_contract(cls);
    const int S = cc->size, G = DFD_HEAT_GRID;
    dfd_sbi_opts so;
    dfd_sbi_opts_default(&so);
    dfd_sbi_opts_for_margin(&so, cc->margin, cc->shift_y);
    float *mask = malloc((size_t)S * S * sizeof *mask);
    nn_rng rng;
    nn_rng_seed(&rng, 1);
    int flagged = 0, hits = 0;
    double chance = 0, mass = 0;
    /* Held-out photos: every other one in name order, from the second (as explain-eval). */
    for (size_t i = 1; i < nn && flagged < 20; i += 2) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        dfd_image img = {0}, crop = {0};
        dfd_face *faces = NULL;
        int nf = 0;
        if (dfd_image_load(path, NULL, &img, NULL, &e) || dfd_face_detect(fd, &img, &faces, &nf, &e) || nf == 0) {
            dfd_image_free(&img);
            free(faces);
            continue;
        }
        int best = dfd_face_largest(faces, nf);
        assert_int_equal(dfd_face_crop(&img, &faces[best], cc, &crop, &e), DFD_OK);
        dfd_image_free(&img);
        free(faces);
        assert_int_equal(dfd_sbi(&crop, &so, &rng, mask, &e), DFD_OK);
        double p;
        assert_int_equal(dfd_classifier_score(cls, &crop, 1, 1, &p, &e), DFD_OK);
        if (p < dfd_classifier_threshold(cls)) {
            dfd_image_free(&crop);
            continue;
        }
        float map[DFD_HEAT_CELLS];
        assert_int_equal(dfd_classifier_explain(cls, &crop, dfd_classifier_heat_method(cls), map, &e), DFD_OK);
        dfd_image_free(&crop);
        int peak = 0, inside = 0;
        float mx = 0;
        for (int c = 0; c < DFD_HEAT_CELLS; c++) {
            assert_true(map[c] >= 0 && map[c] <= 1);
            if (map[c] > map[peak]) peak = c;
            if (map[c] > mx) mx = map[c];
        }
        assert_float_equal(mx, 1.0f, 1e-6); /* a flagged face has evidence for "fake" somewhere */
        int hit = 0;
        double in_mass = 0, all_mass = 0;
        float mpeak = 0; /* the blend ratio: the region is where a cell is over half of it */
        for (int k = 0; k < S * S; k++)
            if (mask[k] > mpeak) mpeak = mask[k];
        for (int gy = 0; gy < G; gy++)
            for (int gx = 0; gx < G; gx++) {
                double m = 0;
                int y0 = gy * S / G, y1 = (gy + 1) * S / G, x0 = gx * S / G, x1 = (gx + 1) * S / G;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) m += mask[y * S + x];
                int in = m / ((double)(y1 - y0) * (x1 - x0)) > 0.5 * mpeak;
                inside += in;
                all_mass += map[gy * G + gx];
                if (in) in_mass += map[gy * G + gx];
                if (gy * G + gx == peak) hit = in;
            }
        chance += (double)inside / DFD_HEAT_CELLS;
        mass += in_mass / all_mass;
        hits += hit;
        flagged++;
    }
    assert_int_equal(flagged, 20);
    chance /= flagged, mass /= flagged;
    print_message("pointing game on %d flagged self-blended fakes: %d hits (%.0f%%), chance %.0f%%; mass inside %.0f%% "
                  "(%.2f x chance)\n",
                  flagged, hits, 100.0 * hits / flagged, 100.0 * chance, 100.0 * mass, mass / chance);
    /* A map that knew nothing would hit at chance (about 40% here) and put chance of its
     * mass inside; measured for dfd-image-5: 100% and 2.11 x (dfd-image-4's occlusion:
     * 85%, 2.01 x). */
    assert_true((double)hits / flagged >= 1.5 * chance);
    assert_true(hits >= 14);           /* the 70% of the pointing game */
    assert_true(mass >= 1.8 * chance); /* near the 2 x (500 fakes: docs/explain.md) */
    free(mask);
    for (size_t i = 0; i < nn; i++) free(names[i]);
    free(names);
    free(dir);
    dfd_face_detector_free(fd);
    dfd_classifier_free(cls);
}

/* ---- the result: JSON and API ----------------------------------------------------------- */

/* The deletion check's three ways of hiding cells (dfd_classifier_score_blanked): no cells
 * changes nothing whatever the way; hiding every cell with the original gives the
 * original's score exactly; a blur leaves a flat image as it is (edges replicated, the
 * mean kept), while grey changes it; and a blurred face scores differently from the face. */
static void blanking_ways(void **state) {
    (void)state;
    char shipped[4096];
    if (!have_models(shipped, sizeof shipped)) skip();
    dfd_classifier *cls;
    dfd_error e;
    if (dfd_classifier_load(shipped, 1, &cls, &e)) fail_msg("%s", e.message);
    const int S = dfd_classifier_contract(cls)->size;
    char path[4200];
    snprintf(path, sizeof path, "%s/examples/astronaut.jpg", tu_source_dir());
    dfd_image img = {0}, face = {0}, other = {0}, flat = {0};
    if (dfd_image_load(path, NULL, &img, NULL, &e)) fail_msg("%s", e.message);
    /* Two different S x S views of the photo: its top-left corner and a shifted one. */
    assert_int_equal(dfd_image_alloc(&face, S, S, &e), DFD_OK);
    assert_int_equal(dfd_image_alloc(&other, S, S, &e), DFD_OK);
    assert_int_equal(dfd_image_alloc(&flat, S, S, &e), DFD_OK);
    assert_true(img.w >= S + 40 && img.h >= S + 40);
    for (int y = 0; y < S; y++) {
        memcpy(face.rgb + (size_t)y * S * 3, img.rgb + ((size_t)(y + 40) * img.w + 40) * 3, (size_t)S * 3);
        memcpy(other.rgb + (size_t)y * S * 3, img.rgb + (size_t)y * img.w * 3, (size_t)S * 3);
        memset(flat.rgb + (size_t)y * S * 3, 200, (size_t)S * 3);
    }
    unsigned char all[DFD_HEAT_CELLS], some[DFD_HEAT_CELLS] = {0};
    memset(all, 1, sizeof all);
    for (int i = 0; i < DFD_HEAT_CELLS; i += 3) some[i] = 1;
    double p_face, p_other, p, q;
    assert_int_equal(dfd_classifier_score_blanked(cls, &face, NULL, DFD_BLANK_GREY, NULL, &p_face, &e), DFD_OK);
    assert_int_equal(dfd_classifier_score_blanked(cls, &other, NULL, DFD_BLANK_GREY, NULL, &p_other, &e), DFD_OK);
    assert_true(fabs(p_face - p_other) > 1e-4); /* else the next checks prove nothing */
    assert_int_equal(dfd_classifier_score_blanked(cls, &face, NULL, DFD_BLANK_BLUR, NULL, &p, &e), DFD_OK);
    assert_float_equal(p, p_face, 1e-9);
    assert_int_equal(dfd_classifier_score_blanked(cls, &face, all, DFD_BLANK_SOURCE, &other, &p, &e), DFD_OK);
    assert_float_equal(p, p_other, 1e-6);
    assert_int_equal(dfd_classifier_score_blanked(cls, &face, some, DFD_BLANK_SOURCE, &other, &p, &e), DFD_OK);
    assert_true(fabs(p - p_face) > 1e-6 && fabs(p - p_other) > 1e-6);
    assert_int_equal(dfd_classifier_score_blanked(cls, &flat, NULL, DFD_BLANK_GREY, NULL, &p, &e), DFD_OK);
    assert_int_equal(dfd_classifier_score_blanked(cls, &flat, all, DFD_BLANK_BLUR, NULL, &q, &e), DFD_OK);
    assert_float_equal(q, p, 1e-5);
    assert_int_equal(dfd_classifier_score_blanked(cls, &flat, all, DFD_BLANK_GREY, NULL, &q, &e), DFD_OK);
    assert_true(fabs(q - p) > 1e-6);
    assert_int_equal(dfd_classifier_score_blanked(cls, &face, all, DFD_BLANK_BLUR, NULL, &p, &e), DFD_OK);
    assert_true(fabs(p - p_face) > 1e-4);
    /* Bad arguments are refused with a message. */
    assert_int_equal(dfd_classifier_score_blanked(cls, &face, all, DFD_BLANK_SOURCE, NULL, &p, &e), DFD_E_ARG);
    assert_int_equal(dfd_classifier_score_blanked(cls, &face, all, 7, NULL, &p, &e), DFD_E_ARG);
    dfd_image_free(&img), dfd_image_free(&face), dfd_image_free(&other), dfd_image_free(&flat);
    dfd_classifier_free(cls);
}

static int build_arch(void *user, const dfd_model_meta *m, nn_graph **out, dfd_error *err) {
    (void)user;
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = m->input_size;
    return dfd_arch_build(m->arch, &o, out, err);
}

/* An ensemble's Grad-CAM weighs each network's channels by its weight in the output
 * (find_cam in classifier.c): with the combining weights (1, 0) the ensemble of dfd-image-3
 * and dfd-image-2 must draw dfd-image-3's map, with (0, 1) dfd-image-2's, and with (½, ½)
 * neither. Both plain Grad-CAM and Grad-CAM++, on one crop. */
static void ensemble_cams_weigh_their_members(void **state) {
    (void)state;
    char a[4096], b[4096], e[4096];
    snprintf(a, sizeof a, "%s/models/dfd-image-3.safetensors", tu_source_dir());
    snprintf(b, sizeof b, "%s/models/dfd-image-2.safetensors", tu_source_dir());
    if (access(a, R_OK) != 0 || access(b, R_OK) != 0) {
        print_message("skipped: models/dfd-image-2 or -3 is missing\n");
        skip();
    }
    char *dir = tu_mkdtemp();
    snprintf(e, sizeof e, "%s/e.safetensors", dir);
    const char *members[2] = {a, b};
    dfd_error err;
    assert_int_equal(dfd_model_ensemble(members, 2, e, -1, NULL, &err), DFD_OK);
    nn_graph *g = NULL;
    dfd_model_meta meta;
    dfd_model_meta_init(&meta);
    assert_int_equal(dfd_model_load(e, dfd_model_build_graph, NULL, &g, &meta, &err), DFD_OK);
    assert_int_equal(meta.members, 2);
    nn_param *u = nn_graph_find_param(g, "ensemble/kernel");
    assert_non_null(u);
    dfd_classifier *single[2], *ens;
    assert_int_equal(dfd_classifier_load(a, 1, &single[0], &err), DFD_OK);
    assert_int_equal(dfd_classifier_load(b, 1, &single[1], &err), DFD_OK);
    dfd_image crop = {0};
    assert_int_equal(dfd_image_alloc(&crop, 128, 128, &err), DFD_OK);
    for (size_t i = 0; i < (size_t)128 * 128 * 3; i++) /* a smooth pattern with some texture */
        crop.rgb[i] = (unsigned char)(128 + 60 * sin((double)(i / 3 % 128) / 9.0) * cos((double)(i / 384) / 13.0) +
                                      (double)((i * 2654435761u) % 17));
    const int methods[4] = {DFD_EXPLAIN_GRADCAM, DFD_EXPLAIN_GRADCAMPP, DFD_EXPLAIN_CAM, DFD_EXPLAIN_GRADCAM_FULL};
    const float mix[3][2] = {{1, 0}, {0, 1}, {0.5f, 0.5f}};
    for (int k = 0; k < 3; k++) {
        u->data[0] = mix[k][0], u->data[1] = mix[k][1];
        assert_int_equal(dfd_model_save(g, &meta, NULL, e, &err), DFD_OK);
        assert_int_equal(dfd_classifier_load(e, 1, &ens, &err), DFD_OK);
        for (int mth = 0; mth < 4; mth++) {
            float me[DFD_HEAT_CELLS], m0[DFD_HEAT_CELLS], m1[DFD_HEAT_CELLS];
            assert_int_equal(dfd_classifier_explain(ens, &crop, methods[mth], me, &err), DFD_OK);
            assert_int_equal(dfd_classifier_explain(single[0], &crop, methods[mth], m0, &err), DFD_OK);
            assert_int_equal(dfd_classifier_explain(single[1], &crop, methods[mth], m1, &err), DFD_OK);
            double d0 = 0, d1 = 0, d01 = 0;
            for (int i = 0; i < DFD_HEAT_CELLS; i++) {
                d0 = fmax(d0, fabs(me[i] - m0[i])), d1 = fmax(d1, fabs(me[i] - m1[i]));
                d01 = fmax(d01, fabs(m0[i] - m1[i]));
            }
            assert_true(d01 > 0.2); /* the two models' maps differ: the test can tell them apart */
            if (methods[mth] == DFD_EXPLAIN_CAM) { /* every cell ranked: the lowest near 0, the highest 1 */
                float lo = 1, hi = 0;
                for (int i = 0; i < DFD_HEAT_CELLS; i++) lo = fminf(lo, me[i]), hi = fmaxf(hi, me[i]);
                assert_true(lo < 0.05f); /* the lowest feature cell is 0; the grid samples between cells */
                assert_float_equal(hi, 1, 1e-6);
            }
            if (k == 0) assert_true(d0 < 0.02);
            if (k == 1) assert_true(d1 < 0.02);
            if (k == 2) assert_true(d0 > 0.02 && d1 > 0.02);
        }
        dfd_classifier_free(ens);
    }
    dfd_classifier_free(single[0]), dfd_classifier_free(single[1]);
    dfd_image_free(&crop);
    dfd_model_meta_free(&meta);
    nn_graph_free(g);
    tu_rmtree(dir);
    free(dir);
}

static dfd_ctx *ctx_with(const char *shipped, const char *synthetic, int explain);

/* Writes model file src again as dst with "heatmap" set to method (NULL: none). */
static void with_heatmap(const char *src, const char *dst, const char *method) {
    nn_graph *g = NULL;
    dfd_model_meta meta;
    dfd_model_meta_init(&meta);
    dfd_error err;
    assert_int_equal(dfd_model_load(src, dfd_model_build_graph, NULL, &g, &meta, &err), DFD_OK);
    free(meta.heatmap);
    meta.heatmap = method ? strdup(method) : NULL;
    assert_int_equal(dfd_model_save(g, &meta, NULL, dst, &err), DFD_OK);
    dfd_model_meta_free(&meta);
    nn_graph_free(g);
}

static int heat_method_of(const char *path) {
    dfd_classifier *c;
    dfd_error err;
    assert_int_equal(dfd_classifier_load(path, 1, &c, &err), DFD_OK);
    int m = dfd_classifier_heat_method(c);
    dfd_classifier_free(c);
    return m;
}

/* The model file says how its maps are made: without "heatmap" (every model before
 * --sbi-loc) by occlusion; with "gradcam-full" (what `train --sbi-loc` writes) by
 * Grad-CAM at the grid's resolution, and scan's JSON names that method. An ensemble keeps
 * the method only when every member names it. */
static void heatmap_metadata_chooses_the_method(void **state) {
    (void)state;
    char shipped[4096];
    if (!have_models(shipped, sizeof shipped)) skip();
    char b[4200], dir_a[4300], dir_b[4300], ens[4300], mixed[4300];
    snprintf(b, sizeof b, "%s/models/dfd-image-3.safetensors", tu_source_dir());
    char *dir = tu_mkdtemp();
    snprintf(dir_a, sizeof dir_a, "%s/a.safetensors", dir);
    snprintf(dir_b, sizeof dir_b, "%s/b.safetensors", dir);
    snprintf(ens, sizeof ens, "%s/e.safetensors", dir);
    snprintf(mixed, sizeof mixed, "%s/m.safetensors", dir);
    assert_int_equal(heat_method_of(shipped), DFD_EXPLAIN_OCCLUSION_FAST);
    with_heatmap(shipped, dir_a, "gradcam-full");
    with_heatmap(b, dir_b, "gradcam-full");
    assert_int_equal(heat_method_of(dir_a), DFD_EXPLAIN_GRADCAM_FULL);
    dfd_error err;
    const char *both[2] = {dir_a, dir_b}, *one[2] = {dir_a, b};
    assert_int_equal(dfd_model_ensemble(both, 2, ens, -1, NULL, &err), DFD_OK);
    assert_int_equal(dfd_model_ensemble(one, 2, mixed, -1, NULL, &err), DFD_OK);
    assert_int_equal(heat_method_of(ens), DFD_EXPLAIN_GRADCAM_FULL);
    assert_int_equal(heat_method_of(mixed), DFD_EXPLAIN_OCCLUSION_FAST);
    char *info = NULL;
    assert_int_equal(dfd_model_info(ens, &info, &err), DFD_OK);
    assert_non_null(strstr(info, "\"heatmap\":\"gradcam-full\""));
    dfd_free(info);

    /* Through the pipeline: the JSON names the method and the map is a map. */
    char img[4200];
    snprintf(img, sizeof img, "%s/examples/astronaut.jpg", tu_source_dir());
    dfd_ctx *ctx = ctx_with(dir_a, NULL, 1);
    dfd_result *r;
    assert_int_equal(dfd_analyze_file(ctx, img, NULL, NULL, &r, &err), DFD_OK);
    dfd_heatmap hm;
    assert_int_equal(dfd_result_face_heatmap(r, 0, &hm), DFD_OK);
    assert_string_equal(hm.method, "gradcam-full");
    float hi = 0;
    for (int i = 0; i < DFD_HEATMAP_GRID * DFD_HEATMAP_GRID; i++) {
        assert_true(hm.manipulated[i] >= 0 && hm.manipulated[i] <= 1);
        hi = fmaxf(hi, hm.manipulated[i]);
    }
    assert_true(hi == 0 || fabsf(hi - 1) < 1e-6); /* scaled to 1, or 0 where nothing raises P(fake) */
    dfd_result_free(r);
    dfd_ctx_destroy(ctx);
    tu_rmtree(dir);
    free(dir);
}

static json_t *result_json(const dfd_result *r) {
    char *s = dfd_result_json(r);
    assert_non_null(s);
    json_t *j = json_loads(s, 0, NULL);
    dfd_free(s);
    assert_non_null(j);
    return j;
}

/* A 16 x 16 array of numbers in [0, 1]. */
static void check_grid(const json_t *g) {
    assert_true(json_is_array(g));
    assert_int_equal(json_array_size(g), 16);
    for (size_t y = 0; y < 16; y++) {
        const json_t *row = json_array_get(g, y);
        assert_int_equal(json_array_size(row), 16);
        for (size_t x = 0; x < 16; x++) {
            const json_t *v = json_array_get(row, x);
            assert_true(json_is_number(v));
            assert_true(json_number_value(v) >= 0 && json_number_value(v) <= 1);
        }
    }
}

static void check_heatmap(const json_t *h, int video, int synthetic) {
    assert_true(json_is_object(h));
    assert_int_equal(json_integer_value(json_object_get(h, "grid")), 16);
    assert_string_equal(json_string_value(json_object_get(h, "method")), "occlusion-fast");
    if (synthetic)
        assert_string_equal(json_string_value(json_object_get(h, "method_synthetic")), "gradcam++");
    else
        assert_true(json_is_null(json_object_get(h, "method_synthetic")));
    const json_t *crop = json_object_get(h, "crop");
    assert_int_equal(json_array_size(crop), 4);
    assert_true(json_number_value(json_array_get(crop, 2)) > 0);
    assert_true(json_number_value(json_array_get(crop, 2)) == json_number_value(json_array_get(crop, 3)));
    assert_true(video ? json_is_integer(json_object_get(h, "frame")) : json_is_null(json_object_get(h, "frame")));
    assert_true(video ? json_is_number(json_object_get(h, "time_s")) : json_is_null(json_object_get(h, "time_s")));
    check_grid(json_object_get(h, "manipulated"));
    if (synthetic)
        check_grid(json_object_get(h, "synthetic"));
    else
        assert_true(json_is_null(json_object_get(h, "synthetic")));
}

static dfd_ctx *ctx_with(const char *shipped, const char *synthetic, int explain) {
    char models[4096];
    snprintf(models, sizeof models, "%s/models", tu_source_dir());
    dfd_options o;
    dfd_options_default(&o);
    o.models_dir = models;
    o.image_model = shipped;
    o.synthetic_model = synthetic;
    o.no_synthetic = synthetic == NULL;
    o.frames = 8;
    o.explain = explain;
    dfd_ctx *ctx;
    dfd_error e;
    if (dfd_ctx_create(&o, &ctx, &e)) fail_msg("dfd_ctx_create: %s", e.message);
    return ctx;
}

static void json_shape_and_result_api(void **state) {
    (void)state;
    char shipped[4096];
    if (!have_models(shipped, sizeof shipped)) skip();
    char img[4200], clip[4200];
    snprintf(img, sizeof img, "%s/examples/astronaut.jpg", tu_source_dir());
    snprintf(clip, sizeof clip, "%s/examples/astronaut-clip.mp4", tu_source_dir());
    dfd_error e;

    /* Off by default: heatmap null, no map through the API. */
    dfd_ctx *ctx = ctx_with(shipped, NULL, 0);
    dfd_result *r;
    assert_int_equal(dfd_analyze_file(ctx, img, NULL, NULL, &r, &e), DFD_OK);
    assert_true(dfd_result_face_count(r) >= 1);
    json_t *j = result_json(r);
    json_t *f0 = json_array_get(json_object_get(j, "faces"), 0);
    assert_true(json_is_null(json_object_get(f0, "heatmap")));
    dfd_heatmap hm;
    assert_int_equal(dfd_result_face_heatmap(r, 0, &hm), DFD_E_NOT_FOUND);
    json_decref(j);
    dfd_result_free(r);

    /* Turned on for the same context. */
    dfd_ctx_set_explain(ctx, 1);
    assert_int_equal(dfd_analyze_file(ctx, img, NULL, NULL, &r, &e), DFD_OK);
    j = result_json(r);
    f0 = json_array_get(json_object_get(j, "faces"), 0);
    check_heatmap(json_object_get(f0, "heatmap"), 0, 0);
    assert_int_equal(dfd_result_face_heatmap(r, 0, &hm), DFD_OK);
    assert_int_equal(hm.grid, DFD_HEATMAP_GRID);
    assert_string_equal(hm.method, "occlusion-fast");
    assert_non_null(hm.manipulated);
    assert_null(hm.synthetic);
    assert_null(hm.method_synthetic);
    assert_int_equal(hm.crop_side, 128); /* dfd-image-2's input */
    assert_non_null(hm.crop_rgb);
    assert_int_equal(hm.frame, -1);
    assert_int_equal(dfd_result_face_heatmap(r, dfd_result_face_count(r), &hm), DFD_E_NOT_FOUND);
    json_decref(j);
    dfd_result_free(r);

    /* A video: each track's map is of one of its frames. */
    assert_int_equal(dfd_analyze_file(ctx, clip, NULL, NULL, &r, &e), DFD_OK);
    j = result_json(r);
    json_t *faces = json_object_get(j, "faces");
    assert_true(json_array_size(faces) >= 1);
    for (size_t i = 0; i < json_array_size(faces); i++) {
        json_t *f = json_array_get(faces, i);
        json_t *h = json_object_get(f, "heatmap");
        check_heatmap(h, 1, 0);
        json_int_t frame = json_integer_value(json_object_get(h, "frame"));
        int seen = 0;
        json_t *fr = json_object_get(f, "frames");
        for (size_t k = 0; k < json_array_size(fr); k++) seen |= json_integer_value(json_array_get(fr, k)) == frame;
        assert_true(seen);
    }
    json_decref(j);
    dfd_result_free(r);
    dfd_ctx_destroy(ctx);

    /* With a synthetic-face detector (the shipped weights re-saved as one, at 160 px), its
     * map beside the manipulation detector's, the crop still the manipulation model's. */
    char *tmp = tu_mkdtemp();
    char *syn = tu_join(tmp, "syn.safetensors");
    nn_graph *g = NULL;
    dfd_model_meta m;
    if (dfd_model_load(shipped, build_arch, NULL, &g, &m, &e)) fail_msg("%s", e.message);
    free(m.task);
    m.task = strdup("synthetic");
    m.input_size = 160;
    if (dfd_model_save(g, &m, NULL, syn, &e)) fail_msg("%s", e.message);
    dfd_model_meta_free(&m);
    nn_graph_free(g);
    ctx = ctx_with(shipped, syn, 1);
    assert_int_equal(dfd_analyze_file(ctx, img, NULL, NULL, &r, &e), DFD_OK);
    j = result_json(r);
    check_heatmap(json_object_get(json_array_get(json_object_get(j, "faces"), 0), "heatmap"), 0, 1);
    assert_int_equal(dfd_result_face_heatmap(r, 0, &hm), DFD_OK);
    assert_non_null(hm.synthetic);
    assert_string_equal(hm.method_synthetic, "gradcam++");
    assert_int_equal(hm.crop_side, 128);
    json_decref(j);
    dfd_result_free(r);
    dfd_ctx_destroy(ctx);
    tu_rmtree(tmp);
    free(syn);
    free(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_grad_is_the_layer_gradient),
        cmocka_unit_test(map_peaks_inside_the_blend_on_flagged_fakes),
        cmocka_unit_test(blanking_ways),
        cmocka_unit_test(json_shape_and_result_api),
        cmocka_unit_test(ensemble_cams_weigh_their_members),
        cmocka_unit_test(heatmap_metadata_chooses_the_method),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
