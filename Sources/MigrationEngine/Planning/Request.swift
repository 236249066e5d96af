/// What a run is asked to do. `apply` and `rollback` build one; so can an
/// app, through ``Migrator/run(_:)``.
public struct MigrationRequest: Sendable, Equatable, CustomStringConvertible {
    enum Kind: Sendable, Equatable {
        case apply(through: String?)
        case applyNext(Int)
        case rollback(RollbackTarget)
    }
    let kind: Kind

    /// Apply every pending migration.
    public static let applyAll = MigrationRequest(kind: .apply(through: nil))
    /// Apply pending migrations in order, up to and including `id`.
    public static func apply(through id: String) -> MigrationRequest { MigrationRequest(kind: .apply(through: id)) }
    /// Apply the next `count` pending migrations.
    public static func applyNext(_ count: Int) -> MigrationRequest { MigrationRequest(kind: .applyNext(count)) }
    /// Roll back as `target` says, newest first.
    public static func rollback(_ target: RollbackTarget) -> MigrationRequest {
        MigrationRequest(kind: .rollback(target))
    }

    /// The direction its steps run in.
    public var direction: Direction {
        if case .rollback = kind { return .down }
        return .up
    }

    public var description: String {
        switch kind {
        case .apply(let id): return id.map { "apply through \($0)" } ?? "apply all"
        case .applyNext(let n): return "apply next \(n)"
        case .rollback(let t): return "rollback \(t)"
        }
    }
}

/// How far a rollback goes.
public struct RollbackTarget: Sendable, Equatable, CustomStringConvertible {
    enum Kind: Sendable, Equatable {
        case after(String)
        case last(Int)
        case all
    }
    let kind: Kind

    /// Every migration applied after `id`; `id` itself stays applied.
    public static func to(_ id: String) -> RollbackTarget { RollbackTarget(kind: .after(id)) }
    /// The last `count` applied migrations.
    public static func last(_ count: Int) -> RollbackTarget { RollbackTarget(kind: .last(count)) }
    /// Every applied migration.
    public static let all = RollbackTarget(kind: .all)

    public var description: String {
        switch kind {
        case .after(let id): return "to \(id)"
        case .last(let n): return "last \(n)"
        case .all: return "all"
        }
    }
}

/// What the planner checks against, besides the catalog and the records.
package struct PlanOptions: Sendable, Equatable {
    /// Apply pending migrations that sort before applied ones.
    package var allowOutOfOrder = false
    /// Run although the database holds applied ids this catalog should
    /// provide and does not.
    package var allowMissing = false
    /// Options; both default to refusing.
    package init(allowOutOfOrder: Bool = false, allowMissing: Bool = false) {
        self.allowOutOfOrder = allowOutOfOrder
        self.allowMissing = allowMissing
    }
}

/// The planner's answer: the steps to run, in order, or why not.
public struct Plan: Sendable {
    /// The request it answers.
    public let request: MigrationRequest
    /// The steps, in the order they run (newest first for a rollback).
    public let steps: [AvailableMigration]
    /// Why the run must not start; empty when it may.
    public let refusals: [Refusal]

    /// The direction every step runs in.
    public var direction: Direction { request.direction }
    /// True when the run may start.
    public var isAllowed: Bool { refusals.isEmpty }
}
