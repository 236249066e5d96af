import FoundationEssentials
import MigrationKit
import MigratorPluginABI

#if canImport(Glibc)
import Glibc
#endif

/// One loaded plugin file.
package struct LoadedPlugin: Sendable {
    /// The file name inside the migrations directory.
    package let file: String
    package let path: String
    package let sha256: String
    package let identity: FileIdentity
    /// The bundle name the plugin declares.
    package let name: String
    /// `"swift-6.3.1"` for Swift plugins, `nil` for C.
    package let toolchain: String?
    package let abiMinor: UInt32
    /// Its migrations, in the order the plugin lists them.
    package let migrations: [AvailableMigration]
    /// The trusted key that signed the file, when signatures are required.
    package var signer: String? = nil
}

/// Everything found in a migrations directory.
public struct PluginSet: Sendable {
    package var plugins: [LoadedPlugin] = []
    /// Every migration from every plugin, in application order. Duplicate
    /// ids and sequence numbers are reported by ``MigrationCatalog``.
    public var migrations: [AvailableMigration] = []
    /// Files that could not be used. Any problem makes `apply` refuse to run.
    public var problems: [MigratorError] = []
    /// Non-fatal notes: skipped files, toolchain differences, `--insecure`.
    public var warnings: [String] = []

    /// An empty set.
    public init() {}
}

/// Finds, checks and loads plugins.
///
/// Nothing from a file runs before it passes the checks in
/// its directory scan. Then it is loaded with
/// `dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)` and never closed
/// (unloading a Swift image crashes the runtime), its entry is called
/// once, and the descriptor is validated field by field.
public enum PluginLoader {
    /// How plugins are found, checked and loaded.
    public struct Options: Sendable {
        /// Accept group/world-writable or foreign-owned files and directory.
        public var insecure = false
        /// Make a Swift plugin built by another toolchain an error.
        public var strictToolchain = false
        /// For reporting only (`status`): files unchanged since the cache in
        /// `cacheDirectory` was written are not loaded; their migrations
        /// cannot be run.
        public var descriptorsOnly = false
        /// Where the descriptor cache lives (the database directory), if any.
        public var cacheDirectory: String?
        /// Where plugin code is loaded and run (default: in this process).
        public var isolation: PluginIsolation = .inProcess
        /// Refuse to load anything when the folder has no `migrations.lock`.
        /// (With one, a file it does not pin is always refused.)
        public var requirePin = false
        /// Load only plugins signed by a key in this directory (`*.pub`).
        public var trustedKeysDirectory: String?
        /// Options; see each property.
        public init(
            insecure: Bool = false, strictToolchain: Bool = false, descriptorsOnly: Bool = false,
            cacheDirectory: String? = nil
        ) {
            self.insecure = insecure
            self.strictToolchain = strictToolchain
            self.descriptorsOnly = descriptorsOnly
            self.cacheDirectory = cacheDirectory
        }
    }

    /// The most migrations one plugin may declare.
    public static let maxMigrationsPerPlugin: UInt32 = 100_000
    /// The host's descriptor size for `migrator_plugin_v1`.
    static let pluginStructSize = UInt32(MemoryLayout<migrator_plugin_v1>.size)

    /// Loads every plugin in `directory` (a folder, or a location a source
    /// driver reads). Throws only when the source itself is unusable;
    /// per-file failures go to ``PluginSet/problems``.
    package static func load(directory: String, options: Options = Options()) throws(MigratorError) -> PluginSet {
        try loadHoldingCode(from: try PluginSources.source(at: directory), options: options).set
    }

