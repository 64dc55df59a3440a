/* test_train_augment — augmentation does what each transform promises: the flip is exact
 * (and its own inverse), a 180-degree rotation equals two flips, JPEG re-compression
 * changes pixels but keeps the size, hue/saturation keep greys grey, cutout fills its
 * rectangle, noise has its strength, the pipeline is deterministic in its seed, and a
 * self-blended fake differs from its real face only inside its mask; a part blend lies
 * inside the face's mask, covers a share of it, and moves from seed to seed; a mask moves
 * with the image under the geometric transforms. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

/* A textured test image: gradients plus a fine sine pattern (something JPEG must lose). */
static dfd_image pattern(int w, int h) {
    dfd_image im;
    assert_int_equal(dfd_image_alloc(&im, w, h, NULL), DFD_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im.rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)(128 + 100 * sin(x * 1.3) * cos(y * 0.9));
        }
    return im;
}

static int x_in_rect(int x, int y) { return x >= 12 && x < 30 && y >= 6 && y < 20; }

static const uint8_t *px(const dfd_image *im, int x, int y) { return im->rgb + ((size_t)y * im->w + x) * 3; }

static void flip_is_exact(void **state) {
    (void)state;
    dfd_image a = pattern(37, 21), b;
    assert_int_equal(dfd_image_copy(&a, &b, NULL), DFD_OK);
    dfd_augment_opts o;
    dfd_augment_opts_none(&o);
    o.flip = 1;
    nn_rng r;
    nn_rng_seed(&r, 1);
    assert_int_equal(dfd_augment(&b, &o, &r, NULL), DFD_OK);
    for (int y = 0; y < a.h; y++)
        for (int x = 0; x < a.w; x++) assert_memory_equal(px(&b, x, y), px(&a, a.w - 1 - x, y), 3);
    assert_int_equal(dfd_augment(&b, &o, &r, NULL), DFD_OK);
    assert_memory_equal(a.rgb, b.rgb, (size_t)a.w * a.h * 3);
    /* With every transform off, nothing changes. */
    dfd_augment_opts_none(&o);
    assert_int_equal(dfd_augment(&b, &o, &r, NULL), DFD_OK);
    assert_memory_equal(a.rgb, b.rgb, (size_t)a.w * a.h * 3);
    dfd_image_free(&a);
    dfd_image_free(&b);
}

static void affine_identity_and_half_turn(void **state) {
    (void)state;
    dfd_image a = pattern(32, 24), b;
    assert_int_equal(dfd_image_copy(&a, &b, NULL), DFD_OK);
    assert_int_equal(dfd_aug_affine(&b, 0, 0, 0, 1, NULL), DFD_OK);
    assert_memory_equal(a.rgb, b.rgb, (size_t)a.w * a.h * 3);
    assert_int_equal(dfd_aug_affine(&b, 180, 0, 0, 1, NULL), DFD_OK);
    for (int y = 0; y < a.h; y++)
        for (int x = 0; x < a.w; x++) assert_memory_equal(px(&b, x, y), px(&a, a.w - 1 - x, a.h - 1 - y), 3);
    /* A shift by a quarter moves content right; the left edge is replicated. */
    dfd_image_free(&b);
    assert_int_equal(dfd_image_copy(&a, &b, NULL), DFD_OK);
    assert_int_equal(dfd_aug_affine(&b, 0, 0.25f, 0, 1, NULL), DFD_OK);
    assert_memory_equal(px(&b, 20, 5), px(&a, 12, 5), 3);
    assert_memory_equal(px(&b, 0, 5), px(&a, 0, 5), 3);
    assert_int_equal(dfd_aug_affine(&b, 0, 0, 0, 0, NULL), DFD_E_ARG);
    dfd_image_free(&a);
    dfd_image_free(&b);
}

