/* test_media_video — video probing and frame reading on clips made at test time with
 * ffmpeg (each frame's colour encodes its number): evenly spaced samples have the right
 * times and the right frames, and are found by seeking; stride reading; rotation; memory
 * input; limits; cut, damaged, audio-only and misnamed files; the DFDC clips. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media/media.h"

static char *dir;

static char *path(const char *name) { return tu_join(dir, name); }

static int sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(cmd, sizeof cmd, "cd '%s' && ", dir);
    vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    if (rc != 0) print_error("%s\n%s\n", cmd, out ? out : "");
    free(out);
    return rc;
}

/* Frame N is a flat colour: red = (N % 20) * 12 + 6, green = (N / 20) * 16 + 8. */
#define COUNTER_GEQ "geq=r='mod(N,20)*12+6':g='floor(N/20)*16+8':b=128"

static int frame_number(const dfd_image *im) {
    const uint8_t *p = im->rgb + 3 * ((size_t)(im->h / 2) * im->w + im->w / 2);
    int lo = (int)lround((p[0] - 6) / 12.0), hi = (int)lround((p[1] - 8) / 16.0);
    return hi * 20 + lo;
}

static int setup(void **state) {
    (void)state;
    if (!tu_have_program("ffmpeg")) {
        print_message("skipped: ffmpeg is not installed\n");
        return 0;
    }
    dir = tu_mkdtemp();
    const char *q = "-nostdin -v error -y";
    /* 10 s at 30 fps, a keyframe every second, B-frames (veryfast uses 3). */
    int rc = sh("ffmpeg %s -f lavfi -i \"color=black:s=64x48:r=30:d=10,format=rgb24," COUNTER_GEQ "\""
                " -c:v libx264 -preset veryfast -crf 10 -g 30 -keyint_min 30 -sc_threshold 0 -pix_fmt yuv420p count.mp4"
                " && ffmpeg %s -i count.mp4 -c copy -movflags +faststart count-fast.mp4"
                " && ffmpeg %s -f lavfi -i \"color=black:s=64x48:r=30:d=10,format=rgb24," COUNTER_GEQ "\""
                " -c:v libx264 -preset veryfast -crf 10 -g 300 -sc_threshold 0 -bf 3 -b_strategy 0 -x264-params b-pyramid=none"
                " -pix_fmt yuv420p sparse.mp4"
                " && ffmpeg %s -f lavfi -i \"color=black:s=64x48:r=10:d=3,format=rgb24," COUNTER_GEQ "\""
                " -c:v mjpeg -q:v 2 -pix_fmt yuvj444p count.avi"
                " && ffmpeg %s -f lavfi -i 'color=0xE61E1E:s=32x16:d=1:r=10[a];color=0x1ED228:s=32x16:d=1:r=10[b];"
                "color=0x1E28DC:s=32x16:d=1:r=10[c];color=0xEBEBEB:s=32x16:d=1:r=10[d];[a][b]hstack[t];[c][d]hstack[u];"
                "[t][u]vstack' -c:v libx264 -preset veryfast -crf 10 -pix_fmt yuv420p quad.mp4"
                " && ffmpeg %s -i quad.mp4 -c copy -metadata:s:v rotate=90 quad-rot90tag.mp4"
                " && ffmpeg %s -i quad.mp4 -c copy -metadata:s:v rotate=270 quad-rot270tag.mp4"
                " && ffmpeg %s -f lavfi -i 'sine=d=1' -c:a aac audio-only.mp4",
                q, q, q, q, q, q, q, q);
    assert_int_equal(rc, 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (dir) tu_rmtree(dir);
    free(dir);
    return 0;
}

#define REQUIRE_FILES()   \
    do {                  \
        if (!dir) skip(); \
    } while (0)

static dfd_video *open_ok(const char *name, const dfd_limits *lim) {
    char *p = path(name);
    dfd_video *v;
    dfd_error e;
    int rc = dfd_video_open(p, lim, 2, &v, &e);
    if (rc) print_error("%s: %s\n", name, e.message);
    assert_int_equal(rc, DFD_OK);
    free(p);
    return v;
}

static void probe_reports_stream_facts(void **state) {
    (void)state;
    REQUIRE_FILES();
    char *p = path("count.mp4");
    dfd_video_info in;
    assert_int_equal(dfd_video_probe(p, NULL, &in, NULL), DFD_OK);
    free(p);
    assert_string_equal(in.container, "mov,mp4,m4a,3gp,3g2,mj2");
    assert_string_equal(in.codec, "h264");
    assert_int_equal(in.width, 64);
    assert_int_equal(in.height, 48);
    assert_int_equal(in.rotation, 0);
    assert_true(fabs(in.fps - 30) < 1e-6);
    assert_true(fabs(in.duration_s - 10) < 0.05);
    assert_int_equal(in.frames, 300);
    assert_false(in.frames_estimated);
}

static void check_thirty_samples(dfd_video *v) {
    dfd_frame_set s;
    dfd_error e;
    assert_int_equal(dfd_video_sample_frames(v, 30, NULL, NULL, &s, &e), DFD_OK);
    assert_int_equal(s.count, 30);
    assert_int_equal(s.corrupt, 0);
    assert_false(s.truncated);
    for (int i = 0; i < 30; i++) {
        const dfd_frame *f = &s.frames[i];
        if (fabs(f->time_s - i / 3.0) > 1e-3 || f->index != 10 * i || frame_number(&f->img) != 10 * i) {
            print_error("sample %d: t=%.4f index=%lld colour says frame %d\n", i, f->time_s, (long long)f->index,
                        frame_number(&f->img));
            fail();
        }
        assert_int_equal(f->img.w, 64);
        assert_int_equal(f->img.h, 48);
    }
    dfd_frame_set_free(&s);
}

static void thirty_samples_fall_every_third_of_a_second_on_the_right_frames(void **state) {
    (void)state;
    REQUIRE_FILES();
    dfd_video *v = open_ok("count.mp4", NULL);
    check_thirty_samples(v);
    check_thirty_samples(v); /* again on the same handle: it seeks back */
    dfd_video_close(v);
}

static void sampling_seeks_instead_of_decoding_everything(void **state) {
    (void)state;
    REQUIRE_FILES();
    dfd_video *v = open_ok("count.mp4", NULL);
    dfd_frame_set s;
    assert_int_equal(dfd_video_sample_frames(v, 3, NULL, NULL, &s, NULL), DFD_OK);
    assert_int_equal(s.count, 3);
    /* Targets 0, 3.33 and 6.67 s: frames 0, 100, 200, decoded from the keyframes at 90
     * and 180: about 33 frames where decoding straight through would take 201. */
    for (int i = 0; i < 3; i++) assert_int_equal(frame_number(&s.frames[i].img), 100 * i);
    print_message("decoded %d frames for 3 samples\n", s.decoded);
    assert_true(s.decoded < 60);
    dfd_frame_set_free(&s);
    dfd_video_close(v);
}

/* One keyframe in 10 s (as in DFDC clips) and three non-reference B-frames between
 * P-frames: 30 samples need the whole clip decoded, except the B-frames nobody shows. */
static void sampling_skips_unshown_non_reference_frames(void **state) {
    (void)state;
    REQUIRE_FILES();
    dfd_video *v = open_ok("sparse.mp4", NULL); /* two frame threads */
    dfd_frame_set s;
    assert_int_equal(dfd_video_sample_frames(v, 30, NULL, NULL, &s, NULL), DFD_OK);
    assert_int_equal(s.count, 30);
    for (int i = 0; i < 30; i++) assert_int_equal(frame_number(&s.frames[i].img), 10 * i);
    print_message("decoded %d frames of 300 for 30 samples\n", s.decoded);
    assert_true(s.decoded < 150);
    dfd_frame_set_free(&s);
    dfd_video_close(v);
}

static void more_samples_than_frames_repeat_frames(void **state) {
    (void)state;
    REQUIRE_FILES();
    dfd_video *v = open_ok("count.avi", NULL); /* 30 frames */
    dfd_frame_set s;
    assert_int_equal(dfd_video_sample_frames(v, 45, NULL, NULL, &s, NULL), DFD_OK);
    assert_int_equal(s.count, 45);
    for (int i = 0; i < 45; i++) {
        int want = (int)lround(i * 30.0 / 45); /* nearest frame to t = i * 3 s / 45 */
        assert_int_equal(frame_number(&s.frames[i].img), want);
        assert_int_equal(s.frames[i].index, want);
    }
    dfd_frame_set_free(&s);
    dfd_video_close(v);
}

struct collect {
    int n, stop_after;
    int64_t index[64];
    int colour[64];
    double t[64];
};

static int collect_frame(void *user, const dfd_frame *f) {
    struct collect *c = user;
    if (c->n < 64) {
        c->index[c->n] = f->index;
        c->colour[c->n] = frame_number(&f->img);
        c->t[c->n] = f->time_s;
    }
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static void reading_with_a_stride_passes_every_nth_frame_in_order(void **state) {
    (void)state;
    REQUIRE_FILES();
    dfd_video *v = open_ok("count.mp4", NULL);
    struct collect c = {0};
    int corrupt = -1;
    assert_int_equal(dfd_video_read(v, 50, collect_frame, &c, &corrupt, NULL), DFD_OK);
    assert_int_equal(c.n, 6);
    assert_int_equal(corrupt, 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c.index[i], 50 * i);
        assert_int_equal(c.colour[i], 50 * i);
        assert_true(fabs(c.t[i] - 50 * i / 30.0) < 1e-3);
    }
    struct collect d = {.stop_after = 2}; /* the callback stops it; a rerun starts over */
    assert_int_equal(dfd_video_read(v, 7, collect_frame, &d, NULL, NULL), DFD_OK);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.colour[1], 7);
    dfd_video_close(v);
}

