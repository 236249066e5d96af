import DocumentStore
import MigrationKit

/// One step of a trial: run it (a dry run), or check that `down` undoes `up`.
package struct TrialStep: Sendable, Codable, Equatable {
    package var id: String
    package var direction: Direction
    package var verify: Bool
}

/// What one collection saw during a step of a trial.
public struct CollectionChangeCount: Sendable, Equatable, Codable {
    /// The collection.
    public var collection: String
    /// Documents inserted.
    public var inserted: Int
    /// Documents changed by updates.
    public var updated: Int
    /// Documents deleted (with the collection, when it was dropped).
    public var deleted: Int
    /// Indexes created.
    public var indexesCreated: Int
    /// Indexes dropped.
    public var indexesDropped: Int
    /// The step created, or dropped, the collection.
    public var created: Bool
    /// The step dropped the collection.
    public var dropped: Bool

    enum CodingKeys: String, CodingKey {
        case collection, inserted, updated, deleted, created, dropped
        case indexesCreated = "indexes_created"
        case indexesDropped = "indexes_dropped"
    }
}

/// A collection that `down` did not bring back to what it was before `up`.
public struct ReversibilityDifference: Sendable, Equatable, Codable {
    /// The collection that differs.
    public var collection: String
    /// Its content digest before `up`.
    public var digestBefore: String
    /// Its content digest after `up` and `down`.
    public var digestAfter: String
    /// Its indexes before `up`.
    public var indexesBefore: [String]
    /// Its indexes after `up` and `down`.
    public var indexesAfter: [String]
    /// How many documents differ, and the `_id`s of a few (as JSON).
    public var differingDocuments: Int
    /// A few `_id`s (as JSON) of documents that differ.
    public var exampleIDs: [String]
    /// A field-level diff of the first example: `+ field: value`,
    /// `- field: value`, `~ field: before -> after`.
    public var diff: [String]

    enum CodingKeys: String, CodingKey {
        case collection, diff
        case digestBefore = "digest_before"
        case digestAfter = "digest_after"
        case indexesBefore = "indexes_before"
        case indexesAfter = "indexes_after"
        case differingDocuments = "differing_documents"
        case exampleIDs = "example_ids"
    }
}

/// What a dry run or a reversibility check found for one migration.
public struct TrialResult: Sendable, Equatable, Codable {
    /// What the trial found for one migration.
    public enum Verdict: String, Sendable, Codable {
        /// Dry run: the step ran (and was rolled back with the rest).
        case ran
        /// The step was already done (another run did it); it did nothing.
        case skipped
        /// Its code failed: ``error`` has the message a real run gives.
        case failed
        /// `down` brought every collection back to what it was, and `up` ran again.
        case reversible
        /// The migration has no `down`.
        case irreversible
        /// `down` left differences, or failed, or `up` failed after it.
        case notReversible = "not_reversible"
        /// Not reached: an earlier step failed.
        case notRun = "not_run"
    }
    /// The migration id.
    public var id: String
    /// The direction it ran in.
    public var direction: Direction
    /// What was found.
    public var verdict: Verdict
    /// What the step (for a check: `up`) changed, per collection, in the
    /// order first changed.
    public var changes: [CollectionChangeCount]
    /// Why it failed, or why it is not reversible, when it is.
    public var error: String?
    /// For a migration that is not reversible: the collections `down` did not restore.
    public var differences: [ReversibilityDifference]
    /// How long its part of the trial took.
    public var durationMS: Int64

    enum CodingKeys: String, CodingKey {
        case id, direction, verdict, changes, error, differences
        case durationMS = "duration_ms"
    }

    init(id: String, direction: Direction, verdict: Verdict) {
        self.id = id
        self.direction = direction
        self.verdict = verdict
        changes = []
        error = nil
        differences = []
        durationMS = 0
    }
}

/// Runs trials: every step in one write transaction that is rolled back at
/// the end, so the database is left exactly as it was. Shared by the
/// in-process executor and the worker. A step that fails ends the trial
/// (as it ends a real run): the transaction then holds its partial changes,
/// so nothing after it would be meaningful.
enum TrialRunner {
    static func run(
        _ steps: [(AvailableMigration, TrialStep)], storage: any MigrationStorage, observer: StepObserver,
        onResult: (TrialResult) throws -> Void = { _ in }
    ) throws -> [TrialResult] {
        try storage.trial { txn in
            var results: [TrialResult] = []
            var stopped = false
            for (m, step) in steps {
                let result: TrialResult
                if stopped {
                    result = TrialResult(id: m.id, direction: step.direction, verdict: .notRun)
                } else {
                    result =
                        step.verify
                        ? try verify(m, in: txn, observer: observer)
                        : try dryRun(m, step.direction, in: txn, observer: observer)
                    stopped = result.verdict == .failed || (result.verdict == .notReversible && result.error != nil)
                }
                try onResult(result)
                results.append(result)
            }
            return results
        }
    }

