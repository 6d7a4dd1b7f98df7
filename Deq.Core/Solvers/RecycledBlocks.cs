using System.Buffers;
using System.Runtime.InteropServices;
using Deq.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Deq.Solvers;

/// <summary>
/// CPU tensors of one shape over memory blocks that a solve recycles. A block comes back when libtorch frees the last
/// tensor on it (its storage's deleter), so whoever still holds a tensor, a view or an alias of it (the ledger's best,
/// an observer, a user) keeps its values; no reference counting is guessed here. Under <see cref="Native.FreedMemory"/>
/// a fresh block of this size is new pages the kernel faults in (0.15-0.3 ms for h 512's 480 KiB iterate on the machines
/// measured); a recycled one is not. After <see cref="Dispose"/> blocks are freed as they come back. Tensors wrap the
/// blocks through a private TorchSharp factory (<see cref="TorchSharpInternals.NoCopy{T}"/>); without it, no pool.
/// </summary>
internal sealed class RecycledBlocks : IDisposable
{
    readonly long[] _shape;
    readonly ScalarType _dtype;
    readonly nuint _bytes;
    readonly object _gate = new();
    // At most one idle block: a step takes one iterate as another goes, and taking it leaves none idle while f runs.
    IBlock? _idle;
    bool _closed;

    RecycledBlocks(long[] shape, ScalarType dtype, long bytes) => (_shape, _dtype, _bytes) = (shape, dtype, (nuint)bytes);

    /// <summary>A pool for [batch, width] tensors of <paramref name="dtype"/> on <paramref name="device"/>, or null where fresh tensors are as cheap
    /// (an accelerator's caching allocator, the heap below the mmap threshold, dtypes other than float32/float64) or
    /// this TorchSharp offers no way to wrap memory without a copy.</summary>
    public static RecycledBlocks? For(ScalarType dtype, Device device, long batch, long width)
    {
        if (Off == true || device.type != DeviceType.CPU || dtype is not (ScalarType.Float32 or ScalarType.Float64)) return null;
        long bytes = batch * width * (dtype == ScalarType.Float32 ? 4 : 8);
        // (a Memory<T> has at most int.MaxValue elements)
        if (Native.FreedMemory.ThresholdBytes is not int threshold || bytes < threshold || batch * width > int.MaxValue || !Available) return null;
        return new RecycledBlocks([batch, width], dtype, bytes);
    }

    /// <summary>Set: solves on this thread take fresh tensors (for tests, which hold the two equal to the bit).</summary>
    internal static bool? Off { get => _off; set => _off = value; }
    [ThreadStatic] static bool? _off;

    /// <summary>Blocks allocated and not yet freed, in this process (for tests: nothing outlives its tensors and solve).</summary>
    internal static int LiveBlocks => _live;
    static int _live;

    /// <summary>Blocks waiting idle in pools, in this process (for tests: none while f runs).</summary>
    internal static int IdleBlocks => _idleTotal;
    static int _idleTotal;

    // The idle block, if any, now the caller's (under the gate).
    IBlock? TakeIdle()
    {
        var idle = _idle;
        _idle = null;
        if (idle is not null) Interlocked.Decrement(ref _idleTotal);
        return idle;
    }

    /// <summary>An uninitialised tensor of the pool's shape, over the idle block or a new one.</summary>
    public Tensor Take()
    {
        IBlock? idle;
        lock (_gate) idle = TakeIdle();
        return _dtype == ScalarType.Float32 ? Wrap<float>(this, idle, _shape, _dtype) : Wrap<double>(this, idle, _shape, _dtype);
    }

    // Called from libtorch's deleter, on whichever thread freed the storage (the finalizer's too).
    void Return(IBlock block)
    {
        lock (_gate)
        {
            if (!_closed && _idle is null)
            {
                _idle = block;
                Interlocked.Increment(ref _idleTotal);
                return;
            }
        }
        block.Free();
    }

    /// <summary>Frees the idle block (before f, so that it runs with no spare memory).</summary>
    public void Trim()
    {
        lock (_gate) TakeIdle()?.Free();
    }

    /// <summary>Frees the idle block; blocks still in use are freed when libtorch lets them go.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _closed = true;
            TakeIdle()?.Free();
        }
    }

    interface IBlock
    {
        void Free();
    }

    /// <summary>Native memory (64-byte aligned, as libtorch's own) whose unpinning is the storage's release.</summary>
    sealed unsafe class Block<T>(RecycledBlocks pool, nuint bytes) : MemoryManager<T>, IBlock where T : unmanaged
    {
        void* _memory = Allocate(bytes);

        static void* Allocate(nuint bytes)
        {
            Interlocked.Increment(ref _live);
            return NativeMemory.AlignedAlloc(bytes, 64);
        }

        public override Span<T> GetSpan() => new(_memory, (int)(bytes / (nuint)sizeof(T)));
        public override MemoryHandle Pin(int elementIndex = 0) => new((T*)_memory + elementIndex, default, this);
        public override void Unpin() => pool.Return(this);
        protected override void Dispose(bool disposing) => Free();

        public void Free()
        {
            if (_memory is null) return;
            NativeMemory.AlignedFree(_memory);
            _memory = null;
            Interlocked.Decrement(ref _live);
        }
    }

    /// <summary>Whether this TorchSharp can wrap memory without a copy (so pools exist at all).</summary>
    internal static bool Available => TorchSharpInternals.NoCopy<float>() is not null && TorchSharpInternals.NoCopy<double>() is not null;

    // The block's memory as a tensor, without a copy (TorchSharp's private factory: the public overloads copy).
    static Tensor Wrap<T>(RecycledBlocks pool, IBlock? idle, long[] shape, ScalarType dtype) where T : unmanaged
    {
        var block = (Block<T>?)idle ?? new Block<T>(pool, pool._bytes);
        return TorchSharpInternals.NoCopy<T>()!(block.Memory, shape, (sbyte)dtype, dtype, torch.CPU, false, false, null);
    }
}
