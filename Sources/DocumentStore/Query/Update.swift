/// A compiled MongoDB-style update: either operators
/// (`$set $unset $inc $rename $push $pull`) or a replacement document.
/// See docs/document-store.md.
public struct Update: Sendable {
    enum Op: Sendable {
        case set(FieldPath, JSON)
        case unset(FieldPath)
        case inc(FieldPath, JSON)
        case rename(FieldPath, FieldPath)
        case push(FieldPath, [JSON])
        case pull(FieldPath, Pull)
    }

    enum Pull: Sendable {
        case equal(JSON)
        case matching([Filter.Predicate])
    }

    enum Kind: Sendable {
        case replace(JSONObject)
        case operators([Op])
    }

    let kind: Kind
    /// A `$rename` moves a value of unknown depth: check the result.
    let renames: Bool

    /// For updates made only of `$set` on top-level fields: the serialized
    /// quoted keys and values, which let the store splice stored bytes.
    let topLevelSets: [(key: [UInt8], value: [UInt8])]?

    /// Compiles an update document.
    public init(_ json: JSON) throws(StoreError) {
        guard case .object(let obj) = json else {
            throw StoreError(.invalidUpdate, "invalid update: expected an object, got \(json.typeName)")
        }
        let dollar = obj.fields.filter { $0.key.hasPrefix("$") }.count
        if dollar == 0 {
            guard json.nestingDepth <= JSONParser.maxDepth else {
                throw StoreError(
                    .invalidUpdate, "invalid update: the replacement nests deeper than \(JSONParser.maxDepth) levels")
            }
            kind = .replace(obj)
            topLevelSets = nil
            renames = false
            return
        }
        guard dollar == obj.count else {
            throw StoreError(
                .invalidUpdate,
                "invalid update: mixes update operators and plain fields; "
                    + "use $set for fields, or no operators to replace the document"
            )
        }
        var ops: [Op] = []
        var touched: [FieldPath] = []
        func claim(_ p: FieldPath, _ op: String) throws(StoreError) {
            if p.components[0] == "_id" {
                throw StoreError(.invalidUpdate, "invalid update: \(op) cannot change _id")
            }
            if let other = touched.first(where: { $0.overlaps(p) }) {
                throw StoreError(.invalidUpdate, "invalid update: \"\(p)\" and \"\(other)\" conflict")
            }
            touched.append(p)
        }
        for (op, arg) in obj {
            guard case .object(let fields) = arg, !fields.isEmpty else {
                throw StoreError(.invalidUpdate, "invalid update: \(op) needs a non-empty object of fields")
            }
            for (key, value) in fields {
                let path = try FieldPath(key, for: .invalidUpdate)
                try claim(path, op)
                ops.append(try Self.operation(op, on: path, key: key, value: value, claim: claim))
            }
        }
        try Self.checkDepth(ops)
        renames = ops.contains { if case .rename = $0 { return true } else { return false } }
        kind = .operators(ops)
        topLevelSets = Self.topLevelSets(ops)
    }

    /// The operation `op` makes of one field: `key` (as `path`) and its
    /// argument `value`; `claim` reserves another path it writes (`$rename`'s target).
    private static func operation(
        _ op: String, on path: FieldPath, key: String, value: JSON,
        claim: (FieldPath, String) throws(StoreError) -> Void
    ) throws(StoreError) -> Op {
        switch op {
        case "$set": return .set(path, value)
        case "$unset": return .unset(path)
        case "$inc":
            guard value.numberValue != nil else {
                throw StoreError(
                    .invalidUpdate, "invalid update: $inc on \"\(key)\" needs a number, got \(value.typeName)")
            }
            return .inc(path, value)
        case "$rename":
            guard case .string(let target) = value else {
                throw StoreError(.invalidUpdate, "invalid update: $rename of \"\(key)\" needs a string target")
            }
            let to = try FieldPath(target, for: .invalidUpdate)
            try claim(to, op)
            return .rename(path, to)
        case "$push":
            guard Filter.isOperatorObject(value) else { return .push(path, [value]) }
            guard case .object(let mods) = value, mods.count == 1, case .array(let each)? = mods["$each"] else {
                throw StoreError(
                    .invalidUpdate, "invalid update: $push on \"\(key)\" accepts only {\"$each\": [...]} as a modifier")
            }
            return .push(path, each)
        case "$pull":
            guard Filter.isOperatorObject(value) else { return .pull(path, .equal(value)) }
            do { return .pull(path, .matching(try Filter.compilePredicates(value, path: key))) } catch {
                throw StoreError(.invalidUpdate, "invalid update: $pull condition on \"\(key)\": \(error.message)")
            }
        default:
            throw StoreError(.invalidUpdate, "invalid update: unknown operator \(op)")
        }
    }

