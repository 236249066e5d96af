// The floor for applying N one-migration plugins: dlopen each plugin and
// call its entry, then one durable LMDB write transaction per migration
// (one put, one commit with fdatasync). With "rollback", the same loading
// and then one durable transaction per migration that deletes its key,
// newest first. Prints "apply <s>" or "rollback <s>".
#include <dirent.h>
#include <dlfcn.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "migrator_plugin.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

#define CHECK(x) do { int rc_ = (x); if (rc_) { fprintf(stderr, "%s: %s\n", #x, mdb_strerror(rc_)); exit(1); } } while (0)

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s apply|rollback PLUGIN_DIR DB_DIR\n", argv[0]); return 2; }
    int rollback = strcmp(argv[1], "rollback") == 0;
    argv++;
    MDB_env *env;
    CHECK(mdb_env_create(&env));
    CHECK(mdb_env_set_mapsize(env, 1UL << 30));
    CHECK(mdb_env_open(env, argv[2], MDB_NOTLS, 0600));
    MDB_txn *txn;
    MDB_dbi dbi;
    CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK(mdb_dbi_open(txn, NULL, 0, &dbi));
    CHECK(mdb_txn_commit(txn));

    double t0 = now();
    DIR *d = opendir(argv[1]);
    if (!d) { perror(argv[1]); return 1; }
    struct dirent *e;
    char path[4096];
    char **ids = NULL;
    size_t n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0) continue;
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        migrator_plugin_entry_fn entry = (migrator_plugin_entry_fn)dlsym(h, MIGRATOR_PLUGIN_ENTRY_NAME);
        const migrator_plugin_v1 *b = entry();
        ids = realloc(ids, (n + 1) * sizeof *ids);
        ids[n++] = (char *)b->migrations[0].id;
    }
    closedir(d);
    for (size_t j = 0; j < n; j++) {
        size_t i = rollback ? n - 1 - j : j;
        MDB_val k = { strlen(ids[i]), ids[i] }, v = { 2, "{}" };
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        if (rollback) CHECK(mdb_del(txn, dbi, &k, NULL)); else CHECK(mdb_put(txn, dbi, &k, &v, 0));
        CHECK(mdb_txn_commit(txn));
    }
    printf("%s %.4f\n", rollback ? "rollback" : "apply", now() - t0);
    mdb_env_close(env);
    return 0;
}
