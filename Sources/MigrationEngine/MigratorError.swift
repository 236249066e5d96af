/// A failure of the engine: loading plugins, planning or running migrations,
/// locking. `code` is stable and grows without breaking clients; `message`
/// names the file, migration id or collection involved.
///
/// A refused run carries every reason as data in ``refusals``; a failed
/// migration carries the migration's own error in ``underlying``, so an
/// embedding app can `catch` its own error type:
///
/// ```swift
/// do { try migrator.migrateUp() }
/// catch let e as MigratorError where e.underlying is PaymentServiceDown { … }
/// ```
public struct MigratorError: Error, CustomStringConvertible, Sendable {
    /// A stable, machine-readable error code. New codes may be added; match the ones you handle.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        init(_ raw: String) { rawValue = raw }
        public var description: String { rawValue }

        // Finding plugins.
        /// The migrations directory does not exist or is not a directory.
        public static let directoryNotFound = Code("directory_not_found")
        /// The migrations directory cannot be read.
        public static let directoryUnreadable = Code("directory_unreadable")
        /// A file or directory others could write (StrictModes rule).
        public static let insecurePermissions = Code("insecure_permissions")
        /// A plugin whose library search directories (`RUNPATH`) others could
        /// write or create, or that names a library by path.
        public static let unsafeLibraryPath = Code("unsafe_library_path")
        /// A step's outcome could not be read back (the database stopped
        /// answering): it may or may not have committed.
        public static let outcomeUnknown = Code("outcome_unknown")
        /// A config file someone else could change (StrictModes rule): not read.
        public static let untrustedConfig = Code("untrusted_config")
        /// A bundle file that cannot be used: its format, a member's name, size or hash.
        public static let invalidBundle = Code("invalid_bundle")
        /// A bundle whose `expires_at` has passed (a freeze).
        public static let bundleExpired = Code("bundle_expired")
        /// A bundle older than one this database already took (a rollback).
        public static let bundleRolledBack = Code("bundle_rolled_back")
        /// A bundle could not be fetched (a URL that is not https, another cause).
        public static let fetchFailed = Code("fetch_failed")
        /// The bundle URL's host name does not resolve.
        public static let fetchDNS = Code("fetch_dns")
        /// No connection to the bundle URL's server.
        public static let fetchConnect = Code("fetch_connect")
        /// The fetch took longer than its timeout.
        public static let fetchTimeout = Code("fetch_timeout")
        /// TLS failed: an untrusted certificate, a wrong host name, a handshake error.
        public static let fetchTLS = Code("fetch_tls")
        /// The server answered something else than 200.
        public static let fetchHTTPStatus = Code("fetch_http_status")
        /// The body is larger than the cap.
        public static let fetchTooLarge = Code("fetch_too_large")
        /// The body ended before its announced length.
        public static let fetchTruncated = Code("fetch_truncated")
        /// A redirect to plain http (or any other protocol) was refused.
        public static let fetchInsecureRedirect = Code("fetch_insecure_redirect")
        /// `run_as` names a user that does not exist, or one this process cannot become.
        public static let runAsRefused = Code("run_as_refused")
        /// A `.so` entry that is not a regular file, or a link leaving the folder.
        public static let notAPlugin = Code("not_a_plugin")
        // Checking and loading one plugin.
        /// A file that is not a loadable shared object for this machine.
        public static let invalidELF = Code("invalid_elf")
        /// A plugin that could not be loaded (including a crash or a hang while loading).
        public static let loadFailed = Code("load_failed")
        /// A plugin without `migrator_plugin_entry_v1`.
        public static let noEntrySymbol = Code("no_entry_symbol")
        /// A plugin built for another major version of the plugin ABI.
        public static let abiMismatch = Code("abi_mismatch")
        /// A plugin whose descriptors are malformed.
        public static let invalidDescriptor = Code("invalid_descriptor")
        /// A migration id that is not `NNN_name`.
        public static let invalidID = Code("invalid_id")
        /// A Swift plugin built by another toolchain (with strict toolchain checks).
        public static let toolchainMismatch = Code("toolchain_mismatch")
        // Across plugins.
        /// Two migrations with the same id.
        public static let duplicateID = Code("duplicate_id")
        /// Two migrations with the same sequence number.
        public static let duplicateSequence = Code("duplicate_sequence")
        // Refusals before a run (exit 4).
        /// A pending migration sorts before applied ones.
        public static let outOfOrder = Code("out_of_order")
        /// The database holds applied ids no plugin provides.
        public static let missingMigrations = Code("missing_migrations")
        /// An applied migration's declared checksum changed.
        public static let checksumChanged = Code("checksum_changed")
        /// A target id no migration has.
        public static let unknownTarget = Code("unknown_target")
        /// An apply target that is already applied.
        public static let targetAlreadyApplied = Code("target_already_applied")
        /// A rollback target, or a migration to repair, that is not applied.
        public static let targetNotApplied = Code("target_not_applied")
        /// A rollback would need the `down` of a migration that has none.
        public static let irreversible = Code("irreversible")
        /// A rollback reached a migration that another app (or the plugin
        /// runner) applied and owns.
        public static let ownedElsewhere = Code("owned_elsewhere")
        // Running.
        /// A step failed: its changes were rolled back.
        public static let migrationFailed = Code("migration_failed")
        /// The operator's signal stopped a step; nothing of it was committed.
        public static let interrupted = Code("interrupted")
        // Locking.
        /// A backup could not be written.
        public static let backupFailed = Code("backup_failed")
        /// A backup is damaged, incomplete or not a backup; restore refuses it.
        public static let backupInvalid = Code("backup_invalid")
        /// A restore could not complete; the database was left as it was.
        public static let restoreFailed = Code("restore_failed")
        /// `baseline` on a database where migrations already ran, without force.
        public static let baselineRefused = Code("baseline_refused")
        /// A plugin missing from `migrations.lock`, or whose hash differs.
        public static let notPinned = Code("not_pinned")
        /// `migrations.lock` cannot be read or parsed (or is required and missing).
        public static let invalidPinFile = Code("invalid_pin_file")
        /// A plugin without a valid signature from a trusted key.
        public static let untrustedPlugin = Code("untrusted_plugin")
        /// A trusted key file that cannot be used.
        public static let invalidTrustedKey = Code("invalid_trusted_key")
        /// A file an operator keeps (pins, keys, signatures), or a trial's
        /// scratch database, could not be written.
        public static let writeFailed = Code("write_failed")
        /// What was asked cannot be done in this configuration.
        public static let unsupported = Code("unsupported")
        /// A reversibility check found a migration whose `down` does not undo its `up`.
        public static let notReversible = Code("not_reversible")
        /// Another run held the run lock past the lock timeout.
        public static let lockTimeout = Code("lock_timeout")
        /// The run lock could not be taken (the lock file cannot be opened).
        public static let lockFailed = Code("lock_failed")
        /// A live process holds the run lock (`unlock` does not break it).
        public static let lockHeld = Code("lock_held")
        /// `db copy` refused or failed (a target that is not empty, contents
        /// that did not arrive identical); nothing was copied.
        public static let copyFailed = Code("copy_failed")

