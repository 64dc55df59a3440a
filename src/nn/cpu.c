/*
 * cpu.c — what the CPU can do, read with cpuid: whether bf16 runs natively (so that
 * nn_exec's AUTO precision picks bf16 for inference) and a short ISA name in oneDNN's
 * vocabulary for logs and `dfd version`. A feature counts only when the OS also saves
 * its registers (XCR0), as a CPU flag alone does not make the instructions usable.
 */
#include <stdint.h>

#include "nn/nn.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

typedef struct cpu_feat {
    int avx2, avx512_core, avx512_vnni, avx512_bf16, amx_bf16;
} cpu_feat;

static uint64_t xgetbv0(void) {
    uint32_t a, d;
    __asm__ volatile("xgetbv" : "=a"(a), "=d"(d) : "c"(0));
    return ((uint64_t)d << 32) | a;
}

static cpu_feat detect(void) {
    cpu_feat f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return f;
    uint64_t xcr0 = xgetbv0();
    int os_avx = (xcr0 & 0x6) == 0x6;                 /* SSE and AVX state */
    int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    int os_amx = (xcr0 & 0x60000) == 0x60000;         /* XTILECFG, XTILEDATA */
    if (__get_cpuid_max(0, NULL) < 7) return f;
    unsigned a7, b7, c7, d7;
    __cpuid_count(7, 0, a7, b7, c7, d7);
    f.avx2 = os_avx && ((b7 >> 5) & 1);
    int avx512f = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
    f.avx512_core = os_avx512 && avx512f && dq && bw && vl;
    f.avx512_vnni = f.avx512_core && ((c7 >> 11) & 1);
    f.amx_bf16 = f.avx512_core && os_amx && ((d7 >> 22) & 1) && ((d7 >> 24) & 1); /* AMX-BF16 + AMX-TILE */
    if (a7 >= 1) {
        unsigned a71, b71, c71, d71;
        __cpuid_count(7, 1, a71, b71, c71, d71);
        f.avx512_bf16 = f.avx512_core && ((a71 >> 5) & 1);
    }
    return f;
}

int nn_cpu_has_bf16(void) {
    cpu_feat f = detect();
    return f.amx_bf16 || f.avx512_bf16;
}

const char *nn_cpu_isa(void) {
    cpu_feat f = detect();
    if (f.amx_bf16) return "avx512_core_amx";
    if (f.avx512_bf16) return "avx512_core_bf16";
    if (f.avx512_vnni) return "avx512_core_vnni";
    if (f.avx512_core) return "avx512_core";
    if (f.avx2) return "avx2";
    return "sse41";
}

#else

int nn_cpu_has_bf16(void) { return 0; }
const char *nn_cpu_isa(void) { return "generic"; }

#endif
