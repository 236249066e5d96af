/// ``FindOptions`` (skip, limit, projection, sort) over any backend's
/// ``DocumentReader`` in `_id` order: streaming without `sort`; with it, the
/// matches are read, then sorted (ties in `_id` order) as the LMDB cursor
/// sorts them. It only reads: writes through it are refused.
public final class FindOptionsReader: DocumentReader {
    private let base: any DocumentReader
    private let collection: String
    private let options: FindOptions
    private var sorted: [[UInt8]]?
    private var next = 0
    private var skipped = 0
    private var returned = 0
    /// Owned storage for what `nextRaw` returns: a pointer into an Array
    /// must not outlive the access.
    private var output = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// Wraps `base`; with `sort`, reads it to the end now.
    public init(_ base: any DocumentReader, collection: String, options: FindOptions) throws {
        self.base = base
        self.collection = collection
        self.options = options
        guard !options.sort.isEmpty else { return }
        var rows: [(doc: JSON, bytes: [UInt8])] = []
        while let raw = try base.nextRaw() { rows.append((try JSON(parsing: raw), Array(raw))) }
        base.close()
        // Indices break ties: `_id` order, whatever the sort algorithm.
        let order = rows.indices.sorted { a, b in
            let c = options.compare(rows[a].doc, rows[b].doc)
            return c != 0 ? c < 0 : a < b
        }
        sorted = order.map { rows[$0].bytes }
    }

    deinit { output.deallocate() }

    public func nextRaw() throws -> UnsafeRawBufferPointer? {
        if let limit = options.limit, returned >= limit { return nil }
        while true {
            let bytes: [UInt8]
            if let sorted {
                guard next < sorted.count else { return nil }
                bytes = sorted[next]
                next += 1
            } else {
                guard let raw = try base.nextRaw() else { return nil }
                bytes = Array(raw)
            }
            if skipped < options.skip {
                skipped += 1
                continue
            }
            returned += 1
            var out = bytes
            if let projection = options.projection,
                case .object(let doc) = try bytes.withUnsafeBytes({ try JSON(parsing: $0) })
            {
                out = Array(JSON.object(projection.apply(to: doc)).serialized.utf8)
            }
            if output.count < out.count {
                output.deallocate()
                output = .allocate(byteCount: max(out.count, 2 * output.count), alignment: 1)
            }
            output.copyBytes(from: out)
            return UnsafeRawBufferPointer(rebasing: output[..<out.count])
        }
    }

    public func replaceCurrent(json: UnsafeRawBufferPointer) throws { throw readOnly() }
    public func deleteCurrent() throws { throw readOnly() }
    public func close() { base.close() }

    private func readOnly() -> StoreError {
        StoreError(.noCurrentDocument, "collection '\(collection)': a cursor with find options only reads")
    }
}
