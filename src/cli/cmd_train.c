/* cmd_train.c — `dfd train image|video`: options to dfd_train_opts, a progress bar per
 * epoch, one summary line per epoch, and Ctrl-C to stop cleanly after the current step. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "train/train.h"

const char cmd_train_help[] =
    "Usage: dfd train image|video --arch NAME --data DIR --out DIR [options]\n\n"
    "Trains a deepfake classifier on face crops (a `dfd prepare` output, or any folder with\n"
    "a labels.csv `file,label[,group]` or real/ and fake/ subfolders). Validation is split by\n"
    "group (a fake and its real source video, or a person, never on both sides); the model\n"
    "file records the architecture, the crop contract, and a decision threshold chosen at the\n"
    "validation equal error rate. Writes into --out: checkpoint.safetensors each epoch (with\n"
    "checkpoint.state.safetensors for --resume), best.safetensors (best validation AUC),\n"
    "history.csv and history.png.\n\n"
    "Data and model:\n"
    "  --arch NAME            image: mobilenet_v2-image, xception-image, tiny-cnn;\n"
    "                         video: mobilenet_v2-video, xception-video, tiny-video\n"
    "  --data DIR             training data; --layout auto|generic|celebdf|ffpp|dfdc\n"
    "  --task T               what the fakes are: manipulation (swapped or altered real faces,\n"
    "                         the default) or synthetic (generated faces); written into the model\n"
    "  --val DIR              validation folder (default: --val-fraction of --data, by group)\n"
    "  --val-fraction F       share of groups for validation (0.2)\n"
    "  --extra-real DIR       more real faces, training only (also self-blending sources)\n"
    "  --input-size S         input side (architecture default); --frames N (video, 30)\n"
    "  --width W              width multiplier (MobileNetV2 alpha); --dropout R (0.5)\n"
    "  --init PATH            start from these weights, matched by layer name and shape\n"
    "  --limit N              at most N training samples per epoch; --val-limit N\n\n"
    "Optimisation:\n"
    "  --epochs E             epochs (of stage 2 when there are two) (10)\n"
    "  --batch B              batch size (32, video 8)\n"
    "  --lr LR                learning rate (1e-3); --optimizer adam|adamw|sgd (adamw)\n"
    "  --weight-decay WD      (optimiser default); --schedule cosine|constant|step (cosine)\n"
    "  --warmup-steps N       linear warm-up (100)\n"
    "  --balance undersample|weights|none   class balance (undersample, per epoch)\n"
    "  --freeze-until LAYER   train only the layers from LAYER on; --freeze-bn: keep BN statistics\n"
    "  --bn-momentum M        batch-norm moving-average momentum while training (0.99)\n"
    "  --bn-recalibrate N     first re-estimate BN statistics from N batches (32 with --init, else 0)\n"
    "  --stage1-epochs N      first train the head alone (backbone frozen) for up to N epochs,\n"
    "  --stage2-from LAYER    then unfreeze from LAYER (default: all) with BN statistics frozen\n"
    "  --stage2-lr LR         at this rate (default lr/100), for --epochs epochs\n"
    "  --patience P           stop a stage after P epochs without a better val AUC (3; 0 = off)\n"
    "  --threshold-fpr F      store the lowest threshold whose validation false-positive rate is\n"
    "                         at most F (default: the validation equal error rate's)\n"
    "  --resume CKPT          continue an interrupted run from its checkpoint.safetensors\n"
    "                         (weights, optimiser moments, counters, history; give the same options)\n"
    "  --seed S               one seed for split, order, augmentation, dropout, init (1)\n"
    "  --threads N            engine threads (all cores)\n"
    "  --feed turns|ahead     the feed (decoding, self-blending, augmenting) takes turns with the\n"
    "                         step on all cores (turns, default), or runs ahead beside it\n"
    "  --loader-threads N     feed threads besides the training thread (turns: threads - 1; ahead: 1)\n"
    "  --cache-mb N           keep decoded crops in memory, up to N MiB (default: half the RAM;\n"
    "                         0 = decode every time); --no-cache; --cache-file PATH: map the cache\n"
    "                         from a file on a local disk instead (for sets larger than RAM)\n"
    "  --cache-format auto|rgb|yuv420  store crops as exact RGB, or as YCbCr 4:2:0 (half the\n"
    "                         bytes; luma kept, colour at half resolution, as in a JPEG); auto:\n"
    "                         RGB when every crop fits in the budget so, else 4:2:0 (auto)\n"
    "  --backend dnnl|ref     (dnnl); --bf16-save: store checkpoints in bf16\n"
    "  --precision fp32|bf16  training passes in fp32 (default) or mixed bf16 (bf16 products,\n"
    "                         fp32 weights and gradient sums; needs AVX512-BF16 or AMX)\n\n"
    "Augmentation (probabilities; 0 turns one off):\n"
    "  --no-augment           none at all\n"
    "  --flip P (.5)  --affine P (.5) --rotate DEG (10) --shift F (.05) --scale F (.1)\n"
    "  --color P (.5) --blur P (.1)   --noise P (.1)    --downscale P (.2)\n"
    "  --jpeg P (.5)  --jpeg-quality LO:HI (30:95)      --cutout P (.1)\n"
    "  --sbi-fraction F       share of real training faces turned into self-blended fakes (0)\n"
    "  --sbi-margin M         crops have margin M around the detector box (for the SBI mask;\n"
    "                         default: tight crops like dfdc-faces)\n"
    "  --sbi-mask ellipse|landmarks  the blending mask: a deformed ellipse (default), or the hull of\n"
    "                         each face's Face Mesh landmarks (found once per run, OUT/landmarks.txt;\n"
    "                         --models DIR: where face-landmark.safetensors is)\n"
    "  --preview-augment PNG  write a grid of real / self-blended / augmented samples and exit\n\n"
    "Example:\n"
    "  dfd train image --arch mobilenet_v2-image --input-size 128 --data ../shared/data/dfdc-faces \\\n"
    "      --init models/registry/mobilenet_v2.safetensors --epochs 4 --out runs/mnv2\n";

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

static int parse_prob(const char *cmd, const char *name, const char *v, float *out) {
    double d;
    if (cli_parse_double(v, 0, 1, &d)) return cli_usage_error(cmd, "%s wants a probability in [0, 1], not '%s'", name, v ? v : "");
    *out = (float)d;
    return 0;
}

int cmd_train(int argc, char **argv) {
    const char *cmd = "train";
    if (argc < 2 || (strcmp(argv[1], "image") != 0 && strcmp(argv[1], "video") != 0))
        return cli_usage_error(cmd, "first argument must be 'image' or 'video'");
    dfd_train_opts o;
    dfd_train_opts_default(&o);
    dfd_log_set_level(DFD_LOG_INFO); /* a training run says what it set up: data, cache, init, resume */
    o.video = strcmp(argv[1], "video") == 0;
    if (o.video) o.batch = 8;
    const char *preview = NULL;
    float sbi_margin = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        double d;
