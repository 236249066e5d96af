/// PostgreSQL connection URIs as `--db` takes them.
public enum ConnectionURI {
    /// Whether `location` names a PostgreSQL database (`postgres://…` or
    /// `postgresql://…`) rather than an LMDB directory.
    public static func isPostgres(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    /// `uri` with any password replaced by `***`, for messages and logs:
    /// the `user:password@` part, and a `password=` query parameter.
    public static func redacted(_ uri: String) -> String {
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
