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
            throw StoreError(
                .invalidDocument,
                "collection '\(collection)': a document must be a JSON object, not \(document.typeName)")
        }
        guard document.nestingDepth <= JSONParser.maxDepth else {
            throw StoreError(
                .invalidDocument,
                "collection '\(collection)': the document nests deeper than \(JSONParser.maxDepth) levels")
        }
        guard let s = try state(collection, create: true) else { return .null }
        return try insert(&obj, into: s)
    }

    /// Parses JSON text and inserts it; see ``insert(_:into:)``.
    @discardableResult
    public func insert(json bytes: UnsafeRawBufferPointer, into collection: String) throws(StoreError) -> JSON {
        try insert(json: bytes, into: collection, returningID: true)
    }

    /// ``insert(json:into:)``; with `returningID` false the result is
    /// `.null`, which spares building the id for callers that drop it.
    public func insert(
        json bytes: UnsafeRawBufferPointer, into collection: String, returningID: Bool
    ) throws(StoreError) -> JSON {
        try writable(collection)
        // Fast path: text already in stored form is stored as given.
        if let s = try state(collection), s.indexes.isEmpty, let shape = CanonicalCheck.check(bytes),
            !shape.idElsewhere,
            let id = try insertCanonical(bytes, idRange: shape.idRange, into: s, returningID: returningID)
        {
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
    ///
    /// The per-document hot path of bulk loads and fan-outs: the key (and,
    /// for a generated id, the value) is built on the stack and handed to
    /// `mdb_put` directly; nothing is allocated.
    private func insertCanonical(
        _ bytes: UnsafeRawBufferPointer, idRange: Range<Int>?, into s: CollectionState, returningID: Bool
    ) throws(StoreError) -> JSON? {
        let keyCapacity = 4 + 1 + KeyEncoding.maxIDBytes
        // `{"_id":"` id `",` then the rest of the text after its `{`.
        let valueCapacity = idRange == nil ? 8 + ObjectID.length + 2 + bytes.count : 0
        let docs = env.docs
        let tracking = changeTracker != nil
        let outcome: (rc: Int32, id: JSON)? = withUnsafeTemporaryAllocation(
            byteCount: keyCapacity + valueCapacity, alignment: 8
        ) { buffer in
            guard let base = buffer.baseAddress, let text = bytes.baseAddress else { return nil }
            base.storeBytes(of: s.id.bigEndian, as: UInt32.self)
            var keyLength = 4
            func put(_ value: UnsafeRawPointer, _ count: Int, _ flags: Int32) -> Int32 {
                var k = MDB_val(mv_size: keyLength, mv_data: base)
                var v = MDB_val(mv_size: count, mv_data: UnsafeMutableRawPointer(mutating: value))
                return mdb_put(txn, docs, &k, &v, UInt32(flags))
            }
            var rc: Int32
            if let r = idRange {
                // CanonicalCheck vouched for the form: an integer of at most 18
                // digits, or a string without escapes.
                guard let n = KeyEncoding.writeCanonicalID(UnsafeRawBufferPointer(rebasing: bytes[r]), to: base + 4)
                else { return nil }
                keyLength += n
                rc = put(text, bytes.count, MDB_NOOVERWRITE)
            } else {
                base.storeBytes(of: KeyEncoding.stringTag, toByteOffset: 4, as: UInt8.self)
                ObjectID.write(into: base + 5)
                keyLength += 1 + ObjectID.length
                let value = base + keyCapacity
                var n = 0
                func emit(_ p: UnsafeRawPointer, _ count: Int) {
                    (value + n).copyMemory(from: p, byteCount: count)
                    n += count
                }
                let open: StaticString = #"{"_id":""#
                emit(open.utf8Start, open.utf8CodeUnitCount)
                emit(base + 5, ObjectID.length)
                value.storeBytes(of: UInt8(ascii: "\""), toByteOffset: n, as: UInt8.self)
                n += 1
                if bytes.count > 2 {
                    value.storeBytes(of: UInt8(ascii: ","), toByteOffset: n, as: UInt8.self)
                    n += 1
                }
                emit(text + 1, bytes.count - 1)
                rc = MDB_KEYEXIST
                if s.appendGeneratedIDs {
                    // MDB_APPEND refuses (MDB_KEYEXIST) a key that is not last: then
                    // the ordinary put decides, and this collection stops trying.
                    rc = put(value, n, MDB_APPEND)
                    if rc == MDB_KEYEXIST { s.appendGeneratedIDs = false }
                }
                if rc == MDB_KEYEXIST { rc = put(value, n, MDB_NOOVERWRITE) }
            }
            let key = UnsafeRawBufferPointer(start: base, count: keyLength)
            if rc == MDB_SUCCESS && tracking { noteInserted(s, key: key) }
            let wanted = returningID || rc == MDB_KEYEXIST
            return (rc, wanted ? KeyEncoding.decodeID(UnsafeRawBufferPointer(rebasing: key[4...])) : .null)
        }
        guard let outcome else { return nil }
        if outcome.rc == MDB_KEYEXIST {
            throw StoreError(.duplicateKey, "collection '\(s.name)': duplicate _id \(outcome.id.serialized)")
        }
        try check(outcome.rc, "mdb_put")
        s.count += 1
        s.dirty = true
        s.generation += 1
        return outcome.id
    }

    func insert(_ obj: inout JSONObject, into s: CollectionState) throws(StoreError) -> JSON {
        let id = obj.placeID()
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
                for e in keys {
                    try e.key.bytes { ek throws(StoreError) in _ = try put(env.index, ek, idKey, flags: MDB_NODUPDATA) }
                }
            }
        }
        s.count += 1
        s.dirty = true
        s.generation += 1
        key.withUnsafeBytes { noteInserted(s, key: $0) }
        return id
    }

    /// Counts an insert of the document at `key` (with the collection prefix).
    private func noteInserted(_ s: CollectionState, key: UnsafeRawBufferPointer) {
        guard changeTracker != nil else { return }
        noteChange(s.name) { $0.inserted += 1 }
        notePreImage(s, idKey: UnsafeRawBufferPointer(rebasing: key[4...]), bytes: nil)
    }
}

extension JSONObject {
    /// Puts `_id` first, as every stored document has it, generating an
    /// ObjectId when there is none; returns the `_id`.
    public mutating func placeID() -> JSON {
        guard let given = self["_id"] else {
            let id = JSON.string(ObjectID.generate())
            prepend("_id", id)
            return id
        }
        if fields.first?.key != "_id" {
            self["_id"] = nil
            prepend("_id", given)
        }
        return given
    }
}
