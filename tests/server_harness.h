/*
 * server_harness.h — shared by the server tests: runs dfd_server_run in a thread on a
 * free loopback port, and a small HTTP/1.1 client on raw sockets (so a test can send a
 * body slowly, stall, cut it short, or use chunked encoding, which a library client
 * would not let it do). Header-only: each test program includes it once.
 */
#ifndef DFD_SERVER_HARNESS_H
#define DFD_SERVER_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

/* The server's internals, and the library's it builds stand-in results with (tests may
 * include internal headers; the server itself sees only include/dfd/). */
#include "detect/detect.h"
#include "server/server.h"

/* Each test program uses only some of these. */
#define TH_FN static __attribute__((unused))

/* ---- the server in a thread ------------------------------------------------------------ */

typedef struct th_server {
    dfd_server_config cfg;
    pthread_t thread;
    int stop_pipe[2];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int port;   /* 0 until ready */
    int done;
    int rc;
    dfd_error err;
    char *log;  /* access log lines, '\n'-separated */
    size_t log_len;
} th_server;

TH_FN void th_on_ready(void *user, const char *host, int port) {
    (void)host;
    th_server *s = user;
    pthread_mutex_lock(&s->mu);
    s->port = port;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

TH_FN void th_access_log(void *user, const char *line) {
    th_server *s = user;
    pthread_mutex_lock(&s->mu);
    size_t n = strlen(line);
    char *nl = realloc(s->log, s->log_len + n + 2);
    if (nl) {
        s->log = nl;
        memcpy(s->log + s->log_len, line, n);
        s->log_len += n;
        s->log[s->log_len++] = '\n';
        s->log[s->log_len] = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

TH_FN void *th_main(void *arg) {
    th_server *s = arg;
    int rc = dfd_server_run(&s->cfg, s->stop_pipe[0], &s->err);
    pthread_mutex_lock(&s->mu);
    s->rc = rc;
    s->done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Starts the server (cfg's port is forced to 0 = any free port); returns 0 when it
 * listens, -1 if it stopped first (s->rc, s->err say why). */
TH_FN int th_start(th_server *s, const dfd_server_config *cfg) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->cfg.host = "127.0.0.1";
    s->cfg.port = 0;
    s->cfg.on_ready = th_on_ready;
    s->cfg.access_log = th_access_log;
    s->cfg.user = s;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pipe(s->stop_pipe) != 0) return -1;
    if (pthread_create(&s->thread, NULL, th_main, s) != 0) return -1;
    pthread_mutex_lock(&s->mu);
    while (!s->port && !s->done) pthread_cond_wait(&s->cv, &s->mu);
    int ok = s->port ? 0 : -1;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* Asks the server to stop (as SIGTERM would) and waits; returns its status. */
TH_FN int th_stop(th_server *s) {
    char b = 1;
    if (write(s->stop_pipe[1], &b, 1) != 1) return -1;
    pthread_join(s->thread, NULL);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    free(s->log);
    s->log = NULL;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    return s->rc;
}

/* ---- a raw HTTP client ------------------------------------------------------------------ */

/* Case-insensitive strstr (strcasestr is a GNU extension). */
TH_FN const char *th_strcasestr(const char *h, const char *n) {
    size_t nl = strlen(n);
    for (; *h; h++)
        if (strncasecmp(h, n, nl) == 0) return h;
    return NULL;
}

typedef struct th_resp {
    int status;      /* 0 when no (complete) response came */
    char *head;      /* status line and headers */
    char *body;
    size_t body_len;
    int closed;      /* the server closed the connection */
} th_resp;

TH_FN void th_resp_free(th_resp *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

TH_FN int th_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

TH_FN int th_send(int fd, const void *d, size_t n) {
    const char *p = d;
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

TH_FN double th_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

TH_FN void th_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Reads one response (the requests say Connection: close, so: until EOF or, with a
 * Content-Length, until the body is complete), waiting at most timeout_s. */
TH_FN th_resp th_read(int fd, double timeout_s) {
    th_resp r = {0};
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    double end = th_now() + timeout_s;
    long want = -1;
    size_t head_len = 0;
    for (;;) {
        if (head_len && want >= 0 && len >= head_len + (size_t)want) break;
        double left = end - th_now();
        if (left <= 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            r.closed = 1;
            break;
        }
        len += (size_t)n;
        buf[len] = 0;
        if (!head_len) {
            char *e = strstr(buf, "\r\n\r\n");
            if (e) {
                head_len = (size_t)(e - buf) + 4;
                const char *cl = th_strcasestr(buf, "\r\nContent-Length:");
                if (cl && cl < e) want = strtol(cl + 17, NULL, 10);
            }
        }
    }
    buf[len] = 0;
    if (head_len) {
        r.head = strndup(buf, head_len);
        size_t blen = len - head_len;
        if (want >= 0 && blen > (size_t)want) blen = (size_t)want;
        if (want < 0 || blen == (size_t)want) {
            r.body = malloc(blen + 1);
            memcpy(r.body, buf + head_len, blen);
            r.body[blen] = 0;
            r.body_len = blen;
            sscanf(buf, "HTTP/1.%*d %d", &r.status);
        }
    }
    free(buf);
    return r;
}

/* A header's value in a response (static copy, good until the next call), or NULL. */
TH_FN const char *th_header(const th_resp *r, const char *name) {
    static char v[512];
    if (!r->head) return NULL;
    char pat[128];
    snprintf(pat, sizeof pat, "\r\n%s:", name);
    const char *h = th_strcasestr(r->head, pat);
    if (!h) return NULL;
    h += strlen(pat);
    while (*h == ' ') h++;
    size_t n = strcspn(h, "\r\n");
    if (n >= sizeof v) n = sizeof v - 1;
    memcpy(v, h, n);
    v[n] = 0;
    return v;
}

/* One whole request on a fresh connection; extra_headers end each line with \r\n. */
TH_FN th_resp th_request(int port, const char *method, const char *path, const char *extra_headers, const void *body,
                          size_t body_len) {
    th_resp r = {0};
    int fd = th_connect(port);
    if (fd < 0) return r;
    char head[2048];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s", method, path,
                     extra_headers ? extra_headers : "");
    if (body) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (th_send(fd, head, (size_t)n) == 0 && (!body || th_send(fd, body, body_len) == 0)) r = th_read(fd, 30);
    close(fd);
    return r;
}

TH_FN th_resp th_get(int port, const char *path, const char *extra_headers) {
    return th_request(port, "GET", path, extra_headers, NULL, 0);
}

/* The response body as JSON (NULL if it is not). */
TH_FN json_t *th_json(const th_resp *r) {
    if (!r->body) return NULL;
    return json_loadb(r->body, r->body_len, 0, NULL);
}

#define TH_BOUNDARY "----dfdTestBoundary7MA4YWxkTrZu0gW"
#define TH_MULTIPART_CT "Content-Type: multipart/form-data; boundary=" TH_BOUNDARY "\r\n"

/* A multipart/form-data body with one field (name) holding data as file fname. */
TH_FN char *th_multipart(const char *name, const char *fname, const void *data, size_t n, size_t *len) {
    char head[512];
    int h = snprintf(head, sizeof head,
                     "--" TH_BOUNDARY "\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n",
                     name, fname);
    static const char tail[] = "\r\n--" TH_BOUNDARY "--\r\n";
    *len = (size_t)h + n + sizeof tail - 1;
    char *b = malloc(*len);
    memcpy(b, head, (size_t)h);
    memcpy(b + h, data, n);
    memcpy(b + h + n, tail, sizeof tail - 1);
    return b;
}

TH_FN th_resp th_upload(int port, const char *path, const char *fname, const void *data, size_t n) {
    size_t len;
    char *body = th_multipart("file", fname, data, n, &len);
    th_resp r = th_request(port, "POST", path, TH_MULTIPART_CT, body, len);
    free(body);
    return r;
}

#endif
