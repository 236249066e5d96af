import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// Man pages and shell completion, generated from the command table that
/// `--help` prints, so that they cannot drift apart: `migrator __generate
/// man DIR`, `migrator __generate bash`, `migrator __generate zsh`
/// (hidden; `scripts/package.sh` runs them).
enum Generators {
    static let command = "__generate"

    static func run(_ args: [String], _ ctx: Context) -> Int32 {
        switch Array(args.dropFirst()) {
        case let a where a.count == 2 && a[0] == "man":
            do {
                for (name, text) in manPages() {
                    try text.write(toFile: a[1] + "/" + name, atomically: true, encoding: .utf8)
                }
                return ExitCode.ok
            } catch {
                ctx.error("error", "writing man pages into '\(a[1])': \(error)")
                return ExitCode.failure
            }
        case ["bash"]:
            ctx.out.write(bashCompletion())
            return ExitCode.ok
        case ["zsh"]:
            ctx.out.write(zshCompletion())
            return ExitCode.ok
        default:
            ctx.usageError("expected a generator", usage: "migrator __generate man DIR | bash | zsh")
            return ExitCode.usage
        }
    }

    // MARK: Man pages

    /// roff-escapes text: backslashes, hyphens (as in options), and a line
    /// that would start with a control character.
    static func roff(_ s: String) -> String {
        var out = s.replacing("\\", with: "\\e").replacing("-", with: "\\-")
        if out.hasPrefix(".") || out.hasPrefix("'") { out = "\\&" + out }
        return out
    }

    static func pageName(_ c: Command) -> String { (["migrator"] + c.path).joined(separator: "-") }

    static let exitStatus: [(String, String)] = [
        ("0", "success, including nothing to do"),
        ("1", "a migration failed (rolled back; earlier ones stay applied), or another failure"),
        ("2", "usage error, a bad config file, or a destructive command without --yes and no terminal"),
        ("3", "lock timeout: another run holds the database's run lock"),
        ("4", "refused before anything ran"),
        ("5", "status --check found pending, failed, missing or changed migrations"),
        ("6", "outcome unknown: a step failed and the database could not say whether it committed"),
        ("128+N", "the operator's signal N stopped the run; a step it interrupted committed nothing"),
    ]

    static func manPages() -> [(String, String)] {
        let date = String(EngineClockDate.today())
        var pages: [(String, String)] = []
        var top = ".TH MIGRATOR 1 \"\(date)\" \"migrator \(MigratorCommandLine.version)\" \"User Commands\"\n"
        top += ".SH NAME\nmigrator \\- compiled database migrations on an embedded LMDB document store\n"
        top += ".SH SYNOPSIS\n.B migrator\n.I command\n[\\fIoptions\\fR]\n.SH DESCRIPTION\n"
        top +=
            roff(
                "Applies migrations compiled into shared libraries (plugins) to a database, each in one transaction "
                    + "with its record. Plugin code runs in a worker process.") + "\n"
        top += ".SH COMMANDS\n"
        for c in MigratorCommandLine.commands {
            top += ".TP\n.BR \(roff(pageName(c))) (1)\n\(roff(c.summary))\n"
        }
        top += ".SH ENVIRONMENT\n"
        for key in Configuration.keys {
            top += ".TP\n.B \(key.environmentVariable)\n\(roff(key.meaning)) (config key \\fB\(roff(key.name))\\fR)\n"
        }
        top += ".TP\n.B MIGRATOR_ENV\n\(roff("the [env NAME] section of migrator.conf to use"))\n"
        top += ".TP\n.B MIGRATOR_MAX_MAP_MB\n\(roff("the largest the database may grow, in MiB"))\n"
        let sandbox = "off: plugin code runs without the worker's system-call filter (a diagnosis aid)"
        top += ".TP\n.B MIGRATOR_SANDBOX\n\(roff(sandbox))\n"
        top += ".SH FILES\n.TP\n.I migrator.conf\n\(roff("settings, with a section per environment"))\n"
        top += ".TP\n.I DIR/migrations.lock\n\(roff("pins: the only plugins that may load from DIR"))\n"
        top += exitSection() + seeAlso(nil)
        pages.append(("migrator.1", top))
        for c in MigratorCommandLine.commands {
            var p = ".TH \(pageName(c).uppercased()) 1 \"\(date)\" \"migrator \(MigratorCommandLine.version)\" "
            p += "\"User Commands\"\n.SH NAME\n\(roff(pageName(c))) \\- \(roff(c.summary))\n"
            p += ".SH SYNOPSIS\n\(roff(c.usage))\n.SH DESCRIPTION\n\(roff(c.summary))\n"
            if let notes = c.notes { p += ".PP\n\(roff(notes))\n" }
            if !c.arguments.isEmpty {
                p += ".SH ARGUMENTS\n"
                for a in c.arguments { p += ".TP\n.I \(roff(a.name))\n\(roff(a.help))\n" }
            }
            p += ".SH OPTIONS\n"
            for o in c.options + [OptionSpec("help", "Show this help.")] {
                p += ".TP\n.B \\-\\-\(roff(o.name))" + (o.value.map { " \\fI\(roff($0))\\fR" } ?? "") + "\n"
                p += roff(o.help) + "\n"
            }
            p += exitSection() + seeAlso(c)
            pages.append((pageName(c) + ".1", p))
        }
        return pages
    }

