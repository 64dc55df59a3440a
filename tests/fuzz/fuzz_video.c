/* fuzz_video — libFuzzer harness for video probing and frame sampling from memory
 * (src/media/video.c): our AVIO callbacks (read/seek over a buffer), the content sniffing
 * that picks the demuxer, the stream checks (limits, rotation, duration, frame count) and
 * the seek-and-decode sampling with its RGB conversion, which every uploaded clip reaches.
 * FFmpeg itself is not instrumented (it is OSS-Fuzz's); our code around it is.
 *
 * Limits are lowered (frames of at most 0.3 MP, 2,000 decoded frames, 10 min) so that a
 * valid large header costs the fuzzer little; the code paths are those of the defaults. */
#include <stdint.h>
#include <stdlib.h>

#include "media/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dfd_limits lim;
    dfd_limits_default(&lim);
    lim.max_image_pixels = 320 * 960;
    lim.max_image_side = 960;
    lim.max_video_frames = 2000;
    lim.max_video_seconds = 600;
    dfd_video *v = NULL;
    dfd_error e;
    if (dfd_video_open_buffer(data, size, &lim, 1, &v, &e) != DFD_OK) {
        if (v) abort(); /* a failed open hands nothing back */
        return 0;
    }
    const dfd_video_info *in = dfd_video_get_info(v);
    if (in->width < 0 || in->height < 0) abort();
    dfd_frame_set fs = {0};
    if (dfd_video_sample_frames(v, 3, NULL, NULL, &fs, &e) == DFD_OK) {
        for (int i = 0; i < fs.count; i++) {
            const dfd_image *im = &fs.frames[i].img;
            if (im->w < 1 || im->h < 1 || !im->rgb) abort();
            /* Touch every pixel: ASan checks the buffer is as large as the size says. */
            uint8_t sum = 0;
            for (size_t k = 0; k < (size_t)im->w * (size_t)im->h * 3; k++) sum ^= im->rgb[k];
            __asm__ volatile("" : : "r"(sum));
        }
    }
    dfd_frame_set_free(&fs);
    dfd_video_close(v);
    return 0;
}
