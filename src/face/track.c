/*
 * track.c — linking the faces found on a video's sampled frames into one track per person.
 *
 * Sampled frames are far apart (30 samples of a 10 s clip are a third of a second apart),
 * so a face can move a good part of its size between samples: a detection continues a
 * track when it overlaps the track's last box (IoU) or its centre is near it (in units of
 * the box side) and its size is within a factor of two. Matching is greedy, closest pairs
 * first, each track taking at most one face per frame. A track that misses up to max_gap
 * frames (the detector missed, the person turned away) can still be continued; after the
 * pass, fragments of one person that never overlap in time and whose ends are close in
 * place and size are joined. Tracks seen on too few frames are dropped as spurious
 * detections, unless nothing else is left.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "face/face.h"

void dfd_track_opts_default(dfd_track_opts *o) {
    o->min_iou = 0.2f;
    o->max_dist = 0.6f;
    o->max_gap = 3;
    o->min_coverage = 0.1f;
}

void dfd_face_tracks_free(dfd_face_track *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i].points);
    free(t);
}

static float side_of(const float *b) { return fmaxf(b[2], b[3]); }

/* Centre distance in units of a's side. */
static float centre_dist(const float *a, const float *b) {
    float dx = (a[0] + a[2] * 0.5f) - (b[0] + b[2] * 0.5f), dy = (a[1] + a[3] * 0.5f) - (b[1] + b[3] * 0.5f);
    float s = side_of(a);
    return s > 0 ? sqrtf(dx * dx + dy * dy) / s : INFINITY;
}

/* Whether face box b may be the same person as box a a few frames later; *cost orders
 * the candidates (lower is better). */
static int compatible(const dfd_track_opts *o, const float *a, const float *b, float dist_scale, float *cost) {
    float sa = side_of(a), sb = side_of(b);
    if (!(sa > 0 && sb > 0) || sb > 2.0f * sa || sa > 2.0f * sb) return 0;
    float iou = dfd_box_iou(a, b), d = centre_dist(a, b);
    if (iou < o->min_iou && d > o->max_dist * dist_scale) return 0;
    *cost = d - iou;
    return 1;
}

typedef struct trk {
    dfd_track_point *p;
    int n, cap;
    int alive; /* 0 after being merged into another track */
} trk;

static int trk_push(trk *t, int sample, const dfd_face *f) {
    dfd_track_point *np = dfd_grow(t->p, &t->cap, t->n + 1, sizeof *np, 16);
    if (!np) return -1;
    t->p = np;
    t->p[t->n].sample = sample;
    t->p[t->n].face = *f;
    t->n++;
    return 0;
}

typedef struct pair {
    float cost;
    int t, d;
} pair;

static int by_cost(const void *pa, const void *pb) {
    const pair *a = pa, *b = pb;
    if (a->cost != b->cost) return a->cost < b->cost ? -1 : 1;
    if (a->t != b->t) return a->t - b->t;
    return a->d - b->d;
}

static int by_length(const void *pa, const void *pb) {
    const dfd_face_track *a = pa, *b = pb;
    if (a->n_points != b->n_points) return b->n_points - a->n_points;
    return a->points[0].sample - b->points[0].sample;
}

/* Appends b's points to a (b is entirely after a in time). */
static int trk_join(trk *a, trk *b) {
    for (int i = 0; i < b->n; i++)
        if (trk_push(a, b->p[i].sample, &b->p[i].face)) return -1;
    b->alive = 0;
    return 0;
}

