/* options.c — the options of prepare, train, eval and calibrate by name, with text values: what
 * `dfd prepare|train|eval|calibrate --NAME VALUE` means, said once, here (include/dfd/train.h). The
 * public option objects own copies of their strings; the *_apply functions work on the
 * plain structs (tests) and keep the caller's strings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "train/train.h"

/* ---- Values -------------------------------------------------------------------------- */

static int need(const char *name, const char *v, dfd_error *err) {
    if (!v || !*v) return dfd_fail(err, DFD_E_ARG, "--%s needs a value", name);
    return DFD_OK;
}

static int whole(const char *name, const char *v, long min, long max, long *out, dfd_error *err) {
    if (need(name, v, err)) return DFD_E_ARG;
    char *end;
    errno = 0;
    long l = strtol(v, &end, 10);
    if (errno || *end || l < min || l > max)
        return dfd_fail(err, DFD_E_ARG, "--%s wants a whole number in %ld..%ld, not '%s'", name, min, max, v);
    *out = l;
    return DFD_OK;
}

static int number(const char *name, const char *v, double min, double max, double *out, dfd_error *err) {
    if (need(name, v, err)) return DFD_E_ARG;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || *end || !(d >= min && d <= max))
        return dfd_fail(err, DFD_E_ARG, "--%s wants a number in [%g, %g], not '%s'", name, min, max, v);
    *out = d;
    return DFD_OK;
}

/* The index of v in the NULL-terminated names, or DFD_E_ARG listing them. */
static int one_of(const char *name, const char *v, const char *const *names, int *out, dfd_error *err) {
    if (need(name, v, err)) return DFD_E_ARG;
    char list[160] = "";
    for (int i = 0; names[i]; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return DFD_OK;
        }
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", names[i]);
    }
    return dfd_fail(err, DFD_E_ARG, "--%s wants one of %s, not '%s'", name, list, v);
}

static int layout(const char *name, const char *v, dfd_layout *out, dfd_error *err) {
    if (need(name, v, err)) return DFD_E_ARG;
    if (dfd_layout_parse(v, out)) return dfd_fail(err, DFD_E_ARG, "unknown layout '%s'", v);
    return DFD_OK;
}

static int flag(const char *name, const char *v, dfd_error *err) {
    if (v) return dfd_fail(err, DFD_E_ARG, "--%s takes no value", name);
    return DFD_OK;
}

static int unknown(const char *cmd, const char *name, dfd_error *err) {
    return dfd_fail(err, DFD_E_NOT_FOUND, "%s has no option '--%s'", cmd, name ? name : "");
}

#define IS(s) (strcmp(name, s) == 0)

/* ---- prepare ------------------------------------------------------------------------- */

int dfd_prepare_opts_apply(dfd_prepare_opts *o, const char *name, const char *v, dfd_error *err) {
    static const char *const modes[] = {"auto", "short", "full", NULL};
    long l;
    double d;
    int k, rc;
    if (!o || !name) return dfd_fail(err, DFD_E_ARG, "no options or no name");
    if (IS("sequences")) return (rc = flag(name, v, err)) ? rc : (o->sequences = 1, DFD_OK);
    if (IS("data")) return (rc = need(name, v, err)) ? rc : (o->data = v, DFD_OK);
    if (IS("out")) return (rc = need(name, v, err)) ? rc : (o->out = v, DFD_OK);
    if (IS("models")) return (rc = need(name, v, err)) ? rc : (o->models_dir = v, DFD_OK);
    if (IS("layout")) return layout(name, v, &o->layout, err);
    if (IS("face-mode")) return (rc = one_of(name, v, modes, &k, err)) ? rc : (o->face_mode = k, DFD_OK);
    if (IS("margin")) return (rc = number(name, v, 1, 4, &d, err)) ? rc : (o->margin = (float)d, DFD_OK);
    int *ip = IS("per-video") ? &o->per_video : IS("frames") ? &o->frames : IS("min-faces") ? &o->min_faces
            : IS("size") ? &o->size : IS("quality") ? &o->quality : IS("workers") ? &o->workers : NULL;
    if (ip) return (rc = whole(name, v, 1, 1000000000L, &l, err)) ? rc : (*ip = (int)l, DFD_OK);
    if (IS("limit")) return (rc = whole(name, v, 1, 1000000000L, &l, err)) ? rc : (o->limit = l, DFD_OK);
    return unknown("prepare", name, err);
}