static void memory_input_gives_the_same_frames(void **state) {
    (void)state;
    REQUIRE_FILES();
    char *p = path("count.mp4"); /* moov at the end: the demuxer must seek in the buffer */
    size_t n;
    uint8_t *d = tu_read_file(p, &n);
    free(p);
    dfd_video *v;
    dfd_error e;
    assert_int_equal(dfd_video_open_buffer(d, n, NULL, 1, &v, &e), DFD_OK);
    assert_int_equal(dfd_video_get_info(v)->frames, 300);
    check_thirty_samples(v);
    dfd_video_close(v);
    free(d);
}

static const uint8_t *quadrant(const dfd_image *im, int q) {
    int x = (q & 1) ? im->w * 3 / 4 : im->w / 4, y = (q & 2) ? im->h * 3 / 4 : im->h / 4;
    return im->rgb + 3 * ((size_t)y * im->w + x);
}

static int near(const uint8_t *a, const uint8_t *b, int tol) {
    for (int c = 0; c < 3; c++)
        if (abs(a[c] - b[c]) > tol) return 0;
    return 1;
}

static void rotation_metadata_turns_frames_upright(void **state) {
    (void)state;
    REQUIRE_FILES();
    static const uint8_t col[4][3] = {{0xE6, 0x1E, 0x1E}, {0x1E, 0xD2, 0x28}, {0x1E, 0x28, 0xDC}, {0xEB, 0xEB, 0xEB}};
    /* In FFmpeg 5.1 the "rotate" tag becomes a display matrix that turns the picture
     * counter-clockwise by the tag's angle (ffmpeg's own autorotate shows the same);
     * rotation is reported as the clockwise turn that dfd applies. Which source
     * quadrant (TL red, TR green, BL blue, BR grey) lands at TL, TR, BL, BR: */
    static const struct {
        const char *file;
        int rotation;
        int where[4];
    } cases[] = {
        {"quad.mp4", 0, {0, 1, 2, 3}},
        {"quad-rot90tag.mp4", 270, {1, 3, 0, 2}},
        {"quad-rot270tag.mp4", 90, {2, 0, 3, 1}},
    };
    for (int k = 0; k < 3; k++) {
        dfd_video *v = open_ok(cases[k].file, NULL);
        const dfd_video_info *in = dfd_video_get_info(v);
        assert_int_equal(in->rotation, cases[k].rotation);
        assert_int_equal(in->width, cases[k].rotation ? 32 : 64);
        assert_int_equal(in->height, cases[k].rotation ? 64 : 32);
        dfd_frame_set s;
        assert_int_equal(dfd_video_sample_frames(v, 2, NULL, NULL, &s, NULL), DFD_OK);
        for (int i = 0; i < s.count; i++) {
            assert_int_equal(s.frames[i].img.w, in->width);
            for (int q = 0; q < 4; q++) {
                if (!near(quadrant(&s.frames[i].img, q), col[cases[k].where[q]], 12)) {
                    const uint8_t *p = quadrant(&s.frames[i].img, q);
                    print_error("%s quadrant %d is %d,%d,%d\n", cases[k].file, q, p[0], p[1], p[2]);
                    fail();
                }
            }
        }
        dfd_frame_set_free(&s);
        dfd_video_close(v);
    }
}

