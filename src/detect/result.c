/* result.c — the analysis result object and its dfd.result/1 JSON (docs/result-schema.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "detect/detect.h"

dfd_result *dfd_result_new(const char *file, dfd_media_kind media) {
    dfd_result *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->file = strdup(file ? file : "");
    if (!r->file) {
        free(r);
        return NULL;
    }
    r->media = media;
    r->verdict = DFD_VERDICT_NO_FACE;
    r->p_fake = NAN;
    r->threshold = NAN;
    r->p_manipulated = r->threshold_manipulated = NAN;
    r->p_synthetic = r->threshold_synthetic = NAN;
    return r;
}

const char *dfd_fake_kind_name(dfd_fake_kind k) {
    switch (k) {
    case DFD_KIND_MANIPULATED: return "manipulated";
    case DFD_KIND_SYNTHETIC: return "synthetic";
    case DFD_KIND_BOTH: return "both";
    default: return NULL;
    }
}

int dfd_result_set_error(dfd_result *r, int code, const char *message) {
    r->status = code != DFD_OK ? code : DFD_E_INTERNAL;
    free(r->error);
    r->error = strdup(message && *message ? message : "unknown error");
    r->verdict = DFD_VERDICT_ERROR;
    r->p_fake = r->p_manipulated = r->p_synthetic = NAN;
    r->kind = DFD_KIND_NONE;
    return r->error ? DFD_OK : DFD_E_NOMEM;
}

void dfd_result_decide(dfd_result *r) {
    r->kind = DFD_KIND_NONE;
    if (r->error) {
        r->verdict = DFD_VERDICT_ERROR;
        return;
    }
    dfd_combine(r->p_manipulated, r->threshold_manipulated, r->p_synthetic, r->threshold_synthetic, &r->p_fake,
                &r->threshold, &r->kind);
    if (isnan(r->p_fake)) {
        r->verdict = DFD_VERDICT_NO_FACE;
        return;
    }
    r->verdict = r->p_fake >= r->threshold ? DFD_VERDICT_FAKE : DFD_VERDICT_REAL;
}

void dfd_result_free(dfd_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n_faces; i++) {
        free(r->faces[i].frames);
        free(r->faces[i].heat_m);
        free(r->faces[i].heat_s);
        dfd_image_free(&r->faces[i].heat_crop);
    }
    for (int i = 0; i < r->n_frames; i++) free(r->frames[i].faces);
    free(r->faces);
    free(r->frames);
    free(r->file);
    free(r->error);
    free(r->model_image);
    free(r->model_video);
    free(r->model_synthetic);
    free(r);
}

dfd_verdict dfd_result_verdict(const dfd_result *r) { return r ? (dfd_verdict)r->verdict : DFD_VERDICT_ERROR; }
double dfd_result_p_fake(const dfd_result *r) { return r ? r->p_fake : NAN; }
const char *dfd_result_error(const dfd_result *r) { return r ? r->error : NULL; }

_Static_assert(DFD_HEAT_GRID == DFD_HEATMAP_GRID, "the public and internal heat grids differ");

int dfd_result_face_count(const dfd_result *r) { return r ? r->n_faces : 0; }

int dfd_result_face_heatmap(const dfd_result *r, int face, dfd_heatmap *out) {
    if (!r || !out || face < 0 || face >= r->n_faces || !r->faces[face].heat_m) return DFD_E_NOT_FOUND;
    const dfd_face_res *f = &r->faces[face];
    memset(out, 0, sizeof *out);
    out->grid = DFD_HEAT_GRID;
    out->method = dfd_explain_method_name(f->heat_method);
    out->method_synthetic = f->heat_s ? dfd_explain_method_name(f->heat_method_s) : NULL;
    out->manipulated = f->heat_m;
    out->synthetic = f->heat_s;
    out->crop_rgb = f->heat_crop.rgb;
    out->crop_side = f->heat_crop.w;
    memcpy(out->square, f->heat_square, sizeof out->square);
    out->frame = f->heat_frame;
    out->time_s = f->heat_time_s;
    return DFD_OK;
}

int dfd_result_status(const dfd_result *r) { return r ? r->status : DFD_E_ARG; }
double dfd_result_p_manipulated(const dfd_result *r) { return r ? r->p_manipulated : NAN; }
double dfd_result_p_synthetic(const dfd_result *r) { return r ? r->p_synthetic : NAN; }
dfd_fake_kind dfd_result_kind(const dfd_result *r) { return r ? (dfd_fake_kind)r->kind : DFD_KIND_NONE; }
const char *dfd_result_file(const dfd_result *r) { return r ? r->file : NULL; }
dfd_media_kind dfd_result_media(const dfd_result *r) { return r ? r->media : DFD_MEDIA_UNKNOWN; }
double dfd_result_threshold(const dfd_result *r) { return r ? r->threshold : NAN; }
const char *dfd_result_model_image(const dfd_result *r) { return r ? r->model_image : NULL; }
const char *dfd_result_model_video(const dfd_result *r) { return r ? r->model_video : NULL; }
const char *dfd_result_model_synthetic(const dfd_result *r) { return r ? r->model_synthetic : NULL; }
int dfd_result_frame_count(const dfd_result *r) { return r ? r->n_frames : 0; }
int dfd_result_frames_skipped(const dfd_result *r) { return r ? r->frames_skipped : 0; }

int dfd_result_face(const dfd_result *r, int i, dfd_face_info *out) {
    if (!r || !out || i < 0 || i >= r->n_faces) return DFD_E_NOT_FOUND;
    const dfd_face_res *f = &r->faces[i];
    memset(out, 0, sizeof *out);
    out->id = f->id;
    memcpy(out->box, f->box, sizeof out->box);
    out->p_fake = f->p_fake;
    out->p_manipulated = f->p_manipulated;
    out->p_synthetic = f->p_synthetic;
    out->p_video_model = f->p_fake_video_model;
    out->kind = (dfd_fake_kind)f->kind;
    out->n_frames = f->n_frames;
    return DFD_OK;
}

int dfd_result_face_frame(const dfd_result *r, int face, int k) {
    if (!r || face < 0 || face >= r->n_faces || k < 0 || k >= r->faces[face].n_frames) return -1;
    /* faces[].frames holds frame indices in the video; the caller wants the position in
     * frames[] (dfd_result_frame), found by index. */
    int want = r->faces[face].frames[k];
    for (int i = 0; i < r->n_frames; i++)
        if (r->frames[i].index == want) return i;
    return -1;
}

