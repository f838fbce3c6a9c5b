#if canImport(Glibc)
import Glibc
#endif
import CLinux
import MXProtocol

/// One client connection. Its state is touched only on its reactor's thread; answers computed
/// elsewhere are posted there.
final class Connection: @unchecked Sendable {
    /// Output budget: stop reading while this many answer bytes wait, unsent or held behind an
    /// earlier unanswered request; read again once the client has taken half of it.
    static let outputBudget = 1 << 20

    enum State {
        /// Reads and executes requests.
        case reading
        /// Over the output budget: not reading until the client has read enough.
        case throttled
        /// No more requests (the peer half-closed, or sent an over-long line): answer what is in
        /// flight, send the closing notice if any, then close.
        case draining
        case closed
    }

    let fd: Int32
    let peer: PeerCredentials
    unowned let reactor: Reactor
    private(set) var state = State.reading
    /// The events epoll watches for this connection.
    private(set) var interest = EPOLLIN.rawValue
    /// Bytes read and not yet executed are `input[inputStart..<inputEnd]`. A line is at most
    /// `Wire.maxLineBytes` + CR + LF, so after moving a partial line to the front most of the
    /// buffer is free for the next read.
    private var input = [UInt8](repeating: 0, count: 16 * 1024)
    private var inputStart = 0
    private var inputEnd = 0
    private var output = OutputQueue()
    private var ordered = OrderedReplies()
    /// The streamed answer being sent: nothing else is queued for sending until its last page is.
    private var stream: (any ReplyStream)? { didSet { streaming = stream != nil } }
    /// `stream != nil`, without copying the existential on the hot path.
    private var streaming = false
    private var pageRequested = false
    /// Replies whose turn has come, waiting behind `stream` (empty whenever it is nil).
    private var waiting = FIFO<Reply>()
    private var waitingBytes = 0
    /// Requests read whose answer has not been completely sent (PROTOCOL.md §2).
    private var inFlight = 0
    /// `line_too_long`, sent after every earlier request has been answered.
    private var closingNotice: [UInt8]?

    init(fd: Int32, peer: PeerCredentials, reactor: Reactor) {
        self.fd = fd
        self.peer = peer
        self.reactor = reactor
    }

    private var queuedBytes: Int { output.unsent + ordered.heldBytes + waitingBytes }
    private var overBudget: Bool { queuedBytes > Self.outputBudget }

