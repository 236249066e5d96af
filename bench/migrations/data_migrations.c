// The data-migration benchmark's C plugins. Compile with -DVARIANT=1 (fan-out),
// 2 (add-field with one host-side update) or 3 (add-field, per-document
// update by _id while iterating a cursor); each build exports one migration.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "migrator_plugin.h"

// For bench/crash-torture.sh: after this migration's first write, inside its
// open transaction, create the file $MIGRATION_TORTURE_MARKER if $MIGRATION_TORTURE_MARK names
// this migration. The torture kills the run only after it sees the file, so
// every kill provably lands inside a write transaction. Checked once per run.
static void first_write_done(const char *id) {
    static int checked;
    if (checked) return;
    checked = 1;
    const char *mark = getenv("MIGRATION_TORTURE_MARK"), *path = getenv("MIGRATION_TORTURE_MARKER");
    if (!mark || !path || strcmp(mark, id) != 0) return;
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
}

// Stored documents start with {"_id":<value>: copy the value (a number here).
static size_t id_of(const char *doc, size_t len, char *out, size_t cap) {
    size_t p = 7, e = 7;
    while (e < len && doc[e] != ',' && doc[e] != '}') e++;
    if (e - p + 1 > cap) return 0;
    memcpy(out, doc + p, e - p);
    out[e - p] = 0;
    return e - p;
}

static migrator_status fail(const migrator_host_v1 *h, migrator_txn *t, migrator_cursor *c, migrator_status st) {
    if (c) h->cursor_close(c);
    return st;
}

#if VARIANT == 1
#define ID "010_fanout_user_settings"
static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u;
    migrator_cursor *c;
    const char *doc; size_t len; char id[64], out[128];
    migrator_status st = h->find(t, "users", NULL, &c);
    if (st) return st;
    /* insert_n (ABI 1.1) takes the length: no strlen, no NUL needed. */
    int has_insert_n = MIGRATOR_HOST_HAS(h, insert_n);
    while ((st = h->cursor_next(c, &doc, &len)) == MIGRATOR_OK) {
        id_of(doc, len, id, sizeof id);
        int n = snprintf(out, sizeof out, "{\"user_id\":%s,\"theme\":\"light\",\"notifications\":true}", id);
        st = has_insert_n ? h->insert_n(t, "user_settings", out, (size_t)n, NULL, NULL)
                          : h->insert(t, "user_settings", out);
        if (st) return fail(h, t, c, st);
        first_write_done(ID);
    }
    h->cursor_close(c);
    return st == MIGRATOR_DONE ? MIGRATOR_OK : st;
}
#elif VARIANT == 2
#define ID "020_add_plan_bulk"
static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u;
    return h->update(t, "users", "{}", "{\"$set\":{\"plan\":\"free\"}}", NULL);
}
#elif VARIANT == 4
#define ID "040_add_plan_replace"
/* The per-document loop through ABI 1.1: replace the document the cursor is on. */
static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u;
    static const char field[] = ",\"plan\":\"free\"}";
    migrator_cursor *c;
    const char *doc; size_t len; char out[4096];
    if (!MIGRATOR_HOST_HAS(h, cursor_replace)) return MIGRATOR_ERROR;
    migrator_status st = h->find(t, "users", NULL, &c);
    if (st) return st;
    while ((st = h->cursor_next(c, &doc, &len)) == MIGRATOR_OK) {
        if (len + sizeof field > sizeof out) return fail(h, t, c, MIGRATOR_INVALID);
        memcpy(out, doc, len - 1);
        memcpy(out + len - 1, field, sizeof field - 1);
        if ((st = h->cursor_replace(c, out, len - 1 + sizeof field - 1))) return fail(h, t, c, st);
        first_write_done(ID);
    }
    h->cursor_close(c);
    return st == MIGRATOR_DONE ? MIGRATOR_OK : st;
}
#else
#define ID "030_add_plan_loop"
static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u;
    migrator_cursor *c;
    const char *doc; size_t len; char id[64], filter[96];
    migrator_status st = h->find(t, "users", NULL, &c);
    if (st) return st;
    while ((st = h->cursor_next(c, &doc, &len)) == MIGRATOR_OK) {
        id_of(doc, len, id, sizeof id);
        snprintf(filter, sizeof filter, "{\"_id\":%s}", id);
        if ((st = h->update(t, "users", filter, "{\"$set\":{\"plan\":\"free\"}}", NULL))) return fail(h, t, c, st);
        first_write_done(ID);
    }
    h->cursor_close(c);
    return st == MIGRATOR_DONE ? MIGRATOR_OK : st;
}
#endif

static const migrator_migration_v1 m = { ID, ID, "benchmark", "1.0.0", NULL, up, NULL, NULL };
static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b, "bench-c", NULL, 1, &m };
__attribute__((visibility("default"))) const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
