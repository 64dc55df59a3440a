/* test_train_dataset — each dataset layout, built as a miniature in a temporary folder,
 * lists the right items with the right labels and groups (Celeb-DF's official test list
 * included); the group split never puts a group on both sides, is deterministic and
 * independent of item order; undersampling balances; manifests round-trip. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/train.h"

static void mkdirs(const char *root, const char *rel) {
    char *p = tu_join(root, rel);
    for (char *s = p + strlen(root) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
    free(p);
}

/* Creates root/rel (folders too). Video files link to a real clip when the shared data
 * has one, so the miniature is also decodable; listing itself only reads names. */
static void touch(const char *root, const char *rel) {
    char *p = tu_join(root, rel);
    char *dir = strdup(rel);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        mkdirs(root, dir);
    }
    free(dir);
    char *clip = getenv("DFD_SHARED_DATA") ? tu_shared_path("videos/lynaeydofd.mp4") : NULL;
    if (clip && strstr(rel, ".mp4") && access(clip, R_OK) == 0) assert_int_equal(symlink(clip, p), 0);
    else tu_write_file(p, "x", 1);
    free(clip);
    free(p);
}

static const dfd_item *find(const dfd_dataset *d, const char *suffix) {
    size_t ls = strlen(suffix);
    for (size_t i = 0; i < d->n; i++) {
        size_t lp = strlen(d->items[i].path);
        if (lp >= ls && strcmp(d->items[i].path + lp - ls, suffix) == 0) return &d->items[i];
    }
    fail_msg("no item ending in '%s'", suffix);
    return NULL;
}

static void generic_folders(void **state) {
    (void)state;
    char *root = tu_mkdtemp();
    touch(root, "real/a.jpg");
    touch(root, "real/alice/b.png");
    touch(root, "real/alice/c.webp");
    touch(root, "fake/z.jpg");
    touch(root, "fake/notes.txt"); /* not media: ignored */
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, NULL), DFD_OK);
    assert_int_equal(d->layout, DFD_LAYOUT_GENERIC);
    assert_int_equal(d->n, 4);
    /* Sorted listing: real first (label 0), files before subfolders. */
    assert_non_null(strstr(d->items[0].path, "real/a.jpg"));
    assert_int_equal(find(d, "real/a.jpg")->label, 0);
    assert_string_equal(find(d, "real/a.jpg")->group, "a.jpg");
    assert_string_equal(find(d, "alice/b.png")->group, "alice");
    assert_string_equal(find(d, "alice/c.webp")->group, "alice");
    assert_int_equal(find(d, "fake/z.jpg")->label, 1);
    assert_int_equal(find(d, "fake/z.jpg")->frame, -1);
    long nr, nf;
    dfd_dataset_count(d, -1, &nr, &nf);
    assert_int_equal(nr, 3);
    assert_int_equal(nf, 1);
    dfd_dataset_free(d);
    tu_rmtree(root);
    free(root);
}

