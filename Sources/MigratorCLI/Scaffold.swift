import MigrationKit

/// Source templates for `migrator create`.
enum Scaffold {
    enum Language: String, Sendable { case swift, c }

    /// `"Add User Settings"` → `"add_user_settings"`: lowercase ASCII words
    /// joined by `_`; other characters separate words.
    static func slug(_ name: String) -> String {
        var words: [String] = []
        var word = ""
        for u in name.unicodeScalars {
            if u.isASCII, u.properties.isAlphabetic || ("0"..."9").contains(u) {
                word.unicodeScalars.append(u)
            } else if !word.isEmpty {
                words.append(word.lowercased())
                word = ""
            }
        }
        if !word.isEmpty { words.append(word.lowercased()) }
        return words.joined(separator: "_")
    }

    /// The id after the highest number in `existingIDs`, zero-padded to the
    /// widest number in use (at least 3 digits).
    static func nextID(name: String, existingIDs: [String]) -> String? {
        let slug = slug(name)
        guard !slug.isEmpty else { return nil }
        let next = (existingIDs.compactMap(MigrationID.sequence(of:)).max() ?? 0) + 1
        let width = max(3, existingIDs.map { $0.prefix { $0.isNumber }.count }.max() ?? 0)
        let digits = String(next)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits + "_" + slug
    }

    /// `"004_add_user_settings"` → `"AddUserSettings"`.
    static func typeName(_ id: String) -> String {
        let words = id.split(separator: "_").dropFirst()
        let name = words.map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        return name.first?.isLetter == true ? name : "Migration" + name
    }

    /// A C string literal. Control characters become three-digit octal
    /// escapes, which cannot run into a following digit as `\x` would.
    static func cString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "?": out += "\\?"  // no trigraphs
            case _ where u.value < 0x20 || u.value == 0x7F:
                let octal = String(u.value, radix: 8)
                out += "\\" + String(repeating: "0", count: 3 - octal.count) + octal
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// A Swift string literal: quotes, backslashes and control characters
    /// escaped, so no text can end the literal or start an interpolation.
    static func swiftString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20 || u.value == 0x7F: out += "\\u{" + String(u.value, radix: 16) + "}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// Text for one line of a comment: control characters (line breaks
    /// included) become spaces, and neither `*/` nor `/*` survives to close
    /// or nest a C comment.
    static func commentText(_ s: String) -> String {
        let flat = String(
            String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
        return flat.replacing("*/", with: "* /").replacing("/*", with: "/ *")
    }

    /// The file name and source text for a new migration.
    static func source(
        id: String, name: String, description: String, version: String, language: Language
    ) -> (file: String, text: String) {
        switch language {
        case .swift: return swiftSource(id: id, name: name, description: description, version: version)
        case .c: return cSource(id: id, name: name, description: description, version: version)
        }
    }

    /// A Swift migration: a `Migration` type to add to the plugin's bundle.
    private static func swiftSource(
        id: String, name: String, description: String, version: String
    ) -> (file: String, text: String) {
        let type = typeName(id)
        return (
            "\(id).swift",
            """
            import MigrationKit

            /// \(commentText(name)): \(commentText(description))
            ///
            /// Add `\(type)()` to the list passed to MigrationBundle.export in your
            /// plugin's entry function (or register it with Migrator.register).
            struct \(type): Migration {
                let id = \(swiftString(id))
                let name = \(swiftString(name))
                let description = \(swiftString(description))
                let version = \(swiftString(version))
                /// Change this if you ever change the migration after it shipped.
                let checksum: String? = "\(id)-v1"

                func up(_ db: Database) throws {
                    // TODO: make the change, e.g.
                    // try db.createIndex("users", path: "email", unique: true)
                    // try db.update("users", filter: #"{"plan": {"$exists": false}}"#,
                    //               update: #"{"$set": {"plan": "free"}}"#)
                    // A per-document rewrite: replace each document where the cursor is.
                    // let users = try db.documents("users")
                    // while let user = try users.next() {
                    //     var u = try user.decode(User.self)
                    //     u.plan = "free"
                    //     try users.replaceCurrent(with: u)
                    // }
                }

                func down(_ db: Database) throws {
                    // TODO: undo exactly what up did, e.g.
                    // try db.dropIndex("users", path: "email")
                    // If it cannot be undone, conform to IrreversibleMigration instead and delete this.
                }
            }

            """
        )
    }

    /// A C plugin of one migration, with its entry function.
    private static func cSource(
        id: String, name: String, description: String, version: String
    ) -> (file: String, text: String) {
        return (
            "\(id).c",
            """
            /*
             * \(id): \(commentText(name))
             * \(commentText(description))
             *
             * Build:  cc -shared -fPIC -O2 -fvisibility=hidden -I<dir of migrator_plugin.h> -o \(id).so \(id).c
             * Header: migrator header > migrator_plugin.h
             */
            #include "migrator_plugin.h"

            static migrator_status up(const migrator_host_v1 *host, migrator_txn *txn, void *userdata) {
                (void)host; (void)txn; (void)userdata;
                /* TODO: make the change, e.g.
                 * return host->create_index(txn, "users", "email", 1);
                 * A per-document rewrite (ABI 1.1; see MIGRATOR_HOST_HAS in the header):
                 *   migrator_cursor *c; const char *doc; size_t len;
                 *   host->find(txn, "users", NULL, &c);
                 *   while (host->cursor_next(c, &doc, &len) == MIGRATOR_OK)
                 *       host->cursor_replace(c, new_json, new_len);   (check each status)
                 *   host->cursor_close(c);
                 * On failure: host->set_error(txn, "why"); return MIGRATOR_ERROR; */
                return MIGRATOR_OK;
            }

            static migrator_status down(const migrator_host_v1 *host, migrator_txn *txn, void *userdata) {
                (void)host; (void)txn; (void)userdata;
                /* TODO: undo exactly what up did, e.g.
                 * return host->drop_index(txn, "users", "email");
                 * If it cannot be undone, delete this function and set .down = NULL. */
                return MIGRATOR_OK;
            }

            static const migrator_migration_v1 migrations[] = {
                {
                    .id = \(cString(id)),
                    .name = \(cString(name)),
                    .description = \(cString(description)),
                    .version = \(cString(version)),
                    .checksum = \(cString(id + "-v1")),
                    .up = up,
                    .down = down,
                },
            };

            static const migrator_plugin_v1 bundle = {
                .abi_major = MIGRATOR_ABI_MAJOR,
                .abi_minor = MIGRATOR_ABI_MINOR,
                .struct_size = sizeof(migrator_plugin_v1),
                .name = \(cString(id)),
                .toolchain = NULL,
                .migration_count = 1,
                .migrations = migrations,
            };

            __attribute__((visibility("default")))
            const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &bundle; }

            """
        )
    }
}
