import CCrypto
import DocumentStore

#if canImport(Glibc)
import Glibc
#endif

/// Ed25519 plugin signatures through libcrypto. Keys and signatures are
/// small text files, so that they can be reviewed, copied and committed:
///
///     NAME.key  migrator-ed25519-private-v1 <64 hex>   (mode 0600)
///     NAME.pub  migrator-ed25519-public-v1 <64 hex>
///     FILE.so.sig
///               migrator-signature-v1
///               key <key id: the first 16 hex of the public key's SHA-256>
///               sig <128 hex>
///
/// What is signed is `migrator-plugin-v1`, NUL, the file's name, NUL, and
/// the SHA-256 of its bytes (hex): renaming a signed file breaks its
/// signature, so a signed migration cannot be passed off as another.
package enum PluginSignatures {
    static let privateTag = "migrator-ed25519-private-v1"
    static let publicTag = "migrator-ed25519-public-v1"
    static let signatureTag = "migrator-signature-v1"

    /// A public key a plugin may be signed with.
    package struct PublicKey: Sendable, Equatable {
        /// The key file's name without `.pub`, as reported (`signed_by`).
        package let name: String
        package let raw: [UInt8]
        package var id: String { String(SHA256Digest.hex(raw).prefix(16)) }
    }

    /// Why a plugin's signature is not accepted.
    package enum Problem: Error, Equatable {
        case unsigned
        case unreadable(String)
        case unknownKey(String)
        case bad
    }

    /// Makes a key pair: (private raw 32 bytes, public raw 32 bytes).
    package static func generate() -> (privateKey: [UInt8], publicKey: [UInt8])? {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_keygen(ctx, &key) == 1, let key else { return nil }
        defer { EVP_PKEY_free(key) }
        var priv = [UInt8](repeating: 0, count: 32)
        var pub = [UInt8](repeating: 0, count: 32)
        var n = 32
        guard EVP_PKEY_get_raw_private_key(key, &priv, &n) == 1, n == 32 else { return nil }
        n = 32
        guard EVP_PKEY_get_raw_public_key(key, &pub, &n) == 1, n == 32 else { return nil }
        return (priv, pub)
    }

    /// What a signature is for: the domain is part of what is signed, so a
    /// plugin's signature can never pass for a backup's, or the reverse.
    package enum Domain: String, Sendable {
        case plugin = "migrator-plugin-v1"
        case backup = "migrator-backup-v1"
        case bundle = "migrator-bundle-v1"
    }

    /// The message signed for a file named `name` whose bytes hash to `sha256`.
    static func message(_ domain: Domain = .plugin, name: String, sha256: String) -> [UInt8] {
        Array(domain.rawValue.utf8) + [0] + Array(name.utf8) + [0] + Array(sha256.utf8)
    }

    package static func sign(
        _ domain: Domain = .plugin, name: String, sha256: String, privateKey: [UInt8]
    ) -> [UInt8]? {
        guard let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, privateKey, privateKey.count) else {
            return nil
        }
        defer { EVP_PKEY_free(key) }
        guard let md = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(md) }
        let msg = message(domain, name: name, sha256: sha256)
        var sig = [UInt8](repeating: 0, count: 64)
        var len = 64
        guard EVP_DigestSignInit(md, nil, nil, nil, key) == 1,
            EVP_DigestSign(md, &sig, &len, msg, msg.count) == 1, len == 64
        else { return nil }
        return sig
    }

    static func verify(
        _ domain: Domain = .plugin, name: String, sha256: String, signature: [UInt8], publicKey: [UInt8]
    ) -> Bool {
        guard signature.count == 64,
            let key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, publicKey, publicKey.count)
        else { return false }
        defer { EVP_PKEY_free(key) }
        guard let md = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(md) }
        let msg = message(domain, name: name, sha256: sha256)
        return EVP_DigestVerifyInit(md, nil, nil, nil, key) == 1
            && EVP_DigestVerify(md, signature, signature.count, msg, msg.count) == 1
    }

    // MARK: Files

    package static func hex(_ bytes: [UInt8]) -> String { SHA256Digest.hexString(bytes) }

    package static func unhex(_ text: Substring) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    /// The 32-byte key in a key file's text, if it has the expected tag.
    package static func parseKey(_ text: String, tag: String) -> [UInt8]? {
        let words = text.split(whereSeparator: \.isWhitespace)
        guard words.count == 2, words[0] == tag, let raw = unhex(words[1]), raw.count == 32 else { return nil }
        return raw
    }

    /// Every `*.pub` key in `directory`.
    /// - Throws: a message naming a key file that cannot be used.
    package static func trustedKeys(in directory: String) throws(MigratorError) -> [PublicKey] {
        guard let d = opendir(directory) else {
            throw MigratorError(
                .directoryUnreadable, "trusted keys directory '\(directory)': \(errorText(errno))")
        }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasSuffix(".pub") { names.append(name) }
        }
        closedir(d)
        var keys: [PublicKey] = []
        for name in names.sorted() {
            guard let bytes = Backups.readSmallFile(directory + "/" + name, limit: 4096),
                let raw = parseKey(String(decoding: bytes, as: UTF8.self), tag: publicTag)
            else {
                throw MigratorError(
                    .invalidTrustedKey, "trusted key '\(directory)/\(name)' is not a migrator public key (\(publicTag))"
                )
            }
            keys.append(PublicKey(name: String(name.dropLast(4)), raw: raw))
        }
        guard !keys.isEmpty else {
            throw MigratorError(
                .invalidTrustedKey,
                "trusted keys directory '\(directory)' holds no .pub key; every plugin would be refused")
        }
        return keys
    }

    /// Checks `FILE.so.sig` in `directory` for the plugin `name`; returns the key that signed it.
    static func check(
        in directory: OpenDirectory, name: String, sha256: String, trusted: [PublicKey]
    ) -> Result<PublicKey, Problem> {
        let sig = name + ".sig"
        guard faccessat(directory.fd, sig, F_OK, AT_SYMLINK_NOFOLLOW) == 0 else { return .failure(.unsigned) }
        guard let bytes = Backups.readSmallFile(sig, in: directory.fd, limit: 4096) else {
            return .failure(.unreadable("cannot read it: \(errorText(errno))"))
        }
        guard let (keyID, signature) = parseSignatureFile(bytes) else {
            return .failure(.unreadable("it is not a \(signatureTag) file"))
        }
        guard let key = trusted.first(where: { $0.id == keyID }) else { return .failure(.unknownKey(keyID)) }
        return verify(name: name, sha256: sha256, signature: signature, publicKey: key.raw)
            ? .success(key) : .failure(.bad)
    }

    /// The key id and signature in a `.sig` file's bytes, if it is one.
    static func parseSignatureFile(_ bytes: [UInt8]) -> (keyID: String, signature: [UInt8])? {
        let lines = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).map {
            $0.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        guard lines.count == 3, lines[0] == signatureTag, lines[1].hasPrefix("key "), lines[2].hasPrefix("sig "),
            let signature = unhex(lines[2].dropFirst(4)[...]), signature.count == 64
        else { return nil }
        return (String(lines[1].dropFirst(4)), signature)
    }

    /// Writes `base.key` (0600) and `base.pub`; returns the key id.
    package static func writeKeyPair(_ base: String) throws(MigratorError) -> String {
        guard let (priv, pub) = generate() else {
            throw MigratorError(.writeFailed, "libcrypto could not generate an Ed25519 key")
        }
        try Files.create(base + ".key", with: Array("\(privateTag) \(hex(priv))\n".utf8), mode: 0o600)
        try Files.create(base + ".pub", with: Array("\(publicTag) \(hex(pub))\n".utf8), mode: 0o644)
        return PublicKey(name: base, raw: pub).id
    }

    /// The private key at `keyPath` and its public half.
    /// - Throws: for a key file others can read, or one that is not a key.
    static func privateKey(at keyPath: String) throws(MigratorError) -> (raw: [UInt8], publicKey: PublicKey) {
        if let problem = TrustedFile.ownerOnlyProblem(keyPath) {
            throw MigratorError(.invalidTrustedKey, "the private key '\(keyPath)' \(problem)")
        }
        guard let text = Backups.readSmallFile(keyPath, limit: 4096),
            let priv = parseKey(String(decoding: text, as: UTF8.self), tag: privateTag),
            let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, priv, priv.count)
        else {
            throw MigratorError(.invalidTrustedKey, "'\(keyPath)' is not a migrator private key (\(privateTag))")
        }
        var pub = [UInt8](repeating: 0, count: 32)
        var n = 32
        let gotPublic = EVP_PKEY_get_raw_public_key(key, &pub, &n) == 1
        EVP_PKEY_free(key)
        guard gotPublic else { throw MigratorError(.invalidTrustedKey, "'\(keyPath)': no public key in it") }
        let name = String((keyPath.split(separator: "/").last ?? Substring(keyPath)).dropLast(4))
        return (priv, PublicKey(name: name, raw: pub))
    }

    /// Signs each file with the private key at `keyPath`, writing `FILE.sig`.
    /// - Throws: for a key file others can read, or one that is not a key.
    package static func sign(files: [String], keyPath: String) throws(MigratorError) -> [(file: String, sha256: String)]
    {
        let (priv, publicKey) = try privateKey(at: keyPath)
        let keyID = publicKey.id
        var signed: [(file: String, sha256: String)] = []
        for file in files {
            guard let bytes = Backups.readSmallFile(file, limit: 1 << 30) else {
                throw MigratorError(.writeFailed, "cannot read '\(file)': \(errorText(errno))")
            }
            let name = String(file.split(separator: "/").last ?? Substring(file))
            let sha = SHA256Digest.hex(bytes)
            guard let signature = sign(name: name, sha256: sha, privateKey: priv) else {
                throw MigratorError(.writeFailed, "libcrypto could not sign '\(file)'")
            }
            try Files.replace(
                file + ".sig", with: Array(signatureFile(keyID: keyID, signature: signature).utf8), mode: 0o644)
            signed.append((file, sha))
        }
        return signed
    }

    /// The text of a `.sig` file.
    package static func signatureFile(keyID: String, signature: [UInt8]) -> String {
        "\(signatureTag)\nkey \(keyID)\nsig \(hex(signature))\n"
    }
}