static void jpeg_recompression_changes_pixels_keeps_size(void **state) {
    (void)state;
    dfd_image a = pattern(64, 48), b;
    assert_int_equal(dfd_image_copy(&a, &b, NULL), DFD_OK);
    assert_int_equal(dfd_aug_jpeg(&b, 30, NULL), DFD_OK);
    assert_int_equal(b.w, 64);
    assert_int_equal(b.h, 48);
    double diff = 0;
    size_t n = (size_t)a.w * a.h * 3;
    for (size_t i = 0; i < n; i++) diff += fabs((double)a.rgb[i] - b.rgb[i]);
    diff /= (double)n;
    assert_true(diff > 1.0);  /* the sine texture is lost in part */
    assert_true(diff < 25.0); /* but it is still the same picture */
    /* Higher quality, smaller error. */
    dfd_image c;
    assert_int_equal(dfd_image_copy(&a, &c, NULL), DFD_OK);
    assert_int_equal(dfd_aug_jpeg(&c, 95, NULL), DFD_OK);
    double diff95 = 0;
    for (size_t i = 0; i < n; i++) diff95 += fabs((double)a.rgb[i] - c.rgb[i]);
    assert_true(diff95 / (double)n < diff);
    assert_int_equal(dfd_aug_jpeg(&c, 0, NULL), DFD_E_ARG);
    dfd_image_free(&a);
    dfd_image_free(&b);
    dfd_image_free(&c);
}

static void color_cutout_and_noise(void **state) {
    (void)state;
    dfd_image g;
    assert_int_equal(dfd_image_alloc(&g, 16, 16, NULL), DFD_OK);
    for (int i = 0; i < 256; i++) memset(g.rgb + i * 3, i, 3); /* greys */
    dfd_aug_color(&g, 0, 0, 0.5f, 30, NULL);
    for (int i = 0; i < 256; i++) {
        const uint8_t *p = g.rgb + i * 3;
        assert_true(abs(p[0] - p[1]) <= 1 && abs(p[1] - p[2]) <= 1); /* still grey */
        assert_true(abs(p[0] - i) <= 1);
    }
    dfd_image a = pattern(20, 20);
    dfd_aug_color(&a, 0, 0, -1, 0, NULL); /* saturation -1: every pixel grey */
    for (int i = 0; i < 400; i++) assert_true(abs(a.rgb[i * 3] - a.rgb[i * 3 + 2]) <= 1);
    dfd_aug_cutout(&a, -3, 5, 8, 4, 77);
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 20; x++) {
            int inside = x < 5 && y >= 5 && y < 9;
            if (inside) assert_int_equal(px(&a, x, y)[1], 77);
        }
    dfd_image_free(&a);
    memset(g.rgb, 128, 256 * 3);
    nn_rng r;
    nn_rng_seed(&r, 3);
    dfd_aug_noise(&g, 10, &r);
    double s = 0, s2 = 0;
    for (int i = 0; i < 768; i++) s += g.rgb[i] - 128.0, s2 += (g.rgb[i] - 128.0) * (g.rgb[i] - 128.0);
    double sd = sqrt(s2 / 768 - (s / 768) * (s / 768));
    assert_true(sd > 8.5 && sd < 11.5);
    dfd_image_free(&g);
}

static void pipeline_is_deterministic(void **state) {
    (void)state;
    dfd_augment_opts o;
    dfd_augment_opts_default(&o);
    o.jpeg = o.blur = o.noise = o.cutout = o.downscale = 1; /* everything, every time */
    dfd_image a = pattern(48, 48), b = pattern(48, 48), c = pattern(48, 48);
    nn_rng r1, r2, r3;
    nn_rng_seed(&r1, 11);
    nn_rng_seed(&r2, 11);
    nn_rng_seed(&r3, 12);
    assert_int_equal(dfd_augment(&a, &o, &r1, NULL), DFD_OK);
    assert_int_equal(dfd_augment(&b, &o, &r2, NULL), DFD_OK);
    assert_int_equal(dfd_augment(&c, &o, &r3, NULL), DFD_OK);
    assert_int_equal(a.w, 48);
    assert_memory_equal(a.rgb, b.rgb, 48 * 48 * 3);
    assert_memory_not_equal(a.rgb, c.rgb, 48 * 48 * 3);
    dfd_image_free(&a);
    dfd_image_free(&b);
    dfd_image_free(&c);
}

/* dfd_augment_masked: the same image as dfd_augment from the same seed, and the mask moved
 * with it: a mask equal to the red channel / 255 before is so after a mirror, a rotation,
 * a shift and a scale (to within the image's rounding), for several seeds. */