/* ---- train --------------------------------------------------------------------------- */

int dfd_train_opts_apply(dfd_train_opts *o, const char *name, const char *v, dfd_error *err) {
    long l;
    double d;
    int k, rc;
    if (!o || !name) return dfd_fail(err, DFD_E_ARG, "no options or no name");
    /* Strings. */
    const char **sp = IS("arch") ? &o->arch : IS("task") ? &o->task : IS("data") ? &o->data : IS("val") ? &o->val
                    : IS("out") ? &o->out : IS("extra-real") ? &o->extra_real : IS("init") ? &o->init
                    : IS("resume") ? &o->resume : IS("freeze-until") ? &o->freeze_until
                    : IS("stage2-from") ? &o->stage2_from : IS("cache-file") ? &o->cache_file
                    : IS("models") ? &o->models_dir : NULL;
    if (sp) return (rc = need(name, v, err)) ? rc : (*sp = v, DFD_OK);
    /* Flags. */
    int *fp = IS("freeze-bn") ? &o->freeze_bn : IS("keep-epochs") ? &o->keep_epochs : IS("bf16-save") ? &o->bf16_save
            : IS("real-only") ? &o->real_only : IS("paired") ? &o->paired
            : IS("sbi-loc-reals") ? &o->sbi_loc_reals : NULL;
    if (fp) return (rc = flag(name, v, err)) ? rc : (*fp = 1, DFD_OK);
    if (IS("no-augment")) return (rc = flag(name, v, err)) ? rc : (o->augment = 0, DFD_OK);
    if (IS("no-cache")) return (rc = flag(name, v, err)) ? rc : (o->cache_mb = 0, DFD_OK);
    /* Choices. */
    if (IS("sbi-mask")) {
        static const char *const m[] = {"ellipse", "landmarks", NULL};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->sbi_landmarks = k, DFD_OK);
    }
    if (IS("norm")) {
        const char *m[DFD_NORM_COUNT + 1] = {NULL}; /* the crop contract's names, in dfd_norm order */
        for (int i = 0; i < DFD_NORM_COUNT; i++) m[i] = dfd_norm_name((dfd_norm)i);
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->norm = k, DFD_OK);
    }
    if (IS("precision")) {
        static const char *const m[] = {"fp32", "bf16", NULL};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->precision = k ? NN_PREC_BF16 : NN_PREC_F32, DFD_OK);
    }
    if (IS("cache-format")) { /* in dfd_cache_format's order */
        static const char *const m[] = {"auto", "rgb", "yuv420", NULL};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->cache_format = (dfd_cache_format)k, DFD_OK);
    }
    if (IS("feed")) {
        static const char *const m[] = {"turns", "ahead", NULL};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->feed_ahead = k, DFD_OK);
    }
    if (IS("optimizer")) {
        static const char *const m[] = {"adam", "adamw", "sgd", NULL};
        static const nn_optim_kind kinds[] = {NN_OPT_ADAM, NN_OPT_ADAMW, NN_OPT_SGD};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->optimizer = kinds[k], DFD_OK);
    }
    if (IS("schedule")) {
        static const char *const m[] = {"cosine", "constant", "step", NULL};
        static const nn_lr_schedule kinds[] = {NN_LR_COSINE, NN_LR_CONSTANT, NN_LR_STEP};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->schedule = kinds[k], DFD_OK);
    }
    if (IS("balance")) {
        static const char *const m[] = {"undersample", "weights", "none", NULL};
        static const dfd_balance kinds[] = {DFD_BALANCE_UNDERSAMPLE, DFD_BALANCE_WEIGHTS, DFD_BALANCE_NONE};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->balance = kinds[k], DFD_OK);
    }
    if (IS("backend")) {
        static const char *const m[] = {"dnnl", "ref", NULL};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->backend = k ? NN_BACKEND_REF : NN_BACKEND_DNNL, DFD_OK);
    }
    if (IS("layout")) return layout(name, v, &o->layout, err);
    if (IS("jpeg-quality")) {
        int lo, hi;
        char tail;
        if (need(name, v, err)) return DFD_E_ARG;
        if (sscanf(v, "%d:%d%c", &lo, &hi, &tail) != 2 || lo < 1 || hi > 100 || lo > hi)
            return dfd_fail(err, DFD_E_ARG, "--jpeg-quality wants LO:HI within 1..100, not '%s'", v);
        o->aug.jpeg_qmin = lo, o->aug.jpeg_qmax = hi;
        return DFD_OK;
    }
    /* Numbers. */
    if (IS("cache-mb")) return (rc = whole(name, v, 0, 1L << 30, &l, err)) ? rc : (o->cache_mb = l, DFD_OK);
    if (IS("threshold-fpr")) return number(name, v, 0, 0.5, &o->threshold_fpr, err);
    if (IS("val-fraction")) return number(name, v, 0, 0.9, &o->val_fraction, err);
    int *ip = IS("epochs") ? &o->epochs : IS("stage1-epochs") ? &o->stage1_epochs : IS("batch") ? &o->batch
            : IS("input-size") ? &o->input_size : IS("frames") ? &o->frames : IS("patience") ? &o->patience
            : IS("threads") ? &o->threads : IS("loader-threads") ? &o->loader_threads : NULL;
    if (ip) return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (*ip = (int)l, DFD_OK);
    long *lp = IS("limit") ? &o->limit : IS("val-limit") ? &o->val_limit : IS("warmup-steps") ? &o->warmup_steps : NULL;
    if (lp) return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (*lp = l, DFD_OK);
    if (IS("seed")) return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (o->seed = (uint64_t)l, DFD_OK);
    if (IS("split-seed"))
        return (rc = whole(name, v, 1, 1000000000L, &l, err)) ? rc : (o->split_seed = (uint64_t)l, DFD_OK);
    if (IS("bn-recalibrate"))
        return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (o->bn_recalibrate = (int)(l > 10000 ? 10000 : l), DFD_OK);
    if (IS("bn-momentum")) {
        if ((rc = number(name, v, 0, 1000, &d, err))) return rc;
        if (d >= 1) return dfd_fail(err, DFD_E_ARG, "--bn-momentum wants 0..1 (exclusive)");
        o->bn_momentum = (float)d;
        return DFD_OK;
    }
    float *gp = IS("lr") ? &o->lr : IS("stage2-lr") ? &o->stage2_lr : IS("weight-decay") ? &o->weight_decay
              : IS("width") ? &o->width : IS("dropout") ? &o->dropout : IS("sbi-fraction") ? &o->sbi_fraction
              : IS("sbi-loc") ? &o->sbi_loc
              : IS("rotate") ? &o->aug.rotate : IS("shift") ? &o->aug.shift : IS("scale") ? &o->aug.scale : NULL;
    if (gp) return (rc = number(name, v, 0, 1000, &d, err)) ? rc : (*gp = (float)d, DFD_OK);
    float *share = IS("sbi-part") ? &o->sbi.part : IS("real-downscale") ? &o->real_downscale : NULL;
    if (share) return (rc = number(name, v, 0, 1, &d, err)) ? rc : (*share = (float)d, DFD_OK);
    if (IS("sbi-margin")) {
        if ((rc = number(name, v, 0, 1000, &d, err))) return rc;
        if (d > 0) dfd_sbi_opts_for_margin(&o->sbi, (float)d, 0);
        return DFD_OK;
    }
    /* Augmentation probabilities. */
    float *pp = IS("flip") ? &o->aug.flip : IS("affine") ? &o->aug.affine : IS("color") ? &o->aug.color
              : IS("blur") ? &o->aug.blur : IS("noise") ? &o->aug.noise : IS("downscale") ? &o->aug.downscale
              : IS("jpeg") ? &o->aug.jpeg : IS("cutout") ? &o->aug.cutout : NULL;
    if (pp) {
        if (need(name, v, err)) return DFD_E_ARG;
        if (number(name, v, 0, 1, &d, NULL))
            return dfd_fail(err, DFD_E_ARG, "--%s wants a probability in [0, 1], not '%s'", name, v);
        *pp = (float)d;
        return DFD_OK;
    }
    return unknown("train", name, err);
}

