import FoundationEssentials
import MigrationEngine

#if canImport(Glibc)
import Glibc
#endif

/// `migrator.conf`: settings per environment, in the `key = value` form of
/// `flyway.conf`. Keys before any section apply everywhere; a `[env NAME]`
/// section overrides them when `--env NAME` (or `MIGRATOR_ENV`) selects it.
/// Precedence: a flag, then the `MIGRATOR_<KEY>` environment variable, then
/// the file, then the built-in default.
struct Configuration {
    /// One setting: its file key, the option it fills, and how to check a value.
    struct Key: Sendable {
        let name: String
        let option: String
        let isFlag: Bool
        let meaning: String
        let check: @Sendable (String) -> String?
        var environmentVariable: String { "MIGRATOR_" + name.uppercased() }
    }

    static let keys: [Key] = [
        Key(name: "dir", option: "dir", isFlag: false, meaning: "migrations directory", check: { _ in nil }),
        Key(name: "db", option: "db", isFlag: false, meaning: "database directory", check: { _ in nil }),
        Key(
            name: "lock_timeout", option: "lock-timeout", isFlag: false, meaning: "seconds to wait for the run lock",
            check: { Double($0).map { $0 >= 0 } == true ? nil : "a number of seconds" }),
        Key(
            name: "step_timeout", option: "step-timeout", isFlag: false, meaning: "longest a step may run",
            check: { MigrationCommands.duration($0) == nil ? "a duration such as 90s, 30m or 2h" : nil }),
        Key(
            name: "backup_dir", option: "backup-dir", isFlag: false, meaning: "back up here before apply runs a step",
            check: { _ in nil }),
        Key(
            name: "keep", option: "keep", isFlag: false, meaning: "backups to keep in backup_dir",
            check: { (Int($0) ?? 0) >= 1 ? nil : "a whole number of at least 1" }),
        Key(
            name: "backup_key", option: "backup-key", isFlag: false,
            meaning: "sign backups with this key; restore only what it signed", check: { _ in nil }),
        Key(
            name: "trusted_keys", option: "trusted-keys", isFlag: false,
            meaning: "load only plugins signed by a key here", check: { _ in nil }),
        Key(
            name: "ca_file", option: "ca-file", isFlag: false,
            meaning: "CA certificates for bundles fetched over HTTPS", check: { _ in nil }),
        Key(
            name: "password_file", option: "password-file", isFlag: false,
            meaning: "file holding the PostgreSQL password", check: { _ in nil }),
        Key(
            name: "run_as", option: "run-as", isFlag: false,
            meaning: "as root, the user plugin code and the run become", check: { _ in nil }),
        Key(
            name: "require_pin", option: "require-pin", isFlag: true, meaning: "refuse to load without migrations.lock",
            check: { bool($0) == nil ? "true or false" : nil }),
        Key(
            name: "log_format", option: "log-format", isFlag: false, meaning: "text, or json (one object per event)",
            check: { ["text", "json"].contains($0) ? nil : "text or json" }),
    ]

    static let fileName = "migrator.conf"
    static let configOption = OptionSpec("config", value: "PATH", "Read settings from PATH (default: ./migrator.conf).")
    static let envOption = OptionSpec("env", value: "NAME", "Use the [env NAME] section of the config file.")

    /// The file's path, nil when none is used.
    let path: String?
    /// The selected environment.
    let environmentName: String?
    /// key → (value, line, section)
    private(set) var values: [String: (value: String, line: Int, section: String?)] = [:]

