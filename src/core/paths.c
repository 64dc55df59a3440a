/* paths.c — where the shipped models are looked for when no folder is named.
 *
 * After $DFD_MODELS_DIR (each caller reads it, since image and face models differ in
 * what it names), in this order:
 *   1. ./models                               (the source tree, as the README runs dfd)
 *   2. <executable's folder>/../models          (build/dfd in the source tree)
 *   3. <executable's folder>/../share/dfd/models (an installed dfd: PREFIX/bin/dfd)
 *   4. <libdfd.so's folder>/../share/dfd/models  (a program linked with the installed
 *                                                 shared library, at any prefix)
 *      (3 and 4: the relative paths from the install's bin and lib folders to its
 *      share/dfd, e.g. ../../share/dfd from lib/x86_64-linux-gnu)
 *   5. DFD_INSTALL_DATADIR/models              (the prefix configured at build time: a
 *                                                 program linked with libdfd.a)
 * Installed trees are relocatable through 3 and 4: nothing else is compiled in. */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

/* Set by CMakeLists.txt from GNUInstallDirs (these are its defaults). */
#ifndef DFD_INSTALL_DATADIR
#define DFD_INSTALL_DATADIR "/usr/local/share/dfd"
#endif
#ifndef DFD_BIN_TO_DATA
#define DFD_BIN_TO_DATA "../share/dfd"
#endif
#ifndef DFD_LIB_TO_DATA
#define DFD_LIB_TO_DATA "../share/dfd"
#endif

/* Copies the folder part of path into dir (cap bytes); 0 when there is none. */
static int parent_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) return 0;
    size_t n = (size_t)(slash - path);
    if (n + 1 > cap) return 0;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return 1;
}

int dfd_model_dirs(char dirs[][DFD_PATH_MAX], int max) {
    int n = 0;
#define ADD(...)                                                                  \
    do {                                                                          \
        if (n < max) {                                                            \
            int w_ = snprintf(dirs[n], DFD_PATH_MAX, __VA_ARGS__);                \
            if (w_ > 0 && w_ < DFD_PATH_MAX) n++;                                 \
        }                                                                         \
    } while (0)
    ADD("models");
    char exe[DFD_PATH_MAX], exe_dir[DFD_PATH_MAX] = "";
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        if (parent_of(exe, exe_dir, sizeof exe_dir)) {
            ADD("%s/../models", exe_dir);
            ADD("%s/" DFD_BIN_TO_DATA "/models", exe_dir);
        }
    }
    /* The object this function is in: libdfd.so, or the program when linked statically
     * (then the same folder as above, skipped). */
    Dl_info info;
    char lib_dir[DFD_PATH_MAX];
    if (dladdr((void *)&dfd_model_dirs, &info) && info.dli_fname && info.dli_fname[0] == '/' &&
        parent_of(info.dli_fname, lib_dir, sizeof lib_dir) && strcmp(lib_dir, exe_dir) != 0)
        ADD("%s/" DFD_LIB_TO_DATA "/models", lib_dir);
    ADD("%s/models", DFD_INSTALL_DATADIR);
#undef ADD
    return n;
}
