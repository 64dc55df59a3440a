/* test_io_safetensors — the safetensors reader and writer: round trips (fp32 bit-exact,
 * bf16 = round-to-nearest-even, checked against hand-derived values), files from
 * independent writers (literal bytes here, and Python's struct + json when python3 is
 * present) read correctly, files we write read correctly in Python, and every kind of
 * malformed file is refused with its own message before anything in it is trusted. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

/* A file made of a JSON header (padded with spaces to pad bytes, if larger) and data. */
static uint8_t *make_file(const char *json, const void *data, size_t data_len, size_t *len) {
    size_t hl = strlen(json);
    *len = 8 + hl + data_len;
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    if (data_len) memcpy(b + 8 + hl, data, data_len);
    return b;
}

/* Opens json+data from memory expecting failure code `code` with `needle` in the message. */
static void expect_reject(const char *json, size_t data_len, int code, const char *needle) {
    uint8_t *zeros = calloc(data_len ? data_len : 1, 1);
    size_t len;
    uint8_t *b = make_file(json, zeros, data_len, &len);
    dfd_st_file *f = (dfd_st_file *)1;
    dfd_error e;
    int rc = dfd_st_open_memory(b, len, "bad.safetensors", &f, &e);
    if (rc != code || !strstr(e.message, needle))
        print_message("header %s\n  -> rc %d, message '%s' (wanted %d, '%s')\n", json, rc, rc ? e.message : "",
                      code, needle);
    assert_int_equal(rc, code);
    assert_non_null(strstr(e.message, needle));
    assert_non_null(strstr(e.message, "bad.safetensors"));
    assert_null(f);
    free(b);
    free(zeros);
}

static void malformed_files_are_rejected_each_with_its_message(void **state) {
    (void)state;
    const char *T = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    /* Sanity: the well-formed version opens. */
    {
        size_t len;
        float v[2] = {1, 2};
        uint8_t *b = make_file(T, v, 8, &len);
        dfd_st_file *f;
        assert_int_equal(dfd_st_open_memory(b, len, "ok", &f, NULL), DFD_OK);
        dfd_st_close(f);
        free(b);
    }
    /* Truncations. */
    {
        dfd_st_file *f;
        dfd_error e;
        assert_int_equal(dfd_st_open_memory("\x10\0\0\0", 4, "bad.safetensors", &f, &e), DFD_E_MODEL);
        assert_non_null(strstr(e.message, "truncated"));
        assert_int_equal(dfd_st_open_memory(NULL, 0, "bad.safetensors", &f, &e), DFD_E_MODEL);
        uint8_t b[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'}; /* header says 200 bytes, file has 8 */
        assert_int_equal(dfd_st_open_memory(b, sizeof b, "bad.safetensors", &f, &e), DFD_E_MODEL);
        assert_non_null(strstr(e.message, "runs past the end of the file"));
        uint8_t big[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'}; /* 2^40: over the cap, not allocated */
        assert_int_equal(dfd_st_open_memory(big, sizeof big, "bad.safetensors", &f, &e), DFD_E_MODEL);
        assert_non_null(strstr(e.message, "limit"));
        /* A valid file cut short inside its data. */
        size_t len;
        float v[2] = {1, 2};
        uint8_t *full = make_file(T, v, 8, &len);
        assert_int_equal(dfd_st_open_memory(full, len - 3, "bad.safetensors", &f, &e), DFD_E_MODEL);
        assert_non_null(strstr(e.message, "run past the end of the data"));
        free(full);
    }
    expect_reject("not json at all", 0, DFD_E_MODEL, "not a JSON object");
    expect_reject("{\"a\": [1, 2,}", 0, DFD_E_MODEL, "not valid JSON");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, DFD_E_MODEL,
                  "not valid JSON");
    expect_reject("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DFD_E_MODEL,
                  "unknown dtype 'F33'");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, DFD_E_MODEL,
                  "shape [3] of F32 is 12 bytes but data_offsets span 8");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                  16, DFD_E_MODEL, "duplicate");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  12, DFD_E_MODEL, "overlap");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                  20, DFD_E_MODEL, "not contiguous");
    expect_reject(T, 12, DFD_E_MODEL, "4 bytes of data after the last tensor");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, DFD_E_MODEL,
                  "run past the end of the data");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, DFD_E_MODEL,
                  "not an increasing pair");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, DFD_E_MODEL,
                  "non-negative");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],"
                  "\"data_offsets\":[0,8]}}",
                  8, DFD_E_MODEL, "overflow");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, DFD_E_MODEL, "data_offsets");
    expect_reject("{\"a\":[1,2]}", 0, DFD_E_MODEL, "not a JSON object");
    expect_reject("{\"__metadata__\":{\"k\":3}}", 0, DFD_E_MODEL, "'k' is not a string");
    expect_reject("{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DFD_E_MODEL, "empty name");
}

