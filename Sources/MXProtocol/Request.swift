/// One request (§2): a verb, its positional arguments (decoded), its options and its id.
public struct Request: Sendable, Equatable {
    public var verb: Verb
    public var arguments: [String]
    public var options: [RequestOption: String]
    public var id: String?

    public init(_ verb: Verb, _ arguments: [String] = [], options: [RequestOption: String] = [:], id: String? = nil) {
        self.verb = verb
        self.arguments = arguments
        self.options = options
        self.id = id
    }

    public var json: Bool { options[.format] == "json" }
    public func flag(_ option: RequestOption) -> Bool { options[option] == "yes" }

    /// The request line a client sends (without LF): every argument and value %-escaped.
    /// Throws when it would be longer than the daemon reads (§1), so it is refused before sending.
    public func line() throws(LineTooLong) -> String {
        var parts = [verb.rawValue] + arguments.map(Wire.escapeArgument)
        for option in RequestOption.allCases { if let v = options[option] { parts.append("\(option.rawValue)=\(Wire.escape(v))") } }
        if let id { parts.append("id=\(Wire.escape(id))") }
        let text = parts.joined(separator: " ")
        guard text.utf8.count <= Wire.maxLineBytes else { throw LineTooLong(bytes: text.utf8.count) }
        return text
    }

    /// Requests of `verb` over `names`, as many names per line as fit in one line each.
    /// Throws only when a single name does not fit.
    public static func batches(_ verb: Verb, names: [String], options: [RequestOption: String] = [:]) throws(LineTooLong) -> [Request] {
        var out: [Request] = []
        var current = Request(verb, [], options: options)
        for name in names {
            var next = current
            next.arguments.append(name)
            if (try? next.line()) != nil { current = next; continue }
            guard !current.arguments.isEmpty else { _ = try next.line(); continue }
            out.append(current)
            current = Request(verb, [name], options: options)
            _ = try current.line()
        }
        if !current.arguments.isEmpty || out.isEmpty { out.append(current) }
        return out
    }
}

/// A request line longer than `Wire.maxLineBytes`.
public struct LineTooLong: Error, Sendable, CustomStringConvertible {
    public var bytes: Int
    public var description: String { "request line of \(bytes) bytes is longer than the protocol's \(Wire.maxLineBytes)" }
}

/// A request line that could not be parsed (always answered as a text `err` line).
public struct ParseError: Error, Sendable, Equatable {
    public var code: ErrorCode
    public var message: String
    public var id: String?

    public init(code: ErrorCode, message: String, id: String?) {
        self.code = code
        self.message = message
        self.id = id
    }
}

extension Request {
    /// Parses one request line (without its LF; a trailing CR is dropped here).
    public static func parse(_ line: ArraySlice<UInt8>) -> Result<Request, ParseError> {
        if let plain = PlainResolve(line) { return .success(plain.request) }
        var bytes = line
        if bytes.last == 0x0D { bytes = bytes.dropLast() }
        func bad(_ m: String, id: String? = nil) -> Result<Request, ParseError> { .failure(ParseError(code: .badRequest, message: m, id: id)) }
        for b in bytes where b < 0x20 || b == 0x7F {
            return bad("request contains control byte 0x\(String(b, radix: 16, uppercase: true))")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return bad("request is not valid UTF-8") }
        let tokens = text.split(separator: " ", omittingEmptySubsequences: true)
        guard let verbToken = tokens.first else { return bad("empty request line") }

        var arguments: [String] = []
        var options: [(key: String, value: String)] = []
        var id: String?
        var problem: String?
        for token in tokens.dropFirst() {
            if let eq = token.firstIndex(of: "=") {
                let key = String(token[..<eq])
                guard let value = Wire.percentDecode(token[token.index(after: eq)...]) else {
                    problem = problem ?? "bad %-escape in option \(key)"; continue
                }
                if key == "id" {
                    guard Wire.isValidID(value) else { return bad("invalid id: 1 to 64 characters of A-Z a-z 0-9 . _ -") }
                    if id != nil { problem = problem ?? "option id given twice" }
                    id = value
                    continue
                }
                if options.contains(where: { $0.key == key }) { problem = problem ?? "option \(key) given twice" }
                options.append((key, value))
            } else {
                guard let value = Wire.percentDecode(token) else { problem = problem ?? "bad %-escape in argument"; continue }
                arguments.append(value)
            }
        }
        guard let verb = Verb(rawValue: String(verbToken)) else {
            return .failure(ParseError(code: .unknownVerb, message: "unknown verb \"\(verbToken.prefix(64))\"", id: id))
        }
        if let problem { return bad(problem, id: id) }
        var typed: [RequestOption: String] = [:]
        for (key, value) in options {
            guard let option = RequestOption(rawValue: key), verb.options.contains(option) else {
                return bad("option \(key) is not valid for \(verb.rawValue)", id: id)
            }
            guard option.accepts(value, on: verb) else { return bad("invalid value for \(key): \(value.prefix(32))", id: id) }
            typed[option] = value
        }
        let range = verb.arguments
        guard range.contains(arguments.count) else {
            let wanted = range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) or more"
            return bad("\(verb.rawValue) takes \(wanted) argument(s), got \(arguments.count); usage: \(verb.synopsis)", id: id)
        }
        return .success(Request(verb, arguments, options: typed, id: id))
    }

    /// The hot path's common line (see `PlainResolve`) as a request; nil for any other line.
    public static func parsePlainResolve(_ bytes: ArraySlice<UInt8>) -> Request? {
        PlainResolve(bytes)?.request
    }
}