    func handleEvents(_ flags: UInt32) {
        if flags & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            // The peer is gone both ways: nobody will read an answer.
            disconnect()
            return
        }
        if flags & EPOLLOUT.rawValue != 0 { writeOutput() }
        if flags & EPOLLIN.rawValue != 0 && state == .reading { readInput() }
        settle()
    }

    /// The one place that decides, after anything happened, whether to read, resume or close.
    private func settle() {
        requestPage()
        decide: while true {
            switch state {
            case .reading:
                if overBudget { state = .throttled }
            case .throttled:
                guard queuedBytes < Self.outputBudget / 2 else { break }
                state = .reading
                executeLines()   // lines read before the pause; the socket itself is read on EPOLLIN
                writeOutput()
                continue decide
            case .draining:
                if inFlight == 0, let notice = closingNotice {
                    closingNotice = nil
                    inFlight += 1
                    queue(.answer(notice), ticket: nil)
                    writeOutput()
                }
                if inFlight == 0 && output.isEmpty {
                    disconnect()
                    return
                }
            case .closed:
                return
            }
            break
        }
        let wanted = (state == .reading ? EPOLLIN.rawValue : 0) | (output.isEmpty ? 0 : EPOLLOUT.rawValue)
        if wanted != interest {
            interest = wanted
            reactor.watch(fd, events: wanted)
        }
    }

    private func readInput() {
        while state == .reading && !overBudget {
            if inputStart > 0 {
                let partial = inputEnd - inputStart
                input.withUnsafeMutableBytes { b in _ = memmove(b.baseAddress!, b.baseAddress! + inputStart, partial) }
                inputStart = 0
                inputEnd = partial
            }
            let room = input.count - inputEnd
            let n = input.withUnsafeMutableBytes { read(fd, $0.baseAddress! + inputEnd, room) }
            if n > 0 {
                inputEnd += n
                // Answers to every line of this read go out in one send, not one per line.
                executeLines()
                writeOutput()
                if n < room { return }
            } else if n == 0 {
                state = .draining
                return
            } else {
                if errno != EAGAIN && errno != EINTR { disconnect() }
                return
            }
        }
    }

    /// Executes the complete lines in `input`, while reading and within the output budget.
    private func executeLines() {
        while state == .reading {
            guard let nl = nextNewline() else {
                if Self.tooLong(input[inputStart..<inputEnd]) { refuseLongLine() }
                return
            }
            let line = input[inputStart..<nl]
            inputStart = nl + 1
            if Self.tooLong(line) { refuseLongLine(); return }
            execute(line)
            if overBudget { return }
        }
    }

    private func nextNewline() -> Int? {
        let (start, end) = (inputStart, inputEnd)
        guard start < end else { return nil }
        return input.withUnsafeBytes { b -> Int? in
            memchr(b.baseAddress! + start, 0x0A, end - start).map { UnsafeRawPointer($0) - b.baseAddress! }
        }
    }

    /// Over `max_line` bytes, a CR before the LF not counted: a partial line is refused as soon as
    /// its 4097th byte is not that CR.
    static func tooLong(_ line: ArraySlice<UInt8>) -> Bool {
        line.count > Wire.maxLineBytes + 1 || (line.count == Wire.maxLineBytes + 1 && line.last != 0x0D)
    }

    /// Discards the input (and everything after the over-long line) and stops reading.
    private func refuseLongLine() {
        reactor.stats.protocolErrors.add(1)
        inputStart = 0
        inputEnd = 0
        closingNotice = ResponseLine.error(.lineTooLong, "request line longer than \(Wire.maxLineBytes) bytes; closing", id: nil)
        state = .draining
    }

    private func execute(_ line: ArraySlice<UInt8>) {
        let stats = reactor.stats
        stats.requests.add(1)
        let plain = PlainResolve(line)
        if let plain, answerHit(plain) { return }
        let request: Request
        // A plain line that was not a plain hit is already read: not parsed a second time.
        switch plain.map({ .success($0.request) }) ?? Request.parse(line) {
        case .success(let r):
            request = r
        case .failure(let e):
            stats.protocolErrors.add(1)
            inFlight += 1
            queue(.answer(ResponseLine.error(e.code, e.message, id: e.id)), ticket: e.id == nil ? ordered.reserve() : nil)
            return
        }
        inFlight += 1
        let ticket = request.id == nil ? ordered.reserve() : nil
        if inFlight > Wire.maxInFlight {
            stats.protocolErrors.add(1)
            queue(.answer(ResponseLine.error(.tooManyInFlight, "more than \(Wire.maxInFlight) requests in flight on this connection",
                                             id: request.id, json: request.json)), ticket: ticket)
            return
        }
        let reactor = self.reactor
        // `reply` runs inline for hits (on this reactor thread: no hop; the read loop sends) or
        // later, from any thread, for misses (posted to this reactor). Which one is decided by where
        // it runs, never by timing.
        reactor.handler.handle(request, peer: peer) { [self] reply in
            if reactor.isCurrent {
                queue(reply, ticket: ticket)
            } else {
                reactor.post { [self] in
                    queue(reply, ticket: ticket)
                    writeOutput()
                    settle()
                }
            }
        }
    }

    /// A plainly fresh cache hit, rendered straight into the output: no request, reply or closure
    /// built. Only where it would leave at once anyway: not behind an unanswered id-less request or a
    /// stream, and within the in-flight limit.
    private func answerHit(_ plain: PlainResolve) -> Bool {
        guard !streaming, plain.id != nil || ordered.isEmpty, inFlight < Wire.maxInFlight else { return false }
        let handler = reactor.handler
        guard output.appendAnswer({ handler.answerHit(plain, into: &$0) }) else { return false }
        inFlight += 1
        return true
    }

    /// Puts a reply in line: at once when its request had an id, else in request order.
    private func queue(_ reply: Reply, ticket: OrderedReplies.Ticket?) {
        guard state != .closed else { return }
        guard let ticket else { return send(reply) }
        ordered.fill(ticket, with: reply)
        ordered.drain { send($0) }
    }

    /// Sends a reply whose turn has come, or keeps it until the stream being sent has ended (the
    /// lines of one answer are contiguous, PROTOCOL.md §2).
    private func send(_ reply: Reply) {
        guard stream == nil else {
            waiting.append(reply)
            waitingBytes += reply.heldBytes
            return
        }
        switch reply {
        case .answer(let bytes): output.append(answer: bytes)
        case .stream(let s): stream = s; requestPage()
        }
    }

    /// Asks the stream for its next page while the output is under the budget: a client that does
    /// not read holds the budget and one page, not the whole answer.
    private func requestPage() {
        guard let stream, !pageRequested, state != .closed, output.unsent < Self.outputBudget else { return }
        pageRequested = true
        let reactor = self.reactor
        stream.nextPage { [self] page, last in
            reactor.post { [self] in received(page, last: last) }
        }
    }

    private func received(_ page: [UInt8], last: Bool) {
        pageRequested = false
        guard state != .closed else { return }
        output.append(page, endsAnswer: last)
        if last {
            stream = nil
            sendWaiting()
        }
        writeOutput()
        settle()
    }

    /// After a stream ended: sends what waited for it, up to the next stream.
    private func sendWaiting() {
        while stream == nil, let reply = waiting.popFirst() {
            waitingBytes -= reply.heldBytes
            send(reply)
        }
    }

    private func writeOutput() {
        guard state != .closed, !output.isEmpty else { return }
        switch output.write(to: fd) {
        case .sent(let answers): inFlight -= answers
        case .failed: disconnect()
        }
    }

    func disconnect() {
        guard state != .closed else { return }
        state = .closed
        input = []
        inputStart = 0
        inputEnd = 0
        output.removeAll()
        ordered.removeAll()
        stream = nil
        waiting.removeAll()
        waitingBytes = 0
        reactor.closed(self)
    }
}
