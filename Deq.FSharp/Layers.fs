namespace Deq.FSharp

open TorchSharp
open Deq.Layers

/// A weight-normalised linear layer from F#.
[<RequireQualifiedAccess>]
module WeightNormLinear =
    /// The layer's map with its weight computed once, now (for a solver's many calls of f).
    let bind (layer: WeightNormLinear) : torch.Tensor -> torch.Tensor =
        let bound = layer.Bind()
        bound.Invoke

/// A spectrally normalised linear layer from F#.
[<RequireQualifiedAccess>]
module SpectralNormLinear =
    /// The layer's 1-Lipschitz map with its normalised weight computed once, now.
    let bind (layer: SpectralNormLinear) : torch.Tensor -> torch.Tensor =
        let bound = layer.Bind()
        bound.Invoke
