import DocumentStore
import MigrationKit

/// Reads and writes `_migrations`, `_migrations_history` and
/// `_migrations_progress`, with the same JSON shapes on every backend (any
/// ``DocumentTransaction``). They are reserved collections: migrations
/// cannot touch them, only the engine can.
package enum Tracking {
    static let applied = "_migrations"
    static let history = "_migrations_history"

    package static func appliedMigrations(_ txn: any SystemTransaction) throws -> [AppliedMigration] {
        try txn.withSystemAccess {
            try txn.findAll(applied).compactMap { doc -> AppliedMigration? in
                guard let o = doc.objectValue, let id = o["_id"]?.stringValue else { return nil }
                func s(_ k: String) -> String { o[k]?.stringValue ?? "" }
                let plugin = s("plugin")
                let source: MigrationSource =
                    plugin == MigrationSource.inProcess(app: nil).label
                    ? .inProcess(app: o["app"]?.stringValue) : .plugin(file: plugin)
                return AppliedMigration(
                    id: id, name: s("name"), description: s("description"), version: s("version"),
                    startedAt: s("started_at"), appliedAt: s("applied_at"), checksum: o["checksum"]?.stringValue,
                    source: source, pluginSHA256: o["plugin_sha256"]?.stringValue,
                    durationMS: o["duration_ms"].flatMap(int) ?? 0, appliedBy: s("applied_by"),
                    runnerVersion: s("runner_version"))
            }.sorted { $0.sequence != $1.sequence ? $0.sequence < $1.sequence : $0.id < $1.id }
        }
    }

    package static func isApplied(_ txn: any SystemTransaction, _ id: String) throws -> Bool {
        try txn.withSystemAccess { try txn.count(applied, filter: Filter.idEquals(.string(id))) > 0 }
    }

    static func recordApplied(
        _ txn: any SystemTransaction, _ m: AvailableMigration, startedAt: String, durationMS: Int64
    ) throws {
        var fields: [(String, JSON)] = [
            ("_id", .string(m.id)), ("migration_id", .string(m.id)), ("name", .string(m.name)),
            ("description", .string(m.description)), ("version", .string(m.version)),
            ("started_at", .string(startedAt)), ("applied_at", .string(EngineClock.iso8601())),
            ("success", .bool(true)),
            ("checksum", m.checksum.map(JSON.string) ?? .null), ("plugin", .string(m.origin.label)),
            ("plugin_sha256", m.origin.sha256.map(JSON.string) ?? .null), ("duration_ms", .int(durationMS)),
            ("applied_by", .string(EngineClock.actor)), ("runner_version", .string(runnerVersion)),
        ]
        // In-process migrations also record the app that owns them; a bundle's, the bundle.
        if let app = m.origin.app { fields.append(("app", .string(app))) }
        if let bundle = m.bundle { fields.append(("bundle", .string(bundle))) }
        try txn.withSystemAccess { _ = try txn.insert(.object(JSONObject(fields)), into: applied) }
    }

    /// Removes `id`'s record; a record already gone means another run
    /// rolled it back meanwhile, and this step must not commit.
    static func removeApplied(_ txn: any SystemTransaction, _ id: String) throws {
        let removed = try txn.withSystemAccess { try txn.deleteOne(applied, filter: Filter.idEquals(.string(id))) }
        guard removed == 1 else {
            throw StepFailure(
                message: "the record of '\(id)' in _migrations was already gone when its down ended "
                    + "(another run rolled it back); nothing of this attempt was committed")
        }
    }

    static let bundles = "_migrations_bundles"

    /// Every bundle name this database took, with its highest sequence.
    package static func bundleRecords(_ txn: any SystemTransaction) throws -> [BundleRecord] {
        try txn.withSystemAccess {
            try txn.findAll(bundles).compactMap { doc -> BundleRecord? in
                guard let o = doc.objectValue, let name = o["_id"]?.stringValue,
                    let sequence = o["sequence"].flatMap(int)
                else { return nil }
                return BundleRecord(
                    name: name, sequence: Int(sequence), digest: o.string("digest"), keyID: o.string("key_id"),
                    takenAt: o.string("taken_at"), takenBy: o.string("taken_by"),
                    applied: (o["applied"]?.arrayValue ?? []).compactMap(\.stringValue))
            }
        }
    }

    /// Records that `bundle` was taken, with the migrations this run applied
    /// from it; a higher sequence already recorded stays.
    static func recordBundle(_ txn: any SystemTransaction, _ bundle: VerifiedBundle, applied: [String]) throws {
        try txn.withSystemAccess {
            let m = bundle.manifest
            let old = try txn.findOne(bundles, filter: Filter.idEquals(.string(m.name)))?.objectValue
            if let seen = old?["sequence"].flatMap(int), Int(seen) > m.sequence { return }
            let before = (old?["applied"]?.arrayValue ?? []).compactMap(\.stringValue)
            let doc: JSON = .object(
                JSONObject([
                    ("_id", .string(m.name)), ("sequence", .int(Int64(m.sequence))), ("digest", .string(bundle.digest)),
                    ("key_id", .string(m.keyID)), ("taken_at", .string(EngineClock.iso8601())),
                    ("taken_by", .string(EngineClock.actor)),
                    ("applied", .array((before + applied.filter { !before.contains($0) }).map(JSON.string))),
                ]))
            _ = try txn.deleteOne(bundles, filter: Filter.idEquals(.string(m.name)))
            _ = try txn.insert(doc, into: bundles)
        }
    }

    static let progress = "_migrations_progress"

    /// The checkpoint a migration left, if its run stopped after one.
    static func progress(_ txn: any SystemTransaction, _ id: String) throws -> MigrationProgress? {
        try txn.withSystemAccess {
            guard let o = try txn.findOne(progress, filter: Filter.idEquals(.string(id)))?.objectValue else {
                return nil
            }
            return MigrationProgress(
                id: id, token: o["token"]?.stringValue ?? "", checkpoints: Int(o["checkpoints"].flatMap(int) ?? 0),
                at: o["at"]?.stringValue ?? "")
        }
    }

    package static func allProgress(_ txn: any SystemTransaction) throws -> [MigrationProgress] {
        try txn.withSystemAccess {
            try txn.findAll(progress).compactMap { doc -> MigrationProgress? in
                guard let o = doc.objectValue, let id = o["_id"]?.stringValue else { return nil }
                return MigrationProgress(
                    id: id, token: o["token"]?.stringValue ?? "", checkpoints: Int(o["checkpoints"].flatMap(int) ?? 0),
                    at: o["at"]?.stringValue ?? "")
            }
        }
    }

    /// Records a checkpoint of `id` with its resume token (replacing the last).
    static func saveProgress(_ txn: any SystemTransaction, _ id: String, token: String) throws {
        let done = try progress(txn, id)?.checkpoints ?? 0
        try txn.withSystemAccess {
            _ = try txn.deleteOne(progress, filter: Filter.idEquals(.string(id)))
            _ = try txn.insert(
                .object(
                    JSONObject([
                        ("_id", .string(id)), ("token", .string(token)), ("checkpoints", .int(Int64(done + 1))),
                        ("at", .string(EngineClock.iso8601())), ("by", .string(EngineClock.actor)),
                    ])), into: progress)
        }
    }

    static func clearProgress(_ txn: any SystemTransaction, _ id: String) throws {
        try txn.withSystemAccess { _ = try txn.deleteOne(progress, filter: Filter.idEquals(.string(id))) }
    }

    static func acceptChecksum(_ txn: any SystemTransaction, _ id: String, _ checksum: String?) throws {
        try txn.withSystemAccess {
            let set: JSON = .object(JSONObject([("checksum", checksum.map(JSON.string) ?? .null)]))
            _ = try txn.updateOne(
                applied, filter: Filter.idEquals(.string(id)),
                update: Update(parsing: JSON.object(JSONObject([("$set", set)])).serialized), upsert: false)
        }
    }

    static func appendHistory(_ txn: any SystemTransaction, _ e: NewHistoryEntry) throws {
        try txn.withSystemAccess {
            // Append-only, so the count is the last sequence number.
            let next = Int64(try txn.count(history)) + 1
            let doc: JSON = .object(
                JSONObject(
                    [
                        ("_id", .int(next)), ("migration_id", .string(e.migrationID)),
                        ("outcome", .string(e.outcome.rawValue)),
                        ("direction", .string(e.direction.rawValue)), ("at", .string(e.at)),
                        ("duration_ms", e.durationMS.map(JSON.int) ?? .null),
                        ("error", e.error.map(JSON.string) ?? .null),
                        ("applied_by", .string(e.by)), ("plugin", e.plugin.map(JSON.string) ?? .null),
                        ("runner_version", .string(runnerVersion)),
                    ] + (e.detail.map { [("detail", JSON.string($0))] } ?? [])
                        + (e.bundle.map { [("bundle", JSON.string($0))] } ?? [])))
            _ = try txn.insert(doc, into: history)
        }
    }

    package static func historyEntries(_ txn: any SystemTransaction) throws -> [HistoryEntry] {
        try txn.withSystemAccess {
            try txn.findAll(history).compactMap { doc -> HistoryEntry? in
                guard let o = doc.objectValue, let seq = o["_id"].flatMap(int) else { return nil }
                return HistoryEntry(
                    sequence: seq, migrationID: o["migration_id"]?.stringValue ?? "",
                    outcome: HistoryEntry.Outcome(rawValue: o["outcome"]?.stringValue ?? ""),
                    direction: o["direction"]?.stringValue.flatMap(Direction.init(rawValue:)) ?? .up,
                    at: o["at"]?.stringValue ?? "",
                    durationMS: o["duration_ms"].flatMap(int), error: o["error"]?.stringValue,
                    appliedBy: o["applied_by"]?.stringValue ?? "", plugin: o["plugin"]?.stringValue,
                    detail: o["detail"]?.stringValue, bundle: o["bundle"]?.stringValue)
            }
        }
    }

    private static func int(_ j: JSON) -> Int64? {
        if case .int(let v) = j { return v }
        if case .double(let d) = j, d == d.rounded() { return Int64(d) }
        return nil
    }
}

