/// PlatformTemplates: the bootstrap modules embedded in the binary.
///
/// Not built yet (issue 6): the README's status table tracks it.
public enum PlatformTemplatesModule {
    public static let isBuilt = false
}