#define NEED()                                                               \
    do {                                                                     \
        if (!v) return cli_usage_error(cmd, "%s needs a value", a);          \
        i++;                                                                 \
    } while (0)
#define STR(flag, dst)                                                       \
    else if (strcmp(a, flag) == 0) {                                         \
        NEED();                                                              \
        dst = v;                                                             \
    }
#define PROB(flag, field)                                                    \
    else if (strcmp(a, flag) == 0) {                                         \
        NEED();                                                              \
        if (parse_prob(cmd, a, v, &o.aug.field)) return DFD_EXIT_USAGE;      \
    }
        if (0) {
        }
        STR("--arch", o.arch)
        STR("--task", o.task)
        STR("--data", o.data)
        STR("--val", o.val)
        STR("--out", o.out)
        STR("--extra-real", o.extra_real)
        STR("--init", o.init)
        STR("--resume", o.resume)
        STR("--freeze-until", o.freeze_until)
        STR("--stage2-from", o.stage2_from)
        STR("--preview-augment", preview)
        STR("--cache-file", o.cache_file)
        STR("--models", o.models_dir)
        else if (strcmp(a, "--no-cache") == 0) o.cache_mb = 0;
        else if (strcmp(a, "--cache-format") == 0) {
            NEED();
            if (strcmp(v, "auto") == 0) o.cache_format = DFD_CACHE_AUTO;
            else if (strcmp(v, "rgb") == 0) o.cache_format = DFD_CACHE_RGB;
            else if (strcmp(v, "yuv420") == 0) o.cache_format = DFD_CACHE_YUV420;
            else return cli_usage_error(cmd, "--cache-format wants auto, rgb or yuv420, not '%s'", v);
        }
        else if (strcmp(a, "--cache-mb") == 0) {
            NEED();
            if (cli_parse_int(v, 0, 1L << 30, &l)) return cli_usage_error(cmd, "--cache-mb wants MiB (0 = no cache), not '%s'", v);
            o.cache_mb = l;
        } else if (strcmp(a, "--sbi-mask") == 0) {
            NEED();
            if (strcmp(v, "landmarks") == 0) o.sbi_landmarks = 1;
            else if (strcmp(v, "ellipse") == 0) o.sbi_landmarks = 0;
            else return cli_usage_error(cmd, "--sbi-mask wants 'landmarks' or 'ellipse', not '%s'", v);
        } else if (strcmp(a, "--threshold-fpr") == 0) {
            NEED();
            if (cli_parse_double(v, 0, 0.5, &o.threshold_fpr))
                return cli_usage_error(cmd, "--threshold-fpr wants a rate in [0, 0.5], not '%s'", v);
        } else if (strcmp(a, "--precision") == 0) {
            NEED();
            if (strcmp(v, "fp32") == 0) o.precision = NN_PREC_F32;
            else if (strcmp(v, "bf16") == 0) o.precision = NN_PREC_BF16;
            else return cli_usage_error(cmd, "--precision wants fp32 or bf16, not '%s'", v);
        } else if (strcmp(a, "--feed") == 0) {
            NEED();
            if (strcmp(v, "turns") == 0) o.feed_ahead = 0;
            else if (strcmp(v, "ahead") == 0) o.feed_ahead = 1;
            else return cli_usage_error(cmd, "--feed wants 'turns' or 'ahead', not '%s'", v);
        }
        else if (strcmp(a, "--freeze-bn") == 0) o.freeze_bn = 1;
        else if (strcmp(a, "--no-augment") == 0) o.augment = 0;
        else if (strcmp(a, "--keep-epochs") == 0) o.keep_epochs = 1;
        else if (strcmp(a, "--bf16-save") == 0) o.bf16_save = 1;
        else if (strcmp(a, "--layout") == 0) {
            NEED();
            if (dfd_layout_parse(v, &o.layout)) return cli_usage_error(cmd, "unknown layout '%s'", v);
        } else if (strcmp(a, "--val-fraction") == 0) {
            NEED();
            if (cli_parse_double(v, 0, 0.9, &o.val_fraction)) return cli_usage_error(cmd, "--val-fraction wants 0..0.9");
        } else if (strcmp(a, "--epochs") == 0 || strcmp(a, "--stage1-epochs") == 0 || strcmp(a, "--batch") == 0 ||
                   strcmp(a, "--input-size") == 0 || strcmp(a, "--frames") == 0 || strcmp(a, "--patience") == 0 ||
                   strcmp(a, "--threads") == 0 || strcmp(a, "--loader-threads") == 0 || strcmp(a, "--limit") == 0 ||
                   strcmp(a, "--val-limit") == 0 || strcmp(a, "--seed") == 0 || strcmp(a, "--warmup-steps") == 0 ||
                   strcmp(a, "--bn-recalibrate") == 0) {
            NEED();
            if (cli_parse_int(v, 0, 1000000000L, &l)) return cli_usage_error(cmd, "%s wants a whole number, not '%s'", a, v);
            if (strcmp(a, "--epochs") == 0) o.epochs = (int)l;
            else if (strcmp(a, "--stage1-epochs") == 0) o.stage1_epochs = (int)l;
            else if (strcmp(a, "--batch") == 0) o.batch = (int)l;
            else if (strcmp(a, "--input-size") == 0) o.input_size = (int)l;
            else if (strcmp(a, "--frames") == 0) o.frames = (int)l;
            else if (strcmp(a, "--patience") == 0) o.patience = (int)l;
            else if (strcmp(a, "--threads") == 0) o.threads = (int)l;
            else if (strcmp(a, "--loader-threads") == 0) o.loader_threads = (int)l;
            else if (strcmp(a, "--limit") == 0) o.limit = l;
            else if (strcmp(a, "--val-limit") == 0) o.val_limit = l;
            else if (strcmp(a, "--seed") == 0) o.seed = (uint64_t)l;
            else if (strcmp(a, "--bn-recalibrate") == 0) o.bn_recalibrate = (int)(l > 10000 ? 10000 : l);
            else o.warmup_steps = l;
        } else if (strcmp(a, "--lr") == 0 || strcmp(a, "--stage2-lr") == 0 || strcmp(a, "--weight-decay") == 0 ||
                   strcmp(a, "--width") == 0 || strcmp(a, "--dropout") == 0 || strcmp(a, "--sbi-fraction") == 0 ||
                   strcmp(a, "--rotate") == 0 || strcmp(a, "--shift") == 0 || strcmp(a, "--scale") == 0 ||
                   strcmp(a, "--sbi-margin") == 0 || strcmp(a, "--bn-momentum") == 0) {
            NEED();
            if (cli_parse_double(v, 0, 1000, &d)) return cli_usage_error(cmd, "%s wants a number, not '%s'", a, v);
            if (strcmp(a, "--bn-momentum") == 0 && d >= 1) return cli_usage_error(cmd, "--bn-momentum wants 0..1 (exclusive)");
            if (strcmp(a, "--lr") == 0) o.lr = (float)d;
            else if (strcmp(a, "--stage2-lr") == 0) o.stage2_lr = (float)d;
            else if (strcmp(a, "--weight-decay") == 0) o.weight_decay = (float)d;
            else if (strcmp(a, "--width") == 0) o.width = (float)d;
            else if (strcmp(a, "--dropout") == 0) o.dropout = (float)d;
            else if (strcmp(a, "--sbi-fraction") == 0) o.sbi_fraction = (float)d;
            else if (strcmp(a, "--rotate") == 0) o.aug.rotate = (float)d;
            else if (strcmp(a, "--shift") == 0) o.aug.shift = (float)d;
            else if (strcmp(a, "--scale") == 0) o.aug.scale = (float)d;
            else if (strcmp(a, "--bn-momentum") == 0) o.bn_momentum = (float)d;
            else sbi_margin = (float)d;
        } else if (strcmp(a, "--optimizer") == 0) {
            NEED();
            if (strcmp(v, "adam") == 0) o.optimizer = NN_OPT_ADAM;
            else if (strcmp(v, "adamw") == 0) o.optimizer = NN_OPT_ADAMW;
            else if (strcmp(v, "sgd") == 0) o.optimizer = NN_OPT_SGD;
            else return cli_usage_error(cmd, "unknown optimizer '%s' (adam, adamw, sgd)", v);
        } else if (strcmp(a, "--schedule") == 0) {
            NEED();
            if (strcmp(v, "cosine") == 0) o.schedule = NN_LR_COSINE;
            else if (strcmp(v, "constant") == 0) o.schedule = NN_LR_CONSTANT;
            else if (strcmp(v, "step") == 0) o.schedule = NN_LR_STEP;
            else return cli_usage_error(cmd, "unknown schedule '%s' (cosine, constant, step)", v);
        } else if (strcmp(a, "--balance") == 0) {
            NEED();
            if (strcmp(v, "undersample") == 0) o.balance = DFD_BALANCE_UNDERSAMPLE;
            else if (strcmp(v, "weights") == 0) o.balance = DFD_BALANCE_WEIGHTS;
            else if (strcmp(v, "none") == 0) o.balance = DFD_BALANCE_NONE;
            else return cli_usage_error(cmd, "unknown balance '%s' (undersample, weights, none)", v);
        } else if (strcmp(a, "--backend") == 0) {
            NEED();
            if (strcmp(v, "dnnl") == 0) o.backend = NN_BACKEND_DNNL;
            else if (strcmp(v, "ref") == 0) o.backend = NN_BACKEND_REF;
            else return cli_usage_error(cmd, "unknown backend '%s' (dnnl, ref)", v);
        } else if (strcmp(a, "--jpeg-quality") == 0) {
            NEED();
            int lo, hi;
            if (sscanf(v, "%d:%d", &lo, &hi) != 2 || lo < 1 || hi > 100 || lo > hi)
                return cli_usage_error(cmd, "--jpeg-quality wants LO:HI within 1..100");
            o.aug.jpeg_qmin = lo, o.aug.jpeg_qmax = hi;
        }
        PROB("--flip", flip)
        PROB("--affine", affine)
        PROB("--color", color)
        PROB("--blur", blur)
        PROB("--noise", noise)
        PROB("--downscale", downscale)
        PROB("--jpeg", jpeg)
        PROB("--cutout", cutout)
        else return cli_usage_error(cmd, "unknown option '%s'", a);
