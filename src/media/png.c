/* png.c — PNG through libpng: every bit depth and colour type, Adam7, alpha over white. */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "media/media.h"

struct png_src {
    const uint8_t *data;
    size_t len, pos;
    char msg[200];
};

/* libpng's default error handler prints and aborts the process; ours keeps the
 * message and returns to the setjmp in dfd_media_decode_png. */
static void on_error(png_structp p, png_const_charp msg) {
    struct png_src *s = png_get_error_ptr(p);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(p, 1);
}

static void on_warning(png_structp p, png_const_charp msg) {
    (void)p;
    dfd_log(DFD_LOG_DEBUG, "libpng: %s", msg);
}

static void on_read(png_structp p, png_bytep out, size_t n) {
    struct png_src *s = png_get_io_ptr(p);
    if (n > s->len - s->pos) png_error(p, "PNG data is truncated");
    memcpy(out, s->data + s->pos, n);
    s->pos += n;
}

int dfd_media_decode_png(const uint8_t *data, size_t len, const dfd_limits *limits, dfd_image *out,
                         dfd_image_info *info, dfd_error *err) {
    struct png_src src = {.data = data, .len = len};
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_error, on_warning);
    png_infop pi = p ? png_create_info_struct(p) : NULL;
    if (!pi) {
        png_destroy_read_struct(p ? &p : NULL, NULL, NULL);
        return dfd_fail(err, DFD_E_NOMEM, "cannot create a PNG decoder");
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile int rc = DFD_OK;
    if (setjmp(png_jmpbuf(p))) {
        rc = dfd_fail(err, DFD_E_CORRUPT, strstr(src.msg, "truncated") ? "%s" : "corrupt PNG: %s", src.msg);
        goto done;
    }
    png_set_read_fn(p, &src, on_read);
    /* Our own pixel limit, checked below, is the one that applies; libpng's default
     * 1,000,000-pixel side limit would turn a legal size into a "corrupt" error. */
    png_set_user_limits(p, 0x7fffffff, 0x7fffffff);
    png_read_info(p, pi);

    png_uint_32 w, h;
    int depth, ctype, ilace;
    png_get_IHDR(p, pi, &w, &h, &depth, &ctype, &ilace, NULL, NULL);
    int trns = png_get_valid(p, pi, PNG_INFO_tRNS) != 0;
    dfd_image_info in = {.format = "PNG", .width = (int)w, .height = (int)h, .orientation = 1, .bit_depth = depth,
                         .channels = png_get_channels(p, pi), .has_alpha = (ctype & PNG_COLOR_MASK_ALPHA) || trns,
                         .palette = ctype == PNG_COLOR_TYPE_PALETTE, .interlaced = ilace != PNG_INTERLACE_NONE};
    if (info) *info = in;
    if (!out) goto done;
    if ((rc = dfd_media_check_pixels("image", (int)w, (int)h, limits, err))) goto done;

    png_set_expand(p); /* palette -> RGB, grey < 8 bits -> 8 bits, tRNS -> alpha */
    png_set_scale_16(p);
    png_set_gray_to_rgb(p);
    png_set_interlace_handling(p);
    png_read_update_info(p, pi);
    int ch = png_get_channels(p, pi);
    if ((ch != 3 && ch != 4) || png_get_bit_depth(p, pi) != 8) {
        rc = dfd_fail(err, DFD_E_INTERNAL, "libpng gave %d channels of %d bits", ch, png_get_bit_depth(p, pi));
        goto done;
    }
    size_t n;
    if (dfd_mul3_size(w, h, (size_t)ch, &n) || !(pixels = malloc(n)) ||
        !(rows = dfd_malloc_array(h, sizeof(png_bytep)))) {
        rc = dfd_fail(err, DFD_E_NOMEM, "cannot allocate a %ux%u image", (unsigned)w, (unsigned)h);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w * ch;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    if (ch == 4) {
        /* In place: each RGB pixel is written no later than its RGBA source is read. */
        for (size_t i = 0; i < (size_t)w * h; i++) {
            uint8_t px[4];
            memcpy(px, pixels + 4 * i, 4);
            dfd_media_over_white(px, pixels + 3 * i);
        }
        uint8_t *shrunk = realloc(pixels, (size_t)w * h * 3);
        if (shrunk) pixels = shrunk;
    }
    *out = (dfd_image){(int)w, (int)h, pixels};
    pixels = NULL;
done:
    png_destroy_read_struct(&p, &pi, NULL);
    free(pixels);
    free(rows);
    return rc;
}
