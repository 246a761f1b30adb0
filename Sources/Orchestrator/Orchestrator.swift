/// Orchestrator: the planner (fingerprints → changes), the reconciler (partition DAG,
/// bounded parallel executor, teardown order) and the Driver protocol with DriverRegistry.
///
/// Not built yet (issue 4): the README's status table tracks it. The partition dependency
/// graph it will schedule from already exists as `TreeValidator.dependencyGraph(of:)`.
public enum OrchestratorModule {
    public static let isBuilt = false
}