static void limits_on_duration_size_frames_and_pixels(void **state) {
    (void)state;
    REQUIRE_FILES();
    char *p = path("count.mp4");
    dfd_limits lim;
    dfd_video *v;
    dfd_error e;
    dfd_limits_default(&lim);
    lim.max_video_seconds = 5;
    assert_int_equal(dfd_video_open(p, &lim, 1, &v, &e), DFD_E_LIMIT);
    assert_string_equal(e.message, "video is 10.0 s long, over the 5 s limit");
    assert_null(v);
    dfd_limits_default(&lim);
    lim.max_file_bytes = 1000;
    assert_int_equal(dfd_video_open(p, &lim, 1, &v, &e), DFD_E_LIMIT);
    assert_non_null(strstr(e.message, "over the 1000-byte limit"));
    dfd_limits_default(&lim);
    lim.max_image_pixels = 3000;
    assert_int_equal(dfd_video_open(p, &lim, 1, &v, &e), DFD_E_LIMIT);
    assert_string_equal(e.message, "video frame is 64x48, over the 0.003 MP limit");
    dfd_limits_default(&lim);
    lim.max_video_frames = 40;
    assert_int_equal(dfd_video_open(p, &lim, 1, &v, &e), DFD_OK);
    struct collect c = {0};
    assert_int_equal(dfd_video_read(v, 1, collect_frame, &c, NULL, &e), DFD_E_LIMIT);
    assert_string_equal(e.message, "decoded more than 40 frames, the limit for one video");
    assert_int_equal(c.n, 40);
    dfd_video_close(v);
    free(p);
}

