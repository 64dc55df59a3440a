/*
 * ssd.c — BlazeFace's post-processing as MediaPipe does it: SSD anchors
 * (SsdAnchorsCalculator), decoding of boxes, keypoints and scores
 * (TensorsToDetectionsCalculator) and WEIGHTED non-maximum suppression
 * (NonMaxSuppressionCalculator), with the options of MediaPipe's
 * face_detection_short_range and face_detection_full_range graphs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "face/face.h"

void dfd_face_anchor_opts(dfd_blazeface_kind kind, dfd_ssd_anchor_opts *o) {
    memset(o, 0, sizeof *o);
    o->min_scale = 0.1484375f;
    o->max_scale = 0.75f;
    o->anchor_offset_x = 0.5f;
    o->anchor_offset_y = 0.5f;
    o->n_aspect_ratios = 1;
    o->aspect_ratios[0] = 1.0f;
    o->fixed_anchor_size = 1;
    if (kind == DFD_BLAZEFACE_FULL) {
        /* 1 layer at stride 4 on 192 px: a 48x48 grid, one anchor per cell (the
         * interpolated extra anchor is switched off with ratio 0). */
        o->num_layers = 1;
        o->input_h = o->input_w = 192;
        o->strides[0] = 4;
        o->interpolated_scale_aspect_ratio = 0.0f;
    } else {
        /* 4 layers, strides 8, 16, 16, 16 on 128 px: 16x16x2 + 8x8x6 = 896 anchors. */
        o->num_layers = 4;
        o->input_h = o->input_w = 128;
        o->strides[0] = 8;
        o->strides[1] = o->strides[2] = o->strides[3] = 16;
        o->interpolated_scale_aspect_ratio = 1.0f;
    }
}

void dfd_face_decode_opts(dfd_blazeface_kind kind, dfd_ssd_decode_opts *o) {
    memset(o, 0, sizeof *o);
    int full = kind == DFD_BLAZEFACE_FULL;
    o->num_boxes = full ? 2304 : 896;
    o->num_coords = 16;
    o->num_keypoints = 6;
    o->x_scale = o->y_scale = o->w_scale = o->h_scale = full ? 192.0f : 128.0f;
    o->score_clipping_thresh = 100.0f;
    o->min_score_thresh = 0.5f;
}

static float calc_scale(float min_scale, float max_scale, int idx, int n) {
    if (n == 1) return (min_scale + max_scale) * 0.5f;
    return min_scale + (max_scale - min_scale) * (float)idx / (float)(n - 1);
}

