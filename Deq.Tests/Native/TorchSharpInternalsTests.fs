/// The private TorchSharp members Deq relies on (TorchSharpInternals): each has a fallback, so a missing one would only
/// cost memory or time silently; this test makes an upgrade that drops one fail instead.
module Deq.Tests.Native.TorchSharpInternalsTests

open Expecto
open Deq.Native

[<Tests>]
let internals =
    testList "TorchSharp internals" [
        test "every private TorchSharp member that Deq relies on is there" {
            let members = TorchSharpInternals.Members
            Expect.isGreaterThanOrEqual members.Count 5 "the node's output cache, saved variables, the no-copy factory"
            for name, found in members do
                Expect.isTrue found $"{name}: missing in this TorchSharp; its memory or speed saving is lost (see TorchSharpInternals)"
        }
    ]
