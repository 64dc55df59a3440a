/* cmd_serve.c — `dfd serve`: the HTTP API and the web page on one port. Parses options,
 * turns SIGINT/SIGTERM into a byte on a self-pipe (all a signal handler may safely do),
 * and hands over to dfd_server_run, which owns the whole server. */
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

const char cmd_serve_help[] =
    "Usage: dfd serve [OPTIONS]\n\n"
    "Serves the HTTP API and the web page on one port: open http://HOST:PORT/ in a browser,\n"
    "or POST files to /predict_image, /predict_video (the original API) or /v1/analyze\n"
    "(see docs/api.md, or GET /openapi.json). One log line per request goes to stderr.\n"
    "SIGINT/SIGTERM stop it after the requests in flight are answered; a second one\n"
    "cancels running analyses.\n\n"
    "Network:\n"
    "  --host ADDR          address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
    "  --port N             port (default 8000; 0 = any free port, printed at start)\n"
    "  --timeout S          close connections idle for S seconds (default 30)\n"
    "  --max-connections N  open connections at once (default 1000)\n"
    "  --max-conn-per-ip N  open connections from one address (default 64; 0 = no limit;\n"
    "                       behind a reverse proxy every client has the proxy's address)\n"
    "  --request-timeout S  a request body must arrive within S seconds (default 1800; 0 = none)\n"
    "  --min-upload-kbs N   a body must average N KiB/s after its first 10 s (default 8; 0 = none)\n\n"
    "Work:\n"
    "  --threads N          compute threads in all (default: all cores)\n"
    "  --workers N          analyses at once, each with its own models and threads/N threads\n"
    "                       (default: one per 4 threads, at most 4)\n"
    "  --queue N            uploads that may wait for a worker before 503 (default 64)\n"
    "  --max-upload-mb N    largest request body, in MiB (default 200)\n"
    "  --max-held-mb N      upload bytes stored at once, being received or waiting for or\n"
    "                       in an analysis; past it uploads get 503 (default 4 x --max-upload-mb)\n"
    "  --job-ttl S          keep finished video jobs' results S seconds (default 3600)\n\n"
    "Scale-out (docs/scale-out.md):\n"
    "  --broker URL         put analyses on Redis (redis://[user:password@]HOST:PORT[/DB]) for\n"
    "                       `dfd worker` processes on any machine, instead of analysing here;\n"
    "                       jobs, progress and results then live in Redis (--job-ttl)\n"
    "  --spool DIR          with --broker: uploads go to this shared folder, not into Redis\n\n"
    "Models (a model named here must load; without one, the server starts anyway and\n"
    "analyses answer 503 until a default model is installed):\n"
    "  --models DIR         where the default and face models are\n"
    "  --model-image P      image model (safetensors)\n"
    "  --model-video P      video model (safetensors)\n"
    "  --model-synthetic P  synthetic-face model, run beside the image model (default:\n"
    "                       dfd-synthetic-*.safetensors beside the default image model, if any)\n"
    "  --no-synthetic       no synthetic-face detector\n"
    "  --frames N           frames sampled per video (default 30)\n\n"
    "  -q, --quiet          no request log\n";

static int stop_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    (void)sig;
    int saved = errno;
    char b = 1;
    ssize_t n = write(stop_pipe[1], &b, 1); /* async-signal-safe; the server polls the other end */
    (void)n;
    errno = saved;
}

static void on_ready(void *user, const char *host, int port) {
    const dfd_server_config *c = user;
    int v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "dfd serve: listening on http://%s%s%s:%d/ (max upload %llu MiB)%s%s\n", v6 ? "[" : "", host,
            v6 ? "]" : "", port, (unsigned long long)(c->max_upload_bytes >> 20), c->broker_url ? "; jobs on " : "",
            c->broker_url ? "the broker" : "");
}

static void access_log(void *user, const char *line) {
    (void)user;
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
    fprintf(stderr, "%s %s\n", ts, line); /* one call per line: lines from threads do not mix */
}

static void quiet_log(void *user, const char *line) {
    (void)user;
    (void)line;
}