int dfd_ssd_anchors(const dfd_ssd_anchor_opts *o, float **anchors, int *n, dfd_error *err) {
    *anchors = NULL;
    *n = 0;
    if (o->num_layers < 1 || o->num_layers > 8 || o->input_h < 1 || o->input_w < 1 || o->n_aspect_ratios < 1 ||
        o->n_aspect_ratios > 4)
        return dfd_fail(err, DFD_E_ARG, "SSD anchor options out of range");
    /* Count first: per layer group (consecutive layers with the same stride) the number
     * of anchors per cell, times the cells. */
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        float *out = pass ? *anchors : NULL;
        size_t k = 0;
        int layer = 0;
        while (layer < o->num_layers) {
            float ah[32], aw[32];
            int na = 0;
            int last = layer;
            while (last < o->num_layers && o->strides[last] == o->strides[layer]) {
                float scale = calc_scale(o->min_scale, o->max_scale, last, o->num_layers);
                if (last == 0 && o->reduce_boxes_in_lowest_layer) {
                    static const float ar[3] = {1.0f, 2.0f, 0.5f};
                    static const float sc[3] = {0.1f, 0.0f, 0.0f};
                    for (int i = 0; i < 3 && na < 32; i++, na++) {
                        float s = i == 0 ? sc[0] : scale;
                        ah[na] = s / sqrtf(ar[i]);
                        aw[na] = s * sqrtf(ar[i]);
                    }
                } else {
                    for (int i = 0; i < o->n_aspect_ratios && na < 32; i++, na++) {
                        ah[na] = scale / sqrtf(o->aspect_ratios[i]);
                        aw[na] = scale * sqrtf(o->aspect_ratios[i]);
                    }
                    if (o->interpolated_scale_aspect_ratio > 0.0f && na < 32) {
                        float next = last == o->num_layers - 1
                                         ? 1.0f
                                         : calc_scale(o->min_scale, o->max_scale, last + 1, o->num_layers);
                        float s = sqrtf(scale * next), r = sqrtf(o->interpolated_scale_aspect_ratio);
                        ah[na] = s / r;
                        aw[na] = s * r;
                        na++;
                    }
                }
                last++;
            }
            int stride = o->strides[layer];
            if (stride < 1) return dfd_fail(err, DFD_E_ARG, "SSD anchor stride %d", stride);
            int fh = (o->input_h + stride - 1) / stride, fw = (o->input_w + stride - 1) / stride;
            for (int y = 0; y < fh; y++)
                for (int x = 0; x < fw; x++)
                    for (int a = 0; a < na; a++, k++) {
                        if (!out) continue;
                        float *r = out + 4 * k;
                        r[0] = ((float)x + o->anchor_offset_x) / (float)fw;
                        r[1] = ((float)y + o->anchor_offset_y) / (float)fh;
                        r[2] = o->fixed_anchor_size ? 1.0f : aw[a];
                        r[3] = o->fixed_anchor_size ? 1.0f : ah[a];
                    }
            layer = last;
        }
        if (!pass) {
            total = k;
            *anchors = dfd_malloc_array(total, 4 * sizeof(float));
            if (!*anchors) return dfd_fail(err, DFD_E_NOMEM, "out of memory for %zu anchors", total);
        }
    }
    *n = (int)total;
    return DFD_OK;
}

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Orders detections best score first (index order among equal scores, for determinism). */
typedef struct scored {
    float score;
    int index;
} scored;

