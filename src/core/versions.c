/* versions.c — dfd_library_versions: the libraries libdfd was built with and runs on. */
#include <pthread.h>
#include <stdio.h>

#include <jansson.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <microhttpd.h>
#include <oneapi/dnnl/dnnl.h>
#include <png.h>
#include <webp/decode.h>

#include "core/core.h"

static char text[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void make_text(void) {
    const dnnl_version_t *dv = dnnl_version();
    int wv = WebPGetDecoderVersion();
    snprintf(text, sizeof text,
             "oneDNN %d.%d.%d (%s)\n"
             "libavformat %s, libavcodec %s\n"
             "libpng %s, libwebp %d.%d.%d, jansson %s, libmicrohttpd %s\n",
             dv->major, dv->minor, dv->patch, dv->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "threads",
             AV_STRINGIFY(LIBAVFORMAT_VERSION), AV_STRINGIFY(LIBAVCODEC_VERSION), png_get_libpng_ver(NULL),
             (wv >> 16) & 0xff, (wv >> 8) & 0xff, wv & 0xff, JANSSON_VERSION, MHD_get_version());
}

const char *dfd_library_versions(void) {
    pthread_once(&once, make_text);
    return text;
}
