/* opts.c — the one option parser of every sub-command: getopt_long driven by the
 * command's cli_opt table, which also writes the command's help; and the model options
 * scan, serve and worker share (CLI_MODEL_OPTS). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_dry_parse;

#define HELP_COL 25 /* where option descriptions start */

void cli_command_help(const cli_command *c, FILE *out) {
    fputs(c->usage, out);
    for (const cli_opt *o = c->opts; o && (o->name || o->help); o++) {
        if (!o->name) { /* a heading; "" a blank line */
            if (*o->help) fprintf(out, "%s%s\n", o == c->opts ? "" : "\n", o->help);
            else fputc('\n', out);
            continue;
        }
        char label[128];
        int n;
        if (o->key > 0 && o->key < 256)
            n = snprintf(label, sizeof label, "  -%c, --%s%s%s", o->key, o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        else
            n = snprintf(label, sizeof label, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fputs(label, out);
        if (!o->help || !*o->help) {
            fputc('\n', out);
            continue;
        }
        if (n < HELP_COL - 1)
            fprintf(out, "%*s", HELP_COL - n, "");
        else
            fputs("  ", out);
        for (const char *h = o->help; *h; h++) {
            fputc(*h, out);
            if (*h == '\n' && h[1]) fprintf(out, "%*s", HELP_COL, "");
        }
        fputc('\n', out);
    }
    if (c->epilog) {
        fputc('\n', out);
        fputs(c->epilog, out);
    }
}

int cli_parser_init(cli_parser *p, const cli_command *c, int argc, char **argv) {
    memset(p, 0, sizeof *p);
    p->cmd = c;
    p->argc = argc;
    p->argv = argv;
    int n = 0, s = 0;
    p->shorts[s++] = ':'; /* first: a missing value is reported as ':', not '?' */
    for (const cli_opt *o = c->opts; o && (o->name || o->help); o++) {
        if (!o->name) continue;
        if (n + 1 >= (int)(sizeof p->longs / sizeof p->longs[0]) || s + 3 >= (int)sizeof p->shorts) {
            fprintf(stderr, "dfd %s: too many options for the parser's table\n", c->name);
            return -1;
        }
        p->longs[n].name = o->name;
        p->longs[n].has_arg = o->arg ? required_argument : no_argument;
        p->longs[n].flag = NULL;
        p->longs[n].val = o->key;
        p->entries[n] = o;
        n++;
        if (o->key > 0 && o->key < 256) {
            p->shorts[s++] = (char)o->key;
            if (o->arg) p->shorts[s++] = ':';
        }
    }
    memset(&p->longs[n], 0, sizeof p->longs[n]);
    p->shorts[s] = 0;
    optind = 0; /* 0: getopt re-initialises (GNU), so each command parses afresh */
    opterr = 0;
    return 0;
}

static const cli_opt *find_key(const cli_command *c, int key) {
    for (const cli_opt *o = c->opts; o && (o->name || o->help); o++)
        if (o->name && o->key == key) return o;
    return NULL;
}

int cli_next(cli_parser *p, const char **value) {
    for (;;) {
        int idx = -1;
        int k = getopt_long(p->argc, p->argv, p->shorts, p->longs, &idx);
        *value = optarg;
        p->opt = idx >= 0 ? p->entries[idx] : k > 0 ? find_key(p->cmd, k) : NULL;
        if (k == -1) {
            p->first = optind;
            if (cli_dry_parse) { /* tests/cli/options.sh: what was parsed, then stop */
                for (int i = optind; i < p->argc; i++) printf("operand %s\n", p->argv[i]);
                fflush(stdout);
                exit(DFD_EXIT_OK);
            }
            return 0;
        }
        const char *bad = optind > 0 && optind - 1 < p->argc ? p->argv[optind - 1] : "?";
        int is_long = bad[0] == '-' && bad[1] == '-';
        if (k == ':') {
            if (is_long) return cli_usage_error(p->cmd->name, "%s needs a value", bad), -1;
            return cli_usage_error(p->cmd->name, "-%c needs a value", optopt), -1;
        }
        if (k == '?') {
            if (is_long && strchr(bad, '=')) { /* --flag=value: a known flag given a value? */
                size_t n = (size_t)(strchr(bad, '=') - bad - 2);
                for (const cli_opt *o = p->cmd->opts; o && (o->name || o->help); o++)
                    if (o->name && !o->arg && strlen(o->name) == n && strncmp(o->name, bad + 2, n) == 0)
                        return cli_usage_error(p->cmd->name, "--%s takes no value", o->name), -1;
            }
            if (!is_long && optopt) return cli_usage_error(p->cmd->name, "unknown option '-%c'", optopt), -1;
            return cli_usage_error(p->cmd->name, "unknown option '%s'", bad), -1;
        }
        if (cli_dry_parse) {
            const cli_opt *o = p->opt;
            printf("--%s%s%s\n", o ? o->name : "?", *value ? "=" : "", *value ? *value : "");
            continue;
        }
        return k;
    }
}

int cli_model_opt(const char *cmd, int key, const char *value, dfd_options *o) {
    long n;
    switch (key) {
    case CLI_O_MODELS: o->models_dir = value; return 1;
    case CLI_O_MIMG: o->image_model = value; return 1;
    case CLI_O_MVID: o->video_model = value; return 1;
    case CLI_O_MSYN: o->synthetic_model = value; return 1;
    case CLI_O_NOSYN: o->no_synthetic = 1; return 1;
    case CLI_O_FRAMES:
        if (cli_parse_int(value, 1, CLI_FRAMES_MAX, &n))
            return cli_usage_error(cmd, "--frames must be 1..%d", CLI_FRAMES_MAX), -1;
        o->frames = (int)n;
        return 1;
    }
    return 0;
}

int cli_broker_opt(const char *cmd, const char *value, const char **url) {
    if (strncmp(value, "redis://", 8) != 0)
        return cli_usage_error(cmd, "--broker must be redis://[user:password@]HOST:PORT[/DB]"), -1;
    *url = value;
    return 0;
}

int cli_model_opts_check(const char *cmd, const dfd_options *o) {
    if (o->synthetic_model && o->no_synthetic)
        return cli_usage_error(cmd, "--model-synthetic and --no-synthetic contradict each other"), -1;
    return 0;
}