/// A ``StorageTransaction`` whose records are ``Tracking``'s, over its
/// backend's ``DocumentTransaction``: the bookkeeping is written once.
protocol TrackedTransaction: StorageTransaction {
    var documents: any SystemTransaction { get }
}

extension TrackedTransaction {
    package func isApplied(_ id: String) throws -> Bool { try Tracking.isApplied(documents, id) }
    package func recordApplied(_ m: AvailableMigration, startedAt: String, durationMS: Int64) throws {
        try Tracking.recordApplied(documents, m, startedAt: startedAt, durationMS: durationMS)
    }
    package func removeApplied(_ id: String) throws { try Tracking.removeApplied(documents, id) }
    package func progress(_ id: String) throws -> MigrationProgress? { try Tracking.progress(documents, id) }
    package func clearProgress(_ id: String) throws { try Tracking.clearProgress(documents, id) }
    package func acceptChecksum(_ id: String, _ checksum: String?) throws {
        try Tracking.acceptChecksum(documents, id, checksum)
    }
    package func appendHistory(_ entry: NewHistoryEntry) throws { try Tracking.appendHistory(documents, entry) }
}

/// One write transaction of either backend, seen through
/// ``StorageTransaction``: the step's database, its checkpoints and the
/// change tracking of trials are the same code for both.
package final class StepTransaction<Txn: SystemTransaction>: TrackedTransaction {
    let txn: Txn
    var documents: any SystemTransaction { txn }
    /// A dry run or reversibility check: nothing may be committed.
    let isTrial: Bool
    package init(_ txn: Txn, trial: Bool = false) {
        self.txn = txn
        isTrial = trial
    }

    package func database(
        for migrationID: String, observer: StepObserver, resumeToken: String?
    ) -> any StepDatabase {
        StoreDatabase(
            txn: txn, migrationID: migrationID, observer: observer, resumeToken: resumeToken,
            checkpointer: isTrial
                ? nil
                : { [txn] token in
                    // The checkpoint record commits with the work it covers.
                    try Tracking.saveProgress(txn, migrationID, token: token)
                    try txn.commitAndContinue()
                })
    }
    package func track(_ tracker: ChangeTracker?) { txn.track(tracker) }
    package func differences(since tracker: ChangeTracker) throws -> [ContentDifference] {
        try txn.differences(since: tracker)
    }
}
