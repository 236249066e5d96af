import CLMDB

extension Transaction {
    // MARK: - Visiting matches

    enum VisitAction { case keep, stop, replaceWithValueBuffer, delete }

    /// Calls `body` for each document matching `filter`, in `_id` order,
    /// then performs the document write it asks for. `doc` is the parsed
    /// document if the filter needed it, else nil.
    func visit(
        _ s: CollectionState, _ filter: Filter,
        _ body: (_ idKey: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer, _ doc: inout JSONObject?)
            throws(StoreError) -> VisitAction
    ) throws(StoreError) {
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
            let exact = access.index == nil && filter.isPrimaryKeyExact
            for key in try candidateKeys(s, access) {
                if try key.bytes({ kb throws(StoreError) in try visitKey(kb, exact: exact) }) { return }
            }
            return
        }
        let c = try openCursor(env.docs)
        defer { mdb_cursor_close(c) }
        var k = MDB_val()
        var v = MDB_val()
        var rc = seekFirstDocument(c, of: s, &k, &v)
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
}

extension Optional where Wrapped == JSONObject {
    /// `??` for a typed-throwing fallback.
    func orParse(_ parse: () throws(StoreError) -> JSONObject) throws(StoreError) -> JSONObject {
        if let self { return self }
        return try parse()
    }
}