    /// A stored document must parse back, so no update may nest it deeper
    /// than the parser allows (found by fuzzing: a `$set` of a 130-component
    /// path wrote a document nothing could read).
    private static func checkDepth(_ ops: [Op]) throws(StoreError) {
        for op in ops {
            let depth: Int
            switch op {
            case .set(let p, let v): depth = p.components.count + v.nestingDepth
            case .push(let p, let vs): depth = p.components.count + 1 + (vs.map(\.nestingDepth).max() ?? 0)
            case .inc(let p, _), .unset(let p), .pull(let p, _): depth = p.components.count
            case .rename(_, let to): depth = to.components.count
            }
            if depth > JSONParser.maxDepth {
                throw StoreError(
                    .invalidUpdate, "invalid update: the result would nest deeper than \(JSONParser.maxDepth) levels")
            }
        }
    }

    /// For `$set`s of top-level fields only: their serialized keys and values.
    private static func topLevelSets(_ ops: [Op]) -> [(key: [UInt8], value: [UInt8])]? {
        var sets: [(key: [UInt8], value: [UInt8])] = []
        for op in ops {
            guard case .set(let p, let v) = op, p.components.count == 1 else { return nil }
            var k: [UInt8] = []
            JSONSerializer.writeString(p.components[0], into: &k)
            sets.append((k, JSONSerializer.bytes(v)))
        }
        return sets.isEmpty ? nil : sets
    }

    /// Parses and compiles update text such as `{"$set": {"plan": "free"}}`.
    public init(parsing text: String) throws(StoreError) {
        let json: JSON
        do { json = try JSON(parsing: text) } catch {
            throw StoreError(.invalidUpdate, "invalid update: \(error.message)")
        }
        try self.init(json)
    }

    /// Paths this update may change; nil for a replacement (all of them).
    var touchedPaths: [FieldPath]? {
        guard case .operators(let ops) = kind else { return nil }
        var out: [FieldPath] = []
        for op in ops {
            switch op {
            case .set(let p, _), .unset(let p), .inc(let p, _), .push(let p, _), .pull(let p, _): out.append(p)
            case .rename(let a, let b):
                out.append(a)
                out.append(b)
            }
        }
        return out
    }

    /// Applies the update. `doc` must hold `_id` first; the result keeps it.
    /// Errors describe the field; the caller adds collection and `_id`.
    public func apply(to doc: inout JSONObject) throws(StoreError) {
        switch kind {
        case .replace(let replacement):
            let id = doc["_id"]
            if let newID = replacement["_id"], let id, !Values.equal(newID, id) || newID.typeName != id.typeName {
                throw StoreError(.invalidUpdate, "a replacement cannot change _id (to \(newID.serialized))")
            }
            var next = replacement
            next["_id"] = nil
            if let id { next.prepend("_id", id) }
            doc = next
        case .operators(let ops):
            var root = JSON.object(doc)
            for op in ops { try Self.apply(op, to: &root) }
            if renames && root.nestingDepth > JSONParser.maxDepth {
                throw StoreError(
                    .invalidUpdate, "$rename would nest the document deeper than \(JSONParser.maxDepth) levels")
            }
            if case .object(let o) = root { doc = o }
        }
    }

