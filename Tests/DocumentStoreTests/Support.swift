import DocumentStore
import Foundation
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