static void labels_csv_with_quotes_and_groups(void **state) {
    (void)state;
    char *root = tu_mkdtemp();
    const char *csv = "file,label,group\r\n"
                      "x/1.jpg,real,v1.mp4\r\n"
                      "\"x/with,comma.jpg\",FAKE,v1.mp4\r\n"
                      "x/3.jpg,1,\r\n"
                      "\n";
    char *p = tu_join(root, "labels.csv");
    tu_write_file(p, csv, strlen(csv));
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, NULL), DFD_OK);
    assert_int_equal(d->n, 3);
    assert_int_equal(d->items[0].label, 0);
    assert_string_equal(d->items[0].group, "v1.mp4");
    assert_non_null(strstr(d->items[1].path, "x/with,comma.jpg"));
    assert_int_equal(d->items[1].label, 1);
    assert_string_equal(d->items[2].group, "x/3.jpg"); /* empty group: the file itself */
    dfd_dataset_free(d);
    /* A bad label is reported with its line. */
    const char *bad = "file,label\na.jpg,real\nb.jpg,maybe\n";
    tu_write_file(p, bad, strlen(bad));
    dfd_error e;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_GENERIC, &d, &e), DFD_E_CORRUPT);
    assert_non_null(strstr(e.message, ":3:"));
    assert_non_null(strstr(e.message, "maybe"));
    /* A frame that is not a number from -1 to INT_MAX is reported, not read as garbage
     * (atoi took "7x" as 7, "x" as 0, and past INT_MAX was undefined). */
    const char *bad_frames[] = {"99999999999", "7x", "x", "-2"};
    for (int i = 0; i < 4; i++) {
        char text[128];
        snprintf(text, sizeof text, "file,label,frame\na.jpg,real,3\nb.jpg,fake,%s\n", bad_frames[i]);
        tu_write_file(p, text, strlen(text));
        assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_GENERIC, &d, &e), DFD_E_CORRUPT);
        assert_non_null(strstr(e.message, ":3:"));
        assert_non_null(strstr(e.message, bad_frames[i]));
    }
    const char *frames = "file,label,frame\na.jpg,real,2147483647\nb.jpg,fake,-1\nc.jpg,fake,\n";
    tu_write_file(p, frames, strlen(frames));
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_GENERIC, &d, &e), DFD_OK);
    assert_int_equal(d->items[0].frame, 2147483647);
    assert_int_equal(d->items[1].frame, -1);
    assert_int_equal(d->items[2].frame, -1);
    dfd_dataset_free(d);
    const char *nohdr = "a.jpg,real\n";
    tu_write_file(p, nohdr, strlen(nohdr));
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_GENERIC, &d, &e), DFD_E_CORRUPT);
    free(p);
    tu_rmtree(root);
    free(root);
    /* Not a dataset at all. */
    root = tu_mkdtemp();
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, &e), DFD_E_NOT_FOUND);
    tu_rmtree(root);
    free(root);
}

static void celebdf_groups_and_official_test_list(void **state) {
    (void)state;
    char *root = tu_mkdtemp();
    touch(root, "Celeb-real/id0_0000.mp4");
    touch(root, "Celeb-real/id1_0000.mp4");
    touch(root, "YouTube-real/00000.mp4");
    touch(root, "Celeb-synthesis/id0_id1_0000.mp4");
    touch(root, "Celeb-synthesis/id1_id0_0000.mp4");
    const char *list = "1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id1_id0_0000.mp4\n1 Celeb-real/gone.mp4\n";
    char *p = tu_join(root, "List_of_testing_videos.txt");
    tu_write_file(p, list, strlen(list));
    free(p);
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, NULL), DFD_OK);
    assert_int_equal(d->layout, DFD_LAYOUT_CELEBDF);
    assert_int_equal(d->n, 5);
    const dfd_item *r0 = find(d, "Celeb-real/id0_0000.mp4"), *f01 = find(d, "id0_id1_0000.mp4"),
                   *f10 = find(d, "id1_id0_0000.mp4"), *yt = find(d, "YouTube-real/00000.mp4");
    assert_int_equal(r0->label, 0);
    assert_int_equal(f01->label, 1);
    assert_int_equal(yt->label, 0);
    assert_int_equal(r0->kind, DFD_ITEM_VIDEO);
    /* A fake belongs with the real video of its target identity. */
    assert_string_equal(r0->group, f01->group);
    assert_string_equal(f10->group, find(d, "Celeb-real/id1_0000.mp4")->group);
    assert_string_not_equal(r0->group, f10->group);
    assert_int_equal(yt->split, DFD_SPLIT_TEST);
    assert_int_equal(f10->split, DFD_SPLIT_TEST);
    assert_int_equal(r0->split, DFD_SPLIT_TRAIN);
    assert_int_equal(f01->split, DFD_SPLIT_TRAIN);
    /* Splitting never moves official test items. */
    assert_int_equal(dfd_dataset_split_groups(d, 0.5, 1, NULL), DFD_OK);
    assert_int_equal(yt->split, DFD_SPLIT_TEST);
    assert_int_equal(f10->split, DFD_SPLIT_TEST);
    dfd_dataset_free(d);
    tu_rmtree(root);
    free(root);
}

