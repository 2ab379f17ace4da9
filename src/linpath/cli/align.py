"""linpath align: B permuted to match A by weight matching, written as a new state file."""

from linpath.cli.registry import Command


def arguments(p) -> None:
    p.add_argument("a", help="the state to match (a state file as 'linpath path' reads)")
    p.add_argument("b", help="the state to permute")
    p.add_argument(
        "--model",
        required=True,
        help="a preset or model name (mnist_lenet_300_100, cifar_vgg_16, cifar_resnet_20, ...), "
        "or module:callable returning a plain MLP",
    )
    p.add_argument("--out", required=True, help="the file to write: B aligned, a weights-only state dict")
    p.add_argument("--num-classes", type=int, default=10, help="classes of a named model (default 10)")
    p.add_argument("--key", default=None, help="dotted path to the state dict inside each checkpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of the order in which groups are solved")
    p.add_argument("--force", action="store_true", help="replace --out when it exists")


def run(args) -> int:
    from linpath.api.alignment import align_files
    from linpath.api.resolve import resolve_model

    net = resolve_model(args.model, args.num_classes)
    out, before, after = align_files(args.a, args.b, net, args.out, args.key, args.seed, args.force)
    print(f"distance to A over the parameters: {before:.4f} before, {after:.4f} after alignment")
    print(f"wrote: {out}")
    return 0


COMMAND = Command(
    "align", "permute B's units to match A's (weight matching), write it to --out", arguments, run, order=12
)
