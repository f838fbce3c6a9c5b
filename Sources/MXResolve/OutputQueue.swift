#if canImport(Glibc)
import Glibc
#endif

/// Bytes a connection has to send, and where each answer in them ends: a request stays in flight
/// (PROTOCOL.md §2) until the last byte of its answer has been sent.
struct OutputQueue {
    private var bytes: [UInt8] = []
    private var start = 0
    /// Bytes dropped from the front of `bytes` so far: `bytes[i]` is byte `dropped + i` of the stream.
    private var dropped = 0
    /// Stream offsets just past each queued answer, oldest first.
    private var ends = FIFO<Int>()

    var unsent: Int { bytes.count - start }
    var isEmpty: Bool { start == bytes.count }

    mutating func append(answer: [UInt8]) { append(answer, endsAnswer: true) }

    /// Queues bytes of an answer; `endsAnswer` when they are its last (a streamed answer comes in pages).
    mutating func append(_ part: [UInt8], endsAnswer: Bool) {
        bytes.append(contentsOf: part)
        if endsAnswer { ends.append(dropped + bytes.count) }
    }

    /// Lets `render` append one whole answer in place; it returns false having appended nothing.
    mutating func appendAnswer(_ render: (inout [UInt8]) -> Bool) -> Bool {
        guard render(&bytes) else { return false }
        ends.append(dropped + bytes.count)
        return true
    }

    enum WriteResult { case sent(answers: Int), failed }

    /// Sends what the socket takes now; reports how many answers left completely.
    mutating func write(to fd: Int32) -> WriteResult {
        while start < bytes.count {
            let n = bytes[start...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                start += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                break
            } else {
                return .failed
            }
        }
        let sentUpTo = dropped + start
        var answers = 0
        while let end = ends.first, end <= sentUpTo { _ = ends.popFirst(); answers += 1 }
        compact()
        return .sent(answers: answers)
    }

    /// Keeps memory proportional to what is unsent, also under a reader that never lets it empty.
    private mutating func compact() {
        if start == bytes.count {
            dropped += start
            bytes.removeAll(keepingCapacity: bytes.capacity <= 64 * 1024)
            start = 0
        } else if start > 64 * 1024 && start > bytes.count / 2 {
            dropped += start
            bytes.removeFirst(start)
            start = 0
        }
    }

    mutating func removeAll() {
        bytes = []
        ends.removeAll()
        start = 0
    }
}