static void open_error(const char *name, int code, const char *needle) {
    char *p = path(name);
    dfd_video *v = (dfd_video *)1;
    dfd_error e;
    dfd_error_clear(&e);
    int rc = dfd_video_open(p, NULL, 1, &v, &e);
    if (rc != code || !strstr(e.message, needle)) {
        print_error("%s: got %d '%s', wanted %d with '%s'\n", name, rc, e.message, code, needle);
        fail();
    }
    assert_null(v);
    free(p);
}

static void cut_damaged_and_wrong_files_fail_with_their_reason(void **state) {
    (void)state;
    REQUIRE_FILES();
    size_t n;
    char *p = path("count.mp4");
    uint8_t *d = tu_read_file(p, &n);
    free(p);
    p = path("half.mp4"); /* the index (moov) was at the end: nothing is readable */
    tu_write_file(p, d, n / 2);
    free(p);
    open_error("half.mp4", DFD_E_CORRUPT, "cannot read the video container (truncated or corrupt)");
    free(d);

    p = path("count-fast.mp4"); /* index first: the first half of the frames survive */
    d = tu_read_file(p, &n);
    free(p);
    dfd_video *v;
    assert_int_equal(dfd_video_open_buffer(d, n / 2, NULL, 1, &v, NULL), DFD_OK);
    dfd_frame_set s;
    assert_int_equal(dfd_video_sample_frames(v, 30, NULL, NULL, &s, NULL), DFD_OK);
    assert_true(s.truncated);
    assert_true(s.count >= 10 && s.count < 30);
    for (int i = 0; i < s.count; i++) assert_int_equal(frame_number(&s.frames[i].img), 10 * i);
    dfd_frame_set_free(&s);
    dfd_video_close(v);
    dfd_error e;
    assert_int_equal(dfd_video_open_buffer(d, 2000, NULL, 1, &v, &e), DFD_E_CORRUPT);
    free(d);

    const char text[] = "just some text, named like a video\n";
    p = path("text.mp4");
    tu_write_file(p, text, sizeof text - 1);
    free(p);
    open_error("text.mp4", DFD_E_UNSUPPORTED, "unsupported format: not an image or a video");
    open_error("audio-only.mp4", DFD_E_NO_STREAM, "video has no video stream");
    open_error("missing.mp4", DFD_E_IO, "missing.mp4");
    char *png = tu_join(tu_source_dir(), "examples/astronaut.png");
    assert_int_equal(dfd_video_open(png, NULL, 1, &v, &e), DFD_E_UNSUPPORTED);
    assert_string_equal(e.message, "this is an image ('PNG'), not a video");
    free(png);
}