int dfd_result_frame(const dfd_result *r, int i, dfd_frame_info *out) {
    if (!r || !out || i < 0 || i >= r->n_frames) return DFD_E_NOT_FOUND;
    out->index = r->frames[i].index;
    out->time_s = r->frames[i].time_s;
    out->n_faces = r->frames[i].n_faces;
    return DFD_OK;
}

int dfd_result_frame_face(const dfd_result *r, int frame, int k, dfd_frame_face *out) {
    if (!r || !out || frame < 0 || frame >= r->n_frames || k < 0 || k >= r->frames[frame].n_faces) return DFD_E_NOT_FOUND;
    const dfd_face_obs *o = &r->frames[frame].faces[k];
    memset(out, 0, sizeof *out);
    out->track = o->track;
    memcpy(out->box, o->box, sizeof out->box);
    out->p_fake = o->p_fake;
    out->p_manipulated = o->p_manipulated;
    out->p_synthetic = o->p_synthetic;
    out->kind = (dfd_fake_kind)o->kind;
    return DFD_OK;
}

/* Numbers that may be absent are JSON null; scores are rounded to 6 decimals so the
 * output is stable and readable. */
static json_t *num_or_null(double v) {
    if (!isfinite(v)) return json_null();
    return json_real(round(v * 1e6) / 1e6);
}

/* A JSON string of s, which may come from a file name in any encoding: jansson takes
 * only valid UTF-8 (json_string gives NULL otherwise, and the field would silently go
 * missing), so bytes that are not UTF-8 become U+FFFD (docs/result-schema.md). */
