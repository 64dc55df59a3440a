/*
 * media — everything between bytes and pixels. It owns:
 *   - sniffing: telling an image from a video (or neither) by content, never by name;
 *   - image decoding: JPEG (libjpeg-turbo, EXIF orientation via libexif), PNG (libpng),
 *     WebP (libwebp) and BMP (own parser) into 8-bit RGB;
 *   - video probing and frame reading through FFmpeg: evenly spaced samples found by
 *     seeking, or every Nth frame in order, from a path or a memory buffer;
 *   - the pixel buffer (dfd_image) and its geometric operations: orientation,
 *     resize, crop, horizontal flip.
 * Every entry point checks dfd_limits before it allocates for untrusted input.
 * Float tensors and normalisation belong to nn/face, not here.
 */
#ifndef DFD_MEDIA_H
#define DFD_MEDIA_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- Pixel buffers ------------------------------------------------------------ */

/* 8-bit RGB, row-major, stride 3*w, owned by whoever holds it (dfd_image_free). */
typedef struct dfd_image {
    int w, h;
    uint8_t *rgb;
} dfd_image;

/* Allocates an uninitialised w x h image (w, h >= 1); *img is zeroed on failure. */
int dfd_image_alloc(dfd_image *img, int w, int h, dfd_error *err);
/* Frees the pixels and zeroes *img; safe on a zeroed or already freed image. */
void dfd_image_free(dfd_image *img);
int dfd_image_copy(const dfd_image *src, dfd_image *dst, dfd_error *err);

/* Applies an EXIF orientation (1..8: 1 as is, 2 mirror, 3 rotate 180, 4 flip,
 * 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise)
 * into a new image; 5..8 swap width and height. */
int dfd_image_orient(const dfd_image *src, int orientation, dfd_image *dst, dfd_error *err);

/* Resizes to w x h, each axis on its own: area averaging where it shrinks, bilinear
 * (pixel centres aligned, edges clamped) where it grows, a plain copy where equal. */
int dfd_image_resize(const dfd_image *src, int w, int h, dfd_image *dst, dfd_error *err);

typedef enum dfd_border {
    DFD_BORDER_FILL = 0,      /* pixels outside the source take a given colour */
    DFD_BORDER_REPLICATE = 1  /* pixels outside repeat the nearest edge pixel */
} dfd_border;

/* Crops the rectangle (x, y, w, h), which may extend past the source on any side,
 * into a new w x h image. fill (RGB) is used with DFD_BORDER_FILL; NULL means black. */
int dfd_image_crop(const dfd_image *src, int x, int y, int w, int h, dfd_border border, const uint8_t fill[3],
                   dfd_image *dst, dfd_error *err);

/* Mirrors left-right in place. */
void dfd_image_flip_h(dfd_image *img);

/* ---- Sniffing ------------------------------------------------------------------- */

/* dfd_media_kind (DFD_MEDIA_UNKNOWN, _IMAGE, _VIDEO) is public: include/dfd/dfd.h. */

/* Bytes of a file's head that sniffing looks at; more is ignored. */
#define DFD_SNIFF_BYTES (256u * 1024u)

/* Tells image/video/unknown from the first bytes. *format (may be NULL) receives a
 * static name: "JPEG", "PNG", "WebP", "BMP", "GIF", "TIFF", ... for images, FFmpeg's
 * demuxer name ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", ...) for videos, or the
 * name of a recognised but refused format (e.g. "mp3", "hls"), else NULL. */
dfd_media_kind dfd_media_sniff(const void *data, size_t len, const char **format);
/* The same on the head of a file; fails only when the file cannot be read. */
int dfd_media_sniff_file(const char *path, dfd_media_kind *kind, const char **format, dfd_error *err);
/* The error for an input that sniffing did not accept (DFD_E_UNSUPPORTED with
 * "unsupported format: 'GIF'" or "... not an image or a video that dfd can read"). */
int dfd_media_fail_unsupported(const char *format, dfd_error *err);
/* True when format (a name dfd_media_sniff gives for an image) is one the image decoder
 * reads: "JPEG", "PNG", "WebP", "BMP" (decode.c, which picks its decoder by the same list). */
