/// One migration: a named, versioned step that changes the database.
///
/// The same type runs in two ways: compiled into a plugin (`.so`) and exported
/// with ``MigrationBundle/export(name:migrations:)``, or registered directly
/// with the engine's `Migrator` inside an app. Either way `up` runs inside one
/// write transaction together with the record that marks it applied: it
/// commits when `up` returns and is discarded when `up` throws.
///
/// ```swift
/// struct UserSettings: Migration {
///     let id = "003_user_settings"
///     let name = "User Settings"
///     let description = "Add user settings collection with default values"
///     let version = "1.2.0"
///     func up(_ db: Database) throws { … }
///     func down(_ db: Database) throws { … }
/// }
/// ```
///
/// `down` is required, so forgetting it is a compile error rather than a
/// migration that silently cannot be rolled back. A migration that truly
/// cannot be undone conforms to ``IrreversibleMigration`` instead, which
/// supplies `down` and tells the engine to refuse rollbacks across it.
///
/// A good migration is never edited once shipped: write a new one instead.
/// Declare ``checksum`` to have the engine detect edits.
public protocol Migration: Sendable {
    /// `<digits>_<lowercase words>`, e.g. `"003_user_settings"`. Ordered by
    /// the numeric prefix, so `10_x` runs after `9_x`.
    var id: String { get }
    /// A short human name, e.g. `"User Settings"`.
    var name: String { get }
    /// What the migration does and why.
    var description: String { get }
    /// The app or schema version that needs it, e.g. `"1.2.0"`.
    var version: String { get }
    /// A fingerprint of the migration's logic, chosen by its author (e.g.
    /// `"v1"`, or a hash). When it changes after the migration was applied,
    /// `apply` refuses to run. `nil` (the default) disables the check.
    var checksum: String? { get }
    /// Applies the change. Throw to abort: nothing it did is kept.
    func up(_ db: Database) throws
    /// Undoes `up`. Throw to abort the rollback of this migration.
    func down(_ db: Database) throws
}

extension Migration {
    /// A value that changes when the migration is edited: by default none, so edits are not detected.
    public var checksum: String? { nil }
    /// Whether `down` undoes `up` (false for ``IrreversibleMigration``).
    public var isReversible: Bool { !(self is any IrreversibleMigration) }
}

/// A migration that cannot be undone, for example one that deletes data.
/// Rollbacks that would need to cross it are refused before anything runs.
public protocol IrreversibleMigration: Migration {}

extension IrreversibleMigration {
    /// Refuses: an irreversible migration has no `down`, and rollbacks that reach it are refused before they start.
    public func down(_ db: Database) throws {
        throw DatabaseError(.invalid, "migration '\(id)' is irreversible")
    }
}

/// Validation of migration ids, shared by plugins, the loader and the engine.
public enum MigrationID {
    /// The longest id accepted, in UTF-8 bytes.
    public static let maxLength = 200

    /// The reason `id` is not a valid migration id, or `nil` if it is.
    /// Valid: one or more digits, `_`, then one or more of `[a-z0-9_]`.
    public static func problem(with id: String) -> String? {
        let bytes = Array(id.utf8)
        if bytes.isEmpty { return "the id is empty" }
        if bytes.count > maxLength { return "the id is \(bytes.count) bytes long; the limit is \(maxLength)" }
        let digits = bytes.prefix { $0 >= 0x30 && $0 <= 0x39 }.count
        if digits == 0 { return "the id must start with digits, as in 001_initial_setup" }
        if digits > 18 { return "the id's number has \(digits) digits; at most 18 are allowed" }
        guard digits < bytes.count, bytes[digits] == UInt8(ascii: "_") else {
            return "the digits must be followed by '_' and a name, as in 001_initial_setup"
        }
        let rest = bytes[(digits + 1)...]
        if rest.isEmpty {
            return "the id has no name after '\(String(decoding: bytes[..<(digits + 1)], as: UTF8.self))'"
        }
        if let bad = rest.first(where: { !(($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F) }) {
            let shown = bad < 0x80 ? "'\(Character(Unicode.Scalar(bad)))'" : "a non-ASCII byte"
            return "the name part may hold only a-z, 0-9 and '_', not \(shown)"
        }
        return nil
    }

    /// The numeric prefix of a valid id (`"010_x"` → 10).
    public static func sequence(of id: String) -> UInt64? {
        let digits = id.utf8.prefix { $0 >= 0x30 && $0 <= 0x39 }
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        return digits.reduce(0) { $0 * 10 + UInt64($1 - 0x30) }
    }
}

/// The Swift toolchain this code was compiled with, as `"swift-6.3.1"`.
/// Swift plugins must be built with the host's toolchain: they bind to the
/// host's already-loaded Swift runtime.
public enum SwiftToolchain {
    /// The toolchain this code was built with, e.g. `swift-6.3.1`; plugins record it, and the host compares.
    public static let current: String = {
        #if compiler(>=7.0)
        return "swift-7+"
        #elseif compiler(>=6.4)
        return "swift-6.4+"
        #elseif compiler(>=6.3.3)
        return "swift-6.3.3+"
        #elseif compiler(>=6.3.2)
        return "swift-6.3.2"
        #elseif compiler(>=6.3.1)
        return "swift-6.3.1"
        #elseif compiler(>=6.3)
        return "swift-6.3.0"
        #elseif compiler(>=6.2)
        return "swift-6.2"
        #elseif compiler(>=6.1)
        return "swift-6.1"
        #else
        return "swift-6.0"
        #endif
    }()
}