        /// Codes that mean "validation refused the run; nothing was changed".
        public var isRefusal: Bool {
            [
                Code.outOfOrder, .missingMigrations, .checksumChanged, .unknownTarget, .targetAlreadyApplied,
                .targetNotApplied, .irreversible, .ownedElsewhere, .duplicateID, .duplicateSequence,
                // A plugin that cannot be loaded also refuses the run.
                .insecurePermissions, .unsafeLibraryPath, .notAPlugin, .invalidELF, .loadFailed, .noEntrySymbol,
                .abiMismatch,
                .invalidDescriptor, .invalidID, .toolchainMismatch,
                // Checks that refuse before anything is changed.
                .notReversible, .backupInvalid, .unsupported, .baselineRefused, .notPinned, .invalidPinFile,
                .untrustedPlugin, .invalidTrustedKey, .untrustedConfig, .runAsRefused,
                .invalidBundle, .bundleExpired, .bundleRolledBack,
            ].contains(self)
        }
    }

    /// The stable code.
    public let code: Code
    /// The message, naming the file, migration or collection concerned.
    public let message: String
    /// The plugin file involved, if any.
    public let file: String?
    /// The migration id involved, if any.
    public let migrationID: String?
    /// Every reason a run was refused before anything ran; empty otherwise.
    public let refusals: [Refusal]
    /// The error underneath: a migration's own error, a storage error.
    public let underlying: (any Error)?

    /// An error with a code, a message and what it concerns.
    public init(
        _ code: Code, _ message: String, file: String? = nil, migrationID: String? = nil,
        underlying: (any Error)? = nil
    ) {
        self.code = code
        self.message = message
        self.file = file
        self.migrationID = migrationID
        self.refusals = []
        self.underlying = underlying
    }

    /// A refused run: the first refusal's code, every refusal's message.
    public init(refusals: [Refusal]) {
        let first = refusals.first
        code = first?.code ?? .unknownTarget
        message = refusals.map(\.message).joined(separator: "\n")
        file = first?.files.first
        migrationID = first?.migrationIDs.first
        self.refusals = refusals
        underlying = nil
    }

    public var description: String { message }
}

/// One reason the planner refused a run, as data: what is wrong, and the
/// migration ids, files and checksums it concerns.
public struct Refusal: Sendable, Equatable, CustomStringConvertible {
    /// Stable: `out_of_order`, `missing_migrations`, `checksum_changed`,
    /// `irreversible`, `unknown_target`, a plugin problem's code, …
    public let code: MigratorError.Code
    /// One line naming the ids and files.
    public let message: String
    /// The migrations concerned, in order.
    public let migrationIDs: [String]
    /// The plugin files concerned, if any.
    public let files: [String]
    /// For `checksum_changed`: what was recorded when it was applied.
    public let recordedChecksum: String?
    /// For `checksum_changed`: what the migration declares now.
    public let declaredChecksum: String?

    /// A refusal with its code, message and what it concerns.
    public init(
        _ code: MigratorError.Code, _ message: String, migrationIDs: [String] = [], files: [String] = [],
        recordedChecksum: String? = nil, declaredChecksum: String? = nil
    ) {
        self.code = code
        self.message = message
        self.migrationIDs = migrationIDs
        self.files = files
        self.recordedChecksum = recordedChecksum
        self.declaredChecksum = declaredChecksum
    }

    /// A problem found while loading (a broken plugin, a duplicate id).
    init(_ problem: MigratorError) {
        self.init(
            problem.code, problem.message, migrationIDs: problem.migrationID.map { [$0] } ?? [],
            files: problem.file.map { [$0] } ?? [])
    }

    public var description: String { message }
}

extension MigratorError {
    /// The insecure option's rule, said once: throws `self`, unless
    /// `insecure`; then `warn` hears the warning that it went on anyway
    /// (`verb`: what was done, "loaded" or "used").
    func unless(insecure: Bool, verb: String = "loaded", warn: (String) -> Void) throws(MigratorError) {
        guard insecure else { throw self }
        warn("warning: \(message) (\(verb) anyway: the insecure option is set)")
    }
}
