import FuzzCheck
import MXCore

// The well-known body rules (MXCore/WellKnownBody.swift) on any body, and on a well-formed body
// around any string: the body path must agree exactly with the server-name grammar.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWellKnown(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    switch WellKnownBody.delegation(from: bytes) {
    case .success(let name):
        require((try? ServerName(parsing: name.raw)) == name, "delegation \(name.raw.debugDescription) does not re-validate")
    case .failure(let problem):
        require(problem.code.hasPrefix("wellknown_") && !problem.description.isEmpty, "problem without code or message")
    }
    if let text = String(validating: bytes, as: UTF8.self) {
        checkAgreesWithGrammar(text)
    }
    return 0
}

/// `{"m.server": text}` is a delegation to exactly what `ServerName(parsing: text)` says.
func checkAgreesWithGrammar(_ text: String) {
    let body = Array("{\"m.server\":\(jsonString(text))}".utf8)
    let viaBody = WellKnownBody.delegation(from: body)
    do {
        let direct = try ServerName(parsing: text)
        require(viaBody == .success(direct), "body gave \(viaBody), the grammar \(direct) for \(text.debugDescription)")
    } catch {
        require(viaBody == .failure(.invalidMServer(text, error)),
                "body gave \(viaBody), the grammar \(error) for \(text.debugDescription)")
    }
}

/// A JSON string literal (RFC 8259 §7), written here rather than by the parser under test.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where u.value < 0x20:
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}
