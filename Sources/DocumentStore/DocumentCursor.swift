import CLMDB

/// Iterates the documents of a ``Transaction/find(_:filter:options:)``.
///
/// - Documents come in `_id` order (or `sort` order).
/// - Documents may be updated or deleted through the same transaction while
///   the cursor is open: each document present when the cursor opened is
///   visited at most once, and deleted ones are not visited. Documents
///   inserted with an `_id` beyond the last one at opening are not visited.
/// - The cursor closes when its transaction ends; later use throws
///   ``StoreError/Code/cursorClosed``.
public final class DocumentCursor {
    /// Lets the transaction close cursors it handed out.
    final class Handle {
        weak var cursor: DocumentCursor?
        func close() { cursor?.close() }
    }

    private enum Source {
        case empty
        case scan
        case keys([[UInt8]], next: Int)
        case sorted([[UInt8]], next: Int)
    }

    unowned let txn: Transaction
    /// The collection, for messages.
    public let collection: String
    let state: CollectionState?
    let filter: Filter
    let options: FindOptions
    let handle = Handle()
    // The per-document state below is `@exclusivity(unchecked)`: it is
    // private, touched only by this class's own non-reentrant methods, and
    // the run-time exclusivity checks were a fifth of a scan step's cost.
    @exclusivity(unchecked) private var source: Source
    private var lmdbCursor: OpaquePointer?
    /// The collection's last key when the scan began, where it stops.
    private let upperBoundStorage = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 8)
    private var upperBoundCount = 0
    /// Where a scan starts: the collection's first key, or past a lower
    /// bound on `_id` (`{"_id": {"$gt": …}}`, the resume-from-token loop).
    private var startKey: [UInt8] = []
    private var startExclusive = false
    /// The key (collection prefix included) of the document last returned,
    /// in storage the cursor owns: LMDB keys are at most 511 bytes.
    private let lastKeyStorage = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 8)
    @exclusivity(unchecked) private var lastKeyCount = 0
    private var lastKey: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: lastKeyStorage, count: lastKeyCount) }
    @exclusivity(unchecked) private var generation = -1
    @exclusivity(unchecked) private var started = false
    @exclusivity(unchecked) private var skipped = 0
    @exclusivity(unchecked) private var returned = 0
    private var projected: [UInt8] = []
    /// Whether `lastKey` names a document `nextRaw` returned that is still there.
    @exclusivity(unchecked) private var hasCurrent = false
    /// Owned storage for the bytes `nextRaw` returns when it must build them
    /// (projections): a pointer into an Array must not outlive the access.
    private var output = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    @exclusivity(unchecked) private(set) public var isClosed = false

    init(
        txn: Transaction, collection: String, state: CollectionState?, filter: Filter, options: FindOptions
    ) throws(StoreError) {
        self.txn = txn
        self.collection = collection
        self.state = state
        self.filter = filter
        self.options = options
        source = .empty
        handle.cursor = self
        guard let s = state else { return }
        if let access = txn.plan(s, filter) {
            source = .keys(try txn.candidateKeys(s, access), next: 0)
        } else {
            source = .scan
            startKey = s.prefix
            if let (bound, inclusive) = filter.idLowerBound(), (try? KeyEncoding.appendID(bound, to: &startKey)) != nil
            {
                startExclusive = !inclusive
            } else {
                startKey = s.prefix
            }
            let c = try txn.openCursor(txn.env.docs)
            lmdbCursor = c
            // The last key of the collection now is where the scan stops.
            var end = s.prefix
            end.append(0xFF)
            var k = MDB_val()
            var v = MDB_val()
            var rc = end.withUnsafeBytes { e in
                k = MDB_val(e)
                return mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
            }
            rc = rc == 0 ? mdb_cursor_get(c, &k, &v, MDB_PREV) : mdb_cursor_get(c, &k, &v, MDB_LAST)
            let last = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
            if rc == 0 && last.starts(with: s.prefix) && last.count > 4 {
                upperBoundCount = min(last.count, 512)
                if let base = last.baseAddress { upperBoundStorage.copyMemory(from: base, byteCount: upperBoundCount) }
            } else {
                source = .empty
            }
        }
        if !options.sort.isEmpty { try materializeSorted() }
    }

    deinit {
        if let c = lmdbCursor, !isClosed { mdb_cursor_close(c) }
        output.deallocate()
        lastKeyStorage.deallocate()
        upperBoundStorage.deallocate()
    }

    /// Releases the cursor. Safe to call more than once.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        if let c = lmdbCursor { mdb_cursor_close(c) }
        lmdbCursor = nil
        source = .empty
    }

    /// The next document, parsed.
    public func next() throws(StoreError) -> JSON? {
        guard let raw = try nextRaw() else { return nil }
        return try JSONParser.parse(raw)
    }

    /// The next document as compact JSON bytes, valid until the next call
    /// on this cursor or the end of the transaction.
    public func nextRaw() throws(StoreError) -> UnsafeRawBufferPointer? {
        guard !isClosed else { throw StoreError(.cursorClosed, "collection '\(collection)': the cursor was closed") }
        try txn.usable()
        if let limit = options.limit, returned >= limit { return nil }
        hasCurrent = false
        while let bytes = try advance() {
            let sortedSource: Bool
            if case .sorted = source { sortedSource = true } else { sortedSource = false }
            var doc: JSONObject?
            if !sortedSource && !filter.matchesEverything {
                guard let s = state else { return nil }
                let d = try parseCurrent(s, bytes)
                guard filter.matches(.object(d)) else { continue }
                doc = d
            }
            if skipped < options.skip {
                skipped += 1
                continue
            }
            returned += 1
            hasCurrent = true
            guard let projection = options.projection, let s = state else { return bytes }
            let d: JSONObject
            if let doc { d = doc } else { d = try parseCurrent(s, bytes) }
            projected.removeAll(keepingCapacity: true)
            JSONSerializer.write(.object(projection.apply(to: d)), into: &projected)
            if output.count < projected.count {
                output.deallocate()
                output = .allocate(byteCount: max(projected.count, 2 * output.count), alignment: 1)
            }
            output.copyBytes(from: projected)
            return UnsafeRawBufferPointer(rebasing: output[..<projected.count])
        }
        return nil
    }

    /// Replaces the document the last ``nextRaw()`` (or ``next()``) returned
    /// with the JSON object `json`, keeping its `_id` (which `json` may omit)
    /// and its indexes right. During a scan the value is written in place
    /// (`MDB_CURRENT`), without looking the key up again. The cursor goes on
    /// with the next document; the replaced one is not visited again.
    /// - Throws: `.noCurrentDocument`, `.invalidDocument` (not an object, or
    ///   another `_id`), `.duplicateKey` (a unique index).
    public func replaceCurrent(json: UnsafeRawBufferPointer) throws(StoreError) {
        let (s, cursor) = try current()
        guard try txn.replace(s, key: lastKey, with: json, cursor: cursor) else { return }
        s.generation += 1
        // Written in place: the scan's position is still good.
        if cursor != nil { generation = s.generation }
    }

    /// Deletes the document the last ``nextRaw()`` returned; the cursor goes
    /// on with the next one.
    public func deleteCurrent() throws(StoreError) {
        let (s, _) = try current()
        // By key: the scan finds its place again from `lastKey`.
        try txn.delete(s, key: lastKey)
        s.generation += 1
        hasCurrent = false
    }

    /// The collection of the current document, and the LMDB cursor when it
    /// is positioned on it (a scan that saw no write since).
    private func current() throws(StoreError) -> (CollectionState, OpaquePointer?) {
        guard !isClosed else { throw StoreError(.cursorClosed, "collection '\(collection)': the cursor was closed") }
        try txn.usable()
        guard hasCurrent, let s = state else {
            throw StoreError(
                .noCurrentDocument, "collection '\(collection)': the cursor has no current document (call next first)")
        }
        if case .scan = source, generation == s.generation, options.projection == nil { return (s, lmdbCursor) }
        return (s, nil)
    }

    /// Calls `body` with every remaining document.
    public func forEach(_ body: (JSON) throws -> Void) throws {
        while let d = try next() { try body(d) }
    }

    /// Reads all remaining documents.
    public func all() throws(StoreError) -> [JSON] {
        var out: [JSON] = []
        while let d = try next() { out.append(d) }
        return out
    }

    /// Parses the current document; errors name its `_id` (from `lastKey`).
    private func parseCurrent(_ s: CollectionState, _ bytes: UnsafeRawBufferPointer) throws(StoreError) -> JSONObject {
        let k = lastKey
        return try txn.parseStored(s, bytes, idKey: UnsafeRawBufferPointer(rebasing: k[min(4, k.count)...]))
    }

    /// The next stored document in `_id` (or sort) order, unfiltered; its
    /// key is left in `lastKey`.
    private func advance() throws(StoreError) -> UnsafeRawBufferPointer? {
        switch source {
        case .empty:
            return nil
        case .keys(let keys, let i), .sorted(let keys, let i):
            var next = i
            while next < keys.count {
                let key = keys[next]
                next += 1
                let got = try key.bytes { kb throws(StoreError) in try txn.get(txn.env.docs, kb) }
                if let bytes = got {
                    if case .keys = source {
                        source = .keys(keys, next: next)
                    } else {
                        source = .sorted(keys, next: next)
                    }
                    key.withUnsafeBytes { remember($0) }
                    return bytes
                }
            }
            source = .empty
            return nil
        case .scan:
            guard let c = lmdbCursor, let s = state else { return nil }
            var k = MDB_val()
            var v = MDB_val()
            var rc: Int32
            if !started {
                started = true
                rc = startKey.withUnsafeBytes { p in
                    k = MDB_val(p)
                    return mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
                }
                if rc == 0 && startExclusive
                    && UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size).sameBytes(as: startKey)
                {
                    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)
                }
            } else if generation != s.generation {
                // The collection changed under us: find our place again by key.
                k = MDB_val(lastKey)
                rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
                if rc == 0 && UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size).sameBytes(as: lastKey) {
                    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)
                }
            } else {
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)
            }
            if rc == MDB_NOTFOUND {
                source = .empty
                return nil
            }
            try txn.check(rc, "mdb_cursor_get")
            let key = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
            let pastEnd = key.sortsAfter(UnsafeRawBufferPointer(start: upperBoundStorage, count: upperBoundCount))
            guard key.count >= 4, key.loadUnaligned(as: UInt32.self) == s.id.bigEndian, !pastEnd else {
                source = .empty
                return nil
            }
            remember(key)
            generation = s.generation
            return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
        }
    }

    private func remember(_ key: UnsafeRawBufferPointer) {
        lastKeyCount = min(key.count, 512)
        if let base = key.baseAddress { lastKeyStorage.copyMemory(from: base, byteCount: lastKeyCount) }
    }

    /// For `sort`: reads the matching documents' keys, sorts them by the
    /// sort keys (ties in `_id` order), then serves them like an index plan.
    private func materializeSorted() throws(StoreError) {
        guard let s = state else { return }
        var rows: [(key: [UInt8], doc: JSON)] = []
        while let bytes = try advance() {
            let d = try parseCurrent(s, bytes)
            guard filter.matches(.object(d)) else { continue }
            rows.append((Array(lastKey), .object(d)))
        }
        let options = self.options
        rows.sort { a, b in
            let c = options.compare(a.doc, b.doc)
            return c != 0 ? c < 0 : a.key.lexicographicallyPrecedes(b.key)
        }
        if let c = lmdbCursor { mdb_cursor_close(c) }
        lmdbCursor = nil
        source = .sorted(rows.map(\.key), next: 0)
    }
}
