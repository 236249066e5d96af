import DocumentStore
import FoundationEssentials
import MigrationKit

/// The worker's command line and descriptor numbers.
enum WorkerProtocol {
    /// `migrator __worker PARENT_PID`: hidden from help.
    static let command = "__worker"
    /// The worker reads requests here.
    static let requestFD: Int32 = 3
    /// The worker writes responses here.
    static let responseFD: Int32 = 4
    /// The worker's fatal-signal handler writes its crash report here.
    static let reportFD: Int32 = 5
    /// The argument after the parent's pid that lets plugin code open
    /// network sockets (a server's database).
    static let network = "--network"
}

/// What the parent asks of the worker: the one definition of the requests,
/// each a JSON object with its `op`. Two are followed by a raw frame.
enum WorkerRequest: Equatable {
    /// Load one plugin; its sealed image follows as a descriptor (`SCM_RIGHTS`).
    case load(file: String, path: String, sha256: String, strictToolchain: Bool, bundle: String?)
    /// `load` requests until ``endBatch``, answered once by ``WorkerReply/loadedBatch(_:)``.
    case loadBatch
    /// Ends a batch of loads.
    case endBatch
    /// Open the database steps run against: a location and the options its
    /// storage driver gave (opaque here).
    case open(location: String, options: [String: String])
    /// Run one step; with `after`, only if the step `after` just succeeded
    /// (a step sent ahead).
    case step(id: String, direction: Direction, after: String?)
    /// Run a trial; the steps (``TrialStep`` as JSON) follow as a frame.
    case trial
    /// Answer ``WorkerReply/synced(nonce:)`` once everything before is done.
    case sync(nonce: String)
}

/// What the worker answers.
enum WorkerReply: Equatable {
    /// A plugin loaded: its descriptors, and the memfd number it runs from.
    case loaded(plugin: JSONObject, imageFD: Int64?, warnings: [String])
    /// A plugin that could not be loaded, and why.
    case problem(code: String, message: String, migrationID: String?, warnings: [String])
    /// One answer (``loaded`` or ``problem``) per load of the batch, in order.
    indirect case loadedBatch([WorkerReply])
    /// The database is open.
    case opened
    /// A request could not be served (the database would not open, say).
    case error(message: String)
    /// A migration's log line during a step.
    case log(level: Int32, message: String)
    /// A migration's progress during a step.
    case progress(done: UInt64, total: UInt64)
    /// The step committed, at `committedAt` (the monotonic clock both share);
    /// its recorded duration, nil when another run had done it.
    case done(durationMS: Int64?, committedAt: Double?)
    /// The step failed, for the reason given if any (a worker always gives
    /// one; plugin code forging the answer may not, and the record decides).
    case failed(message: String?)
    /// A step sent ahead, not run: the step before it did not succeed.
    case skipped
    /// One trial step's ``TrialResult`` follows as a frame.
    case trialResult
    /// The trial ended; every step's result was sent.
    case trialDone
    /// The answer to ``WorkerRequest/sync(nonce:)``.
    case synced(nonce: String)
}

/// A message that is a JSON object but not one of the protocol's: an
/// unknown `op`, or a field missing or of the wrong type.
struct WorkerProtocolError: Error, Equatable, CustomStringConvertible {
    let description: String

    static func missing(_ field: String, in op: String) -> Self {
        Self(description: "a '\(op)' message without its '\(field)'")
    }
}

/// Reading fields of a message: a missing or mistyped field is an error,
/// never an empty value.
private struct Fields {
    let object: JSONObject
    let op: String

    init(_ object: JSONObject) throws(WorkerProtocolError) {
        self.object = object
        guard let op = object["op"]?.stringValue else {
            throw WorkerProtocolError(description: "a message with no 'op'")
        }
        self.op = op
    }

    func string(_ key: String) throws(WorkerProtocolError) -> String {
        guard let v = object[key]?.stringValue else { throw .missing(key, in: op) }
        return v
    }
    func optionalString(_ key: String) throws(WorkerProtocolError) -> String? {
        switch object[key] {
        case nil, .null?: return nil
        case .string(let v)?: return v
        default: throw .missing(key, in: op)
        }
    }
    func int(_ key: String) throws(WorkerProtocolError) -> Int64 {
        guard case .int(let v)? = object[key] else { throw .missing(key, in: op) }
        return v
    }
    func optionalInt(_ key: String) throws(WorkerProtocolError) -> Int64? {
        switch object[key] {
        case nil, .null?: return nil
        case .int(let v)?: return v
        default: throw .missing(key, in: op)
        }
    }
    func bool(_ key: String) throws(WorkerProtocolError) -> Bool {
        guard case .bool(let v)? = object[key] else { throw .missing(key, in: op) }
        return v
    }
    func strings(_ key: String) throws(WorkerProtocolError) -> [String] {
        guard let list = object[key]?.arrayValue else { throw .missing(key, in: op) }
        var out: [String] = []
        for item in list {
            guard let s = item.stringValue else { throw .missing(key, in: op) }
            out.append(s)
        }
        return out
    }
    func object(_ key: String) throws(WorkerProtocolError) -> JSONObject {
        guard let v = object[key]?.objectValue else { throw .missing(key, in: op) }
        return v
    }
}

