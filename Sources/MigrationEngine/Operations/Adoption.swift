/// Adopting a database that already has the changes (`baseline`), and
/// accepting an intended edit of an applied migration (`repair`). Both run
/// under the run lock and write their records and history in one transaction.
extension MigrationRunner {
    func baseline(through id: String, force: Bool, catalog: MigrationCatalog) throws -> [AvailableMigration] {
        let lock = try acquireLock()
        defer { lock.release() }
        let applied = Set(try storage.appliedMigrations().map(\.id))
        guard let target = catalog.migrations.firstIndex(where: { $0.id == id }) else {
            throw MigratorError(.unknownTarget, "no migration '\(id)' to baseline through", migrationID: id)
        }
        guard applied.isEmpty || force else {
            throw MigratorError(
                .baselineRefused,
                "'\(storage.location)' already has \(applied.count) applied migration(s); baseline adopts a database "
                    + "no migration ran on (force it to record the others as applied too)")
        }
        let todo = catalog.migrations[...target].filter { !applied.contains($0.id) }
        let now = EngineClock.iso8601()
        try storage.transaction { txn in
            for m in todo {
                try txn.recordApplied(m, startedAt: now, durationMS: 0)
                try txn.appendHistory(
                    NewHistoryEntry(
                        migrationID: m.id, outcome: .baselined, direction: .up, durationMS: nil, error: nil,
                        plugin: m.origin.label,
                        detail: "recorded as applied without running it (baseline through \(id))",
                        at: now))
            }
        }
        return Array(todo)
    }

    /// Returns the old and new checksums, or nil when they already agree.
    func repair(_ id: String, catalog: MigrationCatalog) throws -> (old: String?, new: String?)? {
        let lock = try acquireLock()
        defer { lock.release() }
        guard let record = try storage.appliedMigrations().first(where: { $0.id == id }) else {
            throw MigratorError(.targetNotApplied, "'\(id)' is not applied; repair accepts an applied migration's edit")
        }
        guard let m = catalog.migrations.first(where: { $0.id == id }) else {
            throw MigratorError(.unknownTarget, "no plugin provides '\(id)' now; there is no checksum to accept")
        }
        guard record.checksum != m.checksum else { return nil }
        let change = "checksum \(record.checksum ?? "(none)") -> \(m.checksum ?? "(none)") accepted"
        try storage.transaction { txn in
            try txn.acceptChecksum(id, m.checksum)
            try txn.appendHistory(
                NewHistoryEntry(
                    migrationID: id, outcome: .checksumAccepted, direction: .up, durationMS: nil, error: nil,
                    plugin: m.origin.label, detail: change))
        }
        return (record.checksum, m.checksum)
    }
}
