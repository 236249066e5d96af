/// A usage mistake: exit code 2, with the command's usage line.
struct UsageError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// One option a command accepts.
struct OptionSpec: Sendable {
    let name: String
    /// The value's placeholder (`PATH`), or nil for a flag.
    let value: String?
    let help: String
    /// Whether a `MIGRATOR_*` variable or `migrator.conf` may give it when
    /// the command line does not (``Configuration``).
    let fromSettings: Bool
    init(_ name: String, value: String? = nil, _ help: String, fromSettings: Bool = true) {
        self.name = name
        self.value = value
        self.help = help
        self.fromSettings = fromSettings
    }
}

/// Parsed command-line arguments: `--name value`, `--name=value`, flags,
/// positionals, and `--` to end options.
struct ParsedArguments: Sendable {
    var positionals: [String] = []
    var options: [String: String] = [:]
    var flags: Set<String> = []
    /// The options and flags filled from the environment or the config
    /// file, not given on the command line.
    var fromSettings: Set<String> = []

    /// Whether `name` was given on the command line (not from settings).
    func given(_ name: String) -> Bool {
        (options[name] != nil || flags.contains(name)) && !fromSettings.contains(name)
    }

    /// No arguments.
    init() {}

    /// Parses `args` against `specs`; unknown options are usage errors.
    init(_ args: [String], specs: [OptionSpec]) throws(UsageError) {
        var i = 0
        var onlyPositionals = false
        while i < args.count {
            let a = args[i]
            i += 1
            if onlyPositionals || !a.hasPrefix("-") || a == "-" {
                positionals.append(a)
                continue
            }
            if a == "--" {
                onlyPositionals = true
                continue
            }
            var name = a
            var inline: String?
            if let eq = a.firstIndex(of: "=") {
                name = String(a[..<eq])
                inline = String(a[a.index(after: eq)...])
            }
            if name == "-h" { name = "--help" }
            guard let spec = specs.first(where: { "--" + $0.name == name }) else {
                let hint = nearest(name, among: specs.map { "--" + $0.name }).map { " (did you mean '\($0)'?)" } ?? ""
                throw UsageError("unknown option '\(name)'\(hint)")
            }
            if spec.value != nil {
                if let inline {
                    options[spec.name] = inline
                    continue
                }
                guard i < args.count else { throw UsageError("option '\(name)' needs a value (\(spec.value ?? ""))") }
                options[spec.name] = args[i]
                i += 1
            } else {
                if inline != nil { throw UsageError("option '\(name)' takes no value") }
                flags.insert(spec.name)
            }
        }
    }

    func flag(_ name: String) -> Bool { flags.contains(name) }

    func int(_ name: String, min: Int = 0) throws(UsageError) -> Int? {
        guard let raw = options[name] else { return nil }
        guard let v = Int(raw), v >= min else {
            throw UsageError("option '--\(name)' needs a whole number of at least \(min), got '\(raw)'")
        }
        return v
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough
/// to be a likely typo (at most a third of the word's length, and 3).
func nearest(_ word: String, among candidates: [String]) -> String? {
    let a = Array(word)
    guard !a.isEmpty else { return nil }
    var best: (candidate: String, distance: Int)?
    for c in candidates {
        // Levenshtein distance, one row at a time.
        let b = Array(c)
        var row = Array(0...b.count)
        for i in 1...a.count {
            var diagonal = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let above = row[j]
                row[j] = min(above + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1))
                diagonal = above
            }
        }
        if row[b.count] < (best?.distance ?? Int.max) { best = (c, row[b.count]) }
    }
    guard let best, best.distance > 0, best.distance <= min(3, max(1, a.count / 3)) else { return nil }
    return best.candidate
}
