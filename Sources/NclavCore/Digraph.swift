/// A small directed graph over comparable nodes, used for the partition dependency DAG:
/// cycle reporting (with the cycle's path) and dependency-ordered waves.
///
/// Every traversal visits nodes and neighbours in sorted order, so results never depend on
/// insertion or hashing order.
public struct Digraph<Node: Hashable & Comparable & Sendable>: Sendable {
    public private(set) var nodes: Set<Node> = []
    /// node → the nodes it depends on (edges point from dependent to dependency).
    public private(set) var dependencies: [Node: Set<Node>] = [:]

    public init() {}

    public mutating func addNode(_ node: Node) { nodes.insert(node) }

    /// Records that `dependent` must run after `dependency`.
    public mutating func addEdge(from dependent: Node, to dependency: Node) {
        nodes.insert(dependent)
        nodes.insert(dependency)
        dependencies[dependent, default: []].insert(dependency)
    }

    public func dependencies(of node: Node) -> [Node] { (dependencies[node] ?? []).sorted() }

    /// One representative cycle per strongly connected component that has one, each given as
    /// a path that starts and ends on the same (smallest) node: `[a, b, a]`.
    public func cycles() -> [[Node]] {
        var cycles: [[Node]] = []
        var reported: Set<Node> = []
        for component in stronglyConnectedComponents() {
            let members = Set(component)
            guard let start = component.min() else { continue }
            let selfLoop = dependencies[start]?.contains(start) ?? false
            guard component.count > 1 || selfLoop else { continue }
            guard reported.isDisjoint(with: members) else { continue }
            reported.formUnion(members)
            if let path = shortestPath(from: start, backTo: start, within: members) { cycles.append(path) }
        }
        return cycles.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Nodes grouped into waves: every node's dependencies are in earlier waves. Nodes on a
    /// cycle (and everything depending on them) are left out; `cycles()` reports those.
    public func waves() -> [[Node]] {
        var remaining = nodes
        var done: Set<Node> = []
        var result: [[Node]] = []
        while true {
            let ready = remaining.filter { (dependencies[$0] ?? []).isSubset(of: done) }.sorted()
            if ready.isEmpty { break }
            result.append(ready)
            done.formUnion(ready)
            remaining.subtract(ready)
        }
        return result
    }

    private func shortestPath(from start: Node, backTo target: Node, within members: Set<Node>) -> [Node]? {
        var previous: [Node: Node] = [:]
        var queue = [start]
        var head = 0
        var visited: Set<Node> = []
        while head < queue.count {
            let node = queue[head]
            head += 1
            for next in dependencies(of: node) where members.contains(next) {
                if next == target {
                    var path = [target]
                    var cursor: Node? = node
                    while let current = cursor, current != start {
                        path.append(current)
                        cursor = previous[current]
                    }
                    path.append(start)
                    return path.reversed()
                }
                if visited.insert(next).inserted {
                    previous[next] = node
                    queue.append(next)
                }
            }
        }
        return nil
    }

    /// Tarjan's algorithm, iterative so deep graphs cannot overflow the stack.
    private func stronglyConnectedComponents() -> [[Node]] {
        var index = 0
        var indices: [Node: Int] = [:]
        var lowlinks: [Node: Int] = [:]
        var onStack: Set<Node> = []
        var stack: [Node] = []
        var components: [[Node]] = []

        for root in nodes.sorted() where indices[root] == nil {
            var work: [(node: Node, neighbours: [Node], next: Int)] = []
            func open(_ node: Node) {
                indices[node] = index
                lowlinks[node] = index
                index += 1
                stack.append(node)
                onStack.insert(node)
                work.append((node, dependencies(of: node), 0))
            }
            open(root)
            while !work.isEmpty {
                let top = work.count - 1
                let (node, neighbours, next) = work[top]
                if next < neighbours.count {
                    work[top].next += 1
                    let neighbour = neighbours[next]
                    if indices[neighbour] == nil {
                        open(neighbour)
                    } else if onStack.contains(neighbour) {
                        lowlinks[node] = min(lowlinks[node]!, indices[neighbour]!)
                    }
                    continue
                }
                work.removeLast()
                if let parent = work.last?.node {
                    lowlinks[parent] = min(lowlinks[parent]!, lowlinks[node]!)
                }
                if lowlinks[node] == indices[node] {
                    var component: [Node] = []
                    while let member = stack.popLast() {
                        onStack.remove(member)
                        component.append(member)
                        if member == node { break }
                    }
                    components.append(component)
                }
            }
        }
        return components
    }
}
