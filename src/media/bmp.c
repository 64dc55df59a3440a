/* bmp.c — uncompressed 24- and 32-bit BMP, bottom-up and top-down.
 * Own code because no Debian library fits: libavcodec decodes BMP only as a video
 * frame through the whole codec machinery, and the image libraries that read BMP
 * (GDK-Pixbuf, ImageMagick, FreeImage) bring far more code and attack surface than
 * the few dozen lines this format needs. Palette, 16-bit and RLE files are refused. */
#include <stdlib.h>
#include <string.h>

#include "media/media.h"

enum { BI_RGB = 0, BI_BITFIELDS = 3 };

int dfd_media_decode_bmp(const uint8_t *d, size_t len, const dfd_limits *limits, dfd_image *out,
                         dfd_image_info *info, dfd_error *err) {
    if (len < 14 + 40) return dfd_fail(err, DFD_E_CORRUPT, "BMP header is truncated");
    uint32_t off = dfd_rd32le(d + 10), hsize = dfd_rd32le(d + 14);
    if (hsize < 40) return dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported format: 'OS/2 BMP'");
    if (len < 14 + (size_t)hsize) return dfd_fail(err, DFD_E_CORRUPT, "BMP header is truncated");
    int32_t w = (int32_t)dfd_rd32le(d + 18), h = (int32_t)dfd_rd32le(d + 22);
    unsigned planes = dfd_rd16le(d + 26), bpp = dfd_rd16le(d + 28);
    uint32_t comp = dfd_rd32le(d + 30);
    int top_down = h < 0;
    if (w <= 0 || h == 0 || h == INT32_MIN || planes != 1)
        return dfd_fail(err, DFD_E_CORRUPT, "corrupt BMP header (%dx%d, %u planes)", (int)w, (int)h, planes);
    if (top_down) h = -h;
    if (bpp != 24 && bpp != 32)
        return dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported BMP: %u bits per pixel (only 24 and 32)", bpp);

    /* Byte offsets of R, G, B within a pixel. BI_BITFIELDS masks follow a 40-byte
     * header or sit inside a larger one; only whole-byte 8-bit masks are accepted. */
    int pos[3] = {2, 1, 0};
    if (comp == BI_BITFIELDS && bpp == 32) {
        if (len < 14 + 40 + 12) return dfd_fail(err, DFD_E_CORRUPT, "BMP header is truncated");
        for (int c = 0; c < 3; c++) {
            uint32_t m = dfd_rd32le(d + 54 + 4 * c);
            int b = m == 0xFFu ? 0 : m == 0xFF00u ? 1 : m == 0xFF0000u ? 2 : m == 0xFF000000u ? 3 : -1;
            if (b < 0) return dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported BMP channel mask 0x%08x", (unsigned)m);
            pos[c] = b;
        }
    } else if (comp != BI_RGB) {
        return dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported BMP: compression %u (only uncompressed)", (unsigned)comp);
    }
    if (info)
        *info = (dfd_image_info){.format = "BMP", .width = w, .height = h, .orientation = 1, .bit_depth = 8,
                                 .channels = 3};
    if (!out) return DFD_OK;
    int rc = dfd_media_check_pixels("image", w, h, limits, err);
    if (rc) return rc;
    size_t stride = ((size_t)w * bpp + 31) / 32 * 4, need;
    if (dfd_mul_size(stride, (size_t)h, &need) || dfd_add_size(need, off, &need) || off < 14 + hsize)
        return dfd_fail(err, DFD_E_CORRUPT, "corrupt BMP: pixel data offset %u", (unsigned)off);
    if (need > len) return dfd_fail(err, DFD_E_CORRUPT, "BMP pixel data is truncated (%zu of %zu bytes)", len, need);
    if ((rc = dfd_image_alloc(out, w, h, err))) return rc;
    size_t step = bpp / 8;
    for (int y = 0; y < h; y++) {
        const uint8_t *s = d + off + stride * (size_t)(top_down ? y : h - 1 - y);
        uint8_t *o = out->rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++, s += step, o += 3) {
            o[0] = s[pos[0]];
            o[1] = s[pos[1]];
            o[2] = s[pos[2]];
        }
    }
    return DFD_OK;
}
