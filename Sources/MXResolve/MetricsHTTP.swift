/// The HTTP side of the metrics endpoint, without I/O: where a request head ends, and the answer to
/// it. Only `GET` (and `HEAD`) of `/metrics` is served; every answer closes the connection.
public enum MetricsHTTP {
    /// What a connection's bytes so far hold.
    public enum Head: Equatable, Sendable {
        case incomplete
        /// The head ends before this index (after its blank line).
        case complete(end: Int)
        /// No blank line within the limit.
        case tooLarge
    }

    /// Finds the blank line ending a request head (CRLF CRLF, or bare LF LF from lenient clients).
    public static func scan(_ bytes: [UInt8], limit: Int) -> Head {
        var i = 0
        while i < bytes.count && i < limit {
            if bytes[i] == 0x0A {
                if i + 1 < bytes.count && bytes[i + 1] == 0x0A { return .complete(end: i + 2) }
                if i + 2 < bytes.count && bytes[i + 1] == 0x0D && bytes[i + 2] == 0x0A { return .complete(end: i + 3) }
            }
            i += 1
        }
        return bytes.count >= limit ? .tooLarge : .incomplete
    }

    /// The answer to a complete request head; `metrics` renders the body of a 200.
    public static func response(to head: ArraySlice<UInt8>, metrics: () -> String) -> [UInt8] {
        let firstLine = head.prefix { $0 != 0x0A && $0 != 0x0D }
        let parts = firstLine.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(isTokenByte),
              !parts[1].isEmpty, parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return status(400, "Bad Request", body: "malformed request line\n")
        }
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            return version.hasPrefix("HTTP/") ? status(505, "HTTP Version Not Supported", body: "HTTP/1.1 or HTTP/1.0 only\n")
                                              : status(400, "Bad Request", body: "malformed request line\n")
        }
        let method = String(decoding: parts[0], as: UTF8.self)
        let path = String(decoding: parts[1].prefix { $0 != 0x3F }, as: UTF8.self)   // up to "?"
        guard path == "/metrics" else { return status(404, "Not Found", body: "mxresolved serves only /metrics\n") }
        guard method == "GET" || method == "HEAD" else {
            return status(405, "Method Not Allowed", headers: ["Allow: GET, HEAD"], body: "only GET and HEAD\n")
        }
        return status(200, "OK", contentType: PrometheusText.contentType, body: metrics(), headOnly: method == "HEAD")
    }

    /// A whole response: status line, headers, body (left out for HEAD, its length still given).
    public static func status(_ code: Int, _ reason: String, headers: [String] = [], contentType: String = "text/plain; charset=utf-8",
                              body: String, headOnly: Bool = false) -> [UInt8] {
        let bodyBytes = Array(body.utf8)
        var head = "HTTP/1.1 \(code) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bodyBytes.count)\r\n"
        for h in headers { head += "\(h)\r\n" }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + (headOnly ? [] : bodyBytes)
    }

    /// RFC 9110 tchar.
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        default: return Array("!#$%&'*+-.^_`|~".utf8).contains(b)
        }
    }
}
