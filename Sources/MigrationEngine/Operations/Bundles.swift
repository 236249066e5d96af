import DocumentStore
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// A migration bundle's manifest: what it holds, who signed it, for how long
/// it is good. Signed as the exact bytes that are in the bundle.
public struct BundleManifest: Sendable, Equatable, Codable {
    /// One plugin file of the bundle.
    public struct File: Sendable, Equatable, Codable {
        /// Its file name (no path separators, no `..`).
        public var name: String
        /// Its size in bytes.
        public var size: Int
        /// The SHA-256 of its bytes.
        public var sha256: String
        /// The migration ids it declares.
        public var migrations: [String]
        /// The plugin ABI it needs (`1.1`).
        public var abi: String
    }

    /// The manifest's format version.
    public var format: Int
    /// The bundle's name (default: the folder's); sequences count per name.
    public var name: String
    /// Its sequence number: a host never takes a lower one than it has taken.
    public var sequence: Int
    /// When it was made, ISO-8601 UTC.
    public var createdAt: String
    /// After when hosts refuse it (a freeze), ISO-8601 UTC; nil: never.
    public var expiresAt: String?
    /// The id of the key that signed it.
    public var keyID: String
    /// Its plugins, in the order they are stored.
    public var files: [File]

    enum CodingKeys: String, CodingKey {
        case format, name, sequence, files
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case keyID = "key_id"
    }
}

/// A bundle whose signature, expiry, sequence, sizes and hashes were
/// checked, in that order, before any of its plugin bytes was looked at.
public struct VerifiedBundle: Sendable {
    /// Its manifest.
    public let manifest: BundleManifest
    /// The SHA-256 of the whole bundle file.
    public let digest: String
    /// The trusted key that signed it (its file name without `.pub`).
    public let signer: String
    /// Where it was read from.
    public let location: String
    /// Each file's bytes, by name.
    let images: [(name: String, bytes: [UInt8])]
}

/// The bundle file format, version 1. Everything is in one file, in order:
///
///     "MIGRATOR-BUNDLE-1\n"          18 bytes
///     manifest length                 4 bytes, little-endian, at most 1 MiB
///     manifest                        JSON (``BundleManifest``)
///     signature length                4 bytes, little-endian, at most 4 KiB
///     signature                       a `migrator-signature-v1` text
///     the files                       their bytes, in the manifest's order
///
/// The signature covers the manifest's bytes (domain `migrator-bundle-v1`).
/// A reader trusts nothing the manifest says (sizes, names) before it
/// checked the signature; the two lengths before it only bound what is read.
enum Bundles {
    static let magic = Array("MIGRATOR-BUNDLE-1\n".utf8)
    /// What the signed message names (the manifest's own name is inside it).
    static let signedName = "manifest"
    static let format = 1
    static let maxManifest = 1 << 20
    static let maxSignature = 4096
    /// The largest bundle read.
    static let maxSize = 1 << 30

    // MARK: Writing

