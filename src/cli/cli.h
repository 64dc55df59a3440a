/*
 * cli — the `dfd` command: argument parsing and human output, on top of libdfd.
 * Each sub-command is one function, int cmd_NAME(int argc, char **argv), with
 * argv[0] the sub-command's name; it returns the process exit code.
 */
#ifndef DFD_CLI_H
#define DFD_CLI_H

#include <stdio.h>

#include "dfd/dfd.h"

/* Exit codes, documented in `dfd --help`. */
enum { DFD_EXIT_OK = 0, DFD_EXIT_FAILED = 1, DFD_EXIT_USAGE = 2 };

#define X(name, fn, summary) int fn(int argc, char **argv); extern const char fn##_help[];
#include "cli/commands.def"
#undef X
/* Hidden: measures the heat maps (cmd_explain_eval.c). */
int cmd_explain_eval(int argc, char **argv);
extern const char cmd_explain_eval_help[];

/* Prints "dfd NAME: message" to stderr and returns DFD_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the long help of a sub-command (the text each cmd_*.c registers). */
int cli_print_help(const char *cmd, FILE *out);
/* Long help text of a command (each cmd_X.c defines `const char cmd_X_help[]`). */
const char *cli_help_text(const char *cmd);

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
/* Writes w x h RGB pixels as a PNG file. */
int cli_write_png(const char *path, const uint8_t *rgb, int w, int h, dfd_error *err);
int cli_parse_double(const char *s, double min, double max, double *out);

#endif