int dfd_train_opts_check(const dfd_train_opts *o, dfd_error *err) {
    if (!o) return dfd_fail(err, DFD_E_ARG, "no options");
    if (!o->arch) return dfd_fail(err, DFD_E_ARG, "--arch is required");
    if (!o->data) return dfd_fail(err, DFD_E_ARG, "--data is required");
    if (o->task && strcmp(o->task, "manipulation") != 0 && strcmp(o->task, "synthetic") != 0)
        return dfd_fail(err, DFD_E_ARG, "--task must be 'manipulation' or 'synthetic', not '%s'", o->task);
    if (o->task && o->video && strcmp(o->task, "synthetic") == 0)
        return dfd_fail(err, DFD_E_ARG, "--task synthetic is for image models only");
    return DFD_OK;
}

/* ---- eval ---------------------------------------------------------------------------- */

int dfd_eval_opts_apply(dfd_eval_opts *o, const char *name, const char *v, dfd_error *err) {
    long l;
    int k, rc;
    if (!o || !name) return dfd_fail(err, DFD_E_ARG, "no options or no name");
    if (IS("flip")) return (rc = flag(name, v, err)) ? rc : (o->flip_tta = 1, DFD_OK);
    if (IS("model")) return (rc = need(name, v, err)) ? rc : (o->model = v, DFD_OK);
    if (IS("data")) return (rc = need(name, v, err)) ? rc : (o->data = v, DFD_OK);
    if (IS("out")) return (rc = need(name, v, err)) ? rc : (o->out = v, DFD_OK);
    if (IS("level")) {
        static const char *const m[] = {"frame", "video", "group", NULL};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->video_level = k, DFD_OK);
    }
    if (IS("aggregation")) {
        static const char *const m[] = {"confident", "mean", NULL};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->aggregation = k ? DFD_AGG_MEAN : DFD_AGG_CONFIDENT, DFD_OK);
    }
    if (IS("split")) {
        static const char *const m[] = {"all", "test", "val", "train", NULL};
        static const dfd_eval_split s[] = {DFD_EVAL_ALL, DFD_EVAL_TEST, DFD_EVAL_VAL, DFD_EVAL_TRAIN};
        return (rc = one_of(name, v, m, &k, err)) ? rc : (o->split = s[k], DFD_OK);
    }
    if (IS("layout")) return layout(name, v, &o->layout, err);
    if (IS("threshold")) return number(name, v, 0, 1, &o->threshold, err);
    if (IS("val-fraction")) return number(name, v, 0, 0.9, &o->val_fraction, err);
    if (IS("limit")) return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (o->limit = l, DFD_OK);
    if (IS("threads")) return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (o->threads = (int)l, DFD_OK);
    if (IS("seed")) return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (o->seed = (uint64_t)l, DFD_OK);
    return unknown("eval", name, err);
}

