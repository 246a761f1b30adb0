/// Runs the nodes of a dependency graph: each node once, only after every node it depends on
/// has finished, at most `parallelism` at a time. It knows nothing of what the nodes are.
///
/// For each node whose dependencies have all finished, `decide` is asked what to do with the
/// outcomes of those dependencies in hand. A node decided without work (`.resolved`) finishes
/// at once, without a task; a node that has work (`.run`) gets a child task when a slot is
/// free. Every started task is awaited and its outcome collected before `run` returns, and
/// cancelling the calling task cancels every child task and starts no further work: nodes not
/// started by then are returned as `unreached`.
///
/// Correct by construction: one loop decides what is ready, starts what fits, then waits for
/// exactly one running task; it stops only when nothing is ready, queued or running.
public struct DAGExecutor<Node: Hashable & Comparable & Sendable, Outcome: Sendable>: Sendable {
    public enum Decision: Sendable {
        /// The node needs no work; this is its outcome.
        case resolved(Outcome)
        /// The node's work, run on a child task.
        case run(@Sendable () async -> Outcome)
    }

    public struct Result: Sendable {
        /// Every finished node's outcome.
        public var outcomes: [Node: Outcome]
        /// Nodes in the order they finished.
        public var order: [Node]
        /// Nodes never decided: behind a cycle, or not started before cancellation.
        public var unreached: [Node]
    }

    public let nodes: [Node]
    /// node → the nodes it waits for. Dependencies outside `nodes` are ignored.
    public let dependencies: [Node: [Node]]
    public let parallelism: Int

    public init(nodes: some Sequence<Node>, parallelism: Int, dependencies: (Node) -> [Node]) {
        let all = Array(Set(nodes)).sorted()
        let known = Set(all)
        var edges: [Node: [Node]] = [:]
        for node in all { edges[node] = Array(Set(dependencies(node).filter { known.contains($0) })).sorted() }
        self.nodes = all
        self.dependencies = edges
        self.parallelism = max(1, parallelism)
    }

    /// `decide` and `finished` run on the calling task, one node at a time and in dependency
    /// order, so they may keep state without locks; only `.run` closures run concurrently.
    public func run(
        decide: (Node, [Node: Outcome]) async -> Decision,
        finished: (Node, Outcome) async -> Void = { _, _ in }
    ) async -> Result {
        var waitingFor: [Node: Int] = [:]
        var dependents: [Node: [Node]] = [:]
        for node in nodes {
            let upstream = dependencies[node] ?? []
            waitingFor[node] = upstream.count
            for dependency in upstream { dependents[dependency, default: []].append(node) }
        }
        var ready = nodes.filter { waitingFor[$0] == 0 }
        var queued: [(Node, @Sendable () async -> Outcome)] = []
        var outcomes: [Node: Outcome] = [:]
        var order: [Node] = []

        await withTaskGroup(of: (Node, Outcome).self) { group in
            var running = 0
            func resolve(_ node: Node, _ outcome: Outcome) async {
                outcomes[node] = outcome
                order.append(node)
                await finished(node, outcome)
                for dependent in dependents[node] ?? [] {
                    waitingFor[dependent]! -= 1
                    if waitingFor[dependent] == 0 { ready.append(dependent) }
                }
            }
            while true {
                // Decide everything that is ready; nodes resolved here may make more ready.
                while !ready.isEmpty && !Task.isCancelled {
                    ready.sort()
                    let node = ready.removeFirst()
                    var upstream: [Node: Outcome] = [:]
                    for dependency in dependencies[node] ?? [] { upstream[dependency] = outcomes[dependency] }
                    switch await decide(node, upstream) {
                    case .resolved(let outcome): await resolve(node, outcome)
                    case .run(let work): queued.append((node, work))
                    }
                }
                while running < parallelism && !queued.isEmpty && !Task.isCancelled {
                    let (node, work) = queued.removeFirst()
                    running += 1
                    group.addTask { (node, await work()) }
                }
                guard running > 0, let (node, outcome) = await group.next() else { break }
                running -= 1
                await resolve(node, outcome)
            }
        }
        let unreached = nodes.filter { outcomes[$0] == nil }
        return Result(outcomes: outcomes, order: order, unreached: unreached)
    }
}
