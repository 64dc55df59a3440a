/* test_detect_result — the dfd.result/1 JSON carries every field (null where not
 * applicable), verdicts follow the threshold and NO_FACE/ERROR rules, and the
 * aggregation rules give the hand-computed values. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "detect/detect.h"

static const char *const top_fields[] = {"file", "media", "verdict", "p_fake", "threshold", "error",
                                         "model", "faces", "frames", "timing_ms", "kind", "p_manipulated",
                                         "threshold_manipulated", "p_synthetic", "threshold_synthetic"};

static json_t *parse(const char *s) {
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    if (!j) fail_msg("invalid JSON: %s in %s", e.text, s);
    return j;
}

static void image_result_has_all_fields_and_null_frames(void **state) {
    (void)state;
    dfd_result *r = dfd_result_new("a.jpg", DFD_MEDIA_IMAGE);
    assert_non_null(r);
    r->threshold_manipulated = 0.5;
    r->faces = calloc(2, sizeof *r->faces);
    r->n_faces = 2;
    r->faces[0] = (dfd_face_res){.id = 0, .box = {1, 2, 30, 40}, .p_fake = 0.25, .p_manipulated = 0.25,
                                 .p_synthetic = NAN, .p_fake_video_model = NAN};
    r->faces[1] = (dfd_face_res){.id = 1, .box = {100, 2, 30, 40}, .p_fake = 0.75, .p_manipulated = 0.75,
                                 .p_synthetic = NAN, .kind = DFD_KIND_MANIPULATED, .p_fake_video_model = NAN};
    r->p_manipulated = 0.75;
    dfd_result_decide(r);
    assert_int_equal(dfd_result_verdict(r), DFD_VERDICT_FAKE);
    char *s = dfd_result_json(r);
    json_t *j = parse(s);
    for (size_t i = 0; i < sizeof top_fields / sizeof *top_fields; i++)
        assert_non_null(json_object_get(j, top_fields[i]));
    assert_string_equal(json_string_value(json_object_get(j, "verdict")), "FAKE");
    assert_string_equal(json_string_value(json_object_get(j, "media")), "image");
    assert_true(json_is_null(json_object_get(j, "frames")));
    assert_true(json_is_null(json_object_get(j, "error")));
    assert_true(json_is_null(json_object_get(json_object_get(j, "model"), "video")));
    assert_true(json_is_null(json_object_get(json_object_get(j, "model"), "synthetic")));
    /* One detector: its score is p_manipulated, the fake a manipulation, no synthetic score. */
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "manipulated");
    assert_float_equal(json_real_value(json_object_get(j, "p_manipulated")), 0.75, 1e-9);
    assert_true(json_is_null(json_object_get(j, "p_synthetic")));
    assert_true(json_is_null(json_object_get(j, "threshold_synthetic")));
    json_t *f1 = json_array_get(json_object_get(j, "faces"), 1);
    assert_non_null(json_object_get(f1, "p_manipulated"));
    assert_non_null(json_object_get(f1, "p_synthetic"));
    assert_non_null(json_object_get(f1, "kind"));
    assert_float_equal(json_real_value(json_object_get(f1, "p_fake")), 0.75, 1e-9);
    assert_float_equal(json_number_value(json_array_get(json_object_get(f1, "box"), 0)), 100, 1e-9);
    json_decref(j);
    free(s);
    dfd_result_free(r);
}

static void verdict_rules_threshold_noface_error(void **state) {
    (void)state;
    dfd_result *r = dfd_result_new("v.mp4", DFD_MEDIA_VIDEO);
    r->threshold_manipulated = 0.6;
    r->p_manipulated = 0.59;
    dfd_result_decide(r);
    assert_int_equal(r->verdict, DFD_VERDICT_REAL);
    assert_float_equal(r->p_fake, 0.59, 0);
    assert_float_equal(r->threshold, 0.6, 0);
    r->p_manipulated = 0.6;
    dfd_result_decide(r);
    assert_int_equal(r->verdict, DFD_VERDICT_FAKE);
    r->p_manipulated = NAN; /* nothing scored: no face, never "REAL with 0%" */
    dfd_result_decide(r);
    assert_int_equal(r->verdict, DFD_VERDICT_NO_FACE);
    assert_int_equal(dfd_result_status(r), DFD_OK); /* no face is a verdict, not a failure */
    char *s = dfd_result_json(r);
    json_t *j = parse(s);
    assert_string_equal(json_string_value(json_object_get(j, "verdict")), "NO_FACE");
    assert_true(json_is_null(json_object_get(j, "p_fake")));
    assert_true(json_is_null(json_object_get(j, "kind")));
    assert_float_equal(json_real_value(json_object_get(j, "threshold")), 0.6, 1e-9);
    assert_true(json_is_array(json_object_get(j, "frames")));
    json_decref(j);
    free(s);
    assert_int_equal(dfd_result_set_error(r, DFD_E_NO_STREAM, "video has no video stream"), DFD_OK);
    dfd_result_decide(r);
    assert_int_equal(r->verdict, DFD_VERDICT_ERROR);
    assert_string_equal(dfd_result_error(r), "video has no video stream");
    assert_int_equal(dfd_result_status(r), DFD_E_NO_STREAM);
    /* An error always has a code: DFD_OK is taken as an internal failure. */
    assert_int_equal(dfd_result_set_error(r, DFD_OK, "?"), DFD_OK);
    assert_int_equal(dfd_result_status(r), DFD_E_INTERNAL);
    assert_int_equal(dfd_result_status(NULL), DFD_E_ARG);
    dfd_result_free(r);
}

