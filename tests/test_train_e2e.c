/* test_train_e2e — training end to end on a small generated dataset whose classes are
 * easy to tell apart (fakes carry a textured patch): tiny-cnn learns it (validation AUC
 * well above chance), the run writes its checkpoint, state, best model and history; the
 * best model loads and its stored threshold and metrics are consistent; the same seed
 * gives the same weights; --resume continues the history; the second stage leaves the
 * frozen layers untouched; a video model trains on sequences; dfd eval on the validation
 * split agrees with the numbers training stored and is deterministic. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/model_file.h"
#include "io/safetensors.h"
#include "train/train.h"

/* Writes n images per class under root/{real,fake}/, 48x48 JPEG, and a labels.csv with
 * groups of two images each. Reals are smooth gradients; fakes the same with a noisy patch. */
static void make_dataset(const char *root, int n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/real", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/fake", root);
    mkdir(p, 0755);
    char *csv = malloc(64 * 1024);
    size_t len = (size_t)snprintf(csv, 64 * 1024, "file,label,group\n");
    unsigned x = 1;
    for (int label = 0; label < 2; label++)
        for (int i = 0; i < n; i++) {
            dfd_image im;
            assert_int_equal(dfd_image_alloc(&im, 48, 48, NULL), DFD_OK);
            x = x * 1103515245u + 12345u;
            int r0 = (int)(x >> 24), g0 = (int)((x >> 16) & 255), b0 = (int)((x >> 8) & 255);
            for (int y = 0; y < 48; y++)
                for (int xx = 0; xx < 48; xx++) {
                    uint8_t *q = im.rgb + (y * 48 + xx) * 3;
                    q[0] = (uint8_t)((r0 + 2 * xx) & 255), q[1] = (uint8_t)((g0 + 2 * y) & 255), q[2] = (uint8_t)b0;
                    if (label && xx >= 12 && xx < 36 && y >= 12 && y < 36) {
                        x = x * 1103515245u + 12345u;
                        q[0] = q[1] = q[2] = (uint8_t)((x >> 16) & 1 ? 250 : 5);
                    }
                }
            snprintf(p, sizeof p, "%s/%s/%03d.jpg", root, label ? "fake" : "real", i);
            assert_int_equal(dfd_jpeg_write_file(&im, 95, p, NULL), DFD_OK);
            dfd_image_free(&im);
            len += (size_t)snprintf(csv + len, 64 * 1024 - len, "%s/%03d.jpg,%s,g%d_%d\n", label ? "fake" : "real", i,
                                    label ? "fake" : "real", label, i / 2);
        }
    snprintf(p, sizeof p, "%s/labels.csv", root);
    tu_write_file(p, csv, len);
    free(csv);
}

static void base_opts(dfd_train_opts *o, const char *data, const char *out) {
    dfd_train_opts_default(o);
    o->arch = "tiny-cnn";
    o->data = data;
    o->out = out;
    o->input_size = 32;
    o->batch = 16;
    o->lr = 1e-2f;
    o->warmup_steps = 0;
    o->epochs = 3;
    o->val_fraction = 0.25;
    o->backend = NN_BACKEND_REF; /* exact reproducibility, single thread */
    o->threads = 1;
    o->seed = 7;
    dfd_augment_opts_none(&o->aug);
    o->aug.flip = 0.5f;
}

static int count_lines(const char *path) {
    size_t len;
    char *t = (char *)tu_read_file(path, &len);
    int n = 0;
    for (size_t i = 0; i < len; i++) n += t[i] == '\n';
    free(t);
    return n;
}

static double meta_number(const char *model, const char *key, const char *sub) {
    dfd_st_file *f;
    assert_int_equal(dfd_st_open(model, &f, NULL), DFD_OK);
    const char *v = dfd_st_meta_get(f, key);
    assert_non_null(v);
    double out;
    if (sub) {
        json_t *j = json_loads(v, 0, NULL);
        assert_non_null(j);
        out = json_number_value(json_object_get(j, sub));
        json_decref(j);
    } else out = atof(v);
    dfd_st_close(f);
    return out;
}

typedef struct fixture {
    char *dir, *data;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    f->data = tu_join(f->dir, "data");
    mkdir(f->data, 0755);
    make_dataset(f->data, 48);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->data);
    free(f->dir);
    free(f);
    return 0;
}

