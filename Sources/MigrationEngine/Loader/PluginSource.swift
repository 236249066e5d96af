import DocumentStore

/// What a source is asked for: the loader's policy, which every source
/// applies the same way.
package struct SourcePolicy {
    /// Accept what the owner/mode rule, or a library path rule, would refuse (warns).
    package var insecure = false
    /// Descriptors cached from an earlier load (``DescriptorCache``), by key.
    var cache = DescriptorCache()
    /// Reuse cached descriptors for unchanged images instead of reading them.
    package var descriptorsOnly = false
    /// Refuse a set without pins.
    package var requirePin = false
    /// Accept only images signed by one of these keys (nil: no signatures needed).
    package var trustedKeys: [PluginSignatures.PublicKey]?
    /// The sonames the process that loads the images already has.
    package var loadedLibraries: Set<String> = []
}

/// What a source yields: the images that passed every check, in order,
/// and what it could not use.
package struct SourceScan {
    package var files: [CheckedPluginFile] = []
    /// Entries that are not plugins (`README.md`), reported and skipped.
    package var skipped: [String] = []
    /// Images that cannot be loaded, each naming its file.
    package var problems: [MigratorError] = []
    package var warnings: [String] = []

    /// Nothing found yet.
    package init() {}
}

/// Where plugin images come from (golang-migrate's source driver): a folder
/// today; a bundle file or an `https://` URL are further sources. A source
/// checks what only it can (a folder's owner and mode, its pins and
/// signatures); its images exist only through
/// ``CheckedPluginFile/init(checking:name:path:key:origin:policy:signer:pinned:warnings:)``,
/// which applies ``ImageCheck`` to their bytes; and the loader refuses any
/// image that is not signed or pinned when its policy requires it. Nothing
/// from any source runs unchecked.
package protocol PluginSource {
    /// Where it reads, for messages.
    var location: String { get }
    /// Every image, checked, in the order of their names; `onChecked` sees
    /// each as soon as it passed, so loading overlaps with checking the rest.
    /// Throws only when the source itself cannot be used.
    func scan(_ policy: SourcePolicy, onChecked: (CheckedPluginFile) -> Void) throws(MigratorError) -> SourceScan
}

/// A kind of source, for the locations of its URI schemes.
package protocol PluginSourceDriver: Sendable {
    /// The source's kind in messages ("folder").
    var name: String { get }
    /// The URI schemes it reads, lowercase; empty for plain paths (folders).
    var schemes: [String] { get }
    /// The source at `location`.
    func source(at location: String) -> any PluginSource
}

/// The registered source drivers. Folders, for plain paths, are always there.
package enum PluginSources {
    private static let registered = DriverRegistry<any PluginSourceDriver>([("folder", FolderSourceDriver())])

    /// Registers `driver` for its schemes; one of the same name is replaced.
    package static func register(_ driver: any PluginSourceDriver) { registered.register(driver, named: driver.name) }

    /// The source at `location`: through the driver of its scheme, or a
    /// folder for a plain path.
    /// - Throws: `.directoryNotFound` for a scheme no driver registered.
    package static func source(at location: String) throws(MigratorError) -> any PluginSource {
        let drivers = registered.all
        guard let scheme = StorageDrivers.scheme(of: location) else {
            guard let folder = drivers.first(where: { $0.schemes.isEmpty }) else {
                throw MigratorError(.directoryNotFound, "no source driver reads directory paths ('\(location)')")
            }
            return folder.source(at: location)
        }
        guard let driver = drivers.last(where: { $0.schemes.contains(scheme) }) else {
            let known = drivers.flatMap(\.schemes).sorted()
            throw MigratorError(
                .directoryNotFound,
                "no source driver is registered for '\(scheme)://' (migrations at '\(location)'); "
                    + (known.isEmpty
                        ? "only folders can be read" : "known: \(known.joined(separator: ", ")), and folders"))
        }
        return driver.source(at: location)
    }
}

/// A migrations folder: see `PluginDirectory.scan`.
struct FolderSource: PluginSource {
    let location: String

    func scan(_ policy: SourcePolicy, onChecked: (CheckedPluginFile) -> Void) throws(MigratorError) -> SourceScan {
        try PluginDirectory.scan(
            location, insecure: policy.insecure, cache: policy.cache, descriptorsOnly: policy.descriptorsOnly,
            requirePin: policy.requirePin, trustedKeys: policy.trustedKeys, loadedLibraries: policy.loadedLibraries,
            onChecked: onChecked)
    }
}

struct FolderSourceDriver: PluginSourceDriver {
    var name: String { "folder" }
    var schemes: [String] { [] }
    func source(at location: String) -> any PluginSource { FolderSource(location: location) }
}

/// The checks every image gets from every source, on its bytes, before any
/// of its code runs: ELF structure, the libraries it needs (and where it
/// would look for them), and the SHA-256 that pins and signatures are
/// checked against.
enum ImageCheck {
    /// The hash of `bytes`, once they passed; `origin` is the directory a
    /// `$ORIGIN` in the image's RUNPATH would name, if it has one.
    /// - Throws: `.invalidELF` or `.unsafeLibraryPath`, naming `path`.
    static func check(
        _ bytes: [UInt8], name: String, path: String, origin: String, insecure: Bool, loadedLibraries: Set<String>,
        warnings: inout [String]
    ) throws(MigratorError) -> String {
        func fail(_ code: MigratorError.Code, _ why: String) -> MigratorError {
            MigratorError(code, "plugin '\(path)': \(why)", file: name)
        }
        if let why = ELFCheck.problem(bytes) { throw fail(.invalidELF, why) }
        let dependencies: ELFDependencies
        do { dependencies = try ELFDependencies(bytes) } catch { throw fail(.invalidELF, error.reason) }
        if let why = dependencies.problem(migrationsDirectory: origin, loaded: loadedLibraries) {
            try fail(.unsafeLibraryPath, why).unless(insecure: insecure) { warnings.append($0) }
        }
        // Hashed every time: the hash must describe these bytes, which are
        // the ones that will be loaded.
        return SHA256Digest.hex(bytes)
    }
}
