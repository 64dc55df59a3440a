/* util.c — small helpers shared by the sub-commands: colour, progress bar, numbers,
 * stopping on signals, log lines. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli.h"

int cli_use_color(FILE *f) {
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc) return 0;
    return isatty(fileno(f));
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

void cli_progress_start(cli_progress *p, const char *label) {
    memset(p, 0, sizeof *p);
    p->enabled = isatty(fileno(stderr));
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->last_draw_ms = -1e9;
}

int cli_progress_fn(void *user, double fraction) {
    cli_progress_update(user, fraction, NULL);
    return 0;
}

void cli_progress_update(cli_progress *p, double fraction, const char *detail) {
    if (!p->enabled) return;
    double now = now_ms();
    if (now - p->last_draw_ms < 100 && fraction < 1.0) return; /* at most 10 redraws/s */
    p->last_draw_ms = now;
    if (!(fraction >= 0)) fraction = 0;
    if (fraction > 1) fraction = 1;
    enum { W = 30 };
    char bar[W + 1];
    int filled = (int)lround(fraction * W);
    for (int i = 0; i < W; i++) bar[i] = i < filled ? '#' : '.';
    bar[W] = 0;
    fprintf(stderr, "\r\033[K%s [%s] %3d%% %s", p->label, bar, (int)lround(fraction * 100), detail ? detail : "");
    fflush(stderr);
}

void cli_progress_done(cli_progress *p) {
    if (!p->enabled) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

int cli_parse_int(const char *s, long min, long max, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double min, double max, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= min && v <= max)) return -1;
    *out = v;
    return 0;
}

/* ---- Files named on the command line -------------------------------------------- */

static int list_add(cli_file_list *l, const char *p) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **np = realloc(l->paths, (size_t)cap * sizeof *np);
        if (!np) return -1;
        l->paths = np;
        l->cap = cap;
    }
    if (!(l->paths[l->n] = strdup(p))) return -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds the media files of a directory, sorted by name for a stable order. Files found by
 * walking are filtered by content so a README next to the photos is not an error. */
static int walk_dir(cli_file_list *l, const char *dir, int recursive) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    cli_file_list here = {0};
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) {
            rc = -1;
            break;
        }
        snprintf(p, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        if (list_add(&here, p)) rc = -1;
        free(p);
        if (rc) break;
    }
    closedir(d);
    if (here.n) qsort(here.paths, (size_t)here.n, sizeof *here.paths, cmp_str);
    for (int i = 0; i < here.n && rc == 0; i++) {
        struct stat st;
        if (stat(here.paths[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (recursive) rc = walk_dir(l, here.paths[i], recursive);
        } else if (S_ISREG(st.st_mode)) {
            dfd_media_kind kind;
            if (dfd_sniff_file(here.paths[i], &kind, NULL, NULL) == DFD_OK && kind != DFD_MEDIA_UNKNOWN)
                rc = list_add(l, here.paths[i]);
        }
    }
    for (int i = 0; i < here.n; i++) free(here.paths[i]);
    free(here.paths);
    return rc;
}

int cli_files_add(cli_file_list *l, char *const *args, int n, int recursive) {
    for (int i = 0; i < n; i++) {
        struct stat st;
        int rc = stat(args[i], &st) == 0 && S_ISDIR(st.st_mode) ? walk_dir(l, args[i], recursive) : list_add(l, args[i]);
        if (rc) return -1;
    }
    return 0;
}

void cli_files_free(cli_file_list *l) {
    for (int i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof *l);
}

int cli_fail(dfd_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- Stopping on signals (serve, worker) ------------------------------------------------ */

static int stop_fds[2] = {-1, -1};

static void stop_on_signal(int sig) {
    (void)sig;
    int saved = errno;
    char b = 1;
    ssize_t n = write(stop_fds[1], &b, 1); /* async-signal-safe; the server or worker polls the other end */
    (void)n;
    errno = saved;
}

int cli_stop_pipe_open(const char *cmd) {
    if (pipe(stop_fds) != 0) {
        fprintf(stderr, "dfd %s: cannot create a pipe: %s\n", cmd, strerror(errno));
        return -1;
    }
    fcntl(stop_fds[1], F_SETFL, O_NONBLOCK); /* a flood of signals never blocks the handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stop_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return stop_fds[0];
}

void cli_stop_pipe_close(void) {
    for (int i = 0; i < 2; i++)
        if (stop_fds[i] >= 0) close(stop_fds[i]), stop_fds[i] = -1;
}

void cli_log_line(const char *line) {
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
    fprintf(stderr, "%s %s\n", ts, line); /* one call per line: lines from threads do not mix */
}
