/*
 * migrator_plugin.h: the C ABI between `migrator` and migration plugins.
 *
 * A plugin is a shared library (.so) that exports exactly one symbol:
 *
 *     const migrator_plugin_v1 *migrator_plugin_entry_v1(void);
 *
 * The host dlopens the library (RTLD_NOW|RTLD_LOCAL|RTLD_NODELETE; it never
 * dlcloses it), calls the entry once, and reads the bundle it returns.
 *
 * Compatibility rule: the host loads a plugin whose abi_major equals its own
 * and reads only the fields that struct_size says exist. New fields are only
 * ever appended; a field is never removed, reordered or retyped within a major.
 *
 * Memory rule: whatever the plugin hands out (descriptors, strings) belongs
 * to the plugin and must stay valid for the life of the process (use static
 * storage). Whatever the host hands out belongs to the host. Neither side
 * ever frees the other's memory.
 *
 * Threads: up and down are called on one thread, one at a time. Host
 * functions may be called only from that thread, during that call.
 *
 * Strings passed in either direction are NUL-terminated UTF-8.
 *
 * Self-contained: needs only <stdint.h> and <stddef.h>. No enums in structs,
 * fixed-width integers only, so the layout is the same for every compiler.
 */
#ifndef MIGRATOR_PLUGIN_H
#define MIGRATOR_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIGRATOR_ABI_MAJOR 1
#define MIGRATOR_ABI_MINOR 1

/* The name of the one symbol every plugin exports. */
#define MIGRATOR_PLUGIN_ENTRY_NAME "migrator_plugin_entry_v1"

/* ---------------------------------------------------------------- status */

/* What every host function and every up/down returns. */
typedef int32_t migrator_status;

#define MIGRATOR_OK              0  /* success */
#define MIGRATOR_DONE            1  /* cursor_next: no more documents */
#define MIGRATOR_ERROR         (-1) /* failure; see last_error (host) or set_error (plugin) */
#define MIGRATOR_NOT_FOUND     (-2) /* no such collection or index */
#define MIGRATOR_DUPLICATE_KEY (-3) /* a unique index or _id already holds the value */
#define MIGRATOR_INVALID       (-4) /* bad JSON, filter, update, name or argument */

/* Levels for host->log. */
#define MIGRATOR_LOG_DEBUG   0
#define MIGRATOR_LOG_INFO    1
#define MIGRATOR_LOG_WARNING 2
#define MIGRATOR_LOG_ERROR   3

/* ---------------------------------------------------------- host handles */

/* The write transaction one up/down call runs in. Owned by the host; the
 * plugin never commits or aborts it: returning MIGRATOR_OK commits, anything
 * else aborts. Valid only during that call. */
typedef struct migrator_txn migrator_txn;

/* A cursor over the documents matching a find. Owned by the host; close it
 * with cursor_close. The host closes any cursor still open when the step
 * returns, after which the handle must not be used. */
typedef struct migrator_cursor migrator_cursor;

/* ------------------------------------------------------------- host API */

/* The host's function table, passed to every up and down.
 * Every function returns a migrator_status unless stated otherwise.
 * Filters and updates are JSON text in the store's MongoDB-style language;
 * a NULL or "{}" filter matches every document. An update without "$"
 * operators replaces the whole document (keeping its _id).
 * On failure, last_error(txn) describes the problem. */
