/* video.c — video probing and frame reading through FFmpeg (libavformat, libavcodec,
 * libswscale), from a file or from memory, both through our own AVIOContext. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#include "media/media.h"

enum { AVIO_BUF = 64 * 1024 };

struct dfd_video {
    /* Input: a FILE or a borrowed buffer, read by FFmpeg through avio. Paths do not
     * go to avformat_open_input, so no URL protocol (http:, concat:, ...) is reachable. */
    FILE *file;
    const uint8_t *data;
    int64_t size, pos;

    AVIOContext *avio;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVStream *st;
    AVPacket *pkt;
    AVFrame *frame;
    struct SwsContext *sws;

    dfd_limits limits;
    dfd_video_info info;
    int orientation;    /* EXIF-style transform that applies the rotation */
    int64_t start_pts;  /* stream start, in stream time base */
    double span_s;      /* the stream's own duration, over which samples spread */
    int64_t decoded;    /* frames out of the decoder over the handle's life */
    int draining;       /* end of input reached, decoder flushed with a NULL packet */
    int touched;        /* something was read since opening (a restart must seek) */
    double t;           /* presentation time of v->frame, seconds from the stream start */
    int corrupt;        /* undecodable frames/packets in the current operation */
    double skip_before; /* frames shown before this time (s) are not wanted: the decoder may
                         * drop those no other frame refers to (AVDISCARD_NONREF) */
};

static int io_read(void *opaque, uint8_t *buf, int n) {
    dfd_video *v = opaque;
    size_t got;
    if (v->file) {
        got = fread(buf, 1, (size_t)n, v->file);
        if (got == 0) return ferror(v->file) ? AVERROR(EIO) : AVERROR_EOF;
    } else {
        int64_t left = v->size - v->pos;
        got = left < n ? (size_t)left : (size_t)n;
        if (got == 0) return AVERROR_EOF;
        memcpy(buf, v->data + v->pos, got);
    }
    v->pos += (int64_t)got;
    return (int)got;
}

static int64_t io_seek(void *opaque, int64_t off, int whence) {
    dfd_video *v = opaque;
    if (whence & AVSEEK_SIZE) return v->size;
    whence &= ~AVSEEK_FORCE;
    int64_t to = whence == SEEK_SET ? off : whence == SEEK_CUR ? v->pos + off : whence == SEEK_END ? v->size + off : -1;
    if (to < 0 || to > v->size) return AVERROR(EINVAL);
    if (v->file && fseeko(v->file, (off_t)to, SEEK_SET) != 0) return AVERROR(errno);
    v->pos = to;
    return to;
}

static void quiet_ffmpeg(void) {
    /* FFmpeg logs to stderr by default; library users see only our errors. */
    av_log_set_level(dfd_log_get_level() >= DFD_LOG_DEBUG ? AV_LOG_INFO : AV_LOG_QUIET);
}

static int fail_av(dfd_error *err, int code, int averr, const char *what) {
    char buf[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, buf, sizeof buf);
    return dfd_fail(err, code, "%s: %s", what, buf);
}

/* Clockwise display rotation from the stream's display matrix, a multiple of 90. */
static int stream_rotation(const AVStream *st) {
    const int32_t *m = NULL;
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 29, 100)
    const AVPacketSideData *sd = av_packet_side_data_get(st->codecpar->coded_side_data,
                                                         st->codecpar->nb_coded_side_data, AV_PKT_DATA_DISPLAYMATRIX);
    if (sd && sd->size >= 9 * sizeof(int32_t)) m = (const int32_t *)sd->data;
#else
    size_t size = 0;
    const uint8_t *sd = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
    if (sd && size >= 9 * sizeof(int32_t)) m = (const int32_t *)sd;
#endif
    if (!m) return 0;
    double ccw = av_display_rotation_get(m); /* counter-clockwise, as FFmpeg defines it */
    if (isnan(ccw)) return 0;
    long q = lround(-ccw / 90.0);
    if (fabs(-ccw - 90.0 * q) > 1.0) {
        dfd_log(DFD_LOG_DEBUG, "ignoring a display rotation of %.1f degrees (not a multiple of 90)", -ccw);
        return 0;
    }
    return (int)(((q % 4) + 4) % 4) * 90;
}

