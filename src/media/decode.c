/* decode.c — image entry points: pick the decoder by magic, read from memory or a file. */
#include <stdlib.h>
#include <string.h>

#include "media/media.h"

typedef int (*decoder_fn)(const uint8_t *, size_t, const dfd_limits *, dfd_image *, dfd_image_info *, dfd_error *);

/* The decoder of an image format dfd_media_sniff names; NULL for the refused ones. */
static decoder_fn decoder_of(const char *fmt) {
    if (!fmt) return NULL;
    if (!strcmp(fmt, "JPEG")) return dfd_media_decode_jpeg;
    if (!strcmp(fmt, "PNG")) return dfd_media_decode_png;
    if (!strcmp(fmt, "WebP")) return dfd_media_decode_webp;
    if (!strcmp(fmt, "BMP")) return dfd_media_decode_bmp;
    return NULL;
}

int dfd_media_image_readable(const char *format) { return decoder_of(format) != NULL; }

static int pick(const void *data, size_t len, decoder_fn *fn, dfd_error *err) {
    const char *fmt;
    dfd_media_kind k = dfd_media_sniff(data, len, &fmt);
    *fn = k == DFD_MEDIA_IMAGE ? decoder_of(fmt) : NULL;
    if (*fn) return DFD_OK;
    if (k == DFD_MEDIA_VIDEO) return dfd_fail(err, DFD_E_UNSUPPORTED, "this is a video ('%s'), not an image", fmt);
    return dfd_media_fail_unsupported(fmt, err);
}

int dfd_image_probe(const void *data, size_t len, dfd_image_info *info, dfd_error *err) {
    memset(info, 0, sizeof *info);
    if (!data && len) return dfd_fail(err, DFD_E_ARG, "no data");
    decoder_fn fn;
    int rc = pick(data, len, &fn, err);
    return rc ? rc : fn(data, len, NULL, NULL, info, err);
}

int dfd_image_decode(const void *data, size_t len, const dfd_limits *limits, dfd_image *out, dfd_image_info *info,
                     dfd_error *err) {
    memset(out, 0, sizeof *out);
    if (info) memset(info, 0, sizeof *info);
    if (!data && len) return dfd_fail(err, DFD_E_ARG, "no data");
    decoder_fn fn;
    int rc = pick(data, len, &fn, err);
    if (!rc) rc = fn(data, len, limits, out, info, err);
    if (rc) dfd_image_free(out);
    return rc;
}

int dfd_image_load(const char *path, const dfd_limits *limits, dfd_image *out, dfd_image_info *info,
                   dfd_error *err) {
    dfd_limits def;
    if (!limits) {
        dfd_limits_default(&def);
        limits = &def;
    }
    memset(out, 0, sizeof *out);
    uint8_t *data;
    size_t len;
    int rc = dfd_read_file(path, limits->max_file_bytes, &data, &len, err);
    if (rc) return rc;
    rc = dfd_image_decode(data, len, limits, out, info, err);
    free(data);
    return rc;
}