static void file_errors_are_io_errors(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *missing = tu_join(dir, "missing.safetensors");
    dfd_st_file *f;
    dfd_error e;
    assert_int_equal(dfd_st_open(missing, &f, &e), DFD_E_IO);
    assert_non_null(strstr(e.message, "missing.safetensors"));
    assert_int_equal(dfd_st_open(dir, &f, &e), DFD_E_IO);
    /* An empty file is a truncated model, not an I/O error. */
    char *empty = tu_join(dir, "empty.safetensors");
    tu_write_file(empty, "", 0);
    assert_int_equal(dfd_st_open(empty, &f, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "truncated"));
    tu_rmtree(dir);
    free(empty);
    free(missing);
    free(dir);
}

/* Literal bytes, as another program would write them: a BF16, an F16 and an F32 tensor in
 * an order other than by name, metadata, and a header padded with spaces. */
static void hand_built_file_reads_correctly(void **state) {
    (void)state;
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"z_f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b_bf16\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[8,14]},"
                       "\"a_f16\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[14,26]},"
                       "\"i32\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[26,30]}}   ";
    const uint8_t data[30] = {
        0x00, 0x00, 0xc0, 0x3f, /* 1.5f */
        0x00, 0x00, 0x20, 0xc1, /* -10.0f */
        0x80, 0x3f,             /* bf16 1.0 */
        0x49, 0x40,             /* bf16 3.140625 */
        0x80, 0xff,             /* bf16 -inf */
        0x00, 0x3c,             /* f16 1.0 */
        0x00, 0xc0,             /* f16 -2.0 */
        0xff, 0x7b,             /* f16 65504 (largest) */
        0x01, 0x00,             /* f16 2^-24 (smallest subnormal) */
        0x55, 0x35,             /* f16 0x3555 = 0.333251953125 */
        0x00, 0x7c,             /* f16 +inf */
        7,    0,    0,    0,    /* i32 7 */
    };
    size_t len;
    uint8_t *b = make_file(json, data, sizeof data, &len);
    dfd_st_file *f;
    dfd_error e;
    int rc = dfd_st_open_memory(b, len, "hand", &f, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    free(b);
    assert_int_equal(dfd_st_count(f), 4);
    assert_string_equal(dfd_st_tensor_at(f, 0)->name, "a_f16"); /* listed by name */
    assert_string_equal(dfd_st_tensor_at(f, 3)->name, "z_f32");
    assert_string_equal(dfd_st_meta_get(f, "format"), "pt");
    assert_null(dfd_st_meta_get(f, "nope"));
    assert_null(dfd_st_find(f, "nope"));

    float v[6];
    const dfd_st_tensor *t = dfd_st_find(f, "z_f32");
    assert_int_equal(dfd_st_read_f32(f, t, v, 2, NULL), DFD_OK);
    assert_true(v[0] == 1.5f && v[1] == -10.0f);
    t = dfd_st_find(f, "b_bf16");
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(dfd_st_read_f32(f, t, v, 3, NULL), DFD_OK);
    assert_true(v[0] == 1.0f && v[1] == 3.140625f && isinf(v[2]) && v[2] < 0);
    t = dfd_st_find(f, "a_f16");
    assert_int_equal(dfd_st_read_f32(f, t, v, 6, NULL), DFD_OK);
    assert_true(v[0] == 1.0f && v[1] == -2.0f && v[2] == 65504.0f);
    assert_true(v[3] == ldexpf(1.0f, -24));
    assert_true(v[4] == 0.333251953125f);
    assert_true(isinf(v[5]) && v[5] > 0);
    assert_int_equal(dfd_st_read_f32(f, t, v, 5, &e), DFD_E_ARG); /* wrong destination size */
    t = dfd_st_find(f, "i32");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->count, 1);
    assert_int_equal(dfd_st_raw(f, t)[0], 7);
    assert_int_equal(dfd_st_read_f32(f, t, v, 1, &e), DFD_E_UNSUPPORTED);
    assert_non_null(strstr(e.message, "I32"));
    dfd_st_close(f);
}

