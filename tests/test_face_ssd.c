/* test_face_ssd — BlazeFace post-processing as MediaPipe defines it, checked on values
 * worked out by hand: anchor grids (896 short range: 16x16x2 then 8x8x6; 2304 full range:
 * 48x48x1) and the scale formula of SsdAnchorsCalculator; decoding of boxes, keypoints
 * and clipped sigmoid scores; IoU; WEIGHTED non-maximum suppression (score-weighted
 * average of the boxes overlapping the best one, best score kept); the roll angle. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "face/face.h"

static void check_anchor(const float *a, int i, float x, float y, float w, float h) {
    const float *r = a + 4 * i;
    if (fabsf(r[0] - x) > 1e-6f || fabsf(r[1] - y) > 1e-6f || fabsf(r[2] - w) > 1e-6f || fabsf(r[3] - h) > 1e-6f)
        fail_msg("anchor %d is (%g,%g,%g,%g), want (%g,%g,%g,%g)", i, r[0], r[1], r[2], r[3], x, y, w, h);
}

static void short_range_anchors_are_two_grids(void **state) {
    (void)state;
    dfd_ssd_anchor_opts o;
    dfd_face_anchor_opts(DFD_BLAZEFACE_SHORT, &o);
    float *a;
    int n;
    dfd_error e;
    assert_int_equal(dfd_ssd_anchors(&o, &a, &n, &e), DFD_OK);
    assert_int_equal(n, 896);
    /* Stride 8: 16x16 cells, 2 anchors each (aspect 1 and the interpolated one), row-major. */
    check_anchor(a, 0, 0.5f / 16, 0.5f / 16, 1, 1);
    check_anchor(a, 1, 0.5f / 16, 0.5f / 16, 1, 1);
    check_anchor(a, 2, 1.5f / 16, 0.5f / 16, 1, 1);
    check_anchor(a, 2 * 16, 0.5f / 16, 1.5f / 16, 1, 1);
    check_anchor(a, 511, 15.5f / 16, 15.5f / 16, 1, 1);
    /* Stride 16 (three layers grouped): 8x8 cells, 6 anchors each. */
    for (int k = 512; k < 518; k++) check_anchor(a, k, 0.5f / 8, 0.5f / 8, 1, 1);
    check_anchor(a, 518, 1.5f / 8, 0.5f / 8, 1, 1);
    check_anchor(a, 512 + 6 * 8 * 3 + 6 * 5, 5.5f / 8, 3.5f / 8, 1, 1);
    check_anchor(a, 895, 7.5f / 8, 7.5f / 8, 1, 1);
    free(a);
}

static void full_range_anchors_are_one_grid(void **state) {
    (void)state;
    dfd_ssd_anchor_opts o;
    dfd_face_anchor_opts(DFD_BLAZEFACE_FULL, &o);
    float *a;
    int n;
    dfd_error e;
    assert_int_equal(dfd_ssd_anchors(&o, &a, &n, &e), DFD_OK);
    assert_int_equal(n, 2304);
    for (int k = 0; k < n; k += 97) check_anchor(a, k, ((k % 48) + 0.5f) / 48, ((k / 48) + 0.5f) / 48, 1, 1);
    check_anchor(a, 2303, 47.5f / 48, 47.5f / 48, 1, 1);
    free(a);
}

static void anchor_scales_follow_the_calculator(void **state) {
    (void)state;
    /* Not fixed size: two layers with strides 8 and 16 on 64 px, scales 0.1 .. 0.75. Layer
     * 0: scale 0.1 and the interpolated sqrt(0.1 * 0.75); layer 1 (the last): 0.75 and
     * sqrt(0.75 * 1). Aspect ratio 2: w = s * sqrt(2), h = s / sqrt(2). */
    dfd_ssd_anchor_opts o;
    memset(&o, 0, sizeof o);
    o.num_layers = 2;
    o.min_scale = 0.1f;
    o.max_scale = 0.75f;
    o.input_h = o.input_w = 64;
    o.anchor_offset_x = o.anchor_offset_y = 0.5f;
    o.strides[0] = 8;
    o.strides[1] = 16;
    o.n_aspect_ratios = 1;
    o.aspect_ratios[0] = 2.0f;
    o.interpolated_scale_aspect_ratio = 1.0f;
    float *a;
    int n;
    dfd_error e;
    assert_int_equal(dfd_ssd_anchors(&o, &a, &n, &e), DFD_OK);
    assert_int_equal(n, 8 * 8 * 2 + 4 * 4 * 2);
    float r2 = sqrtf(2.0f), s01 = sqrtf(0.1f * 0.75f), s1 = sqrtf(0.75f);
    check_anchor(a, 0, 0.5f / 8, 0.5f / 8, 0.1f * r2, 0.1f / r2);
    check_anchor(a, 1, 0.5f / 8, 0.5f / 8, s01, s01);
    check_anchor(a, 128, 0.5f / 4, 0.5f / 4, 0.75f * r2, 0.75f / r2);
    check_anchor(a, 129, 0.5f / 4, 0.5f / 4, s1, s1);
    free(a);
    o.num_layers = 0;
    assert_int_equal(dfd_ssd_anchors(&o, &a, &n, &e), DFD_E_ARG);
}

