import MigrationKit
import MigratorPluginABI

/// The executor seam: runs one migration's `up` or `down` against the
/// step's database. The runner owns the transaction and the bookkeeping;
/// an executor only runs the migration's code. ``InProcessExecutor`` runs
/// it in this process; another executor can run plugin code elsewhere
/// without changing the runner.
package protocol MigrationExecutor: Sendable {
    /// Runs `migration` in `direction` against `database`.
    /// - Throws: ``StepFailure`` when the migration fails (the caller aborts
    ///   the transaction); other errors (storage) as they are.
    func execute(_ migration: AvailableMigration, _ direction: Direction, on database: any StepDatabase) throws
}

/// A step that failed: the migration's or the host's explanation, and the
/// migration's own error when it threw one.
package struct StepFailure: Error {
    package let message: String
    package let underlying: (any Error)?
    package init(message: String, underlying: (any Error)? = nil) {
        self.message = message
        self.underlying = underlying
    }
}

/// Runs migrations in this process: in-process Swift migrations directly,
/// plugin migrations through the C host table.
package struct InProcessExecutor: MigrationExecutor {
    package init() {}

    package func execute(_ migration: AvailableMigration, _ direction: Direction, on db: any StepDatabase) throws {
        switch migration.body {
        case .swift(let m):
            do {
                if direction == .up { try m.up(db) } else { try m.down(db) }
            } catch {
                throw StepFailure(message: "\(error)", underlying: error)
            }
        case .descriptorOnly:
            throw StepFailure(
                message: "migration '\(migration.id)' was read from the descriptor cache and is not loaded")
        case .plugin(let up, let down, let userdata):
            guard let fn = direction == .up ? up : down else {
                throw StepFailure(message: "migration '\(migration.id)' is irreversible (its plugin provides no down)")
            }
            try callPlugin(fn, userdata: userdata, direction: direction, db: db)
        }
    }

    /// Calls a plugin's step function with a fresh numeric handle for the
    /// step; every handle it was given dies when it returns.
    private func callPlugin(
        _ fn: migrator_step_fn, userdata: UnsafeMutableRawPointer?, direction: Direction,
        db: any StepDatabase
    ) throws {
        let step = HostStep(db: db)
        let id = HostHandles.register(step)
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
            let code = DatabaseError.Status(rawValue: status)
            throw StepFailure(message: why ?? "\(direction) returned status \(status) (\(code)) without an explanation")
        }
    }
}