static int open_input(dfd_video *v, const char *label, int threads, dfd_error *err) {
    quiet_ffmpeg();
    if (v->limits.max_file_bytes && (uint64_t)v->size > v->limits.max_file_bytes)
        return dfd_fail(err, DFD_E_LIMIT, "file is %lld bytes, over the %llu-byte limit", (long long)v->size,
                        (unsigned long long)v->limits.max_file_bytes);

    /* The demuxer comes from sniffing the content, so FFmpeg never guesses from a name. */
    uint8_t *head = malloc(DFD_SNIFF_BYTES);
    if (!head) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    int n = io_read(v, head, DFD_SNIFF_BYTES);
    const char *name = NULL;
    dfd_media_kind k = n > 0 ? dfd_media_sniff(head, (size_t)n, &name) : DFD_MEDIA_UNKNOWN;
    const AVInputFormat *ifmt = k == DFD_MEDIA_VIDEO ? dfd_media_video_demuxer(head, (size_t)n, NULL) : NULL;
    free(head);
    if (n < 0 && n != AVERROR_EOF) return fail_av(err, DFD_E_IO, n, label);
    if (k == DFD_MEDIA_IMAGE) return dfd_fail(err, DFD_E_UNSUPPORTED, "this is an image ('%s'), not a video", name);
    if (!ifmt) return dfd_media_fail_unsupported(name, err);
    if (io_seek(v, 0, SEEK_SET) != 0) return dfd_fail(err, DFD_E_IO, "cannot rewind '%s'", label);

    uint8_t *buf = av_malloc(AVIO_BUF);
    if (!buf || !(v->avio = avio_alloc_context(buf, AVIO_BUF, 0, v, io_read, NULL, io_seek))) {
        av_free(buf);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    if (!(v->fmt = avformat_alloc_context())) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    v->fmt->pb = v->avio;
    v->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "protocol_whitelist", "none", 0); /* for demuxers that open other files */
    int r = avformat_open_input(&v->fmt, NULL, ifmt, &opts);
    av_dict_free(&opts);
    if (r < 0) /* avformat_open_input has freed v->fmt */
        return fail_av(err, r == AVERROR(ENOMEM) ? DFD_E_NOMEM : DFD_E_CORRUPT, r,
                       "cannot read the video container (truncated or corrupt)");
    if ((r = avformat_find_stream_info(v->fmt, NULL)) < 0)
        return fail_av(err, DFD_E_CORRUPT, r, "cannot read the video's streams");

    const AVCodec *codec = NULL;
    int si = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (si == AVERROR_STREAM_NOT_FOUND || (si >= 0 && (v->fmt->streams[si]->disposition & AV_DISPOSITION_ATTACHED_PIC)))
        return dfd_fail(err, DFD_E_NO_STREAM, "video has no video stream");
    if (si < 0 || !codec) {
        const AVStream *any = NULL;
        for (unsigned i = 0; i < v->fmt->nb_streams; i++)
            if (v->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) any = v->fmt->streams[i];
        return dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported video codec '%s'",
                        any ? avcodec_get_name(any->codecpar->codec_id) : "?");
    }
    for (unsigned i = 0; i < v->fmt->nb_streams; i++)
        if ((int)i != si) v->fmt->streams[i]->discard = AVDISCARD_ALL;
    AVStream *st = v->st = v->fmt->streams[si];

    dfd_video_info *in = &v->info;
    snprintf(in->container, sizeof in->container, "%s", v->fmt->iformat->name);
    snprintf(in->codec, sizeof in->codec, "%s", avcodec_get_name(st->codecpar->codec_id));
    in->rotation = stream_rotation(st);
    v->orientation = in->rotation == 90 ? 6 : in->rotation == 180 ? 3 : in->rotation == 270 ? 8 : 1;
    int cw = st->codecpar->width, ch = st->codecpar->height;
    in->width = in->rotation % 180 ? ch : cw;
    in->height = in->rotation % 180 ? cw : ch;
    AVRational fr = st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0 ? st->avg_frame_rate : st->r_frame_rate;
    in->fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    double tb = av_q2d(st->time_base);
    double sdur = st->duration != AV_NOPTS_VALUE && st->duration > 0 ? st->duration * tb : 0;
    in->duration_s = v->fmt->duration != AV_NOPTS_VALUE && v->fmt->duration > 0 ? v->fmt->duration / (double)AV_TIME_BASE
                                                                                 : sdur;
    v->span_s = sdur > 0 ? sdur : in->duration_s;
    v->start_pts = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
    if (st->nb_frames > 0) {
        in->frames = st->nb_frames;
    } else {
        in->frames = (int64_t)llround(in->duration_s * in->fps);
        in->frames_estimated = 1;
    }
    if (v->limits.max_video_seconds > 0 && in->duration_s > v->limits.max_video_seconds)
        return dfd_fail(err, DFD_E_LIMIT, "video is %.1f s long, over the %.0f s limit", in->duration_s,
                        v->limits.max_video_seconds);
    int rc = dfd_media_check_pixels("video frame", cw, ch, &v->limits, err);
    if (rc) return rc;

    if (!(v->dec = avcodec_alloc_context3(codec)) || !(v->pkt = av_packet_alloc()) || !(v->frame = av_frame_alloc()))
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if ((r = avcodec_parameters_to_context(v->dec, st->codecpar)) < 0)
        return fail_av(err, DFD_E_INTERNAL, r, "cannot set up the decoder");
    v->dec->pkt_timebase = st->time_base;
    v->dec->thread_count = threads > 0 ? threads : 0;
    v->dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    if ((r = avcodec_open2(v->dec, codec, NULL)) < 0)
        return fail_av(err, DFD_E_UNSUPPORTED, r, "cannot open the video decoder");
    return DFD_OK;
}

