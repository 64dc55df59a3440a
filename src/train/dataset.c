/* dataset.c — from a dataset folder on disk to a list of labelled items, and the splits
 * and orders training needs.
 *
 * The point of this file is that evaluation is honest: a group (the real source video of
 * a fake, or a person) never lands on both sides of a split, so a model cannot score well
 * by recognising a face it saw in training. Each layout says what its group is (train.h).
 * Listings are sorted and splits are hashed by name with a seed, so the same folder and
 * seed give the same items, in the same order, on any machine. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/nn.h"
#include "train/train.h"

/* ---- Small string and path helpers ----------------------------------------------------- */

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* a + "/" + b, malloc'ed; b may be NULL. */
static char *join(const char *a, const char *b) {
    if (!b || !*b) return xstrdup(a);
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    size_t k = la;
    if (la && a[la - 1] != '/') s[k++] = '/';
    memcpy(s + k, b, lb + 1);
    return s;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int has_ext(const char *name, const char *const *exts) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (int i = 0; exts[i]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return 1;
    return 0;
}

static const char *const video_exts[] = {"mp4", "avi", "mov", "mkv", "webm", "m4v", NULL};
static const char *const image_exts[] = {"jpg", "jpeg", "png", "webp", "bmp", NULL};

/* The item kind from a file name; -1 when it is neither. Listing goes by name (cheap over
 * 100 000 files); `dfd prepare` still sniffs the content before it decodes. */
static int kind_of(const char *name) {
    if (has_ext(name, video_exts)) return DFD_ITEM_VIDEO;
    if (has_ext(name, image_exts)) return DFD_ITEM_IMAGE;
    return -1;
}

/* The file name without folders and extension, into buf. */
static void stem(const char *path, char *buf, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    size_t n = dot && dot > b ? (size_t)(dot - b) : strlen(b);
    if (n >= cap) n = cap - 1;
    memcpy(buf, b, n);
    buf[n] = 0;
}

/* ---- Sorted folder listings -------------------------------------------------------------- */

typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist;

static void strlist_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int strlist_push(strlist *l, char *s) { /* takes s */
    if (!s) return -1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            free(s);
            return -1;
        }
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = s;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Files (want_dirs = 0) or folders (1) directly in dir, names sorted; hidden names skipped. */
static int list_dir(const char *dir, int want_dirs, strlist *out, dfd_error *err) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return dfd_fail(err, DFD_E_IO, "cannot list folder '%s': %s", dir, strerror(errno));
    struct dirent *e;
    int rc = DFD_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = join(dir, e->d_name);
        if (!p) {
            rc = dfd_fail(err, DFD_E_NOMEM, "no memory listing '%s'", dir);
            break;
        }
        int dirp = is_dir(p), ok = want_dirs ? dirp : (!dirp && is_file(p));
        free(p);
        if (!ok) continue;
        if (strlist_push(out, xstrdup(e->d_name))) {
            rc = dfd_fail(err, DFD_E_NOMEM, "no memory listing '%s'", dir);
            break;
        }
    }
    closedir(d);
    if (rc) strlist_free(out);
    else if (out->n) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return rc;
}

/* Every image or video file under dir (recursively), as paths relative to dir, sorted. */
static int walk_media(const char *dir, const char *rel, strlist *out, int depth, dfd_error *err) {
    if (depth > 16) return dfd_fail(err, DFD_E_LIMIT, "folders nested over 16 deep under '%s'", dir);
    char *here = join(dir, rel);
    if (!here) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    strlist files, dirs;
    int rc = list_dir(here, 0, &files, err);
    if (!rc) {
        rc = list_dir(here, 1, &dirs, err);
        if (rc) strlist_free(&files);
    }
    free(here);
    if (rc) return rc;
    for (size_t i = 0; i < files.n && !rc; i++)
        if (kind_of(files.v[i]) >= 0 && strlist_push(out, rel ? join(rel, files.v[i]) : xstrdup(files.v[i])))
            rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
    for (size_t i = 0; i < dirs.n && !rc; i++) {
        char *sub = rel ? join(rel, dirs.v[i]) : xstrdup(dirs.v[i]);
        if (!sub) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
        else rc = walk_media(dir, sub, out, depth + 1, err);
        free(sub);
    }
    strlist_free(&files);
    strlist_free(&dirs);
    return rc;
}

/* ---- The dataset object ------------------------------------------------------------------- */

const char *dfd_layout_name(dfd_layout l) {
    switch (l) {
    case DFD_LAYOUT_AUTO: return "auto";
    case DFD_LAYOUT_CELEBDF: return "celebdf";
    case DFD_LAYOUT_FFPP: return "ffpp";
    case DFD_LAYOUT_DFDC: return "dfdc";
    case DFD_LAYOUT_GENERIC: return "generic";
    }
    return "?";
}

int dfd_layout_parse(const char *s, dfd_layout *out) {
    for (int l = DFD_LAYOUT_AUTO; l <= DFD_LAYOUT_GENERIC; l++)
        if (s && strcmp(s, dfd_layout_name((dfd_layout)l)) == 0) {
            *out = (dfd_layout)l;
            return 0;
        }
    return -1;
}

int dfd_dataset_new(const char *root, dfd_dataset **out, dfd_error *err) {
    *out = NULL;
    dfd_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->root = xstrdup(root ? root : "."))) {
        free(d);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for a dataset");
    }
    d->layout = DFD_LAYOUT_GENERIC;
    *out = d;
    return DFD_OK;
}