static json_t *text(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    char *fixed = dfd_utf8_repair(s);
    j = fixed ? json_string(fixed) : NULL;
    free(fixed);
    return j;
}

static json_t *str_or_null(const char *s) { return s ? text(s) : json_null(); }

static json_t *box_json(const float b[4]) {
    json_t *a = json_array();
    for (int i = 0; i < 4; i++) json_array_append_new(a, json_real(round((double)b[i] * 10) / 10));
    return a;
}

static json_t *kind_json(int kind) { return str_or_null(dfd_fake_kind_name((dfd_fake_kind)kind)); }

/* The two detectors' scores and the kind of fake, beside a p_fake (faces and frames). */
static void set_detectors(json_t *o, double p_m, double p_s, int kind) {
    json_object_set_new(o, "p_manipulated", num_or_null(p_m));
    json_object_set_new(o, "p_synthetic", num_or_null(p_s));
    json_object_set_new(o, "kind", kind_json(kind));
}

/* A heat map as grid rows of values rounded to 3 decimals. */
static json_t *grid_json(const float *v) {
    json_t *rows = json_array();
    for (int y = 0; y < DFD_HEAT_GRID; y++) {
        json_t *row = json_array();
        for (int x = 0; x < DFD_HEAT_GRID; x++)
            json_array_append_new(row, json_real(round((double)v[y * DFD_HEAT_GRID + x] * 1e3) / 1e3));
        json_array_append_new(rows, row);
    }
    return rows;
}

/* faces[].heatmap (docs/result-schema.md), or null when the face has none. */
static json_t *heatmap_json(const dfd_face_res *f, int video) {
    if (!f->heat_m) return json_null();
    json_t *h = json_object();
    json_object_set_new(h, "grid", json_integer(DFD_HEAT_GRID));
    json_object_set_new(h, "method", json_string(dfd_explain_method_name(f->heat_method)));
    json_t *sq = json_array();
    for (int k = 0; k < 3; k++) json_array_append_new(sq, json_real(round((double)f->heat_square[k] * 10) / 10));
    json_array_append(sq, json_array_get(sq, 2)); /* [x, y, side, side]: a box like the others */
    json_object_set_new(h, "crop", sq);
    json_object_set_new(h, "frame", video ? json_integer(f->heat_frame) : json_null());
    json_object_set_new(h, "time_s", video ? json_real(round(f->heat_time_s * 1e3) / 1e3) : json_null());
    json_object_set_new(h, "manipulated", grid_json(f->heat_m));
    json_object_set_new(h, "synthetic", f->heat_s ? grid_json(f->heat_s) : json_null());
    json_object_set_new(h, "method_synthetic", f->heat_s ? json_string(dfd_explain_method_name(f->heat_method_s)) : json_null());
    return h;
}

static const char *media_name(dfd_media_kind m) {
    return m == DFD_MEDIA_IMAGE ? "image" : m == DFD_MEDIA_VIDEO ? "video" : NULL;
}

