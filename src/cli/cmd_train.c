/* cmd_train.c — `dfd train image|video`: the options go to dfd_train_opts_set (their
 * meaning is src/train/options.c's), a progress bar per epoch, one summary line per epoch,
 * and Ctrl-C to stop cleanly after the current step. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dfd/train.h"

enum { O_LIB = 256, O_PREVIEW };

static const cli_opt train_opts[] = {
    {NULL, 0, NULL, "Data and model:"},
    {"arch", O_LIB, "NAME", "image: mobilenet_v2-image, inception_v3-image, xception-image,\n"
                            "tiny-cnn;\n"
                            "video: mobilenet_v2-video, xception-video, tiny-video"},
    {"data", O_LIB, "DIR", "training data"},
    {"layout", O_LIB, "L", "auto, generic, celebdf, ffpp or dfdc (auto)"},
    {"task", O_LIB, "T", "what the fakes are: manipulation (swapped or altered real faces,\n"
                         "the default) or synthetic (generated faces); written into the model"},
    {"val", O_LIB, "DIR", "validation folder (default: --val-fraction of --data, by group)"},
    {"val-fraction", O_LIB, "F", "share of groups for validation (0.2)"},
    {"extra-real", O_LIB, "DIR", "more real faces, training only (also self-blending sources)"},
    {"input-size", O_LIB, "S", "input side (architecture default)"},
    {"norm", O_LIB, "minus1_1|0_1|imagenet|residual", "input normalisation, recorded in the model's crop contract\n"
                                                      "(default: the crops' prepare.json, else minus1_1); residual:\n"
                                                      "each value less its 3x3 mean, /16 (a high-pass input)"},
    {"frames", O_LIB, "N", "video: frames per sample (30)"},
    {"width", O_LIB, "W", "width multiplier (MobileNetV2 alpha)"},
    {"dropout", O_LIB, "R", "head dropout (0.5)"},
    {"init", O_LIB, "PATH", "start from these weights, matched by layer name and shape"},
    {"limit", O_LIB, "N", "at most N training samples per epoch"},
    {"val-limit", O_LIB, "N", "at most N validation samples"},
    {"out", O_LIB, "DIR", "where the run's files go (required)"},
    {"keep-epochs", O_LIB, NULL, "also keep epoch-NNN.safetensors for each epoch"},
    {NULL, 0, NULL, "Optimisation:"},
    {"epochs", O_LIB, "E", "epochs (of stage 2 when there are two) (10)"},
    {"batch", O_LIB, "B", "batch size (32, video 8)"},
    {"lr", O_LIB, "LR", "learning rate (1e-3)"},
    {"optimizer", O_LIB, "adam|adamw|sgd", "(adamw)"},
    {"weight-decay", O_LIB, "WD", "(optimiser default)"},
    {"schedule", O_LIB, "cosine|constant|step", "(cosine)"},
    {"warmup-steps", O_LIB, "N", "linear warm-up (100)"},
    {"balance", O_LIB, "undersample|weights|none", "class balance (undersample, per epoch)"},
    {"freeze-until", O_LIB, "LAYER", "train only the layers from LAYER on"},
    {"freeze-bn", O_LIB, NULL, "keep BN statistics"},
    {"bn-momentum", O_LIB, "M", "batch-norm moving-average momentum while training (0.99)"},
    {"bn-recalibrate", O_LIB, "N", "first re-estimate BN statistics from N batches (32 with --init, else 0)"},
    {"stage1-epochs", O_LIB, "N", "first train the head alone (backbone frozen) for up to N epochs,"},
    {"stage2-from", O_LIB, "LAYER", "then unfreeze from LAYER (default: all) with BN statistics frozen"},
    {"stage2-lr", O_LIB, "LR", "at this rate (default lr/100), for --epochs epochs"},
    {"patience", O_LIB, "P", "stop a stage after P epochs without a better val AUC (3; 0 = off)"},
    {"threshold-fpr", O_LIB, "F", "store the lowest threshold whose validation false-positive rate is\n"
                                  "at most F (default: the validation equal error rate's)"},
    {"resume", O_LIB, "CKPT", "continue an interrupted run from its checkpoint.safetensors\n"
                              "(weights, optimiser moments, counters, history; give the same options)"},
    {"seed", O_LIB, "S", "one seed for split, order, augmentation, dropout, init (1)"},
    {"split-seed", O_LIB, "S", "the validation split's own seed (default: --seed), to train\n"
                               "another seed on the same validation groups"},
    {"threads", O_LIB, "N", "engine threads (all cores)"},
    {"feed", O_LIB, "turns|ahead", "the feed (decoding, self-blending, augmenting) takes turns with the\n"
                                   "step on all cores (turns, default), or runs ahead beside it"},
    {"loader-threads", O_LIB, "N", "feed threads besides the training thread (turns: threads - 1; ahead: 1)"},
    {"cache-mb", O_LIB, "N", "keep decoded crops in memory, up to N MiB (default: half the RAM;\n"
                             "0 = decode every time)"},
    {"no-cache", O_LIB, NULL, "decode every time (--cache-mb 0)"},
    {"cache-file", O_LIB, "PATH", "map the cache from a file on a local disk instead (for sets larger\n"
                                  "than RAM)"},
    {"cache-format", O_LIB, "auto|rgb|yuv420", "store crops as exact RGB, or as YCbCr 4:2:0 (half the bytes; luma\n"
                                               "kept, colour at half resolution, as in a JPEG); auto: RGB when\n"
                                               "every crop fits in the budget so, else 4:2:0 (auto)"},
    {"backend", O_LIB, "dnnl|ref", "(dnnl)"},
    {"bf16-save", O_LIB, NULL, "store checkpoints in bf16"},
    {"precision", O_LIB, "fp32|bf16", "training passes in fp32 (default) or mixed bf16 (bf16 products,\n"
                                      "fp32 weights and gradient sums; needs AVX512-BF16 or AMX)"},
    {NULL, 0, NULL, "Augmentation (probabilities; 0 turns one off):"},
    {"no-augment", O_LIB, NULL, "none at all"},
    {"flip", O_LIB, "P", "(.5)"},
    {"affine", O_LIB, "P", "(.5)"},
    {"rotate", O_LIB, "DEG", "(10)"},
    {"shift", O_LIB, "F", "(.05)"},
    {"scale", O_LIB, "F", "(.1)"},
    {"color", O_LIB, "P", "(.5)"},
    {"blur", O_LIB, "P", "(.1)"},
    {"noise", O_LIB, "P", "(.1)"},
    {"downscale", O_LIB, "P", "(.2)"},
    {"jpeg", O_LIB, "P", "(.5)"},
    {"jpeg-quality", O_LIB, "LO:HI", "(30:95)"},
    {"cutout", O_LIB, "P", "(.1)"},
    {"sbi-fraction", O_LIB, "F", "share of real training faces turned into self-blended fakes (0)"},
    {"real-only", O_LIB, NULL, "train on real faces only: the training split's fakes are left out and\n"
                               "every fake is a self-blend (needs --sbi-fraction); validation keeps\n"
                               "its fakes"},
    {"paired", O_LIB, NULL, "each training fake whose real source is in the training split comes\n"
                            "right after it in its batch, both with the same random transform\n"
                            "(crop, colour, compression): the pair differs by the manipulation alone"},
    {"real-downscale", O_LIB, "P", "share of samples made from real faces (kept real or self-blended)\n"
                                   "first scaled down by 0.35-0.75 and back up, on top of --downscale:\n"
                                   "so that a soft, low-resolution face stops meaning fake (0)"},
    {"sbi-loc", O_LIB, "W", "weight of a second loss that teaches the model where each self-blend\n"
                            "is: the head applied to every cell of its last feature map, against\n"
                            "the blended share of the cell (0 on reals), so that heat maps\n"
                            "show the blend (0: off; GAP -> dense heads only)"},
    {"sbi-loc-reals", O_LIB, NULL, "with --sbi-loc, teach the reals' cells too (all 0); by default\n"
                                  "only the self-blends' cells are taught"},
    {"sbi-part", O_LIB, "P", "share of self-blends made over a part of the face only (a random\n"
                             "ellipse cut from the face mask: a pasted eye, nose or mouth) (0)"},
    {"sbi-margin", O_LIB, "M", "crops have margin M around the detector box (for the SBI mask;\n"
                               "default: tight crops like dfdc-faces)"},
    {"sbi-mask", O_LIB, "ellipse|landmarks", "the blending mask: a deformed ellipse (default), or the hull of\n"
                                             "each face's Face Mesh landmarks (found once per run, OUT/landmarks.txt)"},
    {"models", O_LIB, "DIR", "where face-landmark.safetensors is (as scan's --models)"},
    {"preview-augment", O_PREVIEW, "PNG", "write a grid of real / self-blended / augmented samples and exit"},
    {0}};

const cli_command cmd_train_cmd = {
    "train",
    "Usage: dfd train image|video --arch NAME --data DIR --out DIR [options]\n\n"
    "Trains a deepfake classifier on face crops (a `dfd prepare` output, or any folder with\n"
    "a labels.csv `file,label[,group]` or real/ and fake/ subfolders). Validation is split by\n"
    "group (a fake and its real source video, or a person, never on both sides); the model\n"
    "file records the architecture, the crop contract, and a decision threshold chosen at the\n"
    "validation equal error rate. Writes into --out: checkpoint.safetensors each epoch (with\n"
    "checkpoint.state.safetensors for --resume), best.safetensors (best validation AUC),\n"
    "history.csv and history.png.\n\n",
    train_opts,
    "Example:\n"
    "  dfd train image --arch mobilenet_v2-image --input-size 128 --data ../shared/data/dfdc-faces \\\n"
    "      --init models/registry/mobilenet_v2.safetensors --epochs 4 --out runs/mnv2\n"};

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct ui {
    cli_progress bar;
    int bar_on;
    int last_decile; /* without a terminal: a plain line every tenth of an epoch */
} ui;

