// The floor for loading plugins: dlopen + dlsym + call the entry of every
// .so in a directory, nothing else. Prints "load_list <seconds>".
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "migrator_plugin.h"

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s DIR\n", argv[0]); return 2; }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    DIR *d = opendir(argv[1]);
    if (!d) { perror(argv[1]); return 1; }
    struct dirent *e;
    char path[4096];
    unsigned long migrations = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".so") != 0) continue;
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        migrator_plugin_entry_fn entry = (migrator_plugin_entry_fn)dlsym(h, MIGRATOR_PLUGIN_ENTRY_NAME);
        if (!entry) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        migrations += entry()->migration_count;
    }
    closedir(d);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("load_list %.4f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    fprintf(stderr, "%lu migrations\n", migrations);
    return 0;
}
