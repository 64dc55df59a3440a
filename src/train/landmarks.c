/*
 * landmarks.c — Face Mesh landmarks for every item of a training dataset, once, so that
 * self-blended fakes (dfd_sbi_landmarks) get masks shaped like the face instead of an
 * ellipse.
 *
 * The items are face crops: from `dfd prepare` (a margin around BlazeFace's box) or made
 * elsewhere (dfdc-faces: tight crops, the face box about the whole crop). The face box is
 * therefore known from the crop alone (dfd_ds_landmark_opts.margin / shift_y, as the crop
 * contract defines them), and the mesh runs on MediaPipe's window around that box, then
 * once more on the window of its own result. No detector pass is needed.
 *
 * Points are kept in the pixels of the item's image as decoded (w x h recorded with them),
 * so any consumer that resizes the crop scales them (dfd_ds_landmarks_get). Only the
 * DFD_SBI_POINTS the mask needs are kept (368 bytes per item).
 *
 * Sidecar file (dfd_ds_landmarks_save/_load): text, one line per item that has landmarks:
 *   dfd.landmarks/1 <DFD_SBI_POINTS>           (first line)
 *   <path relative to the dataset root>\t<w>\t<h>\t<presence>\t<x0> <y0> <x1> <y1> ...
 * keyed by the item's path, so it stays valid when the dataset is listed again.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

void dfd_ds_landmark_opts_default(dfd_ds_landmark_opts *o) {
    memset(o, 0, sizeof *o);
    o->margin = 1.0f;
    o->shift_y = 0.0f;
    o->min_presence = 0.5f;
    o->refine = 1;
    o->threads = 1;
    o->backend = NN_BACKEND_DNNL;
}

void dfd_ds_landmarks_free(dfd_ds_landmarks *l) {
    if (!l) return;
    free(l->pts);
    free(l->w);
    free(l->h);
    free(l->presence);
    free(l);
}

static int alloc_set(size_t n, dfd_ds_landmarks **out, dfd_error *err) {
    dfd_ds_landmarks *l = calloc(1, sizeof *l);
    if (l) {
        l->n = n;
        l->pts = dfd_calloc_array(n ? n : 1, sizeof *l->pts);
        l->w = dfd_calloc_array(n ? n : 1, sizeof *l->w);
        l->h = dfd_calloc_array(n ? n : 1, sizeof *l->h);
        l->presence = dfd_calloc_array(n ? n : 1, sizeof *l->presence);
    }
    if (!l || !l->pts || !l->w || !l->h || !l->presence) {
        dfd_ds_landmarks_free(l);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory for the landmarks of %zu items", n);
    }
    *out = l;
    return DFD_OK;
}

int dfd_crop_landmarks(dfd_landmarker *lm, const dfd_image *img, const dfd_ds_landmark_opts *o, dfd_face_mesh *mesh,
                       dfd_error *err) {
    float margin = o->margin >= 0.5f && o->margin <= 4.0f ? o->margin : 1.0f;
    float side = (float)(img->w > img->h ? img->w : img->h) / margin;
    float box[4] = {0.5f * img->w - 0.5f * side, 0.5f * img->h - 0.5f * side - o->shift_y * side, side, side};
    return dfd_face_mesh_detect(lm, img, NULL, box, o->refine, mesh, err);
}

typedef struct job {
    const dfd_dataset *ds;
    const dfd_ds_landmark_opts *o;
    dfd_ds_landmarks *l;
    atomic_size_t next;
    atomic_int fatal;   /* a DFD_E_* code that stops everything (no memory, no model) */
    atomic_size_t done, found, unreadable;
    pthread_mutex_t mu;
    dfd_error err;
} job;

