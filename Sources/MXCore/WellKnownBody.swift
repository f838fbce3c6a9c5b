/// Reads `m.server` from a well-known response body: "servers parsing the response should assume
/// that the body is JSON regardless of type". Any problem is a reason for the well-known to have
/// failed (step 4), never for resolution to fail.
public enum WellKnownBody {
    public enum Problem: Error, Sendable, Equatable, CustomStringConvertible {
        case notUTF8
        case tooDeep
        case invalidJSON
        case notAnObject
        case missingMServer
        case mServerNotAString
        case invalidMServer(String, ServerNameError)

        public var code: String {
            switch self {
            case .notUTF8, .invalidJSON, .tooDeep: return "wellknown_invalid_json"
            case .notAnObject: return "wellknown_not_object"
            case .missingMServer: return "wellknown_missing_m_server"
            case .mServerNotAString: return "wellknown_m_server_not_string"
            case .invalidMServer: return "wellknown_invalid_m_server"
            }
        }

        public var description: String {
            switch self {
            case .notUTF8: return "body is not UTF-8"
            case .tooDeep: return "body nests JSON deeper than \(WellKnownBody.maxDepth) levels"
            case .invalidJSON: return "body is not valid JSON"
            case .notAnObject: return "body is JSON but not an object"
            case .missingMServer: return "JSON object has no \"m.server\""
            case .mServerNotAString: return "\"m.server\" is not a string"
            case .invalidMServer(let s, let e): return "\"m.server\" \(s.debugDescription.prefix(80)) is not a valid server name: \(e)"
            }
        }
    }

    /// Deep nesting is refused before parsing, so a hostile body cannot exhaust the parser's stack.
    static let maxDepth = 32

    public static func delegation(from body: [UInt8]) -> Result<ServerName, Problem> {
        guard String(validating: body, as: UTF8.self) != nil else { return .failure(.notUTF8) }
        guard nestingDepth(body) <= maxDepth else { return .failure(.tooDeep) }
        let value: JSONValue
        do {
            value = try JSONValue.parse(body, duplicateKeys: .lastWins)
        } catch {
            return .failure(.invalidJSON)
        }
        guard let object = value.object else { return .failure(.notAnObject) }
        guard let mServer = object["m.server"] else { return .failure(.missingMServer) }
        guard let text = mServer.string else { return .failure(.mServerNotAString) }
        do {
            return .success(try ServerName(parsing: text))
        } catch {
            return .failure(.invalidMServer(text, error))
        }
    }

    /// Maximum bracket nesting outside strings.
    static func nestingDepth(_ body: [UInt8]) -> Int {
        var depth = 0, maxSeen = 0, inString = false, escaped = false
        for b in body {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1; maxSeen = max(maxSeen, depth)
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            default: break
            }
        }
        return maxSeen
    }
}