    /// Runs one step inside `txn`; a failure is a result, not an error.
    private static func attempt(
        _ m: AvailableMigration, _ direction: Direction, in txn: any StorageTransaction, observer: StepObserver
    ) -> (ran: Bool, error: String?) {
        do {
            let ran = try InProcessExecutor.runStep(
                m, direction, in: txn, startedAt: EngineClock.iso8601(), observer: observer)
            return (ran != nil, nil)
        } catch let failure as StepFailure {
            return (true, failure.message)
        } catch {
            return (true, "\(error)")
        }
    }

    static func dryRun(
        _ m: AvailableMigration, _ direction: Direction, in txn: any StorageTransaction, observer: StepObserver
    ) throws -> TrialResult {
        let tracker = ChangeTracker()
        txn.track(tracker)
        defer { txn.track(nil) }
        let t0 = EngineClock.monotonic()
        let (ran, error) = attempt(m, direction, in: txn, observer: observer)
        var r = TrialResult(id: m.id, direction: direction, verdict: error != nil ? .failed : ran ? .ran : .skipped)
        r.error = error
        r.changes = counts(tracker)
        r.durationMS = Int64((EngineClock.monotonic() - t0) * 1000)
        return r
    }

    /// Snapshot the collections `up` touches, run `up`, run `down`, compare,
    /// then run `up` again: `down` must leave a state `up` accepts.
    static func verify(
        _ m: AvailableMigration, in txn: any StorageTransaction, observer: StepObserver
    ) throws
        -> TrialResult
    {
        let t0 = EngineClock.monotonic()
        var r = TrialResult(id: m.id, direction: .up, verdict: .reversible)
        defer { r.durationMS = Int64((EngineClock.monotonic() - t0) * 1000) }
        let tracker = ChangeTracker(keepingPreImages: true)
        txn.track(tracker)
        let up = attempt(m, .up, in: txn, observer: observer)
        r.changes = counts(tracker)
        if let error = up.error {
            txn.track(nil)
            r.verdict = .failed
            r.error = error
            return r
        }
        guard m.isReversible else {
            txn.track(nil)
            r.verdict = .irreversible
            return r
        }
        let down = attempt(m, .down, in: txn, observer: observer)
        if let error = down.error {
            txn.track(nil)
            r.verdict = .notReversible
            r.error = "down failed: \(error)"
            return r
        }
        let differences = try txn.differences(since: tracker)
        txn.track(nil)
        r.differences = differences.map(describe)
        let again = attempt(m, .up, in: txn, observer: observer)
        if let error = again.error {
            r.verdict = .notReversible
            r.error = "up failed when run again after down: \(error)"
        } else if !differences.isEmpty {
            r.verdict = .notReversible
        }
        return r
    }

    private static func counts(_ tracker: ChangeTracker) -> [CollectionChangeCount] {
        tracker.order.compactMap { name in
            tracker.changes[name].map { c in
                CollectionChangeCount(
                    collection: name, inserted: c.inserted, updated: c.updated, deleted: c.deleted,
                    indexesCreated: c.indexesCreated, indexesDropped: c.indexesDropped, created: c.created,
                    dropped: c.dropped)
            }
        }
    }

    private static func describe(_ d: ContentDifference) -> ReversibilityDifference {
        func indexes(_ s: CollectionSnapshot) -> [String] {
            s.existed ? s.indexes.map { $0.path + ($0.unique ? " (unique)" : "") } : ["(no collection)"]
        }
        return ReversibilityDifference(
            collection: d.collection, digestBefore: d.before.digest, digestAfter: d.after.digest,
            indexesBefore: indexes(d.before), indexesAfter: indexes(d.after), differingDocuments: d.differingDocuments,
            exampleIDs: d.documents.map(\.id.serialized), diff: d.documents.first.map(fieldDiff) ?? [])
    }

    /// Top-level field differences of one document, values shortened.
    static func fieldDiff(_ d: DocumentDifference) -> [String] {
        func short(_ j: JSON) -> String {
            let s = j.serialized
            return s.count > 60 ? String(s.prefix(57)) + "..." : s
        }
        switch (d.before?.objectValue, d.after?.objectValue) {
        case (nil, nil): return []
        case (nil, _): return ["+ the whole document (it did not exist before up)"]
        case (_, nil): return ["- the whole document (down did not restore it)"]
        case (let b?, let a?):
            var out: [String] = []
            for (k, v) in b.fields {
                if let now = a[k] {
                    if now != v { out.append("~ \(k): \(short(v)) -> \(short(now))") }
                } else {
                    out.append("- \(k): \(short(v))")
                }
            }
            for (k, v) in a.fields where b[k] == nil { out.append("+ \(k): \(short(v))") }
            if out.isEmpty { out.append("~ the same fields in another order") }
            return out
        }
    }
}
