/* cmd_serve.c — `dfd serve`: the HTTP API and the web page on one port. Parses options,
 * stops on SIGINT/SIGTERM through cli_stop_pipe_open (a byte on a self-pipe, all a handler
 * may safely do), and hands over to dfd_serve (include/dfd/server.h), which owns the server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dfd/server.h"

enum { O_HOST = 256, O_PORT, O_TIMEOUT, O_MAXCONN, O_PERIP, O_REQTIMEOUT, O_MINRATE, O_THREADS, O_WORKERS, O_QUEUE,
       O_MAXUP, O_MAXHELD, O_TTL, O_BROKER, O_SPOOL };

static const cli_opt serve_opts[] = {
    {NULL, 0, NULL, "Network:"},
    {"host", O_HOST, "ADDR", "address to listen on (default 127.0.0.1; 0.0.0.0 for all)"},
    {"port", O_PORT, "N", "port (default 8000; 0 = any free port, printed at start)"},
    {"timeout", O_TIMEOUT, "S", "close connections idle for S seconds (default 30)"},
    {"max-connections", O_MAXCONN, "N", "open connections at once (default 1000)"},
    {"max-conn-per-ip", O_PERIP, "N", "open connections from one address (default 64; 0 = no limit;\n"
                                      "behind a reverse proxy every client has the proxy's address)"},
    {"request-timeout", O_REQTIMEOUT, "S", "a request body must arrive within S seconds (default 1800; 0 = none)"},
    {"min-upload-kbs", O_MINRATE, "N", "a body must average N KiB/s after its first 10 s (default 8; 0 = none)"},
    {NULL, 0, NULL, "Work:"},
    {"threads", O_THREADS, "N", "compute threads in all (default: all cores)"},
    {"workers", O_WORKERS, "N", "analyses at once, each with its own models and threads/N threads\n"
                                "(default: one per 4 threads, at most 4)"},
    {"queue", O_QUEUE, "N", "uploads that may wait for a worker before 503 (default 64)"},
    {"max-upload-mb", O_MAXUP, "N", "largest request body, in MiB (default 200)"},
    {"max-held-mb", O_MAXHELD, "N", "upload bytes stored at once, being received or waiting for or\n"
                                    "in an analysis; past it uploads get 503 (default 4 x --max-upload-mb)"},
    {"job-ttl", O_TTL, "S", "keep finished video jobs' results S seconds (default 3600)"},
    {NULL, 0, NULL, "Scale-out (docs/scale-out.md):"},
    {"broker", O_BROKER, "URL", "put analyses on Redis (redis://[user:password@]HOST:PORT[/DB]) for\n"
                                "`dfd worker` processes on any machine, instead of analysing here;\n"
                                "jobs, progress and results then live in Redis (--job-ttl)"},
    {"spool", O_SPOOL, "DIR", "with --broker: uploads go to this shared folder, not into Redis"},
    {NULL, 0, NULL, "Models (a model named here must load; without one, the server starts anyway and\n"
                    "analyses answer 503 until a default model is installed):"},
    CLI_MODEL_OPTS,
    {NULL, 0, NULL, ""},
    {"quiet", 'q', NULL, "no request log"},
    {0}};

const cli_command cmd_serve_cmd = {
    "serve",
    "Usage: dfd serve [OPTIONS]\n\n"
    "Serves the HTTP API and the web page on one port: open http://HOST:PORT/ in a browser,\n"
    "or POST files to /predict_image, /predict_video (the original API) or /v1/analyze\n"
    "(see docs/api.md, or GET /openapi.json). One log line per request goes to stderr.\n"
    "SIGINT/SIGTERM stop it after the requests in flight are answered; a second one\n"
    "cancels running analyses.\n\n",
    serve_opts, NULL};

static void on_ready(void *user, const char *host, int port) {
    const dfd_serve_options *c = user;
    int v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "dfd serve: listening on http://%s%s%s:%d/ (max upload %llu MiB)%s\n", v6 ? "[" : "", host,
            v6 ? "]" : "", port, (unsigned long long)(c->max_upload_bytes >> 20), c->broker_url ? "; jobs on the broker" : "");
}

static void access_log(void *user, const char *line) {
    (void)user;
    cli_log_line(line);
}

static void quiet_log(void *user, const char *line) {
    (void)user;
    (void)line;
}

int cmd_serve(int argc, char **argv) {
    dfd_serve_options c;
    dfd_serve_options_default(&c);
    dfd_options *opts = &c.analysis;
    int quiet = 0, k;
    const char *v;
    long n;
    double d;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_serve_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &v)) > 0) {
        switch (k) {
        case O_HOST: c.host = v; break;
        case O_PORT:
            if (cli_parse_int(v, 0, 65535, &n)) return cli_usage_error("serve", "--port must be 0..65535");
            c.port = (int)n;
            break;
        case O_THREADS:
            if (cli_parse_int(v, 1, CLI_THREADS_MAX, &n))
                return cli_usage_error("serve", "--threads must be 1..%d", CLI_THREADS_MAX);
            c.threads = (int)n;
            break;
        case O_WORKERS:
            if (cli_parse_int(v, 1, 256, &n)) return cli_usage_error("serve", "--workers must be 1..256");
            c.workers = (int)n;
            break;
        case O_QUEUE:
            if (cli_parse_int(v, 0, 100000, &n)) return cli_usage_error("serve", "--queue must be 0..100000");
            c.queue = (int)n;
            break;
        case O_MAXUP:
            if (cli_parse_int(v, 1, 1 << 20, &n)) return cli_usage_error("serve", "--max-upload-mb must be 1..1048576");
            c.max_upload_bytes = (uint64_t)n << 20;
            break;
        case O_MAXHELD:
            if (cli_parse_int(v, 1, 1 << 24, &n)) return cli_usage_error("serve", "--max-held-mb must be 1..16777216");
            c.max_held_bytes = (uint64_t)n << 20;
            break;
        case O_TTL:
            if (cli_parse_double(v, 0, 1e7, &d)) return cli_usage_error("serve", "--job-ttl must be 0..1e7 seconds");
            c.job_ttl_s = d;
            break;
        case O_TIMEOUT:
            if (cli_parse_int(v, 1, 86400, &n)) return cli_usage_error("serve", "--timeout must be 1..86400 seconds");
            c.conn_timeout_s = (int)n;
            break;
        case O_MAXCONN:
            if (cli_parse_int(v, 1, 100000, &n)) return cli_usage_error("serve", "--max-connections must be 1..100000");
            c.max_connections = (int)n;
            break;
        case O_PERIP:
            if (cli_parse_int(v, 0, 100000, &n)) return cli_usage_error("serve", "--max-conn-per-ip must be 0..100000");
            c.max_conn_per_ip = (int)n;
            break;
        case O_REQTIMEOUT:
            if (cli_parse_double(v, 0, 1e7, &d)) return cli_usage_error("serve", "--request-timeout must be 0..1e7 seconds");
            c.request_timeout_s = d;
            break;
        case O_MINRATE:
            if (cli_parse_double(v, 0, 1e7, &d)) return cli_usage_error("serve", "--min-upload-kbs must be 0..1e7");
            c.min_upload_rate = d * 1024.0;
            break;
        case O_BROKER:
            if (cli_broker_opt("serve", v, &c.broker_url)) return DFD_EXIT_USAGE;
            break;
        case O_SPOOL: c.spool_dir = v; break;
        case 'q': quiet = 1; break;
        default:
            if (cli_model_opt("serve", k, v, opts) < 0) return DFD_EXIT_USAGE;
        }
    }
    if (k < 0) return DFD_EXIT_USAGE;
    if (p.first < argc) return cli_usage_error("serve", "unexpected argument '%s'", argv[p.first]);
    if (c.max_held_bytes && c.max_held_bytes < c.max_upload_bytes)
        return cli_usage_error("serve", "--max-held-mb (%llu) is less than --max-upload-mb (%llu)",
                               (unsigned long long)(c.max_held_bytes >> 20),
                               (unsigned long long)(c.max_upload_bytes >> 20));
    if (c.spool_dir && !c.broker_url) return cli_usage_error("serve", "--spool needs --broker");
    if (c.workers > 0 && c.threads > 0 && c.workers > c.threads)
        return cli_usage_error("serve", "--workers (%d) is more than --threads (%d)", c.workers, c.threads);

    /* Models named on the command line must load; with the defaults, the server still
     * starts without one (status and page work, analyses answer 503 saying why). */
    if (cli_model_opts_check("serve", opts)) return DFD_EXIT_USAGE;
    c.require_models = opts->image_model != NULL || opts->video_model != NULL || opts->synthetic_model != NULL;
    c.on_ready = on_ready;
    c.access_log = quiet ? quiet_log : access_log;
    c.user = &c;

    int stop_fd = cli_stop_pipe_open("serve");
    if (stop_fd < 0) return DFD_EXIT_FAILED;

    dfd_error err;
    int rc = dfd_serve(&c, stop_fd, &err);
    cli_stop_pipe_close();
    if (rc != DFD_OK) {
        fprintf(stderr, "dfd serve: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    fprintf(stderr, "dfd serve: stopped\n");
    return DFD_EXIT_OK;
}
