// The practical limit for the data-migration benchmark: the same work in C
// on raw LMDB, in one write transaction. Users are keyed by their id (8 bytes,
// big-endian) and hold the same ~120-byte JSON as the store's documents.
//   data_baseline DIR N fanout|addfield      (loads N users untimed, then times the migration)
// Prints "seconds <s>".
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(x) do { int rc_ = (x); if (rc_) { fprintf(stderr, "%s: %s\n", #x, mdb_strerror(rc_)); exit(1); } } while (0)

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void key(unsigned long id, unsigned char out[8]) { for (int i = 0; i < 8; i++) out[i] = (unsigned char)(id >> (56 - 8 * i)); }

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s DIR N fanout|addfield\n", argv[0]); return 2; }
    unsigned long n = strtoul(argv[2], NULL, 10);
    int fanout = strcmp(argv[3], "fanout") == 0;
    MDB_env *env; MDB_txn *txn; MDB_dbi users, settings; MDB_cursor *cur;
    CHECK(mdb_env_create(&env));
    CHECK(mdb_env_set_maxdbs(env, 4));
    CHECK(mdb_env_set_mapsize(env, 8UL << 30));
    CHECK(mdb_env_open(env, argv[1], MDB_NOTLS, 0600));
    CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK(mdb_dbi_open(txn, "users", MDB_CREATE, &users));
    CHECK(mdb_dbi_open(txn, "settings", MDB_CREATE, &settings));
    static const char *cities[] = { "Oslo", "Lisbon", "Porto", "Kyoto", "Bergen", "Lima" };
    char doc[256]; unsigned char k[8];
    for (unsigned long i = 1; i <= n; i++) {
        int len = snprintf(doc, sizeof doc, "{\"_id\":%lu,\"email\":\"user%lu@example.com\",\"name\":\"User %lu\",\"age\":%lu,\"city\":\"%s\",\"created_at\":\"2026-11-%02luT09:00:00.000Z\"}",
                           i, i, i, 18 + i % 60, cities[i % 6], 1 + i % 28);
        key(i, k);
        MDB_val kv = { 8, k }, dv = { (size_t)len, doc };
        CHECK(mdb_put(txn, users, &kv, &dv, MDB_APPEND));
    }
    CHECK(mdb_txn_commit(txn));

    double t0 = now();
    CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK(mdb_cursor_open(txn, users, &cur));
    MDB_val kv, dv;
    unsigned long seq = 0;
    char out[512];
    int rc;
    for (rc = mdb_cursor_get(cur, &kv, &dv, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &kv, &dv, MDB_NEXT)) {
        const char *d = dv.mv_data;
        if (fanout) {
            // The user's id, read from the JSON as a plugin would.
            size_t e = 7; while (e < dv.mv_size && d[e] != ',') e++;
            int len = snprintf(out, sizeof out, "{\"_id\":%lu,\"user_id\":%.*s,\"theme\":\"light\",\"notifications\":true}", ++seq, (int)(e - 7), d + 7);
            key(seq, k);
            MDB_val sk = { 8, k }, sv = { (size_t)len, out };
            CHECK(mdb_put(txn, settings, &sk, &sv, MDB_APPEND));
        } else {
            // Splice ,"plan":"free" before the closing brace and write it back.
            memcpy(out, d, dv.mv_size - 1);
            memcpy(out + dv.mv_size - 1, ",\"plan\":\"free\"}", 15);
            unsigned char kc[8]; memcpy(kc, kv.mv_data, 8);
            MDB_val ck = { 8, kc }, nv = { dv.mv_size + 14, out };
            CHECK(mdb_cursor_put(cur, &ck, &nv, MDB_CURRENT));
        }
    }
    if (rc != MDB_NOTFOUND) CHECK(rc);
    mdb_cursor_close(cur);
    CHECK(mdb_txn_commit(txn));
    printf("seconds %.4f\n", now() - t0);
    mdb_env_close(env);
    return 0;
}
