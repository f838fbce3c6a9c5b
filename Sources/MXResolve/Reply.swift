/// What a request is answered with: its bytes, or a stream that produces them page by page.
public enum Reply: Sendable {
    case answer([UInt8])
    case stream(any ReplyStream)

    /// Bytes it holds while it waits its turn (a stream holds none until asked for a page).
    var heldBytes: Int {
        if case .answer(let bytes) = self { return bytes.count }
        return 0
    }
}

/// A long answer (a cache listing) produced off the reactor one page at a time. The connection
/// asks for the next page only once its output has drained below its budget, so a client that
/// does not read costs the budget and one page, whatever the size of the whole answer.
public protocol ReplyStream: Sendable {
    /// Produces the next page on another thread and hands it to `deliver` there; the page with
    /// `last` set ends the answer (and is never empty).
    func nextPage(_ deliver: @escaping @Sendable (_ page: [UInt8], _ last: Bool) -> Void)
}
