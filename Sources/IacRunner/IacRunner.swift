/// IacRunner: workspace rendering and the terraform/tofu process runner.
///
/// Not built yet (issue 4): the README's status table tracks it.
public enum IacRunnerModule {
    public static let isBuilt = false
}
