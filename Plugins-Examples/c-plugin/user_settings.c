/*
 * A migrator plugin in plain C: a UserSettingsMigration,
 * plus one deliberately irreversible migration.
 *
 * Build (see Makefile):
 *   cc -shared -fPIC -O2 -fvisibility=hidden -I<dir with migrator_plugin.h> \
 *      -o 004_user_settings.so user_settings.c
 * Get the header with `migrator header > migrator_plugin.h`.
 */
#include <stdio.h>
#include <string.h>
#include "migrator_plugin.h"

#define EXPORT __attribute__((visibility("default")))

/* Stored documents start with {"_id":<value>; copy that value (a number or
 * a JSON string) into out. Returns 0 on success. */
static int copy_id(const char *doc, size_t len, char *out, size_t cap) {
    static const char prefix[] = "{\"_id\":";
    size_t p = sizeof(prefix) - 1, end;
    if (len <= p || memcmp(doc, prefix, p) != 0) return -1;
    end = p;
    if (doc[end] == '"') {
        for (end++; end < len && doc[end] != '"'; end++)
            if (doc[end] == '\\') end++;
        end++;
    } else {
        while (end < len && doc[end] != ',' && doc[end] != '}') end++;
    }
    if (end > len || end - p + 1 > cap) return -1;
    memcpy(out, doc + p, end - p);
    out[end - p] = '\0';
    return 0;
}

/* 004: for every user, a user_settings document with defaults. */
static migrator_status user_settings_up(const migrator_host_v1 *host, migrator_txn *txn, void *userdata) {
    (void)userdata;
    migrator_cursor *users = NULL;
    const char *doc;
    size_t len;
    uint64_t total = 0, done = 0;
    char id[512], settings[700];
    migrator_status st;

    if ((st = host->create_index(txn, "user_settings", "user_id", 1)) != MIGRATOR_OK) return st;
    if ((st = host->count(txn, "users", NULL, &total)) != MIGRATOR_OK) return st;
    if ((st = host->find(txn, "users", "{}", &users)) != MIGRATOR_OK) return st;
    while ((st = host->cursor_next(users, &doc, &len)) == MIGRATOR_OK) {
        if (copy_id(doc, len, id, sizeof id) != 0) {
            host->set_error(txn, "a users document does not start with its _id");
            host->cursor_close(users);
            return MIGRATOR_ERROR;
        }
        int n = snprintf(settings, sizeof settings,
                         "{\"user_id\":%s,\"theme\":\"light\",\"notifications\":true}", id);
        /* ABI 1.1's insert_n takes the length we already have; a 1.0 host only has insert. */
        st = MIGRATOR_HOST_HAS(host, insert_n)
                 ? host->insert_n(txn, "user_settings", settings, (size_t)n, NULL, NULL)
                 : host->insert(txn, "user_settings", settings);
        if (st != MIGRATOR_OK) {
            host->cursor_close(users);
            return st; /* last_error already explains it */
        }
        host->progress(txn, ++done, total);
    }
    host->cursor_close(users);
    if (st != MIGRATOR_DONE) return st;
    snprintf(settings, sizeof settings, "created settings for %llu users", (unsigned long long)done);
    host->log(txn, MIGRATOR_LOG_INFO, settings);
    return MIGRATOR_OK;
}

static migrator_status user_settings_down(const migrator_host_v1 *host, migrator_txn *txn, void *userdata) {
    (void)userdata;
    /* Remove all user settings, and the collection itself. */
    migrator_status st = host->drop_collection(txn, "user_settings");
    return st == MIGRATOR_NOT_FOUND ? MIGRATOR_OK : st;
}

/* 005: drops the legacy "tags" field. The values are gone afterwards, so
 * there is no down: migrator refuses any rollback across it. */
static migrator_status drop_legacy_tags_up(const migrator_host_v1 *host, migrator_txn *txn, void *userdata) {
    (void)userdata;
    uint64_t n = 0;
    migrator_status st = host->update(txn, "users", "{\"tags\":{\"$exists\":true}}", "{\"$unset\":{\"tags\":\"\"}}", &n);
    if (st != MIGRATOR_OK) return st;
    char msg[64];
    snprintf(msg, sizeof msg, "removed tags from %llu users", (unsigned long long)n);
    host->log(txn, MIGRATOR_LOG_INFO, msg);
    return MIGRATOR_OK;
}

static const migrator_migration_v1 migrations[] = {
    {
        .id = "004_user_settings",
        .name = "User Settings",
        .description = "Add user settings collection with default values",
        .version = "1.2.0",
        .checksum = "004-v1",
        .up = user_settings_up,
        .down = user_settings_down,
    },
    {
        .id = "005_drop_legacy_tags",
        .name = "Drop Legacy Tags",
        .description = "Remove the unused tags field from users (irreversible)",
        .version = "1.3.0",
        .checksum = "005-v1",
        .up = drop_legacy_tags_up,
        .down = NULL, /* irreversible */
    },
};

static const migrator_plugin_v1 bundle = {
    .abi_major = MIGRATOR_ABI_MAJOR,
    .abi_minor = MIGRATOR_ABI_MINOR,
    .struct_size = sizeof(migrator_plugin_v1),
    .name = "example-c-migrations",
    .toolchain = NULL,
    .migration_count = sizeof migrations / sizeof migrations[0],
    .migrations = migrations,
};

EXPORT const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &bundle; }
