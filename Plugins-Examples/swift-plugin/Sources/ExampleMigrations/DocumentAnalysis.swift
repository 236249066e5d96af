import MigrationKit

/// 003: updates existing documents in place.
struct DocumentAnalysisEnhancement: Migration {
    let id = "003_document_analysis_enhancement"
    let name = "Document Analysis Enhancement"
    let description = "Add an analysis section, pending, to every document that lacks one"
    let version = "1.2.0"
    let checksum: String? = "003-v1"

    func up(_ db: Database) throws {
        // The marker lets down remove exactly what up added.
        let n = try db.update(
            "documents",
            filter: #"{"analysis": {"$exists": false}}"#,
            update: #"{"$set": {"analysis": {"status": "pending", "added_by": "003"}}}"#)
        db.log("marked \(n) documents for analysis")
    }

    func down(_ db: Database) throws {
        try db.update(
            "documents",
            filter: #"{"analysis.added_by": "003"}"#,
            update: #"{"$unset": {"analysis": ""}}"#)
    }
}