#undef NEED
#undef PROB
#undef STR
    }
    if (sbi_margin > 0) dfd_sbi_opts_for_margin(&o.sbi, sbi_margin, 0);
    if (!o.arch) return cli_usage_error(cmd, "--arch is required");
    if (!o.data) return cli_usage_error(cmd, "--data is required");
    if (o.task && strcmp(o.task, "manipulation") != 0 && strcmp(o.task, "synthetic") != 0)
        return cli_usage_error(cmd, "--task must be 'manipulation' or 'synthetic', not '%s'", o.task);
    if (o.task && o.video && strcmp(o.task, "synthetic") == 0)
        return cli_usage_error(cmd, "--task synthetic is for image models only");
    dfd_error err;
    dfd_error_clear(&err);
    if (preview) {
        if (dfd_train_preview(&o, preview, 6, &err)) {
            fprintf(stderr, "dfd train: %s\n", err.message);
            return DFD_EXIT_FAILED;
        }
        printf("wrote %s\n", preview);
        return DFD_EXIT_OK;
    }
    if (!o.out) return cli_usage_error(cmd, "--out is required");
    ui u;
    memset(&u, 0, sizeof u);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    dfd_train_summary s;
    int rc = dfd_train_run(&o, on_progress, &u, &s, &err);
    sigaction(SIGINT, &old, NULL);
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