static void trains_writes_and_reloads(void **state) {
    fixture *f = *state;
    char *out = tu_join(f->dir, "run1");
    dfd_train_opts o;
    base_opts(&o, f->data, out);
    dfd_train_summary s;
    dfd_error e;
    int rc = dfd_train_run(&o, NULL, NULL, &s, &e);
    if (rc) fail_msg("train: %s", e.message);
    assert_int_equal(s.epochs_run, 3);
    /* 48 + 48 images in groups of two: a quarter of the groups (12) held out. */
    assert_int_equal(s.n_val_real + s.n_val_fake, 24);
    assert_int_equal(s.n_train_real + s.n_train_fake, 72);
    if (!(s.best_val_auc > 0.85)) fail_msg("validation AUC %.4f", s.best_val_auc); /* the patch is easy to see */
    char p[1024];
    const char *files[] = {"checkpoint.safetensors", "checkpoint.state.safetensors", "best.safetensors", "history.csv",
                           "history.png"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        size_t len;
        free(tu_read_file(p, &len));
        assert_true(len > 0);
    }
    snprintf(p, sizeof p, "%s/history.csv", out);
    assert_int_equal(count_lines(p), 4); /* header + 3 epochs */
    /* The best model loads as the architecture its metadata names, with a threshold in
     * [0,1] equal to the stored metrics' EER threshold. */
    snprintf(p, sizeof p, "%s/best.safetensors", out);
    nn_graph *g;
    dfd_model_meta m;
    dfd_model_meta_init(&m);
    rc = dfd_model_load(p, dfd_train_build_model, NULL, &g, &m, &e);
    if (rc) fail_msg("load: %s", e.message);
    assert_string_equal(m.arch, "tiny-cnn");
    assert_int_equal(m.input_size, 32);
    assert_true(m.threshold >= 0 && m.threshold <= 1);
    assert_float_equal(m.threshold, meta_number(p, "metrics", "eer_threshold"), 1e-9);
    assert_float_equal(meta_number(p, "metrics", "auc"), s.best_val_auc, 1e-9);
    assert_non_null(m.preprocess);
    assert_non_null(strstr(m.training_data, "by group"));
    nn_graph_free(g);
    dfd_model_meta_free(&m);

    /* dfd eval on the same validation groups reproduces the stored AUC (inference backend
     * may differ in the last bits), and twice the same numbers. */
    dfd_eval_opts eo;
    dfd_eval_opts_default(&eo);
    char model[1024];
    snprintf(model, sizeof model, "%s", p);
    eo.model = model;
    eo.data = f->data;
    eo.split = DFD_EVAL_VAL;
    eo.val_fraction = 0.25;
    eo.seed = 7;
    eo.threads = 1;
    char *evo = tu_join(f->dir, "eval");
    eo.out = evo;
    dfd_eval_result r1, r2;
    rc = dfd_eval_run(&eo, &r1, &e);
    if (rc) fail_msg("eval: %s", e.message);
    assert_int_equal(r1.samples, 24);
    assert_float_equal(r1.m.auc, s.best_val_auc, 0.02);
    assert_float_equal(r1.m.threshold, s.best_val.threshold, 1e-9);
    assert_int_equal(r1.m.cm.tn + r1.m.cm.fp + r1.m.cm.fn + r1.m.cm.tp, 24);
    eo.out = NULL;
    assert_int_equal(dfd_eval_run(&eo, &r2, &e), DFD_OK);
    assert_memory_equal(&r1.m, &r2.m, sizeof r1.m);
    snprintf(p, sizeof p, "%s/metrics.json", evo);
    json_t *mj = json_load_file(p, 0, NULL);
    assert_non_null(mj);
    assert_float_equal(json_number_value(json_object_get(json_object_get(mj, "metrics"), "auc")), r1.m.auc, 1e-6);
    assert_string_equal(json_string_value(json_object_get(mj, "architecture")), "tiny-cnn");
    assert_string_equal(json_string_value(json_object_get(mj, "split")), "validation");
    json_decref(mj);
    snprintf(p, sizeof p, "%s/scores.csv", evo);
    assert_int_equal(count_lines(p), 25);
    /* Video level: each image is its own source, so as many videos as crops. */
    eo.video_level = 1;
    rc = dfd_eval_run(&eo, &r2, &e);
    if (rc) fail_msg("eval (video level): %s", e.message);
    assert_int_equal(r2.samples, 24);
    assert_true(r2.level_video);
    free(evo);
    free(out);
}

/* Mixed-precision training (bf16 products, fp32 weights) on the oneDNN backend learns the
 * task as fp32 does; --threshold-fpr stores a threshold whose validation false-positive
 * rate is within the bound and says so; history.csv carries the feed's time. */
