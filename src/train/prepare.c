/* prepare.c — `dfd prepare`: from a dataset of images and videos to a dataset of face
 * crops cut by the crop contract (docs/preprocessing.md), with a manifest.
 *
 * The original system cut its training crops with one margin and its inference crops with
 * another; here both go through face's dfd_face_crop with one contract, which is written
 * into prepare.json and from there into every model trained on the crops.
 *
 * Work is per source file, on worker threads (each with its own face detector). Every
 * finished file is appended to a journal — its manifest rows, then a "done" line — so an
 * interrupted run resumes where it stopped and a file half-written when it stopped is
 * redone. The manifest is rebuilt from the journal at the end, in dataset order. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "face/face.h"
#include "train/train.h"

void dfd_prepare_opts_default(dfd_prepare_opts *o) {
    memset(o, 0, sizeof *o);
    o->layout = DFD_LAYOUT_AUTO;
    o->per_video = 30;
    o->frames = 30;
    o->size = 224;
    o->quality = 95;
    o->workers = 2;
    o->face_mode = DFD_FACE_AUTO;
}

/* ---- Journal ---------------------------------------------------------------------------- */

/* One manifest row, as journaled. */
typedef struct row {
    char *crop;   /* path relative to out/ */
    char *source; /* the dataset item's source (+ "#t<track>") */
    int frame;
    float box[4];
    size_t item;  /* index of the source item in the dataset */
} row;

typedef struct job {
    const dfd_prepare_opts *o;
    dfd_dataset *d;
    dfd_crop_contract contract;
    size_t *todo;           /* item indices still to do */
    size_t n_todo, next;
    long total;
    pthread_mutex_t mu;
    FILE *journal;
    row *rows;              /* every row of every done file */
    size_t n_rows, cap_rows;
    unsigned char *done;    /* per item */
    dfd_prepare_summary *s;
    dfd_prepare_progress_fn fn;
    void *user;
    long n_done;
    int stop;
    int err_code;
    char err_msg[1200];
} job;

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Appends a row to the in-memory list (under the job's lock). */
static int add_row(job *j, const char *crop, const char *source, int frame, const float box[4], size_t item) {
    if (j->n_rows == j->cap_rows) {
        size_t cap = j->cap_rows ? j->cap_rows * 2 : 1024;
        row *v = realloc(j->rows, cap * sizeof *v);
        if (!v) return DFD_E_NOMEM;
        j->rows = v, j->cap_rows = cap;
    }
    row *r = &j->rows[j->n_rows];
    r->crop = xstrdup(crop);
    r->source = xstrdup(source);
    if (!r->crop || !r->source) {
        free(r->crop), free(r->source);
        return DFD_E_NOMEM;
    }
    r->frame = frame;
    memcpy(r->box, box, sizeof r->box);
    r->item = item;
    j->n_rows++;
    return DFD_OK;
}

/* The dataset item whose source (relative path) is s, by binary search over a sorted index. */
typedef struct srcidx {
    const char *source;
    size_t item;
} srcidx;
static int cmp_srcidx(const void *a, const void *b) { return strcmp(((const srcidx *)a)->source, ((const srcidx *)b)->source); }

/* Reads an earlier run's journal: rows of files that have their "done" line are kept and
 * those files are not done again. Lines are tab-separated: R crop source frame x y w h, or
 * D source status crops. A torn last line is ignored. */
static int read_journal(job *j, const char *path, dfd_error *err) {
    uint8_t *data;
    size_t len;
    struct stat st;
    if (stat(path, &st) != 0) return DFD_OK;
    int rc = dfd_read_file(path, 0, &data, &len, err);
    if (rc) return rc;
    srcidx *ix = dfd_malloc_array(j->d->n ? j->d->n : 1, sizeof *ix);
    if (!ix) {
        free(data);
        return dfd_fail(err, DFD_E_NOMEM, "no memory");
    }
    for (size_t i = 0; i < j->d->n; i++) ix[i] = (srcidx){j->d->items[i].source, i};
    if (j->d->n) qsort(ix, j->d->n, sizeof *ix, cmp_srcidx);
    /* Two passes: first the done set, then the rows of done files. */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        char *p = (char *)data, *end = p + len;
        while (p < end && !rc) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) break; /* torn last line */
            *nl = 0;
            char *f[8] = {NULL}; /* nf says how many are set; initialised so gcc -O3 sees it */
            int nf = 0;
            for (char *q = p; nf < 8;) {
                f[nf++] = q;
                char *t = strchr(q, '\t');
                if (!t) break;
                *t = 0;
                q = t + 1;
            }
            if (nf >= 2) {
                const char *src = f[0][0] == 'R' && nf == 8 ? f[2] : f[1];
                char base[4096];
                snprintf(base, sizeof base, "%s", src);
                char *hash = strrchr(base, '#');
                if (hash && f[0][0] == 'R') *hash = 0;
                srcidx key = {base, 0}, *hit = bsearch(&key, ix, j->d->n, sizeof *ix, cmp_srcidx);
                if (hit && pass == 0 && f[0][0] == 'D') j->done[hit->item] = 1;
                if (hit && pass == 1 && f[0][0] == 'R' && nf == 8 && j->done[hit->item]) {
                    float box[4] = {strtof(f[4], NULL), strtof(f[5], NULL), strtof(f[6], NULL), strtof(f[7], NULL)};
                    if (add_row(j, f[1], f[2], atoi(f[3]), box, hit->item)) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
                }
            }
            /* Restore the separators for the second pass. */
            for (char *q = p; q < nl; q++)
                if (*q == 0) *q = '\t';
            *nl = '\n';
            p = nl + 1;
        }
    }
    free(ix);
    free(data);
    return rc;
}