static int by_score_desc(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

int dfd_ssd_decode(const dfd_ssd_decode_opts *o, const float *anchors, const float *reg, const float *cls,
                   dfd_face *out, int max_out) {
    if (max_out <= 0) return 0;
    scored *keep = dfd_malloc_array((size_t)o->num_boxes, sizeof *keep);
    if (!keep) return 0;
    int nk = 0;
    for (int i = 0; i < o->num_boxes; i++) {
        float s = cls[i];
        if (o->score_clipping_thresh > 0.0f) {
            if (s < -o->score_clipping_thresh) s = -o->score_clipping_thresh;
            if (s > o->score_clipping_thresh) s = o->score_clipping_thresh;
        }
        s = sigmoid(s);
        if (!(s >= o->min_score_thresh)) continue; /* NaN scores are dropped too */
        keep[nk].score = s;
        keep[nk].index = i;
        nk++;
    }
    if (nk > max_out) qsort(keep, (size_t)nk, sizeof *keep, by_score_desc);
    int n = 0;
    for (int j = 0; j < nk && n < max_out; j++) {
        int i = keep[j].index;
        const float *r = reg + (size_t)i * o->num_coords, *a = anchors + 4 * (size_t)i;
        /* reverse_output_order: the model emits x, y, w, h. */
        float xc = r[0] / o->x_scale * a[2] + a[0];
        float yc = r[1] / o->y_scale * a[3] + a[1];
        float w = r[2] / o->w_scale * a[2];
        float h = r[3] / o->h_scale * a[3];
        if (!(w > 0.0f && h > 0.0f)) continue; /* degenerate boxes carry no face */
        dfd_face *f = &out[n++];
        memset(f, 0, sizeof *f);
        f->box[0] = xc - w * 0.5f;
        f->box[1] = yc - h * 0.5f;
        f->box[2] = w;
        f->box[3] = h;
        f->score = keep[j].score;
        for (int k = 0; k < o->num_keypoints && k < DFD_FACE_KEYPOINTS; k++) {
            f->kp[k][0] = r[4 + 2 * k] / o->x_scale * a[2] + a[0];
            f->kp[k][1] = r[4 + 2 * k + 1] / o->y_scale * a[3] + a[1];
        }
        f->roll_deg = dfd_face_roll(f);
    }
    free(keep);
    return n;
}

float dfd_box_iou(const float a[4], const float b[4]) {
    float x0 = fmaxf(a[0], b[0]), y0 = fmaxf(a[1], b[1]);
    float x1 = fminf(a[0] + a[2], b[0] + b[2]), y1 = fminf(a[1] + a[3], b[1] + b[3]);
    if (!(x1 > x0 && y1 > y0)) return 0.0f;
    float inter = (x1 - x0) * (y1 - y0);
    float uni = a[2] * a[3] + b[2] * b[3] - inter;
    return uni > 0.0f ? inter / uni : 0.0f;
}

int dfd_weighted_nms(dfd_face *dets, int n, float iou_thresh) {
    if (n <= 0) return 0;
    scored *order = dfd_malloc_array((size_t)n, sizeof *order);
    dfd_face *src = dfd_malloc_array((size_t)n, sizeof *src);
    if (!order || !src) {
        /* Without memory, fall back to keeping the input unmerged (still valid detections). */
        free(order);
        free(src);
        return n;
    }
    memcpy(src, dets, (size_t)n * sizeof *src);
    for (int i = 0; i < n; i++) {
        order[i].score = src[i].score;
        order[i].index = i;
    }
    qsort(order, (size_t)n, sizeof *order, by_score_desc);
    int remaining = n, kept = 0;
    while (remaining > 0) {
        const dfd_face *top = &src[order[0].index];
        double tw = 0, bx0 = 0, by0 = 0, bx1 = 0, by1 = 0, kp[DFD_FACE_KEYPOINTS][2];
        memset(kp, 0, sizeof kp);
        int rest = 0;
        for (int j = 0; j < remaining; j++) {
            const dfd_face *f = &src[order[j].index];
            if (j == 0 || dfd_box_iou(f->box, top->box) > iou_thresh) {
                double w = f->score;
                tw += w;
                bx0 += w * f->box[0];
                by0 += w * f->box[1];
                bx1 += w * (f->box[0] + f->box[2]);
                by1 += w * (f->box[1] + f->box[3]);
                for (int k = 0; k < DFD_FACE_KEYPOINTS; k++) {
                    kp[k][0] += w * f->kp[k][0];
                    kp[k][1] += w * f->kp[k][1];
                }
            } else {
                order[rest++] = order[j];
            }
        }
        dfd_face m = *top;
        if (tw > 0) {
            m.box[0] = (float)(bx0 / tw);
            m.box[1] = (float)(by0 / tw);
            m.box[2] = (float)(bx1 / tw) - m.box[0];
            m.box[3] = (float)(by1 / tw) - m.box[1];
            for (int k = 0; k < DFD_FACE_KEYPOINTS; k++) {
                m.kp[k][0] = (float)(kp[k][0] / tw);
                m.kp[k][1] = (float)(kp[k][1] / tw);
            }
        }
        m.roll_deg = dfd_face_roll(&m);
        dets[kept++] = m;
        remaining = rest;
    }
    free(order);
    free(src);
    return kept;
}

float dfd_face_roll(const dfd_face *f) {
    float dx = f->kp[DFD_KP_LEFT_EYE][0] - f->kp[DFD_KP_RIGHT_EYE][0];
    float dy = f->kp[DFD_KP_LEFT_EYE][1] - f->kp[DFD_KP_RIGHT_EYE][1];
    if (dx == 0.0f && dy == 0.0f) return 0.0f;
    return atan2f(dy, dx) * (float)(180.0 / M_PI);
}