    static func exitSection() -> String {
        ".SH EXIT STATUS\n" + exitStatus.map { ".TP\n.B \(roff($0.0))\n\(roff($0.1))\n" }.joined()
    }

    static func seeAlso(_ c: Command?) -> String {
        ".SH SEE ALSO\n" + (c == nil ? "" : ".BR migrator (1),\n")
            + roff("the user guide in /usr/share/doc/migrator (or docs/ in the source)") + "\n"
    }

    // MARK: Completion

    /// Words that complete after `migrator`: first words of every command.
    static var firstWords: [String] {
        var seen: [String] = []
        for c in MigratorCommandLine.commands where !seen.contains(c.path[0]) { seen.append(c.path[0]) }
        return seen + ["help"]
    }

    /// Options that take a directory or file path, and those that take a migration id.
    static let pathOptions: Set<String> = [
        "dir", "db", "out", "backup-dir", "trusted-keys", "config", "key", "backup-key", "password-file", "from",
        "ca-file",
    ]
    static let idOptions: Set<String> = ["target", "to"]

    /// One `case` arm per command group (`db`), completing its subcommands
    /// with `body(subcommands separated by spaces)`.
    static var groups: [String] {
        Set(MigratorCommandLine.commands.filter { $0.path.count > 1 }.map { $0.path[0] }).sorted()
    }

    static func groupCases(_ body: (String) -> String) -> String {
        groups.map { g in
            "        \(g)) \(body(MigratorCommandLine.group(g).map { $0.path[1] }.joined(separator: " "))) ;;\n"
        }.joined()
    }

    /// `--a|--b|…`: every option that takes a value, so that its value is not taken for a command word.
    static var valuedOptions: String {
        let names = Set(MigratorCommandLine.commands.flatMap { $0.options.filter { $0.value != nil }.map(\.name) })
        return (names.union(["config", "env"])).sorted().map { "--" + $0 }.joined(separator: "|")
    }

