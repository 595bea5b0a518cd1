"""Learn the dense connections of a DenseNet-BC with the differentiable sparse
gate and compare it with the plain DenseNet-BC trained the same way.

    python examples/cifar_densenet.py                # DenseNet-BC-100 (k=12), one GPU
    torchrun --nproc_per_node 4 examples/cifar_densenet.py
    python examples/cifar_densenet.py --quick        # DenseNet-BC-22 on a CPU
"""
from graphsparse.cnn import DenseNet
from graphsparse.cnn.experiment import DEFAULT_HP, parse_args, run_experiment

HP = dict(
    DEFAULT_HP,
    depth=100,             # 6L + 4, L layers per block
    growth_rate=12,
    compression=0.5,
    epochs=300,
    batch_size=64,
    weight_decay=1e-4,
    lambdas=[0.02, 0.02, 0.02],  # penalty weight per block (many groups per block)
)
QUICK = dict(depth=22, growth_rate=12, epochs=5, batch_size=128, seeds=[0], bench_batch=128,
             bench_repeats=5, threads=1)


def build(hp: dict, gated: bool) -> DenseNet:
    return DenseNet(hp["depth"], hp["growth_rate"], hp["compression"],
                    num_classes=100 if hp["dataset"] == "cifar100" else 10,
                    gated=gated, lambdas=hp["lambdas"])


if __name__ == "__main__":
    hp = parse_args("DenseNet", HP, QUICK)
    name = f"DenseNet-BC-{hp['depth']} (k={hp['growth_rate']})"
    run_experiment(name, build, hp, "connections kept per layer")