    /// Loads every plugin `source` yields, and returns the worker that holds
    /// their code when they were loaded in one (``Options/isolation``): the
    /// caller owns it, and plugins whose body is `.worker` run only there.
    static func loadHoldingCode(
        from source: any PluginSource, options: Options = Options()
    ) throws(MigratorError) -> (set: PluginSet, worker: WorkerClient?) {
        let cachePath = options.cacheDirectory.map { $0 + "/" + DescriptorCache.fileName }
        let old = cachePath.map(DescriptorCache.load) ?? DescriptorCache()
        let worker = options.isolation.executable == nil ? nil : WorkerClient(options.isolation)
        let trustedKeys = try options.trustedKeysDirectory.map { (keys) throws(MigratorError) in
            try PluginSignatures.trustedKeys(in: keys)
        }
        // What the loading process already has, so the loader will not search for.
        let loadedLibraries =
            switch options.isolation.executable {
            case nil: LoadedLibraries.current()
            case "/proc/self/exe": LoadedLibraries.atStartup
            default: Set<String>()
            }
        let policy = SourcePolicy(
            insecure: options.insecure, cache: old, descriptorsOnly: options.descriptorsOnly,
            requirePin: options.requirePin, trustedKeys: trustedKeys, loadedLibraries: loadedLibraries)
        // Whatever the source: with keys, only a signed image; with
        // pins required, only a pinned one. Refused before any of it is sent
        // to a worker or loaded.
        var refused: [MigratorError] = []
        func admitted(_ file: CheckedPluginFile) -> Bool {
            if trustedKeys != nil && file.signer == nil {
                refused.append(
                    MigratorError(
                        .untrustedPlugin,
                        "plugin '\(file.path)' was not checked against a trusted key by its source; "
                            + "refusing to load it",
                        file: file.name))
                return false
            }
            if options.requirePin && !file.pinned {
                refused.append(
                    MigratorError(
                        .notPinned, "plugin '\(file.path)' is not pinned by its source; refusing to load it",
                        file: file.name))
                return false
            }
            return true
        }
        func scan(onChecked: (CheckedPluginFile) -> Void = { _ in }) throws(MigratorError) -> SourceScan {
            var scanned = try source.scan(policy) { file in if admitted(file) { onChecked(file) } }
            scanned.files = scanned.files.filter { file in !refused.contains { $0.file == file.name } }
            return scanned
        }
        // With a worker, every file to load goes in one exchange, each as
        // soon as it passed its checks.
        let scanned: SourceScan
        var described: [String: Result<LoadedPlugin, MigratorError>] = [:]
        var workerWarnings: [String] = []
        if let worker {
            (scanned, described) = try worker.describeAll(
                strictToolchain: options.strictToolchain, warnings: &workerWarnings
            ) { send throws(MigratorError) in
                try scan { file in if file.cached == nil { send(file) } }
            }
        } else {
            scanned = try scan()
        }
        var set = PluginSet()
        set.problems = scanned.problems + refused
        set.warnings = scanned.warnings + scanned.skipped.map { "note: skipping \($0)" } + workerWarnings
        var all: [AvailableMigration] = []
        var cache = DescriptorCache()
        for file in scanned.files {
            do {
                var plugin: LoadedPlugin
                if let cached = file.cached {
                    plugin = cached
                } else if let result = described[file.key] {
                    plugin = try result.get()
                } else {
                    plugin = try loadInProcess(file, options: options, warnings: &set.warnings)
                }
                plugin.signer = file.signer
                set.plugins.append(plugin)
                all += plugin.migrations.map { m in
                    var signed = m
                    signed.signedBy = file.signer
                    signed.bundle = file.bundle
                    return signed
                }
                cache.entries[file.key] = .init(identity: file.identity, plugin: plugin)
            } catch {
                set.problems.append(error)
            }
        }
        if let cachePath, access(options.cacheDirectory ?? "", W_OK) == 0, !cache.entries.isEmpty,
            cache.entries.contains(where: { old.entries[$0.key]?.identity != $0.value.identity })
                || cache.entries.count != old.entries.count
        {
            cache.save(cachePath)
        }
        // Conflicts between migrations are the catalog's to report, once.
        set.migrations = all.sorted(by: AvailableMigration.precedes)
        return (set, described.isEmpty ? nil : worker)
    }

    /// Loads a checked file's bytes into this process, calls its entry and
    /// validates the descriptor.
    static func loadInProcess(
        _ file: CheckedPluginFile, options: Options, warnings: inout [String]
    ) throws(MigratorError) -> LoadedPlugin {
        func fail(_ code: MigratorError.Code, _ why: String, id: String? = nil) -> MigratorError {
            MigratorError(code, "plugin '\(file.path)': \(why)", file: file.name, migrationID: id)
        }
        guard let bytes = file.bytes else { throw fail(.loadFailed, "its bytes were not read") }
        let image: Int32
        do { image = try SealedImage.seal(bytes, name: file.name) } catch {
            throw fail(.loadFailed, error.description)
        }
        return try loadSealed(image, file: file, options: options, warnings: &warnings)
    }

    /// Loads a sealed memfd holding a checked file's bytes (made by
    /// ``SealedImage/seal(_:name:)``, here or in the worker's parent), calls
    /// its entry and validates the descriptor.
    static func loadSealed(
        _ image: Int32, file: CheckedPluginFile, options: Options, warnings: inout [String]
    ) throws(MigratorError) -> LoadedPlugin {
        func fail(_ code: MigratorError.Code, _ why: String, id: String? = nil) -> MigratorError {
            MigratorError(code, "plugin '\(file.path)': \(why)", file: file.name, migrationID: id)
        }
        let handle: UnsafeMutableRawPointer
        do { handle = try SealedImage.open(image) } catch { throw fail(.loadFailed, error.description) }
        // Never dlclose: see the type's documentation.
        guard let symbol = dlsym(handle, MIGRATOR_PLUGIN_ENTRY_NAME) else {
            throw fail(
                .noEntrySymbol,
                "does not export \(MIGRATOR_PLUGIN_ENTRY_NAME); is it a migrator plugin? (see migrator_plugin.h)")
        }
        let entry = unsafeBitCast(symbol, to: migrator_plugin_entry_fn.self)
        guard let bundle = entry() else {
            throw fail(.invalidDescriptor, "\(MIGRATOR_PLUGIN_ENTRY_NAME)() returned NULL")
        }
        return try describe(bundle, file: file, options: options, warnings: &warnings)
    }

