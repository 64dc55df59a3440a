/* encode.c — the image encoders: JPEG with libjpeg-turbo (the face crops that `dfd
 * prepare` writes, and the in-memory re-compression that augmentation uses to teach the
 * classifier that compression artefacts are not evidence of a fake) and PNG with libpng
 * (`dfd faces --save-crops`, `dfd scan --explain-dir`, dfd_png_write).
 *
 * libjpeg and libpng report fatal errors through a longjmp out of their error hooks;
 * everything needed after the jump is kept in the error-manager struct or is volatile. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <jpeglib.h>
#include <png.h>

#include "media/media.h"

typedef struct jerr {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    unsigned char *outbuf; /* libjpeg-turbo's memory destination grows this through &outbuf */
    unsigned long outsize;
} jerr;

static void on_error(j_common_ptr cinfo) {
    jerr *e = (jerr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

static void on_message(j_common_ptr cinfo) { (void)cinfo; /* warnings are not printed */ }

int dfd_jpeg_encode(const dfd_image *img, int quality, uint8_t **out, size_t *len, dfd_error *err) {
    *out = NULL;
    *len = 0;
    if (!img || !img->rgb || img->w < 1 || img->h < 1)
        return dfd_fail(err, DFD_E_ARG, "jpeg: no image to encode");
    if (quality < 1 || quality > 100) return dfd_fail(err, DFD_E_ARG, "jpeg: quality %d is not in 1..100", quality);
    if (img->w > 65500 || img->h > 65500)
        return dfd_fail(err, DFD_E_LIMIT, "jpeg: %dx%d is over JPEG's 65500 pixel side", img->w, img->h);
    struct jpeg_compress_struct c;
    jerr e;
    e.outbuf = NULL;
    e.outsize = 0;
    c.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = on_error;
    e.mgr.output_message = on_message;
    if (setjmp(e.jump)) {
        jpeg_destroy_compress(&c);
        free(e.outbuf);
        return dfd_fail(err, DFD_E_INTERNAL, "jpeg: encoding failed: %s", e.msg);
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &e.outbuf, &e.outsize);
    c.image_width = (JDIMENSION)img->w;
    c.image_height = (JDIMENSION)img->h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    const size_t stride = (size_t)img->w * 3;
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(img->rgb + (size_t)c.next_scanline * stride);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *out = e.outbuf;
    *len = e.outsize;
    return DFD_OK;
}

int dfd_jpeg_write_file(const dfd_image *img, int quality, const char *path, dfd_error *err) {
    uint8_t *data;
    size_t len;
    int rc = dfd_jpeg_encode(img, quality, &data, &len, err);
    if (rc) return rc;
    rc = dfd_write_file_atomic(path, data, len, err);
    free(data);
    return rc;
}

/* ---- PNG ------------------------------------------------------------------------------ */

int dfd_png_write(const char *path, const uint8_t *rgb, int w, int h, dfd_error *err) {
    if (!path || !rgb || w <= 0 || h <= 0) return dfd_fail(err, DFD_E_ARG, "dfd_png_write: no path, no pixels or an empty size");
    FILE *f = fopen(path, "wb");
    if (!f) return dfd_fail(err, DFD_E_IO, "cannot write '%s': %s", path, strerror(errno));
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info || setjmp(png_jmpbuf(p))) {
        png_destroy_write_struct(&p, &info);
        fclose(f);
        return dfd_fail(err, DFD_E_IO, "cannot encode '%s'", path);
    }
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < h; y++) png_write_row(p, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    if (fclose(f) != 0) return dfd_fail(err, DFD_E_IO, "cannot write '%s'", path);
    return DFD_OK;
}
