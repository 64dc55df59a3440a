/* test_face_crop — the crop contract of docs/preprocessing.md on images whose pixels say
 * where they come from: the square's geometry (margin, shift), an exact copy when no
 * resizing is needed, area averaging when shrinking, replicate and black borders past the
 * image edge, roll alignment bringing a tilted pair of eyes level, normalisations, and the
 * contract's JSON (round trip, defaults for missing keys, refusal of values dfd does not
 * implement). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "face/face.h"

/* R = x, G = y, B = 7: every pixel names its own position (for x, y < 256). */
static dfd_image coord_image(int w, int h) {
    dfd_image img;
    dfd_error e;
    assert_int_equal(dfd_image_alloc(&img, w, h, &e), DFD_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img.rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)x;
            p[1] = (uint8_t)y;
            p[2] = 7;
        }
    return img;
}

static dfd_face face_at(float x, float y, float w, float h) {
    dfd_face f;
    memset(&f, 0, sizeof f);
    f.box[0] = x;
    f.box[1] = y;
    f.box[2] = w;
    f.box[3] = h;
    f.score = 0.9f;
    return f;
}

static const uint8_t *px(const dfd_image *img, int x, int y) { return img->rgb + ((size_t)y * img->w + x) * 3; }

static void square_follows_margin_and_shift(void **state) {
    (void)state;
    dfd_crop_contract c;
    dfd_crop_contract_default(&c, 128);
    c.margin = 1.5f;
    c.shift_y = 0.1f;
    dfd_face f = face_at(100, 50, 80, 60);
    float sq[3];
    dfd_face_crop_square(&f, &c, sq);
    /* Side 1.5 x 80 = 120; centre (140, 80 + 0.1 x 80 = 88). */
    assert_float_equal(sq[2], 120, 1e-4);
    assert_float_equal(sq[0], 80, 1e-4);
    assert_float_equal(sq[1], 28, 1e-4);
}

static void crops_copy_or_average_the_right_pixels(void **state) {
    (void)state;
    dfd_image img = coord_image(200, 200), out;
    dfd_crop_contract c;
    dfd_crop_contract_default(&c, 40);
    c.margin = 1.0f;
    c.shift_y = 0.0f;
    dfd_face f = face_at(50, 60, 40, 40);
    dfd_error e;
    assert_int_equal(dfd_face_crop(&img, &f, &c, &out, &e), DFD_OK);
    assert_int_equal(out.w, 40);
    assert_int_equal(out.h, 40);
    assert_int_equal(px(&out, 0, 0)[0], 50);
    assert_int_equal(px(&out, 0, 0)[1], 60);
    assert_int_equal(px(&out, 39, 39)[0], 89);
    assert_int_equal(px(&out, 39, 39)[1], 99);
    dfd_image_free(&out);
    /* Half size: each output pixel averages a 2x2 block (x 50-51 -> 50.5). */
    c.size = 20;
    assert_int_equal(dfd_face_crop(&img, &f, &c, &out, &e), DFD_OK);
    assert_int_equal(out.w, 20);
    for (int i = 0; i < 20; i += 7) {
        assert_in_range(px(&out, i, 0)[0], 50 + 2 * i, 51 + 2 * i);
        assert_in_range(px(&out, 0, i)[1], 60 + 2 * i, 61 + 2 * i);
    }
    assert_int_equal(px(&out, 5, 5)[2], 7);
    dfd_image_free(&out);
    dfd_image_free(&img);
}

static void borders_replicate_or_go_black(void **state) {
    (void)state;
    dfd_image img = coord_image(100, 100), out;
    dfd_crop_contract c;
    dfd_crop_contract_default(&c, 40);
    c.margin = 1.0f;
    c.shift_y = 0.0f;
    dfd_face f = face_at(-10, -5, 40, 40); /* 10 columns and 5 rows outside */
    dfd_error e;
    assert_int_equal(dfd_face_crop(&img, &f, &c, &out, &e), DFD_OK);
    assert_int_equal(px(&out, 0, 0)[0], 0); /* replicate: the edge pixel (0, 0) */
    assert_int_equal(px(&out, 0, 0)[2], 7);
    assert_int_equal(px(&out, 9, 20)[0], 0);
    assert_int_equal(px(&out, 9, 20)[1], 15);
    assert_int_equal(px(&out, 10, 20)[0], 0);
    assert_int_equal(px(&out, 11, 20)[0], 1);
    dfd_image_free(&out);
    c.border = DFD_BORDER_FILL;
    assert_int_equal(dfd_face_crop(&img, &f, &c, &out, &e), DFD_OK);
    assert_int_equal(px(&out, 9, 20)[2], 0); /* black */
    assert_int_equal(px(&out, 20, 4)[2], 0);
    assert_int_equal(px(&out, 10, 5)[2], 7);
    assert_int_equal(px(&out, 10, 5)[1], 0);
    dfd_image_free(&out);
    dfd_image_free(&img);
}

