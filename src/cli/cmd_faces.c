/* cmd_faces.c — `dfd faces`: the faces found in images, and the face tracks of videos,
 * with the crops the classifier would see (--save-crops). The finding is the library's
 * (dfd_faces_file); this file parses options and prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

enum { O_JSON = 256, O_CROPS, O_FRAMES, O_MODE, O_MIN_FACE, O_PAD, O_MODELS };

static const cli_opt faces_opts[] = {
    {NULL, 0, NULL, "Options:"},
    {"json", O_JSON, NULL, "one JSON document for the run: {\"results\": [{\"file\", \"media\",\n"
                           "\"faces\": [{\"box\", \"score\", \"keypoints\", \"roll_deg\"}],\n"
                           "\"tracks\": [{\"id\", \"frames\": [{\"index\", \"time_s\", \"box\"}]}] (videos),\n"
                           "\"note\" (\"no face found\"), \"error\": null or a message}]}"},
    {"save-crops", O_CROPS, "DIR", "write each face as the classifier sees it (docs/preprocessing.md,\n"
                                   "224x224 PNG): FILE_face1.png, ..., or FILE_track1_frame42.png"},
    {"frames", O_FRAMES, "N", "frames sampled per video (default 30, at most " CLI_STR(CLI_FRAMES_MAX) ")"},
    {"mode", O_MODE, "M", "auto (default: both BlazeFace models, tiles for large images),\n"
                          "short (MediaPipe's short range only) or full (full range only)"},
    {"min-face", O_MIN_FACE, "PX", "smallest face side the auto mode looks for (default 40)"},
    {"pad", O_PAD, "F", "images: add a black border of F times the width/height on each side\n"
                        "before detecting (for tight face crops that the face fills); boxes\n"
                        "stay in the original image's pixels"},
    {"models", O_MODELS, "DIR", "where the face models are, as for scan: in DIR or in DIR/registry"},
    {"recursive", 'r', NULL, "walk sub-directories"},
    {0}};

const cli_command cmd_faces_cmd = {
    "faces",
    "Usage: dfd faces FILE|DIR... [--json] [--save-crops DIR] [--frames N] [--mode auto|short|full]\n"
    "                 [--min-face PX] [--pad F] [--models DIR] [-r]\n\n"
    "Finds the faces in each FILE (told apart as image or video by content) with BlazeFace.\n"
    "A directory adds its image and video files (-r, --recursive: and its sub-directories').\n"
    "For an image it lists every face: box (x, y, width, height in pixels), score, the six\n"
    "keypoints (eyes, nose tip, mouth, ears) and the roll angle from the eyes. For a video it\n"
    "samples N frames evenly, finds the faces on them and links them into tracks, one per\n"
    "person, as `dfd scan` does, listing each track's box per frame.\n\n",
    faces_opts,
    "A file without faces is not an error: its faces are empty and its note says why.\n"
    "Exit status: 0 when every file was read, 1 when one was not, 2 on a usage error.\n"};

static void print_human(const json_t *r) {
    const char *file = json_string_value(json_object_get(r, "file"));
    const json_t *e = json_object_get(r, "error");
    if (json_is_string(e)) {
        fprintf(stderr, "dfd faces: %s: %s\n", file, json_string_value(e));
        return;
    }
    const char *media = json_string_value(json_object_get(r, "media"));
    const json_t *faces = json_object_get(r, "faces"), *tracks = json_object_get(r, "tracks");
    printf("%s: %s %lldx%lld", file, media, json_integer_value(json_object_get(r, "width")),
           json_integer_value(json_object_get(r, "height")));
    if (tracks) {
        printf(", %lld frames sampled, %zu track%s\n", json_integer_value(json_object_get(r, "frames_sampled")),
               json_array_size(tracks), json_array_size(tracks) == 1 ? "" : "s");
        size_t i;
        json_t *t;
        json_array_foreach(tracks, i, t) {
            const json_t *fr = json_object_get(t, "frames");
            const json_t *first = json_array_get(fr, 0), *last = json_array_get(fr, json_array_size(fr) - 1);
            const json_t *b = json_object_get(first, "box");
            printf("  track %lld: %zu frames, %.2f s to %.2f s, first box %.0f,%.0f %.0fx%.0f\n",
                   json_integer_value(json_object_get(t, "id")), json_array_size(fr),
                   json_real_value(json_object_get(first, "time_s")), json_real_value(json_object_get(last, "time_s")),
                   json_real_value(json_array_get(b, 0)), json_real_value(json_array_get(b, 1)),
                   json_real_value(json_array_get(b, 2)), json_real_value(json_array_get(b, 3)));
        }
    } else {
        printf(", %zu face%s\n", json_array_size(faces), json_array_size(faces) == 1 ? "" : "s");
        size_t i;
        json_t *f;
        json_array_foreach(faces, i, f) {
            const json_t *b = json_object_get(f, "box");
            printf("  face %zu: box %.0f,%.0f %.0fx%.0f  score %.3f  roll %.1f deg\n", i + 1, json_real_value(json_array_get(b, 0)),
                   json_real_value(json_array_get(b, 1)), json_real_value(json_array_get(b, 2)),
                   json_real_value(json_array_get(b, 3)), json_real_value(json_object_get(f, "score")),
                   json_real_value(json_object_get(f, "roll_deg")));
        }
    }
    const json_t *note = json_object_get(r, "note");
    if (json_is_string(note)) printf("  (%s)\n", json_string_value(note));
}

int cmd_faces(int argc, char **argv) {
    dfd_faces_options fo;
    dfd_faces_options_default(&fo);
    int as_json = 0, recursive = 0, k;
    const char *val;
    long v;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_faces_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &val)) > 0) {
        switch (k) {
        case O_JSON: as_json = 1; break;
        case 'r': recursive = 1; break;
        case O_CROPS: fo.crops_dir = val; break;
        case O_MODELS: fo.models_dir = val; break;
        case O_PAD:
            if (cli_parse_double(val, 0.0, 4.0, &fo.pad)) return cli_usage_error("faces", "--pad must be 0..4");
            break;
        case O_FRAMES:
            if (cli_parse_int(val, 1, CLI_FRAMES_MAX, &v))
                return cli_usage_error("faces", "--frames must be 1..%d", CLI_FRAMES_MAX);
            fo.frames = (int)v;
            break;
        case O_MIN_FACE:
            if (cli_parse_int(val, 8, 100000, &v)) return cli_usage_error("faces", "--min-face must be 8..100000");
            fo.min_face = (int)v;
            break;
        case O_MODE:
            if (strcmp(val, "auto") == 0) fo.mode = DFD_FACES_AUTO;
            else if (strcmp(val, "short") == 0) fo.mode = DFD_FACES_SHORT;
            else if (strcmp(val, "full") == 0) fo.mode = DFD_FACES_FULL;
            else return cli_usage_error("faces", "--mode must be auto, short or full");
            break;
        }
    }
    if (k < 0) return DFD_EXIT_USAGE;
    if (p.first >= argc) return cli_usage_error("faces", "no FILE given");
    dfd_error err;
    dfd_face_finder *finder = NULL;
    if (dfd_face_finder_create(&fo, &finder, &err)) {
        fprintf(stderr, "dfd faces: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    cli_file_list fl = {0};
    if (cli_files_add(&fl, argv + p.first, argc - p.first, recursive)) {
        fprintf(stderr, "dfd faces: out of memory\n");
        dfd_face_finder_destroy(finder);
        return DFD_EXIT_FAILED;
    }
    int rc = DFD_EXIT_OK;
    if (fl.n == 0) {
        fprintf(stderr, "dfd faces: no image or video files found\n");
        rc = DFD_EXIT_FAILED;
    }
    json_t *doc = json_object(), *results = json_array();
    json_object_set_new(doc, "results", results);
    for (int i = 0; i < fl.n; i++) {
        char *text = NULL;
        int made;
        if (dfd_faces_file(finder, fl.paths[i], &text, &err) != DFD_OK) rc = DFD_EXIT_FAILED;
        json_t *r = (made = text != NULL) ? json_loads(text, 0, NULL) : NULL;
        dfd_free(text);
        if (!r) {
            fprintf(stderr, "dfd faces: %s: %s\n", fl.paths[i], made ? "bad JSON from the library" : err.message);
            rc = DFD_EXIT_FAILED;
            continue;
        }
        if (!as_json) print_human(r);
        json_array_append_new(results, r);
    }
    if (as_json) {
        char *s = json_dumps(doc, JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (s) puts(s);
        free(s);
    }
    json_decref(doc);
    cli_files_free(&fl);
    dfd_face_finder_destroy(finder);
    return rc;
}
