/* test_media_ops — resize, crop, flip and orientation on small synthetic images, checked
 * against hand-computed values and against a plain 2-D reference written independently
 * of the separable implementation. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "media/media.h"

static dfd_image make(int w, int h, unsigned seed) {
    dfd_image im;
    assert_int_equal(dfd_image_alloc(&im, w, h, NULL), DFD_OK);
    for (int i = 0; i < w * h * 3; i++) {
        seed = seed * 1103515245u + 12345u;
        im.rgb[i] = (uint8_t)(seed >> 16);
    }
    return im;
}

static const uint8_t *px(const dfd_image *im, int x, int y) { return im->rgb + ((size_t)y * im->w + x) * 3; }

/* Weight of source pixel j for output pixel i along one axis, straight from the
 * definitions: shrinking = the share of [i*s, (i+1)*s) that pixel [j, j+1) covers;
 * growing = a tent around the (clamped) output centre mapped into the source. */
static double ref_weight(int src, int dst, int i, int j) {
    double s = (double)src / dst;
    if (src > dst) {
        double lo = fmax(i * s, (double)j), hi = fmin((i + 1) * s, j + 1.0);
        return hi > lo ? (hi - lo) / s : 0;
    }
    double x = (i + 0.5) * s - 0.5;
    x = fmin(fmax(x, 0), src - 1);
    return fmax(0, 1 - fabs(x - j));
}

static void check_against_reference(const dfd_image *src, int w, int h) {
    dfd_image dst;
    assert_int_equal(dfd_image_resize(src, w, h, &dst, NULL), DFD_OK);
    assert_int_equal(dst.w, w);
    assert_int_equal(dst.h, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double v = 0;
                for (int sy = 0; sy < src->h; sy++) {
                    double wy = ref_weight(src->h, h, y, sy);
                    if (wy == 0) continue;
                    for (int sx = 0; sx < src->w; sx++) v += wy * ref_weight(src->w, w, x, sx) * px(src, sx, sy)[c];
                }
                int got = px(&dst, x, y)[c];
                if (fabs(got - v) > 0.51 + 1e-3) {
                    print_error("%dx%d -> %dx%d at (%d,%d,%d): got %d, reference %.3f\n", src->w, src->h, w, h, x, y, c,
                                got, v);
                    fail();
                }
            }
    dfd_image_free(&dst);
}

static void resize_matches_plain_reference_in_every_direction(void **state) {
    (void)state;
    dfd_image src = make(13, 9, 7);
    static const int sizes[][2] = {{13, 9}, {5, 4}, {6, 3}, {1, 1}, {26, 18}, {31, 20}, {4, 20}, {40, 2}, {7, 9}, {13, 1}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) check_against_reference(&src, sizes[i][0], sizes[i][1]);
    dfd_image one = make(1, 1, 3);
    check_against_reference(&one, 3, 2);
    dfd_image_free(&one);
    dfd_image_free(&src);
}

static void resize_known_values(void **state) {
    (void)state;
    /* Area: 4x1 -> 2x1 averages pairs; 3x1 -> 2x1 splits the middle pixel in halves. */
    dfd_image a, d;
    assert_int_equal(dfd_image_alloc(&a, 4, 1, NULL), DFD_OK);
    uint8_t row[12] = {0, 0, 0, 100, 100, 100, 200, 200, 200, 40, 40, 40};
    memcpy(a.rgb, row, 12);
    assert_int_equal(dfd_image_resize(&a, 2, 1, &d, NULL), DFD_OK);
    assert_int_equal(d.rgb[0], 50);
    assert_int_equal(d.rgb[3], 120);
    dfd_image_free(&d);
    a.w = 3; /* first three pixels: 0, 100, 200 -> (0 + 50) / 1.5, (50 + 200) / 1.5 */
    assert_int_equal(dfd_image_resize(&a, 2, 1, &d, NULL), DFD_OK);
    assert_int_equal(d.rgb[0], 33);
    assert_int_equal(d.rgb[3], 167);
    dfd_image_free(&d);
    /* Bilinear: 2x1 -> 4x1 gives a, 3a/4 + b/4, a/4 + 3b/4, b with clamped edges. */
    a.w = 2;
    a.rgb[3] = 200; /* pixels 0 and 200 */
    assert_int_equal(dfd_image_resize(&a, 4, 1, &d, NULL), DFD_OK);
    assert_int_equal(d.rgb[0], 0);
    assert_int_equal(d.rgb[3], 50);
    assert_int_equal(d.rgb[6], 150);
    assert_int_equal(d.rgb[9], 200);
    dfd_image_free(&d);
    dfd_image_free(&a);
}

static void resize_keeps_flat_colour_and_rejects_bad_sizes(void **state) {
    (void)state;
    dfd_image a, d;
    assert_int_equal(dfd_image_alloc(&a, 17, 11, NULL), DFD_OK);
    for (int i = 0; i < 17 * 11; i++) memcpy(a.rgb + 3 * i, "\x0b\x80\xfe", 3);
    static const int sizes[][2] = {{3, 2}, {50, 40}, {17, 11}, {5, 30}};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(dfd_image_resize(&a, sizes[k][0], sizes[k][1], &d, NULL), DFD_OK);
        for (int i = 0; i < d.w * d.h; i++) assert_memory_equal(d.rgb + 3 * i, "\x0b\x80\xfe", 3);
        dfd_image_free(&d);
    }
    dfd_error e;
    assert_int_equal(dfd_image_resize(&a, 0, 5, &d, &e), DFD_E_ARG);
    assert_null(d.rgb);
    dfd_image_free(&a);
}