/* Centroid of the dark pixels in columns [x0, x1) of an image. */
static void dark_centroid(const dfd_image *img, int x0, int x1, double *cx, double *cy) {
    double sx = 0, sy = 0, n = 0;
    for (int y = 0; y < img->h; y++)
        for (int x = x0; x < x1; x++)
            if (px(img, x, y)[0] < 100) {
                sx += x + 0.5;
                sy += y + 0.5;
                n++;
            }
    assert_true(n > 0);
    *cx = sx / n;
    *cy = sy / n;
}

static void roll_alignment_levels_the_eyes(void **state) {
    (void)state;
    dfd_image img;
    dfd_error e;
    assert_int_equal(dfd_image_alloc(&img, 200, 200, &e), DFD_OK);
    memset(img.rgb, 255, 200 * 200 * 3);
    /* Eyes 40 px apart about (100, 100), the line tilted 30 degrees clockwise. */
    double th = 30.0 * M_PI / 180.0;
    double ex[2] = {100 - 20 * cos(th), 100 + 20 * cos(th)}, ey[2] = {100 - 20 * sin(th), 100 + 20 * sin(th)};
    for (int k = 0; k < 2; k++)
        for (int y = 0; y < 200; y++)
            for (int x = 0; x < 200; x++)
                if ((x + 0.5 - ex[k]) * (x + 0.5 - ex[k]) + (y + 0.5 - ey[k]) * (y + 0.5 - ey[k]) <= 16.0)
                    memset(img.rgb + ((size_t)y * 200 + x) * 3, 0, 3);
    dfd_face f = face_at(60, 60, 80, 80);
    f.kp[DFD_KP_RIGHT_EYE][0] = (float)ex[0];
    f.kp[DFD_KP_RIGHT_EYE][1] = (float)ey[0];
    f.kp[DFD_KP_LEFT_EYE][0] = (float)ex[1];
    f.kp[DFD_KP_LEFT_EYE][1] = (float)ey[1];
    f.roll_deg = dfd_face_roll(&f);
    assert_float_equal(f.roll_deg, 30.0, 1e-3);
    dfd_crop_contract c;
    dfd_crop_contract_default(&c, 80);
    c.margin = 1.0f;
    c.shift_y = 0.0f;
    dfd_image out;
    double lx, ly, rx, ry;
    /* Without alignment the eyes stay tilted: 20 px apart vertically. */
    assert_int_equal(dfd_face_crop(&img, &f, &c, &out, &e), DFD_OK);
    dark_centroid(&out, 0, 40, &lx, &ly);
    dark_centroid(&out, 40, 80, &rx, &ry);
    assert_float_equal(ry - ly, 20.0, 1.0);
    dfd_image_free(&out);
    /* Aligned: level, 40 px apart, centred on the crop's centre (40, 40). */
    c.align_roll = 1;
    assert_int_equal(dfd_face_crop(&img, &f, &c, &out, &e), DFD_OK);
    dark_centroid(&out, 0, 40, &lx, &ly);
    dark_centroid(&out, 40, 80, &rx, &ry);
    assert_float_equal(ly, 40.0, 1.0);
    assert_float_equal(ry, 40.0, 1.0);
    assert_float_equal(lx, 20.0, 1.0);
    assert_float_equal(rx, 60.0, 1.0);
    dfd_image_free(&out);
    dfd_image_free(&img);
}