static void *worker(void *arg) {
    job *j = arg;
    dfd_landmarker *lm = NULL;
    dfd_error e;
    int rc = dfd_landmarker_create(j->o->models_dir, j->o->backend, 1, &lm, &e);
    if (rc) {
        pthread_mutex_lock(&j->mu);
        if (!atomic_load(&j->fatal)) j->err = e, atomic_store(&j->fatal, rc);
        pthread_mutex_unlock(&j->mu);
        return NULL;
    }
    while (!atomic_load(&j->fatal)) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->ds->n) break;
        if (j->o->want && !j->o->want[i]) continue;
        dfd_image img;
        rc = dfd_image_load(j->ds->items[i].path, NULL, &img, NULL, &e);
        if (!rc) {
            dfd_face_mesh m;
            rc = dfd_crop_landmarks(lm, &img, j->o, &m, &e);
            if (!rc) {
                j->l->w[i] = img.w;
                j->l->h[i] = img.h;
                j->l->presence[i] = m.presence;
                if (m.presence >= j->o->min_presence) {
                    dfd_sbi_points_from_mesh(&m, 1.0f, 1.0f, j->l->pts[i]);
                    atomic_fetch_add(&j->found, 1);
                } else j->l->w[i] = 0;
            }
            dfd_image_free(&img);
        }
        if (rc == DFD_E_NOMEM) {
            pthread_mutex_lock(&j->mu);
            if (!atomic_load(&j->fatal)) j->err = e, atomic_store(&j->fatal, rc);
            pthread_mutex_unlock(&j->mu);
            break;
        }
        if (rc && atomic_fetch_add(&j->unreadable, 1) < 5)
            dfd_log(DFD_LOG_WARN, "landmarks: skipping '%s': %s", j->ds->items[i].path, e.message);
        size_t d = atomic_fetch_add(&j->done, 1) + 1;
        if (j->o->progress && d % 1000 == 0) dfd_log(DFD_LOG_INFO, "landmarks: %zu of %zu items", d, j->ds->n);
    }
    dfd_landmarker_free(lm);
    return NULL;
}

int dfd_dataset_landmarks(const dfd_dataset *ds, const dfd_ds_landmark_opts *opts, dfd_ds_landmarks **out, dfd_error *err) {
    *out = NULL;
    if (!ds) return dfd_fail(err, DFD_E_ARG, "landmarks: no dataset");
    dfd_ds_landmark_opts o;
    if (opts) o = *opts;
    else dfd_ds_landmark_opts_default(&o);
    int threads = o.threads < 1 ? 1 : o.threads > 64 ? 64 : o.threads;
    dfd_ds_landmarks *l = NULL;
    int rc = alloc_set(ds->n, &l, err);
    if (rc) return rc;
    job j;
    memset(&j, 0, sizeof j);
    j.ds = ds;
    j.o = &o;
    j.l = l;
    pthread_mutex_init(&j.mu, NULL);
    pthread_t th[64];
    int started = 0;
    for (int t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, worker, &j) == 0) started++;
        else break;
    if (started == 0) worker(&j);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&j.mu);
    if (atomic_load(&j.fatal)) {
        dfd_ds_landmarks_free(l);
        if (err) *err = j.err;
        return atomic_load(&j.fatal);
    }
    l->found = atomic_load(&j.found);
    *out = l;
    return DFD_OK;
}

int dfd_ds_landmarks_get(const dfd_ds_landmarks *l, size_t item, int out_w, int out_h, float pts[DFD_SBI_POINTS][2]) {
    if (!l || item >= l->n || l->w[item] <= 0 || l->h[item] <= 0) return 0;
    float sx = (float)out_w / l->w[item], sy = (float)out_h / l->h[item];
    for (int k = 0; k < DFD_SBI_POINTS; k++) pts[k][0] = l->pts[item][k][0] * sx, pts[k][1] = l->pts[item][k][1] * sy;
    return 1;
}

/* The item's path relative to the dataset root (the sidecar's key). */
static const char *rel_path(const dfd_dataset *ds, const char *path) {
    size_t n = ds->root ? strlen(ds->root) : 0;
    if (n && strncmp(path, ds->root, n) == 0) {
        path += n;
        while (*path == '/') path++;
    }
    return path;
}