static void ffpp_pairs_form_groups(void **state) {
    (void)state;
    char *root = tu_mkdtemp();
    touch(root, "original_sequences/youtube/c23/videos/000.mp4");
    touch(root, "original_sequences/youtube/c23/videos/003.mp4");
    touch(root, "original_sequences/youtube/c23/videos/010.mp4");
    touch(root, "original_sequences/actors/c23/videos/01__walk.mp4"); /* not youtube: ignored */
    touch(root, "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4");
    touch(root, "manipulated_sequences/FaceSwap/c23/videos/003_000.mp4");
    touch(root, "manipulated_sequences/Face2Face/c40/videos/010_020.mp4");
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, NULL), DFD_OK);
    assert_int_equal(d->layout, DFD_LAYOUT_FFPP);
    assert_int_equal(d->n, 6);
    assert_int_equal(find(d, "youtube/c23/videos/000.mp4")->label, 0);
    assert_int_equal(find(d, "Deepfakes/c23/videos/000_003.mp4")->label, 1);
    const char *g = find(d, "youtube/c23/videos/000.mp4")->group;
    assert_string_equal(g, "ffpp/000");
    assert_string_equal(find(d, "youtube/c23/videos/003.mp4")->group, g);
    assert_string_equal(find(d, "000_003.mp4")->group, g);
    assert_string_equal(find(d, "003_000.mp4")->group, g);
    assert_string_equal(find(d, "010_020.mp4")->group, "ffpp/010");
    assert_string_equal(find(d, "youtube/c23/videos/010.mp4")->group, "ffpp/010");
    dfd_dataset_free(d);
    tu_rmtree(root);
    free(root);
}

static void dfdc_metadata(void **state) {
    (void)state;
    char *root = tu_mkdtemp();
    touch(root, "dfdc_train_part_0/aaa.mp4");
    touch(root, "dfdc_train_part_0/bbb.mp4");
    touch(root, "dfdc_train_part_1/ccc.mp4");
    const char *m0 = "{\"bbb.mp4\": {\"label\": \"FAKE\", \"split\": \"train\", \"original\": \"aaa.mp4\"},"
                     " \"aaa.mp4\": {\"label\": \"REAL\", \"split\": \"train\", \"original\": null},"
                     " \"zzz.mp4\": {\"label\": \"FAKE\", \"original\": \"aaa.mp4\"}}";
    const char *m1 = "{\"ccc.mp4\": {\"label\": \"FAKE\", \"original\": \"aaa.mp4\"}}";
    char *p = tu_join(root, "dfdc_train_part_0/metadata.json");
    tu_write_file(p, m0, strlen(m0));
    free(p);
    p = tu_join(root, "dfdc_train_part_1/metadata.json");
    tu_write_file(p, m1, strlen(m1));
    free(p);
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, NULL), DFD_OK);
    assert_int_equal(d->layout, DFD_LAYOUT_DFDC);
    assert_int_equal(d->n, 3); /* zzz.mp4 is listed but absent */
    assert_non_null(strstr(d->items[0].path, "part_0/aaa.mp4"));
    assert_int_equal(d->items[0].label, 0);
    assert_int_equal(find(d, "bbb.mp4")->label, 1);
    assert_string_equal(find(d, "aaa.mp4")->group, "dfdc/aaa.mp4");
    assert_string_equal(find(d, "bbb.mp4")->group, "dfdc/aaa.mp4");
    assert_string_equal(find(d, "ccc.mp4")->group, "dfdc/aaa.mp4"); /* across parts */
    dfd_dataset_free(d);
    tu_rmtree(root);
    free(root);
}

