/* multipart.c — a streaming multipart/form-data parser (RFC 7578 / RFC 2046) for uploads.
 *
 * Bodies arrive in chunks of any size and may be hundreds of megabytes, so nothing is
 * buffered but the part headers: the parser looks for the delimiter "\r\n--boundary"
 * with a Knuth-Morris-Pratt automaton whose state survives across chunks, and passes the
 * bytes of the field "file" to a sink as soon as they are known not to start a
 * delimiter. Only the bytes of a partial match are held back, and those are always a
 * prefix of the delimiter itself, so they can be re-emitted from it when the match fails.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "server.h"

enum { MP_PREAMBLE, MP_AFTER_DELIM, MP_HEADERS, MP_BODY, MP_EPILOGUE, MP_FAILED };
enum { AFTER_START, AFTER_DASH, AFTER_CR };

static int bchar_ok(unsigned char c) {
    /* RFC 2046 bchars: digits, letters, '()+_,-./:=? and space (not last). */
    return isalnum(c) || strchr("'()+_,-./:=? ", c) != NULL;
}

int srv_is_multipart(const char *ct) {
    if (!ct) return 0;
    while (*ct == ' ' || *ct == '\t') ct++;
    static const char mf[] = "multipart/form-data";
    if (strncasecmp(ct, mf, sizeof mf - 1) != 0) return 0;
    char c = ct[sizeof mf - 1];
    return c == 0 || c == ';' || c == ' ' || c == '\t';
}

/* Finds parameter `name` in a header value's "; k=v; k2="v2"" list; copies its value
 * (unquoted, backslash escapes resolved) into out. Returns 1 if found, 0 if not, -1 if
 * it is malformed, -2 if it does not fit. */
static int header_param(const char *v, const char *name, char *out, size_t cap) {
    size_t nlen = strlen(name);
    const char *p = strchr(v, ';');
    while (p) {
        p++;
        while (*p == ' ' || *p == '\t') p++;
        const char *eq = strchr(p, '=');
        const char *semi = strchr(p, ';');
        if (!eq || (semi && semi < eq)) {
            p = semi;
            continue;
        }
        const char *kend = eq;
        while (kend > p && (kend[-1] == ' ' || kend[-1] == '\t')) kend--;
        const char *val = eq + 1;
        while (*val == ' ' || *val == '\t') val++;
        int match = (size_t)(kend - p) == nlen && strncasecmp(p, name, nlen) == 0;
        size_t o = 0;
        const char *q = val;
        if (*q == '"') {
            q++;
            while (*q && *q != '"') {
                if (*q == '\\' && q[1]) q++;
                if (match) {
                    if (o + 1 >= cap) return -2;
                    out[o++] = *q;
                }
                q++;
            }
            if (*q != '"') return match ? -1 : 0; /* unterminated quote */
            q++;
        } else {
            while (*q && *q != ';' && *q != ' ' && *q != '\t') {
                if (match) {
                    if (o + 1 >= cap) return -2;
                    out[o++] = *q;
                }
                q++;
            }
        }
        if (match) {
            out[o] = 0;
            return 1;
        }
        p = strchr(q, ';');
    }
    return 0;
}

