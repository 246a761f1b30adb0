/// nclav's version, one constant for the CLI, the server's `/status` and `/metrics`, and the
/// client's user agent.
public enum NclavVersion {
    public static let current = "0.1.0"
}