static void a_corrupt_frame_in_the_middle_is_skipped_and_counted(void **state) {
    (void)state;
    REQUIRE_FILES();
    /* count.avi is MJPEG: each frame a JPEG. Giving frame 15's header a 0x0 size
     * makes just that frame undecodable. */
    size_t n;
    char *p = path("count.avi");
    uint8_t *d = tu_read_file(p, &n);
    free(p);
    int seen = 0;
    for (size_t i = 0; i + 3 < n; i++)
        if (d[i] == 0xFF && d[i + 1] == 0xD8 && d[i + 2] == 0xFF && seen++ == 15) {
            for (size_t j = i; j + 9 < n; j++)
                if (d[j] == 0xFF && d[j + 1] == 0xC0) { /* SOF0: FF C0, length, precision, height, width */
                    memset(d + j + 5, 0, 4);
                    break;
                }
            break;
        }
    assert_int_equal(seen, 16);
    dfd_video *v;
    dfd_error e;
    assert_int_equal(dfd_video_open_buffer(d, n, NULL, 1, &v, &e), DFD_OK);
    dfd_frame_set s;
    assert_int_equal(dfd_video_sample_frames(v, 10, NULL, NULL, &s, &e), DFD_OK);
    assert_int_equal(s.count, 10);
    assert_int_equal(s.corrupt, 1);
    for (int i = 0; i < 10; i++) assert_int_equal(frame_number(&s.frames[i].img), i == 5 ? 16 : 3 * i);
    dfd_frame_set_free(&s);
    struct collect c = {0};
    int corrupt = 0;
    assert_int_equal(dfd_video_read(v, 1, collect_frame, &c, &corrupt, &e), DFD_OK);
    assert_int_equal(c.n, 29);
    assert_int_equal(corrupt, 1);
    dfd_video_close(v);
    free(d);
}

static int cancel_at_half(void *user, double fraction) {
    (void)user;
    return fraction >= 0.5;
}