static void bf16_training_and_threshold_by_fpr(void **state) {
    fixture *f = *state;
    if (!nn_cpu_has_bf16()) {
        print_message("skipped: this CPU has no native bf16\n");
        skip();
    }
    char *out = tu_join(f->dir, "run-bf16");
    dfd_train_opts o;
    base_opts(&o, f->data, out);
    o.backend = NN_BACKEND_DNNL;
    o.threads = 2;
    o.precision = NN_PREC_BF16;
    o.threshold_fpr = 0.05;
    dfd_train_summary s;
    dfd_error e;
    int rc = dfd_train_run(&o, NULL, NULL, &s, &e);
    if (rc) fail_msg("train (bf16): %s", e.message);
    if (!(s.best_val_auc > 0.85)) fail_msg("bf16 validation AUC %.4f", s.best_val_auc);
    assert_true(s.best_val.cm.fp <= 0.05 * (double)(s.best_val.cm.fp + s.best_val.cm.tn));
    char p[1024];
    snprintf(p, sizeof p, "%s/best.safetensors", out);
    dfd_st_file *sf;
    assert_int_equal(dfd_st_open(p, &sf, NULL), DFD_OK);
    assert_non_null(strstr(dfd_st_meta_get(sf, "metrics"), "false-positive rate <= 0.05"));
    dfd_st_close(sf);
    snprintf(p, sizeof p, "%s/history.csv", out);
    size_t len;
    char *h = (char *)tu_read_file(p, &len);
    assert_non_null(strstr(h, ",feed_wait_s,feed_cpu_s\n"));
    /* The first epoch's row: seconds (column 11) >= feed_wait_s (13) >= 0, feed_cpu_s (14) >= 0. */
    char *l2 = strchr(h, '\n') + 1;
    double col[14];
    int nc = 0;
    for (char *q = l2; nc < 14 && q; nc++) {
        col[nc] = atof(q);
        q = strchr(q, ',');
        if (q) q++;
    }
    assert_int_equal(nc, 14);
    assert_true(col[12] >= 0 && col[12] <= col[10] && col[13] >= 0);
    free(h);
    free(out);
}

/* Two model files hold the same tensors, bit for bit (names, order, bytes). */
static void assert_same_weights(const char *pa, const char *pb, const char *what) {
    dfd_st_file *fa, *fb;
    assert_int_equal(dfd_st_open(pa, &fa, NULL), DFD_OK);
    assert_int_equal(dfd_st_open(pb, &fb, NULL), DFD_OK);
    assert_int_equal(dfd_st_count(fa), dfd_st_count(fb));
    for (int i = 0; i < dfd_st_count(fa); i++) {
        const dfd_st_tensor *ta = dfd_st_tensor_at(fa, i), *tb = dfd_st_tensor_at(fb, i);
        assert_string_equal(ta->name, tb->name);
        assert_int_equal(ta->nbytes, tb->nbytes);
        if (memcmp(dfd_st_raw(fa, ta), dfd_st_raw(fb, tb), ta->nbytes)) fail_msg("%s: '%s' differs", what, ta->name);
    }
    dfd_st_close(fa);
    dfd_st_close(fb);
}

/* Progress callback: stops the run once *user epochs are done. */
static int stop_after_epoch(void *user, const dfd_train_progress *p) {
    return p->phase == DFD_TRAIN_EPOCH_DONE && p->epoch >= *(int *)user;
}

