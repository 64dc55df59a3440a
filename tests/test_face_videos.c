/* test_face_videos — on each clip of ../shared/data/videos (DFDC samples: landscape
 * 1920x1080 and portrait 1080x1920 / 720x1280, one person each), 30 evenly sampled frames
 * give one main track covering at least 27 of them, and no other track as long. The faces
 * in these clips are 100-220 px, so the automatic mode runs with min_face 80 here (four
 * times fewer tiles, to keep the test within its time budget under ASan);
 * bench/face_recall.sh runs the same check with the default 40. The search around the
 * previous frame's faces (dfd_face_detect_near) finds the same faces. Needs the shared data and
 * models/registry; skips otherwise. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "face/face.h"

static void each_clip_has_one_main_track(void **state) {
    (void)state;
    TU_REQUIRE_SHARED_DATA();
    char dir[4096];
    if (dfd_face_models_dir(NULL, dir, sizeof dir) != DFD_OK) {
        print_message("skipped: %s/blazeface-short.safetensors missing (run ./setup.sh)\n", dir);
        skip();
    }
    char *vdir = tu_shared_path("videos");
    assert_non_null(vdir);
    DIR *dd = opendir(vdir);
    assert_non_null(dd);
    dfd_face_opts o;
    dfd_face_opts_default(&o);
    o.min_face = 80;
    dfd_face_detector *d;
    dfd_error e;
    assert_int_equal(dfd_face_detector_create(&o, &d, &e), DFD_OK);
    int clips = 0;
    struct dirent *de;
    while ((de = readdir(dd))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".mp4") != 0) continue;
        char *path = tu_join(vdir, de->d_name);
        dfd_frame_set set;
        assert_int_equal(dfd_video_sample(path, 30, NULL, 0, &set, &e), DFD_OK);
        assert_int_equal(set.count, 30);
        dfd_face *per[30];
        int counts[30];
        for (int i = 0; i < set.count; i++) assert_int_equal(dfd_face_detect(d, &set.frames[i].img, &per[i], &counts[i], &e), DFD_OK);
        dfd_face_track *t;
        int nt;
        assert_int_equal(dfd_face_track_link((const dfd_face *const *)per, counts, set.count, NULL, &t, &nt, &e), DFD_OK);
        print_message("%s: %dx%d, %d track(s), main track on %d frames\n", de->d_name, set.frames[0].img.w,
                      set.frames[0].img.h, nt, nt ? t[0].n_points : 0);
        assert_true(nt >= 1);
        if (t[0].n_points < 27) fail_msg("%s: main track covers %d of 30 frames", de->d_name, t[0].n_points);
        if (nt > 1 && t[1].n_points >= 27) fail_msg("%s: a second track covers %d frames", de->d_name, t[1].n_points);
        /* Searching only around the previous frame's faces (what the video pipeline does
         * between whole-frame searches) finds the face again, in the box the same search
         * draws around this frame's face. */
        int same = 0, pairs = 0;
        for (int i = 1; i < set.count; i++) {
            if (counts[i] == 0 || counts[i - 1] == 0) continue;
            dfd_face *nf, *here;
            int nn, nh;
            assert_int_equal(dfd_face_detect_near(d, &set.frames[i].img, per[i - 1], counts[i - 1], &nf, &nn, &e), DFD_OK);
            assert_int_equal(dfd_face_detect_near(d, &set.frames[i].img, per[i], 1, &here, &nh, &e), DFD_OK);
            pairs++;
            float best = 0;
            for (int k = 0; k < nn && nh > 0; k++) best = fmaxf(best, dfd_box_iou(nf[k].box, here[0].box));
            if (best > 0.7f) same++;
            else print_message("  frame %d: %d found near the last frame's face, %d near its own; best IoU %.2f\n", i, nn, nh, best);
            free(nf);
            free(here);
        }
        print_message("%s: near search found the face again in %d of %d frames\n", de->d_name, same, pairs);
        if (same < pairs * 9 / 10) fail_msg("%s: near search found the face in %d of %d frames", de->d_name, same, pairs);
        dfd_face_tracks_free(t, nt);
        for (int i = 0; i < set.count; i++) free(per[i]);
        dfd_frame_set_free(&set);
        free(path);
        clips++;
    }
    closedir(dd);
    assert_true(clips >= 1);
    dfd_face_detector_free(d);
    free(vdir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_clip_has_one_main_track),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