int dfd_ds_landmarks_save(const dfd_ds_landmarks *l, const dfd_dataset *ds, const char *path, dfd_error *err) {
    if (!l || !ds || l->n != ds->n) return dfd_fail(err, DFD_E_ARG, "landmarks: set and dataset differ");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    fprintf(f, "dfd.landmarks/1 %d\n", DFD_SBI_POINTS);
    for (size_t i = 0; i < l->n; i++) {
        if (l->w[i] <= 0) continue;
        const char *key = rel_path(ds, ds->items[i].path);
        if (strpbrk(key, "\t\n")) continue; /* not representable; recomputed next time */
        fprintf(f, "%s\t%d\t%d\t%.4f\t", key, l->w[i], l->h[i], (double)l->presence[i]);
        for (int k = 0; k < DFD_SBI_POINTS; k++)
            fprintf(f, "%s%.2f %.2f", k ? " " : "", (double)l->pts[i][k][0], (double)l->pts[i][k][1]);
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
        free(buf);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory writing landmarks");
    }
    int rc = dfd_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

static int cmp_key(const void *a, const void *b) {
    const char *const *x = a, *const *y = b;
    return strcmp(*x, *y);
}

int dfd_ds_landmarks_load(const char *path, const dfd_dataset *ds, dfd_ds_landmarks **out, dfd_error *err) {
    *out = NULL;
    if (!ds) return dfd_fail(err, DFD_E_ARG, "landmarks: no dataset");
    uint8_t *data;
    size_t len;
    int rc = dfd_read_file(path, (uint64_t)1 << 31, &data, &len, err);
    if (rc) return rc;
    char *text = realloc(data, len + 1);
    if (!text) {
        free(data);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    text[len] = '\0';
    dfd_ds_landmarks *l = NULL;
    /* items sorted by key, pointing back to their index: key pointer then index */
    const char **keys = dfd_malloc_array(ds->n ? ds->n : 1, 2 * sizeof(char *));
    if (!keys) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if (!rc) rc = alloc_set(ds->n, &l, err);
    int npts = 0;
    char *line = text, *nl = strchr(line, '\n');
    if (!rc && (!nl || sscanf(line, "dfd.landmarks/1 %d", &npts) != 1 || npts != DFD_SBI_POINTS))
        rc = dfd_fail(err, DFD_E_CORRUPT, "'%s' is not a dfd.landmarks/1 file with %d points per item", path, DFD_SBI_POINTS);
    if (!rc) {
        for (size_t i = 0; i < ds->n; i++) {
            keys[2 * i] = rel_path(ds, ds->items[i].path);
            keys[2 * i + 1] = (const char *)(uintptr_t)i;
        }
        qsort(keys, ds->n, 2 * sizeof(char *), cmp_key);
    }
    size_t lineno = 1;
    for (line = nl ? nl + 1 : NULL; !rc && line && *line; line = nl ? nl + 1 : NULL) {
        lineno++;
        nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        char *tab = strchr(line, '\t');
        if (!tab) {
            rc = dfd_fail(err, DFD_E_CORRUPT, "%s:%zu: no key", path, lineno);
            break;
        }
        *tab = '\0';
        const char *probe = line;
        const char **hit = ds->n ? bsearch(&probe, keys, ds->n, 2 * sizeof(char *), cmp_key) : NULL;
        if (!hit) continue; /* an item no longer listed */
        size_t i = (size_t)(uintptr_t)hit[1];
        char *p = tab + 1, *end;
        long w = strtol(p, &end, 10), h = end != p ? strtol(end, &end, 10) : 0;
        float pr = strtof(end, &end), v[2 * DFD_SBI_POINTS];
        int ok = w > 0 && h > 0 && w <= (1 << 20) && h <= (1 << 20) && isfinite(pr);
        for (int k = 0; ok && k < 2 * DFD_SBI_POINTS; k++) {
            char *q = end;
            v[k] = strtof(q, &end);
            ok = end != q && isfinite(v[k]) && fabsf(v[k]) < 1e7f;
        }
        if (!ok) {
            rc = dfd_fail(err, DFD_E_CORRUPT, "%s:%zu: malformed landmarks", path, lineno);
            break;
        }
        l->w[i] = (int)w;
        l->h[i] = (int)h;
        l->presence[i] = pr;
        for (int k = 0; k < DFD_SBI_POINTS; k++) l->pts[i][k][0] = v[2 * k], l->pts[i][k][1] = v[2 * k + 1];
        l->found++;
    }
    free(keys);
    free(text);
    if (rc) {
        dfd_ds_landmarks_free(l);
        return rc;
    }
    *out = l;
    return DFD_OK;
}
