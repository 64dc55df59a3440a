/* main.c — `dfd` entry point: global options, sub-command dispatch, help. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
    const cli_command *cmd;
};

static const struct command commands[] = {
#define X(name, fn, summary) {#name, fn, summary, &fn##_cmd},
#include "commands.def"
#undef X
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_main_help(FILE *out) {
    fprintf(out,
            "dfd %s — deepfake detection for images and videos\n\n"
            "Usage: dfd [--version] [--help] COMMAND [ARGS...]\n\n"
            "Commands:\n",
            dfd_version());
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "  %-10s %s\n\n"
            "Run 'dfd help COMMAND' or 'dfd COMMAND --help' for a command's options.\n\n"
            "Exit codes: 0 success, 1 an input could not be processed, 2 usage error.\n",
            "help", "show help for a command");
}

static const struct command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "dfd%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'dfd %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return DFD_EXIT_USAGE;
}

int cli_print_help(const char *cmd, FILE *out) {
    const struct command *c = find_command(cmd);
    if (!c) return cli_usage_error(NULL, "no such command: '%s'", cmd);
    cli_command_help(c->cmd, out);
    return DFD_EXIT_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_main_help(stderr);
        return DFD_EXIT_USAGE;
    }
    /* Hidden, for tests/cli/options.sh: parse a command's options, print them, run nothing. */
    if (strcmp(argv[1], "--dry-parse") == 0) {
        cli_dry_parse = 1;
        argv++;
        if (--argc < 2) return cli_usage_error(NULL, "--dry-parse needs a command");
    }
    const char *a = argv[1];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        print_main_help(stdout);
        return DFD_EXIT_OK;
    }
    if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
        printf("dfd %s\n", dfd_version());
        return DFD_EXIT_OK;
    }
    if (strcmp(a, "help") == 0) {
        if (argc < 3) {
            print_main_help(stdout);
            return DFD_EXIT_OK;
        }
        return cli_print_help(argv[2], stdout);
    }
    /* Not listed in the help: a measurement of the heat maps (docs/explain.md). */
    if (strcmp(a, "explain-eval") == 0) {
        for (int i = 2; i < argc; i++)
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return cli_command_help(&cmd_explain_eval_cmd, stdout), DFD_EXIT_OK;
        return cmd_explain_eval(argc - 1, argv + 1);
    }
    const struct command *c = find_command(a);
    if (!c) return cli_usage_error(NULL, "unknown command '%s'", a);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return cli_print_help(c->name, stdout);
    }
    return c->fn(argc - 1, argv + 1);
}