private func message(_ op: String, _ fields: [(String, JSON)] = []) -> JSON {
    .object(JSONObject([("op", .string(op))] + fields))
}

extension WorkerRequest {
    /// The request as sent.
    var json: JSON {
        switch self {
        case .load(let file, let path, let sha256, let strict, let bundle):
            return message(
                "load",
                [
                    ("file", .string(file)), ("path", .string(path)), ("sha256", .string(sha256)),
                    ("strict_toolchain", .bool(strict)),
                ] + (bundle.map { [("bundle", JSON.string($0))] } ?? []))
        case .loadBatch: return message("load_batch")
        case .endBatch: return message("end_batch")
        case .open(let location, let options):
            let settings = options.sorted { $0.key < $1.key }.map { ($0.key, JSON.string($0.value)) }
            // Also at the top level as before: a worker binary of the previous
            // release (an app may name the installed migrator) keeps the map limit.
            let legacy =
                options[LMDBStorage.maxMapOption].flatMap(Int64.init).map {
                    [(LMDBStorage.maxMapOption, JSON.int($0))]
                } ?? []
            return message(
                "open", [("db", .string(location)), ("options", .object(JSONObject(settings)))] + legacy)
        case .step(let id, let direction, let after):
            return message(
                "step",
                [("id", .string(id)), ("direction", .string(direction.rawValue))]
                    + (after.map { [("after", JSON.string($0))] } ?? []))
        case .trial: return message("trial")
        case .sync(let nonce): return message("sync", [("nonce", .string(nonce))])
        }
    }

    /// The request in `object`.
    init(_ object: JSONObject) throws(WorkerProtocolError) {
        let f = try Fields(object)
        switch f.op {
        case "load":
            self = .load(
                file: try f.string("file"), path: try f.string("path"), sha256: try f.string("sha256"),
                strictToolchain: try f.bool("strict_toolchain"), bundle: try f.optionalString("bundle"))
        case "load_batch": self = .loadBatch
        case "end_batch": self = .endBatch
        case "open":
            var options: [String: String] = [:]
            // An engine of the previous release sends only the top-level map limit.
            if case .int(let mb)? = object[LMDBStorage.maxMapOption] { options[LMDBStorage.maxMapOption] = String(mb) }
            for (key, value) in object["options"]?.objectValue ?? JSONObject() {
                guard let v = value.stringValue else { throw .missing("options", in: f.op) }
                options[key] = v
            }
            self = .open(location: try f.string("db"), options: options)
        case "step":
            guard let direction = Direction(rawValue: try f.string("direction")) else {
                throw .missing("direction", in: f.op)
            }
            self = .step(id: try f.string("id"), direction: direction, after: try f.optionalString("after"))
        case "trial": self = .trial
        case "sync": self = .sync(nonce: try f.string("nonce"))
        default: throw WorkerProtocolError(description: "an unknown request '\(f.op)'")
        }
    }
}

extension WorkerReply {
    /// The reply as sent.
    var json: JSON {
        switch self {
        case .loaded(let plugin, let imageFD, let warnings):
            return message(
                "loaded",
                [
                    ("plugin", .object(plugin)), ("image_fd", imageFD.map(JSON.int) ?? .null),
                    ("warnings", .array(warnings.map(JSON.string))),
                ])
        case .problem(let code, let text, let id, let warnings):
            return message(
                "problem",
                [
                    ("code", .string(code)), ("message", .string(text)), ("migration_id", id.map(JSON.string) ?? .null),
                    ("warnings", .array(warnings.map(JSON.string))),
                ])
        case .loadedBatch(let results): return message("loaded_batch", [("results", .array(results.map(\.json)))])
        case .opened: return message("ok")
        case .error(let text): return message("error", [("message", .string(text))])
        case .log(let level, let text):
            return message("log", [("level", .int(Int64(level))), ("message", .string(text))])
        case .progress(let done, let total):
            return message(
                "progress", [("done", .int(Int64(clamping: done))), ("total", .int(Int64(clamping: total)))])
        case .done(let duration, let committedAt):
            return message(
                "done",
                [
                    ("duration_ms", duration.map(JSON.int) ?? .null),
                    ("committed_at", committedAt.map(JSON.double) ?? .null),
                ])
        case .failed(let text): return message("failed", [("message", text.map(JSON.string) ?? .null)])
        case .skipped: return message("skipped")
        case .trialResult: return message("trial_result")
        case .trialDone: return message("trial_done")
        case .synced(let nonce): return message("synced", [("nonce", .string(nonce))])
        }
    }

