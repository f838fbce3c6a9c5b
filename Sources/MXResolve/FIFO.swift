/// A first-in first-out queue on an array: taking from the front is O(1), and the taken front is
/// dropped once it is most of the array, so memory follows what is queued, also when it never empties.
struct FIFO<Element> {
    /// Taken items are set to nil, so what they hold is freed at once.
    private var items: [Element?] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    var first: Element? { isEmpty ? nil : items[head] }

    mutating func append(_ item: Element) { items.append(item) }

    mutating func popFirst() -> Element? {
        guard !isEmpty else { return nil }
        let item = items[head]
        items[head] = nil
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: items.capacity <= 1024)
            head = 0
        } else if head > 64 && head > items.count / 2 {
            items.removeFirst(head)
            head = 0
        }
        return item
    }

    mutating func removeAll() {
        items = []
        head = 0
    }
}
