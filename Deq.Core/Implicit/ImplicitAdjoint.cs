using Deq.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Implicit;

/// <summary>
/// The implicit-function-theorem adjoint (see <see cref="Adjoint.Implicit(LinearSolver?)"/>): the forward
/// solve keeps no graph; one application of f at z* goes on the tape, and <see cref="AdjointHook"/> replaces
/// its incoming gradient dL/dz* by the adjoint solution g, whose vector-Jacobian products run through that
/// same graph. So training holds one graph of f, and backward never calls the user's f.
/// </summary>
/// <param name="LinearSolve">Solves g = J^T g + dL/dz*.</param>
/// <param name="Label">Describes the linear solve (null: its own description).</param>
public sealed record ImplicitAdjoint(LinearSolver LinearSolve, string? Label) : Adjoint
{
    /// <inheritdoc />
    public override EquilibriumResult Solve(Func<Tensor, Tensor> f, Tensor z0, Solver forward, Action<BackwardReport>? onBackward)
    {
        var result = forward(f, z0);
        if (!torch.is_grad_enabled()) return new EquilibriumResult(result.Value, result, this);
        var zStar = result.Value.detach().requires_grad_(true);
        Tensor fz;
        VectorJacobian.Offered? offered;
        using (var capture = VectorJacobian.Begin())
        {
            fz = Equilibrium.Apply(f, zStar);
            offered = capture.TakeFor(fz);
        }
        using (offered)   // the node saves what the product reads; these handles go
        {
            if (!fz.requires_grad) return new EquilibriumResult(fz, result, this);   // nothing to differentiate
            return new EquilibriumResult(AdjointHook.Attach(fz, zStar, new AdjointHook.Problem(LinearSolve, onBackward, offered)), result, this);
        }
    }

    /// <inheritdoc />
    public override string Describe() => $"implicit({Label ?? LinearSolve.Describe()})";
}

/// <summary>
/// Identity on f(z*) in the forward pass; in the backward pass it replaces the incoming gradient dL/dz* by
/// the adjoint solution g, so that autograd through f(z*) yields the implicit gradient for f's parameters and
/// inputs. (TorchSharp has no Tensor.register_hook; this is the hook.) z* and f(z*) are saved as autograd
/// saved variables, so the node owns them: a caller's DisposeScope cannot release them before backward, and
/// they go with the graph.
/// </summary>
internal sealed class AdjointHook : torch.autograd.SingleTensorFunction<AdjointHook>
{
    const string ProblemKey = "adjoint";

    /// <summary>What the backward pass needs besides the saved tensors; <paramref name="Offered"/>: f's own product, whose tensors the node saves after z* and f(z*).</summary>
    public sealed record Problem(LinearSolver Solve, Action<BackwardReport>? OnBackward, VectorJacobian.Offered? Offered = null)
    {
        // Set once a backward has run: the offered product's tensors are released then, and a second backward through a
        // retained graph takes autograd's product.
        public bool OfferSpent { get; set; }
    }

    public override string Name => "DeqAdjointHook";

    [ThreadStatic] static torch.autograd.AutogradContext? _attaching;

    public static Tensor Attach(Tensor fzStar, Tensor zStar, Problem problem)
    {
        var output = apply(fzStar, problem, zStar);
        ReleaseOutputPlaceholder(_attaching);
        _attaching = null;
        return output;
    }