/* Two detectors, each with its own threshold: FAKE when either fires; p_fake is the score of
 * the one past its threshold by more on the logit scale, threshold is its threshold. */
static void two_detectors_combine_by_margin(void **state) {
    (void)state;
    double p, t;
    int kind;
    /* Only the synthetic one fires (0.3 >= 0.2) although its score is lower. */
    dfd_combine(0.5, 0.6, 0.3, 0.2, &p, &t, &kind);
    assert_int_equal(kind, DFD_KIND_SYNTHETIC);
    assert_float_equal(p, 0.3, 0);
    assert_float_equal(t, 0.2, 0);
    /* Both fire: logit(0.9) - logit(0.5) = 2.197 > logit(0.99) - logit(0.95) = 1.651. */
    dfd_combine(0.9, 0.5, 0.99, 0.95, &p, &t, &kind);
    assert_int_equal(kind, DFD_KIND_BOTH);
    assert_float_equal(p, 0.9, 0);
    assert_float_equal(t, 0.5, 0);
    /* Neither: the one closer to firing (logit(0.4)-logit(0.5) = -0.405 vs logit(0.1)-logit(0.2) = -0.811). */
    dfd_combine(0.4, 0.5, 0.1, 0.2, &p, &t, &kind);
    assert_int_equal(kind, DFD_KIND_NONE);
    assert_float_equal(p, 0.4, 0);
    assert_true(p < t);
    /* No synthetic detector (NaN): the manipulation detector alone. */
    dfd_combine(0.7, 0.6, NAN, NAN, &p, &t, &kind);
    assert_int_equal(kind, DFD_KIND_MANIPULATED);
    assert_float_equal(p, 0.7, 0);
    /* Nothing scored. */
    dfd_combine(NAN, 0.6, NAN, 0.3, &p, &t, &kind);
    assert_true(isnan(p));
    assert_int_equal(kind, DFD_KIND_NONE);
    /* Thresholds at the ends: the rule is p >= t, whatever the clamped logits say. */
    dfd_combine(1e-12, 1e-11, 0.5, 0.9, &p, &t, &kind);
    assert_int_equal(kind, DFD_KIND_NONE);
    assert_true(p < t);
    dfd_combine(0.1, 0.5, 1.0, 1.0, &p, &t, &kind);
    assert_int_equal(kind, DFD_KIND_SYNTHETIC);
    assert_true(p >= t);
    /* Both clamped margins 0, only the synthetic one at its threshold: it decides. */
    dfd_combine(1e-12, 1e-11, 1.0, 1.0, &p, &t, &kind);
    assert_int_equal(kind, DFD_KIND_SYNTHETIC);
    assert_float_equal(p, 1.0, 0);
    assert_true(p >= t);
    assert_string_equal(dfd_fake_kind_name(DFD_KIND_BOTH), "both");
    assert_null(dfd_fake_kind_name(DFD_KIND_NONE));

    /* A result: one face swapped (p_m 0.7 >= 0.6), another generated (p_s 0.95 >= 0.5). */
    dfd_result *r = dfd_result_new("two.jpg", DFD_MEDIA_IMAGE);
    r->threshold_manipulated = 0.6, r->threshold_synthetic = 0.5;
    r->p_manipulated = 0.7, r->p_synthetic = 0.95;
    dfd_result_decide(r);
    assert_int_equal(dfd_result_verdict(r), DFD_VERDICT_FAKE);
    assert_int_equal(dfd_result_kind(r), DFD_KIND_BOTH);
    assert_float_equal(dfd_result_p_fake(r), 0.95, 0); /* logit margin 2.94 > 0.44 */
    assert_float_equal(r->threshold, 0.5, 0);
    r->p_synthetic = 0.4;
    dfd_result_decide(r);
    assert_int_equal(dfd_result_kind(r), DFD_KIND_MANIPULATED);
    assert_float_equal(dfd_result_p_fake(r), 0.7, 0);
    assert_float_equal(r->threshold, 0.6, 0);
    char *s = dfd_result_json(r);
    json_t *j = parse(s);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "manipulated");
    assert_float_equal(json_real_value(json_object_get(j, "p_synthetic")), 0.4, 1e-9);
    assert_float_equal(json_real_value(json_object_get(j, "threshold_synthetic")), 0.5, 1e-9);
    json_decref(j);
    free(s);
    r->p_manipulated = 0.5;
    dfd_result_decide(r);
    assert_int_equal(dfd_result_verdict(r), DFD_VERDICT_REAL);
    assert_int_equal(dfd_result_kind(r), DFD_KIND_NONE);
    s = dfd_result_json(r);
    j = parse(s);
    assert_true(json_is_null(json_object_get(j, "kind"))); /* a kind only for FAKE */
    json_decref(j);
    free(s);
    dfd_result_free(r);
}

