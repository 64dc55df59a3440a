/* test_media_image — image sniffing and decoding on files made at test time (ffmpeg
 * from a PPM/PGM/PAM we write, libpng for Adam7, hand-built BMP and EXIF segments):
 * pixels land where they should for every format variant and EXIF orientation, and
 * cut, damaged, oversized or misnamed files give their own error code and message. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "media/media.h"

static char *dir;

static char *path(const char *name) { return tu_join(dir, name); }

/* The 40x24 gradient used by the lossless formats. */
enum { GW = 40, GH = 24 };
static void grad_px(int x, int y, uint8_t p[3]) {
    p[0] = (uint8_t)(x * 6);
    p[1] = (uint8_t)(y * 10);
    p[2] = (uint8_t)(255 - x * 3 - y * 2);
}

/* The 64x32 quadrants (TL red, TR green, BL blue, BR light grey) for lossy formats. */
enum { QW = 64, QH = 32 };
static const uint8_t quad_col[4][3] = {{230, 30, 30}, {30, 210, 40}, {30, 40, 220}, {235, 235, 235}};

static void write_pnm(const char *name, const char *magic, int w, int h, int maxval, const uint8_t *data, size_t n) {
    char *p = path(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fprintf(f, "%s\n%d %d\n%d\n", magic, w, h, maxval);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    free(p);
}

static void ffmpeg(const char *in, const char *args, const char *out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && ffmpeg -nostdin -v error -y -i '%s' %s '%s' 2>&1", dir, in, args, out);
    char *o = NULL;
    int rc = tu_run(cmd, &o);
    if (rc != 0) print_error("%s\n%s\n", cmd, o ? o : "");
    free(o);
    assert_int_equal(rc, 0);
}

static void write_interlaced_png(const char *name) {
    char *p = path(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_false(setjmp(png_jmpbuf(png)));
    png_init_io(png, f);
    png_set_IHDR(png, info, GW, GH, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    static uint8_t pix[GH][GW * 3];
    png_bytep rows[GH];
    for (int y = 0; y < GH; y++) {
        for (int x = 0; x < GW; x++) grad_px(x, y, &pix[y][3 * x]);
        rows[y] = pix[y];
    }
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    free(p);
}

/* A BMP written by hand: 24-bit or 32-bit BI_BITFIELDS (masks after the header, RGBX
 * order rather than the usual BGRX), top-down when h < 0. */
static void write_bmp(const char *name, int bpp, int top_down) {
    int w = GW, h = GH, stride = (w * bpp / 8 + 3) & ~3, bitfields = bpp == 32, off = 54 + (bitfields ? 12 : 0);
    size_t n = (size_t)off + (size_t)stride * h;
    uint8_t *b = calloc(1, n);
    assert_non_null(b);
#define LE32(p, v) ((p)[0] = (uint8_t)(v), (p)[1] = (uint8_t)((v) >> 8), (p)[2] = (uint8_t)((v) >> 16), (p)[3] = (uint8_t)((uint32_t)(v) >> 24))
    b[0] = 'B', b[1] = 'M';
    LE32(b + 2, (uint32_t)n);
    LE32(b + 10, (uint32_t)off);
    LE32(b + 14, 40u);
    LE32(b + 18, (uint32_t)w);
    LE32(b + 22, (uint32_t)(top_down ? -h : h));
    b[26] = 1, b[28] = (uint8_t)bpp;
    LE32(b + 30, bitfields ? 3u : 0u);
    if (bitfields) {
        LE32(b + 54, 0xFFu);
        LE32(b + 58, 0xFF00u);
        LE32(b + 62, 0xFF0000u);
    }
    for (int y = 0; y < h; y++) {
        uint8_t *row = b + off + (size_t)stride * (top_down ? y : h - 1 - y);
        for (int x = 0; x < w; x++) {
            uint8_t p[3];
            grad_px(x, y, p);
            uint8_t *q = row + x * (bpp / 8);
            if (bitfields)
                q[0] = p[0], q[1] = p[1], q[2] = p[2], q[3] = 0x55;
            else
                q[0] = p[2], q[1] = p[1], q[2] = p[0];
        }
    }
    char *p = path(name);
    tu_write_file(p, b, n);
    free(p);
    free(b);
}

static int setup(void **state) {
    (void)state;
    if (!tu_have_program("ffmpeg")) {
        print_message("skipped: ffmpeg is not installed\n");
        return 0;
    }
    dir = tu_mkdtemp();
    uint8_t grad[GW * GH * 3], quad[QW * QH * 3], grey[GW * GH], g16[GW * GH * 6],
        rgba[GW * GH * 4];
    for (int y = 0; y < GH; y++)
        for (int x = 0; x < GW; x++) {
            int i = y * GW + x;
            grad_px(x, y, grad + 3 * i);
            grey[i] = (uint8_t)(x * 5 + y * 2);
            for (int c = 0; c < 3; c++) {
                unsigned g = grad[3 * i + c], v = g ? g * 257u - 100u : 100u; /* rounds back to g */
                g16[6 * i + 2 * c] = (uint8_t)(v >> 8);
                g16[6 * i + 2 * c + 1] = (uint8_t)v;
            }
            memcpy(rgba + 4 * i, grad + 3 * i, 3);
            rgba[4 * i + 3] = (uint8_t)(x * 255 / (GW - 1));
        }
    for (int y = 0; y < QH; y++)
        for (int x = 0; x < QW; x++) {
            int q = (y >= QH / 2) * 2 + (x >= QW / 2);
            memcpy(quad + 3 * (y * QW + x), quad_col[q], 3);
        }
    write_pnm("grad.ppm", "P6", GW, GH, 255, grad, sizeof grad);
    write_pnm("grad16.ppm", "P6", GW, GH, 65535, g16, sizeof g16);
    write_pnm("grey.pgm", "P5", GW, GH, 255, grey, sizeof grey);
    write_pnm("quad.ppm", "P6", QW, QH, 255, quad, sizeof quad);
    char *pam = path("alpha.pam");
    FILE *f = fopen(pam, "wb");
    assert_non_null(f);
    fprintf(f, "P7\nWIDTH %d\nHEIGHT %d\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n", GW, GH);
    fwrite(rgba, 1, sizeof rgba, f);
    fclose(f);
    free(pam);

    ffmpeg("grad.ppm", "-pix_fmt rgb24", "grad.png");
    ffmpeg("grad16.ppm", "-pix_fmt rgb48be", "grad16.png");
    ffmpeg("quad.ppm", "-vf 'split[a][b];[a]palettegen=reserve_transparent=0[p];[b][p]paletteuse=dither=none' -pix_fmt pal8",
           "pal.png");
    ffmpeg("grey.pgm", "-pix_fmt gray", "grey.png");
    ffmpeg("alpha.pam", "-pix_fmt rgba", "alpha.png");
    ffmpeg("grad.ppm", "-c:v libwebp -lossless 1 -pix_fmt bgra", "grad.webp");
    ffmpeg("alpha.pam", "-c:v libwebp -lossless 1 -pix_fmt bgra", "alpha.webp");
    ffmpeg("quad.ppm", "-c:v libwebp -quality 90", "quad.webp");
    ffmpeg("grad.ppm", "-pix_fmt bgr24", "grad24.bmp");
    ffmpeg("grad.ppm", "-pix_fmt bgra", "grad32.bmp");
    ffmpeg("quad.ppm", "-q:v 2 -pix_fmt yuvj444p", "quad.jpg");
    ffmpeg("quad.ppm", "-frames:v 1", "quad.gif");
    ffmpeg("quad.ppm", "-frames:v 1", "quad.tiff");
    write_interlaced_png("adam7.png");
    write_bmp("topdown24.bmp", 24, 1);
    write_bmp("bitfields32.bmp", 32, 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (dir) tu_rmtree(dir);
    free(dir);
    return 0;
}

#define REQUIRE_FILES()                                                   \
    do {                                                                  \
        if (!dir) skip();                                                 \
    } while (0)

static uint8_t *slurp(const char *name, size_t *len) {
    char *p = path(name);
    uint8_t *d = tu_read_file(p, len);
    free(p);
    return d;
}

static void put(const char *name, const void *d, size_t len) {
    char *p = path(name);
    tu_write_file(p, d, len);
    free(p);
}

static dfd_image load_ok(const char *name, dfd_image_info *info) {
    char *p = path(name);
    dfd_image im;
    dfd_error e;
    int rc = dfd_image_load(p, NULL, &im, info, &e);
    if (rc) print_error("%s: %s\n", name, e.message);
    assert_int_equal(rc, DFD_OK);
    free(p);
    return im;
}

static void assert_gradient(const dfd_image *im) {
    assert_int_equal(im->w, GW);
    assert_int_equal(im->h, GH);
    for (int y = 0; y < GH; y++)
        for (int x = 0; x < GW; x++) {
            uint8_t p[3];
            grad_px(x, y, p);
            assert_memory_equal(im->rgb + 3 * (y * GW + x), p, 3);
        }
}

static int near(const uint8_t *a, const uint8_t *b, int tol) {
    for (int c = 0; c < 3; c++)
        if (abs(a[c] - b[c]) > tol) return 0;
    return 1;
}

/* Colour at the centre of each quadrant of im: TL, TR, BL, BR. */
static const uint8_t *quadrant(const dfd_image *im, int q) {
    int x = (q & 1) ? im->w * 3 / 4 : im->w / 4, y = (q & 2) ? im->h * 3 / 4 : im->h / 4;
    return im->rgb + 3 * ((size_t)y * im->w + x);
}

static void lossless_formats_decode_exactly(void **state) {
    (void)state;
    REQUIRE_FILES();
    static const char *const files[] = {"grad.png",  "grad16.png",    "adam7.png",         "grad.webp",
                                        "grad24.bmp", "grad32.bmp", "topdown24.bmp", "bitfields32.bmp"};
    static const char *const formats[] = {"PNG", "PNG", "PNG", "WebP", "BMP", "BMP", "BMP", "BMP"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        dfd_image_info info;
        dfd_image im = load_ok(files[i], &info);
        print_message("%s\n", files[i]);
        assert_string_equal(info.format, formats[i]);
        assert_gradient(&im);
        dfd_image_free(&im);
    }
}

static void png_variants_report_depth_palette_interlace(void **state) {
    (void)state;
    REQUIRE_FILES();
    dfd_image_info info;
    dfd_image im = load_ok("grad16.png", &info);
    assert_int_equal(info.bit_depth, 16);
    dfd_image_free(&im);
    im = load_ok("adam7.png", &info);
    assert_true(info.interlaced);
    dfd_image_free(&im);

    im = load_ok("pal.png", &info);
    assert_true(info.palette);
    assert_int_equal(im.w, QW);
    for (int q = 0; q < 4; q++) assert_memory_equal(quadrant(&im, q), quad_col[q], 3);
    dfd_image_free(&im);

    im = load_ok("grey.png", &info);
    assert_int_equal(info.channels, 1);
    for (int y = 0; y < GH; y++)
        for (int x = 0; x < GW; x++) {
            uint8_t v = (uint8_t)(x * 5 + y * 2), want[3] = {v, v, v};
            assert_memory_equal(im.rgb + 3 * (y * GW + x), want, 3);
        }
    dfd_image_free(&im);
}

static void alpha_is_composited_over_white(void **state) {
    (void)state;
    REQUIRE_FILES();
    static const char *const files[] = {"alpha.png", "alpha.webp"};
    for (int k = 0; k < 2; k++) {
        dfd_image_info info;
        dfd_image im = load_ok(files[k], &info);
        assert_true(info.has_alpha);
        for (int y = 0; y < GH; y++)
            for (int x = 0; x < GW; x++) {
                uint8_t p[3], want[3];
                grad_px(x, y, p);
                int a = x * 255 / (GW - 1);
                for (int c = 0; c < 3; c++) want[c] = (uint8_t)((p[c] * a + 255 * (255 - a) + 127) / 255);
                if (!near(im.rgb + 3 * (y * GW + x), want, 1)) {
                    print_error("%s at %d,%d\n", files[k], x, y);
                    fail();
                }
            }
        dfd_image_free(&im);
    }
}

static void lossy_formats_keep_quadrant_colours(void **state) {
    (void)state;
    REQUIRE_FILES();
    static const char *const files[] = {"quad.jpg", "quad.webp"};
    for (int k = 0; k < 2; k++) {
        dfd_image_info info;
        dfd_image im = load_ok(files[k], &info);
        assert_int_equal(im.w, QW);
        assert_int_equal(im.h, QH);
        for (int q = 0; q < 4; q++) assert_true(near(quadrant(&im, q), quad_col[q], 10));
        dfd_image_free(&im);
    }
}

/* quad.jpg with an APP1 Exif segment (little-endian TIFF, one IFD0 entry: Orientation)
 * inserted after SOI. */
static uint8_t *jpeg_with_orientation(int o, size_t *len) {
    size_t n;
    uint8_t *src = slurp("quad.jpg", &n);
    static const uint8_t app1_head[] = {0xFF, 0xE1, 0, 34, 'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0,
                                        1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0};
    uint8_t *d = malloc(n + 36);
    assert_non_null(d);
    memcpy(d, src, 2);
    size_t k = 2;
    memcpy(d + k, app1_head, sizeof app1_head);
    k += sizeof app1_head;
    uint8_t tail[8] = {(uint8_t)o, 0, 0, 0, 0, 0, 0, 0}; /* value, padding, next-IFD offset 0 */
    memcpy(d + k, tail, 8);
    k += 8;
    assert_int_equal(k, 2 + 36);
    memcpy(d + k, src + 2, n - 2);
    *len = n + 36;
    free(src);
    return d;
}

static void jpeg_exif_orientation_puts_pixels_upright(void **state) {
    (void)state;
    REQUIRE_FILES();
    /* Which source quadrant (0 TL red, 1 TR green, 2 BL blue, 3 BR grey) shows at the
     * display's TL, TR, BL, BR for each orientation, per the EXIF specification. */
    static const int want[9][4] = {{0},          {0, 1, 2, 3}, {1, 0, 3, 2}, {3, 2, 1, 0}, {2, 3, 0, 1},
                                   {0, 2, 1, 3}, {2, 0, 3, 1}, {3, 1, 2, 0}, {1, 3, 0, 2}};
    for (int o = 1; o <= 8; o++) {
        size_t n;
        uint8_t *d = jpeg_with_orientation(o, &n);
        dfd_image im;
        dfd_image_info info;
        dfd_error e;
        assert_int_equal(dfd_image_decode(d, n, NULL, &im, &info, &e), DFD_OK);
        assert_int_equal(info.orientation, o);
        assert_int_equal(im.w, o >= 5 ? QH : QW);
        assert_int_equal(im.h, o >= 5 ? QW : QH);
        assert_int_equal(info.width, im.w);
        for (int q = 0; q < 4; q++) {
            if (!near(quadrant(&im, q), quad_col[want[o][q]], 10)) {
                print_error("orientation %d, display quadrant %d\n", o, q);
                fail();
            }
        }
        dfd_image_info hdr;
        assert_int_equal(dfd_image_probe(d, n, &hdr, &e), DFD_OK); /* headers alone agree */
        assert_int_equal(hdr.width, im.w);
        assert_int_equal(hdr.orientation, o);
        dfd_image_free(&im);
        free(d);
    }
}

static void check_error(const char *name, const void *d, size_t n, int code, const char *needle) {
    dfd_image im;
    dfd_error e;
    dfd_error_clear(&e);
    int rc = dfd_image_decode(d, n, NULL, &im, NULL, &e);
    if (rc != code || !strstr(e.message, needle)) {
        print_error("%s: got %d '%s', wanted %d with '%s'\n", name, rc, e.message, code, needle);
        fail();
    }
    assert_int_equal(e.code, code);
    assert_null(im.rgb);
}

static void truncated_files_are_corrupt_and_say_so(void **state) {
    (void)state;
    REQUIRE_FILES();
    static const char *const files[] = {"quad.jpg", "grad.png", "adam7.png", "grad.webp", "quad.webp", "grad24.bmp"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        size_t n;
        uint8_t *d = slurp(files[i], &n);
        check_error(files[i], d, n / 2, DFD_E_CORRUPT, "truncated");
        check_error(files[i], d, 20, DFD_E_CORRUPT, "truncated"); /* inside the headers */
        free(d);
    }
}

static uint8_t *find(uint8_t *d, size_t n, const char *pat, size_t pn) {
    for (size_t i = 0; i + pn <= n; i++)
        if (memcmp(d + i, pat, pn) == 0) return d + i;
    fail_msg("pattern not found");
    return NULL;
}

static void damaged_files_are_corrupt_with_the_decoders_reason(void **state) {
    (void)state;
    REQUIRE_FILES();
    size_t n;
    uint8_t *d = slurp("grad.png", &n);
    uint8_t *idat = find(d, n, "IDAT", 4);
    uint32_t ilen = (uint32_t)idat[-4] << 24 | (uint32_t)idat[-3] << 16 | (uint32_t)idat[-2] << 8 | idat[-1];
    idat[4 + ilen] ^= 0x5A; /* the chunk's CRC no longer matches its data */
    check_error("png crc", d, n, DFD_E_CORRUPT, "corrupt PNG: IDAT: CRC error");
    idat[4 + ilen] ^= 0x5A;
    memset(idat + 6, 0xA5, 4); /* damaged deflate data (with a matching CRC: libpng checks it last) */
    check_error("png zlib", d, n, DFD_E_CORRUPT, "corrupt PNG: IDAT: ");
    free(d);

    d = slurp("quad.jpg", &n);
    uint8_t *sof = find(d, n, "\xFF\xC0", 2);
    sof[5] = sof[6] = 0; /* height 0 */
    check_error("jpeg", d, n, DFD_E_CORRUPT, "corrupt JPEG: ");
    free(d);

    d = slurp("grad.webp", &n);
    memset(d + 21, 0xFF, 8);
    check_error("webp", d, n, DFD_E_CORRUPT, "WebP");
    free(d);

    d = slurp("grad24.bmp", &n);
    d[28] = 8; /* claims 8 bits per pixel */
    check_error("bmp", d, n, DFD_E_UNSUPPORTED, "8 bits per pixel");
    free(d);
}

static void oversized_images_hit_the_limit_before_allocating(void **state) {
    (void)state;
    REQUIRE_FILES();
    size_t n;
    uint8_t *d = slurp("quad.jpg", &n);
    uint8_t *sof = find(d, n, "\xFF\xC0", 2);
    sof[5] = 0x4E, sof[6] = 0x20, sof[7] = 0x4E, sof[8] = 0x20; /* 20000 x 20000 */
    check_error("jpeg", d, n, DFD_E_LIMIT, "image is 20000x20000, over the 64 MP limit");
    dfd_image_info info;
    assert_int_equal(dfd_image_probe(d, n, &info, NULL), DFD_OK); /* the header itself is fine */
    assert_int_equal(info.width, 20000);
    free(d);

    d = slurp("grad24.bmp", &n);
    d[18] = 0x20, d[19] = 0x4E, d[22] = 0x20, d[23] = 0x4E;
    check_error("bmp", d, n, DFD_E_LIMIT, "image is 20000x20000, over the 64 MP limit");
    free(d);

    dfd_limits lim;
    dfd_limits_default(&lim);
    lim.max_image_pixels = 500;
    dfd_image im;
    dfd_error e;
    char *p = path("grad.webp");
    assert_int_equal(dfd_image_load(p, &lim, &im, NULL, &e), DFD_E_LIMIT);
    assert_string_equal(e.message, "image is 40x24, over the 0.0005 MP limit");
    dfd_limits_default(&lim);
    lim.max_file_bytes = 10;
    assert_int_equal(dfd_image_load(p, &lim, &im, NULL, &e), DFD_E_LIMIT);
    free(p);
}

static uint32_t crc32_of(const uint8_t *d, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= d[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Under the pixel limit but absurdly long or thin: refused from the header, in every
 * format, before anything is decoded. A 1 x 60 000 000 PNG of 227 KB used to cost 9 s
 * and 1.6 GiB (issue 18). The headers of small files are patched; without the check the
 * decoders would go on and fail later, on the missing pixels, as corrupt data. */
static void long_thin_images_hit_the_side_and_aspect_limits(void **state) {
    (void)state;
    REQUIRE_FILES();
    size_t n;
    uint8_t *d = slurp("grad.png", &n);
    put_be32(d + 16, 1);
    put_be32(d + 20, 60000000); /* IHDR width, height */
    put_be32(d + 29, crc32_of(d + 12, 17));
    check_error("png", d, n, DFD_E_LIMIT, "image is 1x60000000, over the limit of 16384 pixels a side");
    put_be32(d + 16, 100);
    put_be32(d + 20, 3201); /* 1:32.01 */
    put_be32(d + 29, crc32_of(d + 12, 17));
    check_error("png", d, n, DFD_E_LIMIT, "image is 100x3201, more elongated than the limit of 1:32");
    free(d);

    d = slurp("quad.jpg", &n);
    uint8_t *sof = find(d, n, "\xFF\xC0", 2);
    sof[5] = 0x00, sof[6] = 0x64, sof[7] = 0x9C, sof[8] = 0x40; /* 40000 wide, 100 high: 4 MP */
    check_error("jpeg", d, n, DFD_E_LIMIT, "image is 40000x100, over the limit of 16384 pixels a side");
    sof[5] = 0x00, sof[6] = 0x0A, sof[7] = 0x3E, sof[8] = 0x80; /* 16000 x 10 */
    check_error("jpeg", d, n, DFD_E_LIMIT, "image is 16000x10, more elongated than the limit of 1:32");
    free(d);

    d = slurp("grad24.bmp", &n);
    d[18] = 1, d[19] = d[20] = d[21] = 0;                         /* width 1 */
    d[22] = 0x00, d[23] = 0x87, d[24] = 0x93, d[25] = 0x03;       /* height 60 000 000 */
    check_error("bmp", d, n, DFD_E_LIMIT, "image is 1x60000000, over the limit of 16384 pixels a side");
    free(d);

    d = slurp("grad.webp", &n);
    assert_memory_equal(d + 12, "VP8L", 4); /* lossless: 14-bit sizes at byte 21 */
    uint32_t v = (uint32_t)d[21] | (uint32_t)d[22] << 8 | (uint32_t)d[23] << 16 | (uint32_t)d[24] << 24;
    v = (v & 0xF0000000u) | (16384u - 1) | (2u - 1) << 14; /* 16384 x 2 */
    for (int i = 0; i < 4; i++) d[21 + i] = (uint8_t)(v >> (8 * i));
    check_error("webp", d, n, DFD_E_LIMIT, "image is 16384x2, more elongated than the limit of 1:32");
    free(d);

    /* At the limits exactly, and with the limits switched off (0), the size is fine. */
    dfd_limits l;
    dfd_limits_default(&l);
    dfd_error e;
    assert_int_equal(dfd_media_check_pixels("image", 16384, 512, &l, &e), DFD_OK);
    assert_int_equal(dfd_media_check_pixels("image", 16385, 600, &l, &e), DFD_E_LIMIT);
    l.max_image_side = 0;
    l.max_image_aspect = 0;
    assert_int_equal(dfd_media_check_pixels("image", 1, 60000000, &l, &e), DFD_OK);
}

static void format_comes_from_content_not_extension(void **state) {
    (void)state;
    REQUIRE_FILES();
    size_t n;
    uint8_t *d = slurp("grad.png", &n);
    put("really-a-png.jpg", d, n);
    free(d);
    dfd_image_info info;
    dfd_image im = load_ok("really-a-png.jpg", &info);
    assert_string_equal(info.format, "PNG");
    assert_gradient(&im);
    dfd_image_free(&im);

    const char text[] = "hello, this is not a video\n";
    put("notes.mp4", text, sizeof text - 1);
    char *p = path("notes.mp4");
    dfd_error e;
    assert_int_equal(dfd_image_load(p, NULL, &im, NULL, &e), DFD_E_UNSUPPORTED);
    assert_string_equal(e.message, "unsupported format: not an image or a video that dfd can read");
    dfd_media_kind kind;
    const char *fmt;
    assert_int_equal(dfd_media_sniff_file(p, &kind, &fmt, &e), DFD_OK);
    assert_int_equal(kind, DFD_MEDIA_UNKNOWN);
    free(p);
}

static void other_image_formats_are_named_and_refused(void **state) {
    (void)state;
    REQUIRE_FILES();
    static const char *const files[] = {"quad.gif", "quad.tiff"};
    static const char *const msgs[] = {"unsupported format: 'GIF'", "unsupported format: 'TIFF'"};
    for (int i = 0; i < 2; i++) {
        size_t n;
        uint8_t *d = slurp(files[i], &n);
        const char *fmt;
        assert_int_equal(dfd_media_sniff(d, n, &fmt), DFD_MEDIA_IMAGE);
        dfd_image im;
        dfd_error e;
        assert_int_equal(dfd_image_decode(d, n, NULL, &im, NULL, &e), DFD_E_UNSUPPORTED);
        assert_string_equal(e.message, msgs[i]);
        free(d);
    }
    static const uint8_t avif[] = {0, 0, 0, 0x20, 'f', 't', 'y', 'p', 'a', 'v', 'i', 'f', 0, 0, 0, 0};
    const char *fmt;
    assert_int_equal(dfd_media_sniff(avif, sizeof avif, &fmt), DFD_MEDIA_IMAGE);
    assert_string_equal(fmt, "AVIF");
}

static void sniffing_tells_images_videos_and_the_rest(void **state) {
    (void)state;
    const char *fmt;
    assert_int_equal(dfd_media_sniff("", 0, &fmt), DFD_MEDIA_UNKNOWN);
    assert_null(fmt);
    assert_int_equal(dfd_media_sniff(NULL, 0, &fmt), DFD_MEDIA_UNKNOWN);
    assert_int_equal(dfd_media_sniff("\xFF\xD8\xFF\xE0", 4, &fmt), DFD_MEDIA_IMAGE);
    assert_string_equal(fmt, "JPEG");
    assert_int_equal(dfd_media_sniff("BM", 2, &fmt), DFD_MEDIA_UNKNOWN); /* two letters are not a BMP */
    char *clip = tu_join(tu_source_dir(), "examples/astronaut-clip.mp4");
    dfd_media_kind kind;
    assert_int_equal(dfd_media_sniff_file(clip, &kind, &fmt, NULL), DFD_OK);
    assert_int_equal(kind, DFD_MEDIA_VIDEO);
    assert_string_equal(fmt, "mov,mp4,m4a,3gp,3g2,mj2");
    free(clip);
    dfd_error e;
    assert_int_equal(dfd_media_sniff_file("/nonexistent/x", &kind, &fmt, &e), DFD_E_IO);
    /* An HLS playlist is recognised by FFmpeg but refused: it would open other files. */
    static const char m3u8[] = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n";
    assert_int_equal(dfd_media_sniff(m3u8, sizeof m3u8 - 1, &fmt), DFD_MEDIA_UNKNOWN);
    assert_string_equal(fmt, "hls");
}

static void example_images_decode(void **state) {
    (void)state;
    dfd_image png, jpg, cat;
    dfd_image_info info;
    char *p = tu_join(tu_source_dir(), "examples/astronaut.png");
    assert_int_equal(dfd_image_load(p, NULL, &png, &info, NULL), DFD_OK);
    free(p);
    p = tu_join(tu_source_dir(), "examples/astronaut.jpg");
    assert_int_equal(dfd_image_load(p, NULL, &jpg, &info, NULL), DFD_OK);
    free(p);
    p = tu_join(tu_source_dir(), "examples/chelsea.png");
    assert_int_equal(dfd_image_load(p, NULL, &cat, &info, NULL), DFD_OK);
    free(p);
    assert_int_equal(png.w, 512);
    assert_int_equal(png.h, 512);
    assert_int_equal(jpg.w, 512);
    assert_int_equal(cat.w, 451);
    assert_int_equal(cat.h, 300);
    /* The JPEG was made from the PNG: on average within a few levels of it. */
    double sum = 0;
    for (size_t i = 0; i < 512u * 512u * 3u; i++) sum += abs(png.rgb[i] - jpg.rgb[i]);
    assert_true(sum / (512.0 * 512 * 3) < 4.0);
    dfd_image_free(&png);
    dfd_image_free(&jpg);
    dfd_image_free(&cat);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lossless_formats_decode_exactly),
        cmocka_unit_test(png_variants_report_depth_palette_interlace),
        cmocka_unit_test(alpha_is_composited_over_white),
        cmocka_unit_test(lossy_formats_keep_quadrant_colours),
        cmocka_unit_test(jpeg_exif_orientation_puts_pixels_upright),
        cmocka_unit_test(truncated_files_are_corrupt_and_say_so),
        cmocka_unit_test(damaged_files_are_corrupt_with_the_decoders_reason),
        cmocka_unit_test(oversized_images_hit_the_limit_before_allocating),
        cmocka_unit_test(long_thin_images_hit_the_side_and_aspect_limits),
        cmocka_unit_test(format_comes_from_content_not_extension),
        cmocka_unit_test(other_image_formats_are_named_and_refused),
        cmocka_unit_test(sniffing_tells_images_videos_and_the_rest),
        cmocka_unit_test(example_images_decode),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