int cmd_serve(int argc, char **argv) {
    dfd_server_config c;
    dfd_server_config_default(&c);
    dfd_options opts;
    dfd_options_default(&opts);
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double d;
#define NEED_VALUE()                                                                  \
    do {                                                                              \
        if (!v) return cli_usage_error("serve", "%s needs a value", a);               \
        i++;                                                                          \
    } while (0)
        if (!strcmp(a, "--host")) {
            NEED_VALUE();
            c.host = v;
        } else if (!strcmp(a, "--port")) {
            NEED_VALUE();
            if (cli_parse_int(v, 0, 65535, &n)) return cli_usage_error("serve", "--port must be 0..65535");
            c.port = (int)n;
        } else if (!strcmp(a, "--threads")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 4096, &n)) return cli_usage_error("serve", "--threads must be 1..4096");
            c.threads = (int)n;
        } else if (!strcmp(a, "--workers")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 256, &n)) return cli_usage_error("serve", "--workers must be 1..256");
            c.workers = (int)n;
        } else if (!strcmp(a, "--queue")) {
            NEED_VALUE();
            if (cli_parse_int(v, 0, 100000, &n)) return cli_usage_error("serve", "--queue must be 0..100000");
            c.queue = (int)n;
        } else if (!strcmp(a, "--max-upload-mb")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 1 << 20, &n)) return cli_usage_error("serve", "--max-upload-mb must be 1..1048576");
            c.max_upload_bytes = (uint64_t)n << 20;
        } else if (!strcmp(a, "--max-held-mb")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 1 << 24, &n)) return cli_usage_error("serve", "--max-held-mb must be 1..16777216");
            c.max_held_bytes = (uint64_t)n << 20;
        } else if (!strcmp(a, "--job-ttl")) {
            NEED_VALUE();
            if (cli_parse_double(v, 0, 1e7, &d)) return cli_usage_error("serve", "--job-ttl must be 0..1e7 seconds");
            c.job_ttl_s = d;
        } else if (!strcmp(a, "--timeout")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 86400, &n)) return cli_usage_error("serve", "--timeout must be 1..86400 seconds");
            c.conn_timeout_s = (int)n;
        } else if (!strcmp(a, "--max-connections")) {
            NEED_VALUE();
            if (cli_parse_int(v, 1, 100000, &n)) return cli_usage_error("serve", "--max-connections must be 1..100000");
            c.max_connections = (int)n;
        } else if (!strcmp(a, "--max-conn-per-ip")) {
            NEED_VALUE();
            if (cli_parse_int(v, 0, 100000, &n)) return cli_usage_error("serve", "--max-conn-per-ip must be 0..100000");
            c.max_conn_per_ip = (int)n;
        } else if (!strcmp(a, "--request-timeout")) {
            NEED_VALUE();
            if (cli_parse_double(v, 0, 1e7, &d)) return cli_usage_error("serve", "--request-timeout must be 0..1e7 seconds");
            c.request_timeout_s = d;
        } else if (!strcmp(a, "--min-upload-kbs")) {
            NEED_VALUE();
            if (cli_parse_double(v, 0, 1e7, &d)) return cli_usage_error("serve", "--min-upload-kbs must be 0..1e7");
            c.min_upload_rate = d * 1024.0;
        } else if (!strcmp(a, "--broker")) {
            NEED_VALUE();
            c.broker_url = v;
            if (strncmp(v, "redis://", 8) != 0)
                return cli_usage_error("serve", "--broker must be redis://[user:password@]HOST:PORT[/DB]");
        } else if (!strcmp(a, "--spool")) {
            NEED_VALUE();
            c.spool_dir = v;
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
            if (cli_parse_int(v, 1, 10000, &n)) return cli_usage_error("serve", "--frames must be 1..10000");
            opts.frames = (int)n;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else {
            return cli_usage_error("serve", "unknown option '%s'", a);
        }
#undef NEED_VALUE
    }
    if (c.max_held_bytes && c.max_held_bytes < c.max_upload_bytes)
        return cli_usage_error("serve", "--max-held-mb (%llu) is less than --max-upload-mb (%llu)",
                               (unsigned long long)(c.max_held_bytes >> 20),
                               (unsigned long long)(c.max_upload_bytes >> 20));
    if (c.spool_dir && !c.broker_url) return cli_usage_error("serve", "--spool needs --broker");
    if (c.workers > 0 && c.threads > 0 && c.workers > c.threads)
        return cli_usage_error("serve", "--workers (%d) is more than --threads (%d)", c.workers, c.threads);

    /* Models named on the command line must load; with the defaults, the server still
     * starts without one (status and page work, analyses answer 503 saying why). */
    if (opts.synthetic_model && opts.no_synthetic)
        return cli_usage_error("serve", "--model-synthetic and --no-synthetic contradict each other");
    c.require_models = opts.image_model != NULL || opts.video_model != NULL || opts.synthetic_model != NULL;
    if (c.broker_url) c.require_models = 0; /* the workers load the models */
    dfd_server_analyzer an;
    dfd_server_library_analyzer(&an, &opts);
    c.analyzer = &an;
    c.on_ready = on_ready;
    c.access_log = quiet ? quiet_log : access_log;
    c.user = &c;

    if (pipe(stop_pipe) != 0) {
        fprintf(stderr, "dfd serve: cannot create a pipe: %s\n", strerror(errno));
        return DFD_EXIT_FAILED;
    }
    fcntl(stop_pipe[1], F_SETFL, O_NONBLOCK); /* a flood of signals never blocks the handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    dfd_error err;
    dfd_error_clear(&err);
    int rc = dfd_server_run(&c, stop_pipe[0], &err);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    if (rc != DFD_OK) {
        fprintf(stderr, "dfd serve: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    fprintf(stderr, "dfd serve: stopped\n");
    return DFD_EXIT_OK;
}