static int open_common(dfd_video *v, const char *label, const dfd_limits *limits, int threads, dfd_video **out,
                       dfd_error *err) {
    if (limits)
        v->limits = *limits;
    else
        dfd_limits_default(&v->limits);
    v->skip_before = -INFINITY;
    int rc = open_input(v, label, threads, err);
    if (rc) {
        dfd_video_close(v);
        return rc;
    }
    *out = v;
    return DFD_OK;
}

int dfd_video_open(const char *path, const dfd_limits *limits, int threads, dfd_video **out, dfd_error *err) {
    *out = NULL;
    if (!path) return dfd_fail(err, DFD_E_ARG, "no path");
    dfd_video *v = calloc(1, sizeof *v);
    if (!v) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    struct stat st;
    if (!(v->file = fopen(path, "rb"))) {
        int e = errno;
        free(v);
        return dfd_fail(err, DFD_E_IO, "cannot open '%s': %s", path, strerror(e));
    }
    if (fstat(fileno(v->file), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(v->file);
        free(v);
        return dfd_fail(err, DFD_E_IO, "'%s' is not a regular file", path);
    }
    v->size = st.st_size;
    return open_common(v, path, limits, threads, out, err);
}

int dfd_video_open_buffer(const void *data, size_t len, const dfd_limits *limits, int threads, dfd_video **out,
                          dfd_error *err) {
    *out = NULL;
    if (!data && len) return dfd_fail(err, DFD_E_ARG, "no data");
    if (len > (size_t)INT64_MAX) return dfd_fail(err, DFD_E_LIMIT, "buffer too large");
    dfd_video *v = calloc(1, sizeof *v);
    if (!v) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    v->data = data;
    v->size = (int64_t)len;
    return open_common(v, "buffer", limits, threads, out, err);
}

void dfd_video_close(dfd_video *v) {
    if (!v) return;
    sws_freeContext(v->sws);
    av_frame_free(&v->frame);
    av_packet_free(&v->pkt);
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    if (v->avio) av_freep(&v->avio->buffer);
    avio_context_free(&v->avio);
    if (v->file) fclose(v->file);
    free(v);
}

const dfd_video_info *dfd_video_get_info(const dfd_video *v) { return &v->info; }

/* Decodes the next good frame into v->frame; *got = 0 at the end of the stream.
 * Undecodable packets and frames are counted in v->corrupt and skipped. */
static int next_frame(dfd_video *v, int *got, dfd_error *err) {
    *got = 0;
    v->touched = 1;
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frame);
        if (r == 0) {
            v->decoded++;
            if (v->limits.max_video_frames > 0 && v->decoded > v->limits.max_video_frames) {
                av_frame_unref(v->frame);
                return dfd_fail(err, DFD_E_LIMIT, "decoded more than %d frames, the limit for one video",
                                v->limits.max_video_frames);
            }
            if ((v->frame->flags & AV_FRAME_FLAG_CORRUPT) || v->frame->decode_error_flags) {
                v->corrupt++;
                av_frame_unref(v->frame);
                continue;
            }
            /* A frame without a timestamp (rare) is taken to follow the previous one. */
            int64_t ts = v->frame->best_effort_timestamp;
            if (ts == AV_NOPTS_VALUE) ts = v->frame->pts;
            v->t = ts != AV_NOPTS_VALUE ? (ts - v->start_pts) * av_q2d(v->st->time_base)
                                        : v->t + (v->info.fps > 0 ? 1 / v->info.fps : 0);
            *got = 1;
            return DFD_OK;
        }
        if (r == AVERROR_EOF) return DFD_OK;
        if (r != AVERROR(EAGAIN)) {
            v->corrupt++;
            continue;
        }
        if (v->draining) return DFD_OK;
        r = av_read_frame(v->fmt, v->pkt);
        if (r < 0) {
            if (r != AVERROR_EOF) dfd_log(DFD_LOG_DEBUG, "video input ends with an error (%d)", r);
            avcodec_send_packet(v->dec, NULL);
            v->draining = 1;
            continue;
        }
        if (v->pkt->stream_index == v->st->index) {
            /* A packet shown before the next wanted frame is decoded only if other frames
             * refer to it. DFDC-like clips have a keyframe every ~10 s, so reaching 30
             * sampled frames means decoding the whole clip; this skips its non-reference
             * B-frames. (Frame threads copy skip_frame when each packet is submitted.) */
            int64_t pts = v->pkt->pts;
            int early = pts != AV_NOPTS_VALUE && (pts - v->start_pts) * av_q2d(v->st->time_base) < v->skip_before;
            v->dec->skip_frame = early ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
            r = avcodec_send_packet(v->dec, v->pkt);
            if (r < 0 && r != AVERROR(EAGAIN)) v->corrupt++;
        }
        av_packet_unref(v->pkt);
    }
}

