#if canImport(Glibc)
import Glibc
#endif

/// A property every input must satisfy. A violation prints what was expected and aborts: libFuzzer
/// treats the abort as a crash and writes the input to `crash-*` for a regression test.
public func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                    file: StaticString = #fileID, line: UInt = #line) {
    if condition() { return }
    let report = Array("property violated at \(file):\(line): \(message())\n".utf8)
    _ = report.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    abort()
}

/// What a parser accepted, or nil when it rejected the input: a rejection must say why (an error
/// whose description is not empty).
public func accepted<T>(_ parse: () throws -> T, _ input: @autoclosure () -> String) -> T? {
    do {
        return try parse()
    } catch {
        let why = (error as? CustomStringConvertible)?.description ?? ""
        require(!why.isEmpty, "an error without a message for \(input())")
        return nil
    }
}

/// The fuzzer's input as bytes (libFuzzer owns the memory only for the call).
public func fuzzInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> [UInt8] {
    Array(UnsafeBufferPointer(start: data, count: size))
}
