import DocumentStore
import Foundation
import PostgresStore
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A fresh temporary directory, removed by the caller with `removeTree`.
func temporaryDirectory(_ tag: String = "store") -> String { Fixtures.temporaryDirectory(tag) }

func removeTree(_ path: String) { Fixtures.removeTree(path) }

/// Opens a store in a fresh directory and removes it afterwards.
func withStore<R>(options: DocumentStore.Options = .init(), _ body: (DocumentStore) throws -> R) throws -> R {
    let dir = temporaryDirectory()
    defer { removeTree(dir) }
    let store = try DocumentStore(path: dir + "/db", options: options)
    return try body(store)
}

func json(_ text: String) -> JSON {
    do { return try JSON(parsing: text) } catch {
        Issue.record("bad test JSON \(text): \(error)")
        return .null
    }
}

/// The error a throwing expression raises, as a StoreError.
func storeError<T>(_ body: () throws -> T) -> StoreError? {
    do { _ = try body() } catch let e as StoreError { return e } catch { Issue.record("unexpected error \(error)") }
    return nil
}

/// A store of either backend, seen through ``DocumentTransaction``.
struct TestStore {
    let lmdb: DocumentStore?
    let postgres: PostgresDocumentStore?

    @discardableResult
    func write<R>(_ body: (any DocumentTransaction) throws -> R) throws -> R {
        if let postgres { return try postgres.write { try body($0) } }
        guard let lmdb else { throw StoreError(.storage, "no store") }
        return try lmdb.write { try body($0) }
    }

    func read<R>(_ body: (any DocumentTransaction) throws -> R) throws -> R {
        if let postgres { return try postgres.read { try body($0) } }
        guard let lmdb else { throw StoreError(.storage, "no store") }
        return try lmdb.read { try body($0) }
    }
}

/// Opens an empty store of `backend` (a fresh directory, or a fresh
/// schema) and removes it afterwards.
func withStore<R>(_ backend: Backend, _ body: (TestStore) throws -> R) throws -> R {
    switch backend {
    case .lmdb:
        return try withStore { try body(TestStore(lmdb: $0, postgres: nil)) }
    case .postgres:
        let schema = PostgresServer.freshSchema("store")
        let store = try PostgresDocumentStore(uri: PostgresServer.uri, schema: schema)
        defer { try? store.connection.run("DROP SCHEMA \(schema) CASCADE") }
        return try body(TestStore(lmdb: nil, postgres: store))
    }
}