static int seek_to(dfd_video *v, int64_t ts, dfd_error *err) {
    int r = av_seek_frame(v->fmt, v->st->index, ts, AVSEEK_FLAG_BACKWARD);
    if (r < 0) return fail_av(err, DFD_E_CORRUPT, r, "cannot seek in the video");
    avcodec_flush_buffers(v->dec);
    v->draining = 0;
    v->t = (ts - v->start_pts) * av_q2d(v->st->time_base);
    return DFD_OK;
}

/* A decoded frame to RGB, rotated for display (orientation as EXIF), with the scaler
 * cached in *sws. */
static int convert_frame(struct SwsContext **sws, const AVFrame *f, int orientation, const dfd_limits *limits,
                         dfd_image *out, dfd_error *err) {
    /* An upright frame of the same size is converted into out's pixels: sampling 30
     * frames of 1080p then touches 6 MB of fresh memory once, not 30 times. (The exact C
     * path of swscale, SWS_ACCURATE_RND, writes exactly w x 3 bytes a row; its SIMD paths
     * write past the row end and would need padded rows.) */
    int reuse = out->rgb && orientation == 1 && out->w == f->width && out->h == f->height;
    if (!reuse) {
        dfd_image_free(out);
        memset(out, 0, sizeof *out);
    }
    int rc = dfd_media_check_pixels("video frame", f->width, f->height, limits, err);
    if (rc) return rc;
    /* Full chroma interpolation and accurate rounding: frames feed a classifier that
     * looks for blending artefacts, so the conversion should not add its own. */
    *sws = sws_getCachedContext(*sws, f->width, f->height, f->format, f->width, f->height, AV_PIX_FMT_RGB24,
                                  SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!*sws) return dfd_fail(err, DFD_E_UNSUPPORTED, "cannot convert pixel format '%s'",
                                 av_get_pix_fmt_name(f->format) ? av_get_pix_fmt_name(f->format) : "?");
    /* The stream's own matrix and range; an unspecified matrix means BT.601, as in the
     * ffmpeg tool and the Python pipelines that trained on such frames. */
    int *inv, *tab, src_range, dst_range, bri, con, sat;
    if (sws_getColorspaceDetails(*sws, &inv, &src_range, &tab, &dst_range, &bri, &con, &sat) >= 0) {
        enum AVPixelFormat pf = f->format;
        int full = f->color_range == AVCOL_RANGE_JPEG || pf == AV_PIX_FMT_YUVJ420P || pf == AV_PIX_FMT_YUVJ422P ||
                   pf == AV_PIX_FMT_YUVJ444P || pf == AV_PIX_FMT_YUVJ440P || pf == AV_PIX_FMT_YUVJ411P;
        int cs = f->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : (int)f->colorspace;
        sws_setColorspaceDetails(*sws, sws_getCoefficients(cs), full, tab, 1, bri, con, sat);
    }
    dfd_image rgb;
    if (reuse)
        rgb = *out;
    else if ((rc = dfd_image_alloc(&rgb, f->width, f->height, err)))
        return rc;
    uint8_t *dst[4] = {rgb.rgb, NULL, NULL, NULL};
    int ls[4] = {3 * rgb.w, 0, 0, 0};
    if (sws_scale(*sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, ls) != f->height) {
        dfd_image_free(&rgb);
        if (reuse) memset(out, 0, sizeof *out);
        return dfd_fail(err, DFD_E_INTERNAL, "pixel conversion failed");
    }
    if (orientation == 1) {
        *out = rgb;
        return DFD_OK;
    }
    rc = dfd_image_orient(&rgb, orientation, out, err);
    dfd_image_free(&rgb);
    return rc;
}