static void decoding_scales_boxes_keypoints_and_scores(void **state) {
    (void)state;
    dfd_ssd_decode_opts o;
    dfd_face_decode_opts(DFD_BLAZEFACE_SHORT, &o);
    assert_int_equal(o.num_boxes, 896);
    dfd_ssd_anchor_opts ao;
    dfd_face_anchor_opts(DFD_BLAZEFACE_SHORT, &ao);
    float *anchors;
    int n;
    dfd_error e;
    assert_int_equal(dfd_ssd_anchors(&ao, &anchors, &n, &e), DFD_OK);
    float *reg = calloc(896 * 16, sizeof(float)), *cls = malloc(896 * sizeof(float));
    for (int i = 0; i < 896; i++) cls[i] = -100.0f;
    /* Anchor 600: stride-16 grid cell 14 (row 1, column 6), centre (6.5/8, 1.5/8). */
    float *r = reg + 600 * 16;
    r[0] = 12.8f;  /* x: +0.1 */
    r[1] = -25.6f; /* y: -0.2 */
    r[2] = 32.0f;  /* w: 0.25 */
    r[3] = 64.0f;  /* h: 0.5 */
    r[4] = 0.0f;   /* right eye at the anchor centre */
    r[5] = 0.0f;
    r[6] = 12.8f;  /* left eye +0.1, +0.1: roll 45 degrees */
    r[7] = 12.8f;
    cls[600] = 2.0f;
    cls[10] = 1000.0f;                      /* clipped to 100: score 1 */
    reg[10 * 16 + 2] = reg[10 * 16 + 3] = 12.8f;
    cls[20] = 0.0f;                         /* exactly 0.5: kept */
    reg[20 * 16 + 2] = reg[20 * 16 + 3] = 12.8f;
    cls[30] = -1e-3f;                       /* just below 0.5: dropped */
    reg[30 * 16 + 2] = reg[30 * 16 + 3] = 12.8f;
    cls[40] = NAN;                          /* dropped */
    cls[50] = 3.0f;                         /* degenerate box (w = 0): dropped */
    dfd_face f[8];
    int k = dfd_ssd_decode(&o, anchors, reg, cls, f, 8);
    assert_int_equal(k, 3);
    /* In anchor order when everything fits. */
    assert_float_equal(f[0].score, 1.0f, 1e-6);
    assert_float_equal(f[1].score, 0.5f, 1e-6);
    const dfd_face *d = &f[2];
    assert_float_equal(d->score, 1.0 / (1.0 + exp(-2.0)), 1e-6);
    assert_float_equal(d->box[0], 6.5 / 8 + 0.1 - 0.125, 1e-6);
    assert_float_equal(d->box[1], 1.5 / 8 - 0.2 - 0.25, 1e-6);
    assert_float_equal(d->box[2], 0.25, 1e-6);
    assert_float_equal(d->box[3], 0.5, 1e-6);
    assert_float_equal(d->kp[0][0], 6.5 / 8, 1e-6);
    assert_float_equal(d->kp[1][0], 6.5 / 8 + 0.1, 1e-6);
    assert_float_equal(d->kp[1][1], 1.5 / 8 + 0.1, 1e-6);
    assert_float_equal(d->roll_deg, 45.0, 1e-3);
    /* With room for 2, the two best are kept, best first. */
    k = dfd_ssd_decode(&o, anchors, reg, cls, f, 2);
    assert_int_equal(k, 2);
    assert_float_equal(f[0].score, 1.0f, 1e-6);
    assert_float_equal(f[1].score, 1.0 / (1.0 + exp(-2.0)), 1e-6);
    free(reg);
    free(cls);
    free(anchors);
}

static void iou_by_hand(void **state) {
    (void)state;
    float a[4] = {0, 0, 2, 2}, b[4] = {1, 1, 2, 2}, c[4] = {2, 0, 2, 2}, z[4] = {0, 0, 0, 0};
    assert_float_equal(dfd_box_iou(a, b), 1.0 / 7.0, 1e-6);
    assert_float_equal(dfd_box_iou(a, a), 1.0, 1e-6);
    assert_float_equal(dfd_box_iou(a, c), 0.0, 0); /* touching */
    assert_float_equal(dfd_box_iou(z, z), 0.0, 0);
}