static void mask_follows_the_geometry(void **state) {
    (void)state;
    const int W = 40, H = 32;
    dfd_augment_opts o;
    dfd_augment_opts_none(&o);
    o.flip = 0.5f, o.affine = 1, o.rotate = 15, o.shift = 0.1f, o.scale = 0.2f;
    float *mask = malloc(sizeof(float) * W * H);
    assert_non_null(mask);
    int moved = 0;
    for (int seed = 1; seed <= 8; seed++) {
        dfd_image a = pattern(W, H), b;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t red = (x >= 12 && x < 30 && y >= 6 && y < 20) ? 255 : 0;
                a.rgb[((size_t)y * W + x) * 3] = red;
                mask[y * W + x] = red / 255.0f;
            }
        assert_int_equal(dfd_image_copy(&a, &b, NULL), DFD_OK);
        nn_rng r1, r2;
        nn_rng_seed(&r1, (uint64_t)seed);
        nn_rng_seed(&r2, (uint64_t)seed);
        assert_int_equal(dfd_augment(&a, &o, &r1, NULL), DFD_OK);
        assert_int_equal(dfd_augment_masked(&b, &o, &r2, mask, NULL), DFD_OK);
        assert_memory_equal(a.rgb, b.rgb, (size_t)W * H * 3);
        for (int i = 0; i < W * H; i++) {
            assert_true(fabsf(mask[i] - b.rgb[(size_t)i * 3] / 255.0f) <= 1.0f / 255);
            moved += (mask[i] > 0.5f) != (x_in_rect(i % W, i / W));
        }
        dfd_image_free(&a);
        dfd_image_free(&b);
    }
    assert_true(moved > 100); /* the transforms did move the mask */
    free(mask);
}

static void sbi_changes_only_inside_its_mask(void **state) {
    (void)state;
    const int S = 96;
    float *mask = malloc(sizeof(float) * S * S);
    dfd_sbi_opts o;
    dfd_sbi_opts_default(&o);
    for (int seed = 1; seed <= 6; seed++) {
        dfd_image real = pattern(S, S), fake;
        assert_int_equal(dfd_image_copy(&real, &fake, NULL), DFD_OK);
        nn_rng r;
        nn_rng_seed(&r, (uint64_t)seed);
        assert_int_equal(dfd_sbi(&fake, &o, &r, mask, NULL), DFD_OK);
        long outside = 0, inside = 0, changed_inside = 0;
        double diff_inside = 0;
        for (int i = 0; i < S * S; i++) {
            assert_true(mask[i] >= 0 && mask[i] <= 1);
            int d = 0;
            for (int c = 0; c < 3; c++) d += abs(real.rgb[i * 3 + c] - fake.rgb[i * 3 + c]);
            if (mask[i] == 0) {
                outside++;
                assert_int_equal(d, 0); /* bit for bit */
            } else if (mask[i] > 0.2f) {
                inside++;
                changed_inside += d > 0;
                diff_inside += d / 3.0;
            }
        }
        /* The mask covers the central face, not the corners. */
        assert_true(mask[0] == 0 && mask[S - 1] == 0 && mask[S * S - 1] == 0);
        assert_true(mask[(S / 2) * S + S / 2] > 0);
        assert_true(outside > S * S / 8);
        assert_true(inside > S * S / 10);
        /* And inside it the face really changed. */
        assert_true(changed_inside > inside / 2);
        assert_true(diff_inside / inside > 1.0);
        dfd_image_free(&real);
        dfd_image_free(&fake);
    }
    free(mask);
}

/* --sbi-part: with the same seed, a part blend's mask lies inside the whole-face mask
 * (the draws before the part's are the same; the feather is the same) and covers a
 * small share of it; its place
 * varies with the seed (it is not always the face's middle); the same seed gives the same
 * fake; a part blends at ratio 1 (its mask peaks at 1); and part = 0 draws nothing more (the
 * whole-face fake is unchanged). */
