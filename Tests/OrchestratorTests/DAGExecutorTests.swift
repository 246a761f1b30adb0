import Foundation
import NclavTestSupport
import Orchestrator
import Testing

@Suite("DAG executor")
struct DAGExecutorTests {
    /// Counts how many runs overlap and records the order runs start and end in.
    actor Tracker {
        private(set) var running = 0
        private(set) var mostAtOnce = 0
        private(set) var events: [String] = []
        func start(_ node: Int) {
            running += 1
            mostAtOnce = max(mostAtOnce, running)
            events.append("start \(node)")
        }
        func end(_ node: Int) {
            running -= 1
            events.append("end \(node)")
        }
        func index(_ event: String) -> Int? { events.firstIndex(of: event) }
    }

    /// A random DAG: node i depends on some nodes below it.
    static func graph(seed: UInt64, size: Int) -> [Int: [Int]] {
        var random = SeededGenerator(seed: seed)
        var edges: [Int: [Int]] = [:]
        for node in 0..<size {
            edges[node] = (0..<node).filter { _ in random.chance(0.15) }
        }
        return edges
    }

    @Test("every node runs once, after all its dependencies finished, never more than the parallelism at once")
    func orderAndBound() async throws {
        for seed in 1...30 as ClosedRange<UInt64> {
            let edges = Self.graph(seed: seed, size: 25)
            let tracker = Tracker()
            let parallelism = Int(seed % 4) + 1
            let executor = DAGExecutor<Int, Int>(nodes: edges.keys, parallelism: parallelism) { edges[$0] ?? [] }
            let result = await executor.run { node, upstream in
                #expect(Set(upstream.keys) == Set(edges[node] ?? []), "seed \(seed): \(node) decided before its dependencies finished")
                return .run {
                    await tracker.start(node)
                    try? await Task.sleep(for: .milliseconds(Int.random(in: 0...3)))
                    await tracker.end(node)
                    return node * 10
                }
            }
            #expect(result.outcomes.count == 25 && result.unreached.isEmpty, "seed \(seed)")
            #expect(result.outcomes.allSatisfy { $0.value == $0.key * 10 })
            #expect(await tracker.mostAtOnce <= parallelism, "seed \(seed)")
            for (node, dependencies) in edges {
                for dependency in dependencies {
                    let ended = try #require(await tracker.index("end \(dependency)"))
                    let started = try #require(await tracker.index("start \(node)"))
                    #expect(ended < started, "seed \(seed): \(node) started before \(dependency) ended")
                }
            }
        }
    }

    @Test("nodes resolved without work unlock their dependents, and work behind them is collected")
    func resolvedRootsUnlockWork() async throws {
        // The shape of the defect the hand-rolled loop had: every root is decided without work,
        // the middle node has work, and the leaf depends on the middle one.
        let edges: [String: [String]] = ["root-a": [], "root-b": [], "middle": ["root-a", "root-b"], "leaf": ["middle"]]
        let executor = DAGExecutor<String, String>(nodes: edges.keys, parallelism: 2) { edges[$0] ?? [] }
        var finished: [String] = []
        let result = await executor.run(
            decide: { node, upstream in
                switch node {
                case "root-a", "root-b": return .resolved("unchanged")
                case "leaf": return .run { "ran after middle said \(upstream["middle"] ?? "nothing")" }
                default: return .run { "ran" }
                }
            }, finished: { node, _ in finished.append(node) })
        #expect(result.outcomes["middle"] == "ran")
        #expect(result.outcomes["leaf"] == "ran after middle said ran")
        #expect(result.order == ["root-a", "root-b", "middle", "leaf"])
        #expect(finished == result.order)
    }

    @Test("cancelling the caller reaches every running task and starts nothing more")
    func cancellation() async throws {
        let edges: [Int: [Int]] = [0: [], 1: [], 2: [0], 3: [1], 4: [2, 3]]
        let executor = DAGExecutor<Int, String>(nodes: edges.keys, parallelism: 2) { edges[$0] ?? [] }
        let started = Tracker()
        let task = Task {
            await executor.run { node, _ in
                .run {
                    await started.start(node)
                    do { try await Task.sleep(for: .seconds(30)) } catch { return "cancelled" }
                    return "finished"
                }
            }
        }
        while await started.running < 2 { try await Task.sleep(for: .milliseconds(5)) }
        task.cancel()
        let result = await task.value
        #expect(result.outcomes == [0: "cancelled", 1: "cancelled"], "both running tasks saw the cancellation and were collected")
        #expect(result.unreached == [2, 3, 4])
    }
}