    /// Validates a bundle field by field and copies it into Swift values.
    /// (Separate from loading so that the fuzzer can feed it any bytes.)
    static func describe(
        _ bundle: UnsafePointer<migrator_plugin_v1>, file: CheckedPluginFile, options: Options,
        warnings: inout [String]
    ) throws(MigratorError) -> LoadedPlugin {
        func fail(_ code: MigratorError.Code, _ why: String, id: String? = nil) -> MigratorError {
            MigratorError(code, "plugin '\(file.path)': \(why)", file: file.name, migrationID: id)
        }
        // Fixed-position header first: it is valid in every ABI version.
        let raw = UnsafeRawPointer(bundle)
        let major = raw.load(fromByteOffset: 0, as: UInt32.self)
        let minor = raw.load(fromByteOffset: 4, as: UInt32.self)
        let size = raw.load(fromByteOffset: 8, as: UInt32.self)
        guard major == UInt32(MIGRATOR_ABI_MAJOR) else {
            throw fail(
                .abiMismatch,
                "built for plugin ABI \(major).\(minor); this migrator loads ABI \(MIGRATOR_ABI_MAJOR).x "
                    + "(it is \(MIGRATOR_ABI_MAJOR).\(MIGRATOR_ABI_MINOR))"
            )
        }
        guard size >= pluginStructSize else {
            throw fail(
                .invalidDescriptor,
                "struct_size is \(size) bytes; migrator_plugin_v1 needs at least \(pluginStructSize)")
        }
        let b = bundle.pointee
        let name = try requiredString(b.name, "the bundle name", limit: 1024, fail)
        let toolchain = try optionalString(b.toolchain, "toolchain", limit: 256, fail)
        if let toolchain, toolchain.hasPrefix("swift"), toolchain != SwiftToolchain.current {
            let why =
                "built with \(toolchain), but this migrator runs \(SwiftToolchain.current); "
                + "a Swift plugin must be built with the host's toolchain or it may crash"
            if options.strictToolchain { throw fail(.toolchainMismatch, why) }
            warnings.append("warning: plugin '\(file.path)': \(why)")
        }
        guard b.migration_count <= maxMigrationsPerPlugin else {
            throw fail(
                .invalidDescriptor,
                "declares \(b.migration_count) migrations; the limit is \(maxMigrationsPerPlugin) per plugin")
        }
        guard b.migration_count == 0 || b.migrations != nil else {
            throw fail(.invalidDescriptor, "declares \(b.migration_count) migrations but the migrations array is NULL")
        }
        var migrations: [AvailableMigration] = []
        var seen: Set<String> = []
        for i in 0..<Int(b.migration_count) {
            guard let m = b.migrations?[i] else { break }
            let label = "migration #\(i)"
            let id = try requiredString(m.id, "the id of \(label)", limit: MigrationID.maxLength + 1, fail)
            if let problem = MigrationID.problem(with: id) {
                throw fail(.invalidID, "\(label) has the invalid id '\(id)': \(problem)", id: id)
            }
            guard seen.insert(id).inserted else {
                throw fail(.duplicateID, "migration id '\(id)' appears twice in this file", id: id)
            }
            let what = "migration '\(id)'"
            guard let up = m.up else { throw fail(.invalidDescriptor, "\(what) has no up function (NULL)", id: id) }
            let version = try requiredString(m.version, "the version of \(what)", limit: 256, fail)
            // The header makes version required: an empty one says nothing.
            guard !version.isEmpty else { throw fail(.invalidDescriptor, "the version of \(what) is empty", id: id) }
            migrations.append(
                AvailableMigration(
                    id: id,
                    name: try requiredString(m.name, "the name of \(what)", limit: 1024, fail),
                    description: try requiredString(m.description, "the description of \(what)", limit: 65536, fail),
                    version: version,
                    checksum: try optionalString(m.checksum, "the checksum of \(what)", limit: 1024, fail),
                    isReversible: m.down != nil,
                    origin: .plugin(file: file.name, sha256: file.sha256),
                    body: .plugin(up: up, down: m.down, userdata: m.userdata)))
        }
        return LoadedPlugin(
            file: file.name, path: file.path, sha256: file.sha256, identity: file.identity,
            name: name, toolchain: toolchain, abiMinor: minor, migrations: migrations)
    }

    private static func requiredString(
        _ p: UnsafePointer<CChar>?, _ what: String, limit: Int,
        _ fail: (MigratorError.Code, String, String?) -> MigratorError
    ) throws(MigratorError) -> String {
        guard let s = try optionalString(p, what, limit: limit, fail) else {
            throw fail(.invalidDescriptor, "\(what) is NULL", nil)
        }
        return s
    }

    /// A plugin string, bounded and checked to be UTF-8.
    private static func optionalString(
        _ p: UnsafePointer<CChar>?, _ what: String, limit: Int,
        _ fail: (MigratorError.Code, String, String?) -> MigratorError
    ) throws(MigratorError) -> String? {
        guard let p else { return nil }
        let n = strnlen(p, limit + 1)
        guard n <= limit else { throw fail(.invalidDescriptor, "\(what) is longer than \(limit) bytes", nil) }
        let bytes = UnsafeRawBufferPointer(start: p, count: n)
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw fail(.invalidDescriptor, "\(what) is not valid UTF-8", nil)
        }
        return s
    }
}