    static func bashCompletion() -> String {
        var cases = ""
        for c in MigratorCommandLine.commands {
            let flags = (c.options.map { "--" + $0.name } + ["--help", "--config", "--env"]).joined(separator: " ")
            let takesIDs = c.arguments.contains { $0.name.contains("ID") || $0.name.contains("TARGET") }
            cases += "        '\(c.path.joined(separator: " "))') flags='\(flags)'; ids=\(takesIDs ? 1 : 0) ;;\n"
        }
        let groupCases = groupCases { "COMPREPLY=($(compgen -W '\($0)' -- \"$cur\")); return" }
        return """
            # bash completion for migrator (generated by `migrator __generate bash`; do not edit).
            # Completes commands, options, --dir/--db paths, and migration ids from `migrator list --json`.

            _migrator_ids() {
                local dir="" i
                for ((i = 1; i < ${#COMP_WORDS[@]}; i++)); do
                    case "${COMP_WORDS[i]}" in
                        --dir) dir="${COMP_WORDS[i+1]}" ;;
                        --dir=*) dir="${COMP_WORDS[i]#--dir=}" ;;
                    esac
                done
                "${COMP_WORDS[0]}" list --json ${dir:+--dir "$dir"} 2>/dev/null \\
                    | grep -o '"id":"[^"]*"' | cut -d'"' -f4
            }

            _migrator() {
                local cur prev words=() i flags="" ids=0 command=""
                cur="${COMP_WORDS[COMP_CWORD]}"
                prev="${COMP_WORDS[COMP_CWORD-1]}"
                for ((i = 1; i < COMP_CWORD; i++)); do
                    case "${COMP_WORDS[i]}" in
                        -*) ;;
                        *) case "${COMP_WORDS[i-1]}" in
                               \(valuedOptions)) ;;
                               *) words+=("${COMP_WORDS[i]}") ;;
                           esac ;;
                    esac
                done
                case "$prev" in
                    --\(pathOptions.sorted().joined(separator: "|--")))
                        COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null; return ;;
                    --\(idOptions.sorted().joined(separator: "|--")))
                        COMPREPLY=($(compgen -W "$(_migrator_ids)" -- "$cur")); return ;;
                    --log-format) COMPREPLY=($(compgen -W 'text json' -- "$cur")); return ;;
                    --lang) COMPREPLY=($(compgen -W 'swift c' -- "$cur")); return ;;
                esac
                if [ ${#words[@]} -eq 0 ]; then
                    COMPREPLY=($(compgen -W '\(firstWords.joined(separator: " ")) --help --version' -- "$cur"))
                    return
                fi
                if [ ${#words[@]} -eq 1 ]; then
                    case "${words[0]}" in
            \(groupCases)        esac
                fi
                command="${words[*]:0:2}"
                case "$command" in
                    \(groups.map { $0 + "\\ *" }.joined(separator: "|"))) ;;
                    *) command="${words[0]}" ;;
                esac
                case "$command" in
            \(cases)        *) return ;;
                esac
                if [[ "$cur" == -* ]]; then
                    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
                elif [ "$ids" = 1 ]; then
                    COMPREPLY=($(compgen -W "$(_migrator_ids)" -- "$cur"))
                fi
            }
            complete -F _migrator migrator

            """
    }

    static func zshCompletion() -> String {
        var commands = ""
        for c in MigratorCommandLine.commands where c.path.count == 1 {
            commands +=
                "        '\(c.path[0]):\(c.summary.replacing("'", with: "'\\''").replacing(":", with: "\\:"))'\n"
        }
        var cases = ""
        for c in MigratorCommandLine.commands {
            var specs = ""
            for o in c.options + [OptionSpec("help", "Show this help.")] {
                let help = o.help.replacing("'", with: "'\\''")
                    .replacing("[", with: "\\[").replacing("]", with: "\\]")
                    .replacing(":", with: "\\:")
                var action = ""
                if let value = o.value {
                    action =
                        pathOptions.contains(o.name)
                        ? ":\(value):_files" : idOptions.contains(o.name) ? ":\(value):_migrator_ids" : ":\(value): "
                }
                specs += " '--\(o.name)[\(help)]\(action)'"
            }
            cases += "        '\(c.path.joined(separator: " "))') _arguments -s\(specs) '*:argument:_migrator_ids' ;;\n"
        }
        let groupCases = groupCases { "if (( CURRENT == 3 )); then compadd \($0); return; fi" }
        return """
            #compdef migrator
            # zsh completion for migrator (generated by `migrator __generate zsh`; do not edit).

            _migrator_ids() {
                local dir=${opt_args[--dir]}
                local -a ids
                ids=(${(f)"$(migrator list --json ${dir:+--dir $dir} 2>/dev/null \\
                    | grep -o '"id":"[^"]*"' | cut -d'"' -f4)"})
                compadd -a ids
            }

            _migrator() {
                if (( CURRENT == 2 )); then
                    local -a commands
                    commands=(
            \(commands)        )
                    _describe command commands
                    return
                fi
                case "${words[2]}" in
            \(groupCases)    esac
                local command="${words[2]}"
                case "$command" in \(groups.joined(separator: "|"))) command="$command ${words[3]}" ;; esac
                case "$command" in
            \(cases)    esac
            }

            _migrator "$@"

            """
    }
}

/// Today's date for man pages (UTC, YYYY-MM-DD), or `SOURCE_DATE_EPOCH`'s
/// for reproducible builds.
enum EngineClockDate {
    static func today() -> Substring {
        let epoch = getenv("SOURCE_DATE_EPOCH").flatMap { Int(String(cString: $0)) } ?? Int(time(nil))
        var t = time_t(epoch)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return Substring("\(tm.tm_year + 1900)-\(pad(tm.tm_mon + 1))-\(pad(tm.tm_mday))")
    }
}
