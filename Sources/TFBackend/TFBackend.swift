/// TFBackend: the Terraform HTTP state protocol (state, locks, versions) over a store.
///
/// Not built yet (issue 3): the README's status table tracks it.
public enum TFBackendModule {
    public static let isBuilt = false
}
