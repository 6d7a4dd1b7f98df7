using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>The adjoint system at z*: g = (df/dz)^T g + dL/dz*, solved by vector-Jacobian products.</summary>
internal sealed record AdjointProblem(Func<Tensor, Tensor> F, Tensor ZStar, Solver Solver, EquilibriumResult Stats)
{
    /// <summary>Solves for g given dL/dz*; records the solve in <see cref="Stats"/>.</summary>
    public Tensor Solve(Tensor lossGrad)
    {
        try
        {
            return SolveAdjoint(lossGrad);
        }
        catch (Exception e)
        {
            // An exception cannot cross libtorch's autograd engine (the process would abort), so it
            // is recorded instead: the gradient through this equilibrium is zero, Backward says
            // Faulted and BackwardError holds the exception for the caller to rethrow.
            Stats.BackwardError = e;
            Stats.Backward = SolverResult.Faulted(e, lossGrad.shape[0]);
            return torch.zeros_like(lossGrad);
        }
    }

    Tensor SolveAdjoint(Tensor lossGrad)
    {
        using var scope = torch.NewDisposeScope();
        // TorchSharp runs custom backward with grad off; the VJPs need one graph of f at z*.
        using var grad = torch.enable_grad();
        var z = ZStar.detach().requires_grad_(true);
        var fz = Equilibrium.Apply(F, z);
        var rhs = lossGrad.detach();
        // allow_unused: an f that ignores z has J = 0; libtorch would otherwise abort the process.
        Tensor Adjoint(Tensor g)
        {
            var vjp = torch.autograd.grad([fz], [z], [g], retain_graph: true, allow_unused: true)[0];
            return vjp is null || vjp.IsInvalid ? rhs.clone() : vjp + rhs;
        }
        var result = Solver(Adjoint, torch.zeros_like(rhs));
        Stats.Backward = result;
        // The solver returns its lowest-residual iterate, finite even when the solve failed;
        // the failure is reported in Stats.Backward, never as NaN gradients.
        // Into the scope around the caller's backward() (it runs on the calling thread on CPU),
        // so the handle is released with it; libtorch holds its own reference.
        return result.Value.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Identity on f(z*) in the forward pass; in the backward pass it replaces the incoming gradient
/// dL/dz* by the adjoint solution g, so that autograd through f(z*) yields the implicit gradient
/// for f's parameters and inputs. (TorchSharp has no Tensor.register_hook; this is the hook.)
/// </summary>
internal sealed class AdjointHook : torch.autograd.SingleTensorFunction<AdjointHook>
{
    const string ProblemKey = "adjoint";

    public override string Name => "DeqAdjointHook";

    public static Tensor Attach(Tensor fzStar, AdjointProblem problem) => apply(fzStar, problem);

    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        ctx.save_data(ProblemKey, vars[1]);
        return ((Tensor)vars[0]).clone();
    }

    // One gradient per argument of apply: the tensor's, then none for the problem object.
    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor gradOutput) =>
        [((AdjointProblem)ctx.get_data(ProblemKey)).Solve(gradOutput), null!];
}
