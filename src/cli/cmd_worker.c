/* cmd_worker.c — `dfd worker`: the other half of `dfd serve --broker`. Parses options,
 * stops on SIGINT/SIGTERM through cli_stop_pipe_open, and hands over to dfd_worker
 * (include/dfd/server.h; the loop is src/server/worker.c). Exists so that analyses can
 * run on as many processes and machines as reach the broker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dfd/server.h"

enum { O_BROKER = 256, O_THREADS, O_SPOOL, O_VIS, O_ATTEMPTS, O_MAXUP, O_NAME };

static const cli_opt worker_opts[] = {
    {"broker", O_BROKER, "URL", "Redis to take jobs from (required): redis://[user:password@]HOST:PORT[/DB]"},
    {"threads", O_THREADS, "N", "compute threads for the analysis (default 1)"},
    {"spool", O_SPOOL, "DIR", "where the server's --spool folder is mounted here"},
    {"visibility-timeout", O_VIS, "S", "a job whose worker showed no sign of life for S seconds\n"
                                       "is run again elsewhere (default 30)"},
    {"max-attempts", O_ATTEMPTS, "N", "runs of one job before it is failed (default 3)"},
    {"max-upload-mb", O_MAXUP, "N", "larger uploads are failed (default 200)"},
    {"name", O_NAME, "NAME", "this worker's name in Redis (default HOST-PID-RANDOM)"},
    {NULL, 0, NULL, "Models (as dfd serve; a model named here must load):"},
    CLI_MODEL_OPTS,
    {NULL, 0, NULL, ""},
    {"quiet", 'q', NULL, "no line per job"},
    {0}};

const cli_command cmd_worker_cmd = {
    "worker",
    "Usage: dfd worker --broker redis://[user:password@]HOST:PORT[/DB] [OPTIONS]\n\n"
    "Takes analyses that `dfd serve --broker` put on Redis, runs them one at a time with\n"
    "the same library analysis as `dfd serve`, writes their progress and stores each\n"
    "result once. Start as many as you like, on any machine that reaches Redis. A job\n"
    "whose worker dies is taken over by another after --visibility-timeout. SIGINT or\n"
    "SIGTERM: finish the job in hand, then exit; a second one leaves it to another worker.\n"
    "One log line per job goes to stderr. See docs/scale-out.md.\n\n",
    worker_opts, NULL};

static void on_ready(void *user, const char *name) {
    (void)user;
    fprintf(stderr, "dfd worker: %s ready\n", name);
}

static void job_log(void *user, const char *line) {
    if (!*(int *)user) cli_log_line(line); /* user: quiet */
}

int cmd_worker(int argc, char **argv) {
    dfd_worker_options c;
    dfd_worker_options_default(&c);
    dfd_options *opts = &c.analysis;
    int quiet = 0, k;
    const char *v;
    long n;
    double d;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_worker_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &v)) > 0) {
        switch (k) {
        case O_BROKER:
            if (cli_broker_opt("worker", v, &c.broker_url)) return DFD_EXIT_USAGE;
            break;
        case O_THREADS:
            if (cli_parse_int(v, 1, CLI_THREADS_MAX, &n))
                return cli_usage_error("worker", "--threads must be 1..%d", CLI_THREADS_MAX);
            c.threads = (int)n;
            break;
        case O_SPOOL: c.spool_dir = v; break;
        case O_VIS:
            if (cli_parse_double(v, 0.1, 1e6, &d))
                return cli_usage_error("worker", "--visibility-timeout must be 0.1..1e6 seconds");
            c.visibility_timeout_s = d;
            break;
        case O_ATTEMPTS:
            if (cli_parse_int(v, 1, 1000, &n)) return cli_usage_error("worker", "--max-attempts must be 1..1000");
            c.max_attempts = (int)n;
            break;
        case O_MAXUP:
            if (cli_parse_int(v, 1, 1 << 20, &n)) return cli_usage_error("worker", "--max-upload-mb must be 1..1048576");
            c.max_upload_bytes = (uint64_t)n << 20;
            break;
        case O_NAME:
            if (!*v || strlen(v) > 100 || strpbrk(v, " \t\r\n"))
                return cli_usage_error("worker", "--name must be 1..100 characters without spaces");
            c.name = v;
            break;
        case 'q': quiet = 1; break;
        default:
            if (cli_model_opt("worker", k, v, opts) < 0) return DFD_EXIT_USAGE;
        }
    }
    if (k < 0) return DFD_EXIT_USAGE;
    if (p.first < argc) return cli_usage_error("worker", "unexpected argument '%s'", argv[p.first]);
    if (!c.broker_url) return cli_usage_error("worker", "--broker redis://HOST:PORT is required");
    if (cli_model_opts_check("worker", opts)) return DFD_EXIT_USAGE;
    c.on_ready = on_ready;
    c.log = job_log;
    c.user = &quiet;

    int stop_fd = cli_stop_pipe_open("worker");
    if (stop_fd < 0) return DFD_EXIT_FAILED;

    dfd_error err;
    int rc = dfd_worker(&c, stop_fd, &err);
    cli_stop_pipe_close();
    if (rc != DFD_OK) {
        fprintf(stderr, "dfd worker: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    fprintf(stderr, "dfd worker: stopped\n");
    return DFD_EXIT_OK;
}
