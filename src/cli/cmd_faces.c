/* cmd_faces.c — `dfd faces`: the faces found in images, and the face tracks of videos,
 * with the crops the classifier would see (--save-crops). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli/cli.h"
#include "face/face.h"
#include "media/media.h"

const char cmd_faces_help[] =
    "Usage: dfd faces FILE|DIR... [--json] [--save-crops DIR] [--frames N] [--mode auto|short|full]\n"
    "                 [--min-face PX] [--pad F] [--models DIR] [-r]\n\n"
    "Finds the faces in each FILE (told apart as image or video by content) with BlazeFace.\n"
    "A directory adds its image and video files (-r, --recursive: and its sub-directories').\n"
    "For an image it lists every face: box (x, y, width, height in pixels), score, the six\n"
    "keypoints (eyes, nose tip, mouth, ears) and the roll angle from the eyes. For a video it\n"
    "samples N frames evenly, finds the faces on each and links them into tracks, one per\n"
    "person, listing each track's box per frame.\n\n"
    "Options:\n"
    "  --json            one JSON document for the run: {\"results\": [{\"file\", \"media\",\n"
    "                    \"faces\": [{\"box\", \"score\", \"keypoints\", \"roll_deg\"}],\n"
    "                    \"tracks\": [{\"id\", \"frames\": [{\"index\", \"time_s\", \"box\"}]}] (videos),\n"
    "                    \"note\" (\"no face found\"), \"error\": null or a message}]}\n"
    "  --save-crops DIR  write each face as the classifier sees it (docs/preprocessing.md,\n"
    "                    224x224 PNG): FILE_face1.png, ..., or FILE_track1_frame42.png\n"
    "  --frames N        frames sampled per video (default 30)\n"
    "  --mode M          auto (default: both BlazeFace models, tiles for large images),\n"
    "                    short (MediaPipe's short range only) or full (full range only)\n"
    "  --min-face PX     smallest face side the auto mode looks for (default 40)\n"
    "  --pad F           images: add a black border of F times the width/height on each side\n"
    "                    before detecting (for tight face crops that the face fills); boxes\n"
    "                    stay in the original image's pixels\n"
    "  --models DIR      folder with blazeface-short/-full.safetensors (default: search\n"
    "                    $DFD_MODELS_DIR(/registry), ./models/registry, models/registry by the binary,\n"
    "                    the installed share/dfd/models/registry)\n\n"
    "A file without faces is not an error: its faces are empty and its note says why.\n"
    "Exit status: 0 when every file was read, 1 when one was not, 2 on a usage error.\n";

typedef struct faces_opts {
    int as_json;
    double pad;
    const char *crops_dir;
    int frames;
    dfd_crop_contract contract;
} faces_opts;

static double r2(double v) { return round(v * 100.0) / 100.0; }

static json_t *box_json(const float *b) {
    json_t *a = json_array();
    for (int k = 0; k < 4; k++) json_array_append_new(a, json_real(r2(b[k])));
    return a;
}

static json_t *face_json(const dfd_face *f) {
    json_t *o = json_object(), *kp = json_array();
    json_object_set_new(o, "box", box_json(f->box));
    json_object_set_new(o, "score", json_real(round(f->score * 10000.0) / 10000.0));
    for (int k = 0; k < DFD_FACE_KEYPOINTS; k++) {
        json_t *p = json_array();
        json_array_append_new(p, json_real(r2(f->kp[k][0])));
        json_array_append_new(p, json_real(r2(f->kp[k][1])));
        json_array_append_new(kp, p);
    }
    json_object_set_new(o, "keypoints", kp);
    json_object_set_new(o, "roll_deg", json_real(round(f->roll_deg * 10.0) / 10.0));
    return o;
}

static int save_crop(const faces_opts *o, const char *file, const dfd_image *img, const dfd_face *f, const char *suffix,
                     dfd_error *err) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_%s.png", o->crops_dir, base, suffix);
    dfd_image crop;
    int rc = dfd_face_crop(img, f, &o->contract, &crop, err);
    if (rc) return rc;
    rc = cli_write_png(path, crop.rgb, crop.w, crop.h, err);
    dfd_image_free(&crop);
    return rc;
}

/* Moves a face found in a padded image back into the original's coordinates. */
static void unpad(dfd_face *f, int px, int py) {
    f->box[0] -= (float)px;
    f->box[1] -= (float)py;
    for (int k = 0; k < DFD_FACE_KEYPOINTS; k++) {
        f->kp[k][0] -= (float)px;
        f->kp[k][1] -= (float)py;
    }
}