    static func bool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: return nil
        }
    }

    /// Loads the file `--config` names, or `./migrator.conf` when present,
    /// for the environment `--env`/`MIGRATOR_ENV` selects.
    /// - Throws: ``UsageError`` naming the file and line of any problem;
    ///   `MigratorError` `.untrustedConfig` when someone else could have
    ///   written it (it is not read).
    init(_ args: ParsedArguments, environment: [String: String]) throws {
        environmentName = args.options["env"] ?? environment["MIGRATOR_ENV"].flatMap { $0.isEmpty ? nil : $0 }
        if let explicit = args.options["config"] ?? environment["MIGRATOR_CONFIG"] {
            guard access(explicit, R_OK) == 0 else {
                throw UsageError("cannot read the config file '\(explicit)': \(String(cString: strerror(errno)))")
            }
            path = explicit
        } else {
            path = access(Self.fileName, F_OK) == 0 ? Self.fileName : nil
        }
        guard let path else {
            if let environmentName {
                throw UsageError("--env \(environmentName) needs a config file (\(Self.fileName) or --config PATH)")
            }
            return
        }
        let bytes = try TrustedFile.read(path, role: "config file")
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw UsageError("the config file '\(path)' is not UTF-8 text")
        }
        try parse(text, path: path)
    }

    private mutating func parse(_ text: String, path: String) throws(UsageError) {
        var section: String?
        var sections: Set<String> = []
        var seen: Set<String> = []
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingWhitespace()
            func bad(_ why: String) -> UsageError { UsageError("\(path) line \(i + 1): \(why)") }
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw bad("a section header must end with ']'") }
                let words = line.dropFirst().dropLast().split(whereSeparator: \.isWhitespace)
                guard words.count == 2, words[0] == "env" else {
                    throw bad("expected a section header like [env production], got \(line)")
                }
                section = String(words[1])
                guard sections.insert(String(words[1])).inserted else {
                    throw bad("[env \(words[1])] appears twice")
                }
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw bad("expected 'key = value', got '\(line.prefix(60))'")
            }
            let key = String(line[..<eq]).trimmingWhitespace()
            var value = String(line[line.index(after: eq)...]).trimmingWhitespace()
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            }
            guard let spec = Self.keys.first(where: { $0.name == key }) else {
                let similar =
                    nearest(key, among: Self.keys.map(\.name))
                    ?? Self.keys.map(\.name).first { key.hasPrefix($0) || $0.hasPrefix(key) }
                let hint = similar.map { " (did you mean '\($0)'?)" } ?? ""
                throw bad(
                    "unknown key '\(key)'\(hint); known keys: \(Self.keys.map(\.name).joined(separator: ", "))")
            }
            if let why = spec.check(value) { throw bad("\(key) must be \(why), got '\(value)'") }
            guard seen.insert("\(section ?? "")/\(key)").inserted else { throw bad("\(key) is set twice here") }
            // Top-level keys apply everywhere; the selected section's win.
            if section == nil || section == environmentName {
                if section != nil || values[key]?.section == nil { values[key] = (value, i + 1, section) }
            }
        }
        if let environmentName, !sections.contains(environmentName) {
            let known = sections.sorted().joined(separator: ", ")
            throw UsageError(
                "\(path) has no [env \(environmentName)] section" + (known.isEmpty ? "" : " (it has: \(known))"))
        }
    }

    /// Where a setting's effective value comes from.
    enum Source: CustomStringConvertible {
        case flag(String)
        case environment(String)
        case file(String, Int, String?)
        case none
        var description: String {
            switch self {
            case .flag(let f): return "flag --\(f)"
            case .environment(let v): return "environment \(v)"
            case .file(let p, let line, let section):
                return "\(p) line \(line)" + (section.map { " [env \($0)]" } ?? "")
            case .none: return "default"
            }
        }
    }

    /// Fills `args` with the settings `command` accepts and the command line
    /// did not give: from the environment, else from the file.
    func apply(to args: inout ParsedArguments, accepting options: [OptionSpec], environment: [String: String]) {
        for key in Self.keys where options.contains(where: { $0.name == key.option && $0.fromSettings }) {
            let (value, source) = effective(key, args, environment)
            guard let value else { continue }
            if case .flag = source { continue }
            if key.isFlag {
                if Self.bool(value) == true { args.flags.insert(key.option) }
            } else {
                args.options[key.option] = value
            }
            args.fromSettings.insert(key.option)
        }
    }

    func effective(_ key: Key, _ args: ParsedArguments, _ environment: [String: String]) -> (String?, Source) {
        if key.isFlag, args.flag(key.option) { return ("true", .flag(key.option)) }
        if let v = args.options[key.option] { return (v, .flag(key.option)) }
        if let v = environment[key.environmentVariable], !v.isEmpty {
            return (v, .environment(key.environmentVariable))
        }
        if let v = values[key.name], let path { return (v.value, .file(path, v.line, v.section)) }
        return (nil, .none)
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
