import MXCore

/// The line protocol of proto/PROTOCOL.md: request parsing and response rendering.
/// Pure functions over bytes; the socket server calls them on the thread that read the line.
public enum Wire {
    public static let protocolVersion = 1
    public static let maxLineBytes = 4096
    public static let maxInFlight = 256
    public static let serverVersion = "0.1.0"

    public struct Request: Sendable, Equatable {
        public var verb: String
        public var arguments: [String]
        public var options: [String: String]
        public var id: String?

        public var json: Bool { options["format"] == "json" }
        public func flag(_ key: String) -> Bool { options[key] == "yes" }
    }

    /// A request that could not be parsed (always answered as a text `err` line).
    public struct ParseError: Error, Sendable, Equatable {
        public var code: String
        public var message: String
        public var id: String?
    }

    static let knownVerbs: Set<String> = ["hello", "ping", "version", "resolve", "show-cache", "flush-caches",
                                          "revalidate", "statistics", "reset-statistics"]
    static let optionValues: [String: Set<String>] = [
        "cache": ["yes", "no"], "trace": ["yes", "no"], "failures": ["yes", "no"], "format": ["text", "json"],
    ]
    static let verbOptions: [String: Set<String>] = [
        "resolve": ["cache", "trace", "format"], "show-cache": ["failures", "format"],
        "flush-caches": ["failures"], "statistics": ["format"],
    ]

    /// Parses one request line (without its LF; a trailing CR is dropped here).
    public static func parse(_ line: ArraySlice<UInt8>) -> Result<Request, ParseError> {
        var bytes = line
        if bytes.last == 0x0D { bytes = bytes.dropLast() }
        if let plain = parsePlainResolve(bytes) { return .success(plain) }
        func bad(_ m: String, id: String? = nil) -> Result<Request, ParseError> { .failure(ParseError(code: "bad_request", message: m, id: id)) }
        for b in bytes where b < 0x20 || b == 0x7F {
            return bad("request contains control byte 0x\(String(b, radix: 16, uppercase: true))")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return bad("request is not valid UTF-8") }
        let tokens = text.split(separator: " ", omittingEmptySubsequences: true)
        guard let verbToken = tokens.first else { return bad("empty request line") }
        let verb = String(verbToken)

        var arguments: [String] = []
        var options: [String: String] = [:]
        var id: String?
        var problem: String?
        for token in tokens.dropFirst() {
            if let eq = token.firstIndex(of: "=") {
                let key = String(token[..<eq])
                guard let value = percentDecode(token[token.index(after: eq)...]) else {
                    problem = problem ?? "bad %-escape in option \(key)"; continue
                }
                if key == "id" {
                    guard isValidID(value) else { return bad("invalid id: 1 to 64 characters of A-Z a-z 0-9 . _ -") }
                    if id != nil { problem = problem ?? "option id given twice" }
                    id = value
                    continue
                }
                if options[key] != nil { problem = problem ?? "option \(key) given twice" }
                options[key] = value
            } else {
                guard let value = percentDecode(token) else { problem = problem ?? "bad %-escape in argument"; continue }
                arguments.append(value)
            }
        }
        guard knownVerbs.contains(verb) else {
            return .failure(ParseError(code: "unknown_verb", message: "unknown verb \"\(verb.prefix(64))\"", id: id))
        }
        if let problem { return bad(problem, id: id) }
        let allowed = verbOptions[verb] ?? []
        for (key, value) in options {
            guard allowed.contains(key) else { return bad("option \(key) is not valid for \(verb)", id: id) }
            guard optionValues[key]?.contains(value) == true else { return bad("invalid value for \(key): \(value.prefix(32))", id: id) }
        }
        let argumentRange: ClosedRange<Int>
        switch verb {
        case "hello": argumentRange = 1...1
        case "resolve": argumentRange = 1...1
        case "show-cache": argumentRange = 0...1
        case "flush-caches": argumentRange = 0...10_000
        case "revalidate": argumentRange = 1...10_000
        default: argumentRange = 0...0
        }
        guard argumentRange.contains(arguments.count) else {
            return bad("\(verb) takes \(argumentRange.lowerBound == argumentRange.upperBound ? "\(argumentRange.lowerBound)" : "\(argumentRange.lowerBound) or more") argument(s), got \(arguments.count)", id: id)
        }
        return .success(Request(verb: verb, arguments: arguments, options: options, id: id))
    }

    static let resolvePrefix = Array("resolve ".utf8)

