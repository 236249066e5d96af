import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The loopback HTTPS server of Tests/Fleet/https-server.py, with a CA and a
/// server certificate for 127.0.0.1 made here with `openssl`. It serves the
/// files of a folder, listens on 127.0.0.1 only, and exits by itself after
/// its lifetime (and when this object goes away).
public final class HTTPSServer {
    /// Where the certificates live.
    public let root: String
    /// The CA certificate (PEM) that signed the server's.
    public let caFile: String
    public let port: Int
    private let process: Process

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Serves the files of `directory` under `/files/NAME`.
    public init(serving directory: String, lifetime: Double = 120) throws {
        root = Fixtures.temporaryDirectory("https")
        caFile = root + "/ca.pem"
        try "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n".write(
            toFile: root + "/ext.cnf", atomically: false, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for step in [
            ["req", "-x509"] + ec + [
                "-keyout", root + "/ca.key", "-out", caFile, "-days", "1", "-subj", "/CN=migrator test CA",
            ],
            ["req"] + ec + ["-keyout", root + "/server.key", "-out", root + "/server.csr", "-subj", "/CN=127.0.0.1"],
            [
                "x509", "-req", "-in", root + "/server.csr", "-CA", caFile, "-CAkey", root + "/ca.key",
                "-CAcreateserial", "-out", root + "/server.pem", "-days", "1", "-extfile", root + "/ext.cnf",
            ],
        ] {
            let r = try Fixtures.run("/usr/bin/openssl", step)
            guard r.status == 0 else { throw Failure(description: "openssl \(step[0]): \(r.output)") }
        }
        let portFile = root + "/port"
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [
            Fixtures.packageRoot + "/Tests/Fleet/https-server.py", "--dir", directory, "--cert", root + "/server.pem",
            "--key", root + "/server.key", "--port-file", portFile, "--lifetime", String(lifetime),
            "--hits-file", root + "/hits.json",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        let deadline = Date().addingTimeInterval(15)
        var found: Int?
        while found == nil, Date() < deadline {
            found = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0) }
            if found == nil { Thread.sleep(forTimeInterval: 0.05) }
        }
        guard let found else {
            process.terminate()
            throw Failure(description: "the HTTPS test server did not start")
        }
        port = found
    }

    deinit {
        if process.isRunning { process.terminate() }
        Fixtures.removeTree(root)
    }

    /// `https://127.0.0.1:PORT` + `path`.
    public func url(_ path: String) -> String { "https://127.0.0.1:\(port)\(path)" }

    /// How many requests `path` had.
    public func hits(_ path: String) throws -> Int {
        guard let data = FileManager.default.contents(atPath: root + "/hits.json") else { return 0 }
        return (try JSONSerialization.jsonObject(with: data) as? [String: Int])?[path] ?? 0
    }
}