/* ---- calibrate ----------------------------------------------------------------------- */

int dfd_calibrate_opts_apply(dfd_calibrate_opts *o, const char *name, const char *v, dfd_error *err) {
    long l;
    int rc;
    if (!o || !name) return dfd_fail(err, DFD_E_ARG, "no options or no name");
    if (IS("model")) return (rc = need(name, v, err)) ? rc : (o->model = v, DFD_OK);
    if (IS("out")) return (rc = need(name, v, err)) ? rc : (o->out = v, DFD_OK);
    if (IS("data") || IS("data-val")) {
        if ((rc = need(name, v, err))) return rc;
        if (o->n_data >= DFD_CALIBRATE_MAX_SOURCES)
            return dfd_fail(err, DFD_E_ARG, "at most %d folders (--data, --data-val)", DFD_CALIBRATE_MAX_SOURCES);
        o->data_val[o->n_data] = IS("data-val");
        o->data[o->n_data++] = v;
        return DFD_OK;
    }
    if (IS("fpr")) return number(name, v, 0.0001, 0.5, &o->fpr, err);
    if (IS("degrade")) return (rc = whole(name, v, 0, 16, &l, err)) ? rc : (o->degrade = (int)l, DFD_OK);
    if (IS("val-fraction")) return number(name, v, 0.01, 0.9, &o->val_fraction, err);
    if (IS("limit")) return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (o->limit = l, DFD_OK);
    if (IS("threads")) return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (o->threads = (int)l, DFD_OK);
    if (IS("seed")) return (rc = whole(name, v, 0, 1000000000L, &l, err)) ? rc : (o->seed = (uint64_t)l, DFD_OK);
    return unknown("calibrate", name, err);
}

