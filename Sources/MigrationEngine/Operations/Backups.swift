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
    /// The SHA-256 of the copy's `data.mdb`, so every byte (indexes and
    /// history included) is checked. Nil in manifests written before it.
    public var dataSHA256: String?

    enum CodingKeys: String, CodingKey {
        case format, source, by, applied, collections, digest
        case createdAt = "created_at"
        case dataSHA256 = "data_sha256"
    }
}

/// The key that signs backups and checks them: a `migrator keygen` private
/// key (`NAME.key`: signs, and checks what it signed), or a public key
/// (`NAME.pub`: checks only, e.g. on the host a backup is restored on).
public struct BackupKey: Sendable {
    /// The key file, as given.
    public let path: String
    /// The key's id (the first 16 hex of its public key's SHA-256).
    public var id: String { publicKey.id }
    let privateKey: [UInt8]?
    let publicKey: PluginSignatures.PublicKey

    /// Reads the key file at `path`: a private key (which must not be
    /// readable by others) or a public one.
    /// - Throws: ``MigratorError`` `.invalidTrustedKey` naming the file.
    public init(path: String) throws(MigratorError) {
        self.path = path
        // Whoever could write the key decides which backups restore: the
        // owner/mode rule, as for the config file that names it.
        let bytes: [UInt8]
        do { bytes = try TrustedFile.read(path, role: "backup key", limit: 4096) } catch {
            throw MigratorError(.invalidTrustedKey, error.message, underlying: error)
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if let raw = PluginSignatures.parseKey(text, tag: PluginSignatures.publicTag) {
            privateKey = nil
            let name = (path.split(separator: "/").last.map(String.init) ?? path)
            publicKey = PluginSignatures.PublicKey(
                name: String(name.dropLast(name.hasSuffix(".pub") ? 4 : 0)), raw: raw)
        } else if PluginSignatures.parseKey(text, tag: PluginSignatures.privateTag) != nil {
            (privateKey, publicKey) = try PluginSignatures.privateKey(at: path)
        } else {
            throw MigratorError(
                .invalidTrustedKey,
                "the backup key '\(path)' is neither a migrator private key (\(PluginSignatures.privateTag)) "
                    + "nor a public one (\(PluginSignatures.publicTag))")
        }
    }

    /// Whether it can sign (a private key).
    public var canSign: Bool { privateKey != nil }
}

/// What vouches for a backup, besides its owner and mode.
public enum BackupSignature: Sendable, Equatable {
    /// Signed by the backup key given; the key's id.
    case verified(keyID: String)
    /// Signed by key `keyID`, but no backup key was given to check it.
    case unchecked(keyID: String)
    /// No `manifest.json.sig`.
    case unsigned

    /// What a restore says when nothing but the backup's owner and mode vouch for it.
    public var warning: String? {
        switch self {
        case .verified: return nil
        case .unchecked(let id):
            return
                "is signed by key \(id), but no backup key was given to check it; only its owner and mode vouch for it"
        case .unsigned:
            return "is not signed; only its owner and mode vouch for it (sign backups with backup_key)"
        }
    }
}

/// A backup that passed its checks: its manifest and what vouches for it.
public struct CheckedBackup: Sendable {
    /// The manifest, as the backup's contents matched it.
    public let manifest: BackupManifest
    /// Whether a backup key checked its signature.
    public let signature: BackupSignature
}

/// Hot backups with `mdb_env_copyfd2`, checked restores, retention.
enum Backups {
    /// The refusal of `backup` or `restore` (`what`) on a storage that is
    /// not ``BackupCapable``, with its driver's advice.
    static func unsupported(_ what: String, _ location: String) -> MigratorError {
        let driver = StorageDrivers.driver(for: location)
        return MigratorError(
            .unsupported,
            "\(what) an LMDB database; '\(location)' is \(driver?.name ?? "not one"): "
                + (driver?.backupAdvice ?? "no storage driver is registered for it"))
    }

    static let manifestName = "manifest.json"
    static let signatureName = "manifest.json.sig"
    static let format = 1