static void sbi_part_is_inside_the_face_and_moves(void **state) {
    (void)state;
    const int S = 96;
    float *whole = malloc(sizeof(float) * S * S), *part = malloc(sizeof(float) * S * S), *again = malloc(sizeof(float) * S * S);
    double cx_min = S, cx_max = 0, cy_min = S, cy_max = 0;
    for (int seed = 1; seed <= 12; seed++) {
        dfd_sbi_opts o;
        dfd_sbi_opts_default(&o);
        dfd_image real = pattern(S, S), a, b, c;
        assert_int_equal(dfd_image_copy(&real, &a, NULL), DFD_OK);
        assert_int_equal(dfd_image_copy(&real, &b, NULL), DFD_OK);
        assert_int_equal(dfd_image_copy(&real, &c, NULL), DFD_OK);
        nn_rng r;
        nn_rng_seed(&r, (uint64_t)seed);
        assert_int_equal(dfd_sbi(&a, &o, &r, whole, NULL), DFD_OK);
        o.part = 1;
        nn_rng_seed(&r, (uint64_t)seed);
        assert_int_equal(dfd_sbi(&b, &o, &r, part, NULL), DFD_OK);
        nn_rng_seed(&r, (uint64_t)seed);
        assert_int_equal(dfd_sbi(&c, &o, &r, again, NULL), DFD_OK);
        assert_memory_equal(b.rgb, c.rgb, (size_t)S * S * 3);
        assert_memory_equal(part, again, sizeof(float) * S * S);
        double wmax = 0, pmax = 0;
        for (int i = 0; i < S * S; i++) wmax = fmax(wmax, whole[i]), pmax = fmax(pmax, part[i]);
        assert_true(wmax > 0 && pmax > 0.95); /* a part always blends whole (ratio 1) */
        long in_whole = 0, in_part = 0;
        double sx = 0, sy = 0;
        for (int i = 0; i < S * S; i++) {
            /* inside the face's mask (the two blend ratios differ: compare to each peak) */
            if (part[i] > 0.05 * pmax) assert_true(whole[i] > 0.01 * wmax);
            in_whole += whole[i] > 0.5 * wmax;
            if (part[i] > 0.5 * pmax) in_part++, sx += i % S, sy += i / S;
        }
        assert_true(in_part > 0 && in_part < in_whole * 6 / 10);
        double cx = sx / in_part, cy = sy / in_part;
        cx_min = fmin(cx_min, cx), cx_max = fmax(cx_max, cx), cy_min = fmin(cy_min, cy), cy_max = fmax(cy_max, cy);
        /* part = 0: the whole-face fake again, bit for bit */
        o.part = 0;
        dfd_image d;
        assert_int_equal(dfd_image_copy(&real, &d, NULL), DFD_OK);
        nn_rng_seed(&r, (uint64_t)seed);
        assert_int_equal(dfd_sbi(&d, &o, &r, again, NULL), DFD_OK);
        assert_memory_equal(a.rgb, d.rgb, (size_t)S * S * 3);
        dfd_image_free(&real), dfd_image_free(&a), dfd_image_free(&b), dfd_image_free(&c), dfd_image_free(&d);
    }
    /* the parts' centres spread over the face, both ways */
    assert_true(cx_max - cx_min > S / 6.0 && cy_max - cy_min > S / 6.0);
    free(whole), free(part), free(again);
}

static void preview_grid_png(void **state) {
    (void)state;
    char *dir = tu_mkdtemp(), *p = tu_join(dir, "grid.png");
    dfd_image ims[3] = {pattern(40, 40), pattern(40, 40), pattern(64, 32)};
    const char *caps[3] = {"real", "self-blended", "augmented"};
    assert_int_equal(dfd_plot_image_grid(p, ims, caps, 3, 2, 64, "preview", NULL), DFD_OK);
    dfd_image back;
    assert_int_equal(dfd_image_load(p, NULL, &back, NULL, NULL), DFD_OK);
    assert_int_equal(back.w, 2 * (64 + 8) + 8);
    dfd_image_free(&back);
    for (int i = 0; i < 3; i++) dfd_image_free(&ims[i]);
    tu_rmtree(dir);
    free(p);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flip_is_exact),
        cmocka_unit_test(affine_identity_and_half_turn),
        cmocka_unit_test(jpeg_recompression_changes_pixels_keeps_size),
        cmocka_unit_test(color_cutout_and_noise),
        cmocka_unit_test(pipeline_is_deterministic),
        cmocka_unit_test(mask_follows_the_geometry),
        cmocka_unit_test(sbi_changes_only_inside_its_mask),
        cmocka_unit_test(sbi_part_is_inside_the_face_and_moves),
        cmocka_unit_test(preview_grid_png),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
