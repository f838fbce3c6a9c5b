/// Answers to id-less requests leave in request order (PROTOCOL.md §2): a FIFO of slots, one per
/// id-less request, filled as answers arrive; a filled slot leaves once every slot before it has.
struct OrderedReplies {
    typealias Ticket = Int

    private var slots: [Reply?] = []
    /// Index in `slots` of the oldest answer not yet handed out.
    private var head = 0
    /// Ticket of `slots[0]`.
    private var firstTicket = 0
    /// Bytes of answers that arrived but wait behind an earlier, unanswered request.
    private(set) var heldBytes = 0

    /// No id-less request is waiting for its answer to leave.
    var isEmpty: Bool { head == slots.count }

    /// Reserves the next place in line.
    mutating func reserve() -> Ticket {
        slots.append(nil)
        return firstTicket + slots.count - 1
    }

    mutating func fill(_ ticket: Ticket, with reply: Reply) {
        slots[ticket - firstTicket] = reply
        heldBytes += reply.heldBytes
    }

    /// Hands out, in request order, every answer no longer waiting for an earlier one.
    mutating func drain(_ send: (Reply) -> Void) {
        while head < slots.count, let reply = slots[head] {
            heldBytes -= reply.heldBytes
            slots[head] = .answer([])
            send(reply)
            head += 1
        }
        if head == slots.count {
            firstTicket += head
            slots.removeAll(keepingCapacity: slots.capacity <= 1024)
            head = 0
        } else if head > 64 && head > slots.count / 2 {
            firstTicket += head
            slots.removeFirst(head)
            head = 0
        }
    }

    mutating func removeAll() {
        firstTicket += slots.count
        slots = []
        head = 0
        heldBytes = 0
    }
}
