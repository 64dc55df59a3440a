/* cmd_version.c — `dfd version`: the versions of dfd and of the libraries it runs on. */
#include <stdio.h>

#include <jansson.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <microhttpd.h>
#include <oneapi/dnnl/dnnl.h>
#include <png.h>
#include <webp/decode.h>

#include "cli/cli.h"

const char cmd_version_help[] =
    "Usage: dfd version\n\n"
    "Prints the version of dfd and of the libraries it was built with.\n";

int cmd_version(int argc, char **argv) {
    (void)argv;
    if (argc > 1) return cli_usage_error("version", "takes no arguments");
    const dnnl_version_t *dv = dnnl_version();
    int wv = WebPGetDecoderVersion();
    printf("dfd %s\n", dfd_version());
    printf("oneDNN %d.%d.%d (%s)\n", dv->major, dv->minor, dv->patch, dv->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "threads");
    printf("libavformat %s, libavcodec %s\n", AV_STRINGIFY(LIBAVFORMAT_VERSION), AV_STRINGIFY(LIBAVCODEC_VERSION));
    printf("libpng %s, libwebp %d.%d.%d, jansson %s, libmicrohttpd %s\n", png_get_libpng_ver(NULL), (wv >> 16) & 0xff,
           (wv >> 8) & 0xff, wv & 0xff, JANSSON_VERSION, MHD_get_version());
    return DFD_EXIT_OK;
}
