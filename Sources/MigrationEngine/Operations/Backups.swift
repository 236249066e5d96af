import DocumentStore
import FoundationEssentials
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// What a backup holds, written next to it as `manifest.json` and checked
/// before it is restored.
public struct BackupManifest: Sendable, Equatable, Codable {
    /// The manifest's format version.
    public var format: Int
    /// When the copy was taken, ISO-8601 UTC.
    public var createdAt: String
    /// The database the copy was taken from.
    public var source: String
    /// `user@host (pid N)`.
    public var by: String
    /// The migrations applied in the copy, in order.
    public var applied: [String]
    /// Each user collection's content digest (`migrator db digest`).
    public var collections: [String: String]
    /// The total digest over them.
    public var digest: String

    enum CodingKeys: String, CodingKey {
        case format, source, by, applied, collections, digest
        case createdAt = "created_at"
    }
}

/// Hot backups with `mdb_env_copyfd2`, checked restores, retention.
enum Backups {
    static let manifestName = "manifest.json"
    static let format = 1

    /// Copies the database into `directory` (new, or empty) and writes its
    /// manifest, made from the copy itself, so it describes exactly what was
    /// copied. On failure, what was written is removed.
    static func take(
        _ store: DocumentStore, source: String, to directory: String
    ) throws(MigratorError)
        -> BackupManifest
    {
        func fail(_ why: String) -> MigratorError {
            MigratorError(.backupFailed, "backup of '\(source)' into '\(directory)' failed: \(why)")
        }
        let existed = access(directory, F_OK) == 0
        if existed && !DocumentStore.isEmptyDirectory(directory) {
            throw MigratorError(
                .backupFailed,
                "backup target '\(directory)' exists and is not empty; a backup never overwrites anything")
        }
        do {
            try store.copy(to: directory)
            let manifest = try describe(directory, source: source)
            try writeManifest(manifest, in: directory)
            return manifest
        } catch {
            removeFlatDirectory(directory, keepDirectory: existed)
            throw fail((error as? MigratorError)?.message ?? "\(error)")
        }
    }

    /// The manifest of the database copy in `directory`, computed from it.
    static func describe(_ directory: String, source: String) throws -> BackupManifest {
        var options = DocumentStore.Options()
        options.readOnly = true
        let copy = try DocumentStore(path: directory, options: options)
        return try copy.read { txn in
            let (collections, total) = try txn.digests()
            return BackupManifest(
                format: format, createdAt: EngineClock.iso8601(), source: source, by: EngineClock.actor,
                applied: try Tracking.appliedMigrations(txn).map(\.id),
                collections: Dictionary(collections, uniquingKeysWith: { a, _ in a }), digest: total)
        }
    }

    static func writeManifest(_ manifest: BackupManifest, in directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Files.create(
            directory + "/" + manifestName, with: Array(try encoder.encode(manifest)) + [0x0A], mode: 0o600)
    }

    /// Reads `directory`'s manifest and checks the copy against it.
    /// - Throws: `.backupInvalid` naming what is wrong.
    static func check(_ directory: String) throws(MigratorError) -> BackupManifest {
        func invalid(_ why: String) -> MigratorError {
            MigratorError(.backupInvalid, "'\(directory)' is not a usable backup: \(why)")
        }
        let path = directory + "/" + manifestName
        guard let text = readSmallFile(path) else { throw invalid("no readable \(manifestName)") }
        let manifest: BackupManifest
        do { manifest = try JSONDecoder().decode(BackupManifest.self, from: Data(text)) } catch {
            throw invalid("\(manifestName) is not a migrator backup manifest (\(error))")
        }
        guard manifest.format == format else {
            throw invalid("its manifest has format \(manifest.format); this migrator reads format \(format)")
        }
        guard access(directory + "/data.mdb", R_OK) == 0 else { throw invalid("data.mdb is missing") }
        let actual: BackupManifest
        do { actual = try describe(directory, source: manifest.source) } catch {
            throw invalid("its data cannot be read (\(error)); it is damaged or truncated")
        }
        guard actual.digest == manifest.digest else {
            let changed = Set(actual.collections.keys).union(manifest.collections.keys).sorted().filter {
                actual.collections[$0] != manifest.collections[$0]
            }
            throw invalid(
                "its contents do not match the manifest's digest (collections that differ: "
                    + "\(changed.joined(separator: ", "))); it was changed or damaged after it was taken")
        }
        guard actual.applied == manifest.applied else {
            throw invalid("its _migrations records do not match the manifest")
        }
        return manifest
    }