int dfd_media_image_readable(const char *format);

/* ---- Images --------------------------------------------------------------------- */

typedef struct dfd_image_info {
    const char *format; /* "JPEG", "PNG", "WebP", "BMP" */
    int width, height;  /* as displayed, i.e. after EXIF orientation */
    int orientation;    /* EXIF orientation 1..8 (1 for formats without one) */
    int bit_depth;      /* bits per channel in the file */
    int channels;       /* in the file: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; 1 for palette */
    int has_alpha;      /* alpha (or PNG tRNS) present; decoding composites it over white */
    int palette;        /* PNG palette image */
    int interlaced;     /* PNG Adam7 or progressive JPEG */
} dfd_image_info;

/* Reads only the headers (no pixels, no pixel limit check). */
int dfd_image_probe(const void *data, size_t len, dfd_image_info *info, dfd_error *err);
/* Decodes to RGB. limits NULL = defaults; the pixel limit is checked before any pixel
 * memory is allocated. info (may be NULL) is filled as by dfd_image_probe. */
int dfd_image_decode(const void *data, size_t len, const dfd_limits *limits, dfd_image *out,
                     dfd_image_info *info, dfd_error *err);
/* Reads the file (refusing files over limits->max_file_bytes) and decodes it. */
int dfd_image_load(const char *path, const dfd_limits *limits, dfd_image *out, dfd_image_info *info,
                   dfd_error *err);

/* ---- Videos ------------------------------------------------------------------- */

typedef struct dfd_video_info {
    char container[64];   /* FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" */
    char codec[32];       /* e.g. "h264" */
    int width, height;    /* display size: after rotation */
    int rotation;         /* clockwise degrees applied to decoded frames: 0, 90, 180, 270 */
    double fps;           /* average frame rate; 0 when unknown */
    double duration_s;    /* container duration (stream's when the container has none) */
    int64_t frames;       /* frame count of the video stream */
    int frames_estimated; /* 1 when frames is duration * fps, not a count from the container */
} dfd_video_info;

typedef struct dfd_video dfd_video;

/* Opens a video, checking limits (file size, duration, frame size; NULL = defaults).
 * threads: decoder threads, 0 = FFmpeg's choice (all cores). */
int dfd_video_open(const char *path, const dfd_limits *limits, int threads, dfd_video **out, dfd_error *err);
/* The same on memory; data is borrowed and must outlive the handle. */
int dfd_video_open_buffer(const void *data, size_t len, const dfd_limits *limits, int threads, dfd_video **out,
                          dfd_error *err);
void dfd_video_close(dfd_video *v);
const dfd_video_info *dfd_video_get_info(const dfd_video *v);

typedef struct dfd_frame {
    dfd_image img;  /* RGB, rotated for display */
    int64_t index;  /* frame number from the start (from the timestamp and fps when known) */
    double time_s;  /* presentation time from the start of the stream */
} dfd_frame;

typedef struct dfd_frame_set {
    dfd_frame *frames;
    int count;      /* may be below the number asked for: see truncated */
    int corrupt;    /* frames or packets that failed to decode and were skipped */
    int decoded;    /* frames the decoder produced to get these (shows seeking works) */
    int truncated;  /* the stream ended before the last requested time */
} dfd_frame_set;

void dfd_frame_set_free(dfd_frame_set *s);

/* n frames spread evenly over the duration, at times start + i * duration / n: for each
 * it seeks to the keyframe before the target (unless decoding on is shorter) and decodes
 * forward to the frame shown at that time. A frame shown at two targets is returned
 * twice. progress (may be NULL) is called per frame; non-zero cancels. */
int dfd_video_sample_frames(dfd_video *v, int n, dfd_progress_fn progress, void *user, dfd_frame_set *out,
                            dfd_error *err);

/* Called by dfd_video_read for each frame it keeps; the frame is only valid during the
 * call (copy it to keep it). Return 0 to go on, non-zero to stop reading. */
typedef int (*dfd_frame_fn)(void *user, const dfd_frame *frame);

