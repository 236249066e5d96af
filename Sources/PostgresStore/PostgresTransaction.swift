import DocumentStore

/// One transaction of a ``PostgresDocumentStore``: the operations of the
/// LMDB store's `Transaction`, with the same results and the same errors.
public final class PostgresTransaction: DocumentTransaction, SystemTransaction {
    unowned let store: PostgresDocumentStore
    let readOnly: Bool
    var ended = false
    /// Whether the reserved (`_`) collections are writable: for the engine.
    private var systemAccess = false
    /// The collections met in this transaction.
    private var known: [String: PGCollection] = [:]
    /// Whether inserts and a cursor's replacements into collections without
    /// indexes are sent in batches (see ``pending``): far fewer round trips,
    /// but a duplicate `_id` is then found at a later call or at commit, and
    /// fails the whole transaction. Off by default, so that every call
    /// reports its own error and a failed insert leaves the transaction
    /// usable, as on LMDB; the engine turns it on for a migration's step,
    /// whose plugin-facing contract says errors may come later.
    public var batchesWrites = false

    init(store: PostgresDocumentStore, readOnly: Bool) {
        self.store = store
        self.readOnly = readOnly
    }

    var connection: Connection { store.connection }
    var schema: String { store.schema }

    // MARK: - Collections

    /// Commits the work so far and goes on in a new transaction (checkpoints).
    /// Waits for, then holds until this transaction ends, the
    /// transaction-level advisory lock named `name` (in this schema): what
    /// one step transaction holds, another waits for, on any connection and
    /// whatever happened to the session that holds the run lock.
    public func holdTransactionLock(_ name: String) throws {
        try connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [name + " " + schema])
    }

    public func commitAndContinue() throws {
        try usable()
        try sqlRun("COMMIT; BEGIN")
        // The collections stay as they are (the run lock keeps other runs
        // out), so ``known`` and its generations hold; server-side cursors
        // end with the commit, and readers declare new ones.
        epoch += 1
    }

    /// Bumped by every commit inside the transaction (checkpoints).
    private(set) var epoch = 0
    private var portals = 0
    /// A name for a new server-side cursor.
    func portalName() -> String {
        portals += 1
        return "migrator_cursor_\(portals)"
    }

    // MARK: - Statements, and inserts sent in batches

    /// Inserts not sent yet: consecutive inserts into one collection without
    /// indexes go as one multi-row statement, before any other statement
    /// and at commit. A duplicate `_id` among them is found then, at a later
    /// call or at the end of the step, and fails the whole step: the
    /// transaction is poisoned and cannot commit.
    private var pending: (collection: PGCollection, name: String, rows: [(key: String, body: String, id: JSON)])?
    /// Where ``Update/splice(_:into:)`` writes.
    private var spliced: [UInt8] = []
    /// Where a replacement's stored form is built.
    var storedForm: [UInt8] = []
    /// The given `_id` keys in ``pending``.
    private var pendingKeys: Set<String> = []
    static let batchSize = 500
    /// A cursor's replacements are sent this many at a time (by `COPY`).
    static let updateQueueSize = 10_000
    /// The error a batch met; every later call fails with it.
    private var poison: StoreError?

    /// Runs a statement after sending the pending inserts.
    @discardableResult
    func sql(_ text: String, _ parameters: [String?] = []) throws -> Rows {
        try flush()
        return try connection.execute(text, parameters)
    }

    /// Runs statements after sending the pending inserts.
    func sqlRun(_ text: String) throws {
        try flush()
        try connection.run(text)
    }

    /// Replacements not sent yet (a cursor's per-document rewrite of a
    /// collection without indexes), sent like the inserts.
    private var pendingUpdates: (collection: PGCollection, name: String, rows: [(key: String, body: String)])?

    /// Queues a new body for the stored document at `key` in `c`, named `name`.
    func queueUpdate(_ c: PGCollection, _ name: String, key: String, body: String) throws {
        guard batchesWrites else { return try updateBodies(c, [(key, body)]) }
        if let p = pendingUpdates, p.collection !== c { try flush() }
        if pendingUpdates == nil { pendingUpdates = (c, name, []) }
        pendingUpdates?.rows.append((key, body))
        if (pendingUpdates?.rows.count ?? 0) >= Self.updateQueueSize { try flush() }
    }

    /// Sends the pending inserts, then the pending replacements.
    public func flush() throws {
        if let poison { throw poison }
        try flushInserts()
        if let updates = pendingUpdates {
            pendingUpdates = nil
            do { try updateBodies(updates.collection, updates.rows) } catch {
                poison = StoreError(
                    .storage, "collection '\(updates.name)': sending a batch of replacements failed: \(error)")
                throw error
            }
        }
    }

    private func flushInserts() throws {
        guard let batch = pending else { return }
        pending = nil
        var params: [String?] = []
        params.reserveCapacity(batch.rows.count * 2)
        var values: [String] = []
        for (i, row) in batch.rows.enumerated() {
            params.append(row.key)
            params.append(row.body)
            values.append("($\(2 * i + 1), $\(2 * i + 2))")
        }
        let rows: Rows
        do {
            rows = try connection.execute(
                "INSERT INTO \(batch.collection.table) (_id, body) VALUES \(values.joined(separator: ", ")) "
                    + "ON CONFLICT (_id) DO NOTHING RETURNING _id", params)
        } catch {
            // The connection's own error goes up; later calls name it.
            poison = StoreError(.storage, "collection '\(batch.name)': inserting a batch failed: \(error)")
            throw error
        }
        guard rows.count != batch.rows.count else { return }
        // Counted when queued: the ones the server refused were not inserted.
        // (The batch may be sent from inside the engine's own writes: by name.)
        if !batch.name.hasPrefix("_") {
            changeTracker?.count(batch.name) { $0.inserted -= batch.rows.count - rows.count }
        }
        var inserted: [String: Int] = [:]
        for i in 0..<rows.count { inserted[rows.text(i, 0) ?? "", default: 0] += 1 }
        for row in batch.rows {
            if let n = inserted[row.key], n > 0 {
                inserted[row.key] = n - 1
                continue
            }
            // LMDB's message; when it comes is documented (docs/postgres.md).
            let e = StoreError(.duplicateKey, "collection '\(batch.name)': duplicate _id \(row.id.serialized)")
            poison = e
            throw e
        }
    }

    /// Queues an insert of a new document into `c`, a collection without indexes.
    private func queue(_ c: PGCollection, _ name: String, key: String, body: String, id: JSON, given: Bool) throws {
        guard batchesWrites else { return try insertRow(c, name, key: key, body: body, id: id) }
        if let p = pending, p.collection !== c { try flush() }
        if pending == nil {
            pending = (c, name, [])
            pendingKeys.removeAll(keepingCapacity: true)
        }
        // A duplicate within the batch is known now: reported at its call,
        // and the transaction goes on, as on LMDB. (Generated ids are unique.)
        if given, !pendingKeys.insert(key).inserted {
            throw StoreError(.duplicateKey, "collection '\(name)': duplicate _id \(id.serialized)")
        }
        pending?.rows.append((key, body, id))
        c.generation += 1
        if (pending?.rows.count ?? 0) >= Self.batchSize { try flush() }
    }

    /// Runs a write of many documents: if it fails after writing some, the
    /// transaction must not commit the half (every later call fails), as on LMDB.
    private func poisoning(_ body: (inout Bool) throws -> Void) throws {
        var wrote = false
        do { try body(&wrote) } catch {
            if wrote && poison == nil {
                poison = (error as? StoreError) ?? StoreError(.storage, "\(error)")
            }
            throw error
        }
    }

    /// See ``SystemTransaction``: for the engine's records alone.
    package func withSystemAccess<R>(_ body: () throws -> R) rethrows -> R {
        let saved = systemAccess
        systemAccess = true
        defer { systemAccess = saved }
        return try body()
    }

    /// Bytes handed out by `getRaw` and readers, valid until the next call.
    private var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    deinit { scratch.deallocate() }

    func handOut(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        if scratch.count < bytes.count {
            scratch.deallocate()
            scratch = .allocate(byteCount: max(bytes.count, 2 * scratch.count, 64), alignment: 1)
        }
        scratch.copyMemory(from: bytes)
        return UnsafeRawBufferPointer(rebasing: scratch[..<bytes.count])
    }

    func usableForReads(_ collection: String) throws(StoreError) {
        try usable()
        try Transaction.validate(collection)
    }

    func usable() throws(StoreError) {
        if let poison { throw poison }
        if ended {
            throw StoreError(
                .transactionEnded,
                "\(connection.name): the transaction has ended; use it only inside its read or write closure")
        }
    }

    func writable(_ collection: String) throws {
        try usable()
        if readOnly {
            throw StoreError(.readOnlyTransaction, "cannot write collection '\(collection)' in a read transaction")
        }
        try Transaction.validate(collection)
        try Transaction.refuseReserved(collection, systemAccess: systemAccess)
        if let t = changeTracker, !systemAccess { try t.willChange(collection, in: self) }
    }

    // MARK: - Change tracking (dry runs, reversibility checks)

    private var changeTracker: ChangeTracker?

    /// Follows what user code changes from now on (nil: stop), as the LMDB
    /// store's `Transaction.track(_:)` does.
    public func track(_ tracker: ChangeTracker?) { changeTracker = tracker }

    /// Whether a tracker wants document bytes from before their change.
    var keepsPreImages: Bool { (changeTracker?.keepsPreImages ?? false) && !systemAccess }

    func noteChange(_ collection: String, _ change: (inout CollectionChanges) -> Void) {
        guard let t = changeTracker, !systemAccess else { return }
        t.count(collection, change)
    }

    /// Records the bytes of the document at `key` before its first change (nil: new).
    func notePreImage(_ collection: String, key: String, bytes: UnsafeRawBufferPointer?) {
        guard keepsPreImages, let t = changeTracker else { return }
        t.notePreImage(collection, id: Self.id(fromKey: key), bytes: bytes)
    }

    /// The stored bytes at `key`, when a tracker needs them before a write.
    func notePreImage(_ c: PGCollection, _ collection: String, key: String) throws {
        guard keepsPreImages else { return }
        let rows = try sql("SELECT body FROM \(c.table) WHERE _id = $1", [key])
        notePreImage(collection, key: key, bytes: rows.bytes(0, 0))
    }

    /// `collection` (its tables and indexes), created when `create` is set.
    func collection(_ name: String, create: Bool = false) throws -> PGCollection? {
        if let c = known[name] { return c }
        if let row = store.systemCatalog[name] {
            let c = PGCollection(schema: schema, id: row.id, indexes: try Self.indexSpecs(row.indexes, name))
            known[name] = c
            return c
        }
        let found = try sql(
            "SELECT id, indexes::text FROM \(schema).collections WHERE name = $1", [name])
        var c: PGCollection?
        if found.count == 1, let id = found.text(0, 0).flatMap({ Int64($0) }) {
            c = PGCollection(schema: schema, id: id, indexes: try Self.indexSpecs(found.text(0, 1), name))
            if name.hasPrefix("_") { store.systemCatalog[name] = (id, found.text(0, 1)) }
        } else if create {
            let made = try sql(
                "INSERT INTO \(schema).collections (name) VALUES ($1) RETURNING id", [name])
            if let id = made.text(0, 0).flatMap({ Int64($0) }) {
                let new = PGCollection(schema: schema, id: id, indexes: [])
                try sqlRun(
                    """
                    CREATE TABLE \(new.table) (
                        _id text COLLATE "C" PRIMARY KEY,
                        body text NOT NULL,
                        doc jsonb GENERATED ALWAYS AS (body::jsonb) STORED)
                    """)
                c = new
            }
        }
        known[name] = c
        return c
    }

    /// The index records of the catalog's `indexes` column.
    static func indexSpecs(_ text: String?, _ collection: String) throws -> [PGIndex] {
        guard let text, let items = try JSON(parsing: text).arrayValue else { return [] }
        return try items.map { item in
            guard let o = item.objectValue, case .int(let id)? = o["id"], let p = o["path"]?.stringValue,
                case .bool(let unique)? = o["unique"], let path = try? FieldPath(p)
            else {
                throw StoreError(.corrupted, "an index record of collection '\(collection)' is damaged")
            }
            return PGIndex(id: id, path: path, unique: unique)
        }
    }

    /// Creates an empty collection. Returns false if it existed (with
    /// `ifNotExists`); otherwise an existing one is `.collectionExists`.
    @discardableResult
    public func createCollection(_ name: String, ifNotExists: Bool = false) throws -> Bool {
        try writable(name)
        if try collection(name) != nil {
            if ifNotExists { return false }
            throw StoreError(.collectionExists, "collection '\(name)' already exists")
        }
        _ = try collection(name, create: true)
        noteChange(name) { $0.created = true }
        return true
    }

    /// Drops a collection with its documents. Returns false if it did not
    /// exist (with `ifExists`); otherwise a missing one is `.collectionNotFound`.
    @discardableResult
    public func dropCollection(_ name: String, ifExists: Bool = false) throws -> Bool {
        try writable(name)
        guard let c = try collection(name) else {
            if ifExists { return false }
            throw StoreError(.collectionNotFound, "collection '\(name)' does not exist")
        }
        if changeTracker != nil && !systemAccess {
            // Every document's bytes only when a reversibility check needs them.
            var n = 0
            if keepsPreImages {
                let reader = try self.reader(name, filter: .all)
                while let bytes = try reader.nextRaw(), let key = reader.key {
                    notePreImage(name, key: key, bytes: bytes)
                    n += 1
                }
                reader.close()
            } else {
                n = try count(name)
            }
            noteChange(name) {
                $0.dropped = true
                $0.deleted += n
                $0.indexesDropped += c.indexes.count
            }
        }
        try sqlRun("DROP TABLE \(c.table); DROP TABLE IF EXISTS \(c.entries)")
        try sql("DELETE FROM \(schema).collections WHERE name = $1", [name])
        known[name] = nil
        return true
    }

    /// The names of the collections, in byte order.
    public func collectionNames() throws -> [String] {
        try usable()
        let rows = try sql("SELECT name FROM \(schema).collections ORDER BY name COLLATE \"C\"")
        return (0..<rows.count).compactMap { rows.text($0, 0) }
    }

    // MARK: - Documents

    /// Inserts a document (a JSON object) and returns its `_id`; see the
    /// LMDB store's `Transaction.insert(_:into:)`.
    @discardableResult
    public func insert(_ document: JSON, into collection: String) throws -> JSON {
        try writable(collection)
        guard case .object(var obj) = document else {
            throw StoreError(
                .invalidDocument,
                "collection '\(collection)': a document must be a JSON object, not \(document.typeName)")
        }
        let given = obj["_id"] != nil
        let id = obj.placeID()
        let key: String
        do { key = try Self.key(id) } catch {
            throw StoreError(error.code, "collection '\(collection)': \(error.message)")
        }
        guard let c = try self.collection(collection, create: true) else { return id }
        if c.indexes.isEmpty {
            try queue(c, collection, key: key, body: JSON.object(obj).serialized, id: id, given: given)
            noteInserted(collection, key: key)
            return id
        }
        // As on LMDB: unique indexes are checked before the _id.
        let entries = try checkedEntries(c, collection, key: key, old: nil, new: .object(obj))
        try insertRow(c, collection, key: key, body: JSON.object(obj).serialized, id: id)
        try write(entries, c, key: key)
        noteInserted(collection, key: key)
        return id
    }

    /// Inserts one row now; a taken `_id` is LMDB's `duplicate_key` error.
    private func insertRow(_ c: PGCollection, _ name: String, key: String, body: String, id: JSON) throws {
        c.generation += 1
        let rows = try sql(
            "INSERT INTO \(c.table) (_id, body) VALUES ($1, $2) ON CONFLICT (_id) DO NOTHING", [key, body])
        if rows.affected == 0 {
            throw StoreError(.duplicateKey, "collection '\(name)': duplicate _id \(id.serialized)")
        }
    }

    private func noteInserted(_ collection: String, key: String) {
        noteChange(collection) { $0.inserted += 1 }
        notePreImage(collection, key: key, bytes: nil)
    }

    public func findAll(_ collection: String, filter: Filter) throws -> [JSON] {
        var out: [JSON] = []
        try visit(collection, filter) { _, doc in
            out.append(doc)
            return .keep
        }
        return out
    }

    public func findOne(_ collection: String, filter: Filter) throws -> JSON? {
        var found: JSON?
        try visit(collection, filter) { _, doc in
            found = doc
            return .stop
        }
        return found
    }

    public func count(_ collection: String, filter: Filter) throws -> Int {
        try usable()
        try Transaction.validate(collection)
        if filter.matchesEverything {
            guard let c = try self.collection(collection) else { return 0 }
            return Int(try sql("SELECT count(*) FROM \(c.table)").text(0, 0) ?? "0") ?? 0
        }
        var n = 0
        try visit(collection, filter) { _, _ in
            n += 1
            return .keep
        }
        return n
    }

    public func updateMany(
        _ collection: String, filter: Filter, update: Update, upsert: Bool = false
    ) throws -> UpdateResult {
        try performUpdate(collection, filter, update, upsert: upsert, one: false)
    }

    public func updateOne(
        _ collection: String, filter: Filter, update: Update, upsert: Bool = false
    ) throws -> UpdateResult {
        try performUpdate(collection, filter, update, upsert: upsert, one: true)
    }

    private func performUpdate(
        _ collection: String, _ filter: Filter, _ update: Update, upsert: Bool, one: Bool
    )
        throws -> UpdateResult
    {
        try writable(collection)
        var result = UpdateResult(matched: 0, modified: 0, upsertedID: nil)
        guard let c = try self.collection(collection, create: upsert) else { return result }
        var changed: [(key: String, body: String)] = []
        // The batched path of a one-field $set: stored bytes spliced, no parse.
        // New bodies go in parts while the visit goes on (its cursor does not
        // see them), so memory stays bounded however many documents change.
        func send(_ wrote: inout Bool, all: Bool) throws {
            guard all ? !changed.isEmpty : changed.count >= Self.updateQueueSize else { return }
            wrote = true
            c.generation += 1
            try updateBodies(c, changed)
            changed.removeAll(keepingCapacity: true)
        }
        if c.indexes.isEmpty && !one && update.isSplice {
            try poisoning { wrote in
                try visitRaw(c, collection, filter) { key, bytes, _ in
                    result.matched += 1
                    guard let differs = update.splice(bytes, into: &spliced) else {
                        throw StoreError(
                            .corrupted,
                            "collection '\(collection)': the stored document with _id "
                                + "\(Self.id(fromKey: key).serialized) is damaged")
                    }
                    guard differs else { return .keep }
                    result.modified += 1
                    notePreImage(collection, key: key, bytes: bytes)
                    changed.append((key, String(decoding: spliced, as: UTF8.self)))
                    try send(&wrote, all: false)
                    return .keep
                }
                try send(&wrote, all: true)
            }
            noteChange(collection) { $0.updated += result.modified }
            return result
        }
        try poisoning { wrote in
            try visitRaw(c, collection, filter) { key, bytes, parsed in
                result.matched += 1
                let doc = try parsed ?? Self.parse(bytes, collection, key: key)
                guard case .object(var new) = doc else { return .keep }
                do throws(StoreError) { try update.apply(to: &new) } catch {
                    throw StoreError(
                        error.code,
                        "collection '\(collection)', _id \(doc.objectValue?["_id"]?.serialized ?? "?"): "
                            + error.message)
                }
                let body = JSON.object(new).serialized
                guard !bytes.sameBytes(as: Array(body.utf8)) else { return one ? .stop : .keep }
                result.modified += 1
                notePreImage(collection, key: key, bytes: bytes)
                c.generation += 1
                if c.indexes.isEmpty && !one {
                    changed.append((key, body))
                    try send(&wrote, all: false)
                    return .keep
                }
                let entries = try checkedEntries(c, collection, key: key, old: doc, new: .object(new))
                wrote = true
                try sql("UPDATE \(c.table) SET body = $2 WHERE _id = $1", [key, body])
                try write(entries, c, key: key)
                return one ? .stop : .keep
            }
            try send(&wrote, all: true)
        }
        noteChange(collection) { $0.updated += result.modified }
        if result.matched == 0 && upsert {
            let doc = try Transaction.upsertDocument(filter: filter, update: update, collection: collection)
            result.upsertedID = try insert(.object(doc), into: collection)
        }
        return result
    }

    /// Writes new bodies by key, `batchSize` rows per statement.
    func updateBodies(_ c: PGCollection, _ changed: [(key: String, body: String)]) throws {
        if changed.count >= Self.copyThreshold { return try copyBodies(c, changed) }
        var start = 0
        while start < changed.count {
            let part = changed[start..<min(start + Self.batchSize, changed.count)]
            var params: [String?] = []
            var values: [String] = []
            for (i, row) in part.enumerated() {
                params += [row.key, row.body]
                values.append("($\(2 * i + 1), $\(2 * i + 2))")
            }
            // Straight to the connection: called with nothing pending (a
            // read just sent it all, or flush() is sending this).
            try connection.execute(
                "UPDATE \(c.table) AS t SET body = v.body FROM (VALUES \(values.joined(separator: ", "))) "
                    + "AS v(_id, body) WHERE t._id = v._id", params)
            start += Self.batchSize
        }
    }

    /// From this many rows on, new bodies go by `COPY` into a temporary
    /// table and one `UPDATE … FROM` it: one pass over the collection
    /// instead of one statement (planned, and an index probe per row) per
    /// `batchSize` rows.
    static let copyThreshold = 2000

    private func copyBodies(_ c: PGCollection, _ changed: [(key: String, body: String)]) throws {
        if !store.hasStagingTable {
            // Per session; emptied at every commit, and after each use.
            try connection.run(
                "CREATE TEMPORARY TABLE IF NOT EXISTS migrator_bodies (_id text COLLATE \"C\", body text) "
                    + "ON COMMIT DELETE ROWS")
            store.hasStagingTable = true
        }
        // In parts: a join with a million staged rows spilled to disk and
        // took 2.7× plain SQL; parts of 10,000 stay in memory.
        var data: [UInt8] = []
        var start = 0
        while start < changed.count {
            let part = changed[start..<min(start + Self.updateQueueSize, changed.count)]
            data.removeAll(keepingCapacity: true)
            for row in part {
                Connection.appendCopyField(row.key, to: &data)
                data.append(9)
                Connection.appendCopyField(row.body, to: &data)
                data.append(10)
            }
            try connection.copyIn("COPY migrator_bodies (_id, body) FROM STDIN", data)
            try connection.run(
                "UPDATE \(c.table) AS t SET body = b.body FROM migrator_bodies AS b WHERE t._id = b._id; "
                    + "TRUNCATE migrator_bodies")
            start += Self.updateQueueSize
        }
    }

    public func deleteMany(_ collection: String, filter: Filter) throws -> Int {
        try delete(collection, filter, one: false)
    }

    public func deleteOne(_ collection: String, filter: Filter) throws -> Int {
        try delete(collection, filter, one: true)
    }

    private func delete(_ collection: String, _ filter: Filter, one: Bool) throws -> Int {
        try writable(collection)
        guard let c = try self.collection(collection) else { return 0 }
        c.generation += 1
        if filter.matchesEverything && !one && !keepsPreImages {
            if !c.indexes.isEmpty { try sql("DELETE FROM \(c.entries)") }
            let n = try sql("DELETE FROM \(c.table)").affected
            noteChange(collection) { $0.deleted += n }
            return n
        }
        var keys: [String] = []
        try visitRaw(c, collection, filter) { key, bytes, _ in
            keys.append(key)
            notePreImage(collection, key: key, bytes: bytes)
            return one ? .stop : .keep
        }
        // By key, up to 10,000 a statement.
        try poisoning { wrote in
            var start = 0
            while start < keys.count {
                let part = Self.textArray(Array(keys[start..<min(start + Self.updateQueueSize, keys.count)]))
                wrote = true
                try sql("DELETE FROM \(c.table) WHERE _id = ANY($1::text[])", [part])
                if !c.indexes.isEmpty { try sql("DELETE FROM \(c.entries) WHERE _id = ANY($1::text[])", [part]) }
                start += Self.updateQueueSize
            }
        }
        noteChange(collection) { $0.deleted += keys.count }
        return keys.count
    }

    enum Visit { case keep, stop }

    /// Calls `body` with each document matching `filter`, in `_id` order,
    /// with its key. An `_id` equality reads its one row; anything else
    /// reads every row and asks ``Filter`` (exact by construction).
    private func visit(_ collection: String, _ filter: Filter, _ body: (String, JSON) throws -> Visit) throws {
        try usable()
        try Transaction.validate(collection)
        guard let c = try self.collection(collection) else { return }
        try visitRaw(c, collection, filter) { key, bytes, parsed in
            try body(key, try parsed ?? Self.parse(bytes, collection, key: key))
        }
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, _ collection: String, key: String) throws -> JSON {
        do { return try JSON(parsing: bytes) } catch {
            throw StoreError(
                .corrupted,
                "collection '\(collection)': the stored document with _id \(id(fromKey: key).serialized) is damaged")
        }
    }

    /// Each stored document of `c` matching `filter`, in `_id` order, as its
    /// key, stored bytes (valid during the call) and the parsed document if
    /// the filter needed it. Candidates come by primary key or index where
    /// the filter allows; a filter that matches everything parses nothing.
    private func visitRaw(
        _ c: PGCollection, _ collection: String, _ filter: Filter,
        _ body: (String, UnsafeRawBufferPointer, JSON?) throws -> Visit
    ) throws {
        func each(_ rows: Rows) throws -> Visit {
            for i in 0..<rows.count {
                guard let key = rows.text(i, 0), let bytes = rows.bytes(i, 1) else { continue }
                var parsed: JSON?
                if !filter.matchesEverything {
                    let doc = try Self.parse(bytes, collection, key: key)
                    guard filter.matches(doc) else { continue }
                    parsed = doc
                }
                if try body(key, bytes, parsed) == .stop { return .stop }
            }
            return .keep
        }
        if let id = filter.singlePrimaryKey, let key = try? Self.key(id) {
            _ = try each(try sql("SELECT _id, body FROM \(c.table) WHERE _id = $1", [key]))
            return
        }
        // Through a server-side cursor, a batch at a time: memory stays
        // bounded however large the collection, and the cursor sees the
        // collection as it was when declared, so `body` may write to it.
        let narrowed = candidates(c, filter, first: 1)
        let portal = portalName()
        try sql(
            "DECLARE \(portal) NO SCROLL CURSOR FOR SELECT _id, body FROM \(c.table) "
                + (narrowed.map { "WHERE \($0.condition) " } ?? "") + "ORDER BY _id", narrowed?.parameters ?? [])
        let declaredIn = epoch
        defer { if epoch == declaredIn, poison == nil { _ = try? connection.execute("CLOSE \(portal)") } }
        while true {
            let rows = try sql("FETCH \(Self.visitBatch) FROM \(portal)")
            if rows.count == 0 { return }
            if try each(rows) == .stop { return }
        }
    }

    /// Rows per `FETCH` of a visit.
    static let visitBatch = 5000

    // MARK: - Keys

    /// The `_id` column's text: order-preserving under `COLLATE "C"`.
    static func key(_ id: JSON) throws(StoreError) -> String {
        switch id {
        case .int(let i):
            let biased = UInt64(bitPattern: i) ^ (1 << 63)
            let hex = String(biased, radix: 16)
            return "i" + String(repeating: "0", count: 16 - hex.count) + hex
        case .string(let s):
            guard s.utf8.count <= 255 else {
                throw StoreError(.invalidDocument, "_id string is \(s.utf8.count) bytes; the limit is 255")
            }
            return "s" + s
        default:
            throw StoreError(
                .invalidDocument, "_id must be a string or an integer, not \(id.typeName) \(id.serialized)")
        }
    }
}