    /// The reply in `object`.
    init(_ object: JSONObject) throws(WorkerProtocolError) {
        let f = try Fields(object)
        switch f.op {
        case "loaded":
            self = .loaded(
                plugin: try f.object("plugin"), imageFD: try f.optionalInt("image_fd"),
                warnings: try f.strings("warnings"))
        case "problem":
            self = .problem(
                code: try f.string("code"), message: try f.string("message"),
                migrationID: try f.optionalString("migration_id"), warnings: try f.strings("warnings"))
        case "loaded_batch":
            guard let list = object["results"]?.arrayValue else { throw .missing("results", in: f.op) }
            var results: [WorkerReply] = []
            for item in list {
                guard let o = item.objectValue else { throw .missing("results", in: f.op) }
                let one = try WorkerReply(o)
                switch one {
                case .loaded, .problem: results.append(one)
                default: throw WorkerProtocolError(description: "a '\(f.op)' holding a '\(o.string("op"))'")
                }
            }
            self = .loadedBatch(results)
        case "ok": self = .opened
        case "error": self = .error(message: try f.string("message"))
        case "log":
            self = .log(level: Int32(truncatingIfNeeded: try f.int("level")), message: try f.string("message"))
        case "progress":
            self = .progress(done: UInt64(clamping: try f.int("done")), total: UInt64(clamping: try f.int("total")))
        case "done":
            var committedAt: Double?
            switch object["committed_at"] {
            case .double(let at)?: committedAt = at
            case .int(let at)?: committedAt = Double(at)
            case nil, .null?: committedAt = nil
            default: throw .missing("committed_at", in: f.op)
            }
            self = .done(durationMS: try f.optionalInt("duration_ms"), committedAt: committedAt)
        case "failed": self = .failed(message: try f.optionalString("message"))
        case "skipped": self = .skipped
        case "trial_result": self = .trialResult
        case "trial_done": self = .trialDone
        case "synced": self = .synced(nonce: try f.string("nonce"))
        default: throw WorkerProtocolError(description: "an unknown answer '\(f.op)'")
        }
    }
}

extension WorkerReply {
    /// The reply's `op`, for messages: what plugin code wrote is never quoted whole.
    var op: String { json.objectValue?["op"]?.stringValue ?? "?" }

    /// Hands a step's log line or progress to `observer` (for migration
    /// `id`); false for any other reply.
    func observed(by observer: StepObserver, for id: String) -> Bool {
        switch self {
        case .log(let level, let text): observer.log(id, LogLevel(rawValue: level) ?? .info, text)
        case .progress(let done, let total): observer.progress(id, done, total)
        default: return false
        }
        return true
    }
}

extension WorkerChannel {
    /// Sends `request`; false as for ``send(_:patience:)``.
    @discardableResult
    func send(_ request: WorkerRequest, patience: Double? = nil) -> Bool { send(request.json, patience: patience) }

    /// Sends `reply`.
    @discardableResult
    func send(_ reply: WorkerReply) -> Bool { send(reply.json) }

    /// The next reply; nil as for ``receiveMessage(deadline:failure:)``, or
    /// `.malformed` for a JSON object that is not a reply of the protocol.
    func receiveReply(deadline: Double? = nil, failure: UnsafeMutablePointer<Failure?>? = nil) -> WorkerReply? {
        guard let object = receiveMessage(deadline: deadline, failure: failure) else { return nil }
        do { return try WorkerReply(object) } catch {
            failure?.pointee = .malformed(error.description)
            return nil
        }
    }

    /// The next request; nil at the end of the channel. A request outside
    /// the protocol is `.failure`.
    func receiveRequest() -> Result<WorkerRequest, WorkerProtocolError>? {
        guard let object = receiveMessage() else { return nil }
        return Result { () throws(WorkerProtocolError) in try WorkerRequest(object) }
    }
}
