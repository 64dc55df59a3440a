/* test_face_track — linking per-frame detections into one track per person, on scripted
 * detections: two people walking, one missed for two frames (continued) and one for five
 * (joined afterwards as a fragment), a one-frame false detection (dropped), a face that
 * jumps across the frame or changes size threefold (a new track), and empty input. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "face/face.h"

#define NF 30

static dfd_face box(float x, float y, float s, float score) {
    dfd_face f;
    memset(&f, 0, sizeof f);
    f.box[0] = x;
    f.box[1] = y;
    f.box[2] = f.box[3] = s;
    f.score = score;
    return f;
}

typedef struct script {
    dfd_face faces[NF][4];
    int counts[NF];
    const dfd_face *ptr[NF];
} script;

static void add(script *s, int frame, dfd_face f) { s->faces[frame][s->counts[frame]++] = f; }

static void link_tracks(script *s, int n, dfd_face_track **t, int *nt) {
    for (int i = 0; i < n; i++) s->ptr[i] = s->faces[i];
    dfd_error e;
    assert_int_equal(dfd_face_track_link(s->ptr, s->counts, n, NULL, t, nt, &e), DFD_OK);
}

static void two_people_with_gaps_and_a_false_detection(void **state) {
    (void)state;
    script *s = calloc(1, sizeof *s);
    for (int f = 0; f < NF; f++) {
        /* A walks right 12 px per frame (0.15 of its 80 px face), missed at frames 10-11.
         * B stands at the right, missed at frames 18-22 (longer than max_gap). The order
         * of detections within a frame alternates so matching cannot rely on it. */
        dfd_face a = box(100 + 12.0f * f, 100, 80, 0.9f), b = box(500, 120 + (f % 3), 70, 0.8f);
        int has_a = f != 10 && f != 11, has_b = f < 18 || f > 22;
        if (f % 2) {
            if (has_b) add(s, f, b);
            if (has_a) add(s, f, a);
        } else {
            if (has_a) add(s, f, a);
            if (has_b) add(s, f, b);
        }
    }
    add(s, 15, box(300, 400, 60, 0.55f)); /* seen once: spurious */
    dfd_face_track *t;
    int nt;
    link_tracks(s, NF, &t, &nt);
    assert_int_equal(nt, 2);
    assert_int_equal(t[0].id, 1);
    assert_int_equal(t[0].n_points, 28); /* A, the longest, first */
    assert_int_equal(t[1].id, 2);
    assert_int_equal(t[1].n_points, 25); /* B, fragments joined */
    for (int k = 0; k < t[0].n_points; k++) {
        const dfd_track_point *p = &t[0].points[k];
        assert_float_equal(p->face.box[0], 100 + 12.0f * p->sample, 1e-4);
        if (k) assert_true(p->sample > t[0].points[k - 1].sample);
    }
    for (int k = 0; k < t[1].n_points; k++) assert_float_equal(t[1].points[k].face.box[0], 500, 1e-4);
    dfd_face_tracks_free(t, nt);
    free(s);
}

static void jumps_and_size_changes_start_new_tracks(void **state) {
    (void)state;
    script *s = calloc(1, sizeof *s);
    for (int f = 0; f < 10; f++) add(s, f, box(100, 100, 80, 0.9f));
    for (int f = 10; f < 20; f++) add(s, f, box(900, 100, 80, 0.9f)); /* across the frame */
    for (int f = 20; f < 30; f++) add(s, f, box(900, 100, 240, 0.9f)); /* three times larger */
    dfd_face_track *t;
    int nt;
    link_tracks(s, NF, &t, &nt);
    assert_int_equal(nt, 3);
    for (int i = 0; i < 3; i++) assert_int_equal(t[i].n_points, 10);
    /* Equal lengths: ordered by first frame. */
    assert_int_equal(t[0].points[0].sample, 0);
    assert_int_equal(t[1].points[0].sample, 10);
    assert_int_equal(t[2].points[0].sample, 20);
    dfd_face_tracks_free(t, nt);
    free(s);
}

static void a_lone_short_track_is_kept_and_nothing_gives_nothing(void **state) {
    (void)state;
    script *s = calloc(1, sizeof *s);
    dfd_face_track *t;
    int nt;
    link_tracks(s, NF, &t, &nt);
    assert_int_equal(nt, 0);
    assert_null(t);
    add(s, 7, box(10, 10, 50, 0.6f));
    link_tracks(s, NF, &t, &nt);
    assert_int_equal(nt, 1);
    assert_int_equal(t[0].n_points, 1);
    assert_int_equal(t[0].points[0].sample, 7);
    dfd_face_tracks_free(t, nt);
    dfd_error e;
    int bad = -1;
    const dfd_face *p = NULL;
    assert_int_equal(dfd_face_track_link(&p, &bad, 1, NULL, &t, &nt, &e), DFD_E_ARG);
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_people_with_gaps_and_a_false_detection),
        cmocka_unit_test(jumps_and_size_changes_start_new_tracks),
        cmocka_unit_test(a_lone_short_track_is_kept_and_nothing_gives_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
