/* metrics.c — request counters and latency histograms for GET /metrics (Prometheus text
 * exposition format 0.0.4). Routes are patterns from the router's fixed table, never raw
 * paths, so the number of series stays bounded whatever clients send. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

static const double bucket_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define N_BUCKETS (sizeof bucket_le / sizeof bucket_le[0])

typedef struct counter {
    char route[48];
    int status;
    uint64_t n;
} counter;

typedef struct histo {
    char route[48];
    uint64_t buckets[N_BUCKETS]; /* cumulative at render time; stored per bucket */
    uint64_t count;
    double sum;
} histo;

struct srv_metrics {
    pthread_mutex_t mu;
    counter *counters;
    size_t n_counters, cap_counters;
    histo *histos;
    size_t n_histos, cap_histos;
    uint64_t bytes_in;
};

srv_metrics *srv_metrics_new(void) {
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void srv_metrics_free(srv_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m->counters);
    free(m->histos);
    free(m);
}

static void *grow(void *arr, size_t *cap, size_t elem) {
    size_t nc = *cap ? *cap * 2 : 16;
    void *n = srv_malloc_array(nc, elem);
    if (!n) return NULL;
    if (arr) memcpy(n, arr, *cap * elem);
    free(arr);
    *cap = nc;
    return n;
}

void srv_metrics_request(srv_metrics *m, const char *route, int status, double seconds, uint64_t bytes_in) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->bytes_in += bytes_in;
    counter *c = NULL;
    for (size_t i = 0; i < m->n_counters; i++)
        if (m->counters[i].status == status && strcmp(m->counters[i].route, route) == 0) c = &m->counters[i];
    if (!c) {
        if (m->n_counters == m->cap_counters) {
            counter *n = grow(m->counters, &m->cap_counters, sizeof *n);
            if (!n) goto out;
            m->counters = n;
        }
        c = &m->counters[m->n_counters++];
        memset(c, 0, sizeof *c);
        snprintf(c->route, sizeof c->route, "%s", route);
        c->status = status;
    }
    c->n++;
    histo *h = NULL;
    for (size_t i = 0; i < m->n_histos; i++)
        if (strcmp(m->histos[i].route, route) == 0) h = &m->histos[i];
    if (!h) {
        if (m->n_histos == m->cap_histos) {
            histo *n = grow(m->histos, &m->cap_histos, sizeof *n);
            if (!n) goto out;
            m->histos = n;
        }
        h = &m->histos[m->n_histos++];
        memset(h, 0, sizeof *h);
        snprintf(h->route, sizeof h->route, "%s", route);
    }
    for (size_t b = 0; b < N_BUCKETS; b++)
        if (seconds <= bucket_le[b]) {
            h->buckets[b]++;
            break;
        }
    h->count++;
    h->sum += seconds;
out:
    pthread_mutex_unlock(&m->mu);
}

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) DFD_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = b->cap * 2 + (size_t)n + 1;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
}

char *srv_metrics_render(srv_metrics *m, const char *extra) {
    sbuf b = {malloc(4096), 0, 4096, 0};
    if (!b.s) return NULL;
    b.s[0] = 0;
    pthread_mutex_lock(&m->mu);
    sb_printf(&b, "# HELP dfd_http_requests_total HTTP requests answered, by route pattern and status.\n"
                  "# TYPE dfd_http_requests_total counter\n");
    for (size_t i = 0; i < m->n_counters; i++)
        sb_printf(&b, "dfd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", m->counters[i].route,
                  m->counters[i].status, (unsigned long long)m->counters[i].n);
    sb_printf(&b, "# HELP dfd_http_request_duration_seconds Time from a request's first byte to its answer.\n"
                  "# TYPE dfd_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < m->n_histos; i++) {
        const histo *h = &m->histos[i];
        uint64_t cum = 0;
        for (size_t k = 0; k < N_BUCKETS; k++) {
            cum += h->buckets[k];
            sb_printf(&b, "dfd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n", h->route,
                      bucket_le[k], (unsigned long long)cum);
        }
        sb_printf(&b, "dfd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", h->route,
                  (unsigned long long)h->count);
        sb_printf(&b, "dfd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", h->route, h->sum);
        sb_printf(&b, "dfd_http_request_duration_seconds_count{route=\"%s\"} %llu\n", h->route,
                  (unsigned long long)h->count);
    }
    sb_printf(&b, "# HELP dfd_http_upload_bytes_total Request body bytes received.\n"
                  "# TYPE dfd_http_upload_bytes_total counter\n"
                  "dfd_http_upload_bytes_total %llu\n",
              (unsigned long long)m->bytes_in);
    pthread_mutex_unlock(&m->mu);
    if (extra) sb_printf(&b, "%s", extra);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
