import ArgumentParser
import Foundation
import Logging
import NclavAWS
import NclavAzure
import NclavCLI
import NclavCore
import NclavDrivers
import NclavGCP
import NclavServer

extension CloudTarget: ExpressibleByArgument {}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the nclav API server and Terraform state backend.",
        discussion: """
            State is kept in $NCLAV_HOME/state.db (SQLite; NCLAV_HOME defaults to ~/.nclav) unless
            --ephemeral keeps it in memory or NCLAV_POSTGRES_URL / --postgres-url names a PostgreSQL
            database, which several replicas can share (one reconcile at a time across them). The admin token comes from NCLAV_TOKEN, else from
            $NCLAV_HOME/token, which is created (mode 0600) on first start and reused afterwards.
            SIGINT or SIGTERM stops the server gracefully: requests in flight finish and the store
            is closed. Log level: NCLAV_LOG_LEVEL (trace, debug, info, notice, warning, error).

            Examples:
              nclav serve --cloud local
              nclav serve --ephemeral --port 9090
              NCLAV_BIND=0.0.0.0 nclav serve
              NCLAV_POSTGRES_URL='postgres://nclav:…@db:5432/nclav?sslmode=verify-full' nclav serve --bind 0.0.0.0
            """
    )

    @Option(help: "Default cloud for enclaves without `cloud:` (local, gcp, azure, aws).")
    var cloud: CloudTarget = .local

    @Option(name: .customLong("enable-cloud"), help: "Register another cloud's driver too (repeatable).")
    var enableCloud: [CloudTarget] = []

    @Flag(help: "Keep state in memory only; it is lost when the server stops.")
    var ephemeral = false

    @Flag(name: .customLong("rotate-token"), help: "Replace the token file with a new token (existing clients must update).")
    var rotateToken = false

    @Option(help: "Address to bind (env NCLAV_BIND; default 127.0.0.1). Use 0.0.0.0 to listen on every interface.")
    var bind: String?

    @Option(help: "Port to listen on (env NCLAV_PORT; default 8080; 0 picks a free port).")
    var port: Int?

    @Option(name: .customLong("store-path"), help: "SQLite state file (env NCLAV_STORE_PATH; default $NCLAV_HOME/state.db).")
    var storePath: String?

    @Option(
        name: .customLong("postgres-url"),
        help: ArgumentHelp(
            "PostgreSQL store for hosted and multi-replica deployments (env NCLAV_POSTGRES_URL, preferred: a flag is visible in `ps`).",
            discussion:
                "postgres://user:password@host:5432/database?sslmode=verify-full&sslrootcert=/path/ca.pem; sslmode is one of disable, allow, prefer (default), require, verify-ca, verify-full."
        ))
    var postgresURL: String?

    @Option(name: .customLong("max-state-size"), help: "Largest state or lock body accepted, in bytes (default 268435456 = 256 MiB).")
    var maxStateSize: Int = 256 * 1024 * 1024

    @Option(name: .customLong("state-versions"), help: "State versions kept per partition (default 100).")
    var stateVersions: Int = 100

    @Option(name: .customLong("run-timeout"), help: "Seconds one terraform command may run before it is interrupted (default 1800).")
    var runTimeout: Int = 1800
    @Option(
        name: .customLong("idle-timeout"),
        help: "Seconds a connection may send nothing (headers included) while no answer is being written, before it is closed (default 60).")
    var idleTimeout: Int = 60

    @Option(
        name: .customLong("plan-lifetime"),
        help: "How long a saved plan (`nclav plan`) may be applied before it expires and is removed, e.g. 2h or 1d.")
    var planLifetime: String = "24h"
    @Option(
        name: .customLong("drift-interval"),
        help: "Check every applied partition for drift this often (90s, 30m, 6h, 1d); default: only on `nclav drift`.")
    var driftInterval: String?

    @Option(name: .customLong("run-grace-period"), help: "Seconds between the SIGINT and the SIGKILL that stop a run (default 60).")
    var runGracePeriod: Int = 60

    @Flag(
        name: .customLong("agents-only"),
        help: "Run no terraform here: runs (jobs in PostgreSQL's queue) are executed by `nclav agent` processes only (needs --postgres-url).")
    var agentsOnly = false

    @Option(
        name: .customLong("replica-workers"),
        help:
            "With PostgreSQL, every run is a job in its queue: terraform runs this replica executes at once, beside any agents (default 8; 0 is --agents-only)."
    )
    var replicaWorkers = 8

    @Option(
        name: .customLong("agent-lease"),
        help: "How long an agent holds a job without a heartbeat before the job counts as lost and is queued again (default 60s).")
    var agentLease: String = "60s"

    @Option(
        name: .customLong("agent-token-hash"),
        help:
            "Accept an agent token made elsewhere, given as <id>:<sha256 of its secret> (`nclav agent-token hash <token>` prints it; env NCLAV_AGENT_TOKEN_HASHES, comma-separated). Repeatable."
    )
    var agentTokenHashes: [String] = []

    @OptionGroup(title: "AWS driver (with --cloud aws or --enable-cloud aws)")
    var aws: AWSOptions

    @OptionGroup(title: "GCP driver (with --cloud gcp or --enable-cloud gcp)")
    var gcp: GCPOptions

    @OptionGroup(title: "Azure driver (with --cloud azure or --enable-cloud azure)")
    var azure: AzureOptions

    func validate() throws {
        if ([cloud] + enableCloud).contains(.aws) { _ = try aws.configuration(environment: ProcessInfo.processInfo.environment) }
        if ([cloud] + enableCloud).contains(.gcp) { _ = try gcp.configuration(environment: ProcessInfo.processInfo.environment) }
        if ([cloud] + enableCloud).contains(.azure) { _ = try azure.configuration(environment: ProcessInfo.processInfo.environment) }
        if ephemeral && (postgresURL != nil || storePath != nil) {
            throw ValidationError("--ephemeral keeps state in memory; it cannot be combined with --postgres-url or --store-path")
        }
        if postgresURL != nil && storePath != nil {
            throw ValidationError("choose one store: --postgres-url (PostgreSQL) or --store-path (SQLite), not both")
        }
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be between 0 and 65535, got \(port)") }
        if maxStateSize < 1024 { throw ValidationError("--max-state-size must be at least 1024 bytes") }
        if stateVersions < 1 { throw ValidationError("--state-versions must be at least 1") }
        if runTimeout < 1 { throw ValidationError("--run-timeout must be at least 1 second") }
        if idleTimeout < 1 { throw ValidationError("--idle-timeout must be at least 1 second") }
        if replicaWorkers < 0 { throw ValidationError("--replica-workers cannot be negative") }
        if runGracePeriod < 0 { throw ValidationError("--run-grace-period cannot be negative") }
        if ServerConfiguration.parseInterval(planLifetime) == nil {
            throw ValidationError("--plan-lifetime `\(planLifetime)` is not a duration; use e.g. 30m, 6h, 1d or 1h30m")
        }
        if agentsOnly && postgresURL == nil && (ProcessInfo.processInfo.environment["NCLAV_POSTGRES_URL"] ?? "").isEmpty {
            throw ValidationError("--agents-only needs the PostgreSQL store (--postgres-url or NCLAV_POSTGRES_URL): agents claim jobs from its queue")
        }
        if replicaWorkers != 8 && postgresURL == nil && (ProcessInfo.processInfo.environment["NCLAV_POSTGRES_URL"] ?? "").isEmpty {
            throw ValidationError(
                "--replica-workers needs the PostgreSQL store (--postgres-url or NCLAV_POSTGRES_URL): with SQLite every run happens in the server")
        }
        for registration in agentTokenRegistrations(ProcessInfo.processInfo.environment)
        where !ServerConfiguration.isAgentTokenRegistration(registration) {
            throw ValidationError("--agent-token-hash `\(registration.prefix(80))` is not <id>:<sha256>; `nclav agent-token hash <token>` prints it")
        }
        if !agentTokenRegistrations(ProcessInfo.processInfo.environment).isEmpty && postgresURL == nil
            && (ProcessInfo.processInfo.environment["NCLAV_POSTGRES_URL"] ?? "").isEmpty
        {
            throw ValidationError("--agent-token-hash needs the PostgreSQL store (--postgres-url or NCLAV_POSTGRES_URL), where agent tokens are kept")
        }
        guard let lease = ServerConfiguration.parseInterval(agentLease), lease >= .seconds(2) else {
            throw ValidationError("--agent-lease `\(agentLease)` is not a duration of at least 2s; use e.g. 30s, 1m or 5m")
        }
        if let driftInterval, ServerConfiguration.parseInterval(driftInterval) == nil {
            throw ValidationError("--drift-interval `\(driftInterval)` is not a duration; use e.g. 90s, 30m, 6h, 1d or 1h30m")
        }
    }

    /// `--agent-token-hash` values, then `NCLAV_AGENT_TOKEN_HASHES`.
    func agentTokenRegistrations(_ environment: [String: String]) -> [String] {
        agentTokenHashes
            + (environment["NCLAV_AGENT_TOKEN_HASHES"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    func run() async throws {
        // Everything the server writes (state database, token, later workspaces with tfvars)
        // can hold secrets: readable by this user only.
        umask(0o077)
        let environment = ProcessInfo.processInfo.environment
        let resolvedPort: Int
        if let port {
            resolvedPort = port
        } else if let text = environment["NCLAV_PORT"], !text.isEmpty {
            guard let value = Int(text), (0...65535).contains(value) else {
                throw ValidationError("NCLAV_PORT must be a port number between 0 and 65535, got `\(text)`")
            }
            resolvedPort = value
        } else {
            resolvedPort = 8080
        }
        let home = ServerConfiguration.home(environment: environment)
        let store: ServerConfiguration.StoreKind
        if ephemeral {
            store = .memory
        } else if let url = FlagOrEnvironment(environment).value(postgresURL, "NCLAV_POSTGRES_URL") {
            store = .postgres(url: url)
        } else {
            let path = FlagOrEnvironment(environment).value(storePath, "NCLAV_STORE_PATH") ?? home.appendingPathComponent("state.db").path
            store = .sqlite(path: path)
        }
        var configuration = ServerConfiguration(
            bindHost: FlagOrEnvironment(environment).value(bind, "NCLAV_BIND") ?? "127.0.0.1",
            port: resolvedPort, home: home, store: store, defaultCloud: cloud, enabledClouds: enableCloud,
            maxStateBytes: maxStateSize, retainedStateVersions: stateVersions, rotateToken: rotateToken)
        configuration.runTimeout = .seconds(runTimeout)
        configuration.planLifetime = ServerConfiguration.parseInterval(planLifetime) ?? .seconds(24 * 3600)
        configuration.idleTimeout = .seconds(idleTimeout)
        configuration.runGracePeriod = .seconds(runGracePeriod)
        configuration.driftInterval = driftInterval.flatMap(ServerConfiguration.parseInterval)
        configuration.agentsOnly = agentsOnly || replicaWorkers == 0
        configuration.replicaWorkers = replicaWorkers
        configuration.agentTokenRegistrations = agentTokenRegistrations(environment)
        configuration.agentLease = ServerConfiguration.parseInterval(agentLease) ?? .seconds(60)
        if ([cloud] + enableCloud).contains(.aws) {
            let settings = try aws.configuration(environment: environment)
            configuration.drivers.append(
                AWSDriver(
                    configuration: settings, chain: .standard(environment: environment),
                    endpoints: AWSEndpointResolver(environment: environment)))
        }
        if ([cloud] + enableCloud).contains(.gcp) {
            let settings = try gcp.configuration(environment: environment)
            let endpoints = GCPEndpoints(environment: environment)
            configuration.drivers.append(GCPDriver(configuration: settings, chain: .standard(environment: environment), endpoints: endpoints))
        }
        if ([cloud] + enableCloud).contains(.azure) {
            let settings = try azure.configuration(environment: environment)
            let chain = AzureCredentialChain.standard(
                tenantID: settings.tenantID, clientID: settings.clientID, clientSecret: settings.clientSecret, environment: environment)
            configuration.drivers.append(AzureDriver(configuration: settings, chain: chain, environment: environment))
        }

        let level = environment["NCLAV_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, level: level) }
        let logger = Logger(label: "nclav")
        do {
            try await NclavServer.run(configuration, environment: environment, logger: logger)
        } catch let error as NclavServer.StartError {
            throw CommandFailure(error.description)
        }
    }
}

/// `--aws-*` flags, each with its `NCLAV_AWS_*` variable.
struct AWSOptions: ParsableArguments {
    @Option(name: .customLong("aws-org-unit-id"), help: "OU new enclave accounts are moved into (env NCLAV_AWS_ORG_UNIT_ID; required for aws).")
    var orgUnitID: String?

    @Option(name: .customLong("aws-email-domain"), help: "Accounts are registered as <name>@<domain> (env NCLAV_AWS_EMAIL_DOMAIN; required for aws).")
    var emailDomain: String?

    @Option(name: .customLong("aws-default-region"), help: "Region for enclaves without `region:` (env NCLAV_AWS_DEFAULT_REGION; default us-east-1).")
    var defaultRegion: String?

    @Option(name: .customLong("aws-account-prefix"), help: "Prefix for account names: acme -> acme-<enclave> (env NCLAV_AWS_ACCOUNT_PREFIX).")
    var accountPrefix: String?

    @Option(
        name: .customLong("aws-cross-account-role"),
        help: "Role assumed inside enclave accounts (env NCLAV_AWS_CROSS_ACCOUNT_ROLE; default OrganizationAccountAccessRole).")
    var crossAccountRole: String?

    @Option(name: .customLong("aws-role-arn"), help: "Role assumed for the management (Organizations) calls (env NCLAV_AWS_ROLE_ARN).")
    var roleARN: String?

    @Option(
        name: .customLong("aws-partition-policy-arn"),
        help:
            "Policy attached to each partition's IAM role (repeatable; env NCLAV_AWS_PARTITION_POLICY_ARNS, comma-separated; default AdministratorAccess)."
    )
    var partitionPolicyARNs: [String] = []

    /// Flags win over environment variables; every problem is reported at once.
    func configuration(environment: [String: String]) throws -> AWSDriverConfiguration {
        let value = FlagOrEnvironment(environment).value
        var missing: [String] = []
        let ou = value(orgUnitID, "NCLAV_AWS_ORG_UNIT_ID")
        let domain = value(emailDomain, "NCLAV_AWS_EMAIL_DOMAIN")
        if ou == nil { missing.append("--aws-org-unit-id (or NCLAV_AWS_ORG_UNIT_ID): the OU enclave accounts go into, e.g. ou-ab12-cd345678") }
        if domain == nil { missing.append("--aws-email-domain (or NCLAV_AWS_EMAIL_DOMAIN): accounts are registered as <name>@<domain>") }
        if !missing.isEmpty { throw ValidationError("the aws driver needs:\n  " + missing.joined(separator: "\n  ")) }
        let policies =
            !partitionPolicyARNs.isEmpty
            ? partitionPolicyARNs
            : FlagOrEnvironment(environment).list("NCLAV_AWS_PARTITION_POLICY_ARNS")
        var settings = AWSDriverConfiguration(orgUnitID: ou!, emailDomain: domain!)
        if let region = value(defaultRegion, "NCLAV_AWS_DEFAULT_REGION") { settings.defaultRegion = region }
        settings.accountPrefix = value(accountPrefix, "NCLAV_AWS_ACCOUNT_PREFIX")
        if let role = value(crossAccountRole, "NCLAV_AWS_CROSS_ACCOUNT_ROLE") { settings.crossAccountRole = role }
        settings.managementRoleARN = value(roleARN, "NCLAV_AWS_ROLE_ARN")
        if !policies.isEmpty { settings.partitionPolicyARNs = policies }
        let problems = settings.problems()
        if !problems.isEmpty { throw ValidationError("the aws driver settings are not valid:\n  " + problems.joined(separator: "\n  ")) }
        return settings
    }
}

/// `--gcp-*` flags, each with its `NCLAV_GCP_*` variable.
struct GCPOptions: ParsableArguments {
    @Option(
        name: .customLong("gcp-parent"),
        help: "Parent of enclave projects: folders/<n> or organizations/<n> (env NCLAV_GCP_PARENT; required for gcp).")
    var parent: String?

    @Option(
        name: .customLong("gcp-billing-account"),
        help: "billingAccounts/XXXXXX-XXXXXX-XXXXXX linked to every enclave project (env NCLAV_GCP_BILLING_ACCOUNT; required for gcp).")
    var billingAccount: String?

    @Option(name: .customLong("gcp-project-prefix"), help: "Prefix for project ids: acme -> acme-<enclave> (env NCLAV_GCP_PROJECT_PREFIX).")
    var projectPrefix: String?

    @Option(
        name: .customLong("gcp-default-region"), help: "Region for enclaves without `region:` (env NCLAV_GCP_DEFAULT_REGION; default us-central1).")
    var defaultRegion: String?

    @Option(
        name: .customLong("gcp-partition-role"),
        help:
            "Project role given to each partition's service account (repeatable; env NCLAV_GCP_PARTITION_ROLES, comma-separated; default roles/owner)."
    )
    var partitionRoles: [String] = []

    func configuration(environment: [String: String]) throws -> GCPDriverConfiguration {
        let value = FlagOrEnvironment(environment).value
        var missing: [String] = []
        let parent = value(self.parent, "NCLAV_GCP_PARENT")
        let billing = value(billingAccount, "NCLAV_GCP_BILLING_ACCOUNT")
        if parent == nil { missing.append("--gcp-parent (or NCLAV_GCP_PARENT): folders/<number> or organizations/<number>") }
        if billing == nil { missing.append("--gcp-billing-account (or NCLAV_GCP_BILLING_ACCOUNT): billingAccounts/XXXXXX-XXXXXX-XXXXXX") }
        if !missing.isEmpty { throw ValidationError("the gcp driver needs:\n  " + missing.joined(separator: "\n  ")) }
        var settings = GCPDriverConfiguration(parent: parent!, billingAccount: billing!)
        settings.projectPrefix = value(projectPrefix, "NCLAV_GCP_PROJECT_PREFIX")
        if let region = value(defaultRegion, "NCLAV_GCP_DEFAULT_REGION") { settings.defaultRegion = region }
        let roles =
            !partitionRoles.isEmpty
            ? partitionRoles
            : FlagOrEnvironment(environment).list("NCLAV_GCP_PARTITION_ROLES")
        if !roles.isEmpty { settings.partitionRoles = roles }
        var problems = settings.problems()
        if let problem = GCPEndpoints(environment: environment).problem { problems.append(problem) }
        if !problems.isEmpty { throw ValidationError("the gcp driver settings are not valid:\n  " + problems.joined(separator: "\n  ")) }
        return settings
    }
}

/// `--azure-*` flags, each with its `NCLAV_AZURE_*` variable.
struct AzureOptions: ParsableArguments {
    @Option(name: .customLong("azure-tenant-id"), help: "Tenant (directory) id (env NCLAV_AZURE_TENANT_ID; required for azure).")
    var tenantID: String?

    @Option(
        name: .customLong("azure-management-group-id"),
        help: "Management group enclave subscriptions go into (env NCLAV_AZURE_MANAGEMENT_GROUP_ID; required for azure).")
    var managementGroupID: String?

    @Option(
        name: .customLong("azure-billing-account-name"), help: "MCA billing account name (env NCLAV_AZURE_BILLING_ACCOUNT_NAME; required for azure).")
    var billingAccountName: String?

    @Option(
        name: .customLong("azure-billing-profile-name"), help: "MCA billing profile name (env NCLAV_AZURE_BILLING_PROFILE_NAME; required for azure).")
    var billingProfileName: String?

    @Option(
        name: .customLong("azure-invoice-section-name"), help: "MCA invoice section name (env NCLAV_AZURE_INVOICE_SECTION_NAME; required for azure).")
    var invoiceSectionName: String?

    @Option(
        name: .customLong("azure-default-location"),
        help: "Location for enclaves without `region:` (env NCLAV_AZURE_DEFAULT_LOCATION; default eastus2).")
    var defaultLocation: String?

    @Option(
        name: .customLong("azure-subscription-prefix"),
        help: "Prefix for subscription aliases: myorg -> myorg-<enclave> (env NCLAV_AZURE_SUBSCRIPTION_PREFIX).")
    var subscriptionPrefix: String?

    @Option(
        name: .customLong("azure-client-id"),
        help: "Service principal client id (env NCLAV_AZURE_CLIENT_ID); without it: managed identity, then the Azure CLI.")
    var clientID: String?

    @Option(
        name: .customLong("azure-client-secret"),
        help: "Service principal secret (env NCLAV_AZURE_CLIENT_SECRET, preferred: a flag is visible in `ps`).")
    var clientSecret: String?

    @Option(
        name: .customLong("azure-oidc-issuer"),
        help:
            "OIDC issuer URL where `nclav platform azure-oidc-documents` output is published (env NCLAV_AZURE_OIDC_ISSUER); terraform then acts as each partition's own managed identity."
    )
    var oidcIssuer: String?

    func configuration(environment: [String: String]) throws -> AzureDriverConfiguration {
        let value = FlagOrEnvironment(environment).value
        let required: [(String?, String, String)] = [
            (tenantID, "NCLAV_AZURE_TENANT_ID", "--azure-tenant-id"),
            (managementGroupID, "NCLAV_AZURE_MANAGEMENT_GROUP_ID", "--azure-management-group-id"),
            (billingAccountName, "NCLAV_AZURE_BILLING_ACCOUNT_NAME", "--azure-billing-account-name"),
            (billingProfileName, "NCLAV_AZURE_BILLING_PROFILE_NAME", "--azure-billing-profile-name"),
            (invoiceSectionName, "NCLAV_AZURE_INVOICE_SECTION_NAME", "--azure-invoice-section-name"),
        ]
        let missing = required.filter { value($0.0, $0.1) == nil }.map { "\($0.2) (or \($0.1))" }
        if !missing.isEmpty { throw ValidationError("the azure driver needs:\n  " + missing.joined(separator: "\n  ")) }
        let values = required.map { value($0.0, $0.1)! }
        var settings = AzureDriverConfiguration(
            tenantID: values[0], managementGroupID: values[1], billingAccountName: values[2],
            billingProfileName: values[3], invoiceSectionName: values[4])
        if let location = value(defaultLocation, "NCLAV_AZURE_DEFAULT_LOCATION") { settings.defaultLocation = location }
        settings.subscriptionPrefix = value(subscriptionPrefix, "NCLAV_AZURE_SUBSCRIPTION_PREFIX")
        settings.clientID = value(clientID, "NCLAV_AZURE_CLIENT_ID")
        settings.clientSecret = value(clientSecret, "NCLAV_AZURE_CLIENT_SECRET")
        if let issuer = value(oidcIssuer, "NCLAV_AZURE_OIDC_ISSUER") {
            let keyFile = ServerConfiguration.home(environment: environment).appendingPathComponent("azure-oidc-key.pem")
            do { settings.workloadIdentityIssuer = try WorkloadIdentityIssuer.load(issuer: issuer, environment: environment, file: keyFile) } catch {
                throw ValidationError("--azure-oidc-issuer: \(error.description)")
            }
        }
        let problems = settings.problems()
        if !problems.isEmpty { throw ValidationError("the azure driver settings are not valid:\n  " + problems.joined(separator: "\n  ")) }
        return settings
    }
}

/// Flags win over environment variables; an empty variable counts as unset.
struct FlagOrEnvironment {
    let environment: [String: String]
    init(_ environment: [String: String]) { self.environment = environment }

    func value(_ flag: String?, _ variable: String) -> String? { flag ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 } }

    /// A comma-separated variable as a list (empty when unset).
    func list(_ variable: String) -> [String] {
        environment[variable].map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
    }
}
