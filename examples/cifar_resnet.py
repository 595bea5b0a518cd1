"""Learn the depth of a CIFAR ResNet with the differentiable sparse gate and
compare it with the plain ResNet trained the same way.

    python examples/cifar_resnet.py                 # paper-scale, one GPU
    torchrun --nproc_per_node 4 examples/cifar_resnet.py   # data parallel
    python examples/cifar_resnet.py --quick         # minutes on a CPU
"""
from graphsparse.cnn import ResNet
from graphsparse.cnn.experiment import DEFAULT_HP, parse_args, run_experiment

HP = dict(
    DEFAULT_HP,
    depth=20,              # 6n + 2: 20, 32, 56, 110
    epochs=200,
    lambdas=[0.1, 0.1, 0.1],  # penalty weight per stage (tune it to the schedule)
)
QUICK = dict(epochs=12, seeds=[0], bench_batch=128, bench_repeats=8, threads=1)


def build(hp: dict, gated: bool) -> ResNet:
    return ResNet(hp["depth"], num_classes=100 if hp["dataset"] == "cifar100" else 10,
                  gated=gated, lambdas=hp["lambdas"])


if __name__ == "__main__":
    hp = parse_args("ResNet", HP, QUICK)
    run_experiment(f"ResNet-{hp['depth']}", build, hp, "depth per stage")
