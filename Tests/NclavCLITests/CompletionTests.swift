import Foundation
import NclavTestSupport
import Testing

@Suite("nclav completion")
struct CompletionTests {
    @Test("bash, zsh and fish scripts complete every command; another shell is a usage error naming the three")
    func scripts() throws {
        for (shell, marker) in [("bash", "complete -o filenames -F"), ("zsh", "#compdef nclav"), ("fish", "complete -c 'nclav'")] {
            let result = try TestSupport.run(TestSupport.nclavBinary.path, ["completion", shell])
            #expect(result.exitCode == 0)
            #expect(result.stdout.contains(marker), "\(shell): \(result.stdout.prefix(300))")
            for command in ["plan", "apply", "destroy", "completion"] { #expect(result.stdout.contains(command), "\(shell) lacks \(command)") }
        }
        let other = try TestSupport.run(TestSupport.nclavBinary.path, ["completion", "powershell"])
        #expect(other.exitCode == 64)
        #expect(other.stderr.contains("'zsh', 'bash' or 'fish'"))
    }
}
