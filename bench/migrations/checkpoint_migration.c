/* A checkpointing migration (plugin ABI 1.1): adds 1 to field n of every
 * user, in _id order, committing a checkpoint every $MIGRATION_CHECKPOINT_EVERY users
 * (default 100000) with the last _id done as its resume token, and resuming
 * after that _id when a run was interrupted. Each checkpoint writes
 * "checkpoint K" to the log, so a test knows when to kill the run (and
 * pauses $MIGRATION_CHECKPOINT_PAUSE_MS after it, so the kill lands mid-run). With n
 * counted by $inc, a user transformed twice (or never) shows at the end.
 * Used by bench/checkpoint-torture.sh and the end-to-end tests. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "migrator_plugin.h"

static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u;
    if (!MIGRATOR_HOST_HAS(h, checkpoint)) {
        h->set_error(t, "this host cannot checkpoint (plugin ABI 1.0)");
        return MIGRATOR_ERROR;
    }
    const char *every_text = getenv("MIGRATION_CHECKPOINT_EVERY");
    long every = every_text ? atol(every_text) : 100000;
    const char *token = h->resume_token(t);
    long last = token ? atol(token) : 0;
    long checkpoints = 0;
    char filter[64], message[64];
    migrator_status st;
    for (;;) {
        migrator_cursor *c;
        snprintf(filter, sizeof filter, "{\"_id\":{\"$gt\":%ld}}", last);
        if ((st = h->find(t, "users", filter, &c)) != MIGRATOR_OK) return st;
        const char *doc;
        size_t len;
        long done = 0;
        while (done < every && (st = h->cursor_next(c, &doc, &len)) == MIGRATOR_OK) {
            last = atol(doc + 7); /* {"_id":N,... */
            snprintf(filter, sizeof filter, "{\"_id\":%ld}", last);
            if ((st = h->update(t, "users", filter, "{\"$inc\":{\"n\":1}}", NULL)) != MIGRATOR_OK) {
                h->cursor_close(c);
                return st;
            }
            done++;
        }
        h->cursor_close(c);
        if (st != MIGRATOR_OK && st != MIGRATOR_DONE) return st;
        if (done < every) return MIGRATOR_OK; /* the end: the final commit is the host's */
        char tok[32];
        snprintf(tok, sizeof tok, "%ld", last);
        if ((st = h->checkpoint(t, tok)) != MIGRATOR_OK) return st;
        snprintf(message, sizeof message, "checkpoint %ld (after _id %ld)", ++checkpoints, last);
        h->log(t, MIGRATOR_LOG_INFO, message);
        const char *pause = getenv("MIGRATION_CHECKPOINT_PAUSE_MS");
        if (pause) usleep((useconds_t)atol(pause) * 1000);
    }
}

static migrator_status down(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u;
    /* Undoes whatever part was done: only users with n have it. */
    return h->update(t, "users", "{\"n\":{\"$exists\":true}}", "{\"$unset\":{\"n\":1}}", NULL);
}

static const migrator_migration_v1 m = { "050_count_users", "Count users (checkpointed)", "benchmark", "1.0.0", NULL,
                                         up, down, NULL };
static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b, "checkpointed", NULL, 1, &m };
__attribute__((visibility("default"))) const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