/* v->frame to RGB, rotated for display. */
static int frame_to_image(dfd_video *v, dfd_image *out, dfd_error *err) {
    return convert_frame(&v->sws, v->frame, v->orientation, &v->limits, out, err);
}

void dfd_frame_set_free(dfd_frame_set *s) {
    if (!s) return;
    for (int i = 0; i < s->count; i++) dfd_image_free(&s->frames[i].img);
    free(s->frames);
    memset(s, 0, sizeof *s);
}

static int64_t frame_index(const dfd_video *v, double t, int64_t counter) {
    return v->info.fps > 0 && t >= 0 ? (int64_t)llround(t * v->info.fps) : counter;
}

struct dfd_raw_frame {
    AVFrame *av; /* a reference to the decoder's frame */
    int orientation;
    dfd_limits limits;
    int64_t index;
    double time_s;
};

struct dfd_frame_converter {
    struct SwsContext *sws;
};

dfd_frame_converter *dfd_frame_converter_new(void) { return calloc(1, sizeof(dfd_frame_converter)); }

void dfd_frame_converter_free(dfd_frame_converter *c) {
    if (!c) return;
    sws_freeContext(c->sws);
    free(c);
}

void dfd_raw_frame_free(dfd_raw_frame *f) {
    if (!f) return;
    av_frame_free(&f->av);
    free(f);
}

int dfd_raw_frame_convert(dfd_frame_converter *c, const dfd_raw_frame *f, dfd_frame *out, dfd_error *err) {
    if (!c || !f || !out) return dfd_fail(err, DFD_E_ARG, "invalid arguments to dfd_raw_frame_convert");
    out->index = f->index;
    out->time_s = f->time_s;
    return convert_frame(&c->sws, f->av, f->orientation, &f->limits, &out->img, err);
}

