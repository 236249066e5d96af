// Freezes the v1 layout on LP64 targets: editing the header in a way that
// moves a field breaks this build, not plugins in the field.
#include "migrator_abi_layout.h"

#if defined(__LP64__)
#define AT(T, f, off) _Static_assert(offsetof(T, f) == (off), #T "." #f " moved")
AT(migrator_host_v1, abi_major, 0);
AT(migrator_host_v1, struct_size, 8);
AT(migrator_host_v1, create_collection, 16);
AT(migrator_host_v1, insert, 48);
AT(migrator_host_v1, find, 56);
AT(migrator_host_v1, cursor_next, 64);
AT(migrator_host_v1, update, 80);
AT(migrator_host_v1, log, 104);
AT(migrator_host_v1, last_error, 128);
/* ABI 1.1: appended; a 1.0 table ends at 136. */
AT(migrator_host_v1, cursor_replace, 136);
AT(migrator_host_v1, cursor_delete, 144);
AT(migrator_host_v1, insert_n, 152);
AT(migrator_host_v1, get_by_id, 160);
AT(migrator_host_v1, checkpoint, 168);
AT(migrator_host_v1, resume_token, 176);
_Static_assert(sizeof(migrator_host_v1) == 184, "migrator_host_v1 size");
AT(migrator_migration_v1, id, 0);
AT(migrator_migration_v1, checksum, 32);
AT(migrator_migration_v1, up, 40);
AT(migrator_migration_v1, down, 48);
AT(migrator_migration_v1, userdata, 56);
_Static_assert(sizeof(migrator_migration_v1) == 64, "migrator_migration_v1 size");
AT(migrator_plugin_v1, struct_size, 8);
AT(migrator_plugin_v1, name, 16);
AT(migrator_plugin_v1, toolchain, 24);
AT(migrator_plugin_v1, migration_count, 32);
AT(migrator_plugin_v1, migrations, 40);
_Static_assert(sizeof(migrator_plugin_v1) == 48, "migrator_plugin_v1 size");
#endif

/// The offsets above, for the Swift-side layout test.
size_t migrator_abi_layout(size_t *out, size_t capacity) {
    const size_t table[] = {
        offsetof(migrator_host_v1, create_collection), offsetof(migrator_host_v1, last_error), sizeof(migrator_host_v1),
        offsetof(migrator_migration_v1, checksum), offsetof(migrator_migration_v1, userdata), sizeof(migrator_migration_v1),
        offsetof(migrator_plugin_v1, toolchain), offsetof(migrator_plugin_v1, migration_count),
        offsetof(migrator_plugin_v1, migrations), sizeof(migrator_plugin_v1),
    };
    size_t n = sizeof(table) / sizeof(table[0]);
    for (size_t i = 0; i < n && i < capacity; i++) out[i] = table[i];
    return n;
}
