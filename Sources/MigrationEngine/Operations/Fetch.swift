import CCurl

#if canImport(Glibc)
import Glibc
#endif

/// How a bundle is fetched over HTTPS.
public struct FetchOptions: Sendable {
    /// A PEM file of the CA certificates to trust instead of the system's
    /// (a private CA). Verification is never turned off.
    public var caFile: String?
    /// Seconds to wait for a connection (default 10).
    public var connectTimeout: Double = 10
    /// Seconds the whole transfer may take, each attempt (default 120).
    public var totalTimeout: Double = 120
    /// The largest body accepted (default: the largest bundle, 1 GiB).
    public var maxSize = Bundles.maxSize
    /// Attempts after the first, for connection errors, timeouts, truncated
    /// bodies and 5xx answers (never for 4xx or TLS): default 3, waiting
    /// 0.5 s, 1 s, 2 s between them.
    public var retries = 3
    /// The first wait between attempts, doubled each time.
    public var backoff: Double = 0.5

    /// The defaults; see each property.
    public init() {}
}

/// HTTPS GET through libcurl (Debian's `libcurl4`): TLS verified against the
/// system's trust store or ``FetchOptions/caFile``, https only (redirects
/// included), bounded in time and size, retried with backoff where a retry
/// can help. Each failure has its own code.
enum Fetch {
    /// libcurl's global state, set up once for the process.
    private static let initialized: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    /// The body at `url`.
    /// - Throws: `.fetchFailed` for a URL that is not `https://`; `.fetchDNS`,
    ///   `.fetchConnect`, `.fetchTimeout`, `.fetchTLS`, `.fetchHTTPStatus`,
    ///   `.fetchTooLarge`, `.fetchTruncated`, `.fetchInsecureRedirect`.
    static func get(_ url: String, options: FetchOptions) throws(MigratorError) -> [UInt8] {
        try request(url, post: nil, options: options)
    }

    /// POSTs `json` to `url` under the same rules; the answer must be 2xx.
    static func post(_ url: String, json: [UInt8], options: FetchOptions) throws(MigratorError) {
        _ = try request(url, post: json, options: options)
    }

    private static func request(_ url: String, post: [UInt8]?, options: FetchOptions) throws(MigratorError) -> [UInt8] {
        guard url.lowercased().hasPrefix("https://") else {
            throw MigratorError(.fetchFailed, "'\(url)': only https:// URLs are fetched")
        }
        guard initialized else { throw MigratorError(.fetchFailed, "libcurl could not be initialized") }
        var attempt = 0
        while true {
            let result = once(url, post, options)
            switch result {
            case .success(let body): return body
            case .failure(let failure):
                // A POST is sent again only if it surely never arrived: no duplicate reports.
                let safe = post == nil || [.fetchConnect, .fetchDNS].contains(failure.error.code)
                guard failure.retryable, safe, attempt < options.retries else { throw failure.error }
                usleep(useconds_t(options.backoff * Double(1 << attempt) * 1_000_000))
                attempt += 1
            }
        }
    }

    private struct Failure: Error {
        let error: MigratorError
        let retryable: Bool
    }

    /// What the write callback fills.
    private final class Body {
        var bytes: [UInt8] = []
        let limit: Int
        var overflowed = false
        init(limit: Int) { self.limit = limit }
    }