static dfd_face det(float x, float y, float w, float h, float score, float kx, float ky) {
    dfd_face f;
    memset(&f, 0, sizeof f);
    f.box[0] = x;
    f.box[1] = y;
    f.box[2] = w;
    f.box[3] = h;
    f.score = score;
    for (int k = 0; k < DFD_FACE_KEYPOINTS; k++) {
        f.kp[k][0] = kx;
        f.kp[k][1] = ky;
    }
    return f;
}

static void weighted_nms_averages_overlapping_boxes(void **state) {
    (void)state;
    dfd_face d[4] = {
        det(0.1f, 0.1f, 1, 1, 0.6f, 0.8f, 0.2f), /* B: IoU 0.81/1.19 = 0.68 with A: merged into A */
        det(2, 2, 1, 1, 0.7f, 0, 0),             /* C: alone */
        det(0, 0, 1, 1, 0.9f, 0.5f, 0.5f),       /* A: the best */
        det(0.6f, 0, 1, 1, 0.8f, 0, 0),          /* D: IoU 0.4/1.6 = 0.25 with A: kept apart */
    };
    int n = dfd_weighted_nms(d, 4, 0.3f);
    assert_int_equal(n, 3);
    /* A+B: xmin (0.9*0 + 0.6*0.1)/1.5 = 0.04, xmax (0.9*1 + 0.6*1.1)/1.5 = 1.04. */
    assert_float_equal(d[0].score, 0.9f, 1e-6);
    assert_float_equal(d[0].box[0], 0.04f, 1e-6);
    assert_float_equal(d[0].box[1], 0.04f, 1e-6);
    assert_float_equal(d[0].box[2], 1.0f, 1e-6);
    assert_float_equal(d[0].kp[3][0], (0.9 * 0.5 + 0.6 * 0.8) / 1.5, 1e-6);
    assert_float_equal(d[0].kp[3][1], (0.9 * 0.5 + 0.6 * 0.2) / 1.5, 1e-6);
    assert_float_equal(d[1].score, 0.8f, 1e-6); /* D, unchanged */
    assert_float_equal(d[1].box[0], 0.6f, 1e-6);
    assert_float_equal(d[2].score, 0.7f, 1e-6); /* C */
    assert_float_equal(d[2].box[0], 2.0f, 1e-6);
    /* With a lower threshold D joins A's group too. */
    dfd_face e[3] = {det(0, 0, 1, 1, 0.9f, 0, 0), det(0.6f, 0, 1, 1, 0.8f, 0, 0), det(2, 2, 1, 1, 0.7f, 0, 0)};
    assert_int_equal(dfd_weighted_nms(e, 3, 0.2f), 2);
    assert_float_equal(e[0].box[0], 0.8 * 0.6 / 1.7, 1e-6);
    assert_int_equal(dfd_weighted_nms(e, 0, 0.3f), 0);
}

static void roll_is_the_angle_of_the_eye_line(void **state) {
    (void)state;
    dfd_face f;
    memset(&f, 0, sizeof f);
    f.kp[DFD_KP_RIGHT_EYE][0] = 10;
    f.kp[DFD_KP_RIGHT_EYE][1] = 10;
    f.kp[DFD_KP_LEFT_EYE][0] = 30;
    f.kp[DFD_KP_LEFT_EYE][1] = 10;
    assert_float_equal(dfd_face_roll(&f), 0.0, 1e-6);
    f.kp[DFD_KP_LEFT_EYE][1] = 30; /* left eye lower on screen: clockwise, positive */
    assert_float_equal(dfd_face_roll(&f), 45.0, 1e-4);
    f.kp[DFD_KP_LEFT_EYE][0] = 10 - 20 * sqrtf(3.0f);
    f.kp[DFD_KP_LEFT_EYE][1] = 10 - 20; /* upside-down-ish: -150 degrees */
    assert_float_equal(dfd_face_roll(&f), -150.0, 1e-3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(short_range_anchors_are_two_grids),
        cmocka_unit_test(full_range_anchors_are_one_grid),
        cmocka_unit_test(anchor_scales_follow_the_calculator),
        cmocka_unit_test(decoding_scales_boxes_keypoints_and_scores),
        cmocka_unit_test(iou_by_hand),
        cmocka_unit_test(weighted_nms_averages_overlapping_boxes),
        cmocka_unit_test(roll_is_the_angle_of_the_eye_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