    /// Writes a bundle of `files` (name and bytes, with what each declares)
    /// to the new file `out`, signed with the private key at `keyPath`.
    static func create(
        files: [(name: String, bytes: [UInt8], migrations: [String], abi: String)], name: String, sequence: Int,
        expiresIn: Double?, keyPath: String, out: String
    ) throws(MigratorError) -> BundleManifest {
        let (privateKey, publicKey) = try PluginSignatures.privateKey(at: keyPath)
        let now = EngineClock.now
        let manifest = BundleManifest(
            format: format, name: name, sequence: sequence, createdAt: EngineClock.iso8601(),
            // At most 100 years ahead: a bundle that never expires has no expiry at all.
            expiresAt: expiresIn.map {
                EngineClock.iso8601(seconds: Int(now + min($0, 100 * 365 * 86_400)), milliseconds: 0)
            },
            keyID: publicKey.id,
            files: files.map {
                BundleManifest.File(
                    name: $0.name, size: $0.bytes.count, sha256: SHA256Digest.hex($0.bytes), migrations: $0.migrations,
                    abi: $0.abi)
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let json = try? Array(encoder.encode(manifest)) else {
            throw MigratorError(.writeFailed, "cannot encode the bundle manifest")
        }
        guard
            let signature = PluginSignatures.sign(
                .bundle, name: signedName, sha256: SHA256Digest.hex(json), privateKey: privateKey)
        else { throw MigratorError(.writeFailed, "libcrypto could not sign the bundle") }
        let sigText = Array(PluginSignatures.signatureFile(keyID: publicKey.id, signature: signature).utf8)
        var bytes = magic + le32(json.count) + json + le32(sigText.count) + sigText
        for f in files { bytes += f.bytes }
        try Files.create(out, with: bytes, mode: 0o644)
        return manifest
    }

    private static func le32(_ n: Int) -> [UInt8] { (0..<4).map { UInt8((n >> (8 * $0)) & 0xFF) } }

    // MARK: Reading

    /// The manifest of the bundle at `path`, unverified (for `bundle inspect`
    /// without keys), and its signature's key id.
    static func peek(
        bytes: [UInt8], from path: String
    ) throws(MigratorError) -> (manifest: BundleManifest, keyID: String) {
        let parts = try split(bytes, path)
        return (try decode(parts.manifest, path), parts.keyID)
    }

    /// Reads and checks the bundle at `path`: the signature against
    /// `trusted`, the expiry against now, the sequence against
    /// `recordedSequence` (the highest this database took of that name),
    /// then every file's size and hash. Nothing of a file is looked at
    /// before all of that passed.
    /// - Throws: `.untrustedPlugin` (signature), `.bundleExpired`,
    ///   `.bundleRolledBack` (a lower sequence), `.invalidBundle` naming the
    ///   check that failed.
    static func open(
        _ path: String, trusted: [PluginSignatures.PublicKey],
        recordedSequence: (String) throws -> (sequence: Int, digest: String)?
    ) throws -> VerifiedBundle {
        try open(bytes: try read(path), from: path, trusted: trusted, recordedSequence: recordedSequence)
    }

    /// ``open(_:trusted:recordedSequence:)`` for a bundle's bytes, read
    /// from `path` (a file, or a URL).
    static func open(
        bytes: [UInt8], from path: String, trusted: [PluginSignatures.PublicKey],
        recordedSequence: (String) throws -> (sequence: Int, digest: String)?
    ) throws -> VerifiedBundle {
        let parts = try split(bytes, path)
        // 1. The signature, over the manifest's bytes.
        guard let key = trusted.first(where: { $0.id == parts.keyID }) else {
            throw MigratorError(
                .untrustedPlugin,
                "bundle '\(path)' is signed by key \(parts.keyID), which is not a trusted key; refusing it")
        }
        guard
            PluginSignatures.verify(
                .bundle, name: signedName, sha256: SHA256Digest.hex(Array(parts.manifest)),
                signature: parts.signature, publicKey: key.raw)
        else {
            throw MigratorError(
                .untrustedPlugin, "bundle '\(path)': its signature does not match its manifest; refusing it")
        }
        // Parsed only now that its bytes are the signer's.
        let manifest = try decode(parts.manifest, path)
        guard manifest.format == format else {
            throw invalid(path, "its manifest has format \(manifest.format); this migrator reads format \(format)")
        }
        // 2. The expiry: a host kept on a stale bundle (a freeze) refuses it once it expired.
        // Compared as text, so only the one form create writes is accepted.
        if let expires = manifest.expiresAt, expires.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) == nil {
            throw invalid(path, "its expiry '\(expires)' is not a UTC time such as 2026-12-31T23:59:59.000Z")
        }
        if let expires = manifest.expiresAt, expires < EngineClock.iso8601() {
            throw MigratorError(
                .bundleExpired,
                "bundle '\(path)' (\(manifest.name) #\(manifest.sequence)) expired at \(expires); refusing it "
                    + "(a newer bundle is needed)")
        }
        // 3. The sequence: never back to an older set (a rollback).
        let digest = SHA256Digest.hex(bytes)
        if let recorded = try recordedSequence(manifest.name) {
            guard manifest.sequence >= recorded.sequence else {
                throw MigratorError(
                    .bundleRolledBack,
                    "bundle '\(path)' is \(manifest.name) #\(manifest.sequence), older than #\(recorded.sequence) "
                        + "that this database already took; refusing it")
            }
            // One sequence names one set: the same number with other bytes is not the bundle taken.
            guard manifest.sequence > recorded.sequence || digest == recorded.digest else {
                throw MigratorError(
                    .bundleRolledBack,
                    "bundle '\(path)' is \(manifest.name) #\(manifest.sequence), which this database already took "
                        + "with other contents (sha256 \(recorded.digest.prefix(16))…); refusing it "
                        + "(sign the new set with a higher sequence)")
            }
        }
        // 4. The files: names, sizes and hashes, now that the manifest is trusted.
        var offset = parts.filesStart
        var images: [(name: String, bytes: [UInt8])] = []
        var names = Set<String>()
        for f in manifest.files {
            guard !f.name.isEmpty, !f.name.contains("/"), !f.name.contains("\0"), f.name != ".", f.name != "..",
                !f.name.hasPrefix("."), f.name.hasSuffix(".so")
            else { throw invalid(path, "a file named '\(f.name)' (names are plain *.so file names)") }
            guard names.insert(f.name).inserted else { throw invalid(path, "the file '\(f.name)' twice") }
            guard f.size >= 0, f.size <= bytes.count - offset else {
                throw invalid(path, "'\(f.name)' is \(f.size) bytes, more than the bundle still holds")
            }
            let image = Array(bytes[offset..<(offset + f.size)])
            offset += f.size
            guard SHA256Digest.hex(image) == f.sha256 else {
                throw invalid(path, "'\(f.name)' does not match its SHA-256 in the manifest (tampered or damaged)")
            }
            images.append((f.name, image))
        }
        guard offset == bytes.count else {
            throw invalid(path, "\(bytes.count - offset) bytes after the last file")
        }
        return VerifiedBundle(manifest: manifest, digest: digest, signer: key.name, location: path, images: images)
    }

    private static func invalid(_ path: String, _ why: String) -> MigratorError {
        MigratorError(.invalidBundle, "bundle '\(path)' is not usable: \(why)")
    }

    /// A plugin file's bytes for a new bundle (links followed: the loader
    /// checked where they lead).
    static func readFile(_ path: String) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return Backups.readAll(fd, limit: maxSize)
    }

