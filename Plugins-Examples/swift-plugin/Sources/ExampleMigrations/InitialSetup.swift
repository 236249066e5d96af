import MigrationKit

/// 001: the collections and indexes the app starts with.
struct InitialSetup: Migration {
    let id = "001_initial_setup"
    let name = "Initial Setup"
    let description = "Create initial database collections and indexes"
    let version = "1.0.0"
    let checksum: String? = "001-v1"

    func up(_ db: Database) throws {
        try db.createCollection("users")
        try db.createCollection("documents")
        try db.createIndex("users", path: "email", unique: true)
        try db.createIndex("documents", path: "owner_id")
        db.log("users.email is unique; documents are indexed by owner_id")
    }

    func down(_ db: Database) throws {
        try db.dropIndex("documents", path: "owner_id")
        try db.dropIndex("users", path: "email")
        // Never drop data: a collection goes only if it is still empty.
        for collection in ["documents", "users"] where try db.count(collection) == 0 {
            try db.dropCollection(collection)
        }
    }
}