/* Each file's `source` names its crops and its journal lines, so it must be unique. A
 * generic labels.csv may use that column for something else (synthetic-faces/ puts the
 * generator there: a thousand files share "stable-diffusion-2.1"); then every item's source
 * becomes its file's path relative to the dataset, as the other layouts have it. */
static int unique_sources(dfd_dataset *d, dfd_error *err) {
    if (d->n < 2) return DFD_OK;
    const char **v = dfd_malloc_array(d->n, sizeof *v);
    if (!v) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    for (size_t i = 0; i < d->n; i++) v[i] = d->items[i].source;
    qsort(v, d->n, sizeof *v, cmp_cstr);
    int dup = 0;
    for (size_t i = 1; i < d->n && !dup; i++) dup = strcmp(v[i - 1], v[i]) == 0;
    free(v);
    if (!dup) return DFD_OK;
    size_t rl = strlen(d->root);
    for (size_t i = 0; i < d->n; i++) {
        dfd_item *it = &d->items[i];
        const char *rel = strncmp(it->path, d->root, rl) == 0 && it->path[rl] == '/' ? it->path + rl + 1 : it->path;
        char *s = xstrdup(rel);
        if (!s) return dfd_fail(err, DFD_E_NOMEM, "no memory");
        free(it->source);
        it->source = s;
    }
    dfd_log(DFD_LOG_INFO, "prepare: the listed sources are not one per file: crops are named after the files instead");
    return DFD_OK;
}

/* ---- One file --------------------------------------------------------------------------- */

/* out/crops/<real|fake>/<source with '/' as '__'>[_t<track>][_f<frame>].jpg, relative to out. */
static void crop_name(const dfd_item *it, int track, int frame, char *buf, size_t cap) {
    char s[700];
    size_t k = 0;
    const char *dot = strrchr(it->source, '.');
    for (const char *p = it->source; *p && k + 3 < sizeof s && p != dot; p++) {
        if (*p == '/') s[k++] = '_', s[k++] = '_';
        else s[k++] = (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                                     *p == '-' || *p == '_' || *p == '.'
                                 ? *p
                                 : '_');
    }
    s[k] = 0;
    char suffix[48] = "";
    if (track > 0) snprintf(suffix, sizeof suffix, "_t%d", track);
    if (frame >= 0) snprintf(suffix + strlen(suffix), sizeof suffix - strlen(suffix), "_f%06d", frame);
    snprintf(buf, cap, "crops/%s/%s%s.jpg", it->label ? "fake" : "real", s, suffix);
}

typedef struct worker_ctx {
    job *j;
    dfd_face_detector *det;
} worker_ctx;

