#define _GNU_SOURCE
/* Raw LMDB baseline for bench/store-bench.sh: the same work as StoreBench,
 * written directly against mdb_put/mdb_get. Keys use the store's layout
 * (4-byte collection id + 0x01 + big-endian int64 with the sign flipped). */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define CHECK(x) do { int rc_ = (x); if (rc_) { fprintf(stderr, "%s: %s\n", #x, mdb_strerror(rc_)); exit(1); } } while (0)

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static void make_key(unsigned char *k, int64_t id) {
    k[0] = 0; k[1] = 0; k[2] = 0; k[3] = 1; k[4] = 0x01;
    uint64_t v = (uint64_t)id ^ (1ULL << 63);
    for (int i = 0; i < 8; i++) k[5 + i] = (unsigned char)(v >> (56 - 8 * i));
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s DIR N LOOKUPS\n", argv[0]); return 2; }
    const char *dir = argv[1];
    long n = atol(argv[2]), lookups = atol(argv[3]);
    MDB_env *env; MDB_dbi docs, emails; MDB_txn *txn; MDB_cursor *c; MDB_val k, v;
    CHECK(mdb_env_create(&env));
    CHECK(mdb_env_set_maxdbs(env, 8));
    CHECK(mdb_env_set_mapsize(env, 1UL << 33));
    CHECK(mdb_env_open(env, dir, MDB_NOTLS, 0600));
    unsigned char key[13];
    char buf[512];

    double t = now();
    CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK(mdb_dbi_open(txn, "docs", MDB_CREATE, &docs));
    for (long i = 0; i < n; i++) {
        int len = snprintf(buf, sizeof buf,
            "{\"_id\":%ld,\"email\":\"user%07ld@example.com\",\"name\":\"User %ld\",\"created_at\":\"2026-11-26T10:00:00.000Z\",\"flags\":%ld}",
            i, i, i, i % 16);
        make_key(key, i);
        k.mv_size = 13; k.mv_data = key; v.mv_size = len; v.mv_data = buf;
        CHECK(mdb_put(txn, docs, &k, &v, MDB_NOOVERWRITE));
    }
    CHECK(mdb_txn_commit(txn));
    printf("insert %.3f\n", now() - t);

    t = now();
    CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    CHECK(mdb_cursor_open(txn, docs, &c));
    size_t bytes = 0; long count = 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) { bytes += v.mv_size; count++; }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    printf("scan %.3f\n", now() - t);
    if (count != n) { fprintf(stderr, "scan saw %ld documents\n", count); return 1; }

    t = now();
    CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK(mdb_cursor_open(txn, docs, &c));
    static const char add[] = ",\"plan\":\"free\"}";
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        memcpy(buf, v.mv_data, v.mv_size - 1);
        memcpy(buf + v.mv_size - 1, add, sizeof add - 1);
        memcpy(key, k.mv_data, 13);
        MDB_val nk = { 13, key }, nv = { v.mv_size - 1 + sizeof add - 1, buf };
        CHECK(mdb_cursor_put(c, &nk, &nv, MDB_CURRENT));
    }
    mdb_cursor_close(c);
    CHECK(mdb_txn_commit(txn));
    printf("update_many %.3f\n", now() - t);

    t = now();
    CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK(mdb_dbi_open(txn, "emails", MDB_CREATE, &emails));
    CHECK(mdb_cursor_open(txn, docs, &c));
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const char *e = memmem(v.mv_data, v.mv_size, "\"email\":\"", 9);
        if (!e) continue;
        e += 9;
        const char *end = memchr(e, '"', (const char *)v.mv_data + v.mv_size - e);
        MDB_val ek = { (size_t)(end - e), (void *)e }, ev = { 13, k.mv_data };
        CHECK(mdb_put(txn, emails, &ek, &ev, MDB_NOOVERWRITE));
    }
    mdb_cursor_close(c);
    CHECK(mdb_txn_commit(txn));
    printf("index_build %.3f\n", now() - t);

    t = now();
    CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    uint64_t seed = 42; long found = 0;
    for (long i = 0; i < lookups; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        long id = (long)((seed >> 33) % (uint64_t)n);
        int len = snprintf(buf, sizeof buf, "user%07ld@example.com", id);
        MDB_val ek = { (size_t)len, buf }, ev, dv;
        if (mdb_get(txn, emails, &ek, &ev) == 0 && mdb_get(txn, docs, &ev, &dv) == 0) found++;
    }
    mdb_txn_abort(txn);
    printf("lookups %.3f\n", now() - t);
    if (found != lookups) { fprintf(stderr, "found %ld of %ld\n", found, lookups); return 1; }

    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    printf("peak_rss_mb %.1f\n", ru.ru_maxrss / 1024.0);
    mdb_env_close(env);
    return 0;
}
