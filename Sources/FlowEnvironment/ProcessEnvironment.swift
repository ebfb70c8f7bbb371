import FlowCore
#if canImport(Glibc)
import Glibc
#endif

/// The process environment's side of ``RuntimeConfiguration``: the one place the `SWIFTFLOWS_*`
/// variables are read. The engine (FlowCore) reads no environment; the hosts — the C library,
/// the command-line tool, the benchmark harness — install this configuration once, before their
/// first flow.
extension RuntimeConfiguration {
    /// The configuration the process environment gives (the variables of
    /// ``RuntimeConfiguration``'s table), read on first use.
    public static let processEnvironment: RuntimeConfiguration = {
        var values: [String: String] = [:]
        for name in variables {
            if let p = getenv(name) { values[name] = String(cString: p) }
        }
        return RuntimeConfiguration(environment: values)
    }()
}

extension FlowRuntime {
    /// Installs ``RuntimeConfiguration/processEnvironment`` as ``FlowRuntime/configuration``, once
    /// per process (later calls do nothing, so a thread count set afterwards stays).
    public static func configureFromProcessEnvironment() { _ = installedFromEnvironment }
}

private let installedFromEnvironment: Void = {
    FlowRuntime.configuration = RuntimeConfiguration.processEnvironment
}()
