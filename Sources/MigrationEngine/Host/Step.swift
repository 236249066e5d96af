import DocumentStore
import MigrationKit
import MigratorPluginABI

/// Which way a step goes.
public enum Direction: String, Sendable {
    case up, down
}

/// A step that failed: the migration's or the host's explanation.
struct StepFailure: Error {
    let message: String
}

extension AvailableMigration {
    /// Runs `up` or `down` inside `txn`. Throws ``StepFailure`` with the
    /// migration's explanation when it fails; the caller aborts `txn`.
    /// Storage errors that the caller must see (a full map) are rethrown
    /// as they are.
    func perform(_ direction: Direction, in txn: Transaction, observer: StepObserver) throws {
        let db = StoreDatabase(txn: txn, migrationID: id, observer: observer)
        defer { db.finish() }
        switch body {
        case .swift(let migration):
            do {
                if direction == .up { try migration.up(db) } else { try migration.down(db) }
            } catch let e as StoreError {
                throw e
            } catch {
                throw StepFailure(message: "\(error)")
            }
        case .descriptorOnly:
            throw StepFailure(message: "migration '\(id)' was read from the descriptor cache and is not loaded")
        case .plugin(let up, let down, let userdata):
            guard let fn = direction == .up ? up : down else {
                throw StepFailure(message: "migration '\(id)' is irreversible (its plugin provides no down)")
            }
            let step = HostStep(db: db)
            let id = HostHandles.table.withLock { t in
                let id = t.next
                t.next += 1
                t.steps[id] = step
                return id
            }
            defer {
                // Close what the plugin left open; its handles die with the step.
                let left = HostHandles.table.withLock { t in
                    t.steps[id] = nil
                    return step.cursorIDs.compactMap { t.cursors.removeValue(forKey: $0) }
                }
                for c in left { c.cursor.close() }
                HostHandles.ThreadCache.current.forget(step)
            }
            let status = withUnsafePointer(to: HostAPI.table) { fn($0, HostHandles.handle(id), userdata) }
            guard status == MIGRATOR_OK else {
                let why = step.pluginError ?? (step.lastErrorText.isEmpty ? nil : step.lastErrorText)
                throw StepFailure(message: why ?? "\(direction) returned status \(status) (\(DatabaseError.Status(rawValue: status))) without an explanation")
            }
        }
    }
}
