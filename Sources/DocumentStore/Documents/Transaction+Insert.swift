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
        try writable(collection)
        // Fast path: text already in stored form is stored as given.
        if let s = try state(collection), s.indexes.isEmpty, let shape = CanonicalCheck.check(bytes),
            !shape.idElsewhere,
            let id = try insertCanonical(bytes, idRange: shape.idRange, into: s)
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
    private func insertCanonical(
        _ bytes: UnsafeRawBufferPointer, idRange: Range<Int>?, into s: CollectionState
    ) throws(StoreError) -> JSON? {
        let id: JSON
        keyBuffer.removeAll(keepingCapacity: true)
        keyBuffer.append(contentsOf: s.prefix)
        if let r = idRange {
            // CanonicalCheck vouched for the form: an integer of at most 18
            // digits, or a string without escapes.
            guard let parsed = Self.canonicalID(UnsafeRawBufferPointer(rebasing: bytes[r])),
                (try? KeyEncoding.appendID(parsed, to: &keyBuffer)) != nil
            else { return nil }
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
        if rc == MDB_KEYEXIST {
            throw StoreError(.duplicateKey, "collection '\(s.name)': duplicate _id \(id.serialized)")
        }
        try check(rc, "mdb_put")
        s.count += 1
        s.dirty = true
        s.generation += 1
        noteInserted(s, key: keyBuffer)
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
            if obj.fields.first?.key != "_id" {
                obj["_id"] = nil
                obj.prepend("_id", given)
            }
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
                for e in keys {
                    try e.key.bytes { ek throws(StoreError) in _ = try put(env.index, ek, idKey, flags: MDB_NODUPDATA) }
                }
            }
        }
        s.count += 1
        s.dirty = true
        s.generation += 1
        noteInserted(s, key: key)
        return id
    }

    /// Counts an insert of the document at `key` (with the collection prefix).
    private func noteInserted(_ s: CollectionState, key: [UInt8]) {
        guard changeTracker != nil else { return }
        noteChange(s.name) { $0.inserted += 1 }
        key.withUnsafeBytes { k in notePreImage(s, idKey: UnsafeRawBufferPointer(rebasing: k[4...]), bytes: nil) }
    }
}
