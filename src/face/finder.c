/* finder.c — `dfd faces` as a library call (dfd_faces_file, dfd.h): the faces of an image,
 * or the face tracks of a video found as the analysis finds them (dfd_face_detect_sample,
 * track.c), as JSON, with the crops the classifier would see written as PNGs on request. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "face/face.h"
#include "media/media.h"

struct dfd_face_finder {
    dfd_faces_options o;
    char *models_dir, *crops_dir; /* copies of the options' strings */
    dfd_crop_contract contract;
    int min_face;
    dfd_face_detector *det;
};

void dfd_faces_options_default(dfd_faces_options *o) {
    memset(o, 0, sizeof *o);
    dfd_face_opts fo;
    dfd_face_opts_default(&fo);
    o->mode = DFD_FACES_AUTO;
    o->min_face = fo.min_face;
    o->frames = 30;
    o->crop_size = 224;
}

void dfd_face_finder_destroy(dfd_face_finder *f) {
    if (!f) return;
    dfd_face_detector_free(f->det);
    free(f->models_dir);
    free(f->crops_dir);
    free(f);
}

int dfd_face_finder_create(const dfd_faces_options *o, dfd_face_finder **out, dfd_error *err) {
    if (!out) return dfd_fail(err, DFD_E_ARG, "dfd_face_finder_create: no out");
    *out = NULL;
    dfd_faces_options def;
    if (!o) dfd_faces_options_default(&def), o = &def;
    if (o->mode < DFD_FACES_AUTO || o->mode > DFD_FACES_FULL) return dfd_fail(err, DFD_E_ARG, "unknown face mode %d", (int)o->mode);
    if (o->frames < 1 || o->frames > 100000) return dfd_fail(err, DFD_E_ARG, "frames must be 1..100000, not %d", o->frames);
    if (!(o->pad >= 0 && o->pad <= 4)) return dfd_fail(err, DFD_E_ARG, "pad must be 0..4");
    if (o->crop_size < 16 || o->crop_size > 4096) return dfd_fail(err, DFD_E_ARG, "crop size must be 16..4096, not %d", o->crop_size);
    dfd_face_finder *f = calloc(1, sizeof *f);
    if (!f) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    f->o = *o;
    if ((o->models_dir && !(f->models_dir = strdup(o->models_dir))) || (o->crops_dir && !(f->crops_dir = strdup(o->crops_dir)))) {
        dfd_face_finder_destroy(f);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    f->o.models_dir = f->models_dir;
    f->o.crops_dir = f->crops_dir;
    dfd_crop_contract_default(&f->contract, o->crop_size);
    if (f->crops_dir && mkdir(f->crops_dir, 0777) != 0 && errno != EEXIST) {
        int e = errno;
        dfd_face_finder_destroy(f);
        return dfd_fail(err, DFD_E_IO, "cannot create '%s': %s", o->crops_dir, strerror(e));
    }
    dfd_face_opts fo;
    dfd_face_opts_default(&fo);
    fo.models_dir = f->models_dir;
    fo.mode = (dfd_face_mode)o->mode;
    if (o->min_face > 0) fo.min_face = o->min_face;
    f->min_face = fo.min_face;
    int rc = dfd_face_detector_create(&fo, &f->det, err);
    if (rc) {
        dfd_face_finder_destroy(f);
        return rc;
    }
    *out = f;
    return DFD_OK;
}

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

static int save_crop(const struct dfd_face_finder *o, const char *file, const dfd_image *img, const dfd_face *f, const char *suffix,
                     dfd_error *err) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char path[DFD_PATH_MAX], name[512];
    snprintf(name, sizeof name, "%.400s_%s.png", base, suffix);
    int rc = dfd_path_join(path, sizeof path, o->o.crops_dir, name, err);
    if (rc) return rc;
    dfd_image crop;
    rc = dfd_face_crop(img, f, &o->contract, &crop, err);
    if (rc) return rc;
    rc = dfd_png_write(path, crop.rgb, crop.w, crop.h, err);
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

static int do_image(dfd_face_detector *det, const struct dfd_face_finder *o, const char *path, json_t *res, dfd_error *err) {
    dfd_image img, padded = {0};
    int rc = dfd_image_load(path, NULL, &img, NULL, err);
    if (rc) return rc;
    int px = (int)lround(o->o.pad * img.w), py = (int)lround(o->o.pad * img.h);
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
        if (o->o.crops_dir) {
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

static int do_video(dfd_face_detector *det, const struct dfd_face_finder *o, const char *path, json_t *res, dfd_error *err) {
    dfd_frame_set set;
    memset(&set, 0, sizeof set);
    int rc = dfd_video_sample(path, o->o.frames, NULL, 0, &set, err);
    if (rc) return rc;
    dfd_face **per = calloc((size_t)(set.count > 0 ? set.count : 1), sizeof *per);
    int *counts = calloc((size_t)(set.count > 0 ? set.count : 1), sizeof *counts);
    dfd_face_track *tracks = NULL;
    int nt = 0;
    if (!per || !counts) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
    /* The search and the tracking of every video analysis (track.c), so that the tracks
     * shown are the ones `dfd scan` scores. */
    int since_full = 0;
    for (int i = 0; !rc && i < set.count; i++)
        rc = dfd_face_detect_sample(det, &set.frames[i].img, i, per, counts, &since_full, o->min_face, err);
    dfd_track_opts to;
    dfd_track_opts_default(&to);
    if (!rc) rc = dfd_face_track_link((const dfd_face *const *)per, counts, set.count, &to, &tracks, &nt, err);
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
            if (o->o.crops_dir && !rc) {
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

static json_t *process(dfd_face_detector *det, const struct dfd_face_finder *o, const char *path, dfd_error *errp) {
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
    if (errp) *errp = err;
    return res;
}


int dfd_faces_file(dfd_face_finder *f, const char *path, char **json, dfd_error *err) {
    if (!json) return dfd_fail(err, DFD_E_ARG, "dfd_faces_file: nowhere to put the JSON");
    *json = NULL;
    if (!f || !path) return dfd_fail(err, DFD_E_ARG, "dfd_faces_file: no finder or no path");
    dfd_error e;
    dfd_error_clear(&e);
    json_t *res = process(f->det, f, path, &e);
    if (!res) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    *json = json_dumps(res, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(res);
    if (!*json) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if (e.code && err) *err = e;
    return e.code;
}
