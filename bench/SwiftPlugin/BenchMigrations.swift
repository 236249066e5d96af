// The data-migration benchmark's Swift plugin: the same three migrations as
// bench/migrations/data_migrations.c, written with MigrationKit. It exports
// the one named by $MIGRATION_BENCH_MIGRATION (fanout, bulk or loop).
import Foundation
import MigrationKit

struct FanOut: IrreversibleMigration {
    let id = "010_fanout_user_settings"
    let name = "Fan out user settings"
    let description = "benchmark"
    let version = "1.0.0"
    func up(_ db: Database) throws {
        // Read each user in place and insert bytes (insert_n): no copy of the
        // document and no String per insert.
        let users = try db.documents("users")
        let head = Array(#"{"user_id":"#.utf8)
        let tail = Array(#","theme":"light","notifications":true}"#.utf8)
        var out: [UInt8] = []
        while let user = try users.nextView() {
            guard let id = user.field("_id") else { throw DatabaseError(.invalid, "a user without _id") }
            out.removeAll(keepingCapacity: true)
            out.append(contentsOf: head)
            out.append(contentsOf: id)
            out.append(contentsOf: tail)
            try db.insert(json: out, into: "user_settings")
        }
    }
}

struct AddPlanBulk: IrreversibleMigration {
    let id = "020_add_plan_bulk"
    let name = "Add plan (one update)"
    let description = "benchmark"
    let version = "1.0.0"
    func up(_ db: Database) throws {
        try db.update("users", filter: "{}", update: #"{"$set":{"plan":"free"}}"#)
    }
}

struct AddPlanLoop: IrreversibleMigration {
    let id = "030_add_plan_loop"
    let name = "Add plan (per document)"
    let description = "benchmark"
    let version = "1.0.0"
    func up(_ db: Database) throws {
        let users = try db.find("users")
        while let user = try users.next() {
            guard let filter = user.idFilter else { throw DatabaseError(.invalid, "a user without _id") }
            try db.update("users", filter: filter, update: #"{"$set":{"plan":"free"}}"#)
        }
    }
}

/// The same per-document loop through the ABI 1.1 fast path: the cursor
/// replaces each document it is on (no filter, no key search).
struct AddPlanReplace: IrreversibleMigration {
    let id = "040_add_plan_replace"
    let name = "Add plan (per document, cursor_replace)"
    let description = "benchmark"
    let version = "1.0.0"
    func up(_ db: Database) throws {
        let users = try db.documents("users")
        let field = Array(#","plan":"free"}"#.utf8)
        var out: [UInt8] = []
        // Read in place (no copy of each document), rewrite into one buffer.
        while let user = try users.nextView() {
            out.removeAll(keepingCapacity: true)
            out.append(contentsOf: user.bytes.dropLast())
            out.append(contentsOf: field)
            try users.replaceCurrent(json: out)
        }
    }
}

@_cdecl("migrator_plugin_entry_v1")
public func benchEntry() -> UnsafeRawPointer {
    let chosen: any Migration
    switch ProcessInfo.processInfo.environment["MIGRATION_BENCH_MIGRATION"] ?? "fanout" {
    case "bulk": chosen = AddPlanBulk()
    case "loop": chosen = AddPlanLoop()
    case "replace": chosen = AddPlanReplace()
    default: chosen = FanOut()
    }
    return MigrationBundle.export(name: "bench-swift", migrations: [chosen])
}