static int do_image(dfd_face_detector *det, const faces_opts *o, const char *path, json_t *res, dfd_error *err) {
    dfd_image img, padded = {0};
    int rc = dfd_image_load(path, NULL, &img, NULL, err);
    if (rc) return rc;
    int px = (int)lround(o->pad * img.w), py = (int)lround(o->pad * img.h);
    if (px > 0 || py > 0)
        rc = dfd_image_crop(&img, -px, -py, img.w + 2 * px, img.h + 2 * py, DFD_BORDER_FILL, NULL, &padded, err);
    dfd_face *faces = NULL;
    int n = 0;
    if (!rc) rc = dfd_face_detect(det, padded.rgb ? &padded : &img, &faces, &n, err);
    dfd_image_free(&padded);
    json_t *arr = json_object_get(res, "faces");
    for (int i = 0; !rc && i < n; i++) {
        unpad(&faces[i], px, py);
        json_array_append_new(arr, face_json(&faces[i]));
        if (o->crops_dir) {
            char suffix[32];
            snprintf(suffix, sizeof suffix, "face%d", i + 1);
            rc = save_crop(o, path, &img, &faces[i], suffix, err);
        }
    }
    json_object_set_new(res, "width", json_integer(img.w));
    json_object_set_new(res, "height", json_integer(img.h));
    free(faces);
    dfd_image_free(&img);
    return rc;
}

static int do_video(dfd_face_detector *det, const faces_opts *o, const char *path, json_t *res, dfd_error *err) {
    dfd_frame_set set;
    memset(&set, 0, sizeof set);
    int rc = dfd_video_sample(path, o->frames, NULL, 0, &set, err);
    if (rc) return rc;
    dfd_face **per = calloc((size_t)(set.count > 0 ? set.count : 1), sizeof *per);
    int *counts = calloc((size_t)(set.count > 0 ? set.count : 1), sizeof *counts);
    dfd_face_track *tracks = NULL;
    int nt = 0;
    if (!per || !counts) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
    for (int i = 0; !rc && i < set.count; i++) rc = dfd_face_detect(det, &set.frames[i].img, &per[i], &counts[i], err);
    if (!rc) rc = dfd_face_track_link((const dfd_face *const *)per, counts, set.count, NULL, &tracks, &nt, err);
    json_t *faces = json_object_get(res, "faces"), *jt = json_array();
    for (int t = 0; !rc && t < nt; t++) {
        json_t *tr = json_object(), *frames = json_array();
        int best = 0;
        for (int k = 0; k < tracks[t].n_points; k++) {
            const dfd_track_point *p = &tracks[t].points[k];
            const dfd_frame *fr = &set.frames[p->sample];
            json_t *jf = json_object();
            json_object_set_new(jf, "index", json_integer(fr->index));
            json_object_set_new(jf, "time_s", json_real(round(fr->time_s * 1000.0) / 1000.0));
            json_object_set_new(jf, "box", box_json(p->face.box));
            json_object_set_new(jf, "score", json_real(round(p->face.score * 10000.0) / 10000.0));
            json_array_append_new(frames, jf);
            if (p->face.score > tracks[t].points[best].face.score) best = k;
            if (o->crops_dir && !rc) {
                char suffix[64];
                snprintf(suffix, sizeof suffix, "track%d_frame%lld", tracks[t].id, (long long)fr->index);
                rc = save_crop(o, path, &fr->img, &p->face, suffix, err);
            }
        }
        json_object_set_new(tr, "id", json_integer(tracks[t].id));
        json_object_set_new(tr, "frames", frames);
        json_array_append_new(jt, tr);
        /* One face per person: the track's best-scored detection. */
        json_t *fj = face_json(&tracks[t].points[best].face);
        json_object_set_new(fj, "track", json_integer(tracks[t].id));
        json_object_set_new(fj, "frame_index", json_integer(set.frames[tracks[t].points[best].sample].index));
        json_array_append_new(faces, fj);
    }
    json_object_set_new(res, "tracks", jt);
    json_object_set_new(res, "frames_sampled", json_integer(set.count));
    if (set.count > 0) {
        json_object_set_new(res, "width", json_integer(set.frames[0].img.w));
        json_object_set_new(res, "height", json_integer(set.frames[0].img.h));
    }
    dfd_face_tracks_free(tracks, nt);
    for (int i = 0; per && i < set.count; i++) free(per[i]);
    free(per);
    free(counts);
    dfd_frame_set_free(&set);
    return rc;
}

