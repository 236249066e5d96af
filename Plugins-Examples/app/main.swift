// An app that embeds the migration engine:
// it registers its own in-process migration, loads compiled plugins,
// auto-migrates at startup when AUTO_MIGRATE=true, and serves the detailed
// health document on http://127.0.0.1:$PORT/health/detailed.
//
//   AUTO_MIGRATE=true MIGRATOR_DB=./migrator.db MIGRATOR_DIR=./migrations example-app
//   example-app --once        # print the health document and exit
import Foundation
import MigrationEngine
import MigrationKit

#if canImport(Glibc)
import Glibc
#endif

/// The app's own migration, registered in-process: no plugin, no C.
struct AppSessions: Migration {
    let id = "006_app_sessions"
    let name = "App Sessions"
    let description = "Sessions collection used by the app, unique by token"
    let version = "2.0.0"
    func up(_ db: Database) throws {
        try db.createIndex("sessions", path: "token", unique: true)
    }
    func down(_ db: Database) throws {
        try db.dropCollection("sessions")
    }
}

let env = ProcessInfo.processInfo.environment
let database = env["MIGRATOR_DB"] ?? "./migrator.db"
let directory = env["MIGRATOR_DIR"] ?? "./migrations"

func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

let migrator = Migrator(databasePath: database)
do {
    try migrator.register(AppSessions())
    if access(directory, F_OK) == 0 {
        let plugins = try migrator.loadPlugins(from: directory)
        for p in plugins.problems { log("plugin problem: \(p.message)") }
    }
    if env["AUTO_MIGRATE"] == "true" {
        let report = try migrator.migrateUp()
        log("auto-migrate: applied \(report.completed.count) migration(s)")
    }
} catch {
    // Keep serving: the health document reports the problem.
    log("startup migration failed: \(error)")
}

@MainActor func healthJSON() -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return (try? encoder.encode(migrator.health())) ?? Data(#"{"status":"unhealthy"}"#.utf8)
}

if CommandLine.arguments.contains("--once") {
    FileHandle.standardOutput.write(healthJSON() + Data("\n".utf8))
    exit(migrator.health().status == .healthy ? 0 : 1)
}

// A deliberately tiny HTTP/1.0 server: one request per connection, GET only.
let port = UInt16(env["PORT"] ?? "8080") ?? 8080
let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
var yes: Int32 = 1
setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
var address = sockaddr_in()
address.sin_family = sa_family_t(AF_INET)
address.sin_port = port.bigEndian
address.sin_addr.s_addr = inet_addr("127.0.0.1")
let bound = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
}
guard bound == 0, listen(server, 16) == 0 else {
    log("cannot listen on 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
    exit(1)
}
var actual = sockaddr_in()
var length = socklen_t(MemoryLayout<sockaddr_in>.size)
_ = withUnsafeMutablePointer(to: &actual) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(server, $0, &length) }
}
log("listening on http://127.0.0.1:\(UInt16(bigEndian: actual.sin_port))/health/detailed")

while true {
    let client = accept(server, nil, nil)
    if client < 0 { continue }
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = read(client, &buffer, buffer.count)
    let request = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
    let response: Data
    if request.hasPrefix("GET /health/detailed ") {
        let body = healthJSON()
        response =
            Data("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
            + body
    } else {
        response = Data("HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".utf8)
    }
    _ = response.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
    close(client)
}
