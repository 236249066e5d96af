import Foundation
import TestSupport
import Testing

/// Man pages and completion are generated from the command table that
/// `--help` prints: these check that every command and option is there.
@Suite("man pages and shell completion (end to end)")
struct GeneratedDocsTests {
    /// The commands `migrator --help` lists.
    func commands() throws -> [[String]] {
        let help = try migrator(["--help"]).stdout
        guard let start = help.range(of: "Commands:\n") else { throw Unreadable("no Commands: in --help") }
        var lines: [[Substring]] = []
        for line in help[start.upperBound...].split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix("  ") else { break }
            lines.append(line.split(separator: " "))
        }
        // A group (`db`, `bundle`) is a first word that starts several lines.
        let firsts = lines.compactMap(\.first)
        return lines.map { words in
            words.prefix(firsts.filter { $0 == words.first }.count > 1 ? 2 : 1).map(String.init)
        }
    }

    @Test func everyCommandHasAManPageWithItsHelp() throws {
        let dir = Fixtures.temporaryDirectory("man")
        defer { Fixtures.removeTree(dir) }
        #expect(try migrator(["__generate", "man", dir]).status == 0)
        let list = try commands()
        #expect(list.count >= 25, "\(list)")
        let top = try String(contentsOfFile: dir + "/migrator.1", encoding: .utf8)
        for path in list {
            let page = "migrator-" + path.joined(separator: "-")
            #expect(top.contains(".BR \(page.replacingOccurrences(of: "-", with: "\\-")) (1)"), "\(page) in migrator.1")
            let text = try String(contentsOfFile: dir + "/\(page).1", encoding: .utf8)
                .replacingOccurrences(of: "\\-", with: "-").replacingOccurrences(of: "\\e", with: "\\")
                .replacingOccurrences(of: "\\fI", with: "").replacingOccurrences(of: "\\fR", with: "")
            let help = try migrator(path + ["--help"]).stdout
            // Every option line of --help: its flag and its text.
            for line in help.split(separator: "\n") where line.hasPrefix("  --") {
                let words = line.split(separator: " ", omittingEmptySubsequences: true)
                let flag = String(words[0])
                let rest = line.dropFirst(2 + flag.count).drop { $0 != " " }
                let parts = rest.split(separator: "  ", omittingEmptySubsequences: true).map {
                    $0.trimmingCharacters(in: .whitespaces)
                }
                #expect(text.contains(".B " + flag), "\(page): \(flag)")
                if let description = parts.last { #expect(text.contains(description), "\(page): '\(description)'") }
            }
            #expect(text.contains(help.split(separator: "\n")[0]), "\(page): the summary")
        }
        // It renders.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/man") {
            let r = try Fixtures.run(
                "/usr/bin/man", ["-l", dir + "/migrator-verify.1"], environment: ["MANWIDTH": "100"])
            #expect(r.status == 0 && r.output.contains("Prove that down undoes up"), "\(r.output)")
        }
    }

    @Test func bashCompletesCommandsOptionsIdsAndPaths() throws {
        let w = try Workspace(examples: true)
        let script = w.root + "/completion.bash"
        try migrator(["__generate", "bash"]).stdout.write(toFile: script, atomically: true, encoding: .utf8)
        // `migrator` on PATH, as the completion calls it for ids.
        let bin = w.root + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: bin + "/migrator", withDestinationPath: Fixtures.productsDirectory + "/migrator")
        func complete(_ words: [String]) throws -> [String] {
            let quoted = words.map { "'\($0)'" }.joined(separator: " ")
            let r = try Fixtures.run(
                "/bin/bash",
                [
                    "-c",
                    "source '\(script)'; COMP_WORDS=(\(quoted)); COMP_CWORD=\(words.count - 1); _migrator; "
                        + "printf '%s\\n' \"${COMPREPLY[@]}\"",
                ], environment: ["PATH": bin + ":/usr/bin:/bin"])
            #expect(r.status == 0, "\(r.output)")
            return r.output.split(separator: "\n").map(String.init)
        }
        #expect(try complete(["migrator", "ap"]) == ["apply"])
        #expect(try complete(["migrator", "db", "co"]).sorted() == ["collections", "copy", "count"])
        #expect(try complete(["migrator", "apply", "--dry"]) == ["--dry-run"])
        #expect(try complete(["migrator", "rollback", "--la"]) == ["--last"])
        let ids = try complete(["migrator", "apply", "--dir", w.dir, "--target", "00"])
        #expect(ids.first == "001_initial_setup" && ids.count == 5, "\(ids)")
        #expect(try complete(["migrator", "rollback", "--dir", w.dir, "004"]) == ["004_user_settings"])
        let paths = try complete(["migrator", "status", "--db", w.root + "/mig"])
        #expect(paths == [w.dir], "\(paths)")
        #expect(try complete(["migrator", "apply", "--log-format", ""]) == ["text", "json"])
    }

    @Test func zshCompletionNamesEveryCommand() throws {
        let script = try migrator(["__generate", "zsh"]).stdout
        #expect(script.hasPrefix("#compdef migrator"))
        for path in try commands() where path.count == 1 { #expect(script.contains("'\(path[0]):"), "\(path)") }
    }
}