static void same_seed_same_weights_and_resume(void **state) {
    fixture *f = *state;
    char *a = tu_join(f->dir, "det-a"), *b = tu_join(f->dir, "det-b");
    dfd_train_opts o;
    dfd_train_summary s;
    dfd_error e;
    base_opts(&o, f->data, a);
    o.epochs = 1;
    o.aug.jpeg = 0.5f; /* randomness in the loader too */
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    o.out = b;
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/checkpoint.safetensors", a);
    snprintf(pb, sizeof pb, "%s/checkpoint.safetensors", b);
    assert_same_weights(pa, pb, "two runs with one seed");
    /* Resume run a for two more epochs: the history continues from epoch 1. */
    o.out = a;
    o.resume = pa;
    o.epochs = 3;
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    assert_int_equal(s.epochs_run, 2);
    snprintf(pa, sizeof pa, "%s/history.csv", a);
    assert_int_equal(count_lines(pa), 4);
    size_t len;
    char *hist = (char *)tu_read_file(pa, &len);
    assert_non_null(strstr(hist, "\n1,1,"));
    assert_non_null(strstr(hist, "\n3,1,"));
    free(hist);
    /* An interrupted run, resumed, ends with the very weights of an uninterrupted one:
     * Adam's step count, the dropout passes, the schedule and the data order continue. */
    char *c = tu_join(f->dir, "det-c"), *d = tu_join(f->dir, "det-d");
    o.resume = NULL;
    o.dropout = 0.3f;
    o.out = c;
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    assert_int_equal(s.epochs_run, 3);
    o.out = d;
    int stop_after = 1;
    assert_int_equal(dfd_train_run(&o, stop_after_epoch, &stop_after, &s, &e), DFD_OK);
    assert_true(s.cancelled);
    assert_int_equal(s.epochs_run, 1);
    char pd[1024], pc[1024];
    snprintf(pd, sizeof pd, "%s/checkpoint.safetensors", d);
    o.resume = pd;
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    assert_int_equal(s.epochs_run, 2);
    snprintf(pc, sizeof pc, "%s/checkpoint.safetensors", c);
    assert_same_weights(pc, pd, "resumed run against the uninterrupted one");
    free(c);
    free(d);
    o.dropout = -1;
    o.out = a;
    /* A bad resume path is an error, not a fresh run. */
    o.resume = "/nonexistent/checkpoint.safetensors";
    assert_int_not_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    free(a);
    free(b);
}

/* The largest |moving_mean| and smallest moving_variance of a batch norm in a model file. */
static void bn_stats(const char *path, const char *bn, double *max_abs_mean, double *min_var) {
    nn_graph *g;
    dfd_model_meta m;
    dfd_model_meta_init(&m);
    dfd_error e;
    if (dfd_model_load(path, dfd_train_build_model, NULL, &g, &m, &e)) fail_msg("load %s: %s", path, e.message);
    char name[128];
    snprintf(name, sizeof name, "%s/moving_mean", bn);
    nn_param *mm = nn_graph_find_param(g, name);
    snprintf(name, sizeof name, "%s/moving_variance", bn);
    nn_param *mv = nn_graph_find_param(g, name);
    assert_non_null(mm);
    assert_non_null(mv);
    *max_abs_mean = 0, *min_var = INFINITY;
    for (size_t i = 0; i < mm->count; i++) {
        if (fabs(mm->data[i]) > *max_abs_mean) *max_abs_mean = fabs(mm->data[i]);
        if (mv->data[i] < *min_var) *min_var = mv->data[i];
    }
    nn_graph_free(g);
    dfd_model_meta_free(&m);
}

/* Weights from elsewhere with wrong batch-norm statistics (as a uint8-quantised TF.js file
 * brings): recalibration replaces them before training; without it they linger; and with
 * the statistics frozen, training still learns (gamma/beta and the weights move). */
