import FuzzCheck
import MXProtocol

// The request-line parser (MXProtocol/Request.swift) on any line. A request it accepts is one the
// protocol allows, and the line a client writes for it (`Request.line()`) parses back to it; the
// fast path for `resolve NAME [id=ID]` agrees with the general parser; escaping round trips.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestLine(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    switch Request.parse(bytes[...]) {
    case .success(let request):
        checkAccepted(request, bytes)
    case .failure(let error):
        require(!error.message.isEmpty, "error \(error.code) without a message")
        require(error.id.map(Wire.isValidID) ?? true, "error carries an invalid id \(String(describing: error.id))")
    }
    if let text = String(validating: bytes, as: UTF8.self) {
        require(Wire.percentDecode(Substring(Wire.escape(text))) == text, "escape does not round trip \(text.debugDescription)")
        let argument = Wire.escapeArgument(text)
        require(!argument.utf8.contains(where: { $0 <= 0x20 || $0 == 0x3D || $0 >= 0x7F }), "argument escape left \(argument.debugDescription)")
        require(Wire.percentDecode(Substring(argument)) == text, "argument escape does not round trip \(text.debugDescription)")
    }
    return 0
}

func checkAccepted(_ request: Request, _ bytes: [UInt8]) {
    require(request.verb.arguments.contains(request.arguments.count), "\(request.verb) with \(request.arguments.count) arguments")
    for (option, value) in request.options {
        require(request.verb.options.contains(option) && option.values(on: request.verb).contains(value), "\(request.verb) accepted \(option)=\(value)")
    }
    require(request.id.map(Wire.isValidID) ?? true, "accepted id \(String(describing: request.id))")

    // What a client writes for this request reads back as the same request.
    if let line = try? request.line() {
        let again = Request.parse(Array(line.utf8)[...])
        require(again == .success(request), "\(request) -> \(line.debugDescription) -> \(again)")
    }
    // The fast path's answer is the general parser's (a leading space skips the fast path).
    if let plain = Request.parsePlainResolve(bytes[...]) {
        let general = Request.parse(([0x20] + bytes)[...])
        require(general == .success(plain), "fast path \(plain), general parser \(general)")
    }
}
