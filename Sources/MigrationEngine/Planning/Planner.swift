/// Works out what a run would do, and every reason it must not: the one
/// place where `apply`, `rollback`, `validate` and `status` get their
/// answers, so they can never disagree. Pure: no storage, no plugins, no
/// clock; it reads only the catalog and the applied records.
package enum Planner {
    /// The plan for `request`, given what is applied.
    ///
    /// A plan with refusals must not run; its ``Plan/steps`` are what it
    /// would have run.
    package static func plan(
        _ request: MigrationRequest, catalog: MigrationCatalog, applied: [AppliedMigration],
        options: PlanOptions = PlanOptions()
    ) -> Plan {
        var refusals = catalog.problems.map(Refusal.init)
        let steps: [AvailableMigration]
        switch request.kind {
        case .apply(let through):
            refusals += applyChecks(catalog, applied, options)
            steps = applySteps(through: through, catalog, applied, &refusals)
        case .applyNext(let count):
            refusals += applyChecks(catalog, applied, options)
            steps = Array(pendingMigrations(catalog, applied).prefix(max(0, count)))
        case .rollback(let target):
            steps = rollbackSteps(target, catalog, applied, &refusals)
        }
        return Plan(request: request, steps: steps, refusals: refusals)
    }

    /// Pending migrations in order, up to and including `through`.
    private static func applySteps(
        through: String?, _ catalog: MigrationCatalog, _ applied: [AppliedMigration], _ refusals: inout [Refusal]
    ) -> [AvailableMigration] {
        let pending = pendingMigrations(catalog, applied)
        guard let through else { return pending }
        guard catalog.migration(through) != nil else {
            refusals.append(
                Refusal(.unknownTarget, "target '\(through)' is not a known migration", migrationIDs: [through]))
            return []
        }
        guard let end = pending.firstIndex(where: { $0.id == through }) else {
            refusals.append(
                Refusal(
                    .targetAlreadyApplied,
                    "target '\(through)' is already applied (the database is at '\(applied.last?.id ?? through)')",
                    migrationIDs: [through]))
            return []
        }
        return Array(pending[...end])
    }

    /// The applied migrations `target` selects, newest first; each one that
    /// cannot be rolled back here is a refusal.
    private static func rollbackSteps(
        _ target: RollbackTarget, _ catalog: MigrationCatalog, _ applied: [AppliedMigration],
        _ refusals: inout [Refusal]
    ) -> [AvailableMigration] {
        let chosen: ArraySlice<AppliedMigration>
        switch target.kind {
        case .after(let id):
            guard let i = applied.firstIndex(where: { $0.id == id }) else {
                let list = applied.isEmpty ? "none" : applied.map(\.id).joined(separator: ", ")
                refusals.append(
                    Refusal(
                        .targetNotApplied, "cannot roll back to '\(id)': it is not applied (applied: \(list))",
                        migrationIDs: [id]))
                return []
            }
            chosen = applied[(i + 1)...]
        case .last(let n): chosen = applied.suffix(max(0, n))
        case .all: chosen = applied[...]
        }
        var down: [AvailableMigration] = []
        for a in chosen.reversed() {
            guard let m = catalog.migration(a.id) else {
                let refusal =
                    catalog.owns(a)
                    ? Refusal(
                        .missingMigrations,
                        "cannot roll back '\(a.id)': nothing provides it (it was applied from \(a.plugin))",
                        migrationIDs: [a.id], files: fileOf(a))
                    : Refusal(.ownedElsewhere, ownerMessage(a), migrationIDs: [a.id], files: fileOf(a))
                refusals.append(refusal)
                continue
            }
            guard m.isReversible else {
                refusals.append(
                    Refusal(
                        .irreversible, "cannot roll back '\(a.id)' (\(m.origin.label)): it is irreversible (no down)",
                        migrationIDs: [a.id], files: [m.origin.label]))
                continue
            }
            down.append(m)
        }
        return down
    }

    /// Known migrations not applied, in order.
    package static func pendingMigrations(
        _ catalog: MigrationCatalog, _ applied: [AppliedMigration]
    ) -> [AvailableMigration] {
        let appliedIDs = Set(applied.map(\.id))
        return catalog.migrations.filter { !appliedIDs.contains($0.id) }
    }

    /// Applied records this catalog owns but does not provide.
    package static func missingMigrations(
        _ catalog: MigrationCatalog, _ applied: [AppliedMigration]
    ) -> [AppliedMigration] {
        applied.filter { catalog.migration($0.id) == nil && catalog.owns($0) }
    }

    /// Whether an applied migration's declared checksum changed since.
    static func checksumChanged(_ record: AppliedMigration, _ m: AvailableMigration) -> Bool {
        guard let recorded = record.checksum, let declared = m.checksum else { return false }
        return recorded != declared
    }

    /// The refusals every forward run shares: edited, missing and
    /// out-of-order migrations.
    private static func applyChecks(
        _ catalog: MigrationCatalog, _ applied: [AppliedMigration],
        _ options: PlanOptions
    ) -> [Refusal] {
        var refusals: [Refusal] = []
        for a in applied {
            guard let m = catalog.migration(a.id), checksumChanged(a, m) else { continue }
            refusals.append(
                Refusal(
                    .checksumChanged,
                    "migration '\(a.id)' in \(m.origin.label) declares checksum '\(m.checksum ?? "")', "
                        + "but '\(a.checksum ?? "")' was recorded when it was applied (\(a.appliedAt)); "
                        + "an applied migration must not change: restore it, or write a new migration",
                    migrationIDs: [a.id], files: [m.origin.label], recordedChecksum: a.checksum,
                    declaredChecksum: m.checksum))
        }
        let missing = missingMigrations(catalog, applied)
        if !missing.isEmpty && !options.allowMissing {
            refusals.append(
                Refusal(
                    .missingMigrations,
                    "the database is newer than these migrations: applied "
                        + missing.map { "'\($0.id)' (from \($0.plugin))" }.joined(separator: ", ")
                        + " but nothing here provides \(missing.count == 1 ? "it" : "them")",
                    migrationIDs: missing.map(\.id), files: missing.flatMap(fileOf)))
        }
        // The high-water mark counts only records this catalog answers for:
        // another app's in-process migrations never make ours late.
        let counted = applied.filter { catalog.owns($0) && (catalog.migration($0.id) != nil || !options.allowMissing) }
        if let highest = counted.map(\.sequence).max(), !options.allowOutOfOrder {
            let late = pendingMigrations(catalog, applied).filter { $0.sequence < highest }
            if !late.isEmpty {
                refusals.append(
                    Refusal(
                        .outOfOrder,
                        "pending " + late.map { "'\($0.id)' (\($0.origin.label))" }.joined(separator: ", ")
                            + " sort\(late.count == 1 ? "s" : "") before the last applied migration "
                            + "(number \(highest)); "
                            + "was a branch merged?",
                        migrationIDs: late.map(\.id),
                        files: late.compactMap { $0.origin.sha256 != nil ? $0.origin.label : nil }))
            }
        }
        return refusals
    }

    private static func fileOf(_ a: AppliedMigration) -> [String] {
        if case .plugin(let file) = a.source { return [file] }
        return []
    }

    /// Why a record this catalog does not own is left to its owner.
    static func ownerMessage(_ a: AppliedMigration) -> String {
        switch a.source {
        case .inProcess(let app):
            return "cannot roll back '\(a.id)': it was applied in-process by \(app.map { "'\($0)'" } ?? "an app"); "
                + "it is rolled back by the app that owns it"
        case .plugin(let file):
            return
                "cannot roll back '\(a.id)': it was applied from the plugin \(file), which this catalog does not load; "
                + "roll it back with that plugin's directory"
        }
    }

    // MARK: Status

    /// Every known migration and every applied record, with its state, in
    /// application order: the body of ``MigrationStatus``.
    package static func entries(
        catalog: MigrationCatalog, applied: [AppliedMigration],
        history: [HistoryEntry]
    ) -> [MigrationStatus.Entry] {
        var lastUp: [String: HistoryEntry.Outcome] = [:]
        for h in history where h.direction == .up { lastUp[h.migrationID] = h.outcome }
        let appliedByID = Dictionary(applied.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var entries: [(UInt64, MigrationStatus.Entry)] = []
        for m in catalog.migrations {
            let a = appliedByID[m.id]
            let state: MigrationState = a != nil ? .applied : lastUp[m.id] == .failed ? .failed : .pending
            entries.append(
                (
                    m.sequence,
                    MigrationStatus.Entry(
                        id: m.id, name: m.name, description: m.description, version: m.version, state: state,
                        appliedAt: a?.appliedAt, plugin: m.origin.label, checksum: m.checksum ?? a?.checksum,
                        changed: a.map { checksumChanged($0, m) } ?? false, app: a?.source.app ?? m.origin.app,
                        signedBy: m.signedBy)
                ))
        }
        for a in applied where catalog.migration(a.id) == nil {
            entries.append(
                (
                    a.sequence,
                    MigrationStatus.Entry(
                        id: a.id, name: a.name, description: a.description, version: a.version,
                        state: catalog.owns(a) ? .missing : .applied, appliedAt: a.appliedAt, plugin: a.plugin,
                        checksum: a.checksum, changed: false, app: a.source.app)
                ))
        }
        entries.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1.id < $1.1.id }
        return entries.map(\.1)
    }

    /// A leftover lock record marks an interrupted step, unless that step
    /// committed just before its process died.
    package static func interruptedStep(
        _ leftover: LockOwner?, appliedIDs: Set<String>
    ) -> (id: String, direction: Direction)? {
        guard let o = leftover, let id = o.currentID else { return nil }
        let direction = o.currentDirection ?? .up
        func committed(_ id: String) -> Bool { direction == .up ? appliedIDs.contains(id) : !appliedIDs.contains(id) }
        if !committed(id) { return (id, direction) }
        // The current step committed, so the one queued behind it had started
        // (or was about to): nothing of it committed either way.
        if let next = o.nextID, !committed(next) { return (next, direction) }
        return nil
    }

    // MARK: Advice

    /// What `validate` says beyond refusals: sequence gaps (warnings), and
    /// plugin files rebuilt since they applied something (notes; the
    /// declared checksum, not the file hash, decides whether a migration
    /// was edited).
    package static func advice(
        catalog: MigrationCatalog, applied: [AppliedMigration]
    ) -> (warnings: [String], notes: [String]) {
        var warnings: [String] = []
        var notes: [String] = []
        let numbers = Set(catalog.migrations.map(\.sequence) + applied.filter(catalog.owns).map(\.sequence)).sorted()
        for (a, b) in zip(numbers, numbers.dropFirst()) where b > a + 1 {
            let hole = b > a + 2 ? "\(a + 1)–\(b - 1)" : "\(a + 1)"
            warnings.append("sequence gap: nothing numbered \(hole) between \(a) and \(b)")
        }
        for a in applied {
            guard let m = catalog.migration(a.id), let now = m.origin.sha256, let then = a.pluginSHA256, now != then
            else {
                continue
            }
            notes.append(
                "'\(a.id)' was applied from \(a.plugin) with SHA-256 \(then.prefix(12))…; "
                    + "\(m.origin.label) now has \(now.prefix(12))… (rebuilt; its declared checksum is unchanged)")
        }
        return (warnings, notes)
    }
}
