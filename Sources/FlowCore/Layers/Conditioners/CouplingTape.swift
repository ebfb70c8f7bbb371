/// A conditioner network whose training tape a layer keeps between its forward and backward
/// passes (``Bijection/tapeBytes(count:)``): the network's output (`rows × outFeatures`), then
/// the network's own tape (``tapeCount(rows:)`` scalars). ``MLP`` and ``ResidualMADE`` share
/// this layout.
protocol CouplingTaped<T>: AnyObject {
    associatedtype T: FlowScalar
    var outFeatures: Int { get }
    /// Scalars of the network's own tape over `rows` rows.
    func tapeCount(rows: Int) -> Int
}

extension CouplingTaped {
    /// Bytes of a coupling tape over `rows` rows: the output, then the network's tape.
    func couplingTapeBytes(rows: Int) -> Int {
        Arena.bytes(T.self, rows * outFeatures) + Arena.bytes(T.self, tapeCount(rows: rows))
    }

    /// The two parts of a coupling tape of ``couplingTapeBytes(rows:)`` bytes.
    @inline(__always)
    func couplingTapeParts(_ tape: UnsafeRawPointer, rows: Int) -> (output: UnsafeMutablePointer<T>,
                                                                    tape: UnsafeMutablePointer<T>) {
        let base = UnsafeMutableRawPointer(mutating: tape)
        return (base.assumingMemoryBound(to: T.self),
                (base + Arena.bytes(T.self, rows * outFeatures)).assumingMemoryBound(to: T.self))
    }
}
