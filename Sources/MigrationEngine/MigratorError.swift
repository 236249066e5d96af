/// A failure of the engine: loading plugins, planning or running migrations,
/// locking. `code` is stable and grows without breaking clients; `message`
/// names the file, migration id or collection involved.
public struct MigratorError: Error, CustomStringConvertible, Sendable {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        init(_ raw: String) { rawValue = raw }
        public var description: String { rawValue }

        // Finding plugins.
        public static let directoryNotFound = Code("directory_not_found")
        public static let directoryUnreadable = Code("directory_unreadable")
        public static let insecurePermissions = Code("insecure_permissions")
        public static let notAPlugin = Code("not_a_plugin")
        // Checking and loading one plugin.
        public static let invalidELF = Code("invalid_elf")
        public static let loadFailed = Code("load_failed")
        public static let noEntrySymbol = Code("no_entry_symbol")
        public static let abiMismatch = Code("abi_mismatch")
        public static let invalidDescriptor = Code("invalid_descriptor")
        public static let invalidID = Code("invalid_id")
        public static let toolchainMismatch = Code("toolchain_mismatch")
        // Across plugins.
        public static let duplicateID = Code("duplicate_id")
        public static let duplicateSequence = Code("duplicate_sequence")
        // Refusals before a run (exit 4).
        public static let outOfOrder = Code("out_of_order")
        public static let missingMigrations = Code("missing_migrations")
        public static let checksumChanged = Code("checksum_changed")
        public static let unknownTarget = Code("unknown_target")
        public static let targetAlreadyApplied = Code("target_already_applied")
        public static let targetNotApplied = Code("target_not_applied")
        public static let irreversible = Code("irreversible")
        // Running.
        public static let migrationFailed = Code("migration_failed")
        // Locking.
        public static let lockTimeout = Code("lock_timeout")
        public static let lockFailed = Code("lock_failed")
        public static let lockHeld = Code("lock_held")

        /// Codes that mean "validation refused the run; nothing was changed".
        public var isRefusal: Bool {
            [Code.outOfOrder, .missingMigrations, .checksumChanged, .unknownTarget, .targetAlreadyApplied,
             .targetNotApplied, .irreversible, .duplicateID, .duplicateSequence,
             // A plugin that cannot be loaded also refuses the run.
             .insecurePermissions, .notAPlugin, .invalidELF, .loadFailed, .noEntrySymbol, .abiMismatch,
             .invalidDescriptor, .invalidID, .toolchainMismatch].contains(self)
        }
    }

    public let code: Code
    public let message: String
    /// The plugin file involved, if any.
    public let file: String?
    /// The migration id involved, if any.
    public let migrationID: String?

    public init(_ code: Code, _ message: String, file: String? = nil, migrationID: String? = nil) {
        self.code = code
        self.message = message
        self.file = file
        self.migrationID = migrationID
    }

    public var description: String { message }
}
