/// Space-to-depth by 2×2 (RealNVP, Glow): `[C, H, W] → [4C, H/2, W/2]`, log|det J| = 0.
///
/// Channel order (Glow's `squeeze2d`, PyTorch's `pixel_unshuffle`): output channel
/// `4c + 2dy + dx` at `(i, j)` holds input channel `c` at `(2i + dy, 2j + dx)`.
/// H and W must be even. - Complexity: O(N·C·H·W) copies.
public final class Squeeze<Scalar: FlowScalar>: FlowLayer {
    public static var typeName: String { "squeeze" }
    public static var hyperParameters: [HyperParameter] { [] }

    public let inputShape: [Int]
    public let outputShape: [Int]
    let channels: Int, height: Int, width: Int

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        guard eventShape.count == 3 else {
            throw FlowError.invalidSpec("squeeze needs image events [C, H, W], got \(eventShape)")
        }
        let (c, h, w) = (eventShape[0], eventShape[1], eventShape[2])
        guard h % 2 == 0, w % 2 == 0 else {
            throw FlowError.invalidSpec("squeeze needs an even height and width, got \(h)×\(w)")
        }
        channels = c
        height = h
        width = w
        inputShape = eventShape
        outputShape = [4 * c, h / 2, w / 2]
    }

    public var config: [String: JSONValue] { ["type": .string(Self.typeName)] }
    public var parameters: [Parameter<Scalar>] { [] }
    public func workspaceBytes(count: Int) -> Int { Arena.bytes(Scalar.self, eventSize) }
    public func backwardWorkspaceBytes(count: Int) -> Int { workspaceBytes(count: count) }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        shuffle(x, count: count, squeeze: true, arena: &arena)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        shuffle(z, count: count, squeeze: false, arena: &arena)
    }

    /// A permutation: the gradient moves backwards the way the values moved forwards.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        shuffle(g, count: count, squeeze: false, arena: &arena)
    }

    /// Moves every row between the `[C, H, W]` and the squeezed layout.
    @inline(__always)
    private func shuffle(_ x: UnsafeMutablePointer<Scalar>, count: Int, squeeze: Bool, arena: inout Arena) {
        let size = eventSize, h2 = height / 2, w2 = width / 2
        let tmp = arena.take(Scalar.self, size)
        for r in 0..<count {
            let row = x + r * size
            tmp.update(from: row, count: size)
            for c in 0..<channels {
                for dy in 0..<2 {
                    for dx in 0..<2 {
                        let oc = 4 * c + 2 * dy + dx
                        for i in 0..<h2 {
                            let src = c * height * width + (2 * i + dy) * width + dx
                            let dst = oc * h2 * w2 + i * w2
                            if squeeze {
                                for j in 0..<w2 { row[dst + j] = tmp[src + 2 * j] }
                            } else {
                                for j in 0..<w2 { row[src + 2 * j] = tmp[dst + j] }
                            }
                        }
                    }
                }
            }
        }
    }
}