/* A synthetic dataset: 300 groups of 1-6 items, some all-real, some all-fake, some mixed. */
static dfd_dataset *synthetic(int reverse) {
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_new("/x", &d, NULL), DFD_OK);
    unsigned x = 7;
    struct { char path[64], group[32]; int label; } rows[2000];
    int n = 0;
    for (int g = 0; g < 300; g++) {
        x = x * 1103515245u + 12345u;
        int size = 1 + (int)((x >> 16) % 6), kind = (int)((x >> 8) % 3);
        for (int k = 0; k < size; k++) {
            snprintf(rows[n].path, sizeof rows[n].path, "/x/g%d/%d.jpg", g, k);
            snprintf(rows[n].group, sizeof rows[n].group, "group-%d", g);
            rows[n].label = kind == 0 ? 0 : kind == 2 ? 1 : k > 0;
            n++;
        }
    }
    for (int i = 0; i < n; i++) {
        int j = reverse ? n - 1 - i : i;
        assert_int_equal(dfd_dataset_add(d, rows[j].path, rows[j].label, rows[j].group, NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL),
                         DFD_OK);
    }
    return d;
}

static int split_of(const dfd_dataset *d, const char *path) {
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->items[i].path, path) == 0) return d->items[i].split;
    return -1;
}

static void group_split_is_clean_and_deterministic(void **state) {
    (void)state;
    dfd_dataset *d = synthetic(0), *e = synthetic(1), *f = synthetic(0);
    assert_int_equal(dfd_dataset_split_groups(d, 0.2, 42, NULL), DFD_OK);
    assert_int_equal(dfd_dataset_split_groups(e, 0.2, 42, NULL), DFD_OK);
    assert_int_equal(dfd_dataset_split_groups(f, 0.2, 43, NULL), DFD_OK);
    /* No group on both sides. */
    for (size_t i = 0; i < d->n; i++)
        for (size_t j = i + 1; j < d->n; j++)
            if (strcmp(d->items[i].group, d->items[j].group) == 0) assert_int_equal(d->items[i].split, d->items[j].split);
    /* About 20% in validation, for each class. */
    long vr, vf, tr, tf;
    dfd_dataset_count(d, DFD_SPLIT_VAL, &vr, &vf);
    dfd_dataset_count(d, DFD_SPLIT_TRAIN, &tr, &tf);
    double share_r = (double)vr / (vr + tr), share_f = (double)vf / (vf + tf);
    assert_true(share_r > 0.15 && share_r < 0.25);
    assert_true(share_f > 0.15 && share_f < 0.25);
    /* Same seed, items in reverse order: the same split. Another seed: a different one. */
    int differ = 0;
    for (size_t i = 0; i < d->n; i++) {
        assert_int_equal(split_of(e, d->items[i].path), d->items[i].split);
        differ += split_of(f, d->items[i].path) != (int)d->items[i].split;
    }
    assert_true(differ > 0);
    assert_int_equal(dfd_dataset_split_groups(d, 1.0, 1, NULL), DFD_E_ARG);
    dfd_dataset_free(d);
    dfd_dataset_free(e);
    dfd_dataset_free(f);
}