/* Crops one face and writes it; appends the row to a per-file buffer. */
static int write_crop(job *j, const dfd_image *img, const dfd_face *f, const dfd_item *it, int track, int frame,
                      FILE *rows, dfd_error *err) {
    char rel[1024], full[2048];
    crop_name(it, track, frame, rel, sizeof rel);
    int rc = dfd_path_join(full, sizeof full, j->o->out, rel, err);
    if (rc) return rc;
    dfd_image crop;
    rc = dfd_face_crop(img, f, &j->contract, &crop, err);
    if (!rc) rc = dfd_jpeg_write_file(&crop, j->o->quality, full, err);
    dfd_image_free(&crop);
    if (rc) return rc;
    char src[700];
    if (track > 0) snprintf(src, sizeof src, "%s#t%d", it->source, track);
    else snprintf(src, sizeof src, "%s", it->source);
    fprintf(rows, "R\t%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\n", rel, src, frame, f->box[0], f->box[1], f->box[2], f->box[3]);
    return DFD_OK;
}

typedef struct file_stats {
    int image, video, crops, sequences, no_face, unreadable, short_tracks, frames_no_face, other_faces, still;
    const char *status;
} file_stats;

static int do_image(worker_ctx *w, const dfd_item *it, FILE *rows, file_stats *fs, dfd_error *err) {
    job *j = w->j;
    dfd_image img;
    dfd_error e;
    fs->image = 1;
    if (dfd_image_load(it->path, NULL, &img, NULL, &e)) {
        fs->unreadable = 1, fs->status = "unreadable";
        dfd_log(DFD_LOG_INFO, "prepare: %s: %s", it->path, e.message);
        return DFD_OK;
    }
    dfd_face *faces = NULL;
    int n = 0;
    int rc = dfd_face_detect(w->det, &img, &faces, &n, err);
    if (!rc && n == 0) fs->no_face = 1, fs->status = "no face";
    if (!rc && n > 0) {
        int k = dfd_face_largest(faces, n);
        fs->other_faces = n - 1;
        rc = write_crop(j, &img, &faces[k], it, 0, -1, rows, err);
        if (!rc) fs->crops = 1, fs->status = "ok";
    }
    free(faces);
    dfd_image_free(&img);
    return rc;
}

static int do_video(worker_ctx *w, const dfd_item *it, FILE *rows, file_stats *fs, dfd_error *err) {
    job *j = w->j;
    const dfd_prepare_opts *o = j->o;
    fs->video = 1;
    int want = o->sequences ? o->frames : o->per_video;
    dfd_frame_set set;
    dfd_error e;
    memset(&set, 0, sizeof set);
    if (dfd_video_sample(it->path, want, NULL, 1, &set, &e)) {
        fs->unreadable = 1, fs->status = "unreadable";
        dfd_log(DFD_LOG_INFO, "prepare: %s: %s", it->path, e.message);
        return DFD_OK;
    }
    int nf = set.count, rc = DFD_OK;
    dfd_face **faces = calloc((size_t)(nf ? nf : 1), sizeof *faces);
    int *counts = calloc((size_t)(nf ? nf : 1), sizeof *counts);
    if (!faces || !counts) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
    for (int i = 0; i < nf && !rc; i++) {
        rc = dfd_face_detect(w->det, &set.frames[i].img, &faces[i], &counts[i], err);
        if (!rc && counts[i] == 0) fs->frames_no_face++;
    }
    dfd_face_track *tracks = NULL;
    int nt = 0;
    if (!rc) {
        dfd_track_opts to;
        dfd_track_opts_default(&to);
        rc = dfd_face_track_link((const dfd_face *const *)faces, counts, nf, &to, &tracks, &nt, err);
    }
    if (!rc) {
        if (nt == 0) fs->no_face = 1, fs->status = "no face";
        for (int t = 1; t < nt; t++) fs->other_faces += tracks[t].n_points;
    }
    if (!rc && nt > 0) {
        const dfd_face_track *tr = &tracks[0]; /* the main (longest) track */
        int min_faces = o->min_faces > 0 ? o->min_faces : (int)ceil(0.8 * o->frames);
        if (o->sequences && tr->n_points < min_faces) {
            fs->short_tracks = 1, fs->status = "track too short";
        } else {
            for (int k = 0; k < tr->n_points && !rc; k++) {
                const dfd_track_point *pt = &tr->points[k];
                const dfd_frame *fr = &set.frames[pt->sample];
                rc = write_crop(j, &fr->img, &pt->face, it, o->sequences ? tr->id : 0, (int)fr->index, rows, err);
                if (!rc) fs->crops++;
            }
            if (!rc && o->sequences) fs->sequences = 1;
            if (!rc) fs->status = "ok";
        }
    }
    dfd_face_tracks_free(tracks, nt);
    for (int i = 0; faces && i < nf; i++) free(faces[i]);
    free(faces), free(counts);
    dfd_frame_set_free(&set);
    return rc;
}