    /// Copies the database into `directory` (open, and empty) and writes
    /// its manifest, made from the copy itself, so it describes exactly what
    /// was copied. Everything goes through the directory's descriptor. On
    /// failure, what was written is removed (the directory stays).
    /// With `key` (a private one), the manifest is signed too.
    static func take(
        _ store: DocumentStore, source: String, into directory: OpenDirectory, key: BackupKey?
    ) throws(MigratorError)
        -> BackupManifest
    {
        func fail(_ why: String) -> MigratorError {
            MigratorError(.backupFailed, "backup of '\(source)' into '\(directory.path)' failed: \(why)")
        }
        guard let entries = directory.entries() else {
            throw fail("it cannot be read (\(errorText(errno)))")
        }
        guard entries.isEmpty else {
            throw MigratorError(
                .backupFailed,
                "backup target '\(directory.path)' exists and is not empty; a backup never overwrites anything")
        }
        do {
            try store.copy(into: directory.fd, named: directory.path)
            var manifest = try describe(directory.anchoredPath, source: source)
            manifest.dataSHA256 = try dataHash(in: directory, fail)
            try writeManifest(manifest, in: directory, key: key)
            return manifest
        } catch {
            directory.removeEntries()
            throw fail((error as? MigratorError)?.message ?? "\(error)")
        }
    }