static void epoch_order_balances_and_weights(void **state) {
    (void)state;
    dfd_dataset *d = synthetic(0);
    assert_int_equal(dfd_dataset_split_groups(d, 0.2, 42, NULL), DFD_OK);
    long tr, tf;
    dfd_dataset_count(d, DFD_SPLIT_TRAIN, &tr, &tf);
    assert_true(tr != tf);
    size_t *idx, n, *idx2, n2;
    assert_int_equal(dfd_dataset_epoch_order(d, DFD_SPLIT_TRAIN, 1, 5, 0, &idx, &n, NULL), DFD_OK);
    assert_int_equal(n, 2 * (size_t)(tr < tf ? tr : tf));
    long c[2] = {0, 0};
    unsigned char *seen = calloc(d->n, 1);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(d->items[idx[i]].split, DFD_SPLIT_TRAIN);
        assert_int_equal(seen[idx[i]], 0); /* no repeats */
        seen[idx[i]] = 1;
        c[d->items[idx[i]].label]++;
    }
    assert_int_equal(c[0], c[1]);
    /* Deterministic in the seed; a limit keeps a prefix. */
    assert_int_equal(dfd_dataset_epoch_order(d, DFD_SPLIT_TRAIN, 1, 5, 10, &idx2, &n2, NULL), DFD_OK);
    assert_int_equal(n2, 10);
    assert_memory_equal(idx, idx2, 10 * sizeof *idx);
    free(idx2);
    /* Without undersampling every training item comes once. */
    assert_int_equal(dfd_dataset_epoch_order(d, DFD_SPLIT_TRAIN, 0, 6, 0, &idx2, &n2, NULL), DFD_OK);
    assert_int_equal(n2, (size_t)(tr + tf));
    free(idx2);
    float w[2];
    dfd_dataset_class_weights(d, DFD_SPLIT_TRAIN, w);
    assert_float_equal(w[0] * tr, w[1] * tf, 1e-2); /* each class weighs the same in total */
    assert_float_equal(w[0] * tr + w[1] * tf, (double)(tr + tf), 1e-2);
    free(seen);
    free(idx);
    dfd_dataset_free(d);
}

static void manifest_round_trip_and_sequences(void **state) {
    (void)state;
    char *root = tu_mkdtemp();
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_new(root, &d, NULL), DFD_OK);
    float box[4] = {10, 20, 30.5f, 40};
    char p[512];
    for (int f = 2; f >= 0; f--) { /* added out of frame order */
        snprintf(p, sizeof p, "%s/crops/v,1_%d.jpg", root, f);
        assert_int_equal(dfd_dataset_add(d, p, 1, "g\"1", "v,1.mp4#0", f * 10, box, DFD_SPLIT_TEST, NULL), DFD_OK);
    }
    snprintf(p, sizeof p, "%s/crops/v2_0.jpg", root);
    assert_int_equal(dfd_dataset_add(d, p, 0, "g2", "v2.mp4#0", 0, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK);
    char *man = tu_join(root, "manifest.csv");
    assert_int_equal(dfd_dataset_write_manifest(d, man, NULL), DFD_OK);
    size_t len;
    char *text = (char *)tu_read_file(man, &len);
    assert_non_null(strstr(text, "file,label,group,source,frame,box,split\n\"crops/v,1_2.jpg\",fake,\"g\"\"1\""));
    free(text);
    dfd_dataset *e;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &e, NULL), DFD_OK);
    assert_int_equal(e->n, d->n);
    for (size_t i = 0; i < d->n; i++) {
        assert_string_equal(e->items[i].path, d->items[i].path);
        assert_string_equal(e->items[i].group, d->items[i].group);
        assert_string_equal(e->items[i].source, d->items[i].source);
        assert_int_equal(e->items[i].label, d->items[i].label);
        assert_int_equal(e->items[i].frame, d->items[i].frame);
        assert_int_equal(e->items[i].split, d->items[i].split);
        for (int k = 0; k < 4; k++)
            if (isnan(d->items[i].box[k])) assert_true(isnan(e->items[i].box[k]));
            else assert_float_equal(e->items[i].box[k], d->items[i].box[k], 0.05);
    }
    /* Sequences: per source, in frame order; short ones dropped. */
    size_t *order, ns;
    dfd_sequence *seqs;
    assert_int_equal(dfd_dataset_sequences(e, 2, &order, &seqs, &ns, NULL), DFD_OK);
    assert_int_equal(ns, 1);
    assert_int_equal(seqs[0].count, 3);
    assert_int_equal(seqs[0].label, 1);
    assert_int_equal(seqs[0].split, DFD_SPLIT_TEST);
    for (int k = 0; k < 3; k++) assert_int_equal(e->items[order[seqs[0].first + k]].frame, 10 * k);
    free(order);
    free(seqs);
    dfd_dataset_free(e);
    dfd_dataset_free(d);
    free(man);
    tu_rmtree(root);
    free(root);
}