/* The sampling loop; hands each sampled frame to fn (converted) or, with raw_fn, to raw_fn
 * (a reference to the decoded frame, converted by the receiver). */
static int sample_core(dfd_video *v, int n, dfd_frame_fn fn, dfd_raw_frame_fn raw_fn, void *user, dfd_frame_set *stats,
                       dfd_error *err) {
    memset(stats, 0, sizeof *stats);
    if (!v || n < 1 || (!fn && !raw_fn)) return dfd_fail(err, DFD_E_ARG, "the number of frames to sample must be at least 1");
    if (v->limits.max_video_frames > 0 && n > v->limits.max_video_frames)
        return dfd_fail(err, DFD_E_LIMIT, "%d frames asked, over the %d-frame limit", n, v->limits.max_video_frames);
    int64_t decoded0 = v->decoded;
    v->corrupt = 0;
    const double tb = av_q2d(v->st->time_base), half = v->info.fps > 0 ? 0.5 / v->info.fps : 0;
    int rc = DFD_OK, got;
    /* cur: the last decoded frame, converted. When the handle was used before, the
     * first target always seeks. */
    dfd_frame cur = {0};
    AVFrame *cur_av = raw_fn ? av_frame_alloc() : NULL;
    if (raw_fn && !cur_av) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    int have = 0;
    int must_seek = v->touched;
    for (int i = 0; i < n && !rc; i++) {
        double target = v->span_s * i / n;
        if (!have || cur.time_s < target - half) {
            int64_t ts = v->start_pts + (int64_t)llround(target / tb);
            /* Seek when the keyframe before the target lies past what was decoded;
             * otherwise decoding on from here is shorter than going back to it. Without
             * an index, seek when the target is more than two seconds ahead. */
            int seek = must_seek;
            int k = av_index_search_timestamp(v->st, ts, AVSEEK_FLAG_BACKWARD);
            const AVIndexEntry *e = k >= 0 ? avformat_index_get_entry(v->st, k) : NULL;
            double last = have ? cur.time_s : 0;
            if (e)
                seek = seek || (e->timestamp - v->start_pts) * tb > last + 1e-9;
            else
                seek = seek || target - last > 2.0;
            if (seek && (rc = seek_to(v, ts, err))) break;
            must_seek = 0;
            v->skip_before = target - half - 1e-6;
            for (;;) {
                if ((rc = next_frame(v, &got, err)) || !got) break;
                if (v->t >= target - half) {
                    if (raw_fn) {
                        av_frame_unref(cur_av);
                        av_frame_move_ref(cur_av, v->frame);
                    } else {
                        rc = frame_to_image(v, &cur.img, err);
                        av_frame_unref(v->frame);
                    }
                    cur.time_s = v->t;
                    have = 1;
                    break;
                }
                av_frame_unref(v->frame);
            }
            if (rc) break;
            if (!got) {
                stats->truncated = 1;
                dfd_log(DFD_LOG_DEBUG, "video ended before %.3f s: %d of %d frames sampled", target, i, n);
                break;
            }
        }
        cur.index = frame_index(v, cur.time_s, i);
        stats->count++;
        int stop;
        if (raw_fn) {
            dfd_raw_frame *rf = calloc(1, sizeof *rf);
            if (!rf || !(rf->av = av_frame_clone(cur_av))) {
                free(rf);
                rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
                break;
            }
            rf->orientation = v->orientation, rf->limits = v->limits, rf->index = cur.index, rf->time_s = cur.time_s;
            stop = raw_fn(user, rf);
        } else
            stop = fn(user, &cur);
        if (stop) rc = dfd_fail(err, DFD_E_CANCELLED, "cancelled");
    }
    v->skip_before = -INFINITY;
    av_frame_free(&cur_av);
    dfd_image_free(&cur.img);
    stats->corrupt = v->corrupt;
    stats->decoded = (int)(v->decoded - decoded0);
    if (!rc && stats->count == 0)
        rc = dfd_fail(err, DFD_E_CORRUPT, "no frame of the video could be decoded (%d corrupt)", v->corrupt);
    return rc;
}