static void crop_fills_or_replicates_past_every_border(void **state) {
    (void)state;
    dfd_image src = make(5, 4, 11);
    const uint8_t fill[3] = {1, 2, 3};
    static const int rects[][4] = {{-2, -3, 9, 10}, {1, 1, 2, 2}, {3, -1, 6, 3}, {-7, 0, 3, 2}, {10, 10, 2, 3}, {0, 0, 5, 4}};
    for (size_t r = 0; r < sizeof rects / sizeof *rects; r++) {
        int x0 = rects[r][0], y0 = rects[r][1], w = rects[r][2], h = rects[r][3];
        for (int mode = 0; mode < 2; mode++) {
            dfd_image d;
            assert_int_equal(dfd_image_crop(&src, x0, y0, w, h, (dfd_border)mode, fill, &d, NULL), DFD_OK);
            assert_int_equal(d.w, w);
            assert_int_equal(d.h, h);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    int sx = x0 + x, sy = y0 + y;
                    int inside = sx >= 0 && sy >= 0 && sx < src.w && sy < src.h;
                    const uint8_t *want;
                    if (inside)
                        want = px(&src, sx, sy);
                    else if (mode == DFD_BORDER_FILL)
                        want = fill;
                    else
                        want = px(&src, sx < 0 ? 0 : sx >= src.w ? src.w - 1 : sx, sy < 0 ? 0 : sy >= src.h ? src.h - 1 : sy);
                    assert_memory_equal(px(&d, x, y), want, 3);
                }
            dfd_image_free(&d);
        }
    }
    dfd_image d;
    dfd_error e;
    assert_int_equal(dfd_image_crop(&src, 0, 0, 0, 3, DFD_BORDER_FILL, NULL, &d, &e), DFD_E_ARG);
    /* Far outside, where x + w would overflow an int: all fill, no crash. */
    assert_int_equal(dfd_image_crop(&src, 2147483600, -2147483600, 3, 2, DFD_BORDER_FILL, NULL, &d, NULL), DFD_OK);
    for (int i = 0; i < 6; i++) assert_memory_equal(d.rgb + 3 * i, "\0\0\0", 3);
    dfd_image_free(&d);
    dfd_image_free(&src);
}

static void flip_mirrors_each_row(void **state) {
    (void)state;
    for (int w = 1; w <= 4; w++) {
        dfd_image a = make(w, 3, (unsigned)w), b;
        assert_int_equal(dfd_image_copy(&a, &b, NULL), DFD_OK);
        dfd_image_flip_h(&b);
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < w; x++) assert_memory_equal(px(&b, x, y), px(&a, w - 1 - x, y), 3);
        dfd_image_flip_h(&b);
        assert_memory_equal(a.rgb, b.rgb, (size_t)w * 9);
        dfd_image_free(&a);
        dfd_image_free(&b);
    }
}

static void orientations_move_corners_as_exif_says(void **state) {
    (void)state;
    /* A 3x2 image whose corners are told apart: TL=1, TR=2, BL=3, BR=4 (red channel). */
    dfd_image a;
    assert_int_equal(dfd_image_alloc(&a, 3, 2, NULL), DFD_OK);
    memset(a.rgb, 0, 18);
    a.rgb[0] = 1, a.rgb[6] = 2, a.rgb[9] = 3, a.rgb[15] = 4;
    /* Expected display corners TL, TR, BL, BR for orientations 1..8 (EXIF 2.3, 4.6.4). */
    static const int want[9][4] = {{0},          {1, 2, 3, 4}, {2, 1, 4, 3}, {4, 3, 2, 1}, {3, 4, 1, 2},
                                   {1, 3, 2, 4}, {3, 1, 4, 2}, {4, 2, 3, 1}, {2, 4, 1, 3}};
    for (int o = 1; o <= 8; o++) {
        dfd_image d;
        assert_int_equal(dfd_image_orient(&a, o, &d, NULL), DFD_OK);
        assert_int_equal(d.w, o >= 5 ? 2 : 3);
        assert_int_equal(d.h, o >= 5 ? 3 : 2);
        int got[4] = {px(&d, 0, 0)[0], px(&d, d.w - 1, 0)[0], px(&d, 0, d.h - 1)[0], px(&d, d.w - 1, d.h - 1)[0]};
        assert_memory_equal(got, want[o], sizeof got);
        dfd_image_free(&d);
    }
    dfd_image d;
    assert_int_equal(dfd_image_orient(&a, 9, &d, NULL), DFD_E_ARG);
    dfd_image_free(&a);
}

static void pixel_limit_message_names_size_and_limit(void **state) {
    (void)state;
    dfd_limits l;
    dfd_limits_default(&l);
    dfd_error e;
    assert_int_equal(dfd_media_check_pixels("image", 20000, 20000, &l, &e), DFD_E_LIMIT);
    assert_string_equal(e.message, "image is 20000x20000, over the 64 MP limit");
    assert_int_equal(dfd_media_check_pixels("image", 8000, 8000, &l, &e), DFD_OK);
    assert_int_equal(dfd_media_check_pixels("image", 0, 8, &l, &e), DFD_E_CORRUPT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resize_matches_plain_reference_in_every_direction),
        cmocka_unit_test(resize_known_values),
        cmocka_unit_test(resize_keeps_flat_colour_and_rejects_bad_sizes),
        cmocka_unit_test(crop_fills_or_replicates_past_every_border),
        cmocka_unit_test(flip_mirrors_each_row),
        cmocka_unit_test(orientations_move_corners_as_exif_says),
        cmocka_unit_test(pixel_limit_message_names_size_and_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
