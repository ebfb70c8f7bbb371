@testable import FlowCore
@testable import FlowModelFile

/// Spec fixtures shared by the test targets.
public enum Fixtures {
    /// A single-layer flow around `layer` (a spec object) for events of `shape`.
    public static func singleLayer(_ layer: [String: JSONValue], shape: [Int]) -> JSONValue {
        .object(["event_shape": JSONValue(shape), "layers": .array([.object(layer)])])
    }

    /// One spec object per layer configuration worth checking at dimension `d`.
    public static func layerConfigurations(dimension d: Int) -> [(String, [String: JSONValue])] {
        var configs: [(String, [String: JSONValue])] = [
            ("affine half", ["type": .string("affine_coupling"), "hidden": JSONValue([8, 8])]),
            ("affine tanh no clamp", ["type": .string("affine_coupling"), "hidden": JSONValue([8]),
                                      "activation": .string("tanh"), "clamp": .number(0)]),
            ("additive half", ["type": .string("additive_coupling"), "hidden": JSONValue([8])]),
            ("permutation reverse", ["type": .string("permutation"), "kind": .string("reverse")]),
            ("permutation random", ["type": .string("permutation"), "kind": .string("random")]),
            ("actnorm", ["type": .string("actnorm")]),
            ("lu_linear", ["type": .string("lu_linear")]),
            ("spline half", ["type": .string("spline_coupling"), "hidden": JSONValue([8, 8])]),
            ("spline tanh 5 bins bound 2", ["type": .string("spline_coupling"), "hidden": JSONValue([8]),
                                            "activation": .string("tanh"), "bins": .number(5), "bound": .number(2),
                                            "min_derivative": .number(0.01)]),
        ]
        if d > 1 {
            configs += [
                ("affine alternating inverted", ["type": .string("affine_coupling"), "mask": .string("alternating"),
                                                 "invert_mask": .bool(true), "hidden": JSONValue([8]),
                                                 "activation": .string("elu")]),
                ("affine explicit mask", ["type": .string("affine_coupling"),
                                          "mask": JSONValue((0..<d).map { $0 % 3 == 1 ? 1 : 0 }),
                                          "hidden": JSONValue([6, 5]), "activation": .string("softplus")]),
                ("additive alternating", ["type": .string("additive_coupling"), "mask": .string("alternating"),
                                          "hidden": JSONValue([8]), "activation": .string("silu")]),
                ("affine leaky", ["type": .string("affine_coupling"), "invert_mask": .bool(true),
                                  "hidden": JSONValue([]), "activation": .string("leaky_relu")]),
                ("spline alternating inverted", ["type": .string("spline_coupling"), "mask": .string("alternating"),
                                                 "invert_mask": .bool(true), "hidden": JSONValue([8]),
                                                 "activation": .string("elu"), "bins": .number(4)]),
                ("spline explicit mask", ["type": .string("spline_coupling"),
                                          "mask": JSONValue((0..<d).map { $0 % 3 == 1 ? 1 : 0 }),
                                          "hidden": JSONValue([6, 5]), "activation": .string("softplus"),
                                          "bins": .number(3), "bound": .number(4),
                                          "min_bin_width": .number(0.05), "min_bin_height": .number(0.02)]),
            ]
        }
        return configs
    }
}