static void progress_callback_can_cancel_sampling(void **state) {
    (void)state;
    REQUIRE_FILES();
    dfd_video *v = open_ok("count.avi", NULL);
    dfd_frame_set s;
    dfd_error e;
    assert_int_equal(dfd_video_sample_frames(v, 4, cancel_at_half, NULL, &s, &e), DFD_E_CANCELLED);
    assert_null(s.frames);
    assert_int_equal(dfd_video_sample_frames(v, 0, NULL, NULL, &s, &e), DFD_E_ARG);
    dfd_video_close(v);
}

static void example_clip_matches_ffmpegs_own_decoding(void **state) {
    (void)state;
    REQUIRE_FILES();
    char *clip = tu_join(tu_source_dir(), "examples/astronaut-clip.mp4");
    dfd_frame_set s;
    dfd_error e;
    assert_int_equal(dfd_video_sample(clip, 3, NULL, 1, &s, &e), DFD_OK);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.frames[1].index, 10);
    assert_int_equal(s.frames[2].index, 20);
    assert_int_equal(sh("ffmpeg -nostdin -v error -y -i '%s' -vf 'select=eq(n\\,10)' -frames:v 1 "
                        "-sws_flags bilinear+accurate_rnd+full_chroma_int -f rawvideo -pix_fmt rgb24 f10.rgb",
                        clip),
                     0);
    char *p = path("f10.rgb");
    size_t n;
    uint8_t *ref = tu_read_file(p, &n);
    assert_int_equal(n, 256 * 256 * 3);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += abs(ref[i] - s.frames[1].img.rgb[i]);
    print_message("mean difference to ffmpeg's frame 10: %.3f\n", sum / n);
    assert_true(sum / n < 0.5);
    free(ref);
    free(p);
    free(clip);
    dfd_frame_set_free(&s);
}

static void dfdc_clips_probe_as_expected(void **state) {
    (void)state;
    TU_REQUIRE_SHARED_DATA();
    char *p = tu_shared_path("videos/abofeumbvv.mp4");
    dfd_video_info in;
    dfd_error e;
    assert_int_equal(dfd_video_probe(p, NULL, &in, &e), DFD_OK);
    assert_int_equal(in.width, 1920);
    assert_int_equal(in.height, 1080);
    assert_true(fabs(in.duration_s - 10.02) < 0.02);
    assert_int_equal(in.frames, 300);
    free(p);
    p = tu_shared_path("videos/brtujopkby.mp4");
    assert_int_equal(dfd_video_probe(p, NULL, &in, &e), DFD_OK);
    assert_int_equal(in.width, 1080);
    assert_int_equal(in.height, 1920);
    dfd_frame_set s;
    assert_int_equal(dfd_video_sample(p, 2, NULL, 2, &s, &e), DFD_OK);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.frames[0].img.w, 1080);
    assert_int_equal(s.frames[0].img.h, 1920);
    assert_int_equal(s.frames[1].index, 150);
    dfd_frame_set_free(&s);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(probe_reports_stream_facts),
        cmocka_unit_test(thirty_samples_fall_every_third_of_a_second_on_the_right_frames),
        cmocka_unit_test(sampling_seeks_instead_of_decoding_everything),
        cmocka_unit_test(sampling_skips_unshown_non_reference_frames),
        cmocka_unit_test(more_samples_than_frames_repeat_frames),
        cmocka_unit_test(reading_with_a_stride_passes_every_nth_frame_in_order),
        cmocka_unit_test(memory_input_gives_the_same_frames),
        cmocka_unit_test(rotation_metadata_turns_frames_upright),
        cmocka_unit_test(limits_on_duration_size_frames_and_pixels),
        cmocka_unit_test(cut_damaged_and_wrong_files_fail_with_their_reason),
        cmocka_unit_test(a_corrupt_frame_in_the_middle_is_skipped_and_counted),
        cmocka_unit_test(progress_callback_can_cancel_sampling),
        cmocka_unit_test(example_clip_matches_ffmpegs_own_decoding),
        cmocka_unit_test(dfdc_clips_probe_as_expected),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