static json_t *process(dfd_face_detector *det, const faces_opts *o, const char *path) {
    dfd_error err;
    dfd_error_clear(&err);
    json_t *res = json_object();
    json_object_set_new(res, "file", json_string(path));
    json_object_set_new(res, "media", json_null());
    json_object_set_new(res, "faces", json_array());
    dfd_media_kind kind;
    const char *format = NULL;
    int rc = dfd_media_sniff_file(path, &kind, &format, &err);
    if (!rc && kind == DFD_MEDIA_IMAGE) {
        json_object_set_new(res, "media", json_string("image"));
        rc = do_image(det, o, path, res, &err);
    } else if (!rc && kind == DFD_MEDIA_VIDEO) {
        json_object_set_new(res, "media", json_string("video"));
        rc = do_video(det, o, path, res, &err);
    } else if (!rc) {
        rc = dfd_media_fail_unsupported(format, &err);
    }
    if (!rc && json_array_size(json_object_get(res, "faces")) == 0)
        json_object_set_new(res, "note", json_string("no face found"));
    json_object_set_new(res, "error", rc ? json_string(err.message) : json_null());
    return res;
}

static void print_human(const json_t *r) {
    const char *file = json_string_value(json_object_get(r, "file"));
    const json_t *e = json_object_get(r, "error");
    if (json_is_string(e)) {
        fprintf(stderr, "dfd faces: %s: %s\n", file, json_string_value(e));
        return;
    }
    const char *media = json_string_value(json_object_get(r, "media"));
    const json_t *faces = json_object_get(r, "faces"), *tracks = json_object_get(r, "tracks");
    printf("%s: %s %lldx%lld", file, media, json_integer_value(json_object_get(r, "width")),
           json_integer_value(json_object_get(r, "height")));
    if (tracks) {
        printf(", %lld frames sampled, %zu track%s\n", json_integer_value(json_object_get(r, "frames_sampled")),
               json_array_size(tracks), json_array_size(tracks) == 1 ? "" : "s");
        size_t i;
        json_t *t;
        json_array_foreach(tracks, i, t) {
            const json_t *fr = json_object_get(t, "frames");
            const json_t *first = json_array_get(fr, 0), *last = json_array_get(fr, json_array_size(fr) - 1);
            const json_t *b = json_object_get(first, "box");
            printf("  track %lld: %zu frames, %.2f s to %.2f s, first box %.0f,%.0f %.0fx%.0f\n",
                   json_integer_value(json_object_get(t, "id")), json_array_size(fr),
                   json_real_value(json_object_get(first, "time_s")), json_real_value(json_object_get(last, "time_s")),
                   json_real_value(json_array_get(b, 0)), json_real_value(json_array_get(b, 1)),
                   json_real_value(json_array_get(b, 2)), json_real_value(json_array_get(b, 3)));
        }
    } else {
        printf(", %zu face%s\n", json_array_size(faces), json_array_size(faces) == 1 ? "" : "s");
        size_t i;
        json_t *f;
        json_array_foreach(faces, i, f) {
            const json_t *b = json_object_get(f, "box");
            printf("  face %zu: box %.0f,%.0f %.0fx%.0f  score %.3f  roll %.1f deg\n", i + 1, json_real_value(json_array_get(b, 0)),
                   json_real_value(json_array_get(b, 1)), json_real_value(json_array_get(b, 2)),
                   json_real_value(json_array_get(b, 3)), json_real_value(json_object_get(f, "score")),
                   json_real_value(json_object_get(f, "roll_deg")));
        }
    }
    const json_t *note = json_object_get(r, "note");
    if (json_is_string(note)) printf("  (%s)\n", json_string_value(note));
}