/* Processes one item; on success journals its rows and its done line. */
static int do_item(worker_ctx *w, size_t item, dfd_error *err) {
    job *j = w->j;
    const dfd_item *it = &j->d->items[item];
    char *buf = NULL;
    size_t len = 0;
    FILE *rows = open_memstream(&buf, &len);
    if (!rows) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    file_stats fs = {.status = "?"};
    dfd_media_kind kind = DFD_MEDIA_UNKNOWN;
    const char *fmt = NULL;
    dfd_error e;
    int rc = DFD_OK;
    if (dfd_media_sniff_file(it->path, &kind, &fmt, &e) || kind == DFD_MEDIA_UNKNOWN) {
        fs.unreadable = 1, fs.status = "not an image or a video";
    } else if (kind == DFD_MEDIA_IMAGE && j->o->sequences) {
        fs.still = 1, fs.status = "still image (sequences need a video)";
    } else if (kind == DFD_MEDIA_IMAGE) rc = do_image(w, it, rows, &fs, err);
    else rc = do_video(w, it, rows, &fs, err);
    fprintf(rows, "D\t%s\t%s\t%d\n", it->source, fs.status, fs.crops);
    if (fclose(rows) != 0 && !rc) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
    if (rc) {
        free(buf);
        return rc;
    }
    pthread_mutex_lock(&j->mu);
    /* The file's rows and done line in one write: a crash leaves no done line for it. */
    if (fwrite(buf, 1, len, j->journal) != len || fflush(j->journal) != 0)
        rc = dfd_fail(err, DFD_E_IO, "cannot write the journal: %s", strerror(errno));
    /* Rows into memory too, for the manifest. */
    for (char *p = buf; !rc && p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (!nl) break;
        *nl = 0;
        if (p[0] == 'R') {
            char *f[8];
            int nf = 0;
            for (char *q = p; nf < 8;) {
                f[nf++] = q;
                char *t = strchr(q, '\t');
                if (!t) break;
                *t = 0;
                q = t + 1;
            }
            if (nf == 8) {
                float box[4] = {strtof(f[4], NULL), strtof(f[5], NULL), strtof(f[6], NULL), strtof(f[7], NULL)};
                if (add_row(j, f[1], f[2], atoi(f[3]), box, item)) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
            }
        }
        p = nl + 1;
    }
    dfd_prepare_summary *s = j->s;
    s->images += fs.image, s->videos += fs.video, s->no_face += fs.no_face, s->unreadable += fs.unreadable;
    s->short_tracks += fs.short_tracks, s->frames_no_face += fs.frames_no_face, s->other_faces += fs.other_faces;
    s->crops += fs.crops, s->sequences += fs.sequences, s->stills_skipped += fs.still;
    j->n_done++;
    if (j->fn && j->fn(j->user, j->n_done, j->total, s)) j->stop = 1;
    pthread_mutex_unlock(&j->mu);
    free(buf);
    return rc;
}

static void *worker_main(void *arg) {
    worker_ctx *w = arg;
    job *j = w->j;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        if (j->stop || j->err_code || j->next >= j->n_todo) {
            pthread_mutex_unlock(&j->mu);
            break;
        }
        size_t item = j->todo[j->next++];
        pthread_mutex_unlock(&j->mu);
        dfd_error e;
        int rc = do_item(w, item, &e);
        if (rc) {
            pthread_mutex_lock(&j->mu);
            if (!j->err_code) {
                j->err_code = rc;
                snprintf(j->err_msg, sizeof j->err_msg, "%.600s: %s", j->d->items[item].path, e.message);
            }
            pthread_mutex_unlock(&j->mu);
        }
    }
    return NULL;
}