    /// The hot path's common line, `resolve NAME` or `resolve NAME id=ID`, with plain visible ASCII
    /// and no escapes: parsed without the general machinery. Anything else returns nil and goes
    /// through `parse`, which gives the same result for these lines (the vectors check both).
    static func parsePlainResolve(_ bytes: ArraySlice<UInt8>) -> Request? {
        guard bytes.count > resolvePrefix.count, bytes.starts(with: resolvePrefix) else { return nil }
        let rest = bytes.dropFirst(resolvePrefix.count)
        var space: Int?
        for i in rest.indices {
            let b = rest[i]
            if b == 0x20 {
                if space != nil { return nil }
                space = i
            } else if b < 0x21 || b > 0x7E || b == 0x25 {
                return nil
            }
        }
        let nameBytes = rest[rest.startIndex..<(space ?? rest.endIndex)]
        guard !nameBytes.isEmpty, !nameBytes.contains(0x3D) else { return nil }
        var id: String?
        if let space {
            let token = rest[(space + 1)...]
            guard token.count > 3, token.starts(with: [0x69, 0x64, 0x3D]) else { return nil }   // "id="
            let value = String(decoding: token.dropFirst(3), as: UTF8.self)
            guard isValidID(value) else { return nil }
            id = value
        }
        return Request(verb: "resolve", arguments: [String(decoding: nameBytes, as: UTF8.self)], options: [:], id: id)
    }

    static func isValidID(_ s: String) -> Bool {
        (1...64).contains(s.utf8.count) && s.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D
        }
    }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }

    public static func percentDecode(_ s: Substring) -> String? {
        guard s.utf8.contains(0x25) else { return String(s) }
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == 0x25 {
                guard let h = it.popFirst().flatMap(hexValue), let l = it.popFirst().flatMap(hexValue) else { return nil }
                out.append(h << 4 | l)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    /// Escapes a value: bytes outside 0x21–0x7E and `%` become %XX (upper-case hex).
    public static func escape(_ s: String, into out: inout [UInt8]) {
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            if b > 0x20 && b < 0x7F && b != 0x25 {
                out.append(b)
            } else {
                out.append(0x25); out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 0xF)])
            }
        }
    }

    public static func escape(_ s: String) -> String {
        var out: [UInt8] = []
        escape(s, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Builds `status [id=..] key=value...` lines.
    public struct LineBuilder {
        public var bytes: [UInt8]
        public init(_ status: String, id: String?) {
            bytes = Array(status.utf8)
            bytes.reserveCapacity(256)
            if let id { field("id", id) }
        }
        public mutating func field(_ key: String, _ value: String) {
            bytes.append(0x20)
            bytes.append(contentsOf: key.utf8)
            bytes.append(0x3D)
            Wire.escape(value, into: &bytes)
        }
        public mutating func field(_ key: String, _ value: Int) {
            bytes.append(0x20)
            bytes.append(contentsOf: key.utf8)
            bytes.append(0x3D)
            bytes.append(contentsOf: String(value).utf8)
        }
        /// Appends pre-rendered ` key=value` text (already escaped).
        public mutating func raw(_ pre: [UInt8]) { bytes.append(contentsOf: pre) }
        public func line() -> [UInt8] { bytes + [0x0A] }
    }

    public static func errorLine(code: String, message: String, id: String?) -> [UInt8] {
        var b = LineBuilder("err", id: id)
        b.field("code", code)
        b.field("msg", message)
        return b.line()
    }

    public static func jsonErrorLine(code: String, message: String, id: String?) -> [UInt8] {
        var o = JSONObject()
        o.bool("ok", false)
        if let id { o.string("id", id) }
        var e = JSONObject()
        e.string("code", code)
        e.string("message", message)
        o.raw("error", e.text)
        return Array((o.text + "\n").utf8)
    }
}

/// A tiny JSON object writer (ordered keys, correct string escaping), so answers need no encoder.
public struct JSONObject {
    private var parts: [String] = []
    public init() {}
    public mutating func string(_ key: String, _ value: String) { parts.append("\(JSONObject.quote(key)):\(JSONObject.quote(value))") }
    public mutating func optionalString(_ key: String, _ value: String?) {
        parts.append("\(JSONObject.quote(key)):\(value.map(JSONObject.quote) ?? "null")")
    }
    public mutating func int(_ key: String, _ value: Int) { parts.append("\(JSONObject.quote(key)):\(value)") }
    public mutating func bool(_ key: String, _ value: Bool) { parts.append("\(JSONObject.quote(key)):\(value)") }
    public mutating func raw(_ key: String, _ json: String) { parts.append("\(JSONObject.quote(key)):\(json)") }
    public var text: String { "{" + parts.joined(separator: ",") + "}" }

    public static func array(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x2028 || u.value == 0x2029 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
