/// A layer whose parameters can all be finite and in range and still describe a map without a
/// usable inverse (a singular or badly conditioned matrix).
///
/// The model-file reader refuses such parameters (`SF_ERR_NUMERIC`), and ``Trainer`` undoes a
/// step that reaches them, so a model that loads can be inverted and every model that trains
/// loads again. ``InvertibleConv1x1`` with a plain weight adopts it.
public protocol InvertibilityConstrained: AnyObject {
    /// Why the current parameters give no usable inverse (after `parametersDidChange()`), or nil.
    var invertibilityProblem: String? { get }
}