/* ---- The run -------------------------------------------------------------------------------- */

static int cmp_row(const void *a, const void *b) {
    const row *x = a, *y = b;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    int c = strcmp(x->source, y->source);
    if (c) return c;
    return x->frame < y->frame ? -1 : x->frame > y->frame;
}

static int mkdir_one(const char *p, dfd_error *err) {
    if (mkdir(p, 0755) && errno != EEXIST) return dfd_fail(err, DFD_E_IO, "cannot create '%s': %s", p, strerror(errno));
    return DFD_OK;
}

static int write_outputs(job *j, dfd_error *err) {
    const dfd_prepare_opts *o = j->o;
    char p[1100];
    dfd_dataset *m;
    int rc = dfd_dataset_new(o->out, &m, err);
    if (rc) return rc;
    if (j->n_rows) qsort(j->rows, j->n_rows, sizeof *j->rows, cmp_row);
    long crops = 0, seqs = 0;
    for (size_t i = 0; i < j->n_rows && !rc; i++) {
        const row *r = &j->rows[i];
        const dfd_item *it = &j->d->items[r->item];
        rc = dfd_path_join(p, sizeof p, o->out, r->crop, err);
        if (!rc) rc = dfd_dataset_add(m, p, it->label, it->group, r->source, r->frame, r->box, it->split, err);
        crops++;
        if (i == 0 || strcmp(r->source, j->rows[i - 1].source) != 0) seqs++;
    }
    j->s->crops = crops;
    j->s->sequences = o->sequences ? seqs : 0;
    if (!rc) rc = dfd_path_join(p, sizeof p, o->out, "manifest.csv", err);
    if (!rc) rc = dfd_dataset_write_manifest(m, p, err);
    dfd_dataset_free(m);
    if (rc) return rc;
    char *cj = dfd_crop_contract_to_json(&j->contract);
    json_t *contract = cj ? json_loads(cj, 0, NULL) : NULL;
    free(cj);
    const dfd_prepare_summary *s = j->s;
    json_t *doc = json_pack(
        "{s:s,s:s,s:s,s:o,s:{s:s,s:i,s:i,s:i,s:i},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}}", "format", "dfd.prepare/1",
        "data", o->data, "layout", dfd_layout_name(j->d->layout), "contract", contract ? contract : json_object(),
        "options", "mode", o->sequences ? "sequences" : "crops", "per_video", o->per_video, "frames", o->frames,
        "min_faces", o->min_faces > 0 ? o->min_faces : (int)ceil(0.8 * o->frames), "jpeg_quality", o->quality, "summary",
        "files", (json_int_t)s->files, "crops", (json_int_t)s->crops, "sequences", (json_int_t)s->sequences, "images",
        (json_int_t)s->images, "videos", (json_int_t)s->videos, "no_face", (json_int_t)s->no_face, "unreadable",
        (json_int_t)s->unreadable, "short_tracks", (json_int_t)s->short_tracks, "frames_without_face",
        (json_int_t)s->frames_no_face, "other_faces_ignored", (json_int_t)s->other_faces);
    if (doc && o->sequences)
        json_object_set_new(json_object_get(doc, "summary"), "still_images_skipped", json_integer(s->stills_skipped));
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!text) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    snprintf(p, sizeof p, "%s/prepare.json", o->out);
    rc = dfd_write_file_atomic(p, text, strlen(text), err);
    free(text);
    return rc;
}