int cmd_faces(int argc, char **argv) {
    faces_opts o;
    memset(&o, 0, sizeof o);
    o.frames = 30;
    dfd_crop_contract_default(&o.contract, 224);
    dfd_face_opts fo;
    dfd_face_opts_default(&fo);
    int nfiles = 0, opts_done = 0, recursive = 0;
    char **files = calloc((size_t)argc, sizeof *files);
    if (!files) return DFD_EXIT_FAILED;
    int rc = DFD_EXIT_OK;
    for (int i = 1; i < argc && rc == DFD_EXIT_OK; i++) {
        const char *a = argv[i];
        long v;
        if (opts_done || a[0] != '-' || !a[1]) {
            files[nfiles++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            opts_done = 1;
        } else if (strcmp(a, "--json") == 0) {
            o.as_json = 1;
        } else if (strcmp(a, "-r") == 0 || strcmp(a, "--recursive") == 0) {
            recursive = 1;
        } else if (strcmp(a, "--save-crops") == 0 || strcmp(a, "--frames") == 0 || strcmp(a, "--mode") == 0 ||
                   strcmp(a, "--min-face") == 0 || strcmp(a, "--models") == 0 || strcmp(a, "--pad") == 0) {
            if (i + 1 >= argc) {
                rc = cli_usage_error("faces", "%s needs a value", a);
                break;
            }
            const char *val = argv[++i];
            if (strcmp(a, "--save-crops") == 0) o.crops_dir = val;
            else if (strcmp(a, "--models") == 0) fo.models_dir = val;
            else if (strcmp(a, "--pad") == 0) {
                if (cli_parse_double(val, 0.0, 4.0, &o.pad)) rc = cli_usage_error("faces", "--pad must be 0..4");
            }
            else if (strcmp(a, "--frames") == 0) {
                if (cli_parse_int(val, 1, 1000, &v)) rc = cli_usage_error("faces", "--frames must be 1..1000");
                else o.frames = (int)v;
            } else if (strcmp(a, "--min-face") == 0) {
                if (cli_parse_int(val, 8, 100000, &v)) rc = cli_usage_error("faces", "--min-face must be 8..100000");
                else fo.min_face = (int)v;
            } else if (strcmp(val, "auto") == 0) fo.mode = DFD_FACE_AUTO;
            else if (strcmp(val, "short") == 0) fo.mode = DFD_FACE_SHORT;
            else if (strcmp(val, "full") == 0) fo.mode = DFD_FACE_FULL;
            else rc = cli_usage_error("faces", "--mode must be auto, short or full");
        } else {
            rc = cli_usage_error("faces", "unknown option '%s'", a);
        }
    }
    if (rc == DFD_EXIT_OK && nfiles == 0) rc = cli_usage_error("faces", "no FILE given");
    if (rc != DFD_EXIT_OK) {
        free(files);
        return rc;
    }
    if (o.crops_dir && mkdir(o.crops_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "dfd faces: cannot create '%s': %s\n", o.crops_dir, strerror(errno));
        free(files);
        return DFD_EXIT_FAILED;
    }
    dfd_error err;
    dfd_face_detector *det = NULL;
    if (dfd_face_detector_create(&fo, &det, &err)) {
        fprintf(stderr, "dfd faces: %s\n", err.message);
        free(files);
        return DFD_EXIT_FAILED;
    }
    cli_file_list fl = {0};
    if (cli_files_add(&fl, files, nfiles, recursive)) {
        fprintf(stderr, "dfd faces: out of memory\n");
        dfd_face_detector_free(det);
        free(files);
        return DFD_EXIT_FAILED;
    }
    if (fl.n == 0) {
        fprintf(stderr, "dfd faces: no image or video files found\n");
        rc = DFD_EXIT_FAILED;
    }
    json_t *doc = json_object(), *results = json_array();
    json_object_set_new(doc, "results", results);
    for (int i = 0; i < fl.n; i++) {
        json_t *r = process(det, &o, fl.paths[i]);
        if (json_is_string(json_object_get(r, "error"))) rc = DFD_EXIT_FAILED;
        if (!o.as_json) print_human(r);
        json_array_append_new(results, r);
    }
    if (o.as_json) {
        char *s = json_dumps(doc, JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (s) puts(s);
        free(s);
    }
    json_decref(doc);
    cli_files_free(&fl);
    dfd_face_detector_free(det);
    free(files);
    return rc;
}
