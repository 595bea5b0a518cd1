"""Learn the cardinality of every ResNeXt block with the differentiable sparse
gate and compare it with the plain ResNeXt trained the same way.

    python examples/cifar_resnext.py                 # ResNeXt-29 8x64d, one GPU
    torchrun --nproc_per_node 4 examples/cifar_resnext.py
    python examples/cifar_resnext.py --quick         # a small ResNeXt on a CPU
"""
from graphsparse.cnn import ResNeXt
from graphsparse.cnn.experiment import DEFAULT_HP, parse_args, run_experiment

HP = dict(
    DEFAULT_HP,
    depth=29,              # 9n + 2
    cardinality=8,         # branches per block
    width=64,              # branch width in the first stage (8x64d)
    out_channels=[256, 512, 1024],
    stem_channels=64,
    epochs=300,
    lambdas=[0.1, 0.1, 0.1],  # penalty weight per stage
)
QUICK = dict(depth=11, cardinality=4, width=4, out_channels=[32, 64, 128], stem_channels=16,
             epochs=5, seeds=[0], bench_batch=128, bench_repeats=5, threads=1)


def build(hp: dict, gated: bool) -> ResNeXt:
    return ResNeXt(hp["depth"], hp["cardinality"], hp["width"],
                   num_classes=100 if hp["dataset"] == "cifar100" else 10,
                   out_channels=hp["out_channels"], stem_channels=hp["stem_channels"],
                   gated=gated, lambdas=hp["lambdas"])


if __name__ == "__main__":
    hp = parse_args("ResNeXt", HP, QUICK)
    name = f"ResNeXt-{hp['depth']} ({hp['cardinality']}x{hp['width']}d)"
    run_experiment(name, build, hp, "cardinality per block")
