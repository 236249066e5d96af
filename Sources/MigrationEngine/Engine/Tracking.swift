import DocumentStore
import MigrationKit

/// The version of this runner, recorded with every migration.
public let runnerVersion = "0.2.0"

/// One applied migration: a document in `_migrations` (`_id` = its id).
public struct AppliedMigration: Sendable, Equatable {
    public let id: String
    public let name: String
    public let description: String
    public let version: String
    public let startedAt: String
    public let appliedAt: String
    public let checksum: String?
    /// The plugin file name, or `"in-process"`.
    public let plugin: String
    public let pluginSHA256: String?
    public let durationMS: Int64
    public let appliedBy: String
    public let runnerVersion: String

    /// The id's numeric prefix.
    public var sequence: UInt64 { MigrationID.sequence(of: id) ?? 0 }
}

/// One attempt: a document in the append-only `_migrations_history`.
public struct HistoryEntry: Sendable, Equatable {
    /// What became of an attempt.
    public struct Outcome: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let applied = Outcome(rawValue: "applied")
        public static let failed = Outcome(rawValue: "failed")
        public static let rolledBack = Outcome(rawValue: "rolled_back")
        public static let interrupted = Outcome(rawValue: "interrupted")
        public var description: String { rawValue }
    }
    public let sequence: Int64
    public let migrationID: String
    public let outcome: Outcome
    public let direction: String
    public let at: String
    public let durationMS: Int64?
    public let error: String?
    public let appliedBy: String
    public let plugin: String?
}

/// Reads and writes `_migrations` and `_migrations_history`. Both are
/// reserved collections: migrations cannot touch them, only the engine can.
enum Tracking {
    static let applied = "_migrations"
    static let history = "_migrations_history"

    static func appliedMigrations(_ txn: Transaction) throws -> [AppliedMigration] {
        try txn.withSystemAccess {
            try txn.find(applied).all().compactMap { doc -> AppliedMigration? in
                guard let o = doc.objectValue, let id = o["_id"]?.stringValue else { return nil }
                func s(_ k: String) -> String { o[k]?.stringValue ?? "" }
                return AppliedMigration(
                    id: id, name: s("name"), description: s("description"), version: s("version"),
                    startedAt: s("started_at"), appliedAt: s("applied_at"), checksum: o["checksum"]?.stringValue,
                    plugin: s("plugin"), pluginSHA256: o["plugin_sha256"]?.stringValue,
                    durationMS: o["duration_ms"].flatMap(int) ?? 0, appliedBy: s("applied_by"), runnerVersion: s("runner_version"))
            }.sorted { $0.sequence != $1.sequence ? $0.sequence < $1.sequence : $0.id < $1.id }
        }
    }

    static func isApplied(_ txn: Transaction, _ id: String) throws -> Bool {
        try txn.withSystemAccess { try txn.count(applied, filter: Filter.idEquals(.string(id))) > 0 }
    }

    static func recordApplied(_ txn: Transaction, _ m: AvailableMigration, startedAt: String, durationMS: Int64) throws {
        let doc: JSON = .object(JSONObject([
            ("_id", .string(m.id)), ("migration_id", .string(m.id)), ("name", .string(m.name)),
            ("description", .string(m.description)), ("version", .string(m.version)),
            ("started_at", .string(startedAt)), ("applied_at", .string(EngineClock.iso8601())), ("success", .bool(true)),
            ("checksum", m.checksum.map(JSON.string) ?? .null), ("plugin", .string(m.origin.label)),
            ("plugin_sha256", m.origin.sha256.map(JSON.string) ?? .null), ("duration_ms", .int(durationMS)),
            ("applied_by", .string(EngineClock.actor)), ("runner_version", .string(runnerVersion)),
        ]))
        try txn.withSystemAccess { _ = try txn.insert(doc, into: applied) }
    }

    static func removeApplied(_ txn: Transaction, _ id: String) throws {
        try txn.withSystemAccess {
            _ = try txn.deleteOne(applied, filter: Filter.idEquals(.string(id)))
        }
    }

    static func appendHistory(_ txn: Transaction, id: String, outcome: HistoryEntry.Outcome, direction: Direction,
                              durationMS: Int64?, error: String?, plugin: String?, at: String? = nil, by: String? = nil) throws {
        try txn.withSystemAccess {
            // Append-only, so the count is the last sequence number.
            let next = Int64(try txn.count(history)) + 1
            let doc: JSON = .object(JSONObject([
                ("_id", .int(next)), ("migration_id", .string(id)), ("outcome", .string(outcome.rawValue)),
                ("direction", .string(direction.rawValue)), ("at", .string(at ?? EngineClock.iso8601())),
                ("duration_ms", durationMS.map(JSON.int) ?? .null), ("error", error.map(JSON.string) ?? .null),
                ("applied_by", .string(by ?? EngineClock.actor)), ("plugin", plugin.map(JSON.string) ?? .null),
                ("runner_version", .string(runnerVersion)),
            ]))
            _ = try txn.insert(doc, into: history)
        }
    }

    static func historyEntries(_ txn: Transaction) throws -> [HistoryEntry] {
        try txn.withSystemAccess {
            try txn.find(history).all().compactMap { doc -> HistoryEntry? in
                guard let o = doc.objectValue, let seq = o["_id"].flatMap(int) else { return nil }
                return HistoryEntry(
                    sequence: seq, migrationID: o["migration_id"]?.stringValue ?? "",
                    outcome: HistoryEntry.Outcome(rawValue: o["outcome"]?.stringValue ?? ""),
                    direction: o["direction"]?.stringValue ?? "up", at: o["at"]?.stringValue ?? "",
                    durationMS: o["duration_ms"].flatMap(int), error: o["error"]?.stringValue,
                    appliedBy: o["applied_by"]?.stringValue ?? "", plugin: o["plugin"]?.stringValue)
            }
        }
    }

    private static func int(_ j: JSON) -> Int64? {
        if case .int(let v) = j { return v }
        if case .double(let d) = j, d == d.rounded() { return Int64(d) }
        return nil
    }
}