static void fmt_time(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "--:--");
    else if (s >= 3600) snprintf(buf, cap, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    else snprintf(buf, cap, "%d:%02d", (int)s / 60, (int)s % 60);
}

static int on_progress(void *user, const dfd_train_progress *p) {
    ui *u = user;
    char detail[160], eta[32];
    if (p->phase == DFD_TRAIN_STEP) {
        if (!u->bar_on) {
            char label[64];
            snprintf(label, sizeof label, "epoch %d (stage %d)", p->epoch, p->stage);
            cli_progress_start(&u->bar, label);
            u->bar_on = 1;
        }
        fmt_time(p->eta_s, eta, sizeof eta);
        snprintf(detail, sizeof detail, "%ld/%ld loss %.4f acc %.3f auc %.3f %.0f img/s (feed %.0f%%) eta %s", p->step,
                 p->steps, p->loss, p->acc, p->auc, p->images_per_s, 100 * p->feed_share, eta);
        cli_progress_update(&u->bar, (double)p->step / (double)p->steps, detail);
        int decile = (int)(10 * p->step / (p->steps ? p->steps : 1));
        if (!u->bar.enabled && decile != u->last_decile && decile < 10) fprintf(stderr, "epoch %d: %s\n", p->epoch, detail);
        u->last_decile = decile;
    } else if (p->phase == DFD_TRAIN_CACHING) {
        if (!u->bar_on) {
            cli_progress_start(&u->bar, "decoding crops");
            u->bar_on = 1;
        }
        snprintf(detail, sizeof detail, "%ld/%ld %.0f/s", p->step, p->steps, p->images_per_s);
        cli_progress_update(&u->bar, (double)p->step / (double)(p->steps ? p->steps : 1), detail);
        if (p->step >= p->steps) {
            cli_progress_done(&u->bar);
            u->bar_on = 0;
        }
    } else if (p->phase == DFD_TRAIN_VALIDATING) {
        snprintf(detail, sizeof detail, "validating %ld/%ld", p->step, p->steps);
        cli_progress_update(&u->bar, (double)p->step / (double)(p->steps ? p->steps : 1), detail);
    } else {
        if (u->bar_on) cli_progress_done(&u->bar);
        u->bar_on = 0;
        const dfd_history_row *r = p->row;
        fmt_time(r->seconds, eta, sizeof eta);
        fprintf(stderr,
                "epoch %d/%d (stage %d): loss %.4f acc %.4f auc %.4f | val loss %.4f acc %.4f auc %.4f eer %.4f | %s, "
                "%.1f img/s (step waited %.0f%% of it for the feed; feed %.1f CPU ms/image)%s\n",
                p->epoch, p->max_epoch, p->stage, r->train_loss, r->train_acc, r->train_auc, r->val_loss, r->val_acc,
                r->val_auc, r->val_eer, eta, r->images_per_s, r->seconds > 0 ? 100 * r->feed_wait_s / r->seconds : 0,
                r->images_per_s * r->seconds > 0 ? 1000 * r->feed_cpu_s / (r->images_per_s * r->seconds) : 0,
                p->improved ? "  * best" : "");
    }
    return interrupted != 0;
}

