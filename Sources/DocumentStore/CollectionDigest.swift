/// The SHA-256 `digest` gives a collection: its name, its index
/// definitions in path order, then each document's `_id` (in the LMDB
/// store's key encoding) and stored bytes, in `_id` order. Every backend
/// computes it the same way, so equal digests mean equal contents across
/// backends too (what `db copy` checks).
public struct CollectionDigest {
    private var hash = SHA256Digest()

    /// Starts the digest of `collection` with these indexes.
    public init(collection: String, indexes: [IndexInfo]) {
        field(Array("collection".utf8))
        field(Array(collection.utf8))
        for index in indexes.sorted(by: { $0.path < $1.path }) {
            field(Array("index".utf8))
            field(Array(index.path.utf8))
            field([index.unique ? 1 : 0])
        }
    }

    private mutating func field(_ bytes: some Collection<UInt8>) {
        var n = UInt64(bytes.count).littleEndian
        withUnsafeBytes(of: &n) { hash.update($0) }
        hash.update(Array(bytes))
    }

    mutating func add(idKey: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) {
        var n = UInt64(idKey.count).littleEndian
        withUnsafeBytes(of: &n) { hash.update($0) }
        hash.update(idKey)
        n = UInt64(body.count).littleEndian
        withUnsafeBytes(of: &n) { hash.update($0) }
        hash.update(body)
    }

    /// Adds the next document (in `_id` order): its `_id` and stored bytes.
    public mutating func add(id: JSON, body: UnsafeRawBufferPointer) throws(StoreError) {
        var key: [UInt8] = []
        try KeyEncoding.appendID(id, to: &key)
        key.withUnsafeBytes { add(idKey: $0, body: body) }
    }

    /// The total over collections' digests, given in name order: a SHA-256
    /// of `name digest` lines (what `db digest` prints last).
    public static func total(_ collections: [(String, String)]) -> String {
        var total = SHA256Digest()
        for (name, d) in collections { total.update(Array("\(name) \(d)\n".utf8)) }
        return total.finalizeHex()
    }

    /// The hex digest.
    public func finalize() -> String {
        var h = hash
        return h.finalizeHex()
    }
}