    // TorchSharp's node keeps torch.empty_like(output) for the graph's lifetime, only to materialise a zero gradient
    // for an output that receives none. This node's one output always receives one, so that placeholder (one z: untouched
    // pages on CPU, real memory on CUDA) is released here. It is a private field of TorchSharp 0.107's Node<T>: where it
    // is missing (another version), nothing happens.
    internal static void ReleaseOutputPlaceholder(torch.autograd.AutogradContext? ctx)
    {
        if (Native.TorchSharpInternals.OutputCache(ctx) is not { } cache) return;
        for (int i = 0; i < cache.Count; i++)
        {
            cache[i]?.Dispose();
            cache[i] = null!;
        }
    }

    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        _attaching = ctx;
        // vars: f(z*), the problem, z* (an input, so that saving it is plain autograd; it gets no gradient).
        var problem = (Problem)vars[1];
        ctx.save_for_backward([(Tensor)vars[0], (Tensor)vars[2], .. problem.Offered?.Saved ?? []]);
        ctx.save_data(ProblemKey, vars[1]);
        return ((Tensor)vars[0]).view_as((Tensor)vars[0]);
    }

    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor gradOutput)
    {
        if (gradOutput.IsInvalid) return [null!, null!, null!];   // no gradient reached f(z*) (its placeholder is released)
        var problem = (Problem)ctx.get_data(ProblemKey);
        var saved = ctx.get_saved_variables();
        try
        {
            var offeredSaved = problem.Offered is null || problem.OfferSpent ? null : saved.Skip(2).ToArray();
            return [Adjoint(saved[0], saved[1], offeredSaved, gradOutput, problem), null!, null!];
        }
        finally
        {
            foreach (var t in saved) t.Dispose();
            problem.OfferSpent = true;
            ReleaseSaved(ctx, from: 2);
            // dL/dz* (one z): our handle would otherwise keep it alive until the caller's scope ends, past the rest of backward.
            gradOutput.Dispose();
        }
    }

    // Releases the saved tensors from index `from` on, as libtorch's own nodes release theirs once their backward has
    // run: TorchSharp 0.107 keeps a custom node's saved tensors until the node goes with its output, so f's offered
    // values (3 copies of z for the TrellisNet) would outlive their use through the rest of backward. f(z*) and z*
    // stay, for a second backward through a retained graph. A private field of TorchSharp's context: where it is
    // missing, nothing is released early.
    static void ReleaseSaved(torch.autograd.AutogradContext ctx, int from)
    {
        if (Native.TorchSharpInternals.SavedVariables(ctx) is not { } saved) return;
        while (saved.Count > from)
        {
            (saved[^1] as IDisposable)?.Dispose();
            saved.RemoveAt(saved.Count - 1);
        }
    }

    static Tensor Adjoint(Tensor fz, Tensor z, Tensor[]? offeredSaved, Tensor lossGrad, Problem problem)
    {
        try
        {
            using var scope = torch.NewDisposeScope();
            // TorchSharp runs custom backward with grad off; the products walk the graph saved in the forward pass.
            using var grad = torch.enable_grad();
            var rhs = lossGrad.detach();
            // allow_unused: an f that ignores z has J = 0; libtorch would otherwise abort the process.
            Tensor Vjp(Tensor g)
            {
                var vjp = torch.autograd.grad([fz], [z], [g], retain_graph: true, allow_unused: true)[0];
                return vjp is null || vjp.IsInvalid ? torch.zeros_like(g) : vjp;
            }
            var offered = offeredSaved is null ? null : problem.Offered!.Product(offeredSaved);
            Tensor Offered(Tensor g)
            {
                using (torch.no_grad()) return offered!(g);
            }
            var result = problem.Solve(offered is null ? Vjp : Offered, rhs);
            problem.OnBackward?.Invoke(new BackwardReport(result, OfferedProduct: offered is not null));
            // The solver returns its lowest-residual iterate, finite even when the solve failed; the failure is in
            // the report, never NaN gradients. Into the scope around the caller's backward() (CPU runs it on the
            // calling thread), so the handle is released with it; libtorch holds its own reference.
            return result.Value.MoveToOuterDisposeScope();
        }
        catch (Exception e)
        {
            // No exception may cross libtorch's autograd engine: record it, return a zero gradient, and let
            // Equilibrium.Backward (or the report) raise it on the caller's side.
            BackwardFaults.Record(e);
            problem.OnBackward?.Invoke(new BackwardReport(SolverResult.Faulted(e, lossGrad.shape[0]), e));
            return torch.zeros_like(lossGrad);
        }
    }
}