static void bf16_rounds_to_nearest_even(void **state) {
    (void)state;
    assert_int_equal(dfd_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(dfd_f32_to_bf16(-2.0f), 0xc000);
    assert_int_equal(dfd_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80);     /* tie -> even (down) */
    assert_int_equal(dfd_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3f82); /* tie -> even (up) */
    assert_int_equal(dfd_f32_to_bf16(1.0f + ldexpf(1, -8) + ldexpf(1, -20)), 0x3f81); /* above the tie */
    assert_int_equal(dfd_f32_to_bf16(3.4028235e38f), 0x7f80);           /* FLT_MAX rounds to inf */
    assert_int_equal(dfd_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(dfd_f32_to_bf16(INFINITY), 0x7f80);
    assert_true(isnan(dfd_bf16_to_f32(dfd_f32_to_bf16(NAN))));
    assert_true(dfd_bf16_to_f32(0x3f81) == 1.0078125f);
}

static float test_value(size_t i) {
    /* A spread of magnitudes, signs and bit patterns. */
    double x = sin((double)i * 12.9898) * 43758.5453;
    return (float)((x - floor(x) - 0.5) * pow(10.0, (double)(i % 9) - 4.0));
}

static void round_trip_fp32_and_bf16(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    enum { N1 = 3 * 3 * 4 * 5, N2 = 7 };
    float *a = malloc(N1 * sizeof *a), b[N2], s = 42.5f;
    assert_non_null(a);
    for (size_t i = 0; i < N1; i++) a[i] = test_value(i);
    for (size_t i = 0; i < N2; i++) b[i] = test_value(1000 + i);
    b[3] = NAN;
    for (int bf = 0; bf < 2; bf++) {
        dfd_st_dtype as = bf ? DFD_ST_BF16 : DFD_ST_F32;
        dfd_st_writer *w = dfd_st_writer_new();
        dfd_error e;
        assert_int_equal(dfd_st_writer_add_f32(w, "layer_b/kernel", 4, (int64_t[]){3, 3, 4, 5}, a, as, &e), 0);
        assert_int_equal(dfd_st_writer_add_f32(w, "layer_a/bias", 1, (int64_t[]){N2}, b, as, &e), 0);
        assert_int_equal(dfd_st_writer_add_f32(w, "scalar", 0, NULL, &s, as, &e), 0);
        assert_int_equal(dfd_st_writer_add_f32(w, "empty", 2, (int64_t[]){0, 4}, NULL, as, &e), 0);
        assert_int_equal(dfd_st_writer_add_f32(w, "scalar", 0, NULL, &s, as, &e), DFD_E_ARG); /* duplicate */
        assert_int_equal(dfd_st_writer_add_f32(w, "x", 0, NULL, &s, DFD_ST_F16, &e), DFD_E_UNSUPPORTED);
        assert_int_equal(dfd_st_writer_set_meta(w, "note", "first", &e), 0);
        assert_int_equal(dfd_st_writer_set_meta(w, "note", "replaced \"quoted\" é", &e), 0);
        assert_int_equal(dfd_st_writer_set_meta(w, "other", "", &e), 0);
        char *path = tu_join(dir, bf ? "bf16.safetensors" : "f32.safetensors");
        assert_int_equal(dfd_st_writer_save(w, path, &e), DFD_OK);
        uint8_t *mem;
        size_t mlen, flen;
        assert_int_equal(dfd_st_writer_to_memory(w, &mem, &mlen, &e), DFD_OK);
        dfd_st_writer_free(w);
        uint8_t *disk = tu_read_file(path, &flen);
        assert_int_equal(mlen, flen); /* both paths write the same bytes */
        assert_memory_equal(mem, disk, flen);
        assert_int_equal((8 + dfd_rd64le(disk)) % 8, 0); /* data starts 8-aligned */
        free(disk);
        free(mem);

        dfd_st_file *f;
        int rc = dfd_st_open(path, &f, &e);
        if (rc) print_message("%s\n", e.message);
        assert_int_equal(rc, DFD_OK);
        assert_int_equal(dfd_st_count(f), 4);
        assert_string_equal(dfd_st_tensor_at(f, 0)->name, "empty");
        assert_string_equal(dfd_st_meta_get(f, "note"), "replaced \"quoted\" é");
        assert_string_equal(dfd_st_meta_get(f, "other"), "");
        assert_int_equal(dfd_st_meta_count(f), 2);
        const dfd_st_tensor *t = dfd_st_find(f, "layer_b/kernel");
        assert_int_equal(t->dtype, as);
        assert_int_equal(t->ndim, 4);
        assert_int_equal(t->shape[3], 5);
        float *ra = malloc(N1 * sizeof *ra), rb[N2], rs;
        assert_non_null(ra);
        assert_int_equal(dfd_st_read_f32(f, t, ra, N1, &e), DFD_OK);
        assert_int_equal(dfd_st_read_f32(f, dfd_st_find(f, "layer_a/bias"), rb, N2, &e), DFD_OK);
        assert_int_equal(dfd_st_read_f32(f, dfd_st_find(f, "scalar"), &rs, 1, &e), DFD_OK);
        assert_int_equal(dfd_st_find(f, "empty")->count, 0);
        assert_true(rs == 42.5f);
        if (!bf) {
            assert_memory_equal(ra, a, N1 * sizeof *a); /* bit-exact, NaN included */
            assert_memory_equal(rb, b, sizeof b);
        } else {
            for (size_t i = 0; i < N1; i++) {
                /* within half a bf16 ulp (2^-8 relative), and a bf16 value */
                assert_true(fabsf(ra[i] - a[i]) <= fabsf(a[i]) * ldexpf(1, -8));
                uint32_t u;
                memcpy(&u, &ra[i], 4);
                assert_int_equal(u & 0xffff, 0);
            }
            assert_true(isnan(rb[3]));
        }
        free(ra);
        dfd_st_close(f);
        free(path);
    }
    free(a);
    tu_rmtree(dir);
    free(dir);
}

/* Python's struct + json (an independent implementation of the format) writes a file we
 * must read, and reads back a file we wrote. */
static void python_reads_ours_and_we_read_pythons(void **state) {
    (void)state;
    if (!tu_have_program("python3")) {
        print_message("skipped: python3 is not installed\n");
        skip();
    }
    char *dir = tu_mkdtemp();
    char *theirs = tu_join(dir, "py.safetensors"), *ours = tu_join(dir, "ours.safetensors");
    char *script = tu_join(dir, "st.py");
    static const char py[] =
        "import json, struct, sys\n"
        "def write(path):\n"
        "    vals = [0.5, -1.25, 3.0e-5, 1.0e30, -0.0, 7.0]\n"
        "    f32 = struct.pack('<6f', *vals)\n"
        "    f16 = struct.pack('<3e', 1.5, -0.099975586, 2048.0)\n"
        "    hdr = {'w/kernel': {'dtype': 'F32', 'shape': [2, 3], 'data_offsets': [6, 30]},\n"
        "           'h': {'dtype': 'F16', 'shape': [3], 'data_offsets': [0, 6]},\n"
        "           '__metadata__': {'who': 'python'}}\n"
        "    h = json.dumps(hdr).encode()\n"
        "    h += b' ' * (-len(h) % 8)\n"
        "    open(path, 'wb').write(struct.pack('<Q', len(h)) + h + f16 + f32)\n"
        "def read(path):\n"
        "    b = open(path, 'rb').read()\n"
        "    n, = struct.unpack('<Q', b[:8])\n"
        "    hdr = json.loads(b[8:8 + n])\n"
        "    data = b[8 + n:]\n"
        "    out = [hdr.get('__metadata__', {}).get('k', '')]\n"
        "    for name in sorted(k for k in hdr if k != '__metadata__'):\n"
        "        t = hdr[name]; s, e = t['data_offsets']; raw = data[s:e]\n"
        "        if t['dtype'] == 'F32': v = struct.unpack('<%df' % (len(raw) // 4), raw)\n"
        "        else: v = [struct.unpack('<f', b'\\0\\0' + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]\n"
        "        out.append('%s %s %s %s' % (name, t['dtype'], 'x'.join(map(str, t['shape'])),\n"
        "                                    ' '.join(float(x).hex() for x in v)))\n"
        "    print('\\n'.join(out))\n"
        "write(sys.argv[2]) if sys.argv[1] == 'w' else read(sys.argv[2])\n";
    tu_write_file(script, py, sizeof py - 1);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 '%s' w '%s'", script, theirs);
    assert_int_equal(tu_run(cmd, NULL), 0);

    dfd_st_file *f;
    dfd_error e;
    int rc = dfd_st_open(theirs, &f, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    assert_string_equal(dfd_st_meta_get(f, "who"), "python");
    float v[6];
    assert_int_equal(dfd_st_read_f32(f, dfd_st_find(f, "w/kernel"), v, 6, &e), DFD_OK);
    const float want[6] = {0.5f, -1.25f, 3.0e-5f, 1.0e30f, -0.0f, 7.0f};
    assert_memory_equal(v, want, sizeof want);
    assert_int_equal(dfd_st_read_f32(f, dfd_st_find(f, "h"), v, 3, &e), DFD_OK);
    assert_true(v[0] == 1.5f && v[1] == -0.0999755859375f && v[2] == 2048.0f);
    dfd_st_close(f);

    dfd_st_writer *w = dfd_st_writer_new();
    const float k[4] = {0.1f, -2.5f, 1e-7f, 65536.0f};
    assert_int_equal(dfd_st_writer_add_f32(w, "k32", 2, (int64_t[]){2, 2}, k, DFD_ST_F32, &e), 0);
    assert_int_equal(dfd_st_writer_add_f32(w, "k16", 1, (int64_t[]){4}, k, DFD_ST_BF16, &e), 0);
    assert_int_equal(dfd_st_writer_set_meta(w, "k", "v", &e), 0);
    assert_int_equal(dfd_st_writer_save(w, ours, &e), DFD_OK);
    dfd_st_writer_free(w);
    snprintf(cmd, sizeof cmd, "python3 '%s' r '%s'", script, ours);
    char *out = NULL;
    assert_int_equal(tu_run(cmd, &out), 0);
    /* Expected lines, values as Python's float.hex(): fp32 exact, bf16 rounded by hand:
     * 0.1f = 0x3dcccccd -> 0x3dcd; 1e-7f = 0x33d6bf95 -> 0x33d7. */
    char want_txt[1024];
    snprintf(want_txt, sizeof want_txt, "v\nk16 BF16 4 %a %a %a %a\nk32 F32 2x2 %a %a %a %a\n",
             (double)dfd_bf16_to_f32(0x3dcd), -2.5, (double)dfd_bf16_to_f32(0x33d7), 65536.0, (double)0.1f, -2.5,
             (double)1e-7f, 65536.0);
    /* C's %a and Python's hex() spell numbers differently: compare by parsing. */
    char *p = out, *q = want_txt;
    for (int line = 0; line < 3; line++) {
        char *pe = strchr(p, '\n'), *qe = strchr(q, '\n');
        assert_non_null(pe);
        assert_non_null(qe);
        *pe = *qe = 0;
        if (line == 0) {
            assert_string_equal(p, q);
        } else {
            char pn[32], qn[32], pd[8], qd[8], ps[16], qs[16];
            int pc, qc;
            assert_int_equal(sscanf(p, "%31s %7s %15s%n", pn, pd, ps, &pc), 3);
            assert_int_equal(sscanf(q, "%31s %7s %15s%n", qn, qd, qs, &qc), 3);
            assert_string_equal(pn, qn);
            assert_string_equal(pd, qd);
            assert_string_equal(ps, qs);
            char *pp = p + pc, *qq = q + qc;
            for (int i = 0; i < 4; i++) {
                double a = strtod(pp, &pp), b = strtod(qq, &qq);
                if (a != b) print_message("%s[%d]: python read %a, expected %a\n", pn, i, a, b);
                assert_true(a == b);
            }
        }
        p = pe + 1;
        q = qe + 1;
    }
    free(out);
    tu_rmtree(dir);
    free(script);
    free(theirs);
    free(ours);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(malformed_files_are_rejected_each_with_its_message),
        cmocka_unit_test(file_errors_are_io_errors),
        cmocka_unit_test(hand_built_file_reads_correctly),
        cmocka_unit_test(bf16_rounds_to_nearest_even),
        cmocka_unit_test(round_trip_fp32_and_bf16),
        cmocka_unit_test(python_reads_ours_and_we_read_pythons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
