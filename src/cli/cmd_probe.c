/* cmd_probe.c — `dfd probe`: what the media module reads from each file's headers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "media/media.h"

const char cmd_probe_help[] =
    "Usage: dfd probe FILE... [--json]\n\n"
    "Tells, from the content and not the name, whether each FILE is an image or a video, and\n"
    "prints what its headers say: format, size as displayed (after EXIF orientation or video\n"
    "rotation) and, for videos, container, codec, rotation, frame rate, duration and frames.\n\n"
    "Options:\n"
    "  --json   print JSON: one object per file ({\"file\", \"media\", \"format\", \"width\",\n"
    "           \"height\", ...}), an array of them when there are several files; a file that\n"
    "           cannot be read gets an \"error\" field\n\n"
    "Exit status: 0 when every file was read, 1 when one was not, 2 on a usage error.\n";

/* Probes one file into a JSON object; returns 0 on success, -1 after an error. */
static int probe_one(const char *path, json_t *o) {
    dfd_error err;
    dfd_error_clear(&err);
    json_object_set_new(o, "file", json_string(path));
    dfd_media_kind kind;
    const char *format = NULL;
    int rc = dfd_media_sniff_file(path, &kind, &format, &err);
    if (!rc && kind == DFD_MEDIA_IMAGE) {
        json_object_set_new(o, "media", json_string("image"));
        json_object_set_new(o, "format", json_string(format));
        dfd_limits lim;
        dfd_limits_default(&lim);
        uint8_t *data;
        size_t len;
        dfd_image_info in;
        if (!(rc = dfd_read_file(path, lim.max_file_bytes, &data, &len, &err))) {
            rc = dfd_image_probe(data, len, &in, &err);
            free(data);
        }
        if (!rc) {
            json_object_set_new(o, "width", json_integer(in.width));
            json_object_set_new(o, "height", json_integer(in.height));
            json_object_set_new(o, "orientation", json_integer(in.orientation));
            json_object_set_new(o, "bit_depth", json_integer(in.bit_depth));
            json_object_set_new(o, "channels", json_integer(in.channels));
            json_object_set_new(o, "alpha", json_boolean(in.has_alpha));
            json_object_set_new(o, "palette", json_boolean(in.palette));
            json_object_set_new(o, "interlaced", json_boolean(in.interlaced));
        }
    } else if (!rc && kind == DFD_MEDIA_VIDEO) {
        json_object_set_new(o, "media", json_string("video"));
        json_object_set_new(o, "format", json_string(format));
        dfd_video_info in;
        if (!(rc = dfd_video_probe(path, NULL, &in, &err))) {
            json_object_set_new(o, "width", json_integer(in.width));
            json_object_set_new(o, "height", json_integer(in.height));
            json_object_set_new(o, "container", json_string(in.container));
            json_object_set_new(o, "codec", json_string(in.codec));
            json_object_set_new(o, "rotation", json_integer(in.rotation));
            json_object_set_new(o, "fps", json_real(in.fps));
            json_object_set_new(o, "duration_s", json_real(in.duration_s));
            json_object_set_new(o, "frames", json_integer(in.frames));
            json_object_set_new(o, "frames_estimated", json_boolean(in.frames_estimated));
        }
    } else if (!rc) {
        rc = dfd_media_fail_unsupported(format, &err);
    }
    if (!rc) return 0;
    json_object_set_new(o, "error", json_string(err.message));
    fprintf(stderr, "dfd probe: %s: %s\n", path, err.message);
    return -1;
}

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
    int as_json = 0, nfiles = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        if (!opts_done && strcmp(argv[i], "--") == 0)
            opts_done = 1;
        else if (!opts_done && strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (!opts_done && argv[i][0] == '-' && argv[i][1])
            return cli_usage_error("probe", "unknown option '%s'", argv[i]);
        else
            nfiles++;
    }
    if (nfiles == 0) return cli_usage_error("probe", "no FILE given");
    json_t *all = json_array();
    if (!all) return DFD_EXIT_FAILED;
    int failed = 0;
    opts_done = 0;
    for (int i = 1; i < argc; i++) {
        if (!opts_done && strcmp(argv[i], "--") == 0) {
            opts_done = 1;
            continue;
        }
        if (!opts_done && strcmp(argv[i], "--json") == 0) continue;
        json_t *o = json_object();
        if (!o) break;
        if (probe_one(argv[i], o)) failed = 1;
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
