import Foundation

/// Asks before a command changes or removes something: on a terminal the user must type
/// `yes`; off a terminal (a script, CI) the command refuses unless `--yes` was given.
enum Confirmation {
    /// - Parameters:
    ///   - action: what would happen, for the refusal ("destroy enclave shop").
    ///   - question: the prompt, ending before "Type `yes` …".
    ///   - declined: the error when the answer is not `yes` ("nothing destroyed").
    static func require(_ action: String, question: String, declined: String, yes: Bool) throws {
        guard !yes else { return }
        guard isatty(STDIN_FILENO) != 0 else { throw CommandFailure("refusing to \(action) without confirmation; pass --yes") }
        print("\(question) Type `yes` to confirm: ", terminator: "")
        guard readLine()?.trimmingCharacters(in: .whitespaces) == "yes" else { throw CommandFailure(declined) }
    }
}