    /// The bytes of the bundle file at `path`, bounded by ``maxSize``.
    static func readBundle(_ path: String) throws(MigratorError) -> [UInt8] { try read(path) }

    private static func read(_ path: String) throws(MigratorError) -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw MigratorError(.directoryNotFound, "bundle '\(path)': \(errorText(errno))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw invalid(path, "it is not a regular file")
        }
        guard let bytes = Backups.readAll(fd, limit: maxSize) else {
            throw invalid(path, "it cannot be read, or is larger than \(maxSize) bytes")
        }
        return bytes
    }

    private struct Parts {
        let manifest: ArraySlice<UInt8>
        let keyID: String
        let signature: [UInt8]
        let filesStart: Int
    }

    /// The parts before the files; the two lengths only bound what is read.
    private static func split(_ bytes: [UInt8], _ path: String) throws(MigratorError) -> Parts {
        guard bytes.count >= magic.count + 8, Array(bytes.prefix(magic.count)) == magic else {
            throw invalid(path, "it does not start with \(String(decoding: magic.dropLast(), as: UTF8.self))")
        }
        func u32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        var at = magic.count
        let manifestLength = u32(at)
        at += 4
        guard manifestLength > 0, manifestLength <= maxManifest, manifestLength <= bytes.count - at - 4 else {
            throw invalid(path, "a manifest of \(manifestLength) bytes (at most \(maxManifest), within the file)")
        }
        let manifest = bytes[at..<(at + manifestLength)]
        at += manifestLength
        let signatureLength = u32(at)
        at += 4
        guard signatureLength > 0, signatureLength <= maxSignature, signatureLength <= bytes.count - at else {
            throw invalid(path, "a signature of \(signatureLength) bytes (at most \(maxSignature), within the file)")
        }
        guard let (keyID, signature) = PluginSignatures.parseSignatureFile(Array(bytes[at..<(at + signatureLength)]))
        else { throw invalid(path, "its signature is not a \(PluginSignatures.signatureTag) text") }
        return Parts(manifest: manifest, keyID: keyID, signature: signature, filesStart: at + signatureLength)
    }

    private static func decode(_ json: ArraySlice<UInt8>, _ path: String) throws(MigratorError) -> BundleManifest {
        do { return try JSONDecoder().decode(BundleManifest.self, from: Data(json)) } catch {
            throw invalid(path, "its manifest is not a bundle manifest (\(error))")
        }
    }
}

/// The plugins of a verified bundle, as a source: signed and pinned by its
/// manifest, each image checked by ``ImageCheck`` as every source's are.
struct BundleSource: PluginSource {
    let bundle: VerifiedBundle
    var location: String { bundle.location }

    func scan(_ policy: SourcePolicy, onChecked: (CheckedPluginFile) -> Void) throws(MigratorError) -> SourceScan {
        var scan = SourceScan()
        for (name, bytes) in bundle.images {
            let path = "\(bundle.location) (\(bundle.manifest.name) #\(bundle.manifest.sequence))/\(name)"
            do {
                // `$ORIGIN` of a bundle's image names no directory of ours.
                var file = try CheckedPluginFile(
                    checking: bytes, name: name, path: path, key: "bundle:" + bundle.digest + "/" + name,
                    origin: "/nonexistent", policy: policy, signer: bundle.signer, pinned: true,
                    warnings: &scan.warnings)
                file.bundle = "\(bundle.manifest.name) #\(bundle.manifest.sequence)"
                onChecked(file)
                scan.files.append(file)
            } catch {
                scan.problems.append(error)
            }
        }
        return scan
    }
}
