/*
 * cli — the `dfd` command: argument parsing and human output, on top of libdfd.
 * Each sub-command is one function, int cmd_NAME(int argc, char **argv), with
 * argv[0] the sub-command's name; it returns the process exit code.
 */
#ifndef DFD_CLI_H
#define DFD_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "dfd/dfd.h"

/* Exit codes, documented in `dfd --help`. */
enum { DFD_EXIT_OK = 0, DFD_EXIT_FAILED = 1, DFD_EXIT_USAGE = 2 };

/* ---- Options: one table per sub-command (opts.c) ------------------------------------
 * The table drives getopt_long (so --name=value and --name value both work, options and
 * operands mix, "--" ends the options) and writes the command's help; tests/cli/options.sh
 * runs every option of every table as --name=value. */
typedef struct cli_opt {
    const char *name; /* long name without "--"; NULL with help set: a heading line in the
                       * help; NULL with help NULL: the end of the table */
    int key;          /* a short letter ('r' for -r) or an id >= 256; entries may share an id
                       * (p->opt tells them apart), a short letter is unique */
    const char *arg;  /* the value's name in the help ("N", "PATH"); NULL: takes no value */
    const char *help; /* what it does; each '\n' starts an indented continuation line */
} cli_opt;

typedef struct cli_command {
    const char *name;   /* the sub-command, for messages */
    const char *usage;  /* "Usage: ..." and the description, printed before the options */
    const cli_opt *opts;
    const char *epilog; /* printed after the options (a blank line between), or NULL */
} cli_command;

#define X(name, fn, summary) int fn(int argc, char **argv); extern const cli_command fn##_cmd;
#include "commands.def"
#undef X
/* Hidden: measures the heat maps (cmd_explain_eval.c). */
int cmd_explain_eval(int argc, char **argv);
extern const cli_command cmd_explain_eval_cmd;

/* ---- The analysis's model options: shared by scan, serve and worker (opts.c) ----------
 * One set of entries (CLI_MODEL_OPTS, placed in a command's table) and one parser, so that
 * the three commands take the same options with the same help and the same limits. */
enum { CLI_O_MODELS = 1000, CLI_O_MIMG, CLI_O_MVID, CLI_O_MSYN, CLI_O_NOSYN, CLI_O_FRAMES };
#define CLI_FRAMES_MAX 10000 /* frames sampled per video: --frames 1..CLI_FRAMES_MAX (faces too) */
#define CLI_THREADS_MAX 4096 /* --threads 1..CLI_THREADS_MAX, for every command that has it */
#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)
#define CLI_MODEL_OPTS                                                                                          \
    {"models", CLI_O_MODELS, "DIR", "where the default and face models live (the face models in it or in\n"     \
                                    "its registry/; docs/api.md, The C library)"},                              \
    {"model-image", CLI_O_MIMG, "PATH", "image model (.safetensors); default: the newest\n"                     \
                                        "dfd-image-*.safetensors where models are looked for"},                  \
    {"model-video", CLI_O_MVID, "PATH", "video model (CNN-LSTM); default: per-frame scores over time"},          \
    {"model-synthetic", CLI_O_MSYN, "PATH", "synthetic-face model (task 'synthetic'), run beside the image\n"   \
                                            "model; default: dfd-synthetic-*.safetensors beside the default\n" \
                                            "image model, when there is one"},                                   \
    {"no-synthetic", CLI_O_NOSYN, NULL, "no synthetic-face detector, even when the default one is present"},    \
    {"frames", CLI_O_FRAMES, "N", "frames sampled per video (default 30, at most " CLI_STR(CLI_FRAMES_MAX) ")"}
/* Applies option key (with its value) to o when it is one of CLI_MODEL_OPTS: 1 when it
 * was, 0 when key is another option, -1 after a usage error has been printed. */
int cli_model_opt(const char *cmd, int key, const char *value, dfd_options *o);
/* After parsing: -1 (a usage error printed) when the model options contradict each other. */
int cli_model_opts_check(const char *cmd, const dfd_options *o);
/* --broker URL (serve, worker): 0 with *url set, -1 after a usage error has been printed. */
int cli_broker_opt(const char *cmd, const char *value, const char **url);

/* Writes a command's help: usage, its options from the table, epilog. */
void cli_command_help(const cli_command *c, FILE *out);

typedef struct cli_parser {
    const cli_command *cmd;
    int argc;
    char **argv;
    int first;          /* after cli_next returned 0: the operands are argv[first .. argc-1] */
    const cli_opt *opt; /* after cli_next returned a key: the option's table entry */
    struct option longs[96];
    const cli_opt *entries[96]; /* the table entry of each of longs */
    char shorts[64];
} cli_parser;

/* Prepares to parse argv (argv[0] the sub-command's name). -1 when the table is too big. */
int cli_parser_init(cli_parser *p, const cli_command *c, int argc, char **argv);
/* The next option's key with *value its value (NULL for a flag); 0 at the end of the
 * options (operands from p->first on); -1 after a usage error has been printed (an unknown
 * option, a value missing or given to a flag): the command returns DFD_EXIT_USAGE. */
int cli_next(cli_parser *p, const char **value);
/* Set by `dfd --dry-parse COMMAND ...` (tests only): cli_next prints each option it parses
 * as --name[=value] and each operand as "operand X", then exits 0 without running. */
extern int cli_dry_parse;

/* SIGINT and SIGTERM become bytes on a pipe (all a handler may safely do): returns its
 * read end, for dfd_serve / dfd_worker to poll, or -1 with a message printed. SIGPIPE
 * is ignored. cli_stop_pipe_close closes both ends. */
int cli_stop_pipe_open(const char *cmd);
void cli_stop_pipe_close(void);
/* A log line on stderr, after the local time (serve's requests, worker's jobs). */
void cli_log_line(const char *line);

/* Prints "dfd NAME: message" to stderr and returns DFD_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the help of a sub-command (from the cli_command each cmd_*.c defines). */
int cli_print_help(const char *cmd, FILE *out);

/* True when colour should be used on this stream (a TTY, and NO_COLOR unset). */
int cli_use_color(FILE *f);

/* A progress bar on stderr, drawn only when stderr is a terminal. */
typedef struct cli_progress {
    int enabled;
    double last_draw_ms;
    char label[64];
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label);
void cli_progress_update(cli_progress *p, double fraction, const char *detail);
void cli_progress_done(cli_progress *p);
/* A dfd_progress_fn (fraction only) that draws the cli_progress passed as user; never cancels. */
int cli_progress_fn(void *user, double fraction);

/* Parses a positive integer / a double option value; returns 0 on success. */
int cli_parse_int(const char *s, long min, long max, long *out);

/* The files a command was given: a directory adds its image and video files (told by
 * content, sorted by name; its sub-directories too when recursive), anything else is
 * added as named (a missing file is then the command's error to report). */
typedef struct cli_file_list {
    char **paths;
    int n, cap;
} cli_file_list;
int cli_files_add(cli_file_list *l, char *const *args, int n, int recursive); /* 0, or -1: no memory */
void cli_files_free(cli_file_list *l);
/* Sets err (if not NULL) to code and a formatted message; returns code. */
int cli_fail(dfd_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int cli_parse_double(const char *s, double min, double max, double *out);

#endif