int dfd_video_sample_raw(dfd_video *v, int n, dfd_raw_frame_fn fn, void *user, dfd_frame_set *stats, dfd_error *err) {
    if (!fn) return dfd_fail(err, DFD_E_ARG, "invalid arguments to dfd_video_sample_raw");
    return sample_core(v, n, NULL, fn, user, stats, err);
}

typedef struct collect {
    dfd_frame_set *out;
    int n;
    dfd_progress_fn progress;
    void *user;
    dfd_error *err;
    int failed; /* a copy failed: its message is in err */
} collect;

static int collect_frame(void *user, const dfd_frame *f) {
    collect *c = user;
    dfd_frame *fr = &c->out->frames[c->out->count];
    if (dfd_image_copy(&f->img, &fr->img, c->err)) return c->failed = 1;
    fr->time_s = f->time_s;
    fr->index = f->index;
    c->out->count++;
    return c->progress && c->progress(c->user, (double)c->out->count / c->n);
}

int dfd_video_sample_frames(dfd_video *v, int n, dfd_progress_fn progress, void *user, dfd_frame_set *out,
                            dfd_error *err) {
    memset(out, 0, sizeof *out);
    if (!v || n < 1) return dfd_fail(err, DFD_E_ARG, "the number of frames to sample must be at least 1");
    if (v->limits.max_video_frames > 0 && n > v->limits.max_video_frames)
        return dfd_fail(err, DFD_E_LIMIT, "%d frames asked, over the %d-frame limit", n, v->limits.max_video_frames);
    if (!(out->frames = calloc((size_t)n, sizeof *out->frames))) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    collect c = {out, n, progress, user, err, 0};
    dfd_frame_set stats;
    dfd_error e2;
    int rc = sample_core(v, n, collect_frame, NULL, &c, &stats, &e2);
    if (rc && c.failed) rc = DFD_E_NOMEM; /* err holds the copy's message */
    else if (rc && err) *err = e2;
    out->corrupt = stats.corrupt;
    out->decoded = stats.decoded;
    out->truncated = stats.truncated;
    if (rc) {
        int corrupt = out->corrupt;
        dfd_frame_set_free(out);
        out->corrupt = corrupt;
    }
    return rc;
}

int dfd_video_read(dfd_video *v, int stride, dfd_frame_fn fn, void *user, int *corrupt, dfd_error *err) {
    if (corrupt) *corrupt = 0;
    if (!v || !fn || stride < 1) return dfd_fail(err, DFD_E_ARG, "invalid arguments to dfd_video_read");
    int rc = DFD_OK, got;
    if (v->touched && (rc = seek_to(v, v->start_pts, err))) return rc;
    v->corrupt = 0;
    for (int64_t k = 0;; k++) {
        if ((rc = next_frame(v, &got, err)) || !got) break;
        if (k % stride == 0) {
            dfd_frame fr = {.index = frame_index(v, v->t, k), .time_s = v->t};
            rc = frame_to_image(v, &fr.img, err);
            av_frame_unref(v->frame);
            if (rc) break;
            int stop = fn(user, &fr);
            dfd_image_free(&fr.img);
            if (stop) break;
        } else {
            av_frame_unref(v->frame);
        }
    }
    if (corrupt) *corrupt = v->corrupt;
    return rc;
}

int dfd_video_probe(const char *path, const dfd_limits *limits, dfd_video_info *info, dfd_error *err) {
    memset(info, 0, sizeof *info);
    dfd_video *v;
    int rc = dfd_video_open(path, limits, 1, &v, err);
    if (rc) return rc;
    *info = v->info;
    dfd_video_close(v);
    return DFD_OK;
}

int dfd_video_sample(const char *path, int n, const dfd_limits *limits, int threads, dfd_frame_set *out,
                     dfd_error *err) {
    memset(out, 0, sizeof *out);
    dfd_video *v;
    int rc = dfd_video_open(path, limits, threads, &v, err);
    if (rc) return rc;
    rc = dfd_video_sample_frames(v, n, NULL, NULL, out, err);
    dfd_video_close(v);
    return rc;
}