static void bn_recalibration_and_frozen_statistics(void **state) {
    fixture *f = *state;
    char *a = tu_join(f->dir, "bn-a"), *bad = tu_join(f->dir, "bn-bad.safetensors");
    dfd_train_opts o;
    dfd_train_summary s;
    dfd_error e;
    base_opts(&o, f->data, a);
    o.epochs = 1;
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    char p[1024];
    snprintf(p, sizeof p, "%s/best.safetensors", a);
    nn_graph *g;
    dfd_model_meta m;
    dfd_model_meta_init(&m);
    assert_int_equal(dfd_model_load(p, dfd_train_build_model, NULL, &g, &m, &e), DFD_OK);
    nn_param *mm = nn_graph_find_param(g, "conv1_bn/moving_mean"), *mv = nn_graph_find_param(g, "conv1_bn/moving_variance");
    for (size_t i = 0; i < mm->count; i++) mm->data[i] = 50.0f, mv->data[i] = 1e-6f;
    assert_int_equal(dfd_model_save(g, &m, NULL, bad, &e), DFD_OK);
    nn_graph_free(g);
    dfd_model_meta_free(&m);

    double mean, var;
    o.init = bad;
    o.lr = 1e-9f; /* weights stay put: only the statistics move */
    o.bn_recalibrate = 0;
    o.bn_momentum = 0.999f;
    char *b = tu_join(f->dir, "bn-none");
    o.out = b;
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", b);
    bn_stats(p, "conv1_bn", &mean, &var);
    assert_true(mean > 45); /* 5 steps at momentum 0.999 barely move them */
    double auc_stale = s.best_val_auc;

    char *c = tu_join(f->dir, "bn-recal");
    o.out = c;
    o.bn_recalibrate = 4;
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", c);
    bn_stats(p, "conv1_bn", &mean, &var);
    assert_true(mean < 5);
    assert_true(var > 1e-4);
    print_message("val AUC with stale statistics %.3f, recalibrated %.3f\n", auc_stale, s.best_val_auc);
    assert_true(s.best_val_auc > auc_stale);

    /* Frozen statistics (after recalibration): the weights learn, the statistics stay the
     * recalibrated ones, not the stale ones of the file. */
    char *d = tu_join(f->dir, "bn-frozen");
    o.lr = 1e-2f;
    o.freeze_bn = 1;
    o.epochs = 2;
    o.out = d;
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_OK);
    assert_int_equal(s.epochs_run, 2);
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", c);
    char q[1024];
    snprintf(q, sizeof q, "%s/checkpoint.safetensors", d);
    dfd_st_file *fc, *fd;
    assert_int_equal(dfd_st_open(p, &fc, NULL), DFD_OK);
    assert_int_equal(dfd_st_open(q, &fd, NULL), DFD_OK);
    const dfd_st_tensor *tk_c = dfd_st_find(fc, "conv1/kernel"), *tk_d = dfd_st_find(fd, "conv1/kernel");
    assert_non_null(tk_c);
    assert_non_null(tk_d);
    assert_memory_not_equal(dfd_st_raw(fc, tk_c), dfd_st_raw(fd, tk_d), tk_c->nbytes); /* it learned */
    dfd_st_close(fc);
    dfd_st_close(fd);
    double mean2, var2;
    bn_stats(q, "conv1_bn", &mean2, &var2);
    assert_true(mean2 < 5);
    assert_true(var2 > 1e-4);
    free(a), free(b), free(c), free(d), free(bad);
}

static void second_stage_keeps_frozen_layers(void **state) {
    fixture *f = *state;
    char *out = tu_join(f->dir, "stages");
    dfd_train_opts o;
    base_opts(&o, f->data, out);
    o.stage1_epochs = 1;
    o.epochs = 1;
    o.stage2_from = "conv2";
    o.freeze_bn = 1;
    o.keep_epochs = 1;
    o.patience = 0;
    dfd_train_summary s;
    dfd_error e;
    int rc = dfd_train_run(&o, NULL, NULL, &s, &e);
    if (rc) fail_msg("train: %s", e.message);
    assert_int_equal(s.epochs_run, 2);
    char p1[1024], p2[1024];
    snprintf(p1, sizeof p1, "%s/epoch-001.safetensors", out);
    snprintf(p2, sizeof p2, "%s/epoch-002.safetensors", out);
    dfd_st_file *f1, *f2;
    assert_int_equal(dfd_st_open(p1, &f1, NULL), DFD_OK);
    assert_int_equal(dfd_st_open(p2, &f2, NULL), DFD_OK);
    /* Stage 2 starts from stage 1's best (= epoch 1): conv1 is frozen, conv2 trains,
     * and with frozen statistics conv2_bn's moving mean does not move. */
    const char *same[] = {"conv1/kernel", "conv1_bn/gamma", "conv2_bn/moving_mean"};
    for (int i = 0; i < 3; i++) {
        const dfd_st_tensor *a = dfd_st_find(f1, same[i]), *b = dfd_st_find(f2, same[i]);
        assert_non_null(a);
        assert_memory_equal(dfd_st_raw(f1, a), dfd_st_raw(f2, b), a->nbytes);
    }
    const dfd_st_tensor *a = dfd_st_find(f1, "conv2/kernel"), *b = dfd_st_find(f2, "conv2/kernel");
    assert_memory_not_equal(dfd_st_raw(f1, a), dfd_st_raw(f2, b), a->nbytes);
    dfd_st_close(f1);
    dfd_st_close(f2);
    /* An unknown layer name is refused before any training. */
    o.stage2_from = "no_such_layer";
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_E_NOT_FOUND);
    assert_non_null(strstr(e.message, "no_such_layer"));
    free(out);
}