    static func apply(_ op: Op, to root: inout JSON) throws(StoreError) {
        switch op {
        case .set(let p, let v):
            try mutate(&root, p.components[...], path: p, create: true) { slot throws(StoreError) in slot = v }
        case .unset(let p):
            try mutate(&root, p.components[...], path: p, create: false) { slot throws(StoreError) in slot = nil }
        case .inc(let p, let by):
            try mutate(&root, p.components[...], path: p, create: true) { slot throws(StoreError) in
                guard let current = slot else {
                    slot = by
                    return
                }
                slot = try add(current, by, path: p)
            }
        case .rename(let from, let to):
            var taken: JSON?
            try mutate(&root, from.components[...], path: from, create: false) { slot throws(StoreError) in
                taken = slot
                slot = nil
            }
            if let taken {
                try mutate(&root, to.components[...], path: to, create: true) { slot throws(StoreError) in slot = taken
                }
            }
        case .push(let p, let items):
            try mutate(&root, p.components[...], path: p, create: true) { slot throws(StoreError) in
                switch slot {
                case nil: slot = .array(items)
                case .array(var a)?:
                    a.append(contentsOf: items)
                    slot = .array(a)
                case let other?:
                    throw StoreError(.invalidUpdate, "$push on \"\(p)\" needs an array, found \(other.typeName)")
                }
            }
        case .pull(let p, let cond):
            try mutate(&root, p.components[...], path: p, create: false) { slot throws(StoreError) in
                switch slot {
                case nil: return
                case .array(let a)?:
                    slot = .array(
                        a.filter { item in
                            switch cond {
                            case .equal(let v): return !Values.equal(item, v)
                            case .matching(let preds):
                                return !preds.allSatisfy { Filter.test($0, [item], missing: false) }
                            }
                        })
                case let other?:
                    throw StoreError(.invalidUpdate, "$pull on \"\(p)\" needs an array, found \(other.typeName)")
                }
            }
        }
    }

    static func add(_ a: JSON, _ b: JSON, path: FieldPath) throws(StoreError) -> JSON {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            let (s, o) = x.addingReportingOverflow(y)
            if o { throw StoreError(.invalidUpdate, "$inc on \"\(path)\" overflows a 64-bit integer") }
            return .int(s)
        default:
            guard let x = a.numberValue, let y = b.numberValue else {
                throw StoreError(.invalidUpdate, "$inc on \"\(path)\" needs a number, found \(a.typeName)")
            }
            let s = x + y
            guard s.isFinite else { throw StoreError(.invalidUpdate, "$inc on \"\(path)\" overflows a double") }
            return .double(s)
        }
    }

    /// Walks to the slot at `comps` and lets `body` read or replace it
    /// (nil means absent). With `create`, missing objects on the way are made.
    static func mutate(
        _ value: inout JSON, _ comps: ArraySlice<String>, path: FieldPath, create: Bool,
        _ body: (inout JSON?) throws(StoreError) -> Void
    ) throws(StoreError) {
        guard let head = comps.first else { return }
        let last = comps.count == 1
        switch value {
        case .object(var o):
            value = .null  // drop the extra reference so `o` is mutated in place
            var child = o[head]
            if last {
                try body(&child)
            } else if child != nil || create {
                var c = child ?? .object(JSONObject())
                try mutate(&c, comps.dropFirst(), path: path, create: create, body)
                child = c
            }
            o[head] = child
            value = .object(o)
        case .array(var a):
            guard let i = Int(head), i >= 0 else {
                if create {
                    throw StoreError(.invalidUpdate, "cannot use the part \"\(head)\" of \"\(path)\" to index an array")
                }
                return
            }
            if i >= a.count {
                guard create else { return }
                a.append(contentsOf: repeatElement(JSON.null, count: i - a.count + 1))
            }
            value = .null
            if last {
                var child: JSON? = a[i]
                try body(&child)
                a[i] = child ?? .null
            } else {
                try mutate(&a[i], comps.dropFirst(), path: path, create: create, body)
            }
            value = .array(a)
        default:
            if create {
                throw StoreError(
                    .invalidUpdate, "cannot create \"\(path)\": the part before \"\(head)\" is a \(value.typeName)")
            }
        }
    }
}

extension Update {
    /// Whether ``splice(_:into:)`` applies: one top-level `$set`.
    package var isSplice: Bool { topLevelSets?.count == 1 }

    /// For an update that is one top-level `$set` (adding or changing a
    /// field, the common data migration): writes the stored document `doc`
    /// (compact, as every store writes it) with it applied into `out`,
    /// splicing bytes without parsing; byte-identical to parse, apply and
    /// serialize. nil when the update has another shape; false when the
    /// document already holds the value.
    package func splice(_ doc: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Bool? {
        guard isSplice, let sets = topLevelSets, doc.count >= 2 else { return nil }
        return sets[0].key.withUnsafeBytes { k in
            sets[0].value.withUnsafeBytes { v in RawDocument.set(quotedKey: k, value: v, in: doc, into: &out) }
        }
    }
}