/* As dfd_video_sample_frames, but hands each sampled frame over as soon as it is decoded,
 * so a caller works on frame i while frame i+1 decodes. Each frame is as the decoder gave
 * it (a reference, no copy), not yet converted to RGB; fn owns it (dfd_raw_frame_free),
 * and any thread converts it with a converter of its own (converters cache a scaler: one
 * per thread), so the RGB conversion of a 1080p frame (~13 ms) runs beside the decoding
 * instead of between its frames. Non-zero from fn cancels with DFD_E_CANCELLED; stats
 * receives the counters (count, corrupt, decoded, truncated) and no frames. */
typedef struct dfd_raw_frame dfd_raw_frame;
typedef struct dfd_frame_converter dfd_frame_converter;
typedef int (*dfd_raw_frame_fn)(void *user, dfd_raw_frame *frame);
int dfd_video_sample_raw(dfd_video *v, int n, dfd_raw_frame_fn fn, void *user, dfd_frame_set *stats, dfd_error *err);
dfd_frame_converter *dfd_frame_converter_new(void); /* NULL on no memory */
void dfd_frame_converter_free(dfd_frame_converter *c);
/* Converts f into out (RGB, upright; out->img's pixels are reused when the size matches,
 * so pass a zeroed frame or one converted before), with f's index and time. */
int dfd_raw_frame_convert(dfd_frame_converter *c, const dfd_raw_frame *f, dfd_frame *out, dfd_error *err);
void dfd_raw_frame_free(dfd_raw_frame *f);

/* Decodes from the start, in order, and passes every stride-th frame (0, stride,
 * 2*stride, ... by decoder output) to fn. corrupt (may be NULL) receives the count
 * of skipped undecodable frames. */
int dfd_video_read(dfd_video *v, int stride, dfd_frame_fn fn, void *user, int *corrupt, dfd_error *err);

/* Path-level conveniences: open, do one thing, close. */
int dfd_video_probe(const char *path, const dfd_limits *limits, dfd_video_info *info, dfd_error *err);
int dfd_video_sample(const char *path, int n, const dfd_limits *limits, int threads, dfd_frame_set *out,
                     dfd_error *err);

/* ---- Encoding (encode.c; dfd_png_write is public, dfd.h) ------------------------- */

/* Encodes RGB as baseline JPEG (4:2:0) at quality 1..100; *out is malloc'ed. */
int dfd_jpeg_encode(const dfd_image *img, int quality, uint8_t **out, size_t *len, dfd_error *err);
/* The same into a file, atomically. */
int dfd_jpeg_write_file(const dfd_image *img, int quality, const char *path, dfd_error *err);

/* ---- Between the module's files ----------------------------------------------- */

/* The FFmpeg demuxer for content that sniffs as a video we accept, else NULL. */
struct AVInputFormat;
const struct AVInputFormat *dfd_media_video_demuxer(const void *data, size_t len, const char **name);

/* DFD_E_LIMIT "image is WxH, over the 64 MP limit" when w*h is over the pixel limit. */
int dfd_media_check_pixels(const char *what, int w, int h, const dfd_limits *limits, dfd_error *err);

/* One decoder per format. With out == NULL only the headers are read into info. */
int dfd_media_decode_jpeg(const uint8_t *data, size_t len, const dfd_limits *limits, dfd_image *out,
                          dfd_image_info *info, dfd_error *err);
int dfd_media_decode_png(const uint8_t *data, size_t len, const dfd_limits *limits, dfd_image *out,
                         dfd_image_info *info, dfd_error *err);
int dfd_media_decode_webp(const uint8_t *data, size_t len, const dfd_limits *limits, dfd_image *out,
                          dfd_image_info *info, dfd_error *err);
int dfd_media_decode_bmp(const uint8_t *data, size_t len, const dfd_limits *limits, dfd_image *out,
                         dfd_image_info *info, dfd_error *err);

/* Composites one 8-bit RGBA pixel over white. */
static inline void dfd_media_over_white(const uint8_t *rgba, uint8_t *rgb) {
    unsigned a = rgba[3];
    for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)((rgba[c] * a + 255u * (255u - a) + 127u) / 255u);
}

#endif