int srv_multipart_init(srv_multipart *m, const char *content_type, dfd_error *err) {
    memset(m, 0, sizeof *m);
    if (!srv_is_multipart(content_type))
        return srv_fail(err, DFD_E_ARG, "expected Content-Type multipart/form-data, got '%.100s'",
                        content_type ? content_type : "(none)");
    /* Room for one character more than allowed, so that a long boundary is told apart
     * from a malformed parameter. */
    char b[SRV_MP_MAX_BOUNDARY + 2];
    int r = header_param(content_type, "boundary", b, sizeof b);
    if (r == -2)
        return srv_fail(err, DFD_E_ARG, "multipart boundary is longer than the %d characters RFC 2046 allows",
                        SRV_MP_MAX_BOUNDARY);
    if (r <= 0) return srv_fail(err, DFD_E_ARG, "multipart/form-data without a usable boundary parameter");
    size_t bl = strlen(b);
    if (bl > SRV_MP_MAX_BOUNDARY)
        return srv_fail(err, DFD_E_ARG, "multipart boundary is longer than the %d characters RFC 2046 allows",
                        SRV_MP_MAX_BOUNDARY);
    if (bl == 0) return srv_fail(err, DFD_E_ARG, "multipart boundary is empty");
    for (size_t i = 0; i < bl; i++)
        if (!bchar_ok((unsigned char)b[i]))
            return srv_fail(err, DFD_E_ARG, "multipart boundary has a character RFC 2046 does not allow");
    memcpy(m->delim, "\r\n--", 4);
    memcpy(m->delim + 4, b, bl);
    m->dlen = bl + 4;
    /* KMP failure function: fail[k] = longest proper border of delim[0..k), for k up to
     * dlen inclusive (fail has SRV_MP_MAX_BOUNDARY + 5 entries for dlen + 1 <= that). */
    _Static_assert(sizeof m->fail / sizeof m->fail[0] >= sizeof m->delim + 1, "fail[] needs dlen + 1 entries");
    if (m->dlen + 1 > sizeof m->fail / sizeof m->fail[0])
        return srv_fail(err, DFD_E_INTERNAL, "multipart delimiter of %zu bytes does not fit", m->dlen);
    m->fail[0] = 0;
    if (m->dlen > 1) m->fail[1] = 0;
    size_t k = 0;
    for (size_t i = 1; i < m->dlen; i++) {
        while (k > 0 && m->delim[i] != m->delim[k]) k = (size_t)m->fail[k];
        if (m->delim[i] == m->delim[k]) k++;
        m->fail[i + 1] = (int)k;
    }
    /* The body may open with "--boundary" (no CRLF before it): pretend a CRLF came first. */
    m->matched = 2;
    m->state = MP_PREAMBLE;
    return DFD_OK;
}

/* Scans for the delimiter; bytes known not to be part of it go to the sink when emit
 * is set. Returns 1 when the delimiter ended at *used bytes, 0 when all n were
 * consumed without completing it, -1 when the sink failed. */
static int scan(srv_multipart *m, const unsigned char *p, size_t n, size_t *used, int emit, srv_mp_sink sink,
                void *user) {
    size_t i = 0;
#define EMIT(ptr, len)                                                         \
    do {                                                                       \
        if (emit && (len) > 0) {                                               \
            if (sink(user, (ptr), (len)) != 0) return -1;                      \
            m->file_bytes += (len);                                            \
        }                                                                      \
    } while (0)
    while (i < n) {
        if (m->matched == 0) {
            /* Fast path: everything up to the next CR is plain data. */
            const unsigned char *cr = memchr(p + i, '\r', n - i);
            size_t stop = cr ? (size_t)(cr - p) : n;
            EMIT(p + i, stop - i);
            i = stop;
            if (i == n) break;
        }
        unsigned char c = p[i++];
        size_t k = m->matched;
        while (k > 0 && (unsigned char)m->delim[k] != c) k = (size_t)m->fail[k];
        if ((unsigned char)m->delim[k] == c) k++;
        size_t dropped = m->matched + 1 - k; /* oldest bytes of (held prefix + c) no longer in a match */
        if (dropped > m->matched) {
            EMIT((const unsigned char *)m->delim, m->matched);
            EMIT(&c, 1);
        } else {
            EMIT((const unsigned char *)m->delim, dropped);
        }
        m->matched = k;
        if (k == m->dlen) {
            m->matched = 0;
            *used = i;
            return 1;
        }
    }
#undef EMIT
    *used = n;
    return 0;
}