static void document_is_versioned_and_escapes_names(void **state) {
    (void)state;
    dfd_result *a = dfd_result_new("we\"ird\n.jpg", DFD_MEDIA_IMAGE);
    dfd_result *b = dfd_result_new("b.mp4", DFD_MEDIA_VIDEO);
    const dfd_result *rs[] = {a, b};
    char *s = dfd_results_document(rs, 2, 1);
    json_t *j = parse(s);
    assert_string_equal(json_string_value(json_object_get(j, "schema")), "dfd.result/1");
    json_t *res = json_object_get(j, "results");
    assert_int_equal(json_array_size(res), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "file")), "we\"ird\n.jpg");
    json_decref(j);
    free(s);
    dfd_result_free(a);
    dfd_result_free(b);
}

/* File names are bytes: one that is not UTF-8 (Latin-1 "café", a lone continuation byte,
 * a truncated sequence, an overlong '/', a surrogate) still gets its "file" field, as
 * valid UTF-8 with U+FFFD for each byte that is not part of a well-formed sequence; an
 * error message quoting the name too. jansson refuses invalid UTF-8, and the field used
 * to go missing (issue 18). */
static void names_that_are_not_utf8_are_repaired(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"caf\xe9.jpg", "caf\xef\xbf\xbd.jpg"},
        {"\x80x", "\xef\xbf\xbdx"},
        {"a\xe2\x82", "a\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"ok \xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac", "ok \xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *fixed = dfd_utf8_repair(cases[i].in);
        assert_non_null(fixed);
        assert_string_equal(fixed, cases[i].out);
        free(fixed);
        dfd_result *r = dfd_result_new(cases[i].in, DFD_MEDIA_IMAGE);
        char msg[64];
        snprintf(msg, sizeof msg, "cannot open '%s'", cases[i].in);
        dfd_result_set_error(r, DFD_E_CORRUPT, msg);
        const dfd_result *rs[] = {r};
        char *s = dfd_results_document(rs, 1, 1);
        assert_non_null(s);
        json_t *j = parse(s);
        json_t *el = json_array_get(json_object_get(j, "results"), 0);
        json_t *file = json_object_get(el, "file");
        if (!file) fail_msg("case %zu: no \"file\" in %s", i, s);
        assert_string_equal(json_string_value(file), cases[i].out);
        char want[96];
        snprintf(want, sizeof want, "cannot open '%s'", cases[i].out);
        assert_non_null(json_object_get(el, "error"));
        assert_string_equal(json_string_value(json_object_get(el, "error")), want);
        json_decref(j);
        free(s);
        dfd_result_free(r);
    }
}

static void confident_strategy_matches_hand_computed_cases(void **state) {
    (void)state;
    double p[30];
    /* 13 confident fakes at 0.9 (> 30/2.5 = 12 and > 11): their mean, 0.9. */
    for (int i = 0; i < 30; i++) p[i] = i < 13 ? 0.9 : 0.1;
    assert_float_equal(dfd_aggregate_confident(p, 30), 0.9, 1e-12);
    /* 12 confident fakes is not enough: 28 of 30 are not < 0.2 either -> plain mean. */
    for (int i = 0; i < 30; i++) p[i] = i < 12 ? 0.9 : 0.5;
    assert_float_equal(dfd_aggregate_confident(p, 30), (12 * 0.9 + 18 * 0.5) / 30, 1e-12);
    /* 28 of 30 confidently real (> 27): mean of those. */
    for (int i = 0; i < 30; i++) p[i] = i < 28 ? 0.1 : 0.7;
    assert_float_equal(dfd_aggregate_confident(p, 30), 0.1, 1e-12);
    /* 27 of 30 is not > 0.9*30: plain mean. */
    for (int i = 0; i < 30; i++) p[i] = i < 27 ? 0.1 : 0.7;
    assert_float_equal(dfd_aggregate_confident(p, 30), (27 * 0.1 + 3 * 0.7) / 30, 1e-12);
    /* NaN entries (frames where the track had no face) are ignored; all-NaN is NaN. */
    double q[4] = {NAN, 0.4, NAN, 0.6};
    assert_float_equal(dfd_aggregate(q, 4, DFD_AGG_MEAN), 0.5, 1e-12);
    double z[2] = {NAN, NAN};
    assert_true(isnan(dfd_aggregate(z, 2, DFD_AGG_CONFIDENT)));
    assert_true(isnan(dfd_aggregate(z, 2, DFD_AGG_MEAN)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(image_result_has_all_fields_and_null_frames),
        cmocka_unit_test(verdict_rules_threshold_noface_error),
        cmocka_unit_test(two_detectors_combine_by_margin),
        cmocka_unit_test(document_is_versioned_and_escapes_names),
        cmocka_unit_test(names_that_are_not_utf8_are_repaired),
        cmocka_unit_test(confident_strategy_matches_hand_computed_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
