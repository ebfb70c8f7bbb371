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
        configs += [
            ("maf affine", ["type": .string("affine_autoregressive"), "hidden": JSONValue([8, 8])]),
            ("iaf affine reversed tanh", ["type": .string("affine_autoregressive"), "direction": .string("iaf"),
                                          "order": .string("reversed"), "hidden": JSONValue([7]),
                                          "activation": .string("tanh")]),
            ("maf spline", ["type": .string("spline_autoregressive"), "hidden": JSONValue([8]), "bins": .number(4)]),
            ("maf affine soft scale", ["type": .string("affine_autoregressive"), "hidden": JSONValue([6]),
                                       "scale": .string("soft"), "clamp": .number(3)]),
            ("affine coupling sigmoid scale", ["type": .string("affine_coupling"), "hidden": JSONValue([6]),
                                               "scale": .string("sigmoid")]),
            // nflows' residual MADE.
            ("maf affine residual", ["type": .string("affine_autoregressive"), "hidden": JSONValue([8]),
                                     "residual_blocks": .number(2)]),
            ("iaf affine residual reversed tanh", ["type": .string("affine_autoregressive"), "direction": .string("iaf"),
                                                   "order": .string("reversed"), "hidden": JSONValue([7, 7]),
                                                   "residual_blocks": .number(1), "activation": .string("tanh")]),
            ("maf spline residual", ["type": .string("spline_autoregressive"), "hidden": JSONValue([6]),
                                     "residual_blocks": .number(2), "bins": .number(3), "activation": .string("softplus")]),
            ("maf affine residual sigmoid scale", ["type": .string("affine_autoregressive"), "hidden": JSONValue([5]),
                                                   "residual_blocks": .number(1), "scale": .string("sigmoid"),
                                                   "activation": .string("elu")]),
            ("maf affine residual soft scale wide", ["type": .string("affine_autoregressive"), "hidden": JSONValue([32]),
                                                     "residual_blocks": .number(1), "scale": .string("soft"), "clamp": .number(3)]),
        ]
        if d > 1 {
            configs += [
                ("maf affine random order, no hidden layer", ["type": .string("affine_autoregressive"),
                                                              "order": .string("random"), "hidden": JSONValue([Int]()),
                                                              "clamp": .number(0)]),
                ("iaf spline random order", ["type": .string("spline_autoregressive"), "direction": .string("iaf"),
                                             "order": .string("random"), "hidden": JSONValue([6, 5]),
                                             "activation": .string("softplus"), "bins": .number(3),
                                             "bound": .number(4)]),
                ("iaf spline residual random order", ["type": .string("spline_autoregressive"), "direction": .string("iaf"),
                                                      "order": .string("random"), "hidden": JSONValue([6]),
                                                      "residual_blocks": .number(2), "activation": .string("silu"),
                                                      "bins": .number(3), "bound": .number(4)]),
                ("iaf affine residual explicit degrees", ["type": .string("affine_autoregressive"), "direction": .string("iaf"),
                                                          "order": .string("random"), "hidden": JSONValue([5]),
                                                          "residual_blocks": .number(1), "activation": .string("leaky_relu"),
                                                          "hidden_degrees": JSONValue((0..<5).map { (d - 1 - $0 % d) })]),
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

    /// Image layers at small sizes (name, layer specs, event shape), for the shared checkers on
    /// random points (ImageLayerTests).
    public static var imageLayerCases: [(String, [[String: JSONValue]], [Int])] {
        [
            ("squeeze", [["type": .string("squeeze")]], [2, 4, 6]),
            ("conv1x1 lu", [["type": .string("invertible_conv1x1")]], [3, 4, 4]),
            ("conv1x1 plain", [["type": .string("invertible_conv1x1"), "lu": .bool(false)]], [4, 2, 2]),
            ("conv1x1 wide", [["type": .string("invertible_conv1x1")]], [40, 1, 2]),
            ("actnorm image", [["type": .string("actnorm")]], [3, 2, 4]),
            ("coupling channel", [["type": .string("conv_affine_coupling"), "hidden": 6]], [4, 4, 4]),
            ("coupling channel odd inverted", [["type": .string("conv_affine_coupling"), "hidden": 5, "invert_mask": .bool(true)]], [3, 2, 4]),
            ("coupling checkerboard", [["type": .string("conv_affine_coupling"), "mask": .string("checkerboard"), "hidden": 4]], [1, 4, 4]),
            ("coupling checkerboard inverted no clamp",
             [["type": .string("conv_affine_coupling"), "mask": .string("checkerboard"), "invert_mask": .bool(true), "hidden": 4, "clamp": 0]], [2, 3, 4]),
            ("split conditional",
             [["type": .string("split"), "hidden": 4, "layers": .array([
                 .object(["type": .string("conv_affine_coupling"), "hidden": 4]), .object(["type": .string("invertible_conv1x1")]),
             ])]], [4, 2, 4]),
            ("split standard with squeeze", [["type": .string("split"), "prior": .string("standard"), "layers": .array([
                .object(["type": .string("squeeze")]), .object(["type": .string("conv_affine_coupling"), "hidden": 3]),
            ])]], [2, 4, 4]),
            ("dequantize", [["type": .string("dequantize"), "bits": 5]], [2, 2, 2]),
            ("dequantize 17 levels", [["type": .string("dequantize"), "levels": 17]], [1, 2, 3]),
            ("scale", [["type": .string("scale"), "scale": -0.25, "shift": 3]], [1, 2, 3]),
        ]
    }

    /// Layers whose domain is the unit interval (name, layer specs, event shape): checked on
    /// points in (0, 1) (ImageLayerTests).
    public static let unitIntervalLayerCases: [(String, [[String: JSONValue]], [Int])] = [
        ("logit", [["type": .string("logit"), "alpha": .number(0.05)]], [6]),
    ]

    /// Continuous-time layers (name, spec object), checked at small dimensions with tight
    /// solver tolerances (CNFTests).
    public static let continuousLayerConfigurations: [(String, [String: JSONValue])] = [
        ("cnf exact", ["type": .string("cnf"), "hidden": JSONValue([16, 16])]),
    ]

    /// Conditional layer configurations (name, spec object) for a flow with a context: each
    /// reads the flow's encoded context (`context_features` is filled in by the flow).
    public static let conditionalLayerConfigurations: [(String, [String: JSONValue])] = [
        ("affine coupling", ["type": .string("affine_coupling"), "hidden": JSONValue([8, 8])]),
        ("additive coupling alternating", ["type": .string("additive_coupling"), "mask": .string("alternating"),
                                           "hidden": JSONValue([7]), "activation": .string("tanh")]),
        ("spline coupling", ["type": .string("spline_coupling"), "hidden": JSONValue([8]), "bins": .number(4)]),
        ("maf affine", ["type": .string("affine_autoregressive"), "hidden": JSONValue([9, 9]), "order": .string("random")]),
        ("maf affine, no hidden layer", ["type": .string("affine_autoregressive"), "hidden": JSONValue([Int]())]),
        ("iaf affine", ["type": .string("affine_autoregressive"), "direction": .string("iaf"), "hidden": JSONValue([8]),
                        "activation": .string("softplus")]),
        ("maf spline", ["type": .string("spline_autoregressive"), "hidden": JSONValue([8]), "bins": .number(3),
                        "order": .string("reversed")]),
        // nflows' residual MADE: the context enters the first layer and gates every block.
        ("maf affine residual", ["type": .string("affine_autoregressive"), "hidden": JSONValue([8]), "residual_blocks": .number(2),
                                 "order": .string("random")]),
        ("iaf affine residual", ["type": .string("affine_autoregressive"), "direction": .string("iaf"), "hidden": JSONValue([7]),
                                 "residual_blocks": .number(1), "activation": .string("softplus")]),
        ("maf spline residual", ["type": .string("spline_autoregressive"), "hidden": JSONValue([6]), "residual_blocks": .number(2),
                                 "bins": .number(3), "order": .string("reversed")]),
        ("iaf spline residual", ["type": .string("spline_autoregressive"), "direction": .string("iaf"), "hidden": JSONValue([6, 6]),
                                 "residual_blocks": .number(1), "bins": .number(3), "activation": .string("elu")]),
    ]

    /// Base distribution spec objects (name, spec object), each valid in a flow with a context
    /// (the conditional bases read the flow's encoded context).
    public static let baseConfigurations: [(String, [String: JSONValue])] = [
        ("standard normal", ["type": .string("standard_normal")]),
        ("diagonal normal", ["type": .string("diagonal_normal")]),
        ("conditional diagonal normal, linear", ["type": .string("conditional_diagonal_normal")]),
        ("conditional diagonal normal, MLP", ["type": .string("conditional_diagonal_normal"), "hidden": JSONValue([5, 4]),
                                              "activation": .string("tanh")]),
    ]

    /// Every base `type` ``baseConfigurations`` holds.
    public static var coveredBaseTypes: Set<String> {
        Set(baseConfigurations.compactMap { $0.1["type"]?.stringValue })
    }

    /// Continuous-time layers for a flow with a context (name, spec object): the dynamics read
    /// the flow's encoded context (`context_features` is filled in by the flow), in both
    /// gradient modes, with both traces, adaptive and fixed-step solvers, with and without a
    /// hidden layer (ConditionalTests). Adaptive tolerances are tight, so that finite
    /// differences see the solution map rather than the solver error; the adjoint (the
    /// continuous gradient) is only paired with them, while backpropagation (the exact gradient
    /// of the computed solution) also runs the fixed-step solvers. A CNF is not the identity at
    /// initialisation (nothing is zero-initialised), so no identity check applies.
    public static let conditionalContinuousLayerConfigurations: [(String, [String: JSONValue])] = [
        ("cnf exact, adjoint", ["type": .string("cnf"), "hidden": JSONValue([8]),
                                "rtol": .number(1e-10), "atol": .number(1e-10)]),
        ("cnf hutchinson, adjoint, softplus", ["type": .string("cnf"), "hidden": JSONValue([7]), "activation": .string("softplus"),
                                               "trace": .string("hutchinson"), "probe_seed": .number(3),
                                               "rtol": .number(1e-10), "atol": .number(1e-10)]),
        ("cnf exact, backprop, dopri5", ["type": .string("cnf"), "hidden": JSONValue([6, 5]), "gradient": .string("backprop"),
                                         "rtol": .number(1e-8), "atol": .number(1e-8)]),
        ("cnf hutchinson rademacher, backprop, rk4", ["type": .string("cnf"), "hidden": JSONValue([8]), "trace": .string("hutchinson"),
                                                     "probe": .string("rademacher"), "gradient": .string("backprop"),
                                                     "solver": .string("rk4"), "step_size": .number(0.05)]),
        ("cnf exact, backprop, euler, no hidden layer", ["type": .string("cnf"), "hidden": JSONValue([Int]()),
                                                         "gradient": .string("backprop"), "solver": .string("euler"),
                                                         "step_size": .number(0.01)]),
    ]

    /// Every layer `type` the fixtures above hold, nested ones included.
    public static var coveredLayerTypes: Set<String> {
        func types(_ value: JSONValue) -> [String] {
            guard let object = value.objectValue else { return value.arrayValue?.flatMap(types) ?? [] }
            return (object["type"]?.stringValue.map { [$0] } ?? []) + object.values.flatMap(types)
        }
        var specs: [JSONValue] = layerConfigurations(dimension: 8).map { .object($0.1) }
        specs += continuousLayerConfigurations.map { .object($0.1) }
        specs += conditionalContinuousLayerConfigurations.map { .object($0.1) }
        for (_, layers, _) in imageLayerCases + unitIntervalLayerCases { specs += layers.map(JSONValue.object) }
        return Set(specs.flatMap(types))
    }
}