static void shared_dfdc_faces_lists_with_groups(void **state) {
    (void)state;
    TU_REQUIRE_SHARED_DATA();
    char *root = tu_shared_path("dfdc-faces");
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, NULL), DFD_OK);
    long nr, nf;
    dfd_dataset_count(d, -1, &nr, &nf);
    assert_int_equal(nr, 10000);
    assert_int_equal(nf, 10000);
    assert_int_equal(dfd_dataset_split_groups(d, 0.2, 1, NULL), DFD_OK);
    dfd_dataset_count(d, DFD_SPLIT_VAL, &nr, &nf);
    assert_true(nr > 1500 && nr < 2500);
    assert_true(nf > 1500 && nf < 2500);
    dfd_dataset_free(d);
    free(root);
}

/* --paired: each fake finds the real of its group (one fake per real, the first in item
 * order; none across splits, none for a group without a real), and the paired order keeps
 * every pair together, real first, shuffles pairs and single items as units, balances the
 * classes by cutting singles only, and depends on the seed alone. */
static void paired_order_keeps_each_fake_after_its_real(void **state) {
    (void)state;
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_new("/x", &d, NULL), DFD_OK);
    /* Reals r0..r9 in groups g0..g9; fakes of g0..g5 (g0 twice), one of gx (no real), one of
     * g6 in validation (its real in training), and extra reals "extra/u0..u5". */
    char p[64], g[32];
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof p, "/x/r%d.jpg", i), snprintf(g, sizeof g, "g%d", i);
        assert_int_equal(dfd_dataset_add(d, p, 0, g, NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK);
    }
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "/x/f%d.jpg", i), snprintf(g, sizeof g, "g%d", i);
        assert_int_equal(dfd_dataset_add(d, p, 1, g, NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK);
    }
    assert_int_equal(dfd_dataset_add(d, "/x/f0b.jpg", 1, "g0", NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK); /* 16 */
    assert_int_equal(dfd_dataset_add(d, "/x/fx.jpg", 1, "gx", NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK);  /* 17 */
    assert_int_equal(dfd_dataset_add(d, "/x/f6.jpg", 1, "g6", NULL, -1, NULL, DFD_SPLIT_VAL, NULL), DFD_OK);    /* 18 */
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "/x/u%d.jpg", i), snprintf(g, sizeof g, "extra/u%d", i);
        assert_int_equal(dfd_dataset_add(d, p, 0, g, NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK);
    }
    size_t *partner, pairs;
    assert_int_equal(dfd_dataset_fake_partners(d, DFD_SPLIT_TRAIN, &partner, &pairs, NULL), DFD_OK);
    assert_int_equal(pairs, 6);
    for (size_t i = 0; i < 6; i++) assert_int_equal(partner[10 + i], i); /* f_i with r_i */
    assert_int_equal(partner[16], DFD_NO_PARTNER); /* r0 is taken by f0 */
    assert_int_equal(partner[17], DFD_NO_PARTNER);
    assert_int_equal(partner[18], DFD_NO_PARTNER); /* another split */
    for (size_t i = 0; i < 10; i++) assert_int_equal(partner[i], DFD_NO_PARTNER);

    int lab[25], spl[25];
    for (size_t i = 0; i < d->n; i++) lab[i] = d->items[i].label, spl[i] = (int)d->items[i].split;
    size_t *idx, n, *idx2, n2;
    unsigned char *wp, *wp2;
    /* Undersampled: 8 training fakes (6 paired, 2 single), 16 reals: 8 + 8. */
    assert_int_equal(dfd_order_paired(lab, spl, partner, d->n, DFD_SPLIT_TRAIN, 1, 7, 0, &idx, &wp, &n, NULL), DFD_OK);
    assert_int_equal(n, 16);
    int c[2] = {0, 0}, seen_pairs = 0;
    unsigned char seen[25] = {0};
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(spl[idx[k]], DFD_SPLIT_TRAIN);
        assert_int_equal(seen[idx[k]], 0);
        seen[idx[k]] = 1;
        c[lab[idx[k]]]++;
        if (wp[k]) {
            assert_true(k > 0);
            assert_int_equal(lab[idx[k]], 1);
            assert_int_equal(idx[k - 1], partner[idx[k]]);
            seen_pairs++;
        } else if (lab[idx[k]] == 1) {
            assert_true(idx[k] == 16 || idx[k] == 17); /* only the unpaired fakes come alone */
        }
    }
    assert_int_equal(c[0], 8);
    assert_int_equal(c[1], 8);
    assert_int_equal(seen_pairs, 6);
    /* The same seed gives the same order; another seed another (units shuffled). */
    assert_int_equal(dfd_order_paired(lab, spl, partner, d->n, DFD_SPLIT_TRAIN, 1, 7, 0, &idx2, &wp2, &n2, NULL), DFD_OK);
    assert_int_equal(n2, n);
    assert_memory_equal(idx, idx2, n * sizeof *idx);
    assert_memory_equal(wp, wp2, n);
    free(idx2), free(wp2);
    int differs = 0;
    for (uint64_t seed = 8; seed < 12; seed++) {
        assert_int_equal(dfd_order_paired(lab, spl, partner, d->n, DFD_SPLIT_TRAIN, 1, seed, 0, &idx2, &wp2, &n2, NULL), DFD_OK);
        differs += memcmp(idx, idx2, n * sizeof *idx) != 0;
        free(idx2), free(wp2);
    }
    assert_true(differs >= 3);
    /* Without undersampling every training item comes once; a limit keeps a prefix. */
    assert_int_equal(dfd_order_paired(lab, spl, partner, d->n, DFD_SPLIT_TRAIN, 0, 7, 0, &idx2, &wp2, &n2, NULL), DFD_OK);
    assert_int_equal(n2, 24);
    free(idx2), free(wp2);
    assert_int_equal(dfd_order_paired(lab, spl, partner, d->n, DFD_SPLIT_TRAIN, 1, 7, 5, &idx2, &wp2, &n2, NULL), DFD_OK);
    assert_int_equal(n2, 5);
    assert_memory_equal(idx, idx2, 5 * sizeof *idx);
    free(idx2), free(wp2);
    /* Without partners it is a plain balanced order: no pair marks. */
    assert_int_equal(dfd_order_paired(lab, spl, NULL, d->n, DFD_SPLIT_TRAIN, 1, 7, 0, &idx2, &wp2, &n2, NULL), DFD_OK);
    assert_int_equal(n2, 16);
    for (size_t k = 0; k < n2; k++) assert_int_equal(wp2[k], 0);
    free(idx2), free(wp2);
    free(idx), free(wp), free(partner);
    dfd_dataset_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generic_folders),
        cmocka_unit_test(labels_csv_with_quotes_and_groups),
        cmocka_unit_test(celebdf_groups_and_official_test_list),
        cmocka_unit_test(ffpp_pairs_form_groups),
        cmocka_unit_test(dfdc_metadata),
        cmocka_unit_test(group_split_is_clean_and_deterministic),
        cmocka_unit_test(epoch_order_balances_and_weights),
        cmocka_unit_test(paired_order_keeps_each_fake_after_its_real),
        cmocka_unit_test(manifest_round_trip_and_sequences),
        cmocka_unit_test(shared_dfdc_faces_lists_with_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
