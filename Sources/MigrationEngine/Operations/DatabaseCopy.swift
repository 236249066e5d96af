import DocumentStore

/// `migrator db copy`: every collection of one database (the applied
/// migrations, their history and checkpoints included) into an empty one,
/// of either backend: how a database moves from LMDB to PostgreSQL and back.
///
/// The source is read in one consistent snapshot; the target is written in
/// one transaction that commits only after the digest of every collection
/// (``CollectionDigest``, the same on both backends) matches the source's.
/// A failure anywhere leaves the target as it was.
package enum DatabaseCopy {
    /// What a copy did.
    package struct Report: Sendable {
        /// Collections copied, system ones included.
        package var collections = 0
        /// Documents copied.
        package var documents = 0
        /// The total digest both databases have for their user collections.
        package var digest = ""
    }

    /// Copies `source` into `target`, which must not hold any collection.
    /// `progress` hears each collection with its document count as it is done.
    package static func copy(
        from source: any DatabaseStorage, to target: any DatabaseStorage,
        progress: ((String, Int) -> Void)? = nil
    ) throws -> Report {
        guard source.location != target.location else {
            throw MigratorError(.copyFailed, "cannot copy '\(source.location)' onto itself")
        }
        guard source.exists else {
            throw MigratorError(.copyFailed, "no database at '\(source.location)' to copy from")
        }
        if target.exists {
            let names = try target.readDocuments { try $0.collections().map(\.name) }
            if !names.isEmpty {
                throw MigratorError(
                    .copyFailed,
                    "'\(target.location)' already holds \(names.count) collection\(names.count == 1 ? "" : "s") "
                        + "(\(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? ", …" : "")); "
                        + "copy into a new or empty database")
            }
        }
        return try source.readDocuments { from in
            let collections = try from.collections()
            let names = collections.map(\.name)
            let expected = try from.digests(names)
            var report = Report()
            try target.writeDocuments(batched: true) { to in
                try to.withSystemAccess {
                    for c in collections {
                        try to.createCollection(c.name, ifNotExists: true)
                        let reader = try from.openReader(c.name, filter: .all)
                        defer { reader.close() }
                        var n = 0
                        while let raw = try reader.nextRaw() {
                            try to.insert(json: raw, into: c.name, returningID: false)
                            n += 1
                        }
                        // Indexes after the documents: one pass builds each.
                        for index in try from.indexes(c.name) {
                            try to.createIndex(c.name, path: index.path, unique: index.unique)
                        }
                        report.collections += 1
                        report.documents += n
                        progress?(c.name, n)
                    }
                }
                let got = try to.digests(names)
                for ((name, want), (_, have)) in zip(expected.collections, got.collections) where want != have {
                    throw MigratorError(
                        .copyFailed,
                        "collection '\(name)' did not arrive identical in '\(target.location)' "
                            + "(digest \(have.prefix(12))…, the source has \(want.prefix(12))…); "
                            + "nothing was copied")
                }
            }
            report.digest = CollectionDigest.total(expected.collections.filter { !$0.0.hasPrefix("_") })
            return report
        }
    }
}
