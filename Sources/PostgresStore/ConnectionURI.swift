import CLibPQ

/// PostgreSQL connection URIs as `--db` takes them.
public enum ConnectionURI {
    /// Whether `location` names a PostgreSQL database (`postgres://…` or
    /// `postgresql://…`) rather than an LMDB directory.
    public static func isPostgres(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    /// `uri` with any password replaced by `***`, for messages and logs:
    /// the `user:password@` part, and a `password=` query parameter. What
    /// counts is what libpq reads (`PQconninfoParse`): when the URI as
    /// written would still show a password to libpq once redacted (a
    /// password holding `?`, a percent-encoded `%70assword=`), the name is
    /// rebuilt from libpq's own reading; a URI libpq cannot read is not
    /// shown at all.
    public static func redacted(_ uri: String) -> String {
        let textual = textuallyRedacted(uri)
        guard isPostgres(uri) else { return textual }
        let (connect, schema) = splitSchema(uri)
        guard let options = parse(connect).options else {
            return String(uri.prefix { $0 != ":" }) + "://(a URI libpq cannot read; not shown)"
        }
        let password = options.first { $0.key == "password" }?.value
        let shown = parse(splitSchema(textual).uri).options?.first { $0.key == "password" }?.value
        if password == nil || (shown == "***" && !(password.map { $0.count >= 3 && textual.contains($0) } ?? false)) {
            return textual
        }
        return rebuilt(options, schema: schema, scheme: String(uri.prefix { $0 != ":" }))
    }

    /// `uri`'s connection options as libpq reads them (set ones only, in
    /// libpq's order), or why it cannot, with quoted parts of the URI left
    /// out of the reason (they may hold the password).
    public static func parse(_ uri: String) -> (options: [(key: String, value: String)]?, problem: String) {
        var error: UnsafeMutablePointer<CChar>?
        guard let list = PQconninfoParse(uri, &error) else {
            let text = error == nil ? "out of memory" : Connection.trimmed(error)
            if let error { PQfreemem(error) }
            return (nil, withoutQuotes(text))
        }
        defer { PQconninfoFree(list) }
        var options: [(key: String, value: String)] = []
        var p = list
        while let keyword = p.pointee.keyword {
            if let value = p.pointee.val { options.append((String(cString: keyword), String(cString: value))) }
            p += 1
        }
        return (options, "")
    }

    /// `text` with any password in `uri` (as libpq reads it) replaced by `***`.
    public static func scrubbing(_ text: String, of uri: String) -> String {
        guard let password = parse(splitSchema(uri).uri).options?.first(where: { $0.key == "password" })?.value,
            !password.isEmpty
        else { return text }
        return text.replacing(password, with: "***")
    }

    private static func rebuilt(_ options: [(key: String, value: String)], schema: String?, scheme: String) -> String {
        func value(_ key: String) -> String? { options.first { $0.key == key }?.value }
        var out = scheme + "://"
        if let user = value("user") { out += encoded(user) + (value("password") != nil ? ":***" : "") + "@" }
        out += "/" + (value("dbname").map(encoded) ?? "")
        var query = options.filter { !["user", "password", "dbname"].contains($0.key) }.map {
            "\($0.key)=\(encoded($0.value))"
        }
        if let schema { query.append("schema=\(encoded(schema))") }
        return query.isEmpty ? out : out + "?" + query.joined(separator: "&")
    }

    private static func encoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(Unicode.Scalar(byte))
            if c.isLetter && byte < 0x80 || c.isNumber && byte < 0x80 || "-._~/".contains(c) {
                out.append(c)
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    private static func withoutQuotes(_ text: String) -> String {
        var out = ""
        var quoted = false
        for c in text {
            if c == "\"" {
                out += quoted ? "…\"" : "\""
                quoted.toggle()
            } else if !quoted {
                out.append(c)
            }
        }
        return out
    }

    /// The textual redaction: the `user:password@` part, and a `password=`
    /// query parameter, as written.
    private static func textuallyRedacted(_ uri: String) -> String {
        guard let colon = uri.firstIndex(of: ":"), uri[colon...].hasPrefix("://") else { return uri }
        let authorityStart = uri.index(colon, offsetBy: 3)
        var out = String(uri[..<authorityStart])
        var rest = uri[authorityStart...]
        // The authority ends at the first '/' or '?' after the scheme; the
        // last '@' in it ends the user information.
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        if let at = rest[..<authorityEnd].lastIndex(of: "@") {
            let userInfo = rest[..<at]
            if let colon = userInfo.firstIndex(of: ":") {
                out += userInfo[..<colon] + ":***"
            } else {
                out += userInfo
            }
            rest = rest[at...]
        }
        guard let query = rest.firstIndex(of: "?") else { return out + rest }
        out += rest[...query]
        let parameters = rest[rest.index(after: query)...].split(separator: "&", omittingEmptySubsequences: false)
        out += parameters.map { p in
            p.lowercased().hasPrefix("password=") ? "password=***" : String(p)
        }.joined(separator: "&")
        return out
    }

    /// Takes migrator's own `schema=NAME` query parameter out of `uri`
    /// (libpq refuses parameters it does not know): the URI to connect
    /// with, and the schema, if one was given.
    public static func splitSchema(_ uri: String) -> (uri: String, schema: String?) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, nil) }
        var schema: String?
        var kept: [Substring] = []
        for p in uri[uri.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false) {
            if p.hasPrefix("schema=") { schema = String(p.dropFirst("schema=".count)) } else { kept.append(p) }
        }
        let base = String(uri[..<q])
        return (kept.isEmpty ? base : base + "?" + kept.joined(separator: "&"), schema)
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
