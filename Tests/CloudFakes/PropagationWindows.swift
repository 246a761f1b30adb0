/// The fakes' eventual consistency: whether something made at some instant is still inside a
/// propagation window. The first look at each thing (`key`) always is, however slowly the
/// test machine got there, so every window is met at least once; after that, time decides.
/// Owned by one actor (a fake), so it needs no lock.
struct PropagationWindows: Sendable {
    private var firstLooks: Set<String> = []

    mutating func younger(_ made: ContinuousClock.Instant?, than window: Duration, key: String) -> Bool {
        guard let made, window > .zero else { return false }
        if firstLooks.insert(key).inserted { return true }
        return ContinuousClock.now - made < window
    }
}
