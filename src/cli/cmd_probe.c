/* cmd_probe.c — `dfd probe`: what the media module reads from each file's headers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const cli_opt probe_opts[] = {
    {NULL, 0, NULL, "Options:"},
    {"json", 256, NULL, "print JSON: one object per file ({\"file\", \"media\", \"format\", \"width\",\n"
                        "\"height\", ...}), an array of them when there are several files; a file that\n"
                        "cannot be read gets an \"error\" field"},
    {0}};

const cli_command cmd_probe_cmd = {
    "probe",
    "Usage: dfd probe FILE... [--json]\n\n"
    "Tells, from the content and not the name, whether each FILE is an image or a video, and\n"
    "prints what its headers say: format, size as displayed (after EXIF orientation or video\n"
    "rotation) and, for videos, container, codec, rotation, frame rate, duration and frames.\n\n",
    probe_opts,
    "Exit status: 0 when every file was read, 1 when one was not, 2 on a usage error.\n"};

static void print_human(const json_t *o) {
    if (json_object_get(o, "error")) return; /* already said on stderr */
    const char *media = json_string_value(json_object_get(o, "media"));
    printf("%s: %s", json_string_value(json_object_get(o, "file")), media);
    long long w = json_integer_value(json_object_get(o, "width")), h = json_integer_value(json_object_get(o, "height"));
    if (strcmp(media, "image") == 0) {
        printf(", %s, %lldx%lld, %lld-bit, %lld channel(s)%s%s", json_string_value(json_object_get(o, "format")), w, h,
               json_integer_value(json_object_get(o, "bit_depth")), json_integer_value(json_object_get(o, "channels")),
               json_is_true(json_object_get(o, "alpha")) ? ", alpha" : "",
               json_is_true(json_object_get(o, "interlaced")) ? ", interlaced" : "");
        long long orient = json_integer_value(json_object_get(o, "orientation"));
        if (orient != 1) printf(", EXIF orientation %lld", orient);
    } else {
        printf(", %s, %s, %lldx%lld", json_string_value(json_object_get(o, "container")),
               json_string_value(json_object_get(o, "codec")), w, h);
        long long rot = json_integer_value(json_object_get(o, "rotation"));
        if (rot) printf(" (rotated %lld degrees)", rot);
        printf(", %.3f fps, %.3f s, %s%lld frames", json_real_value(json_object_get(o, "fps")),
               json_real_value(json_object_get(o, "duration_s")),
               json_is_true(json_object_get(o, "frames_estimated")) ? "about " : "",
               json_integer_value(json_object_get(o, "frames")));
    }
    printf("\n");
}

int cmd_probe(int argc, char **argv) {
    int as_json = 0, k;
    const char *val;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_probe_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &val)) > 0)
        if (k == 256) as_json = 1;
    if (k < 0) return DFD_EXIT_USAGE;
    int nfiles = argc - p.first;
    if (nfiles <= 0) return cli_usage_error("probe", "no FILE given");
    json_t *all = json_array();
    if (!all) return DFD_EXIT_FAILED;
    int failed = 0;
    for (int i = p.first; i < argc; i++) {
        char *text = NULL;
        dfd_error err;
        int rc = dfd_probe_file(argv[i], &text, &err);
        json_t *o = text ? json_loads(text, 0, NULL) : NULL;
        dfd_free(text);
        if (rc) {
            fprintf(stderr, "dfd probe: %s: %s\n", argv[i], err.message);
            failed = 1;
        }
        if (!o) {
            failed = 1;
            continue;
        }
        if (!as_json) print_human(o);
        json_array_append_new(all, o);
    }
    if (as_json) {
        json_t *doc = nfiles == 1 ? json_array_get(all, 0) : all;
        char *s = json_dumps(doc, JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (s) puts(s);
        free(s);
    }
    json_decref(all);
    return failed ? DFD_EXIT_FAILED : DFD_EXIT_OK;
}