int dfd_prepare_run(const dfd_prepare_opts *o, dfd_prepare_progress_fn fn, void *user, dfd_prepare_summary *s,
                    dfd_error *err) {
    memset(s, 0, sizeof *s);
    if (!o->data || !o->out) return dfd_fail(err, DFD_E_ARG, "prepare: a data folder and an output folder are required");
    if (o->per_video < 1 || o->per_video > 1000 || o->frames < 1 || o->frames > 1000 || o->size < 16 || o->size > 2048 ||
        o->quality < 1 || o->quality > 100 || o->workers < 1 || o->workers > 64)
        return dfd_fail(err, DFD_E_ARG, "prepare: options out of range (per video %d, frames %d, size %d, quality %d, workers %d)",
                        o->per_video, o->frames, o->size, o->quality, o->workers);
    double t0 = dfd_now_ms();
    job J;
    memset(&J, 0, sizeof J);
    job *j = &J;
    j->o = o, j->s = s, j->fn = fn, j->user = user;
    pthread_mutex_init(&j->mu, NULL);
    char p[1100];
    worker_ctx *w = NULL;
    pthread_t *th = NULL;
    int nth = 0, nw = 0;
    int rc = dfd_dataset_open(o->data, o->layout, &j->d, err);
    if (rc) goto out;
    if ((rc = unique_sources(j->d, err))) goto out;
    dfd_crop_contract_default(&j->contract, o->size);
    if (o->margin > 0) j->contract.margin = o->margin;
    if ((rc = mkdir_one(o->out, err))) goto out;
    snprintf(p, sizeof p, "%s/crops", o->out);
    if ((rc = mkdir_one(p, err))) goto out;
    snprintf(p, sizeof p, "%s/crops/real", o->out);
    if ((rc = mkdir_one(p, err))) goto out;
    snprintf(p, sizeof p, "%s/crops/fake", o->out);
    if ((rc = mkdir_one(p, err))) goto out;
    size_t n = j->d->n;
    if (o->limit > 0 && (size_t)o->limit < n) n = (size_t)o->limit;
    s->files = (long)n;
    j->done = calloc(j->d->n ? j->d->n : 1, 1);
    j->todo = dfd_malloc_array(n ? n : 1, sizeof *j->todo);
    if (!j->done || !j->todo) {
        rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
        goto out;
    }
    snprintf(p, sizeof p, "%s/prepare.journal", o->out);
    if ((rc = read_journal(j, p, err))) goto out;
    for (size_t i = 0; i < n; i++) {
        if (j->done[i]) s->already_done++;
        else j->todo[j->n_todo++] = i;
    }
    j->total = (long)j->n_todo;
    j->journal = fopen(p, "a");
    if (!j->journal) {
        rc = dfd_fail(err, DFD_E_IO, "cannot open '%s': %s", p, strerror(errno));
        goto out;
    }
    /* Workers, each with its own detector. */
    nw = o->workers < (int)(j->n_todo ? j->n_todo : 1) ? o->workers : (int)(j->n_todo ? j->n_todo : 1);
    w = calloc((size_t)nw, sizeof *w);
    th = calloc((size_t)nw, sizeof *th);
    if (!w || !th) {
        rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
        goto out;
    }
    dfd_face_opts fo;
    dfd_face_opts_default(&fo);
    fo.models_dir = o->models_dir;
    fo.mode = (dfd_face_mode)o->face_mode;
    fo.threads = 1;
    for (int i = 0; i < nw && j->n_todo; i++) {
        w[i].j = j;
        if ((rc = dfd_face_detector_create(&fo, &w[i].det, err))) goto out;
    }
    for (int i = 0; i < nw && j->n_todo; i++) {
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0) break;
        nth++;
    }
    if (j->n_todo && nth == 0) {
        rc = dfd_fail(err, DFD_E_INTERNAL, "cannot start a worker thread");
        goto out;
    }
    for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
    nth = 0;
    if (j->err_code) {
        rc = dfd_fail(err, j->err_code, "%.500s", j->err_msg);
        goto out;
    }
    if (j->stop) {
        rc = dfd_fail(err, DFD_E_CANCELLED, "prepare: stopped after %ld of %ld files (run again to resume)", j->n_done,
                      j->total);
        goto out;
    }
    rc = write_outputs(j, err);
out:
    for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
    for (int i = 0; w && i < nw; i++)
        if (w[i].det) dfd_face_detector_free(w[i].det);
    free(w), free(th);
    if (j->journal) fclose(j->journal);
    for (size_t i = 0; i < j->n_rows; i++) free(j->rows[i].crop), free(j->rows[i].source);
    free(j->rows), free(j->done), free(j->todo);
    dfd_dataset_free(j->d);
    pthread_mutex_destroy(&j->mu);
    s->seconds = (dfd_now_ms() - t0) / 1000;
    return rc;
}
