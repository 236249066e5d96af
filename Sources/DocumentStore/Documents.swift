import CLMDB

extension Transaction {
    // MARK: - Insert

    /// Inserts a document (a JSON object) and returns its `_id`.
    ///
    /// Without `_id`, an ObjectId-style id is generated. `_id` is stored
    /// first. A collection that does not exist is created. An `_id` or
    /// unique-index value that exists fails with
    /// ``StoreError/Code/duplicateKey`` and writes nothing.
    @discardableResult
    public func insert(_ document: JSON, into collection: String) throws(StoreError) -> JSON {
        try writable(collection)
        guard case .object(var obj) = document else {
            throw StoreError(.invalidDocument, "collection '\(collection)': a document must be a JSON object, not \(document.typeName)")
        }
        guard document.nestingDepth <= JSONParser.maxDepth else {
            throw StoreError(.invalidDocument, "collection '\(collection)': the document nests deeper than \(JSONParser.maxDepth) levels")
        }
        guard let s = try state(collection, create: true) else { return .null }
        return try insert(&obj, into: s)
    }

    /// Parses JSON text and inserts it; see ``insert(_:into:)``.
    @discardableResult
    public func insert(json bytes: UnsafeRawBufferPointer, into collection: String) throws(StoreError) -> JSON {
        try writable(collection)
        // Fast path: text already in stored form is stored as given.
        if let s = try state(collection), s.indexes.isEmpty, let shape = CanonicalCheck.check(bytes), !shape.idElsewhere,
           let id = try insertCanonical(bytes, idRange: shape.idRange, into: s) {
            return id
        }
        let doc: JSON
        do { doc = try JSONParser.parse(bytes) } catch {
            throw StoreError(.invalidJSON, "collection '\(collection)': \(error.message)")
        }
        return try insert(doc, into: collection)
    }

