import DocumentStore

#if canImport(Glibc)
import Glibc
#endif

/// `migrations.lock`: the SHA-256 and file name of every plugin allowed to
/// load from its folder, one per line, as `sha256sum` writes them. Blank
/// lines and `#` comments are ignored, and any run of spaces or tabs
/// separates the two fields.
enum PinFile {
    static let name = "migrations.lock"

    /// The pins in `directory`, by file name; nil when there is no file.
    /// - Throws: `.invalidPinFile` naming the line that cannot be read.
    static func read(_ directory: OpenDirectory, insecure: Bool) throws(MigratorError) -> [String: String]? {
        let path = directory.path + "/" + name
        var st = stat()
        guard fstatat(directory.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw MigratorError(.invalidPinFile, "'\(path)' is not a regular file; refusing to read pins from it")
        }
        if let problem = PluginDirectory.ownershipProblem(st), !insecure {
            throw MigratorError(
                .insecurePermissions, "'\(path)' \(problem); anyone who can write to it can choose what runs")
        }
        guard let bytes = Backups.readSmallFile(name, in: directory.fd, limit: 16 << 20) else {
            throw MigratorError(.invalidPinFile, "cannot read '\(path)': \(errorText(errno))")
        }
        var pins: [String: String] = [:]
        // Lines end in \n or \r\n (one Character in Swift); fields are separated by any whitespace.
        for (i, raw) in String(decoding: bytes, as: UTF8.self).split(
            omittingEmptySubsequences: false, whereSeparator: \.isNewline
        ).enumerated() {
            let line = raw.split(whereSeparator: \.isWhitespace)
            if line.isEmpty || line[0].hasPrefix("#") { continue }
            func bad(_ why: String) -> MigratorError {
                MigratorError(.invalidPinFile, "'\(path)' line \(i + 1): \(why)")
            }
            guard line.count == 2 else { throw bad("expected 'SHA256 FILE', found \(line.count) field(s)") }
            let sha = line[0].lowercased()
            // sha256sum marks binary mode with '*' before the name.
            let file = line[1].hasPrefix("*") ? String(line[1].dropFirst()) : String(line[1])
            guard sha.count == 64, sha.allSatisfy({ $0.isHexDigit }) else {
                throw bad("'\(line[0].prefix(80))' is not a SHA-256 (64 hex digits)")
            }
            guard !file.contains("/") else { throw bad("'\(file)' names a path; pins name files in this folder") }
            if let earlier = pins[file], earlier != sha { throw bad("'\(file)' is pinned twice, to different hashes") }
            pins[file] = sha
        }
        return pins
    }

    /// Writes `directory`'s pin file for every plugin there (checked as for
    /// loading, never loaded), replacing any earlier one atomically.
    static func write(_ directory: String, insecure: Bool) throws(MigratorError) -> [(name: String, sha256: String)] {
        let scan = try PluginDirectory.scan(directory, insecure: insecure, usePins: false)
        if let problem = scan.problems.first { throw problem }
        let files = scan.files.map { (name: $0.name, sha256: $0.sha256) }
        let path = directory + "/" + name
        try Files.replace(path, with: Array(text(files).utf8), mode: 0o644)
        return files
    }

    /// The file's text for `files` (name, SHA-256), sorted by name.
    static func text(_ files: [(name: String, sha256: String)]) -> String {
        var out = "# Plugins allowed to load from this folder: SHA-256 and file name (written by 'migrator pin').\n"
        out += "# While this file exists, any other .so, or one whose bytes changed, is refused before it loads.\n"
        for f in files.sorted(by: { $0.name < $1.name }) { out += "\(f.sha256)  \(f.name)\n" }
        return out
    }
}

/// Who may ship plugins: pins and trusted signing keys, checked on the
/// verified bytes' hash before any of a file's code is loaded.
struct TrustPolicy {
    var pins: [String: String]?
    var trustedKeys: [PluginSignatures.PublicKey]?

    /// The signing key's name when signatures are required; throws a refusal.
    func check(name: String, path: String, in folder: OpenDirectory, sha256: String) throws(MigratorError) -> String? {
        if let pins {
            guard let pinned = pins[name] else {
                throw MigratorError(
                    .notPinned,
                    "plugin '\(path)' is not in \(PinFile.name) (its SHA-256 is \(sha256)); refusing to load it",
                    file: name)
            }
            guard pinned == sha256 else {
                throw MigratorError(
                    .notPinned,
                    "plugin '\(path)' has SHA-256 \(sha256), but \(PinFile.name) pins \(pinned); refusing to load it",
                    file: name)
            }
        }
        guard let trustedKeys else { return nil }
        switch PluginSignatures.check(in: folder, name: name, sha256: sha256, trusted: trustedKeys) {
        case .success(let key): return key.name
        case .failure(let problem):
            let why: String
            switch problem {
            case .unsigned: why = "has no signature (\(name).sig)"
            case .unreadable(let detail): why = "has an unusable signature file \(name).sig: \(detail)"
            case .unknownKey(let id): why = "is signed by key \(id), which is not a trusted key"
            case .bad: why = "has a signature that does not match its bytes and name (tampered, or renamed)"
            }
            throw MigratorError(.untrustedPlugin, "plugin '\(path)' \(why); refusing to load it", file: name)
        }
    }
}