typedef struct given {
    const char *name, *value;
} given;

int cmd_train(int argc, char **argv) {
    /* The options are collected first and set after: their defaults depend on the model
     * kind (image|video), an operand that may come after them. */
    given *g = calloc((size_t)argc + 1, sizeof *g);
    if (!g) return DFD_EXIT_FAILED;
    int n = 0, k, have_out = 0;
    const char *val, *preview = NULL;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_train_cmd, argc, argv)) k = -1;
    else
        while ((k = cli_next(&p, &val)) > 0) {
            if (k == O_PREVIEW) preview = val;
            else g[n++] = (given){p.opt->name, val};
            if (strcmp(p.opt->name, "out") == 0) have_out = 1;
        }
    if (k < 0) {
        free(g);
        return DFD_EXIT_USAGE;
    }
    if (p.first >= argc || (strcmp(argv[p.first], "image") != 0 && strcmp(argv[p.first], "video") != 0)) {
        free(g);
        return cli_usage_error("train", "first argument must be 'image' or 'video'");
    }
    if (p.first + 1 < argc) {
        free(g);
        return cli_usage_error("train", "unexpected argument '%s'", argv[p.first + 1]);
    }
    dfd_train_opts *o = NULL;
    dfd_error err;
    int rc = dfd_train_opts_create(strcmp(argv[p.first], "video") == 0, &o, &err);
    if (rc) fprintf(stderr, "dfd train: %s\n", err.message), rc = DFD_EXIT_FAILED;
    for (int i = 0; !rc && i < n; i++)
        if (dfd_train_opts_set(o, g[i].name, g[i].value, &err)) rc = cli_usage_error("train", "%s", err.message);
    free(g);
    if (!rc && dfd_train_opts_check(o, &err)) rc = cli_usage_error("train", "%s", err.message);
    if (!rc && !preview && !have_out) rc = cli_usage_error("train", "--out is required");
    if (rc) {
        dfd_train_opts_destroy(o);
        return rc;
    }
    dfd_set_log_level(DFD_LOG_INFO); /* a training run says what it set up: data, cache, init, resume */
    if (preview) {
        rc = dfd_train_preview(o, preview, 6, &err);
        dfd_train_opts_destroy(o);
        if (rc) {
            fprintf(stderr, "dfd train: %s\n", err.message);
            return DFD_EXIT_FAILED;
        }
        printf("wrote %s\n", preview);
        return DFD_EXIT_OK;
    }
    ui u;
    memset(&u, 0, sizeof u);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    dfd_train_summary s;
    rc = dfd_train_run(o, on_progress, &u, &s, &err);
    sigaction(SIGINT, &old, NULL);
    dfd_train_opts_destroy(o);
    if (u.bar_on) cli_progress_done(&u.bar);
    if (rc) {
        fprintf(stderr, "dfd train: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    printf("data: train %ld real + %ld fake, validation %ld real + %ld fake%s\n", s.n_train_real, s.n_train_fake,
           s.n_val_real, s.n_val_fake, s.failures ? "" : "");
    if (s.failures) printf("unreadable samples skipped: %ld\n", s.failures);
    printf("epochs: %d%s%s, %.0f s of training at %.1f images/s\n", s.epochs_run, s.stopped_early ? " (stopped early)" : "",
           s.cancelled ? " (interrupted)" : "", s.train_seconds, s.images_per_s);
    if (s.epochs_run) {
        const dfd_metrics *m = &s.best_val;
        printf("best: epoch %d, validation AUC %.4f, EER %.4f; at threshold %.4f: accuracy %.4f, balanced %.4f\n",
               s.best_epoch, s.best_val_auc, m->eer, m->threshold, m->accuracy, m->balanced_accuracy);
        printf("model: %s\n", s.best_path);
    }
    return s.cancelled ? DFD_EXIT_FAILED : DFD_EXIT_OK;
}
