#if canImport(Glibc)
import Glibc
#endif

/// Who `migrator` runs as. Plugin code must never run as root, so a root
/// process becomes an unprivileged user before it opens the database or
/// loads a plugin: the `run_as` user if one is set, else the owner of the
/// database directory when that is not root. The whole process changes,
/// not only the worker: a root parent working in a directory another user
/// can write is the classic way to let that user point root's writes at any
/// file (a symlinked `data.mdb`), so nothing stays root but what ran before
/// (reading the config file).
package enum RunAs {
    /// What was decided: the user now in effect, or why it is still root.
    package enum Outcome: Equatable {
        /// Not root to begin with, and no other user asked for.
        case unchanged
        /// Became `user` (uid, gid), for `reason`.
        case became(user: String, uid: uid_t, reason: String)
        /// Still root, as asked (`run_as = root`).
        case rootAsAsked
        /// Still root: nobody to become. The warning says how to fix it.
        case stillRoot(warning: String)
    }

    /// Becomes the user `requested` names, or, as root without one, the
    /// owner of the database directory at `database` (a path; URIs have no
    /// owner here).
    /// - Throws: `.runAsRefused` for a user that does not exist, or another
    ///   user than this one asked for without root; `.runAsRefused` when the
    ///   kernel refuses the change (never goes on half changed).
    package static func apply(requested: String?, database: String) throws(MigratorError) -> Outcome {
        let me = geteuid()
        if let requested {
            guard let pw = lookUp(requested) else {
                throw MigratorError(.runAsRefused, "run_as: there is no user '\(requested)' on this host")
            }
            if pw.uid == me { return me == 0 ? .rootAsAsked : .unchanged }
            guard me == 0 else {
                throw MigratorError(
                    .runAsRefused,
                    "run_as '\(requested)': migrator runs as uid \(me), and only root can become another user "
                        + "(run it as root, or as '\(requested)' itself)")
            }
            try become(pw)
            return .became(user: pw.name, uid: pw.uid, reason: "run_as")
        }
        guard me == 0 else { return .unchanged }
        var st = stat()
        if StorageDrivers.scheme(of: database) == nil, stat(database, &st) == 0, st.st_uid != 0,
            let pw = lookUp(uid: st.st_uid)
        {
            try become(pw)
            return .became(user: pw.name, uid: pw.uid, reason: "the owner of \(database)")
        }
        return .stillRoot(
            warning:
                "warning: plugin code runs as root, because the database \(Storages.displayName(database)) is root's "
                + "(or new) and no run_as user is set; set run_as (--run-as USER), or give the database directory "
                + "to a service user, and migrator runs as that user")
    }

    private struct User {
        let name: String
        let uid: uid_t
        let gid: gid_t
        let home: String

        init(_ pw: passwd) {
            name = pw.pw_name.map { String(cString: $0) } ?? "uid\(pw.pw_uid)"
            uid = pw.pw_uid
            gid = pw.pw_gid
            home = pw.pw_dir.map { String(cString: $0) } ?? "/"
        }
    }

    private static func lookUp(_ name: String) -> User? {
        if let pw = getpwnam(name) { return User(pw.pointee) }
        return UInt32(name).flatMap { lookUp(uid: $0) }
    }

    private static func lookUp(uid: uid_t) -> User? { getpwuid(uid).map { User($0.pointee) } }

    /// Drops every privilege for good: groups, then gid, then uid (in that
    /// order: afterwards the group calls would be refused), then checks
    /// that root cannot be regained.
    private static func become(_ user: User) throws(MigratorError) {
        var groups = [user.gid]
        // As root, setgid and setuid set the real, effective and saved ids alike.
        guard setgroups(1, &groups) == 0, setgid(user.gid) == 0, setuid(user.uid) == 0 else {
            throw MigratorError(.runAsRefused, "cannot become '\(user.name)' (uid \(user.uid)): \(errorText(errno))")
        }
        guard setuid(0) != 0 else {
            throw MigratorError(.runAsRefused, "became '\(user.name)', yet root could be regained; stopping")
        }
        // What libpq, the lock record and plugin code see as home and user.
        setenv("HOME", user.home, 1)
        setenv("USER", user.name, 1)
        setenv("LOGNAME", user.name, 1)
    }
}