void dfd_dataset_free(dfd_dataset *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->items[i].path);
        free(d->items[i].group);
        free(d->items[i].source);
    }
    free(d->items);
    free(d->root);
    free(d);
}

int dfd_dataset_add(dfd_dataset *d, const char *path, int label, const char *group, const char *source, int frame,
                    const float box[4], dfd_split split, dfd_error *err) {
    if (!path || (label != 0 && label != 1))
        return dfd_fail(err, DFD_E_ARG, "dataset item '%s' has label %d (0 real, 1 fake)", path ? path : "?", label);
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        dfd_item *v = dfd_malloc_array(cap, sizeof *v);
        if (!v) return dfd_fail(err, DFD_E_NOMEM, "no memory for %zu dataset items", cap);
        if (d->n) memcpy(v, d->items, d->n * sizeof *v);
        free(d->items);
        d->items = v, d->cap = cap;
    }
    dfd_item *it = &d->items[d->n];
    memset(it, 0, sizeof *it);
    it->path = xstrdup(path);
    it->group = xstrdup(group ? group : path);
    it->source = xstrdup(source ? source : path);
    if (!it->path || !it->group || !it->source) {
        free(it->path);
        free(it->group);
        free(it->source);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for dataset item '%s'", path);
    }
    it->label = label;
    it->frame = frame;
    for (int k = 0; k < 4; k++) it->box[k] = box ? box[k] : NAN;
    it->split = split;
    it->kind = kind_of(path) == DFD_ITEM_VIDEO ? DFD_ITEM_VIDEO : DFD_ITEM_IMAGE;
    d->n++;
    return DFD_OK;
}

/* Adds root/rel with a group; the group gets a layout prefix to keep namespaces apart. */
static int add_rel(dfd_dataset *d, const char *rel, int label, const char *group, dfd_error *err) {
    char *p = join(d->root, rel);
    if (!p) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    int rc = dfd_dataset_add(d, p, label, group, rel, -1, NULL, DFD_SPLIT_TRAIN, err);
    free(p);
    return rc;
}

/* ---- CSV ------------------------------------------------------------------------------------ */

/* Splits one CSV record (RFC 4180 quoting, no newlines inside fields) in place. Returns
 * the field count (at most max), or -1 on an unterminated quote. */
