/* fuzz_image — libFuzzer harness for image decoding from memory (src/media: sniffing,
 * JPEG with EXIF orientation, PNG, WebP, BMP), which every upload reaches. The pixel
 * limit is lowered to 4 MP so that a valid large header costs the fuzzer little time;
 * the code paths are the same as with the default 64 MP. */
#include <stdint.h>

#include "media/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dfd_limits lim;
    dfd_limits_default(&lim);
    lim.max_image_pixels = 4000000;
    const char *format = NULL;
    (void)dfd_media_sniff(data, size, &format);
    dfd_image_info info;
    dfd_error e;
    dfd_image_probe(data, size, &info, &e);
    dfd_image im;
    if (dfd_image_decode(data, size, &lim, &im, &info, &e) == DFD_OK) {
        if (im.w < 1 || im.h < 1 || !im.rgb) __builtin_trap();
        /* Touch every pixel: ASan checks the buffer is as large as the size says. */
        uint8_t sum = 0;
        for (size_t i = 0; i < (size_t)im.w * (size_t)im.h * 3; i++) sum ^= im.rgb[i];
        __asm__ volatile("" : : "r"(sum));
        dfd_image_free(&im);
    }
    return 0;
}