    /// `migrator backup --out PATH`: PATH, new (made 0700) or an empty
    /// directory, never a symlink, opened; `body` takes the backup into
    /// it. A directory made here is removed again if `body` fails.
    static func into<R>(
        _ path: String, _ body: (OpenDirectory) throws -> R
    ) throws -> R {
        var st = stat()
        let existed = lstat(path, &st) == 0
        if !existed {
            do { try DocumentStore.makeDirectory(path) } catch {
                throw MigratorError(.backupFailed, "cannot create the backup directory '\(path)': \(error.message)")
            }
        }
        guard let directory = OpenDirectory(opening: path) else {
            let why = errno == ELOOP || errno == ENOTDIR ? "it is not a directory (or is a symlink)" : errorText(errno)
            throw MigratorError(.backupFailed, "backup target '\(path)' cannot be used: \(why)")
        }
        do { return try body(directory) } catch {
            if !existed { _ = rmdir(path) }
            throw error
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

    /// Writes `manifest.json` and, with a private `key`, its signature
    /// `manifest.json.sig` (over the manifest file's bytes).
    static func writeManifest(_ manifest: BackupManifest, in directory: OpenDirectory, key: BackupKey?) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let bytes = Array(try encoder.encode(manifest)) + [0x0A]
        try Files.create(
            manifestName, relativeTo: directory.fd, label: directory.path + "/" + manifestName, with: bytes,
            mode: 0o600)
        guard let key else { return }
        guard let priv = key.privateKey else {
            throw MigratorError(
                .invalidTrustedKey, "the backup key '\(key.path)' is a public key; signing a backup needs the .key file"
            )
        }
        guard
            let signature = PluginSignatures.sign(
                .backup, name: manifestName, sha256: SHA256Digest.hex(bytes), privateKey: priv)
        else { throw MigratorError(.backupFailed, "libcrypto could not sign the manifest") }
        try Files.create(
            signatureName, relativeTo: directory.fd, label: directory.path + "/" + signatureName,
            with: Array(PluginSignatures.signatureFile(keyID: key.id, signature: signature).utf8), mode: 0o600)
    }

    /// The SHA-256 of `data.mdb` in `directory` (a regular file, not followed).
    static func dataHash(in directory: OpenDirectory, _ fail: (String) -> MigratorError) throws(MigratorError) -> String
    {
        let fd = openat(directory.fd, "data.mdb", O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | migrator_O_NOFOLLOW)
        guard fd >= 0 else { throw fail("data.mdb cannot be opened (\(errorText(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { throw fail("data.mdb is not a regular file") }
        var hasher = SHA256Digest()
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw fail("data.mdb cannot be read (\(errorText(errno)))") }
            if n == 0 { return hasher.finalizeHex() }
            buf.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0.prefix(n))) }
        }
    }

    /// Reads the manifest of the backup at `path` and checks the copy
    /// against it. Unless `insecure`, a backup others could write is refused
    /// first: they could change what is restored.
    /// - Throws: `.insecurePermissions`; `.backupInvalid` naming what is wrong.
    static func check(_ path: String, insecure: Bool, key: BackupKey?) throws(MigratorError) -> CheckedBackup {
        try check(try openTrusted(path, role: "backup", insecure: insecure, events: nil), key: key)
    }

    /// Reads `directory`'s manifest, checks its signature (required when
    /// `key` is given), then the copy against it, through its descriptor.
    /// - Throws: `.backupInvalid` naming what is wrong.
    static func check(_ directory: OpenDirectory, key: BackupKey?) throws(MigratorError) -> CheckedBackup {
        func invalid(_ why: String) -> MigratorError {
            MigratorError(.backupInvalid, "'\(directory.path)' is not a usable backup: \(why)")
        }
        let (manifest, bytes) = try readManifest(directory, invalid)
        let signature = try checkSignature(directory, manifest: bytes, key: key, invalid)
        var data = stat()
        guard fstatat(directory.fd, "data.mdb", &data, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw invalid("data.mdb is missing")
        }
        // LMDB opens it by path: never through a link, a FIFO or a device.
        guard data.st_mode & S_IFMT == S_IFREG else { throw invalid("data.mdb is not a regular file") }
        func checkHash() throws(MigratorError) {
            if let expected = manifest.dataSHA256, try dataHash(in: directory, invalid) != expected {
                throw invalid("its data.mdb does not match the manifest's SHA-256; it was changed after it was taken")
            }
        }
        // Signed: the signed hash first, so LMDB never parses bytes the key
        // does not vouch for. Unsigned, nothing vouches for them anyway, and
        // LMDB's reading names the damage better.
        if key != nil {
            guard manifest.dataSHA256 != nil else {
                throw invalid(
                    "its manifest records no SHA-256 of data.mdb (it was written before signed backups), "
                        + "so no key can vouch for its contents")
            }
            try checkHash()
        }
        let actual: BackupManifest
        do { actual = try describe(directory.anchoredPath, source: manifest.source) } catch {
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
        if key == nil { try checkHash() }
        return CheckedBackup(manifest: manifest, signature: signature)
    }

    /// Checks `manifest.json.sig` against the manifest's bytes. With `key`,
    /// a signature by it is required; without, a signature is reported
    /// unchecked (a key id alone proves nothing).
    private static func checkSignature(
        _ directory: OpenDirectory, manifest: [UInt8], key: BackupKey?, _ invalid: (String) -> MigratorError
    ) throws(MigratorError) -> BackupSignature {
        guard faccessat(directory.fd, signatureName, F_OK, AT_SYMLINK_NOFOLLOW) == 0 else {
            if let key {
                throw invalid(
                    "it is not signed (no \(signatureName)), and the backup key '\(key.path)' requires a signature")
            }
            return .unsigned
        }
        guard let text = readSmallFile(signatureName, in: directory.fd, limit: 4096),
            let (keyID, signature) = PluginSignatures.parseSignatureFile(text)
        else { throw invalid("\(signatureName) is not a \(PluginSignatures.signatureTag) file") }
        guard let key else { return .unchecked(keyID: keyID) }
        guard keyID == key.id else {
            throw invalid("it is signed by key \(keyID), not by the backup key '\(key.path)' (\(key.id))")
        }
        guard
            PluginSignatures.verify(
                .backup, name: manifestName, sha256: SHA256Digest.hex(manifest), signature: signature,
                publicKey: key.publicKey.raw)
        else { throw invalid("the signature of its manifest does not verify; the manifest was changed after signing") }
        return .verified(keyID: keyID)
    }

    /// `directory`'s manifest, read (not followed if a link) and decoded,
    /// with its bytes (what a signature covers).
    private static func readManifest(
        _ directory: OpenDirectory, _ invalid: (String) -> MigratorError
    ) throws(MigratorError) -> (BackupManifest, [UInt8]) {
        guard let text = readSmallFile(manifestName, in: directory.fd) else {
            throw invalid("no readable \(manifestName)")
        }
        let manifest: BackupManifest
        do { manifest = try JSONDecoder().decode(BackupManifest.self, from: Data(text)) } catch {
            throw invalid("\(manifestName) is not a migrator backup manifest (\(error))")
        }
        guard manifest.format == format else {
            throw invalid("its manifest has format \(manifest.format); this migrator reads format \(format)")
        }
        return (manifest, text)
    }

    /// See ``Migrator/restore(from:)``.
    static func restore(
        _ path: String, into storage: LMDBStorage, lockTimeout: Double, insecure: Bool, key: BackupKey?,
        events: @escaping @Sendable (RunEvent) -> Void
    ) throws -> CheckedBackup {
        let directory = try openTrusted(path, role: "backup", insecure: insecure, events: events)
        let checked = try Backups.check(directory, key: key)
        let manifest = checked.manifest
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
            MigratorError(.restoreFailed, "restore of '\(path)' into '\(storage.location)' failed: \(why)")
        }
        guard mkdir(staging, 0o700) == 0 else { throw fail("cannot create '\(staging)': \(errorText(errno))") }
        var stagingLive = true
        defer { if stagingLive { Backups.removeFlatDirectory(staging) } }
        let copied = try Backups.copyFile("data.mdb", in: directory, to: staging + "/data.mdb")
        // The bytes copied, not the file as it was when checked: it could have changed since.
        guard manifest.dataSHA256.map({ $0 == copied }) ?? true,
            try Backups.describe(staging, source: storage.location).digest == manifest.digest
        else {
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
        return checked
    }

    /// The backups `migrator` made in `folder`, oldest first: directories
    /// (never links) named `backup-…`, owned by this user, whose manifest
    /// reads. Anything else is never touched, whatever its name.
    static func list(in folder: OpenDirectory) -> [OpenDirectory] {
        let me = geteuid()
        var found: [OpenDirectory] = []
        for name in (folder.entries() ?? []).sorted() where name.hasPrefix("backup-") {
            var st = stat()
            guard fstatat(folder.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFDIR,
                st.st_uid == me, let backup = OpenDirectory(opening: name, in: folder),
                let opened = backup.status, opened.st_dev == st.st_dev, opened.st_ino == st.st_ino,
                (try? readManifest(backup, { MigratorError(.backupInvalid, $0) })) != nil
            else { continue }
            found.append(backup)
        }
        return found
    }

    /// Removes all but the newest `keep` backups in `folder`, each through
    /// the descriptor it was checked on; returns their paths. `taken`, the
    /// backup just made, is always kept, whatever the names of the others.
    static func prune(_ folder: OpenDirectory, keep: Int, taken: OpenDirectory) -> [String] {
        let same = { (a: OpenDirectory, b: OpenDirectory) in
            a.status.map { x in b.status.map { x.st_dev == $0.st_dev && x.st_ino == $0.st_ino } ?? false } ?? false
        }
        let others = list(in: folder).filter { !same($0, taken) }
        guard others.count > keep - 1 else { return [] }
        let old = others.prefix(others.count - (keep - 1))
        // A name swapped for something else since is not the directory
        // emptied, and only an empty directory is removed by name.
        for backup in old { discard(backup, in: folder) }
        return old.map(\.path)
    }

    /// Removes the (emptied) backup `backup` from `folder`.
    static func discard(_ backup: OpenDirectory, in folder: OpenDirectory) {
        backup.removeEntries()
        _ = unlinkat(folder.fd, backup.name, AT_REMOVEDIR)
    }

    /// A new, empty backup directory in `folder`, made 0700.
    static func newBackup(in folder: OpenDirectory) throws(MigratorError) -> OpenDirectory {
        let name = newName()
        guard mkdirat(folder.fd, name, 0o700) == 0, let backup = OpenDirectory(opening: name, in: folder) else {
            throw MigratorError(
                .backupFailed, "cannot create the backup '\(folder.path)/\(name)': \(errorText(errno))")
        }
        return backup
    }

    /// The folder at `path` (created 0700 if missing), opened once. Unless
    /// `insecure`, a folder someone else could write, on a path someone
    /// else could change, is refused: they could swap a backup for a link,
    /// or plant one. `role` names it in messages ("backup directory").
    static func openTrusted(
        _ path: String, role: String, create: Bool = false, insecure: Bool,
        events: (@Sendable (RunEvent) -> Void)?
    ) throws(MigratorError) -> OpenDirectory {
        var st = stat()
        if create, lstat(path, &st) != 0, errno == ENOENT, mkdir(path, 0o700) != 0 {
            throw MigratorError(.backupFailed, "cannot create the \(role) '\(path)': \(errorText(errno))")
        }
        // Resolved once: every directory on the real path is checked, and
        // the real path is what is opened, so a link re-pointed later
        // changes nothing.
        guard let real = PluginDirectory.realPath(path), let directory = OpenDirectory(opening: real, as: path)
        else {
            let code: MigratorError.Code = role == "backup" ? .backupInvalid : .backupFailed
            throw MigratorError(code, "the \(role) '\(path)' cannot be opened: \(errorText(errno))")
        }
        let problem =
            directory.status.flatMap(PluginDirectory.ownershipProblem)
            ?? PluginDirectory.pathProblem(of: path).map { "lies in \($0)" }
        if let problem {
            let message =
                "\(role) '\(path)' \(problem); anyone who can write to it can "
                + (role == "backup" ? "change what is restored" : "swap a backup for a link to files a prune deletes")
            try MigratorError(.insecurePermissions, message).unless(insecure: insecure, verb: "used") {
                events?(.notice($0))
            }
        }
        return directory
    }

    /// A name that sorts by time: `backup-20261127T001500123Z`.
    static func newName() -> String {
        "backup-" + EngineClock.iso8601().filter { $0.isNumber || $0 == "T" || $0 == "Z" }
    }

    /// Removes the files directly in `path` (a directory, never a link;
    /// entries removed relative to it, never followed or descended into),
    /// then the directory itself unless `keepDirectory`.
    static func removeFlatDirectory(_ path: String, keepDirectory: Bool = false) {
        OpenDirectory(opening: path)?.removeEntries()
        if !keepDirectory { _ = rmdir(path) }
    }

    /// The file `name` in the directory `directory` (not followed if a
    /// link, and never waited on if a FIFO), if it is at most `limit` bytes.
    static func readSmallFile(_ name: String, in directory: Int32 = AT_FDCWD, limit: Int = 1 << 20) -> [UInt8]? {
        let fd = openat(directory, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | migrator_O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readAll(fd, limit: limit)
    }

    /// What is left to read from `fd`, if it is at most `limit` bytes.
    static func readAll(_ fd: Int32, limit: Int) -> [UInt8]? {
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

    /// Copies `name` in `directory` to the new file `to` (0600) and syncs
    /// it; returns the SHA-256 of the bytes copied.
    static func copyFile(_ name: String, in directory: OpenDirectory, to: String) throws(MigratorError) -> String {
        let from = directory.path + "/" + name
        let src = openat(directory.fd, name, O_RDONLY | O_CLOEXEC | migrator_O_NOFOLLOW)
        guard src >= 0 else { throw MigratorError(.restoreFailed, "\(from): \(errorText(errno))") }
        defer { close(src) }
        let dst = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | migrator_O_NOFOLLOW, 0o600)
        guard dst >= 0 else { throw MigratorError(.restoreFailed, "\(to): \(errorText(errno))") }
        defer { close(dst) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var hasher = SHA256Digest()
        while true {
            let n = buf.withUnsafeMutableBytes { read(src, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw MigratorError(.restoreFailed, "\(from): \(errorText(errno))") }
            if n == 0 { break }
            buf.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0.prefix(n))) }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { write(dst, $0.baseAddress! + off, n - off) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw MigratorError(.restoreFailed, "\(to): \(errorText(errno))") }
                off += w
            }
        }
        guard fsync(dst) == 0 else { throw MigratorError(.restoreFailed, "\(to): \(errorText(errno))") }
        return hasher.finalizeHex()
    }
}
