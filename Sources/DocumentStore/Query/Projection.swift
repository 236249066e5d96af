/// A MongoDB-style projection: `{"name": 1, "address.city": 1}` keeps only
/// those fields (and `_id`, unless `"_id": 0`); `{"password": 0}` drops fields.
/// Inclusion and exclusion cannot be mixed, except for `_id`.
public struct Projection: Sendable {
    let include: Bool
    let paths: [[String]]
    let keepID: Bool

    public init(_ json: JSON) throws(StoreError) {
        guard case .object(let obj) = json else {
            throw StoreError(.invalidProjection, "invalid projection: expected an object, got \(json.typeName)")
        }
        var inc: [[String]] = []
        var exc: [[String]] = []
        var keepID = true
        var idIncluded = false
        for (key, value) in obj {
            let flag: Bool
            switch value {
            case .bool(let b): flag = b
            case .int(let i): flag = i != 0
            default: throw StoreError(.invalidProjection, "invalid projection: \"\(key)\" must be 1, 0, true or false")
            }
            let path = try FieldPath(key, for: .invalidProjection)
            if key == "_id" {
                keepID = flag
                idIncluded = flag
                continue
            }
            if flag { inc.append(path.components) } else { exc.append(path.components) }
        }
        if !inc.isEmpty && !exc.isEmpty {
            throw StoreError(
                .invalidProjection,
                "invalid projection: cannot mix inclusion and exclusion (only _id may be excluded from an inclusion)")
        }
        // {"_id": 1} alone is an inclusion of _id only, as in MongoDB.
        include = !inc.isEmpty || (exc.isEmpty && idIncluded)
        paths = include ? inc : exc
        self.keepID = keepID
    }

    public func apply(to doc: JSONObject) -> JSONObject {
        var out = include ? Self.keep(doc, paths) : Self.drop(doc, paths)
        if include, keepID, let id = doc["_id"] {
            out["_id"] = nil
            out.prepend("_id", id)
        }
        if !keepID { out["_id"] = nil }
        return out
    }

    static func keep(_ obj: JSONObject, _ paths: [[String]]) -> JSONObject {
        var out = JSONObject()
        for (key, value) in obj {
            let here = paths.filter { $0.first == key }
            if here.isEmpty { continue }
            if here.contains(where: { $0.count == 1 }) {
                out[key] = value
                continue
            }
            let tails = here.map { Array($0.dropFirst()) }
            switch value {
            case .object(let o): out[key] = .object(keep(o, tails))
            case .array(let items):
                out[key] = .array(
                    items.compactMap {
                        if case .object(let o) = $0 { return .object(keep(o, tails)) } else { return nil }
                    })
            default: break
            }
        }
        return out
    }

    static func drop(_ obj: JSONObject, _ paths: [[String]]) -> JSONObject {
        var out = JSONObject()
        for (key, value) in obj {
            let here = paths.filter { $0.first == key }
            if here.contains(where: { $0.count == 1 }) { continue }
            if here.isEmpty {
                out[key] = value
                continue
            }
            let tails = here.map { Array($0.dropFirst()) }
            switch value {
            case .object(let o): out[key] = .object(drop(o, tails))
            case .array(let items):
                out[key] = .array(
                    items.map { if case .object(let o) = $0 { return .object(drop(o, tails)) } else { return $0 } })
            default: out[key] = value
            }
        }
        return out
    }
}
