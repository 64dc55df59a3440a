/* probe.c — the public calls on files: what a file is (dfd_sniff_file), whether dfd can
 * analyse it (dfd_check_file) and what its headers say (dfd_probe_file, `dfd probe`),
 * without decoding pixels. */
#include <stdlib.h>

#include <jansson.h>

#include "media/media.h"

int dfd_sniff_file(const char *path, dfd_media_kind *kind, const char **format, dfd_error *err) {
    if (!path || !kind) return dfd_fail(err, DFD_E_ARG, "dfd_sniff_file: no path or no kind to fill");
    return dfd_media_sniff_file(path, kind, format, err);
}

int dfd_check_file(const char *path, dfd_media_kind *kind, const char **format, dfd_error *err) {
    if (!path || !kind) return dfd_fail(err, DFD_E_ARG, "dfd_check_file: no path or no kind to fill");
    const char *f = NULL;
    int rc = dfd_media_sniff_file(path, kind, &f, err);
    if (format) *format = f;
    if (rc) return rc;
    /* As the analysis: an unknown kind is refused by dfd_analyze_file, an image in a format
     * the decoder does not read by the decoder's pick (decode.c), each with this message. */
    if (*kind == DFD_MEDIA_UNKNOWN) return dfd_media_fail_unsupported(f, err);
    if (*kind == DFD_MEDIA_IMAGE && !dfd_media_image_readable(f)) return dfd_media_fail_unsupported(f, err);
    return DFD_OK;
}

static int probe_into(const char *path, json_t *o, dfd_error *err) {
    dfd_media_kind kind;
    const char *format = NULL;
    int rc = dfd_media_sniff_file(path, &kind, &format, err);
    if (!rc && kind == DFD_MEDIA_IMAGE) {
        json_object_set_new(o, "media", json_string("image"));
        json_object_set_new(o, "format", json_string(format));
        dfd_limits lim;
        dfd_limits_default(&lim);
        uint8_t *data;
        size_t len;
        dfd_image_info in;
        if (!(rc = dfd_read_file(path, lim.max_file_bytes, &data, &len, err))) {
            rc = dfd_image_probe(data, len, &in, err);
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
        if (!(rc = dfd_video_probe(path, NULL, &in, err))) {
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
        rc = dfd_media_fail_unsupported(format, err);
    }
    return rc;
}

int dfd_probe_file(const char *path, char **json, dfd_error *err) {
    if (!json) return dfd_fail(err, DFD_E_ARG, "dfd_probe_file: nowhere to put the JSON");
    *json = NULL;
    if (!path) return dfd_fail(err, DFD_E_ARG, "dfd_probe_file: no path");
    dfd_error e;
    dfd_error_clear(&e);
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "file", json_string(path))) {
        json_decref(o);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    int rc = probe_into(path, o, &e);
    if (rc) json_object_set_new(o, "error", json_string(e.message));
    *json = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!*json) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if (rc && err) *err = e;
    return rc;
}
