// The floor for applying N one-migration plugins: dlopen each plugin and
// call its entry, then one durable LMDB write transaction per migration
// (one put, one commit with fdatasync). Then the floor for rolling them
// all back: one durable transaction each again (one delete).
// Prints "apply <s>" and "rollback <s>".
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
    if (argc != 3) { fprintf(stderr, "usage: %s PLUGIN_DIR DB_DIR\n", argv[0]); return 2; }
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
    for (size_t i = 0; i < n; i++) {
        MDB_val k = { strlen(ids[i]), ids[i] }, v = { 2, "{}" };
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        CHECK(mdb_put(txn, dbi, &k, &v, 0));
        CHECK(mdb_txn_commit(txn));
    }
    double t1 = now();
    for (size_t i = n; i-- > 0;) {
        MDB_val k = { strlen(ids[i]), ids[i] };
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        CHECK(mdb_del(txn, dbi, &k, NULL));
        CHECK(mdb_txn_commit(txn));
    }
    double t2 = now();
    printf("apply %.4f\nrollback %.4f\n", t1 - t0, t2 - t1);
    mdb_env_close(env);
    return 0;
}
