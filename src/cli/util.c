/* util.c — small helpers shared by the sub-commands: colour, progress bar, numbers. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"

int cli_use_color(FILE *f) {
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc) return 0;
    return isatty(fileno(f));
}

void cli_progress_start(cli_progress *p, const char *label) {
    memset(p, 0, sizeof *p);
    p->enabled = isatty(fileno(stderr));
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->last_draw_ms = -1e9;
}

void cli_progress_update(cli_progress *p, double fraction, const char *detail) {
    if (!p->enabled) return;
    double now = dfd_now_ms();
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
