/// The part of URL handling that well-known redirects need: an https URL (host, optional port,
/// path, optional query) and RFC 3986 §5 reference resolution for a `Location` header.
struct HTTPSURL: Sendable, Hashable {
    /// Lower-cased host name, or an IP literal without brackets.
    var host: String
    var port: UInt16?
    /// Starts with "/".
    var path: String
    /// Without the "?"; nil when the URL has none.
    var query: String?

    init(host: String, port: UInt16?, path: String, query: String? = nil) {
        self.host = host
        self.port = port
        self.path = path
        self.query = query
    }

    var text: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "https://\(h)\(port.map { ":\($0)" } ?? "")\(path)\(query.map { "?\($0)" } ?? "")"
    }

    /// The host when it is an IP literal (connected to as it is, with no DNS query).
    var ipLiteral: IPAddress? { IPAddress(host) }

    struct Problem: Error {
        var code: String
        var message: String
    }

    /// RFC 3986 §5.2.2: the target of `location` (absolute, scheme-relative, absolute-path,
    /// relative-path or query-only) with self as the base. The fragment is dropped (it is never
    /// sent); a scheme other than https, credentials, and characters a URL cannot hold are refused.
    func resolving(_ location: String) -> Result<HTTPSURL, Problem> {
        let trimmed = location.trimmingSpaces
        if let bad = trimmed.unicodeScalars.first(where: { $0.value <= 0x20 || $0.value >= 0x7F }) {
            return .failure(Problem(code: "wellknown_bad_redirect",
                                    message: "the Location holds a character a URL cannot (U+\(String(bad.value, radix: 16, uppercase: true)))"))
        }
        let r = Reference(trimmed)
        if let scheme = r.scheme {
            guard scheme.lowercased() == "https" else {
                return .failure(Problem(code: "wellknown_redirect_not_https", message: "only https redirects are followed, not \(scheme.lowercased())"))
            }
        }
        if let authority = r.authority {
            return Self.parseAuthority(authority).map { host, port in
                HTTPSURL(host: host, port: port, path: Self.removeDotSegments(r.path.isEmpty ? "/" : r.path), query: r.query)
            }
        }
        if r.scheme != nil {
            return .failure(Problem(code: "wellknown_bad_redirect", message: "an https URL without a host"))
        }
        if r.path.isEmpty {
            return .success(HTTPSURL(host: host, port: port, path: path, query: r.query ?? query))
        }
        let merged = r.path.hasPrefix("/") ? r.path : path[...(path.lastIndex(of: "/") ?? path.startIndex)].dropLast() + "/" + r.path
        return .success(HTTPSURL(host: host, port: port, path: Self.removeDotSegments(String(merged)), query: r.query))
    }

    /// RFC 3986 §3 split of a reference: scheme, authority, path, query (fragment dropped).
    struct Reference {
        var scheme: String?
        var authority: String?
        var path: String
        var query: String?

        init(_ text: String) {
            var rest = Substring(text)
            if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
            if let q = rest.firstIndex(of: "?") {
                query = String(rest[rest.index(after: q)...])
                rest = rest[..<q]
            }
            // A scheme is letters, digits, "+", "-", "." before the first ":", and starts with a letter;
            // a ":" after a "/" belongs to the path.
            if let colon = rest.firstIndex(of: ":"), let first = rest.first, first.isASCII, first.isLetter,
               rest[..<colon].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }) {
                scheme = String(rest[..<colon])
                rest = rest[rest.index(after: colon)...]
            }
            if rest.hasPrefix("//") {
                rest = rest.dropFirst(2)
                let slash = rest.firstIndex(of: "/") ?? rest.endIndex
                authority = String(rest[..<slash])
                rest = rest[slash...]
            }
            path = String(rest)
        }
    }

    static func parseAuthority(_ authority: String) -> Result<(String, UInt16?), Problem> {
        if authority.contains("@") {
            return .failure(Problem(code: "wellknown_bad_redirect", message: "credentials in a redirect URL are refused"))
        }
        guard let name = try? ServerName(parsing: authority) else {
            return .failure(Problem(code: "wellknown_bad_redirect", message: "redirect host '\(authority.prefix(100))' is not a valid host"))
        }
        return .success((name.hostForTLS.lowercased(), name.port))
    }

    /// RFC 3986 §5.2.4.
    static func removeDotSegments(_ input: String) -> String {
        var segments: [Substring] = []
        let parts = input.split(separator: "/", omittingEmptySubsequences: false)
        for (i, part) in parts.enumerated() {
            let last = i == parts.count - 1
            switch part {
            case ".":
                if last { segments.append("") }
            case "..":
                if segments.count > 1 { segments.removeLast() }
                if last { segments.append("") }
            default:
                segments.append(part)
            }
        }
        let joined = segments.joined(separator: "/")
        return joined.hasPrefix("/") ? joined : "/" + joined
    }
}
