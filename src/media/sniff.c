/* sniff.c — telling images from videos by their first bytes, never by file name. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavformat/avformat.h>

#include "media/media.h"

static int starts(const uint8_t *d, size_t len, size_t off, const char *magic, size_t n) {
    return len >= off + n && memcmp(d + off, magic, n) == 0;
}

/* Image formats by magic. The refused ones are listed so that the user hears what the
 * file is ("unsupported format: 'GIF'") instead of a generic refusal, and so that
 * FFmpeg never gets to treat an image (a GIF, an AVIF in an ISO box) as a video. */
static const char *image_magic(const uint8_t *d, size_t len) {
    if (starts(d, len, 0, "\xFF\xD8\xFF", 3)) return "JPEG";
    if (starts(d, len, 0, "\x89PNG\r\n\x1A\n", 8)) return "PNG";
    if (starts(d, len, 0, "RIFF", 4) && starts(d, len, 8, "WEBP", 4)) return "WebP";
    if (starts(d, len, 0, "BM", 2) && len >= 18) {
        uint32_t hs = dfd_rd32le(d + 14);
        if (hs == 12 || hs == 40 || hs == 52 || hs == 56 || hs == 64 || hs == 108 || hs == 124) return "BMP";
    }
    if (starts(d, len, 0, "GIF87a", 6) || starts(d, len, 0, "GIF89a", 6)) return "GIF";
    if (starts(d, len, 0, "II*\0", 4) || starts(d, len, 0, "MM\0*", 4)) return "TIFF";
    if (starts(d, len, 0, "\0\0\0\x0CjP  \r\n\x87\n", 12) || starts(d, len, 0, "\xFF\x4F\xFF\x51", 4)) return "JPEG 2000";
    if (starts(d, len, 0, "\xFF\x0A", 2) || starts(d, len, 0, "\0\0\0\x0CJXL \r\n\x87\n", 12)) return "JPEG XL";
    if (starts(d, len, 0, "8BPS", 4)) return "PSD";
    if (starts(d, len, 0, "qoif", 4)) return "QOI";
    if (starts(d, len, 4, "ftyp", 4) && len >= 12) {
        const uint8_t *b = d + 8;
        if (!memcmp(b, "avif", 4) || !memcmp(b, "avis", 4)) return "AVIF";
        if (!memcmp(b, "heic", 4) || !memcmp(b, "heix", 4) || !memcmp(b, "mif1", 4) || !memcmp(b, "msf1", 4))
            return "HEIF";
    }
    return NULL;
}

/* Demuxers we hand content to. An allow-list because FFmpeg also recognises
 * playlists and concatenation scripts (hls, concat) that open other files and URLs,
 * and text formats (tty, subtitles) that would accept almost any file. */
static const char *const video_demuxers[] = {
    "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv", "mpegts", "mpeg", "asf", "ogg", "ivf", "nut",
    "h264", "hevc", "m4v", "mpegvideo", "yuv4mpegpipe", "rm",
};

const AVInputFormat *dfd_media_video_demuxer(const void *data, size_t len, const char **name) {
    if (name) *name = NULL;
    if (!data || len == 0) return NULL;
    if (len > DFD_SNIFF_BYTES) len = DFD_SNIFF_BYTES;
    /* FFmpeg's probes may read a little past the end: it asks for zeroed padding. */
    uint8_t *buf = calloc(1, len + AVPROBE_PADDING_SIZE);
    if (!buf) return NULL;
    memcpy(buf, data, len);
    AVProbeData pd = {.filename = "", .buf = buf, .buf_size = (int)len};
    int score = 0;
    const AVInputFormat *fmt = av_probe_input_format3(&pd, 1, &score);
    free(buf);
    if (!fmt || score <= AVPROBE_SCORE_RETRY) return NULL;
    if (name) *name = fmt->name;
    for (size_t i = 0; i < sizeof video_demuxers / sizeof *video_demuxers; i++)
        if (strcmp(fmt->name, video_demuxers[i]) == 0) return fmt;
    return NULL;
}

dfd_media_kind dfd_media_sniff(const void *data, size_t len, const char **format) {
    const char *f = data ? image_magic(data, len) : NULL;
    if (format) *format = f;
    if (f) return DFD_MEDIA_IMAGE;
    return dfd_media_video_demuxer(data, len, format) ? DFD_MEDIA_VIDEO : DFD_MEDIA_UNKNOWN;
}

int dfd_media_sniff_file(const char *path, dfd_media_kind *kind, const char **format, dfd_error *err) {
    *kind = DFD_MEDIA_UNKNOWN;
    if (format) *format = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dfd_fail(err, DFD_E_IO, "cannot open '%s': %s", path, strerror(errno));
    uint8_t *head = malloc(DFD_SNIFF_BYTES);
    if (!head) {
        fclose(f);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    size_t n = fread(head, 1, DFD_SNIFF_BYTES, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(head);
        return dfd_fail(err, DFD_E_IO, "cannot read '%s'", path);
    }
    *kind = dfd_media_sniff(head, n, format);
    free(head);
    return DFD_OK;
}

int dfd_media_fail_unsupported(const char *format, dfd_error *err) {
    if (format) return dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported format: '%s'", format);
    return dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported format: not an image or a video that dfd can read");
}