    /// See ``Migrator/restore(from:)``.
    static func restore(
        _ directory: String, into storage: LMDBStorage, lockTimeout: Double,
        events: @escaping @Sendable (RunEvent) -> Void
    ) throws -> BackupManifest {
        let manifest = try Backups.check(directory)
        let current =
            storage.exists
            ? try storage.acquireLock(
                command: "restore", timeout: lockTimeout,
                onWait: { owner in
                    events(.lockWait(holder: owner?.summary ?? "another process"))
                }) : nil
        defer { current?.release() }
        let stamp = EngineClock.iso8601().filter { $0.isNumber }
        let staging = storage.location + ".restoring-" + stamp
        func fail(_ why: String) -> MigratorError {
            MigratorError(.restoreFailed, "restore of '\(directory)' into '\(storage.location)' failed: \(why)")
        }
        guard mkdir(staging, 0o700) == 0 else { throw fail("cannot create '\(staging)': \(errorText(errno))") }
        var stagingLive = true
        defer { if stagingLive { Backups.removeFlatDirectory(staging) } }
        try Backups.copyFile(directory + "/data.mdb", staging + "/data.mdb")
        guard try Backups.describe(staging, source: storage.location).digest == manifest.digest else {
            throw fail("the copy in '\(staging)' does not match the backup's digest")
        }
        // Held across the swap: a run that starts meanwhile waits for it.
        let stagingLock = try RunLock(database: staging, command: "restore", timeout: 0, onWait: nil)
        defer { stagingLock.release() }
        let aside = storage.location + ".before-restore-" + stamp
        if storage.exists {
            guard migrator_rename_exchange(staging, storage.location) == 0 else {
                throw fail("cannot swap '\(staging)' into place: \(errorText(errno))")
            }
            guard rename(staging, aside) == 0 else {
                // The new one is in place; keep the old one where it is and say so.
                stagingLive = false
                throw fail(
                    "the restored database is in place, but '\(staging)' (the previous one) could not be renamed")
            }
        } else {
            guard rename(staging, storage.location) == 0 else {
                throw fail("cannot move '\(staging)' to '\(storage.location)': \(errorText(errno))")
            }
        }
        stagingLive = false
        storage.reopen()
        let live = try? Backups.describe(storage.location, source: storage.location)
        guard live?.digest == manifest.digest else {
            if access(aside, F_OK) == 0 { _ = migrator_rename_exchange(aside, storage.location) }
            throw fail(
                "the restored database does not match the backup once in place; the previous one was put back "
                    + "(the restored copy is in '\(aside)')")
        }
        if access(aside, F_OK) == 0 { Backups.removeFlatDirectory(aside) }
        return manifest
    }

    /// The backups `migrator` made in `parent` (named `backup-…`, with a
    /// manifest), oldest first.
    static func list(in parent: String) -> [String] {
        guard let d = opendir(parent) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix("backup-"), access(parent + "/" + name + "/" + manifestName, F_OK) == 0 {
                names.append(name)
            }
        }
        return names.sorted().map { parent + "/" + $0 }
    }

    /// Removes all but the newest `keep` backups in `parent`; returns what it removed.
    static func prune(_ parent: String, keep: Int) -> [String] {
        let all = list(in: parent)
        guard all.count > keep else { return [] }
        let old = Array(all.prefix(all.count - keep))
        for path in old { removeFlatDirectory(path) }
        return old
    }

    /// A new backup's path in `parent` (created 0700 if missing).
    static func newPath(in parent: String) throws(MigratorError) -> String {
        if access(parent, F_OK) != 0 && mkdir(parent, 0o700) != 0 {
            throw MigratorError(.backupFailed, "cannot create the backup directory '\(parent)': \(errorText(errno))")
        }
        return parent + "/" + newName()
    }

    /// A name that sorts by time: `backup-20261127T001500123Z`.
    static func newName() -> String {
        "backup-" + EngineClock.iso8601().filter { $0.isNumber || $0 == "T" || $0 == "Z" }
    }

    /// Removes the files directly in `path` (never following links or
    /// descending), then the directory itself unless `keepDirectory`.
    static func removeFlatDirectory(_ path: String, keepDirectory: Bool = false) {
        if let d = opendir(path) {
            var names: [String] = []
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(d)
            for name in names { _ = unlink(path + "/" + name) }
        }
        if !keepDirectory { _ = rmdir(path) }
    }

    static func readSmallFile(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | migrator_O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count <= limit {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return nil }
            if n == 0 { return out }
            out += buf.prefix(n)
        }
        return nil
    }

    /// Copies `from` to the new file `to` (0600) and syncs it.
    static func copyFile(_ from: String, _ to: String) throws(MigratorError) {
        let src = open(from, O_RDONLY | O_CLOEXEC | migrator_O_NOFOLLOW)
        guard src >= 0 else { throw MigratorError(.restoreFailed, "\(from): \(errorText(errno))") }
        defer { close(src) }
        let dst = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | migrator_O_NOFOLLOW, 0o600)
        guard dst >= 0 else { throw MigratorError(.restoreFailed, "\(to): \(errorText(errno))") }
        defer { close(dst) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buf.withUnsafeMutableBytes { read(src, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw MigratorError(.restoreFailed, "\(from): \(errorText(errno))") }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { write(dst, $0.baseAddress! + off, n - off) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw MigratorError(.restoreFailed, "\(to): \(errorText(errno))") }
                off += w
            }
        }
        guard fsync(dst) == 0 else { throw MigratorError(.restoreFailed, "\(to): \(errorText(errno))") }
    }
}
