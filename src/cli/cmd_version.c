/* cmd_version.c — `dfd version`: the versions of dfd and of the libraries it runs on. */
#include <stdio.h>

#include "cli.h"

static const cli_opt version_opts[] = {{0}};

const cli_command cmd_version_cmd = {
    "version",
    "Usage: dfd version\n\n"
    "Prints the version of dfd and of the libraries it was built with.\n",
    version_opts, NULL};

int cmd_version(int argc, char **argv) {
    int k;
    const char *val;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_version_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &val)) > 0) {
    }
    if (k < 0) return DFD_EXIT_USAGE;
    if (p.first < argc) return cli_usage_error("version", "takes no arguments");
    printf("dfd %s\n%s", dfd_version(), dfd_library_versions());
    return DFD_EXIT_OK;
}
