"""Command-line flags that describe one :class:`~branching.model.ListDecoderModel`."""

from __future__ import annotations

from ..model import LAWS, ListDecoderModel


def add_model_arguments(parser, *, variants: bool = True) -> None:
    """Add --M, --r0/--eps, --T, --eps-oracle and --delta (and, with ``variants``, --K,
    --law and --dispersion, which only the simulator supports)."""
    parser.add_argument("--M", type=int, required=True, help="vocabulary size")
    rate = parser.add_mutually_exclusive_group(required=True)
    rate.add_argument("--r0", type=float, help="reproduction number M*eps (sets eps = r0/M)")
    rate.add_argument("--eps", type=float, help="false-eligibility probability")
    parser.add_argument("--T", type=int, required=True, help="horizon (decoding steps)")
    parser.add_argument("--eps-oracle", type=float, default=None,
                        help="false-eligibility probability on the oracle prefix")
    parser.add_argument("--delta", type=float, default=0.0,
                        help="probability of missing the oracle token per step")
    if variants:
        parser.add_argument("--K", type=int, default=None, help="cap on the list size")
        parser.add_argument("--law", choices=LAWS, default="binomial",
                            help="offspring and immigration family")
        parser.add_argument("--dispersion", type=float, default=None,
                            help="negative-binomial shape k (law=negative_binomial)")


def model_from_args(args) -> ListDecoderModel:
    """The model the flags describe (validated by :class:`ListDecoderModel`)."""
    extra = {"eps_oracle": args.eps_oracle, "delta": args.delta}
    for name in ("K", "law", "dispersion"):
        if hasattr(args, name):
            extra[name] = getattr(args, name)
    if args.r0 is not None:
        return ListDecoderModel.from_r0(M=args.M, r0=args.r0, T=args.T, **extra)
    return ListDecoderModel(M=args.M, eps=args.eps, T=args.T, **extra)