static void sanitize_copy(char *out, size_t cap, const char *in, int basename) {
    /* Informational only: printable ASCII, bounded; for a file name, its last component. */
    const char *base = in;
    for (const char *q = in; basename && *q; q++)
        if (*q == '/' || *q == '\\') base = q + 1;
    size_t o = 0;
    for (const char *q = base; *q && o + 1 < cap; q++) {
        unsigned char c = (unsigned char)*q;
        out[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '_';
    }
    out[o] = 0;
}

static int parse_headers(srv_multipart *m, dfd_error *err) {
    /* hdr holds "Name: value\r\n...\r\n\r\n" (or just "\r\n"), NUL-terminated. */
    int is_file = 0;
    char *line = m->hdr;
    char ctype[128] = "";
    char fname[256] = "";
    while (*line) {
        char *eol = strstr(line, "\r\n");
        if (!eol) break;
        *eol = 0;
        if (*line) {
            char *colon = strchr(line, ':');
            if (!colon || colon == line)
                return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body: a part header line has no name");
            *colon = 0;
            char *val = colon + 1;
            while (*val == ' ' || *val == '\t') val++;
            if (strcasecmp(line, "Content-Disposition") == 0) {
                if (strncasecmp(val, "form-data", 9) != 0)
                    return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body: Content-Disposition is not form-data");
                char name[64];
                int r = header_param(val, "name", name, sizeof name);
                if (r < 0) return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body: bad 'name' in Content-Disposition");
                if (r == 1 && strcmp(name, "file") == 0) is_file = 1;
                char fn[1024];
                if (header_param(val, "filename", fn, sizeof fn) == 1) sanitize_copy(fname, sizeof fname, fn, 1);
            } else if (strcasecmp(line, "Content-Type") == 0) {
                sanitize_copy(ctype, sizeof ctype, val, 0);
            }
        }
        line = eol + 2;
    }
    /* Only the first field named "file" is the upload; later ones are ignored. */
    m->part_is_file = is_file && !m->have_file;
    if (m->part_is_file) {
        m->have_file = 1;
        memcpy(m->filename, fname, sizeof m->filename);
        memcpy(m->file_type, ctype, sizeof m->file_type);
    }
    return DFD_OK;
}

int srv_multipart_feed(srv_multipart *m, const void *data, size_t len, srv_mp_sink sink, void *user,
                       dfd_error *err) {
    const unsigned char *p = data;
    size_t i = 0;
    if (m->state == MP_FAILED) return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body");
    while (i < len) {
        switch (m->state) {
        case MP_PREAMBLE:
        case MP_BODY: {
            size_t used;
            int emit = m->state == MP_BODY && m->part_is_file;
            int r = scan(m, p + i, len - i, &used, emit, sink, user);
            if (r < 0) {
                m->state = MP_FAILED;
                return srv_fail(err, DFD_E_IO, "could not store the uploaded file");
            }
            i += used;
            if (r == 1) {
                if (m->state == MP_BODY && m->part_is_file) m->file_done = 1;
                m->part_is_file = 0;
                m->state = MP_AFTER_DELIM;
                m->after = AFTER_START;
            }
            break;
        }
        case MP_AFTER_DELIM: {
            unsigned char c = p[i++];
            if (m->after == AFTER_START) {
                if (c == '-') m->after = AFTER_DASH;
                else if (c == '\r') m->after = AFTER_CR;
                else if (c != ' ' && c != '\t') {
                    m->state = MP_FAILED;
                    return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body: unexpected byte after a boundary");
                }
            } else if (m->after == AFTER_DASH) {
                if (c != '-') {
                    m->state = MP_FAILED;
                    return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body: unexpected byte after a boundary");
                }
                m->state = MP_EPILOGUE;
            } else {
                if (c != '\n') {
                    m->state = MP_FAILED;
                    return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body: boundary line not ended by CRLF");
                }
                m->state = MP_HEADERS;
                m->hlen = 0;
            }
            break;
        }
        case MP_HEADERS: {
            unsigned char c = p[i++];
            if (m->hlen + 1 >= sizeof m->hdr) {
                m->state = MP_FAILED;
                return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body: part headers over %d bytes",
                                SRV_MP_MAX_HEADERS);
            }
            if (c == 0) {
                m->state = MP_FAILED;
                return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body: NUL byte in part headers");
            }
            m->hdr[m->hlen++] = (char)c;
            m->hdr[m->hlen] = 0;
            int end = (m->hlen == 2 && memcmp(m->hdr, "\r\n", 2) == 0) ||
                      (m->hlen >= 4 && memcmp(m->hdr + m->hlen - 4, "\r\n\r\n", 4) == 0);
            if (end) {
                int r = parse_headers(m, err);
                if (r) {
                    m->state = MP_FAILED;
                    return r;
                }
                m->state = MP_BODY;
                m->matched = 0;
            }
            break;
        }
        case MP_EPILOGUE:
            i = len; /* anything after the closing delimiter is ignored */
            break;
        default:
            return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body");
        }
    }
    return DFD_OK;
}

int srv_multipart_finish(srv_multipart *m, dfd_error *err) {
    if (m->state == MP_FAILED) return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body");
    if (m->state == MP_EPILOGUE) {
        if (!m->have_file) return srv_fail(err, DFD_E_ARG, "multipart body has no field named 'file'");
        return DFD_OK;
    }
    if (m->state == MP_PREAMBLE)
        return srv_fail(err, DFD_E_CORRUPT, "malformed multipart body: the boundary from Content-Type never appears");
    if (m->have_file && !m->file_done)
        return srv_fail(err, DFD_E_CORRUPT, "multipart body is truncated: it ends inside the field 'file'");
    return srv_fail(err, DFD_E_CORRUPT, "multipart body is truncated: no closing boundary");
}
