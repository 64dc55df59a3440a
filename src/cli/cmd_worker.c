/* cmd_worker.c — `dfd worker`: the other half of `dfd serve --broker`. Parses options,
 * turns SIGINT/SIGTERM into bytes on a self-pipe, and hands over to dfd_worker_run
 * (src/server/worker.c), which owns the loop. Exists so that analyses can run on as many
 * processes and machines as reach the broker. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "server/server.h"

const char cmd_worker_help[] =
    "Usage: dfd worker --broker redis://[user:password@]HOST:PORT[/DB] [OPTIONS]\n\n"
    "Takes analyses that `dfd serve --broker` put on Redis, runs them one at a time with\n"
    "the same library analysis as `dfd serve`, writes their progress and stores each\n"
    "result once. Start as many as you like, on any machine that reaches Redis. A job\n"
    "whose worker dies is taken over by another after --visibility-timeout. SIGINT or\n"
    "SIGTERM: finish the job in hand, then exit; a second one leaves it to another worker.\n"
    "One log line per job goes to stderr. See docs/scale-out.md.\n\n"
    "  --broker URL             Redis to take jobs from (required)\n"
    "  --threads N              compute threads for the analysis (default 1)\n"
    "  --spool DIR              where the server's --spool folder is mounted here\n"
    "  --visibility-timeout S   a job whose worker showed no sign of life for S seconds\n"
    "                           is run again elsewhere (default 30)\n"
    "  --max-attempts N         runs of one job before it is failed (default 3)\n"
    "  --max-upload-mb N        larger uploads are failed (default 200)\n"
    "  --name NAME              this worker's name in Redis (default HOST-PID-RANDOM)\n\n"
    "Models (as dfd serve; a model named here must load):\n"
    "  --models DIR, --model-image P, --model-video P, --model-synthetic P, --no-synthetic,\n"
    "  --frames N\n\n"
    "  -q, --quiet              no line per job\n";

static int stop_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    (void)sig;
    int saved = errno;
    char b = 1;
    ssize_t n = write(stop_pipe[1], &b, 1);
    (void)n;
    errno = saved;
}

static void on_ready(void *user, const char *name) {
    (void)user;
    fprintf(stderr, "dfd worker: %s ready\n", name);
}

static void job_log(void *user, const char *line) {
    int quiet = *(int *)user;
    if (quiet) return;
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
    fprintf(stderr, "%s %s\n", ts, line);
}

int cmd_worker(int argc, char **argv) {
    dfd_worker_config c;
    dfd_worker_config_default(&c);
    dfd_options opts;
    dfd_options_default(&opts);
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double d;
#define NEED_VALUE()                                                            \
    do {                                                                        \
        if (!v) return cli_usage_error("worker", "%s needs a value", a);        \
        i++;                                                                    \
    } while (0)
        if (!strcmp(a, "--broker")) {
            NEED_VALUE();
            c.broker_url = v;
            if (strncmp(v, "redis://", 8) != 0)
                return cli_usage_error("worker", "--broker must be redis://[user:password@]HOST:PORT[/DB]");
        } else if (!strcmp(a, "--threads")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 4096, &n)) return cli_usage_error("worker", "--threads must be 1..4096");
            c.threads = (int)n;
        } else if (!strcmp(a, "--spool")) {
            NEED_VALUE();
            c.spool_dir = v;
        } else if (!strcmp(a, "--visibility-timeout")) {
            NEED_VALUE();
            if (cli_parse_double(v, 0.1, 1e6, &d))
                return cli_usage_error("worker", "--visibility-timeout must be 0.1..1e6 seconds");
            c.visibility_timeout_s = d;
        } else if (!strcmp(a, "--max-attempts")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 1000, &n)) return cli_usage_error("worker", "--max-attempts must be 1..1000");
            c.max_attempts = (int)n;
        } else if (!strcmp(a, "--max-upload-mb")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 1 << 20, &n)) return cli_usage_error("worker", "--max-upload-mb must be 1..1048576");
            c.max_upload_bytes = (uint64_t)n << 20;
        } else if (!strcmp(a, "--name")) {
            NEED_VALUE();
            if (!*v || strlen(v) > 100 || strpbrk(v, " \t\r\n"))
                return cli_usage_error("worker", "--name must be 1..100 characters without spaces");
            c.name = v;
        } else if (!strcmp(a, "--models")) {
            NEED_VALUE();
            opts.models_dir = v;
        } else if (!strcmp(a, "--model-image")) {
            NEED_VALUE();
            opts.image_model = v;
        } else if (!strcmp(a, "--model-video")) {
            NEED_VALUE();
            opts.video_model = v;
        } else if (!strcmp(a, "--model-synthetic")) {
            NEED_VALUE();
            opts.synthetic_model = v;
        } else if (!strcmp(a, "--no-synthetic")) {
            opts.no_synthetic = 1;
        } else if (!strcmp(a, "--frames")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 10000, &n)) return cli_usage_error("worker", "--frames must be 1..10000");
            opts.frames = (int)n;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else {
            return cli_usage_error("worker", "unknown option '%s'", a);
        }
#undef NEED_VALUE
    }
    if (!c.broker_url) return cli_usage_error("worker", "--broker redis://HOST:PORT is required");
    if (opts.synthetic_model && opts.no_synthetic)
        return cli_usage_error("worker", "--model-synthetic and --no-synthetic contradict each other");
    dfd_server_analyzer an;
    dfd_server_library_analyzer(&an, &opts);
    c.analyzer = &an;
    c.on_ready = on_ready;
    c.log = job_log;
    c.user = &quiet;

    if (pipe(stop_pipe) != 0) {
        fprintf(stderr, "dfd worker: cannot create a pipe: %s\n", strerror(errno));
        return DFD_EXIT_FAILED;
    }
    fcntl(stop_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    dfd_error err;
    dfd_error_clear(&err);
    int rc = dfd_worker_run(&c, stop_pipe[0], &err);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    if (rc != DFD_OK) {
        fprintf(stderr, "dfd worker: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    fprintf(stderr, "dfd worker: stopped\n");
    return DFD_EXIT_OK;
}
