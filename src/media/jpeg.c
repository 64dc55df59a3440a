/* jpeg.c — JPEG through libjpeg-turbo, turned upright by its EXIF orientation (libexif). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <libexif/exif-data.h>

#include "media/media.h"

/* libjpeg reports fatal errors through error_exit, which by default calls exit():
 * ours jumps back instead, carrying libjpeg's own message. */
struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr c) {
    struct jerr *e = (struct jerr *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jump, 1);
}

static void on_message(j_common_ptr c, int level) {
    struct jerr *e = (struct jerr *)c->err;
    if (level >= 0) return; /* trace messages */
    /* libjpeg pads a truncated stream with grey and warns; we refuse it instead of
     * analysing an image that is partly made up. Other warnings (stray bytes between
     * markers, common in camera files) do not stop decoding. */
    if (c->err->msg_code == JWRN_JPEG_EOF) {
        e->truncated = 1;
        longjmp(e->jump, 1);
    }
    if (dfd_log_get_level() >= DFD_LOG_DEBUG) {
        char m[JMSG_LENGTH_MAX];
        c->err->format_message(c, m);
        dfd_log(DFD_LOG_DEBUG, "libjpeg: %s", m);
    }
}

static int exif_orientation(j_decompress_ptr c) {
    for (jpeg_saved_marker_ptr m = c->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1 || m->data_length < 6 || memcmp(m->data, "Exif\0\0", 6) != 0) continue;
        ExifData *ed = exif_data_new_from_data(m->data, m->data_length);
        if (!ed) return 1;
        int o = 1;
        ExifEntry *en = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
        if (en && en->format == EXIF_FORMAT_SHORT && en->components >= 1 && en->size >= 2)
            o = exif_get_short(en->data, exif_data_get_byte_order(ed));
        exif_data_unref(ed);
        return o >= 1 && o <= 8 ? o : 1;
    }
    return 1;
}

/* Adobe CMYK JPEGs store inverted ink values: with k' = 255 - k, R = c' * k' / 255 ... */
static void cmyk_to_rgb(const uint8_t *in, uint8_t *out, int w, int inverted) {
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        unsigned k = inverted ? in[3] : 255u - in[3];
        for (int i = 0; i < 3; i++) {
            unsigned v = inverted ? in[i] : 255u - in[i];
            out[i] = (uint8_t)((v * k + 127) / 255);
        }
    }
}

int dfd_media_decode_jpeg(const uint8_t *data, size_t len, const dfd_limits *limits, dfd_image *out,
                          dfd_image_info *info, dfd_error *err) {
    struct jpeg_decompress_struct c;
    struct jerr je;
    /* Written between setjmp and a possible longjmp, so volatile. */
    dfd_image raw = {0};
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    volatile int rc = DFD_OK;

    memset(&c, 0, sizeof c);
    memset(&je, 0, sizeof je);
    c.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = on_error;
    je.pub.emit_message = on_message;
    if (setjmp(je.jump)) {
        if (je.truncated)
            rc = dfd_fail(err, DFD_E_CORRUPT, "JPEG data is truncated");
        else
            rc = dfd_fail(err, DFD_E_CORRUPT, "corrupt JPEG: %s", je.msg);
        goto done;
    }
    jpeg_create_decompress(&c);
    if (len > (unsigned long)-1) {
        rc = dfd_fail(err, DFD_E_LIMIT, "JPEG is too large");
        goto done;
    }
    jpeg_mem_src(&c, data, (unsigned long)len);
    jpeg_save_markers(&c, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&c, TRUE);

    int o = exif_orientation(&c);
    int w = (int)c.image_width, h = (int)c.image_height;
    dfd_image_info in = {.format = "JPEG", .width = o >= 5 ? h : w, .height = o >= 5 ? w : h, .orientation = o,
                         .bit_depth = c.data_precision, .channels = c.num_components,
                         .interlaced = c.progressive_mode ? 1 : 0};
    if (info) *info = in;
    if (!out) goto done;
    if ((rc = dfd_media_check_pixels("image", w, h, limits, err))) goto done;

    int cmyk = c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK;
    c.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    c.dct_method = JDCT_ISLOW;
    jpeg_start_decompress(&c);
    if ((int)c.output_width != w || (int)c.output_height != h || (int)c.output_components != (cmyk ? 4 : 3)) {
        rc = dfd_fail(err, DFD_E_INTERNAL, "libjpeg gave an unexpected output format");
        goto done;
    }
    size_t n;
    if (dfd_mul3_size((size_t)w, (size_t)h, 3, &n) || !(pixels = malloc(n)) ||
        (cmyk && !(row = dfd_malloc_array((size_t)w, 4)))) {
        rc = dfd_fail(err, DFD_E_NOMEM, "cannot allocate a %dx%d image", w, h);
        goto done;
    }
    while (c.output_scanline < c.output_height) {
        uint8_t *dst = pixels + (size_t)c.output_scanline * w * 3;
        JSAMPROW r = cmyk ? row : dst;
        if (jpeg_read_scanlines(&c, &r, 1) != 1) {
            rc = dfd_fail(err, DFD_E_CORRUPT, "JPEG data is truncated");
            goto done;
        }
        if (cmyk) cmyk_to_rgb(row, dst, w, c.saw_Adobe_marker);
    }
    jpeg_finish_decompress(&c);
    raw = (dfd_image){w, h, pixels};
    pixels = NULL;
    if (o == 1) {
        *out = raw;
        raw.rgb = NULL;
    } else {
        rc = dfd_image_orient(&raw, o, out, err);
    }
done:
    jpeg_destroy_decompress(&c);
    free(raw.rgb);
    free(pixels);
    free(row);
    return rc;
}
