/* webp.c — WebP (lossy, lossless, with alpha) through libwebp; animations are refused. */
#include <stdlib.h>

#include <webp/decode.h>

#include "media/media.h"

int dfd_media_decode_webp(const uint8_t *data, size_t len, const dfd_limits *limits, dfd_image *out,
                          dfd_image_info *info, dfd_error *err) {
    /* The RIFF size says how long the file should be; libwebp alone would call a cut
     * file "corrupt" with no hint that it was cut. */
    if (len < 12 || (uint64_t)dfd_rd32le(data + 4) + 8 > len) return dfd_fail(err, DFD_E_CORRUPT, "WebP data is truncated");
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(data, len, &f);
    if (st == VP8_STATUS_NOT_ENOUGH_DATA) return dfd_fail(err, DFD_E_CORRUPT, "WebP data is truncated");
    if (st != VP8_STATUS_OK) return dfd_fail(err, DFD_E_CORRUPT, "corrupt WebP header (libwebp status %d)", (int)st);
    if (f.has_animation) return dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported format: 'animated WebP'");
    if (info)
        *info = (dfd_image_info){.format = "WebP", .width = f.width, .height = f.height, .orientation = 1,
                                 .bit_depth = 8, .channels = f.has_alpha ? 4 : 3, .has_alpha = f.has_alpha};
    if (!out) return DFD_OK;
    int rc = dfd_media_check_pixels("image", f.width, f.height, limits, err);
    if (rc) return rc;
    size_t n, px = (size_t)f.width * (size_t)f.height; /* both < 2^14 by the format */
    if (dfd_mul_size(px, f.has_alpha ? 4 : 3, &n)) return dfd_fail(err, DFD_E_LIMIT, "WebP size overflows");
    uint8_t *buf = malloc(n);
    if (!buf) return dfd_fail(err, DFD_E_NOMEM, "cannot allocate a %dx%d image", f.width, f.height);
    int stride = f.width * (f.has_alpha ? 4 : 3);
    uint8_t *ok = f.has_alpha ? WebPDecodeRGBAInto(data, len, buf, n, stride) : WebPDecodeRGBInto(data, len, buf, n, stride);
    if (!ok) {
        free(buf);
        return dfd_fail(err, DFD_E_CORRUPT, "corrupt or truncated WebP image data");
    }
    if (f.has_alpha) {
        for (size_t i = 0; i < px; i++) {
            uint8_t p[4] = {buf[4 * i], buf[4 * i + 1], buf[4 * i + 2], buf[4 * i + 3]};
            dfd_media_over_white(p, buf + 3 * i);
        }
        uint8_t *shrunk = realloc(buf, px * 3);
        if (shrunk) buf = shrunk;
    }
    *out = (dfd_image){f.width, f.height, buf};
    return DFD_OK;
}
