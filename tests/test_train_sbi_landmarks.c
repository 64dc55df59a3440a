/* test_train_sbi_landmarks — the SBI generator's masks follow the landmarks. On real
 * dfdc-faces crops, Face Mesh's landmarks (found from the crop alone, as training finds
 * them) give masks whose weight lies inside the landmarks' hull (dilated by 5% of the face's
 * size) and which cover most of that hull at full blend ratio, for both hull variants;
 * moving the landmarks moves the mask by as much; the output equals the input bit for bit
 * where the mask is 0 and is the same for the same seed; no landmarks means exactly the
 * ellipse of dfd_sbi. The dataset pass finds landmarks for every readable crop, none for a
 * missing file, scales them to the loader's size and round-trips through its sidecar file.
 * Needs models/registry (./setup.sh) and ../shared/data; skips with a message otherwise. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/train.h"

static dfd_landmarker *landmarker(void) {
    dfd_landmarker *l = NULL;
    dfd_error e;
    int rc = dfd_landmarker_create(NULL, NN_BACKEND_DNNL, 1, &l, &e);
    if (rc == DFD_E_NOT_FOUND) {
        print_message("skipped: %s\n", e.message);
        return NULL;
    }
    if (rc) fail_msg("landmarker: %s", e.message);
    return l;
}

/* The first n real dfdc-faces crops by name (paths malloc'ed); returns how many. */
static int real_crops(char **paths, int n) {
    char *dir = tu_shared_path("dfdc-faces/real");
    if (!dir) return 0;
    struct dirent **ents = NULL;
    int m = scandir(dir, &ents, NULL, alphasort), k = 0;
    for (int i = 0; i < m; i++) {
        if (k < n && strstr(ents[i]->d_name, ".jpg")) paths[k++] = tu_join(dir, ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    free(dir);
    return k;
}

static int is_forehead(int idx) {
    static const int fh[] = {10, 338, 297, 332, 284, 251, 109, 67, 103, 54, 21};
    for (size_t i = 0; i < sizeof fh / sizeof fh[0]; i++)
        if (fh[i] == idx) return 1;
    return 0;
}

/* The hull the mask is meant to follow: the whole oval, or the oval below the eyebrows
 * plus the eyebrows. */
static int reference_hull(const float pts[DFD_SBI_POINTS][2], int forehead, float hull[DFD_HULL_MAX][2]) {
    float sel[DFD_SBI_POINTS][2];
    int n = 0;
    for (int i = 0; i < DFD_SBI_POINTS; i++) {
        int keep = i < DFD_MESH_OVAL_POINTS ? (forehead || !is_forehead(dfd_mesh_face_oval[i])) : !forehead;
        if (keep) sel[n][0] = pts[i][0], sel[n][1] = pts[i][1], n++;
    }
    return dfd_convex_hull((const float(*)[2])sel, n, hull);
}

/* Distance from (x, y) to a convex hull (0 inside). */
static float hull_distance(const float hull[][2], int n, float x, float y) {
    if (dfd_hull_contains(hull, n, x, y)) return 0;
    float best = INFINITY;
    for (int i = 0; i < n; i++) {
        const float *a = hull[i], *b = hull[(i + 1) % n];
        float ex = b[0] - a[0], ey = b[1] - a[1], t = ((x - a[0]) * ex + (y - a[1]) * ey) / (ex * ex + ey * ey);
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        best = fminf(best, hypotf(x - a[0] - t * ex, y - a[1] - t * ey));
    }
    return best;
}

static float hull_area(const float hull[][2], int n) {
    double a = 0;
    for (int i = 0; i < n; i++) a += (double)hull[i][0] * hull[(i + 1) % n][1] - (double)hull[(i + 1) % n][0] * hull[i][1];
    return (float)fabs(a / 2);
}

static void crop_points(dfd_landmarker *lm, const dfd_image *img, float pts[DFD_SBI_POINTS][2]) {
    dfd_ds_landmark_opts o;
    dfd_ds_landmark_opts_default(&o);
    dfd_face_mesh m;
    dfd_error e;
    if (dfd_crop_landmarks(lm, img, &o, &m, &e) != DFD_OK) fail_msg("landmarks: %s", e.message);
    assert_true(m.presence > 0.5f);
    dfd_sbi_points_from_mesh(&m, 1, 1, pts);
}

static void sbi_masks_follow_the_landmarks(void **state) {
    (void)state;
    TU_REQUIRE_SHARED_DATA();
    dfd_landmarker *lm = landmarker();
    if (!lm) skip();
    char *paths[3];
    int n = real_crops(paths, 3);
    assert_int_equal(n, 3);
    float worst_inside = 1, worst_cover = 1;
    int full_ratio = 0;
    for (int c = 0; c < n; c++) {
        dfd_image real;
        assert_int_equal(dfd_image_load(paths[c], NULL, &real, NULL, NULL), DFD_OK);
        float pts[DFD_SBI_POINTS][2];
        crop_points(lm, &real, pts);
        size_t np = (size_t)real.w * real.h;
        float *mask = malloc(np * sizeof *mask);
        for (int forehead = 0; forehead <= 1; forehead++) {
            dfd_sbi_opts o;
            dfd_sbi_opts_default(&o);
            o.forehead = (float)forehead;
            float hull[DFD_HULL_MAX][2];
            int nh = reference_hull(pts, forehead, hull);
            assert_true(nh >= 3);
            float size = sqrtf(hull_area(hull, nh));
            for (int seed = 1; seed <= 5; seed++) {
                dfd_image fake;
                assert_int_equal(dfd_image_copy(&real, &fake, NULL), DFD_OK);
                nn_rng r;
                nn_rng_seed(&r, (uint64_t)(seed * 31 + forehead));
                assert_int_equal(dfd_sbi_landmarks(&fake, &o, (const float(*)[2])pts, &r, mask, NULL), DFD_OK);
                double total = 0, near = 0;
                long in_hull = 0, covered = 0;
                float mx = 0;
                for (int y = 0; y < real.h; y++)
                    for (int x = 0; x < real.w; x++) {
                        size_t i = (size_t)y * real.w + x;
                        float m = mask[i], px = x + 0.5f, py = y + 0.5f;
                        assert_true(m >= 0 && m <= 1);
                        if (m == 0) assert_memory_equal(real.rgb + 3 * i, fake.rgb + 3 * i, 3); /* bit for bit */
                        total += m;
                        mx = fmaxf(mx, m);
                        if (m > 0 && hull_distance((const float(*)[2])hull, nh, px, py) <= 0.05f * size) near += m;
                        if (dfd_hull_contains((const float(*)[2])hull, nh, px, py)) {
                            in_hull++;
                            covered += m > 0.5f;
                        }
                    }
                assert_true(total > 0);
                worst_inside = fminf(worst_inside, (float)(near / total));
                if (mx > 0.99f) { /* blend ratio 1 */
                    full_ratio++;
                    worst_cover = fminf(worst_cover, (float)covered / (float)in_hull);
                }
                dfd_image_free(&fake);
            }
        }
        free(mask);
        dfd_image_free(&real);
        free(paths[c]);
    }
    print_message("mask weight within the hull + 5%%: at least %.3f; hull covered at mask > 0.5 (ratio 1, %d masks): at "
                  "least %.3f\n",
                  (double)worst_inside, full_ratio, (double)worst_cover);
    assert_true(full_ratio >= 6);
    assert_true(worst_inside >= 0.95f);
    assert_true(worst_cover >= 0.80f);
    dfd_landmarker_free(lm);
}

static void centroid(const float *m, int w, int h, double *cx, double *cy) {
    double s = 0, sx = 0, sy = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float v = m[(size_t)y * w + x];
            s += v, sx += v * (x + 0.5), sy += v * (y + 0.5);
        }
    *cx = sx / s, *cy = sy / s;
}

/* The crop in the middle of a larger grey canvas, so a moved mask stays whole. */
static void moving_the_landmarks_moves_the_mask(void **state) {
    (void)state;
    TU_REQUIRE_SHARED_DATA();
    dfd_landmarker *lm = landmarker();
    if (!lm) skip();
    char *paths[1];
    assert_int_equal(real_crops(paths, 1), 1);
    dfd_image crop, canvas;
    assert_int_equal(dfd_image_load(paths[0], NULL, &crop, NULL, NULL), DFD_OK);
    float pts[DFD_SBI_POINTS][2], moved[DFD_SBI_POINTS][2];
    crop_points(lm, &crop, pts);
    const int W = crop.w + 128, H = crop.h + 128;
    assert_int_equal(dfd_image_alloc(&canvas, W, H, NULL), DFD_OK);
    memset(canvas.rgb, 128, (size_t)W * H * 3);
    for (int y = 0; y < crop.h; y++) memcpy(canvas.rgb + ((size_t)(y + 40) * W + 40) * 3, crop.rgb + (size_t)y * crop.w * 3, (size_t)crop.w * 3);
    for (int k = 0; k < DFD_SBI_POINTS; k++) {
        pts[k][0] += 40, pts[k][1] += 40;
        moved[k][0] = pts[k][0] + 30, moved[k][1] = pts[k][1] + 12;
    }
    float *a = malloc(sizeof(float) * W * H), *b = malloc(sizeof(float) * W * H);
    dfd_sbi_opts o;
    dfd_sbi_opts_default(&o);
    for (int seed = 1; seed <= 4; seed++) {
        dfd_image f1, f2;
        assert_int_equal(dfd_image_copy(&canvas, &f1, NULL), DFD_OK);
        assert_int_equal(dfd_image_copy(&canvas, &f2, NULL), DFD_OK);
        nn_rng r1, r2;
        nn_rng_seed(&r1, (uint64_t)seed);
        nn_rng_seed(&r2, (uint64_t)seed);
        assert_int_equal(dfd_sbi_landmarks(&f1, &o, (const float(*)[2])pts, &r1, a, NULL), DFD_OK);
        assert_int_equal(dfd_sbi_landmarks(&f2, &o, (const float(*)[2])moved, &r2, b, NULL), DFD_OK);
        double ax, ay, bx, by;
        centroid(a, W, H, &ax, &ay);
        centroid(b, W, H, &bx, &by);
        print_message("seed %d: mask centre moved by (%.2f, %.2f) for landmarks moved by (30, 12)\n", seed, bx - ax, by - ay);
        assert_true(fabs(bx - ax - 30) < 1.0 && fabs(by - ay - 12) < 1.0);
        /* the same seed and points give the same fake and mask */
        dfd_image f3;
        assert_int_equal(dfd_image_copy(&canvas, &f3, NULL), DFD_OK);
        nn_rng_seed(&r1, (uint64_t)seed);
        assert_int_equal(dfd_sbi_landmarks(&f3, &o, (const float(*)[2])pts, &r1, b, NULL), DFD_OK);
        assert_memory_equal(f1.rgb, f3.rgb, (size_t)W * H * 3);
        assert_memory_equal(a, b, sizeof(float) * W * H);
        dfd_image_free(&f1);
        dfd_image_free(&f2);
        dfd_image_free(&f3);
    }
    free(a);
    free(b);
    dfd_image_free(&canvas);
    dfd_image_free(&crop);
    free(paths[0]);
    dfd_landmarker_free(lm);
}

/* No landmarks: exactly dfd_sbi's ellipse (the old call is unchanged). Unusable points
 * are refused and leave the image alone. Needs no model. */
static void no_landmarks_is_the_ellipse_and_bad_points_are_refused(void **state) {
    (void)state;
    const int S = 80;
    dfd_image a, b;
    assert_int_equal(dfd_image_alloc(&a, S, S, NULL), DFD_OK);
    for (int i = 0; i < S * S * 3; i++) a.rgb[i] = (uint8_t)(i * 37 % 251);
    assert_int_equal(dfd_image_copy(&a, &b, NULL), DFD_OK);
    dfd_sbi_opts o;
    dfd_sbi_opts_default(&o);
    nn_rng r1, r2;
    nn_rng_seed(&r1, 5);
    nn_rng_seed(&r2, 5);
    assert_int_equal(dfd_sbi(&a, &o, &r1, NULL, NULL), DFD_OK);
    assert_int_equal(dfd_sbi_landmarks(&b, &o, NULL, &r2, NULL, NULL), DFD_OK);
    assert_memory_equal(a.rgb, b.rgb, (size_t)S * S * 3);
    float pts[DFD_SBI_POINTS][2];
    for (int k = 0; k < DFD_SBI_POINTS; k++) pts[k][0] = pts[k][1] = NAN;
    pts[0][0] = 10, pts[0][1] = 10; /* one finite point spans nothing */
    dfd_error e;
    assert_int_equal(dfd_sbi_landmarks(&b, &o, (const float(*)[2])pts, &r2, NULL, &e), DFD_E_ARG);
    assert_non_null(strstr(e.message, "span no area"));
    assert_memory_equal(a.rgb, b.rgb, (size_t)S * S * 3);
    dfd_image_free(&a);
    dfd_image_free(&b);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* DFD_TEST_LANDMARK_ITEMS=N measures on N crops instead of 6. */
static void dataset_landmarks_for_every_crop(void **state) {
    (void)state;
    TU_REQUIRE_SHARED_DATA();
    dfd_landmarker *probe = landmarker();
    if (!probe) skip();
    dfd_landmarker_free(probe);
    int want = getenv("DFD_TEST_LANDMARK_ITEMS") ? atoi(getenv("DFD_TEST_LANDMARK_ITEMS")) : 6;
    if (want < 1 || want > 100000) want = 6;
    char **paths = calloc((size_t)want, sizeof *paths);
    int n = real_crops(paths, want);
    assert_int_equal(n, want);
    char *root = tu_shared_path("dfdc-faces");
    dfd_dataset *ds;
    assert_int_equal(dfd_dataset_new(root, &ds, NULL), DFD_OK);
    for (int i = 0; i < n; i++) assert_int_equal(dfd_dataset_add(ds, paths[i], 0, NULL, NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK);
    char *missing = tu_join(root, "real/no-such-crop.jpg");
    assert_int_equal(dfd_dataset_add(ds, missing, 0, NULL, NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK);
    dfd_ds_landmark_opts o;
    dfd_ds_landmark_opts_default(&o);
    dfd_ds_landmarks *l;
    dfd_error e;
    double t0 = now_s(), c0 = cpu_s();
    assert_int_equal(dfd_dataset_landmarks(ds, &o, &l, &e), DFD_OK);
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    print_message("landmarks for %d crops (found on %zu): %.1f ms wall, %.1f ms CPU per crop (decode + 2 mesh passes, "
                  "1 thread)\n",
                  n, l->found, 1e3 * wall / n, 1e3 * cpu / n);
    assert_int_equal(l->n, (size_t)n + 1);
    assert_true(l->found >= (size_t)n * 9 / 10);
    assert_int_equal(l->w[n], 0); /* the missing file */
    /* The face's outline lies around the crop's centre and spans most of it. */
    for (int i = 0; i < n; i++) {
        if (!l->w[i]) continue;
        float hull[DFD_HULL_MAX][2];
        int nh = dfd_convex_hull((const float(*)[2])l->pts[i], DFD_SBI_POINTS, hull);
        assert_true(nh >= 3);
        assert_true(dfd_hull_contains((const float(*)[2])hull, nh, 0.5f * l->w[i], 0.5f * l->h[i]));
        float frac = hull_area((const float(*)[2])hull, nh) / ((float)l->w[i] * l->h[i]);
        assert_true(frac > 0.3f && frac < 1.2f);
    }
    /* Scaled to the loader's size. */
    float pts[DFD_SBI_POINTS][2];
    assert_int_equal(dfd_ds_landmarks_get(l, n, 112, 112, pts), 0);
    int first = 0;
    while (!l->w[first]) first++;
    assert_int_equal(dfd_ds_landmarks_get(l, (size_t)first, l->w[first] / 2, l->h[first] / 2, pts), 1);
    assert_true(fabsf(pts[5][0] - l->pts[first][5][0] / 2) < 1e-3f);
    /* Sidecar round trip, and a damaged one refused. */
    char *dir = tu_mkdtemp(), *side = tu_join(dir, "landmarks.tsv");
    assert_int_equal(dfd_ds_landmarks_save(l, ds, side, &e), DFD_OK);
    dfd_ds_landmarks *back;
    assert_int_equal(dfd_ds_landmarks_load(side, ds, &back, &e), DFD_OK);
    assert_int_equal(back->found, l->found);
    for (size_t i = 0; i < l->n; i++) {
        assert_int_equal(back->w[i], l->w[i]);
        for (int k = 0; l->w[i] && k < DFD_SBI_POINTS; k++)
            assert_true(fabsf(back->pts[i][k][0] - l->pts[i][k][0]) <= 0.006f && fabsf(back->pts[i][k][1] - l->pts[i][k][1]) <= 0.006f);
    }
    dfd_ds_landmarks_free(back);
    size_t len;
    uint8_t *txt = tu_read_file(side, &len);
    assert_true(len > 100);
    tu_write_file(side, txt, len / 2); /* cut mid-line */
    free(txt);
    assert_int_equal(dfd_ds_landmarks_load(side, ds, &back, &e), DFD_E_CORRUPT);
    tu_rmtree(dir);
    free(side);
    free(dir);
    dfd_ds_landmarks_free(l);
    dfd_dataset_free(ds);
    free(missing);
    free(root);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sbi_masks_follow_the_landmarks),
        cmocka_unit_test(moving_the_landmarks_moves_the_mask),
        cmocka_unit_test(no_landmarks_is_the_ellipse_and_bad_points_are_refused),
        cmocka_unit_test(dataset_landmarks_for_every_crop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