#undef IS

/* ---- The public objects: a plain struct first, then the copies of its strings ----------- */

typedef struct owned {
    char **s;
    int n, cap;
} owned;

static const char *keep(owned *w, const char *v) {
    if (!v) return NULL;
    char **ns = dfd_grow(w->s, &w->cap, w->n + 1, sizeof *ns, 16);
    if (!ns) return NULL;
    w->s = ns;
    char *c = strdup(v);
    if (c) w->s[w->n++] = c;
    return c;
}

static void owned_free(owned *w) {
    for (int i = 0; i < w->n; i++) free(w->s[i]);
    free(w->s);
}

#define PUBLIC_OPTS(kind, cmd)                                                                              \
    typedef struct kind##_box {                                                                             \
        dfd_##kind##_opts o; /* first: a pointer to the box is a pointer to o */                            \
        owned strings;                                                                                      \
    } kind##_box;                                                                                           \
    void dfd_##kind##_opts_destroy(dfd_##kind##_opts *o) {                                                  \
        if (!o) return;                                                                                     \
        kind##_box *b = (kind##_box *)o;                                                                    \
        owned_free(&b->strings);                                                                            \
        free(b);                                                                                            \
    }                                                                                                       \
    int dfd_##kind##_opts_set(dfd_##kind##_opts *o, const char *name, const char *value, dfd_error *err) { \
        if (!o) return dfd_fail(err, DFD_E_ARG, cmd ": no options");                                        \
        const char *v = value ? keep(&((kind##_box *)o)->strings, value) : NULL;                            \
        if (value && !v) return dfd_fail(err, DFD_E_NOMEM, "out of memory");                                \
        return dfd_##kind##_opts_apply(o, name, v, err);                                                    \
    }

PUBLIC_OPTS(prepare, "prepare")
PUBLIC_OPTS(train, "train")
PUBLIC_OPTS(eval, "eval")
PUBLIC_OPTS(calibrate, "calibrate")

int dfd_prepare_opts_create(dfd_prepare_opts **out, dfd_error *err) {
    if (!out) return dfd_fail(err, DFD_E_ARG, "no out");
    prepare_box *b = calloc(1, sizeof *b);
    if (!(*out = b ? &b->o : NULL)) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    dfd_prepare_opts_default(&b->o);
    return DFD_OK;
}

int dfd_train_opts_create(int video, dfd_train_opts **out, dfd_error *err) {
    if (!out) return dfd_fail(err, DFD_E_ARG, "no out");
    train_box *b = calloc(1, sizeof *b);
    if (!(*out = b ? &b->o : NULL)) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    dfd_train_opts_default(&b->o);
    b->o.video = video != 0;
    if (b->o.video) b->o.batch = 8;
    return DFD_OK;
}

int dfd_eval_opts_create(dfd_eval_opts **out, dfd_error *err) {
    if (!out) return dfd_fail(err, DFD_E_ARG, "no out");
    eval_box *b = calloc(1, sizeof *b);
    if (!(*out = b ? &b->o : NULL)) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    dfd_eval_opts_default(&b->o);
    return DFD_OK;
}

void dfd_eval_opts_set_progress(dfd_eval_opts *o, dfd_progress_fn fn, void *user) {
    if (!o) return;
    o->progress = fn;
    o->user = user;
}

int dfd_calibrate_opts_create(dfd_calibrate_opts **out, dfd_error *err) {
    if (!out) return dfd_fail(err, DFD_E_ARG, "no out");
    calibrate_box *b = calloc(1, sizeof *b);
    if (!(*out = b ? &b->o : NULL)) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    dfd_calibrate_opts_default(&b->o);
    return DFD_OK;
}

void dfd_calibrate_opts_set_progress(dfd_calibrate_opts *o, dfd_progress_fn fn, void *user) {
    if (!o) return;
    o->progress = fn;
    o->user = user;
}

char *dfd_metrics_json(const dfd_metrics *m) {
    json_t *j = m ? dfd_metrics_to_json(m) : NULL;
    char *t = j ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(j);
    return t;
}
