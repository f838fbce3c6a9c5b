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
    /// Stream offsets just past each queued answer, oldest first (from `endsHead` on).
    private var ends: [Int] = []
    private var endsHead = 0

    var unsent: Int { bytes.count - start }
    var isEmpty: Bool { start == bytes.count }

    mutating func append(answer: [UInt8]) {
        bytes.append(contentsOf: answer)
        ends.append(dropped + bytes.count)
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
        while endsHead < ends.count && ends[endsHead] <= sentUpTo { endsHead += 1; answers += 1 }
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
        if endsHead == ends.count {
            ends.removeAll(keepingCapacity: ends.capacity <= 1024)
            endsHead = 0
        } else if endsHead > 64 && endsHead > ends.count / 2 {
            ends.removeFirst(endsHead)
            endsHead = 0
        }
    }

    mutating func removeAll() {
        bytes = []
        ends = []
        start = 0
        endsHead = 0
    }
}