    private static func once(_ url: String, _ post: [UInt8]?, _ options: FetchOptions) -> Result<[UInt8], Failure> {
        guard let c = curl_easy_init() else {
            return .failure(Failure(error: MigratorError(.fetchFailed, "libcurl: no handle"), retryable: false))
        }
        defer { curl_easy_cleanup(c) }
        let body = Body(limit: options.maxSize)
        // Freed after the handle (the deferred cleanups run in reverse): libcurl
        // writes the error buffer and reads the headers until then.
        var headers: UnsafeMutablePointer<curl_slist>?
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer {
            errorBuffer.deallocate()
            curl_slist_free_all(headers)
        }
        let configured = { () -> Bool in
            var ok = true
            func set(_ r: CURLcode) { ok = ok && r == CURLE_OK }
            set(migrator_curl_set_string(c, CURLOPT_URL, url))
            set(migrator_curl_set_string(c, CURLOPT_PROTOCOLS_STR, "https"))
            set(migrator_curl_set_string(c, CURLOPT_REDIR_PROTOCOLS_STR, "https"))
            set(migrator_curl_set_long(c, CURLOPT_FOLLOWLOCATION, 1))
            set(migrator_curl_set_long(c, CURLOPT_MAXREDIRS, 5))
            set(migrator_curl_set_long(c, CURLOPT_SSL_VERIFYPEER, 1))
            set(migrator_curl_set_long(c, CURLOPT_SSL_VERIFYHOST, 2))
            if let ca = options.caFile {
                // Instead of the system's store, not besides it.
                set(migrator_curl_set_string(c, CURLOPT_CAINFO, ca))
                set(migrator_curl_set_pointer(c, CURLOPT_CAPATH, nil))
            }
            set(migrator_curl_set_long(c, CURLOPT_CONNECTTIMEOUT_MS, Int(options.connectTimeout * 1000)))
            set(migrator_curl_set_long(c, CURLOPT_TIMEOUT_MS, Int(options.totalTimeout * 1000)))
            set(migrator_curl_set_long(c, CURLOPT_MAXFILESIZE, options.maxSize))
            // No signals from libcurl's resolver: the run forwards its own.
            set(migrator_curl_set_long(c, CURLOPT_NOSIGNAL, 1))
            set(migrator_curl_set_string(c, CURLOPT_USERAGENT, "migrator/\(runnerVersion)"))
            set(migrator_curl_set_pointer(c, CURLOPT_ERRORBUFFER, errorBuffer))
            if let post {
                headers = curl_slist_append(nil, "Content-Type: application/json")
                set(migrator_curl_set_pointer(c, CURLOPT_HTTPHEADER, headers))
                set(migrator_curl_set_long(c, CURLOPT_POSTFIELDSIZE, post.count))
                // Copied by libcurl, so the array need not outlive this call.
                post.withUnsafeBytes {
                    set(
                        migrator_curl_set_pointer(
                            c, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)))
                }
            }
            set(migrator_curl_set_pointer(c, CURLOPT_WRITEDATA, Unmanaged.passUnretained(body).toOpaque()))
            set(
                migrator_curl_set_write(c) { data, size, count, context in
                    guard let data, let context else { return 0 }
                    let body = Unmanaged<Body>.fromOpaque(context).takeUnretainedValue()
                    let n = size * count
                    guard body.bytes.count + n <= body.limit else {
                        body.overflowed = true
                        return 0  // libcurl stops: CURLE_WRITE_ERROR
                    }
                    data.withMemoryRebound(to: UInt8.self, capacity: n) {
                        body.bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: n))
                    }
                    return n
                })
            return ok
        }()
        guard configured else {
            return .failure(
                Failure(error: MigratorError(.fetchFailed, "libcurl refused an option for '\(url)'"), retryable: false))
        }
        // The body is used by the write callback through an unretained pointer.
        let code = withExtendedLifetime(body) { curl_easy_perform(c) }
        let detail = String(cString: errorBuffer)
        let why = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        func fail(_ code: MigratorError.Code, _ text: String, retry: Bool) -> Result<[UInt8], Failure> {
            .failure(Failure(error: MigratorError(code, "fetching '\(url)': \(text)"), retryable: retry))
        }
        switch code {
        case CURLE_OK: break
        case CURLE_COULDNT_RESOLVE_HOST: return fail(.fetchDNS, "the host name does not resolve (\(why))", retry: true)
        case CURLE_COULDNT_CONNECT: return fail(.fetchConnect, "cannot connect (\(why))", retry: true)
        case CURLE_OPERATION_TIMEDOUT: return fail(.fetchTimeout, "timed out (\(why))", retry: true)
        case CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_GOT_NOTHING:
            return fail(.fetchTruncated, "the body ended early (\(why))", retry: true)
        case CURLE_FILESIZE_EXCEEDED:
            return fail(.fetchTooLarge, "the body is larger than \(options.maxSize) bytes", retry: false)
        case CURLE_WRITE_ERROR where body.overflowed:
            return fail(.fetchTooLarge, "the body is larger than \(options.maxSize) bytes", retry: false)
        case CURLE_UNSUPPORTED_PROTOCOL:
            return fail(
                .fetchInsecureRedirect, "refused a redirect to another protocol than https (\(why))", retry: false)
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM,
            CURLE_SSL_CIPHER, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS:
            return fail(.fetchTLS, "TLS failed, nothing was read (\(why))", retry: false)
        default: return fail(.fetchFailed, why, retry: false)
        }
        var status = 0
        _ = migrator_curl_get_long(c, CURLINFO_RESPONSE_CODE, &status)
        switch status {
        case 200: return .success(body.bytes)
        case 201...299 where post != nil: return .success(body.bytes)
        case 500...599: return fail(.fetchHTTPStatus, "the server answered \(status)", retry: true)
        default: return fail(.fetchHTTPStatus, "the server answered \(status)", retry: false)
        }
    }
}