static void normalisations(void **state) {
    (void)state;
    dfd_image img;
    dfd_error e;
    assert_int_equal(dfd_image_alloc(&img, 2, 1, &e), DFD_OK);
    memset(img.rgb, 0, 3);
    memset(img.rgb + 3, 255, 3);
    float v[6];
    dfd_crop_normalize(&img, DFD_NORM_MINUS1_1, v);
    assert_float_equal(v[0], -1.0, 1e-6);
    assert_float_equal(v[5], 1.0, 1e-6);
    dfd_crop_normalize(&img, DFD_NORM_0_1, v);
    assert_float_equal(v[3], 1.0, 1e-6);
    dfd_crop_normalize(&img, DFD_NORM_IMAGENET, v);
    assert_float_equal(v[0], -0.485 / 0.229, 1e-5);
    assert_float_equal(v[5], (1 - 0.406) / 0.225, 1e-5);
    dfd_image_free(&img);

    /* The residual: a flat image is all zeros whatever its colour; one bright pixel on
     * grey gives (255 - mean) / 16 there, minus its ninth to each neighbour, 0 beyond;
     * edges replicate. */
    assert_int_equal(dfd_image_alloc(&img, 5, 4, &e), DFD_OK);
    for (int i = 0; i < 5 * 4; i++) img.rgb[3 * i] = 200, img.rgb[3 * i + 1] = 17, img.rgb[3 * i + 2] = 90;
    float r[5 * 4 * 3];
    dfd_crop_normalize(&img, DFD_NORM_RESIDUAL, r);
    for (int i = 0; i < 5 * 4 * 3; i++) assert_float_equal(r[i], 0.0, 1e-6);
    memset(img.rgb, 100, 5 * 4 * 3);
    img.rgb[(2 * 5 + 2) * 3 + 1] = 255; /* green at (2, 2) */
    dfd_crop_normalize(&img, DFD_NORM_RESIDUAL, r);
    float centre = (255.0f - (8 * 100.0f + 255.0f) / 9.0f) / 16.0f, next = (100.0f - (8 * 100.0f + 255.0f) / 9.0f) / 16.0f;
    assert_float_equal(r[(2 * 5 + 2) * 3 + 1], centre, 1e-5);
    assert_float_equal(r[(1 * 5 + 1) * 3 + 1], next, 1e-5);
    assert_float_equal(r[(3 * 5 + 3) * 3 + 1], next, 1e-5);
    assert_float_equal(r[(2 * 5 + 2) * 3 + 0], 0.0, 1e-6); /* other channels untouched */
    assert_float_equal(r[(2 * 5 + 0) * 3 + 1], 0.0, 1e-6); /* two cells away */
    /* Replicated edge: a bright corner pixel counts 4 times in its own mean. */
    memset(img.rgb, 100, 5 * 4 * 3);
    img.rgb[0] = 244;
    dfd_crop_normalize(&img, DFD_NORM_RESIDUAL, r);
    assert_float_equal(r[0], (244.0f - (4 * 244.0f + 5 * 100.0f) / 9.0f) / 16.0f, 1e-5);
    dfd_image_free(&img);
    assert_string_equal(dfd_norm_name(DFD_NORM_RESIDUAL), "residual");
    assert_int_equal(dfd_norm_from_name("imagenet"), DFD_NORM_IMAGENET);
    assert_int_equal(dfd_norm_from_name("bgr"), -1);
    assert_null(dfd_norm_name((dfd_norm)7));
}

static void contract_json_round_trips_and_refuses_unknowns(void **state) {
    (void)state;
    dfd_crop_contract c, d;
    dfd_crop_contract_default(&c, 160);
    c.margin = 1.3f;
    c.shift_y = 0.05f;
    c.align_roll = 1;
    c.border = DFD_BORDER_FILL;
    c.norm = DFD_NORM_IMAGENET;
    char *s = dfd_crop_contract_to_json(&c);
    assert_non_null(s);
    dfd_error e;
    assert_int_equal(dfd_crop_contract_from_json(s, &d, &e), DFD_OK);
    free(s);
    assert_float_equal(d.margin, 1.3, 1e-5);
    assert_float_equal(d.shift_y, 0.05, 1e-5);
    assert_int_equal(d.align_roll, 1);
    assert_int_equal(d.border, DFD_BORDER_FILL);
    assert_int_equal(d.size, 160);
    assert_int_equal(d.norm, DFD_NORM_IMAGENET);
    c.norm = DFD_NORM_RESIDUAL;
    s = dfd_crop_contract_to_json(&c);
    assert_non_null(strstr(s, "\"norm\":\"residual\""));
    assert_int_equal(dfd_crop_contract_from_json(s, &d, &e), DFD_OK);
    free(s);
    assert_int_equal(d.norm, DFD_NORM_RESIDUAL);
    /* Missing keys take the defaults. */
    dfd_crop_contract def;
    dfd_crop_contract_default(&def, 224);
    assert_int_equal(dfd_crop_contract_from_json("{\"size\": 96}", &d, &e), DFD_OK);
    assert_int_equal(d.size, 96);
    assert_float_equal(d.margin, def.margin, 1e-6);
    assert_int_equal(d.border, def.border);
    static const char *const bad[] = {
        "[1]", "{\"margin\": 9}", "{\"margin\": \"1\"}", "{\"border\": \"mirror\"}", "{\"norm\": \"bgr\"}",
        "{\"size\": 10}", "{\"resample\": \"nearest\"}", "{\"color\": \"BGR\"}", "{\"align_roll\": 1}", "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dfd_crop_contract_from_json(bad[i], &d, &e) != DFD_E_MODEL) fail_msg("accepted %s", bad[i]);
    /* An unknown norm's message names every known one, from the same table. */
    assert_int_equal(dfd_crop_contract_from_json("{\"norm\": \"bgr\"}", &d, &e), DFD_E_MODEL);
    for (int i = 0; i < DFD_NORM_COUNT; i++) {
        char q[32];
        snprintf(q, sizeof q, "\"%s\"", dfd_norm_name((dfd_norm)i));
        if (!strstr(e.message, q)) fail_msg("'%s' does not name %s", e.message, q);
    }
    assert_non_null(strstr(e.message, "\"imagenet\" or \"residual\""));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(square_follows_margin_and_shift),
        cmocka_unit_test(crops_copy_or_average_the_right_pixels),
        cmocka_unit_test(borders_replicate_or_go_black),
        cmocka_unit_test(roll_alignment_levels_the_eyes),
        cmocka_unit_test(normalisations),
        cmocka_unit_test(contract_json_round_trips_and_refuses_unknowns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