typedef struct migrator_host_v1 {
    uint32_t abi_major;   /* MIGRATOR_ABI_MAJOR of the host */
    uint32_t abi_minor;   /* MIGRATOR_ABI_MINOR of the host */
    uint32_t struct_size; /* sizeof(migrator_host_v1) in the host; check it before using a field added in a later minor */

    /* Creates an empty collection; OK if it already exists. INVALID for a bad name. */
    migrator_status (*create_collection)(migrator_txn *txn, const char *collection);
    /* Drops a collection with its documents and indexes. NOT_FOUND if it does not exist. */
    migrator_status (*drop_collection)(migrator_txn *txn, const char *collection);
    /* Builds an index on a dotted field path; unique != 0 makes it unique.
     * Creates the collection if needed. OK if the same index exists;
     * DUPLICATE_KEY if unique and existing documents repeat a value. */
    migrator_status (*create_index)(migrator_txn *txn, const char *collection, const char *path, int32_t unique);
    /* Drops the index on path. NOT_FOUND if there is none. */
    migrator_status (*drop_index)(migrator_txn *txn, const char *collection, const char *path);
    /* Inserts one JSON object; an "_id" is generated when absent.
     * Creates the collection if needed. DUPLICATE_KEY on a taken _id or unique value. */
    migrator_status (*insert)(migrator_txn *txn, const char *collection, const char *json);
    /* Opens a cursor over the documents matching filter_json, in _id order.
     * A missing collection yields an empty cursor. *out receives the cursor. */
    migrator_status (*find)(migrator_txn *txn, const char *collection, const char *filter_json, migrator_cursor **out);
    /* Returns OK with the next document in *out_json / *out_len, or DONE.
     * The bytes are compact JSON, NUL-terminated (the NUL is not counted in
     * *out_len), owned by the host, and valid until the next call on this
     * cursor, its close, or the end of the step, whichever comes first.
     * Writes made through the same txn while iterating are safe. */
    migrator_status (*cursor_next)(migrator_cursor *cursor, const char **out_json, size_t *out_len);
    /* Closes the cursor. Closing NULL is a no-op. */
    migrator_status (*cursor_close)(migrator_cursor *cursor);
    /* Applies update_json to every document matching filter_json.
     * *out_matched (may be NULL) receives the number of matched documents. */
    migrator_status (*update)(migrator_txn *txn, const char *collection, const char *filter_json, const char *update_json, uint64_t *out_matched);
    /* Deletes every matching document. *out_removed (may be NULL) receives the count. */
    migrator_status (*remove)(migrator_txn *txn, const char *collection, const char *filter_json, uint64_t *out_removed);
    /* Counts matching documents into *out_count. A missing collection counts 0. */
    migrator_status (*count)(migrator_txn *txn, const char *collection, const char *filter_json, uint64_t *out_count);
    /* Writes a message to the run's log (stderr). level: MIGRATOR_LOG_*. */
    migrator_status (*log)(migrator_txn *txn, int32_t level, const char *message);
    /* Reports progress of a long step; total 0 means unknown. Cheap: call it freely. */
    migrator_status (*progress)(migrator_txn *txn, uint64_t done, uint64_t total);
    /* Explains why the step is about to fail; the host copies the text and
     * shows it with the failure. The last call wins. */
    migrator_status (*set_error)(migrator_txn *txn, const char *message);
    /* Returns the message of the host's last failed call on txn ("" if none).
     * Owned by the host; valid until the next host call on txn. */
    const char *(*last_error)(migrator_txn *txn);

    /* ---- Added in ABI 1.1. A host older than 1.1 has a smaller struct_size:
     * test MIGRATOR_HOST_HAS(host, field) before calling one of these, and
     * fall back to the 1.0 calls (update, remove, insert, find) if it is false. */

    /* Replaces the document cursor_next returned last with the JSON object
     * json (len bytes, no NUL needed), keeping its _id (json may omit it)
     * and the indexes right. No filter, no key search: a scan writes it in
     * place. The cursor goes on with the next document. INVALID for a bad
     * document, another _id, or no current document; DUPLICATE_KEY on a
     * unique index. */
    migrator_status (*cursor_replace)(migrator_cursor *cursor, const char *json, size_t len);
    /* Deletes the document cursor_next returned last; the cursor goes on. */
    migrator_status (*cursor_delete)(migrator_cursor *cursor);
    /* insert with an explicit length (no strlen). If out_id is not NULL it
     * receives the document's _id as JSON (generated when absent) and
     * *out_id_len its length; host-owned, valid until the next host call on txn. */
    migrator_status (*insert_n)(migrator_txn *txn, const char *collection, const char *json, size_t len,
                                const char **out_id, size_t *out_id_len);
    /* The document whose _id is id_json (len bytes of JSON: "42", "\"u1\"")
     * into *out_doc / *out_len: compact JSON, NUL-terminated, host-owned,
     * valid until the next host call on txn. NOT_FOUND if there is none. */
    migrator_status (*get_by_id)(migrator_txn *txn, const char *collection, const char *id_json, size_t len,
                                 const char **out_doc, size_t *out_len);
    /* Commits the work so far, durably, together with resume_token (any
     * NUL-terminated text, such as the last _id done), and continues in a
     * new transaction. For migrations too large for one transaction; such a
     * migration is NOT atomic: after a crash the work up to the last
     * checkpoint stays, and the next apply calls up again with that token
     * (resume_token). Every open cursor is closed: find again from the token.
     * INVALID in a dry run or a reversibility check, which commit nothing. */
    migrator_status (*checkpoint)(migrator_txn *txn, const char *resume_token);
    /* The token of the last checkpoint of an earlier, interrupted run of this
     * migration, or NULL for a fresh start. Valid for the whole step. */
    const char *(*resume_token)(migrator_txn *txn);
} migrator_host_v1;

/* Whether the host's table has `field` (added in a later minor version). */
#define MIGRATOR_HOST_HAS(host, field) \
    ((host)->struct_size >= offsetof(migrator_host_v1, field) + sizeof((host)->field))

/* ------------------------------------------------------------ migrations */

/* up and down: return MIGRATOR_OK to commit; anything else aborts the
 * transaction (call set_error first to say why). Never longjmp or throw out. */
typedef migrator_status (*migrator_step_fn)(const migrator_host_v1 *host, migrator_txn *txn, void *userdata);

/* One migration. Frozen for ABI major 1: its size is the array stride. */
typedef struct migrator_migration_v1 {
    const char *id;          /* required; "<digits>_<[a-z0-9_]+>", e.g. "001_initial_setup"; at most 200 bytes */
    const char *name;        /* required; e.g. "Initial Setup" */
    const char *description; /* required; may be "" */
    const char *version;     /* required; the app or schema version, e.g. "1.2.0" */
    const char *checksum;    /* optional (NULL); a fingerprint of the logic, chosen by the author, used to detect edits */
    migrator_step_fn up;     /* required */
    migrator_step_fn down;   /* NULL means irreversible */
    void *userdata;          /* passed back to up and down unchanged */
} migrator_migration_v1;

/* ---------------------------------------------------------------- bundle */

/* What the entry returns. */
typedef struct migrator_plugin_v1 {
    uint32_t abi_major;   /* MIGRATOR_ABI_MAJOR the plugin was built against */
    uint32_t abi_minor;   /* MIGRATOR_ABI_MINOR the plugin was built against */
    uint32_t struct_size; /* sizeof(migrator_plugin_v1) as the plugin knows it */
    const char *name;     /* required; the bundle name, e.g. "billing-migrations" */
    const char *toolchain;/* "swift-6.3.1" for Swift plugins (must match the host's); NULL for C */
    uint32_t migration_count;
    const migrator_migration_v1 *migrations; /* migration_count entries */
} migrator_plugin_v1;

/* The entry symbol. Return the same static bundle on every call. It must not
 * call the host (there is no transaction yet) and should do no other work. */
typedef const migrator_plugin_v1 *(*migrator_plugin_entry_fn)(void);
const migrator_plugin_v1 *migrator_plugin_entry_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* MIGRATOR_PLUGIN_H */