static void video_model_on_sequences(void **state) {
    fixture *f = *state;
    /* A manifest that groups the images into 4-frame "tracks" of one label each. */
    char *root = tu_join(f->dir, "seq"), p[1024];
    mkdir(root, 0755);
    char *csv = malloc(32 * 1024);
    size_t len = (size_t)snprintf(csv, 32 * 1024, "file,label,group,source,frame\n");
    for (int label = 0; label < 2; label++)
        for (int i = 0; i < 48; i++)
            len += (size_t)snprintf(csv + len, 32 * 1024 - len, "%s/%s/%03d.jpg,%s,v%d_%d,v%d_%d.mp4#t1,%d\n", f->data,
                                    label ? "fake" : "real", i, label ? "fake" : "real", label, i / 4, label, i / 4, i % 4);
    snprintf(p, sizeof p, "%s/manifest.csv", root);
    tu_write_file(p, csv, len);
    free(csv);
    char *out = tu_join(f->dir, "video");
    dfd_train_opts o;
    base_opts(&o, root, out);
    o.arch = "tiny-video";
    o.video = 1;
    o.frames = 4;
    o.batch = 4;
    o.epochs = 1;
    dfd_train_summary s;
    dfd_error e;
    int rc = dfd_train_run(&o, NULL, NULL, &s, &e);
    if (rc) fail_msg("train video: %s", e.message);
    assert_int_equal(s.epochs_run, 1);
    assert_true(isfinite(s.best_val_auc));
    snprintf(p, sizeof p, "%s/best.safetensors", out);
    assert_float_equal(meta_number(p, "frames", NULL), 4, 0);
    /* dfd eval scores whole sequences with a video model: the validation tracks. */
    dfd_eval_opts eo;
    dfd_eval_opts_default(&eo);
    eo.model = p;
    eo.data = root;
    eo.split = DFD_EVAL_VAL;
    eo.val_fraction = 0.25;
    eo.seed = 7;
    eo.threads = 1;
    dfd_eval_result r;
    rc = dfd_eval_run(&eo, &r, &e);
    if (rc) fail_msg("eval video model: %s", e.message);
    assert_true(r.level_video);
    long vr, vf;
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, NULL), DFD_OK);
    assert_int_equal(dfd_dataset_split_groups(d, 0.25, 7, NULL), DFD_OK);
    dfd_dataset_count(d, DFD_SPLIT_VAL, &vr, &vf);
    dfd_dataset_free(d);
    assert_int_equal(r.samples * 4, vr + vf); /* 4 crops per track */
    /* An image architecture for video training is refused. */
    o.arch = "tiny-cnn";
    assert_int_equal(dfd_train_run(&o, NULL, NULL, &s, &e), DFD_E_ARG);
    free(out);
    free(root);
}

static void extra_reals_only_train(void **state) {
    fixture *f = *state;
    char *extra = tu_join(f->dir, "extra"), p[1024];
    mkdir(extra, 0755);
    char csv[4096];
    size_t len = (size_t)snprintf(csv, sizeof csv, "file,label\n");
    for (int i = 0; i < 6; i++) len += (size_t)snprintf(csv + len, sizeof csv - len, "%s/real/%03d.jpg,real\n", f->data, i);
    len += (size_t)snprintf(csv + len, sizeof csv - len, "%s/fake/000.jpg,fake\n", f->data); /* not a real: ignored */
    snprintf(p, sizeof p, "%s/labels.csv", extra);
    tu_write_file(p, csv, len);
    char *out = tu_join(f->dir, "extra-run");
    dfd_train_opts o;
    base_opts(&o, f->data, out);
    o.epochs = 1;
    o.extra_real = extra;
    o.sbi_fraction = 0.5f;
    dfd_train_summary s;
    dfd_error e;
    int rc = dfd_train_run(&o, NULL, NULL, &s, &e);
    if (rc) fail_msg("train: %s", e.message);
    /* Same split as without (12 validation groups of 2), six more reals in training. */
    assert_int_equal(s.n_val_real + s.n_val_fake, 24);
    assert_int_equal(s.n_train_real + s.n_train_fake, 72 + 6);
    snprintf(p, sizeof p, "%s/best.safetensors", out);
    dfd_st_file *sf;
    assert_int_equal(dfd_st_open(p, &sf, NULL), DFD_OK);
    assert_non_null(strstr(dfd_st_meta_get(sf, "training_data"), "\"extra_real\""));
    dfd_st_close(sf);
    free(out);
    free(extra);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trains_writes_and_reloads),
        cmocka_unit_test(same_seed_same_weights_and_resume),
        cmocka_unit_test(bn_recalibration_and_frozen_statistics),
        cmocka_unit_test(second_stage_keeps_frozen_layers),
        cmocka_unit_test(video_model_on_sequences),
        cmocka_unit_test(extra_reals_only_train),
        cmocka_unit_test(bf16_training_and_threshold_by_fpr),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