    /// Stores canonical text without parsing it into a tree. Returns nil
    /// (nothing written) when the `_id` is not a string or integer, so that
    /// the full path reports the error.
    private func insertCanonical(_ bytes: UnsafeRawBufferPointer, idRange: Range<Int>?, into s: CollectionState) throws(StoreError) -> JSON? {
        let id: JSON
        keyBuffer.removeAll(keepingCapacity: true)
        keyBuffer.append(contentsOf: s.prefix)
        if let r = idRange {
            // CanonicalCheck vouched for the form: an integer of at most 18
            // digits, or a string without escapes.
            guard let parsed = Self.canonicalID(UnsafeRawBufferPointer(rebasing: bytes[r])),
                  (try? KeyEncoding.appendID(parsed, to: &keyBuffer)) != nil else { return nil }
            id = parsed
        } else {
            let generated = ObjectID.generate()
            id = .string(generated)
            try KeyEncoding.appendID(id, to: &keyBuffer)
            valueBuffer.removeAll(keepingCapacity: true)
            valueBuffer.append(contentsOf: #"{"_id":""#.utf8)
            valueBuffer.append(contentsOf: generated.utf8)
            valueBuffer.append(UInt8(ascii: "\""))
            if bytes.count > 2 { valueBuffer.append(UInt8(ascii: ",")) }
            valueBuffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[1...]))
        }
        // mdb_put directly: this is the per-document hot path of bulk loads.
        func putNew(_ value: UnsafeRawBufferPointer, _ flags: Int32) -> Int32 {
            keyBuffer.withUnsafeBytes { k in
                var mk = MDB_val(k)
                var mv = MDB_val(value)
                return mdb_put(txn, env.docs, &mk, &mv, UInt32(flags))
            }
        }
        var rc: Int32
        if idRange != nil {
            rc = putNew(bytes, MDB_NOOVERWRITE)
        } else {
            rc = MDB_KEYEXIST
            if s.appendGeneratedIDs {
                // MDB_APPEND refuses (MDB_KEYEXIST) a key that is not last: then
                // the ordinary put decides, and this collection stops trying.
                rc = valueBuffer.withUnsafeBytes { putNew($0, MDB_APPEND) }
                if rc == MDB_KEYEXIST { s.appendGeneratedIDs = false }
            }
            if rc == MDB_KEYEXIST { rc = valueBuffer.withUnsafeBytes { putNew($0, MDB_NOOVERWRITE) } }
        }
        if rc == MDB_KEYEXIST { throw StoreError(.duplicateKey, "collection '\(s.name)': duplicate _id \(id.serialized)") }
        try check(rc, "mdb_put")
        s.count += 1
        s.dirty = true
        s.generation += 1
        return id
    }

    /// The `_id` value of canonical text: an integer or an escape-free string.
    static func canonicalID(_ b: UnsafeRawBufferPointer) -> JSON? {
        guard let first = b.first else { return nil }
        if first == UInt8(ascii: "\""), b.count >= 2 {
            return .string(String(decoding: UnsafeRawBufferPointer(rebasing: b[1..<(b.count - 1)]), as: UTF8.self))
        }
        guard first == UInt8(ascii: "-") || (first >= 48 && first <= 57) else { return nil }
        var v: Int64 = 0
        for c in b where c != UInt8(ascii: "-") { v = v * 10 + Int64(c - 48) }
        return .int(first == UInt8(ascii: "-") ? -v : v)
    }

    func insert(_ obj: inout JSONObject, into s: CollectionState) throws(StoreError) -> JSON {
        let id: JSON
        if let given = obj["_id"] {
            id = given
            if obj.fields.first?.key != "_id" { obj["_id"] = nil; obj.prepend("_id", given) }
        } else {
            id = .string(ObjectID.generate())
            obj.prepend("_id", id)
        }
        keyBuffer.removeAll(keepingCapacity: true)
        keyBuffer.append(contentsOf: s.prefix)
        do { try KeyEncoding.appendID(id, to: &keyBuffer) } catch {
            throw StoreError(error.code, "collection '\(s.name)': \(error.message)")
        }
        valueBuffer.removeAll(keepingCapacity: true)
        JSONSerializer.write(.object(obj), into: &valueBuffer)

        let entries = s.indexes.map { ($0, indexKeys(.object(obj), $0)) }
        let key = keyBuffer
        try key.bytes { k throws(StoreError) in
            let idKey = UnsafeRawBufferPointer(rebasing: k[4...])
            for (spec, keys) in entries where spec.unique {
                for e in keys { try checkUnique(s, spec, e, idKey: idKey) }
            }
            let fresh = try valueBuffer.bytes { v throws(StoreError) in
                try put(env.docs, k, v, flags: MDB_NOOVERWRITE)
            }
            guard fresh else {
                throw StoreError(.duplicateKey, "collection '\(s.name)': duplicate _id \(id.serialized)")
            }
            for (_, keys) in entries {
                for e in keys { try e.key.bytes { ek throws(StoreError) in _ = try put(env.index, ek, idKey, flags: MDB_NODUPDATA) } }
            }
        }
        s.count += 1
        s.dirty = true
        s.generation += 1
        return id
    }

    // MARK: - Index entries

    struct IndexEntry { var key: [UInt8]; var value: JSON }

    /// The index keys of `doc` for `spec`: one per value the path reaches,
    /// plus one per element of an array value (a multikey index).
    func indexKeys(_ doc: JSON, _ spec: IndexSpec) -> [IndexEntry] {
        var out: [IndexEntry] = []
        func add(_ v: JSON) {
            var k: [UInt8] = []
            KeyEncoding.appendBigEndian(spec.id, to: &k)
            KeyEncoding.appendValueKey(v, to: &k)
            if !out.contains(where: { $0.key == k }) { out.append(IndexEntry(key: k, value: v)) }
        }
        for v in spec.path.values(in: doc) {
            add(v)
            if case .array(let items) = v { items.forEach(add) }
        }
        return out
    }

    func checkUnique(_ s: CollectionState, _ spec: IndexSpec, _ entry: IndexEntry, idKey: UnsafeRawBufferPointer) throws(StoreError) {
        let found = try entry.key.bytes { ek throws(StoreError) in try get(env.index, ek) }
        guard let found, !found.elementsEqual(idKey) else { return }
        throw StoreError(.duplicateKey,
                         "collection '\(s.name)': unique index on '\(spec.path)' already holds \(entry.value.serialized) for _id \(KeyEncoding.decodeID(found).serialized), so _id \(KeyEncoding.decodeID(idKey).serialized) cannot have it")
    }

    /// Moves a document's index entries from `old` to `new`, checking
    /// unique indexes before anything is written.
    func reindex(_ s: CollectionState, _ specs: [IndexSpec], idKey: UnsafeRawBufferPointer, old: JSON?, new: JSON?) throws(StoreError) {
        var plans: [(removed: [IndexEntry], added: [IndexEntry])] = []
        for spec in specs {
            let before = old.map { indexKeys($0, spec) } ?? []
            let after = new.map { indexKeys($0, spec) } ?? []
            let removed = before.filter { b in !after.contains { $0.key == b.key } }
            let added = after.filter { a in !before.contains { $0.key == a.key } }
            if spec.unique { for e in added { try checkUnique(s, spec, e, idKey: idKey) } }
            plans.append((removed, added))
        }
        for (removed, added) in plans {
            for e in removed { try e.key.bytes { ek throws(StoreError) in _ = try del(env.index, ek, idKey) } }
            for e in added { try e.key.bytes { ek throws(StoreError) in _ = try put(env.index, ek, idKey, flags: MDB_NODUPDATA) } }
        }
    }

    func parseStored(_ s: CollectionState, _ bytes: UnsafeRawBufferPointer, idKey: UnsafeRawBufferPointer) throws(StoreError) -> JSONObject {
        if let v = try? JSONParser.parse(bytes), case .object(let o) = v { return o }
        throw StoreError(.corrupted, "\(env.path): collection '\(s.name)': the stored document with _id \(KeyEncoding.decodeID(idKey).serialized) is damaged")
    }

    // MARK: - Planning

    /// How a filter's candidates are found when not by a scan: `_id`
    /// equality reads the primary keys; other equality uses an index.
    struct KeyAccess {
        let path: FieldPath
        /// nil for `_id`.
        let spec: IndexSpec?
        let values: [JSON]
    }

    /// The cheapest key access that serves `filter`, if any.
    func plan(_ s: CollectionState, _ filter: Filter) -> KeyAccess? {
        var options: [KeyAccess] = []
        for (path, values) in filter.indexableEqualities() {
            if path.components == ["_id"] {
                options.append(KeyAccess(path: path, spec: nil, values: values))
            } else if let spec = s.indexes.first(where: { $0.path == path }) {
                options.append(KeyAccess(path: path, spec: spec, values: values))
            }
        }
        // Primary key first, then unique indexes, then fewest keys.
        func rank(_ a: KeyAccess) -> (Int, Int) { (a.spec == nil ? 0 : a.spec?.unique == true ? 1 : 2, a.values.count) }
        return options.min { rank($0) < rank($1) }
    }

    /// Describes how `find`, `count`, `update` and `delete` would run `filter`.
    public func explain(_ collection: String, filter: Filter = .all) throws(StoreError) -> QueryPlan {
        try usable()
        guard let s = try state(collection), let access = plan(s, filter) else {
            return QueryPlan(kind: .collectionScan)
        }
        if access.spec == nil { return QueryPlan(kind: .primaryKey(keys: access.values.count)) }
        return QueryPlan(kind: .indexLookup(path: access.path.description, keys: access.values.count))
    }

    /// Full document keys (collection prefix + `_id` key) that may match,
    /// sorted and without duplicates.
    func candidateKeys(_ s: CollectionState, _ access: KeyAccess) throws(StoreError) -> [[UInt8]] {
        var out: [[UInt8]] = []
        if access.spec == nil {
            for v in access.values {
                var id = v
                if case .double(let d) = v, let i = Int64(exactly: d) { id = .int(i) }
                var key = s.prefix
                // Values that cannot be an _id match nothing.
                if (try? KeyEncoding.appendID(id, to: &key)) != nil { out.append(key) }
            }
        } else if let spec = access.spec {
            let c = try openCursor(env.index)
            defer { mdb_cursor_close(c) }
            for v in access.values {
                var key: [UInt8] = []
                KeyEncoding.appendBigEndian(spec.id, to: &key)
                KeyEncoding.appendValueKey(v, to: &key)
                var k = MDB_val(), d = MDB_val()
                var rc = key.withUnsafeBytes { kb in
                    k = MDB_val(kb)
                    return mdb_cursor_get(c, &k, &d, MDB_SET)
                }
                while rc == 0 {
                    var full = s.prefix
                    full.append(contentsOf: UnsafeRawBufferPointer(start: d.mv_data, count: d.mv_size))
                    out.append(full)
                    rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP)
                }
                if rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get") }
            }
        }
        if out.count > 1 {
            out.sort { $0.lexicographicallyPrecedes($1) }
            var unique: [[UInt8]] = []
            for k in out where unique.last != k { unique.append(k) }
            out = unique
        }
        return out
    }

    // MARK: - Visiting matches

    enum VisitAction { case keep, stop, replaceWithValueBuffer, delete }

    /// Calls `body` for each document matching `filter`, in `_id` order,
    /// then performs the document write it asks for. `doc` is the parsed
    /// document if the filter needed it, else nil.
    func visit(_ s: CollectionState, _ filter: Filter,
               _ body: (_ idKey: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer, _ doc: inout JSONObject?) throws(StoreError) -> VisitAction) throws(StoreError) {
        // One document by its full key; true to stop. `exact`: the key
        // lookup alone proves the match, so the document is not parsed.
        func visitKey(_ kb: UnsafeRawBufferPointer, exact: Bool) throws(StoreError) -> Bool {
            guard let bytes = try get(env.docs, kb) else { return false }
            let idKey = UnsafeRawBufferPointer(rebasing: kb[4...])
            var doc: JSONObject?
            if !exact {
                let d = try parseStored(s, bytes, idKey: idKey)
                guard filter.matches(.object(d)) else { return false }
                doc = d
            }
            switch try body(idKey, bytes, &doc) {
            case .keep: return false
            case .stop: return true
            case .delete: try del(env.docs, kb)
            case .replaceWithValueBuffer:
                try valueBuffer.bytes { v throws(StoreError) in _ = try put(env.docs, kb, v) }
            }
            s.generation += 1
            return false
        }
        // `{"_id": v}`, the per-document loop's filter: straight to the key.
        if let id = filter.singlePrimaryKey {
            var key = s.prefix
            guard (try? KeyEncoding.appendID(id, to: &key)) != nil else { return }
            _ = try key.bytes { kb throws(StoreError) in try visitKey(kb, exact: true) }
            return
        }
        if let access = plan(s, filter) {
            // Found by primary key on a filter that says nothing else: it
            // matches without being parsed (the body parses only if it must).
            let exact = access.spec == nil && filter.isPrimaryKeyExact
            for key in try candidateKeys(s, access) {
                if try key.bytes({ kb throws(StoreError) in try visitKey(kb, exact: exact) }) { return }
            }
            return
        }
        let c = try openCursor(env.docs)
        defer { mdb_cursor_close(c) }
        var k = MDB_val(), v = MDB_val()
        var rc = s.prefix.withUnsafeBytes { p in
            k = MDB_val(p)
            return mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
        }
        let everything = filter.matchesEverything
        while rc == 0 {
            let pageKey = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
            guard pageKey.count > 4, pageKey.starts(with: s.prefix) else { break }
            // LMDB's key and value point into a page and are valid only until
            // the next write (lmdb.h): the body writes index entries and the
            // node may move. Copy the key first; the body reads the value
            // before it writes anything.
            scanKey.removeAll(keepingCapacity: true)
            scanKey.append(contentsOf: pageKey)
            let bytes = UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
            let action = try scanKey.bytes { key throws(StoreError) -> VisitAction in
                let idKey = UnsafeRawBufferPointer(rebasing: key[4...])
                var doc: JSONObject?
                if !everything {
                    let d = try parseStored(s, bytes, idKey: idKey)
                    guard filter.matches(.object(d)) else { return .keep }
                    doc = d
                }
                let action = try body(idKey, bytes, &doc)
                if case .replaceWithValueBuffer = action {
                    try valueBuffer.bytes { nb throws(StoreError) in
                        var ck = MDB_val(key)
                        var nv = MDB_val(nb)
                        try check(mdb_cursor_put(c, &ck, &nv, UInt32(MDB_CURRENT)), "mdb_cursor_put")
                    }
                }
                return action
            }
            switch action {
            case .keep: break
            case .stop: return
            case .delete:
                try check(mdb_cursor_del(c, 0), "mdb_cursor_del")
                s.generation += 1
            case .replaceWithValueBuffer:
                s.generation += 1
            }
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)
        }
        if rc != 0 && rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get") }
    }

    /// Runs a multi-document write; if it fails after changing something,
    /// the transaction is poisoned so that it can only be aborted.
    func poisoning<R>(_ body: (inout Bool) throws(StoreError) -> R) throws(StoreError) -> R {
        var changed = false
        do { return try body(&changed) } catch {
            if changed { poison = error }
            throw error
        }
    }

    // MARK: - Find and count

    /// Documents matching `filter`, in `_id` order unless `options.sort` is set.
    /// The cursor is valid until the transaction ends.
    public func find(_ collection: String, filter: Filter = .all, options: FindOptions = FindOptions()) throws(StoreError) -> DocumentCursor {
        try usable()
        try Self.validate(collection)
        let c = try DocumentCursor(txn: self, collection: collection, state: try state(collection), filter: filter, options: options)
        // Loops of find + close must not grow the list without bound.
        if cursors.count >= 64 { cursors.removeAll { $0.cursor?.isClosed ?? true } }
        cursors.append(c.handle)
        return c
    }

    /// The number of documents matching `filter`; `{}` reads no document.
    public func count(_ collection: String, filter: Filter = .all) throws(StoreError) -> Int {
        try usable()
        try Self.validate(collection)
        guard let s = try state(collection) else { return 0 }
        if filter.matchesEverything { return Int(s.count) }
        var n = 0
        try visit(s, filter) { _, _, _ throws(StoreError) in n += 1; return .keep }
        return n
    }

    /// The first document matching `filter`, or nil.
    public func findOne(_ collection: String, filter: Filter = .all) throws(StoreError) -> JSON? {
        let c = try find(collection, filter: filter, options: FindOptions(limit: 1))
        defer { c.close() }
        return try c.next()
    }

    // MARK: - Update

    /// Updates every document matching `filter`.
    /// With `upsert` and no match, inserts one document built from the
    /// filter's equality fields with the update applied.
    @discardableResult
    public func updateMany(_ collection: String, filter: Filter, update: Update, upsert: Bool = false) throws(StoreError) -> UpdateResult {
        try performUpdate(collection, filter, update, upsert: upsert, one: false)
    }

    /// Updates the first document (in `_id` order) matching `filter`.
    @discardableResult
    public func updateOne(_ collection: String, filter: Filter, update: Update, upsert: Bool = false) throws(StoreError) -> UpdateResult {
        try performUpdate(collection, filter, update, upsert: upsert, one: true)
    }

    private func performUpdate(_ collection: String, _ filter: Filter, _ update: Update, upsert: Bool, one: Bool) throws(StoreError) -> UpdateResult {
        try writable(collection)
        var result = UpdateResult(matched: 0, modified: 0, upsertedID: nil)
        guard let s = try state(collection, create: upsert) else { return result }
        let affected: [IndexSpec]
        if let touched = update.touchedPaths {
            affected = s.indexes.filter { spec in touched.contains { $0.overlaps(spec.path) } }
        } else {
            affected = s.indexes
        }
        let splice = affected.isEmpty ? update.topLevelSets.flatMap { $0.count == 1 ? $0[0] : nil } : nil
        try poisoning { changed throws(StoreError) in
            try visit(s, filter) { idKey, bytes, doc throws(StoreError) in
                if one && result.matched == 1 { return .stop }
                result.matched += 1
                if let (key, value) = splice {
                    let differs = key.withUnsafeBytes { kb in
                        value.withUnsafeBytes { vb in RawDocument.set(quotedKey: kb, value: vb, in: bytes, into: &valueBuffer) }
                    }
                    guard differs else { return .keep }
                } else {
                    let old = try doc.orParse { () throws(StoreError) in try parseStored(s, bytes, idKey: idKey) }
                    var new = old
                    do throws(StoreError) { try update.apply(to: &new) } catch {
                        throw StoreError(error.code, "collection '\(s.name)', _id \(KeyEncoding.decodeID(idKey).serialized): \(error.message)")
                    }
                    valueBuffer.removeAll(keepingCapacity: true)
                    JSONSerializer.write(.object(new), into: &valueBuffer)
                    if bytes.elementsEqual(valueBuffer) { return .keep }
                    try reindex(s, affected, idKey: idKey, old: .object(old), new: .object(new))
                }
                result.modified += 1
                changed = true
                return .replaceWithValueBuffer
            }
        }
        if result.matched == 0 && upsert {
            var obj = JSONObject()
            Self.seed(&obj, from: filter.root)
            do { try update.apply(to: &obj) } catch {
                throw StoreError(error.code, "collection '\(s.name)', upsert: \(error.message)")
            }
            result.upsertedID = try insert(&obj, into: s)
        }
        if result.modified > 0 { s.dirty = true }
        return result
    }

    /// Copies a filter's plain equality fields into an upserted document.
    static func seed(_ obj: inout JSONObject, from node: Filter.Node) {
        switch node {
        case .and(let subs): for n in subs { seed(&obj, from: n) }
        case .field(let path, let preds):
            for case .eq(let v) in preds {
                var root = JSON.object(obj)
                try? Update.apply(.set(path, v), to: &root)
                if case .object(let o) = root { obj = o }
            }
        default: break
        }
    }

    // MARK: - Delete

    /// Deletes every document matching `filter`; returns how many.
    @discardableResult
    public func deleteMany(_ collection: String, filter: Filter) throws(StoreError) -> Int {
        try delete(collection, filter, one: false)
    }

    /// Deletes the first document (in `_id` order) matching `filter`.
    @discardableResult
    public func deleteOne(_ collection: String, filter: Filter) throws(StoreError) -> Int {
        try delete(collection, filter, one: true)
    }

    private func delete(_ collection: String, _ filter: Filter, one: Bool) throws(StoreError) -> Int {
        try writable(collection)
        guard let s = try state(collection) else { return 0 }
        var n = 0
        try poisoning { changed throws(StoreError) in
            try visit(s, filter) { idKey, bytes, doc throws(StoreError) in
                if one && n == 1 { return .stop }
                if !s.indexes.isEmpty {
                    let old = try doc.orParse { () throws(StoreError) in try parseStored(s, bytes, idKey: idKey) }
                    try reindex(s, s.indexes, idKey: idKey, old: .object(old), new: nil)
                }
                n += 1
                changed = true
                return .delete
            }
        }
        if n > 0 {
            s.count -= Int64(n)
            s.dirty = true
        }
        return n
    }

    // MARK: - Indexes

    /// Creates a secondary index on a dotted path, built over existing
    /// documents. Returns false if an identical index exists. A unique
    /// violation names the two conflicting `_id`s and leaves nothing behind.
    @discardableResult
    public func createIndex(_ collection: String, path: String, unique: Bool = false) throws(StoreError) -> Bool {
        try writable(collection)
        let fieldPath: FieldPath
        do { fieldPath = try FieldPath(path) } catch {
            throw StoreError(error.code, "collection '\(collection)': cannot index \(error.message)")
        }
        if path == "_id" { throw StoreError(.invalidName, "collection '\(collection)': _id is always indexed") }
        guard let s = try state(collection, create: true) else { return false }
        if let existing = s.indexes.first(where: { $0.path == fieldPath }) {
            if existing.unique == unique { return false }
            throw StoreError(.indexExists, "collection '\(collection)': an index on '\(path)' exists with unique=\(existing.unique)")
        }
        let spec = IndexSpec(id: try nextID(), path: fieldPath, unique: unique)
        // A top-level path reads just its value from the stored bytes.
        var quotedKey: [UInt8]?
        if fieldPath.components.count == 1 {
            var q: [UInt8] = []
            JSONSerializer.writeString(fieldPath.components[0], into: &q)
            quotedKey = q
        }
        do {
            try visit(s, .all) { idKey, bytes, _ throws(StoreError) in
                let doc: JSON
                if let quotedKey {
                    let range = quotedKey.withUnsafeBytes { RawDocument.findValue(ofQuotedKey: $0, in: bytes) }
                    guard let range else { return .keep }
                    guard let value = try? JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[range])) else {
                        _ = try parseStored(s, bytes, idKey: idKey)  // reports the damage
                        return .keep
                    }
                    doc = .object(JSONObject(uniqueFields: [(fieldPath.components[0], value)]))
                } else {
                    doc = .object(try parseStored(s, bytes, idKey: idKey))
                }
                try reindex(s, [spec], idKey: idKey, old: nil, new: doc)
                return .keep
            }
        } catch {
            try deleteIndexEntries(spec)
            throw error
        }
        s.indexes.append(spec)
        s.dirty = true
        return true
    }

    /// Drops the index on `path`.
    public func dropIndex(_ collection: String, path: String) throws(StoreError) {
        try writable(collection)
        let s = try existingState(collection)
        guard let i = s.indexes.firstIndex(where: { $0.path.description == path }) else {
            throw StoreError(.indexNotFound, "collection '\(collection)' has no index on '\(path)'")
        }
        try deleteIndexEntries(s.indexes[i])
        s.indexes.remove(at: i)
        s.dirty = true
    }

    func deleteIndexEntries(_ spec: IndexSpec) throws(StoreError) {
        var prefix: [UInt8] = []
        KeyEncoding.appendBigEndian(spec.id, to: &prefix)
        try deleteRange(env.index, prefix: prefix)
    }

    /// The secondary indexes of a collection (`_id` is implicit).
    public func indexes(_ collection: String) throws(StoreError) -> [IndexInfo] {
        try usable()
        return try existingState(collection).indexes.map { IndexInfo(path: $0.path.description, unique: $0.unique) }
    }
}

extension Optional where Wrapped == JSONObject {
    /// `??` for a typed-throwing fallback.
    func orParse(_ parse: () throws(StoreError) -> JSONObject) throws(StoreError) -> JSONObject {
        if let self { return self }
        return try parse()
    }
}