int dfd_face_track_link(const dfd_face *const *faces, const int *counts, int n_frames, const dfd_track_opts *o,
                        dfd_face_track **tracks, int *n_tracks, dfd_error *err) {
    *tracks = NULL;
    *n_tracks = 0;
    dfd_track_opts def;
    if (!o) {
        dfd_track_opts_default(&def);
        o = &def;
    }
    if (n_frames < 0 || (n_frames > 0 && (!faces || !counts)))
        return dfd_fail(err, DFD_E_ARG, "tracking needs the faces of each frame");
    trk *ts = NULL;
    int nt = 0, cap = 0, rc = DFD_OK;
    pair *pairs = NULL;
    size_t pair_cap = 0;
    char *used_t = NULL, *used_d = NULL;
    for (int f = 0; f < n_frames && !rc; f++) {
        int nd = counts[f];
        if (nd < 0 || (nd > 0 && !faces[f])) {
            rc = dfd_fail(err, DFD_E_ARG, "frame %d has an invalid face list", f);
            break;
        }
        /* Candidate (track, detection) pairs. */
        size_t np = 0, need;
        if (dfd_mul_size((size_t)(nt > 0 ? nt : 1), (size_t)(nd > 0 ? nd : 1), &need)) {
            rc = dfd_fail(err, DFD_E_LIMIT, "too many faces to track");
            break;
        }
        if (need > pair_cap) {
            pair *npairs = realloc(pairs, need * sizeof *pairs);
            if (!npairs) {
                rc = dfd_fail(err, DFD_E_NOMEM, "out of memory tracking faces");
                break;
            }
            pairs = npairs;
            pair_cap = need;
        }
        for (int t = 0; t < nt; t++) {
            const dfd_track_point *last = &ts[t].p[ts[t].n - 1];
            int gap = f - last->sample - 1;
            if (gap > o->max_gap) continue;
            for (int d = 0; d < nd; d++) {
                float c;
                /* Allow more movement after missed frames. */
                if (compatible(o, last->face.box, faces[f][d].box, 1.0f + 0.5f * (float)gap, &c))
                    pairs[np++] = (pair){c, t, d};
            }
        }
        qsort(pairs, np, sizeof *pairs, by_cost);
        char *ut = realloc(used_t, (size_t)nt + 1), *ud = realloc(used_d, (size_t)nd + 1);
        if (ut) used_t = ut;
        if (ud) used_d = ud;
        if (!ut || !ud) {
            rc = dfd_fail(err, DFD_E_NOMEM, "out of memory tracking faces");
            break;
        }
        memset(used_t, 0, (size_t)nt + 1);
        memset(used_d, 0, (size_t)nd + 1);
        for (size_t i = 0; i < np && !rc; i++) {
            if (used_t[pairs[i].t] || used_d[pairs[i].d]) continue;
            used_t[pairs[i].t] = used_d[pairs[i].d] = 1;
            if (trk_push(&ts[pairs[i].t], f, &faces[f][pairs[i].d])) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        }
        /* Unmatched detections start tracks. */
        for (int d = 0; d < nd && !rc; d++) {
            if (used_d[d]) continue;
            trk *nts = dfd_grow(ts, &cap, nt + 1, sizeof *nts, 8);
            if (!nts) {
                rc = dfd_fail(err, DFD_E_NOMEM, "out of memory tracking faces");
                break;
            }
            ts = nts;
            memset(&ts[nt], 0, sizeof ts[nt]);
            ts[nt].alive = 1;
            if (trk_push(&ts[nt], f, &faces[f][d])) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
            nt++;
        }
    }
    free(pairs);
    free(used_t);
    free(used_d);

    /* Join fragments of one person: b starts after a ends, close in place and size
     * (further apart allowed for longer gaps). Closest gaps first, until nothing joins. */
    for (int changed = 1; changed && !rc;) {
        changed = 0;
        int best_a = -1, best_b = -1;
        float best = INFINITY;
        for (int a = 0; a < nt; a++) {
            if (!ts[a].alive) continue;
            const dfd_track_point *end = &ts[a].p[ts[a].n - 1];
            for (int b = 0; b < nt; b++) {
                if (b == a || !ts[b].alive || ts[b].p[0].sample <= end->sample) continue;
                float c, gap = (float)(ts[b].p[0].sample - end->sample - 1);
                if (!compatible(o, end->face.box, ts[b].p[0].face.box, 1.0f + 0.5f * gap, &c)) continue;
                if (gap + c < best) {
                    best = gap + c;
                    best_a = a;
                    best_b = b;
                }
            }
        }
        if (best_a >= 0) {
            if (trk_join(&ts[best_a], &ts[best_b])) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
            changed = 1;
        }
    }

    /* Keep tracks on enough frames (always the longest one). */
    int longest = 0;
    for (int t = 0; t < nt; t++)
        if (ts[t].alive && ts[t].n > longest) longest = ts[t].n;
    int min_n = (int)ceilf(o->min_coverage * (float)n_frames);
    dfd_face_track *out = NULL;
    int no = 0;
    if (!rc && nt > 0) {
        out = calloc((size_t)nt, sizeof *out);
        if (!out) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    for (int t = 0; t < nt; t++) {
        if (!rc && ts[t].alive && (ts[t].n >= min_n || ts[t].n == longest)) {
            out[no].points = ts[t].p;
            out[no].n_points = ts[t].n;
            ts[t].p = NULL;
            no++;
        }
        free(ts[t].p);
    }
    free(ts);
    if (rc) {
        dfd_face_tracks_free(out, no);
        return rc;
    }
    if (no > 1) qsort(out, (size_t)no, sizeof *out, by_length);
    for (int i = 0; i < no; i++) out[i].id = i + 1;
    if (no == 0) {
        free(out);
        out = NULL;
    }
    *tracks = out;
    *n_tracks = no;
    return DFD_OK;
}

/* ---- The search on a video's samples ------------------------------------------------ */

int dfd_face_detect_sample(dfd_face_detector *d, const dfd_image *img, int i, dfd_face **faces, int *counts,
                           int *since_full, int min_face, dfd_error *err) {
    faces[i] = NULL;
    counts[i] = 0;
    /* A whole-frame search (~140 ms CPU on a 1080p frame, tiles for small faces) every
     * DFD_VIDEO_FULL_SCAN_EVERY samples and after a sample where a face was lost; in
     * between, a search around the faces of the previous sample (a few ms per face). A face
     * entering the picture is found at the next whole-frame search. */
    int s = *since_full;
    int lost = i >= 2 && counts[i - 1] < counts[i - 2];
    int full = i == 0 || s >= DFD_VIDEO_FULL_SCAN_EVERY || lost ||
               (counts[i - 1] == 0 && s >= DFD_VIDEO_FULL_SCAN_EMPTY);
    int rc;
    if (full) {
        /* Video faces from 1/20 of the frame's short side (54 px in 1080p; the default
         * 40 px below 800 px): a third fewer tiles than 40 px on a 1080p frame. */
        int video_min = (img->w < img->h ? img->w : img->h) / DFD_VIDEO_MIN_FACE_DIV;
        dfd_face_set_min_face(d, video_min > min_face ? video_min : min_face);
        rc = dfd_face_detect(d, img, &faces[i], &counts[i], err);
        dfd_face_set_min_face(d, min_face);
        s = 0;
        /* Boxes drawn the way the searches in between draw them, so that a track's crops
         * do not jump in framing every DFD_VIDEO_FULL_SCAN_EVERY frames. */
        dfd_face *ref = NULL;
        int nref = 0;
        if (!rc && counts[i] > 0 && !(rc = dfd_face_detect_near(d, img, faces[i], counts[i], &ref, &nref, err)) &&
            nref >= counts[i]) {
            free(faces[i]);
            faces[i] = ref, counts[i] = nref;
        } else
            free(ref);
    } else
        rc = dfd_face_detect_near(d, img, faces[i - 1], counts[i - 1], &faces[i], &counts[i], err);
    *since_full = s + 1;
    return rc;
}