static int csv_split(char *line, char **f, int max) {
    int n = 0;
    char *p = line;
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    for (;;) {
        char *w = p, *start = p;
        if (*p == '"') { /* the unquoted text is written over the field from its start */
            p++;
            for (;;) {
                if (!*p) return -1;
                if (*p == '"') {
                    if (p[1] == '"') {
                        *w++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *w++ = *p++;
            }
            while (*p && *p != ',') p++; /* junk after the closing quote is dropped */
        } else {
            while (*p && *p != ',') p++;
            w = p;
        }
        char end = *p;
        *w = 0;
        if (n < max) f[n++] = start;
        if (end != ',') break;
        p++;
    }
    return n;
}

static int parse_label(const char *s, int *out) {
    if (!strcasecmp(s, "fake") || !strcmp(s, "1")) *out = 1;
    else if (!strcasecmp(s, "real") || !strcmp(s, "0")) *out = 0;
    else return -1;
    return 0;
}

static int col_index(char **hdr, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcasecmp(hdr[i], name) == 0) return i;
    return -1;
}

/* Reads a labels/manifest CSV with a header row naming at least file and label. */
static int read_csv(dfd_dataset *d, const char *csv, dfd_error *err) {
    uint8_t *data;
    size_t len;
    int rc = dfd_read_file(csv, 1ull << 30, &data, &len, err);
    if (rc) return rc;
    char *save = NULL, *line = strtok_r((char *)data, "\n", &save);
    enum { MAXF = 16 };
    char *h[MAXF], hdr_copy[1024];
    if (!line) {
        free(data);
        return dfd_fail(err, DFD_E_CORRUPT, "'%s' is empty", csv);
    }
    snprintf(hdr_copy, sizeof hdr_copy, "%s", line);
    int nh = csv_split(hdr_copy, h, MAXF);
    int cf = col_index(h, nh, "file"), cl = col_index(h, nh, "label"), cg = col_index(h, nh, "group"),
        cs = col_index(h, nh, "source"), cfr = col_index(h, nh, "frame"), cb = col_index(h, nh, "box"),
        csp = col_index(h, nh, "split");
    if (cf < 0 || cl < 0) {
        free(data);
        return dfd_fail(err, DFD_E_CORRUPT, "'%s': the first line must name the columns, with 'file' and 'label'", csv);
    }
    long lineno = 1;
    while (!rc && (line = strtok_r(NULL, "\n", &save))) {
        lineno++;
        char *f[MAXF];
        if (line[0] == '\r' || line[0] == 0) continue;
        int nf = csv_split(line, f, MAXF);
        if (nf < 0) {
            rc = dfd_fail(err, DFD_E_CORRUPT, "%s:%ld: unterminated quote", csv, lineno);
            break;
        }
        if (nf <= cf || nf <= cl) {
            rc = dfd_fail(err, DFD_E_CORRUPT, "%s:%ld: %d fields, expected at least %d", csv, lineno, nf,
                          (cf > cl ? cf : cl) + 1);
            break;
        }
        int label;
        if (parse_label(f[cl], &label)) {
            rc = dfd_fail(err, DFD_E_CORRUPT, "%s:%ld: label '%s' is not real/fake/0/1", csv, lineno, f[cl]);
            break;
        }
        const char *file = f[cf];
        const char *group = cg >= 0 && cg < nf && *f[cg] ? f[cg] : NULL;
        const char *source = cs >= 0 && cs < nf && *f[cs] ? f[cs] : NULL;
        int frame = -1;
        if (cfr >= 0 && cfr < nf && *f[cfr]) {
            /* atoi would be undefined past INT_MAX and reads "12x" or "x" as a frame. */
            char *end;
            errno = 0;
            long v = strtol(f[cfr], &end, 10);
            if (errno || end == f[cfr] || *end || v < -1 || v > INT_MAX) {
                rc = dfd_fail(err, DFD_E_CORRUPT, "%s:%ld: frame '%s' is not a frame number (-1 or more)", csv,
                              lineno, f[cfr]);
                break;
            }
            frame = (int)v;
        }
        float box[4] = {NAN, NAN, NAN, NAN};
        if (cb >= 0 && cb < nf && *f[cb]) {
            if (sscanf(f[cb], "%f %f %f %f", &box[0], &box[1], &box[2], &box[3]) != 4) {
                rc = dfd_fail(err, DFD_E_CORRUPT, "%s:%ld: box '%s' is not 'x y w h'", csv, lineno, f[cb]);
                break;
            }
        }
        dfd_split split = DFD_SPLIT_TRAIN;
        if (csp >= 0 && csp < nf && strcasecmp(f[csp], "test") == 0) split = DFD_SPLIT_TEST;
        char *p = file[0] == '/' ? xstrdup(file) : join(d->root, file);
        if (!p) {
            rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
            break;
        }
        /* Without a group the file is its own group; the source defaults to the file. */
        rc = dfd_dataset_add(d, p, label, group ? group : file, source ? source : file, frame, box, split, err);
        free(p);
    }
    free(data);
    return rc;
}

/* ---- Layouts ----------------------------------------------------------------------------------- */

static int open_generic(dfd_dataset *d, dfd_error *err) {
    const char *csvs[] = {"manifest.csv", "labels.csv"};
    for (int i = 0; i < 2; i++) {
        char *p = join(d->root, csvs[i]);
        if (!p) return dfd_fail(err, DFD_E_NOMEM, "no memory");
        if (is_file(p)) {
            int rc = read_csv(d, p, err);
            free(p);
            return rc;
        }
        free(p);
    }
    int found = 0;
    const char *cls[2] = {"real", "fake"};
    for (int label = 0; label < 2; label++) {
        char *dir = join(d->root, cls[label]);
        if (!dir) return dfd_fail(err, DFD_E_NOMEM, "no memory");
        if (!is_dir(dir)) {
            free(dir);
            continue;
        }
        found++;
        strlist files = {0};
        int rc = walk_media(dir, NULL, &files, 0, err);
        free(dir);
        for (size_t i = 0; i < files.n && !rc; i++) {
            /* real/alice/1.jpg: group "alice" (a person or a video's frames); else the file. */
            char group[512], rel[1024];
            const char *slash = strchr(files.v[i], '/');
            if (slash) snprintf(group, sizeof group, "%.*s", (int)(slash - files.v[i]), files.v[i]);
            else snprintf(group, sizeof group, "%s", files.v[i]);
            rc = dfd_path_join(rel, sizeof rel, cls[label], files.v[i], err);
            if (!rc) rc = add_rel(d, rel, label, group, err);
        }
        strlist_free(&files);
        if (rc) return rc;
    }
    if (!found)
        return dfd_fail(err, DFD_E_NOT_FOUND,
                        "'%s' is not a dataset: no manifest.csv, labels.csv, or real/ and fake/ folders", d->root);
    return DFD_OK;
}

/* Celeb-DF v2: id<A>_<NNNN>.mp4 (real), id<A>_id<B>_<NNNN>.mp4 (fake, made on the real
 * video of identity A with the face of B), YouTube-real/<NNNNN>.mp4 (real, no identity). */
static int open_celebdf(dfd_dataset *d, dfd_error *err) {
    const char *dirs[] = {"Celeb-real", "YouTube-real", "Celeb-synthesis"};
    const int labels[] = {0, 0, 1};
    size_t first = d->n;
    for (int k = 0; k < 3; k++) {
        char *dir = join(d->root, dirs[k]);
        if (!dir) return dfd_fail(err, DFD_E_NOMEM, "no memory");
        if (!is_dir(dir)) {
            free(dir);
            continue;
        }
        strlist files = {0};
        int rc = walk_media(dir, NULL, &files, 0, err);
        free(dir);
        for (size_t i = 0; i < files.n && !rc; i++) {
            char st[256], group[300], rel[1024];
            stem(files.v[i], st, sizeof st);
            if (k == 1) snprintf(group, sizeof group, "youtube/%s", st);
            else {
                size_t n = strcspn(st, "_"); /* "id3" of id3_0001 or id3_id5_0001 */
                snprintf(group, sizeof group, "celeb/%.*s", (int)n, st);
            }
            rc = dfd_path_join(rel, sizeof rel, dirs[k], files.v[i], err);
            if (!rc) rc = add_rel(d, rel, labels[k], group, err);
        }
        strlist_free(&files);
        if (rc) return rc;
    }
    /* The official test list: "<1 real|0 fake> <folder>/<file>" per line. */
    char *list = join(d->root, "List_of_testing_videos.txt");
    if (!list) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    uint8_t *data = NULL;
    size_t len;
    int rc = is_file(list) ? dfd_read_file(list, 64u << 20, &data, &len, err) : DFD_OK;
    long marked = 0, missing = 0;
    if (!rc && data) {
        char *save = NULL;
        for (char *line = strtok_r((char *)data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            int lab;
            char rel[1024];
            if (sscanf(line, "%d %1023s", &lab, rel) != 2) continue;
            int hit = 0;
            for (size_t i = first; i < d->n; i++)
                if (strcmp(d->items[i].source, rel) == 0) {
                    d->items[i].split = DFD_SPLIT_TEST;
                    if ((lab == 1) != (d->items[i].label == 0))
                        dfd_log(DFD_LOG_WARN, "Celeb-DF test list says %s for '%s', its folder says otherwise",
                                lab ? "real" : "fake", rel);
                    hit = 1;
                    marked++;
                }
            if (!hit) missing++;
        }
        if (missing) dfd_log(DFD_LOG_INFO, "Celeb-DF: %ld test-list entries not found in the folder", missing);
    }
    free(data);
    free(list);
    return rc;
}

/* Union-find over names, for FF++'s pairs. */
typedef struct uf {
    char **name;
    int *parent;
    int n, cap;
} uf;

static int uf_find_or_add(uf *u, const char *s) {
    for (int i = 0; i < u->n; i++)
        if (strcmp(u->name[i], s) == 0) return i;
    if (u->n == u->cap) {
        int cn = u->cap, cp = u->cap; /* two arrays of one capacity */
        char **nm = dfd_grow(u->name, &cn, u->n + 1, sizeof *nm, 256);
        if (!nm) return -1;
        u->name = nm;
        int *p = dfd_grow(u->parent, &cp, u->n + 1, sizeof *p, 256);
        if (!p) return -1;
        u->parent = p;
        u->cap = cn < cp ? cn : cp;
    }
    if (!(u->name[u->n] = xstrdup(s))) return -1;
    u->parent[u->n] = u->n;
    return u->n++;
}

static int uf_root(uf *u, int i) {
    while (u->parent[i] != i) i = u->parent[i] = u->parent[u->parent[i]];
    return i;
}

static void uf_free(uf *u) {
    for (int i = 0; i < u->n; i++) free(u->name[i]);
    free(u->name);
    free(u->parent);
}

/* FaceForensics++: originals XXX.mp4; fakes XXX_YYY.mp4 (target XXX, face of YYY). The
 * group of a video is its connected component over these pairs, named by its smallest
 * member; other names (DeepFakeDetection's) are their own group. */
static int open_ffpp(dfd_dataset *d, dfd_error *err) {
    strlist rels = {0};
    int *labels = NULL, rc = DFD_OK;
    const char *tops[2] = {"original_sequences", "manipulated_sequences"};
    size_t nlab = 0;
    for (int t = 0; t < 2 && !rc; t++) {
        char *top = join(d->root, tops[t]);
        if (!top) return dfd_fail(err, DFD_E_NOMEM, "no memory");
        strlist methods = {0};
        if (is_dir(top)) rc = list_dir(top, 1, &methods, err);
        for (size_t m = 0; m < methods.n && !rc; m++) {
            /* Originals: only youtube/ (actors/ belongs to DeepFakeDetection's own originals). */
            if (t == 0 && strcmp(methods.v[m], "youtube") != 0) continue;
            char *mdir = join(top, methods.v[m]);
            strlist comps = {0};
            if (!mdir) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
            else rc = list_dir(mdir, 1, &comps, err);
            for (size_t c = 0; c < comps.n && !rc; c++) {
                char sub[1024];
                snprintf(sub, sizeof sub, "%s/%s/%s/videos", tops[t], methods.v[m], comps.v[c]);
                char *vdir = join(d->root, sub);
                if (!vdir) {
                    rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
                    break;
                }
                strlist files = {0};
                if (is_dir(vdir)) rc = walk_media(vdir, NULL, &files, 0, err);
                free(vdir);
                for (size_t i = 0; i < files.n && !rc; i++) {
                    char rel[2048];
                    if ((rc = dfd_path_join(rel, sizeof rel, sub, files.v[i], err))) break;
                    if (strlist_push(&rels, xstrdup(rel))) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
                    int *nl = realloc(labels, (nlab + 1) * sizeof *nl);
                    if (!nl) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
                    else labels = nl, labels[nlab++] = t;
                }
                strlist_free(&files);
            }
            strlist_free(&comps);
            free(mdir);
        }
        strlist_free(&methods);
        free(top);
    }
    uf u = {0};
    int *ids = rc ? NULL : calloc(rels.n ? rels.n : 1, sizeof *ids);
    if (!rc && !ids) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
    for (size_t i = 0; i < rels.n && !rc; i++) {
        char st[256], a[128], b[128];
        stem(rels.v[i], st, sizeof st);
        int ia, ib = -1;
        if (sscanf(st, "%127[0-9]_%127[0-9]", a, b) == 2 && strlen(a) + strlen(b) + 1 == strlen(st)) {
            ia = uf_find_or_add(&u, a);
            ib = uf_find_or_add(&u, b);
            if (ib < 0) ia = -1;
        } else ia = uf_find_or_add(&u, st);
        if (ia < 0) {
            rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
            break;
        }
        if (ib >= 0) {
            int ra = uf_root(&u, ia), rb = uf_root(&u, ib);
            if (ra != rb) u.parent[ra] = rb;
        }
        ids[i] = ia;
    }
    for (size_t i = 0; i < rels.n && !rc; i++) {
        /* Name the component by its smallest member, for a stable, readable group. */
        int r = uf_root(&u, ids[i]);
        const char *best = NULL;
        for (int j = 0; j < u.n; j++)
            if (uf_root(&u, j) == r && (!best || strcmp(u.name[j], best) < 0)) best = u.name[j];
        char group[300];
        snprintf(group, sizeof group, "ffpp/%s", best);
        rc = add_rel(d, rels.v[i], labels[i], group, err);
    }
    free(ids);
    uf_free(&u);
    free(labels);
    strlist_free(&rels);
    return rc;
}

/* DFDC: dfdc_train_part_*\/metadata.json maps file -> {label, original, split}. */
static int open_dfdc(dfd_dataset *d, dfd_error *err) {
    strlist parts;
    int rc = list_dir(d->root, 1, &parts, err);
    if (rc) return rc;
    for (size_t p = 0; p < parts.n && !rc; p++) {
        if (strncmp(parts.v[p], "dfdc_train_part_", 16) != 0) continue;
        char rel_meta[600];
        snprintf(rel_meta, sizeof rel_meta, "%s/metadata.json", parts.v[p]);
        char *meta = join(d->root, rel_meta);
        if (!meta) {
            rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
            break;
        }
        json_error_t je;
        json_t *j = is_file(meta) ? json_load_file(meta, 0, &je) : NULL;
        if (!j && is_file(meta)) rc = dfd_fail(err, DFD_E_CORRUPT, "%s:%d: %s", meta, je.line, je.text);
        free(meta);
        if (!j) continue;
        if (!json_is_object(j)) rc = dfd_fail(err, DFD_E_CORRUPT, "%s is not a JSON object", rel_meta);
        /* Keys in sorted order: jansson's iteration order is its hash table's. */
        strlist keys = {0};
        const char *key;
        json_t *v;
        if (!rc) json_object_foreach(j, key, v) {
                if (strlist_push(&keys, xstrdup(key))) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
            }
        if (!rc && keys.n) qsort(keys.v, keys.n, sizeof *keys.v, cmp_str);
        for (size_t k = 0; k < keys.n && !rc; k++) {
            v = json_object_get(j, keys.v[k]);
            const char *lab = json_string_value(json_object_get(v, "label"));
            const char *orig = json_string_value(json_object_get(v, "original"));
            int label;
            if (!lab || parse_label(lab, &label)) {
                rc = dfd_fail(err, DFD_E_CORRUPT, "%s: '%s' has no label REAL or FAKE", rel_meta, keys.v[k]);
                break;
            }
            char rel[1024], group[600];
            if ((rc = dfd_path_join(rel, sizeof rel, parts.v[p], keys.v[k], err))) break;
            snprintf(group, sizeof group, "dfdc/%s", label && orig ? orig : keys.v[k]);
            char *full = join(d->root, rel);
            if (!full) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
            else if (is_file(full)) rc = add_rel(d, rel, label, group, err);
            else dfd_log(DFD_LOG_DEBUG, "DFDC: %s listed but absent", rel);
            free(full);
        }
        strlist_free(&keys);
        json_decref(j);
    }
    strlist_free(&parts);
    return rc;
}

static dfd_layout detect_layout(const char *root) {
    char *p;
    int hit;
#define HAS(rel, test) (p = join(root, rel), hit = p && test(p), free(p), hit)
    if (HAS("Celeb-synthesis", is_dir) || HAS("Celeb-real", is_dir) || HAS("List_of_testing_videos.txt", is_file))
        return DFD_LAYOUT_CELEBDF;
    if (HAS("original_sequences", is_dir) || HAS("manipulated_sequences", is_dir)) return DFD_LAYOUT_FFPP;
#undef HAS
    strlist dirs;
    if (list_dir(root, 1, &dirs, NULL) == DFD_OK) {
        int dfdc = 0;
        for (size_t i = 0; i < dirs.n; i++)
            if (strncmp(dirs.v[i], "dfdc_train_part_", 16) == 0) dfdc = 1;
        strlist_free(&dirs);
        if (dfdc) return DFD_LAYOUT_DFDC;
    }
    return DFD_LAYOUT_GENERIC;
}

int dfd_dataset_open(const char *root, dfd_layout layout, dfd_dataset **out, dfd_error *err) {
    *out = NULL;
    if (!root || !is_dir(root)) return dfd_fail(err, DFD_E_NOT_FOUND, "dataset folder '%s' does not exist", root ? root : "");
    dfd_dataset *d;
    int rc = dfd_dataset_new(root, &d, err);
    if (rc) return rc;
    if (layout == DFD_LAYOUT_AUTO) layout = detect_layout(root);
    d->layout = layout;
    switch (layout) {
    case DFD_LAYOUT_CELEBDF: rc = open_celebdf(d, err); break;
    case DFD_LAYOUT_FFPP: rc = open_ffpp(d, err); break;
    case DFD_LAYOUT_DFDC: rc = open_dfdc(d, err); break;
    default: rc = open_generic(d, err); break;
    }
    if (!rc && d->n == 0)
        rc = dfd_fail(err, DFD_E_NOT_FOUND, "no images or videos found in '%s' (layout %s)", root, dfd_layout_name(layout));
    if (rc) {
        dfd_dataset_free(d);
        return rc;
    }
    *out = d;
    return DFD_OK;
}

void dfd_dataset_count(const dfd_dataset *d, int split, long *n_real, long *n_fake) {
    long r = 0, f = 0;
    for (size_t i = 0; i < d->n; i++)
        if (split < 0 || (int)d->items[i].split == split) d->items[i].label ? f++ : r++;
    if (n_real) *n_real = r;
    if (n_fake) *n_fake = f;
}

/* ---- Splits and orders ---------------------------------------------------------------------------- */

uint64_t dfd_hash_str(const char *s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ (seed * 0x9e3779b97f4a7c15ull);
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    /* Final avalanche (splitmix64's), so nearby names and seeds spread out. */
    h ^= h >> 30, h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27, h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

typedef struct grp {
    const char *name;
    uint64_t hash;
    long n_real, n_fake;
    int stratum;
} grp;

static int cmp_grp_name(const void *a, const void *b) { return strcmp(((const grp *)a)->name, ((const grp *)b)->name); }
static int cmp_grp_hash(const void *a, const void *b) {
    const grp *x = a, *y = b;
    if (x->stratum != y->stratum) return x->stratum - y->stratum;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Items by group name, then index: one pass then finds each group. */
typedef struct iref {
    const char *group;
    size_t i;
} iref;
static int cmp_iref(const void *a, const void *b) {
    int c = strcmp(((const iref *)a)->group, ((const iref *)b)->group);
    if (c) return c;
    size_t x = ((const iref *)a)->i, y = ((const iref *)b)->i;
    return x < y ? -1 : x > y;
}

int dfd_dataset_split_groups(dfd_dataset *d, double val_fraction, uint64_t seed, dfd_error *err) {
    if (!(val_fraction >= 0 && val_fraction < 1))
        return dfd_fail(err, DFD_E_ARG, "validation fraction %g is not in [0, 1)", val_fraction);
    iref *r = dfd_malloc_array(d->n ? d->n : 1, sizeof *r);
    grp *g = dfd_malloc_array(d->n ? d->n : 1, sizeof *g);
    size_t *gi = dfd_malloc_array(d->n ? d->n : 1, sizeof *gi); /* item -> group */
    if (!r || !g || !gi) {
        free(r), free(g), free(gi);
        return dfd_fail(err, DFD_E_NOMEM, "no memory to split %zu items", d->n);
    }
    size_t m = 0, ng = 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->items[i].split != DFD_SPLIT_TEST) r[m++] = (iref){d->items[i].group, i};
    qsort(r, m, sizeof *r, cmp_iref);
    for (size_t k = 0; k < m; k++) {
        if (k == 0 || strcmp(r[k].group, r[k - 1].group) != 0)
            g[ng++] = (grp){r[k].group, dfd_hash_str(r[k].group, seed), 0, 0, 0};
        grp *c = &g[ng - 1];
        d->items[r[k].i].label ? c->n_fake++ : c->n_real++;
        gi[r[k].i] = ng - 1;
    }
    /* Strata: 0 only reals, 1 both, 2 only fakes. Within one, groups go to validation in
     * hash order until the stratum's validation share reaches the fraction. */
    long want[3] = {0}, have[3] = {0};
    for (size_t k = 0; k < ng; k++) {
        g[k].stratum = g[k].n_fake == 0 ? 0 : g[k].n_real == 0 ? 2 : 1;
        want[g[k].stratum] += g[k].n_real + g[k].n_fake;
    }
    unsigned char *to_val = calloc(ng ? ng : 1, 1);
    size_t *order = dfd_malloc_array(ng ? ng : 1, sizeof *order);
    grp *sorted = dfd_malloc_array(ng ? ng : 1, sizeof *sorted);
    if (!to_val || !order || !sorted) {
        free(r), free(g), free(gi), free(to_val), free(order), free(sorted);
        return dfd_fail(err, DFD_E_NOMEM, "no memory to split %zu groups", ng);
    }
    memcpy(sorted, g, ng * sizeof *g);
    qsort(sorted, ng, sizeof *sorted, cmp_grp_hash);
    for (size_t k = 0; k < ng; k++) {
        grp *c = &sorted[k];
        long size = c->n_real + c->n_fake;
        double target = val_fraction * (double)want[c->stratum];
        /* Take the group if that brings the share closer to the target than leaving it. */
        if (fabs((double)(have[c->stratum] + size) - target) < fabs((double)have[c->stratum] - target)) {
            have[c->stratum] += size;
            grp key = *c;
            grp *orig = bsearch(&key, g, ng, sizeof *g, cmp_grp_name);
            to_val[orig - g] = 1;
        }
    }
    for (size_t k = 0; k < m; k++) d->items[r[k].i].split = to_val[gi[r[k].i]] ? DFD_SPLIT_VAL : DFD_SPLIT_TRAIN;
    free(r), free(g), free(gi), free(to_val), free(order), free(sorted);
    return DFD_OK;
}

void dfd_dataset_class_weights(const dfd_dataset *d, int split, float w[2]) {
    long nr, nf;
    dfd_dataset_count(d, split, &nr, &nf);
    double n = (double)(nr + nf);
    w[0] = nr ? (float)(n / (2.0 * nr)) : 1.0f;
    w[1] = nf ? (float)(n / (2.0 * nf)) : 1.0f;
}

static int cmp_size_t(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void shuffle(size_t *v, size_t n, nn_rng *r) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(nn_rng_next(r) % i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* The candidates of an epoch: the items i < n of `split` (-1 = all) that skip does not mark
 * (NULL: none), per class in index order, into cls[c] (n long each) and cn[c]. With
 * undersample the larger class is cut at random to the size of the smaller (the kept ones
 * back in index order, so that the caller's final shuffle alone sets the order); `paired`
 * more of each class (pairs, kept whole) count only in the test that both classes exist.
 * Draws from r before the caller's shuffle, in the same order for both epoch orders. */
static void pick_by_class(const int *labels, const int *splits, const unsigned char *skip, size_t n, int split,
                          int undersample, size_t paired, nn_rng *r, size_t *cls[2], size_t cn[2]) {
    cn[0] = cn[1] = 0;
    for (size_t i = 0; i < n; i++)
        if ((split < 0 || splits[i] == split) && !(skip && skip[i])) cls[labels[i] ? 1 : 0][cn[labels[i] ? 1 : 0]++] = i;
    if (undersample && paired + cn[0] && paired + cn[1]) {
        int big = cn[1] > cn[0];
        shuffle(cls[big], cn[big], r);
        cn[big] = cn[!big];
        if (cn[big]) qsort(cls[big], cn[big], sizeof(size_t), cmp_size_t);
    }
}

int dfd_order_balanced(const int *labels, const int *splits, size_t n, int split, int undersample, uint64_t seed,
                       long limit, size_t **idx, size_t *count, dfd_error *err) {
    *idx = NULL;
    *count = 0;
    size_t *cls[2], cn[2];
    cls[0] = dfd_malloc_array(n ? n : 1, sizeof(size_t));
    cls[1] = dfd_malloc_array(n ? n : 1, sizeof(size_t));
    if (!cls[0] || !cls[1]) {
        free(cls[0]), free(cls[1]);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for an epoch of %zu samples", n);
    }
    nn_rng r;
    nn_rng_seed(&r, seed);
    pick_by_class(labels, splits, NULL, n, split, undersample, 0, &r, cls, cn);
    size_t total = cn[0] + cn[1];
    size_t *out = dfd_malloc_array(total ? total : 1, sizeof *out);
    if (!out) {
        free(cls[0]), free(cls[1]);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for an epoch of %zu samples", total);
    }
    /* Merge back in index order, then shuffle. */
    size_t a = 0, b = 0, k = 0;
    while (a < cn[0] || b < cn[1]) out[k++] = (b >= cn[1] || (a < cn[0] && cls[0][a] < cls[1][b])) ? cls[0][a++] : cls[1][b++];
    shuffle(out, total, &r);
    if (limit > 0 && (size_t)limit < total) total = (size_t)limit;
    free(cls[0]), free(cls[1]);
    *idx = out;
    *count = total;
    return DFD_OK;
}

/* ---- Paired epochs (--paired) ------------------------------------------------------------ */

/* Marks a unit that is one item, not a pair (the top bit: item indices never reach it). */
#define UNIT_SINGLE ((size_t)1 << (sizeof(size_t) * 8 - 1))

typedef struct gref {
    const char *group;
    size_t i;
} gref;
static int cmp_gref(const void *a, const void *b) {
    const gref *x = a, *y = b;
    int c = strcmp(x->group, y->group);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

int dfd_dataset_fake_partners(const dfd_dataset *d, int split, size_t **partner, size_t *n_pairs, dfd_error *err) {
    *partner = NULL;
    *n_pairs = 0;
    size_t *p = dfd_malloc_array(d->n ? d->n : 1, sizeof *p);
    gref *reals = dfd_malloc_array(d->n ? d->n : 1, sizeof *reals);
    unsigned char *taken = calloc(d->n ? d->n : 1, 1);
    if (!p || !reals || !taken) {
        free(p), free(reals), free(taken);
        return dfd_fail(err, DFD_E_NOMEM, "no memory to pair %zu items", d->n);
    }
    size_t nr = 0;
    for (size_t i = 0; i < d->n; i++) {
        p[i] = DFD_NO_PARTNER;
        const dfd_item *it = &d->items[i];
        if (it->label == 0 && it->group && (split < 0 || (int)it->split == split)) reals[nr++] = (gref){it->group, i};
    }
    qsort(reals, nr, sizeof *reals, cmp_gref);
    for (size_t i = 0; i < d->n; i++) {
        const dfd_item *it = &d->items[i];
        if (it->label != 1 || !it->group || (split >= 0 && (int)it->split != split)) continue;
        /* The first real of the group in index order that no fake has claimed yet. */
        size_t lo = 0, hi = nr;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(reals[mid].group, it->group) < 0) lo = mid + 1;
            else hi = mid;
        }
        for (; lo < nr && strcmp(reals[lo].group, it->group) == 0; lo++)
            if (!taken[reals[lo].i]) {
                taken[reals[lo].i] = 1;
                p[i] = reals[lo].i;
                (*n_pairs)++;
                break;
            }
    }
    free(reals), free(taken);
    *partner = p;
    return DFD_OK;
}

int dfd_order_paired(const int *labels, const int *splits, const size_t *partner, size_t n, int split, int undersample,
                     uint64_t seed, long limit, size_t **idx, unsigned char **with_prev, size_t *count, dfd_error *err) {
    *idx = NULL, *with_prev = NULL, *count = 0;
    /* Units: a pair (named by its fake's index) or a single item (UNIT_SINGLE set). in_pair
     * marks both items of every pair, so neither is drawn again as a single. */
    size_t *units = dfd_malloc_array(n ? n : 1, sizeof *units), *singles[2];
    unsigned char *in_pair = calloc(n ? n : 1, 1);
    singles[0] = dfd_malloc_array(n ? n : 1, sizeof(size_t));
    singles[1] = dfd_malloc_array(n ? n : 1, sizeof(size_t));
    size_t *out = dfd_malloc_array(n ? n : 1, sizeof *out);
    unsigned char *wp = calloc(n ? n : 1, 1);
    if (!units || !in_pair || !singles[0] || !singles[1] || !out || !wp) {
        free(units), free(in_pair), free(singles[0]), free(singles[1]), free(out), free(wp);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for an epoch of %zu samples", n);
    }
    size_t np = 0, ns[2];
    for (size_t i = 0; i < n; i++) {
        size_t q = partner ? partner[i] : DFD_NO_PARTNER;
        if (labels[i] && q < n && !labels[q] && !in_pair[q] && (split < 0 || (splits[i] == split && splits[q] == split)))
            in_pair[q] = 1, units[np++] = i;
    }
    for (size_t u = 0; u < np; u++) in_pair[units[u]] = 1; /* the pairs' fakes too */
    nn_rng r;
    nn_rng_seed(&r, seed);
    /* Pairs hold one of each class: undersampling cuts the larger class's singles alone. */
    pick_by_class(labels, splits, in_pair, n, split, undersample, np, &r, singles, ns);
    size_t nu = np;
    for (int c = 0; c < 2; c++)
        for (size_t k = 0; k < ns[c]; k++) units[nu++] = singles[c][k] | UNIT_SINGLE;
    shuffle(units, nu, &r);
    size_t k = 0;
    for (size_t u = 0; u < nu; u++) {
        size_t i = units[u] & ~UNIT_SINGLE;
        if (units[u] & UNIT_SINGLE) {
            out[k++] = i;
        } else { /* the real first, then its fake, which shares its draws */
            out[k++] = partner[i];
            wp[k] = 1;
            out[k++] = i;
        }
    }
    if (limit > 0 && (size_t)limit < k) k = (size_t)limit;
    free(units), free(in_pair), free(singles[0]), free(singles[1]);
    *idx = out, *with_prev = wp, *count = k;
    return DFD_OK;
}

void dfd_sort_indices(size_t *idx, size_t n) {
    if (n) qsort(idx, n, sizeof *idx, cmp_size_t);
}

int dfd_dataset_epoch_order(const dfd_dataset *d, int split, int undersample, uint64_t seed, long limit,
                            size_t **idx, size_t *n, dfd_error *err) {
    int *labels = dfd_malloc_array(d->n ? d->n : 1, sizeof *labels), *splits = dfd_malloc_array(d->n ? d->n : 1, sizeof *splits);
    if (!labels || !splits) {
        free(labels), free(splits);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for an epoch of %zu items", d->n);
    }
    for (size_t i = 0; i < d->n; i++) labels[i] = d->items[i].label, splits[i] = (int)d->items[i].split;
    int rc = dfd_order_balanced(labels, splits, d->n, split, undersample, seed, limit, idx, n, err);
    free(labels), free(splits);
    return rc;
}

/* ---- Sequences -------------------------------------------------------------------------------------- */

typedef struct sref {
    const char *source;
    int frame;
    size_t i;
} sref;
static int cmp_sref(const void *a, const void *b) {
    const sref *x = a, *y = b;
    int c = strcmp(x->source, y->source);
    if (c) return c;
    if (x->frame != y->frame) return x->frame < y->frame ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int dfd_dataset_sequences(const dfd_dataset *d, int min_frames, size_t **order, dfd_sequence **seqs, size_t *n_seqs,
                          dfd_error *err) {
    *order = NULL;
    *seqs = NULL;
    *n_seqs = 0;
    sref *r = dfd_malloc_array(d->n ? d->n : 1, sizeof *r);
    size_t *o = dfd_malloc_array(d->n ? d->n : 1, sizeof *o);
    dfd_sequence *s = dfd_malloc_array(d->n ? d->n : 1, sizeof *s);
    if (!r || !o || !s) {
        free(r), free(o), free(s);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for sequences of %zu items", d->n);
    }
    for (size_t i = 0; i < d->n; i++) r[i] = (sref){d->items[i].source, d->items[i].frame, i};
    qsort(r, d->n, sizeof *r, cmp_sref);
    size_t ns = 0, k = 0;
    while (k < d->n) {
        size_t j = k;
        while (j < d->n && strcmp(r[j].source, r[k].source) == 0) j++;
        if ((long)(j - k) >= min_frames) {
            s[ns] = (dfd_sequence){k, (int)(j - k), d->items[r[k].i].label, d->items[r[k].i].split};
            ns++;
        }
        for (size_t t = k; t < j; t++) o[t] = r[t].i;
        k = j;
    }
    free(r);
    *order = o;
    *seqs = s;
    *n_seqs = ns;
    return DFD_OK;
}

/* ---- Manifest ------------------------------------------------------------------------------------------ */

/* Writes a CSV field, quoted when it holds a comma, quote or newline. */
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int dfd_dataset_write_manifest(const dfd_dataset *d, const char *path, dfd_error *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return dfd_fail(err, DFD_E_NOMEM, "no memory for a manifest");
    /* Paths relative to the manifest's folder when they lie under it. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    size_t dl = strlen(dir);
    fputs("file,label,group,source,frame,box,split\n", f);
    for (size_t i = 0; i < d->n; i++) {
        const dfd_item *it = &d->items[i];
        const char *file = it->path;
        if (strncmp(file, dir, dl) == 0 && file[dl] == '/') file += dl + 1;
        csv_field(f, file);
        fprintf(f, ",%s,", it->label ? "fake" : "real");
        csv_field(f, it->group);
        fputc(',', f);
        csv_field(f, it->source);
        fprintf(f, ",%d,", it->frame);
        if (!isnan(it->box[0])) fprintf(f, "%.1f %.1f %.1f %.1f", it->box[0], it->box[1], it->box[2], it->box[3]);
        fprintf(f, ",%s\n", it->split == DFD_SPLIT_TEST ? "test" : "");
    }
    if (fclose(f) != 0) {
        free(buf);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for a manifest");
    }
    int rc = dfd_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}
