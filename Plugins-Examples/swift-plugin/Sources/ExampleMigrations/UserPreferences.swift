import MigrationKit

/// 002: a new collection with default preferences for every existing user.
struct UserPreferences: Migration {
    let id = "002_user_preferences"
    let name = "User Preferences"
    let description = "Add user_preferences with defaults for each existing user"
    let version = "1.1.0"
    let checksum: String? = "002-v1"

    struct Preferences: Codable {
        let user_id: Int
        let language: String
        let timezone: String
        let email_notifications: Bool
    }
    struct User: Decodable { let _id: Int }

    func up(_ db: Database) throws {
        try db.createCollection("user_preferences")
        try db.createIndex("user_preferences", path: "user_id", unique: true)
        let total = try db.count("users")
        var done: UInt64 = 0
        try db.find("users", as: User.self).forEach { user in
            try db.insert(
                Preferences(user_id: user._id, language: "en", timezone: "UTC", email_notifications: true),
                into: "user_preferences")
            done += 1
            db.progress(done, of: total)
        }
        db.log("created preferences for \(done) users")
    }

    func down(_ db: Database) throws {
        try db.dropCollection("user_preferences")
    }
}