void *dfd_result_to_json(const dfd_result *r) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "file", text(r->file));
    json_object_set_new(o, "media", str_or_null(media_name(r->media)));
    json_object_set_new(o, "verdict", json_string(dfd_verdict_name((dfd_verdict)r->verdict)));
    json_object_set_new(o, "p_fake", num_or_null(r->p_fake));
    json_object_set_new(o, "threshold", num_or_null(r->threshold));
    json_object_set_new(o, "kind", kind_json(r->verdict == DFD_VERDICT_FAKE ? r->kind : DFD_KIND_NONE));
    json_object_set_new(o, "p_manipulated", num_or_null(r->p_manipulated));
    json_object_set_new(o, "threshold_manipulated", num_or_null(r->threshold_manipulated));
    json_object_set_new(o, "p_synthetic", num_or_null(r->p_synthetic));
    json_object_set_new(o, "threshold_synthetic", num_or_null(r->threshold_synthetic));
    json_object_set_new(o, "error", str_or_null(r->error));
    json_t *model = json_object();
    json_object_set_new(model, "image", str_or_null(r->model_image));
    json_object_set_new(model, "video", str_or_null(r->model_video));
    json_object_set_new(model, "synthetic", str_or_null(r->model_synthetic));
    json_object_set_new(o, "model", model);

    json_t *faces = json_array();
    for (int i = 0; i < r->n_faces; i++) {
        const dfd_face_res *f = &r->faces[i];
        json_t *fo = json_object();
        json_object_set_new(fo, "id", json_integer(f->id));
        json_object_set_new(fo, "box", box_json(f->box));
        json_object_set_new(fo, "p_fake", num_or_null(f->p_fake));
        set_detectors(fo, f->p_manipulated, f->p_synthetic, f->kind);
        json_object_set_new(fo, "p_fake_video_model", num_or_null(f->p_fake_video_model));
        json_t *fr = json_array();
        for (int k = 0; k < f->n_frames; k++) json_array_append_new(fr, json_integer(f->frames[k]));
        json_object_set_new(fo, "frames", r->media == DFD_MEDIA_VIDEO ? fr : (json_decref(fr), json_null()));
        json_object_set_new(fo, "heatmap", heatmap_json(f, r->media == DFD_MEDIA_VIDEO));
        json_array_append_new(faces, fo);
    }
    json_object_set_new(o, "faces", faces);

    if (r->media == DFD_MEDIA_VIDEO) {
        json_t *frames = json_array();
        for (int i = 0; i < r->n_frames; i++) {
            const dfd_frame_res *fr = &r->frames[i];
            json_t *fo = json_object();
            json_object_set_new(fo, "index", json_integer(fr->index));
            json_object_set_new(fo, "time_s", json_real(round(fr->time_s * 1e3) / 1e3));
            json_t *fa = json_array();
            for (int k = 0; k < fr->n_faces; k++) {
                json_t *x = json_object();
                json_object_set_new(x, "id", json_integer(fr->faces[k].track));
                json_object_set_new(x, "box", box_json(fr->faces[k].box));
                json_object_set_new(x, "p_fake", num_or_null(fr->faces[k].p_fake));
                set_detectors(x, fr->faces[k].p_manipulated, fr->faces[k].p_synthetic, fr->faces[k].kind);
                json_array_append_new(fa, x);
            }
            json_object_set_new(fo, "faces", fa);
            json_array_append_new(frames, fo);
        }
        json_object_set_new(o, "frames", frames);
        json_object_set_new(o, "frames_skipped", json_integer(r->frames_skipped));
    } else {
        json_object_set_new(o, "frames", json_null());
        json_object_set_new(o, "frames_skipped", json_null());
    }
    json_t *t = json_object();
    json_object_set_new(t, "decode", json_real(round(r->t_decode_ms * 10) / 10));
    json_object_set_new(t, "faces", json_real(round(r->t_faces_ms * 10) / 10));
    json_object_set_new(t, "classify", json_real(round(r->t_classify_ms * 10) / 10));
    json_object_set_new(t, "total", json_real(round(r->t_total_ms * 10) / 10));
    json_object_set_new(o, "timing_ms", t);
    return o;
}

char *dfd_result_json(const dfd_result *r) {
    json_t *o = dfd_result_to_json(r);
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(o);
    return s;
}

char *dfd_results_json(const dfd_result *const *results, int n, int pretty) {
    return dfd_results_document(results, n, pretty);
}

char *dfd_results_document(const dfd_result *const *results, int n, int pretty) {
    json_t *doc = json_object();
    json_t *arr = json_array();
    if (!doc || !arr) {
        json_decref(doc);
        json_decref(arr);
        return NULL;
    }
    json_object_set_new(doc, "schema", json_string(DFD_RESULT_SCHEMA));
    for (int i = 0; i < n; i++) {
        json_t *o = dfd_result_to_json(results[i]);
        if (o) json_array_append_new(arr, o);
    }
    json_object_set_new(doc, "results", arr);
    size_t flags = JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10) | (pretty ? JSON_INDENT(2) : JSON_COMPACT);
    char *s = json_dumps(doc, flags);
    json_decref(doc);
    return s;
}
