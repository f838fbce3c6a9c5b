import COpenSSL

/// OpenSSL's per-thread error queue.
public enum OpenSSLErrors {
    /// The oldest queued error (the root cause) as text, nil when none is queued; the queue is cleared.
    public static func takeOldest() -> String? {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
