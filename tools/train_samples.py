#!/usr/bin/env python
"""Train, export and document the sample ONNX models under ``sample_models/``.

Seeded and reproducible on CPU (deterministic algorithms, fixed thread count). For
every model NAME it writes ``NAME.onnx``, ``NAME.calib.npz``, ``NAME.test.npz`` and
a model card ``NAME.md``; then it regenerates ``README.md`` from every sample model
present in the output folder.

    python tools/train_samples.py [--only NAME ...] [--epochs-scale F] [--out sample_models]

Models are trained in the order listed in ``SPECS`` (quick ones first).
"""

from __future__ import annotations

import os

# Passive OpenMP waiting: busy-waiting threads slow training down >10x whenever another
# process competes for the 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import copy
import logging
import math
import platform
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _datasets as ds

from onnx_cswap.runtime import session_options

SEED = 0
NUM_THREADS = 2
OPSET = 18
LEGACY_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MAX_ABS_DIFF = 1e-4
MAX_ONNX_BYTES = 2 * 1024 * 1024


# =============================================================================== models


class DigitsCNN(nn.Module):
    """Conv-ReLU-Conv-ReLU-MaxPool-Flatten-Linear-ReLU-Linear for 8x8 digits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Bias-free convolution followed by BatchNorm ("same" padding for odd kernels)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    )


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3)
        self.downsample = (
            conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        return F.relu(self.conv2(out) + self.downsample(x))


class ResNet8(nn.Module):
    """Stem conv3x3 + 3 basic blocks (16/32/64 channels, stride 1/2/2) + GAP + Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 16, 3), nn.ReLU())
        self.layers = nn.Sequential(
            BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2)
        )
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1 / depthwise 3x3 / linear project 1x1 (+ residual)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [conv_bn(cin, hidden, 1), nn.ReLU6()]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6()]
        layers += [conv_bn(hidden, cout, 1)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


MBV2_SETTINGS = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 1))  # t, c, n, s


class MobileNetV2(nn.Module):
    """Small MobileNetV2 for 28x28 inputs."""

    def __init__(self, num_classes: int = 10, last_channels: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(1, 16, 3), nn.ReLU6()]
        cin = 16
        for t, c, n, s in MBV2_SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [conv_bn(cin, last_channels, 1), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(last_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm layout)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer (attention + GELU MLP)."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Tiny ViT: 4x4 patches (49 tokens) + cls token, learned position embedding."""

    def __init__(
        self,
        image: int = 28,
        patch: int = 4,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_hidden: int = 128,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        tokens = (image // patch) ** 2
        self.patch_embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.layers = nn.Sequential(*[EncoderLayer(dim, heads, mlp_hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.layers(x + self.pos_embed))
        return self.head(x[:, 0])


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(cin, cout, 3), nn.ReLU(), conv_bn(cout, cout, 3), nn.ReLU())


class SegUNet(nn.Module):
    """Small U-Net: 3 max-pool downsamplings; decoder upsamples by ConvTranspose
    (8->16), nearest Upsample (16->32) and bilinear Upsample (32->64); every skip
    connection is joined by channel concatenation."""

    def __init__(self, num_classes: int = ds.SEG_NUM_CLASSES, width: int = 16) -> None:
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.enc1 = double_conv(1, w1)  # 64x64
        self.enc2 = double_conv(w1, w2)  # 32x32
        self.enc3 = double_conv(w2, w3)  # 16x16
        self.bottleneck = double_conv(w3, w3)  # 8x8
        self.up3 = nn.ConvTranspose2d(w3, w3, 2, stride=2)
        self.dec3 = double_conv(2 * w3, w2)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = double_conv(2 * w2, w1)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec1 = double_conv(2 * w1, w1)
        self.head = nn.Conv2d(w1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        b = self.bottleneck(F.max_pool2d(e3, 2))
        d3 = self.dec3(torch.cat([self.up3(b), e3], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)


# ================================================================================ specs


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser / schedule settings (linear warmup then cosine decay, per step)."""

    epochs: int
    lr: float
    batch_size: int
    optimizer: str = "adamw"  # "adamw" or "sgd" (Nesterov momentum 0.9)
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    crop_pad: int = 0  # random-crop padding in pixels (0 = no crop)
    hflip: bool = False
    channels_last: bool = False  # NHWC training (about 1.5x faster for these CNNs on CPU)


@dataclass(frozen=True)
class SampleSpec:
    """One sample model: how to build, train, export and describe it."""

    name: str
    task: str  # "classification" or "segmentation"
    data: str  # "digits", "fmnist" or "seg"
    build: Callable[[], nn.Module]
    train: TrainConfig
    architecture: str
    exporter: str = "dynamo"  # "dynamo" (BN folded) or "legacy" (BN kept)
    target: float = 0.0
    weights_from: str | None = None  # reuse the trained weights of another spec
    notes: tuple[str, ...] = field(default_factory=tuple)


SPECS: tuple[SampleSpec, ...] = (
    SampleSpec(
        name="digits_cnn",
        task="classification",
        data="digits",
        build=DigitsCNN,
        train=TrainConfig(epochs=60, lr=2e-3, batch_size=64, weight_decay=1e-4, crop_pad=1),
        architecture=(
            "Conv(1->16, 3x3, pad 1) - ReLU - Conv(16->32, 3x3, pad 1) - ReLU - MaxPool 2x2 - "
            "Flatten - Linear(512->64) - ReLU - Linear(64->10). Input [N,1,8,8]."
        ),
        target=0.97,
    ),
    SampleSpec(
        name="resnet8_fmnist",
        task="classification",
        data="fmnist",
        build=ResNet8,
        train=TrainConfig(
            epochs=15,
            lr=0.1,
            batch_size=128,
            optimizer="sgd",
            weight_decay=5e-4,
            warmup_epochs=1,
            crop_pad=2,
            hflip=True,
            channels_last=True,
        ),
        architecture=(
            "ResNet-8: stem Conv3x3(1->16)+BN+ReLU; 3 stages of one BasicBlock each "
            "(16, 32, 64 channels; stride 1, 2, 2; the stride-2 blocks have a 1x1 conv + BN "
            "downsample shortcut); global average pool; Linear(64->10). Input [N,1,28,28]."
        ),
        target=0.91,
    ),
    SampleSpec(
        name="resnet8_fmnist_bn",
        task="classification",
        data="fmnist",
        build=ResNet8,
        train=TrainConfig(epochs=15, lr=0.1, batch_size=128),  # unused: weights shared
        architecture=(
            "Same network and the same trained weights as `resnet8_fmnist`, exported with "
            "the BatchNormalization nodes kept (not folded)."
        ),
        exporter="legacy",
        target=0.91,
        weights_from="resnet8_fmnist",
        notes=(
            "In each stride-2 block the BN bias after `conv2` and the BN bias of the "
            "downsample shortcut are summed before the ReLU, so they receive identical "
            "gradients; both start at 0 and get no weight decay, hence they stay "
            "bit-identical. The legacy exporter de-duplicates such initializers: one of "
            "each pair is exported as an `Identity` node reading the other.",
        ),
    ),
    SampleSpec(
        name="mbv2_fmnist",
        task="classification",
        data="fmnist",
        build=MobileNetV2,
        train=TrainConfig(
            epochs=8,
            lr=0.1,
            batch_size=128,
            optimizer="sgd",
            weight_decay=4e-5,
            warmup_epochs=1,
            crop_pad=2,
            hflip=True,
            channels_last=True,
        ),
        architecture=(
            "Small MobileNetV2: stem Conv3x3(1->16)+BN+ReLU6; inverted residual blocks "
            "(expand 1x1+BN+ReLU6, depthwise 3x3+BN+ReLU6, project 1x1+BN, residual Add "
            "when stride 1 and in == out) with (t, c, n, s) = "
            f"{', '.join(str(s) for s in MBV2_SETTINGS)}; Conv1x1(64->128)+BN+ReLU6; global "
            "average pool; Linear(128->10). Input [N,1,28,28]."
        ),
        target=0.90,
    ),
    SampleSpec(
        name="vit_tiny_fmnist",
        task="classification",
        data="fmnist",
        build=ViT,
        train=TrainConfig(
            epochs=10,
            lr=1e-3,
            batch_size=128,
            weight_decay=0.05,
            warmup_epochs=1,
            label_smoothing=0.1,
            crop_pad=2,
            hflip=True,
        ),
        architecture=(
            "Tiny ViT: Conv(1->64, 4x4, stride 4) patch embedding (49 tokens) + learned cls "
            "token + learned position embedding; 4 pre-norm encoder layers (LayerNorm, "
            "4-head self-attention with one fused qkv Linear(64->192), reshape to "
            "[B,T,3,H,16] + permute, softmax(q k^T / 4) v, heads merged by transpose + "
            "reshape, proj Linear(64->64); LayerNorm, MLP Linear(64->128)-GELU-"
            "Linear(128->64)); final LayerNorm; Linear(64->10) on the cls token. "
            "Input [N,1,28,28]."
        ),
        target=0.85,
        notes=(
            "The dynamo exporter emits each token-wise Linear as `MatMul` with a "
            "pre-transposed [in, out] weight initializer named `val_*` (the torch parameter "
            "name is lost; biases keep their names and are applied by `Add`); only the "
            "head on the 2-D cls token is a `Gemm`. q, k and v are taken from the permuted "
            "qkv tensor with `Gather` (axis 0), and the exact GELU is decomposed into "
            "`Div`/`Erf`/`Add`/`Mul` (there is no `Gelu` op at opset 18).",
        ),
    ),
    SampleSpec(
        name="seg_fmnist",
        task="segmentation",
        data="seg",
        build=SegUNet,
        train=TrainConfig(
            epochs=6,
            lr=3e-3,
            batch_size=32,
            weight_decay=1e-4,
            warmup_epochs=0.5,
            hflip=True,
            channels_last=True,
        ),
        architecture=(
            "Small U-Net (widths 16/32/64): encoder of double (Conv3x3+BN+ReLU) blocks at "
            "64, 32 and 16 px with MaxPool 2x2 between them and a 64-channel bottleneck at "
            "8 px (3 downsamplings); decoder: ConvTranspose(2x2, stride 2) 8->16 px, nearest "
            "Upsample x2 16->32 px, bilinear Upsample x2 32->64 px, each followed by Concat "
            "with the encoder skip and a double conv block; Conv1x1(16->11) head. "
            "Input [N,1,64,64], output logits [N,11,64,64]."
        ),
        target=0.60,
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
DATA_LABELS = {
    "digits": "sklearn digits 8x8",
    "fmnist": "Fashion-MNIST 28x28",
    "seg": "Fashion-MNIST canvases 64x64",
}


# ========================================================================== utilities


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_torch() -> None:
    torch.set_num_threads(NUM_THREADS)
    torch.use_deterministic_algorithms(True)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"


def load_split(kind: str) -> ds.Split:
    loaders: dict[str, Callable[[], ds.Split]] = {
        "digits": lambda: ds.digits_split(SEED),
        "fmnist": lambda: ds.fmnist_split(SEED),
        "seg": lambda: ds.seg_split(SEED),
    }
    return loaders[kind]()


def augment(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    gen: torch.Generator,
    background: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random crop (padding with the ``background`` value) and horizontal flip.

    Segmentation masks (``y`` with spatial dims) are flipped with their images.
    """
    n, _, h, w = x.shape
    if cfg.crop_pad:
        pad = cfg.crop_pad
        padded = F.pad(x, (pad, pad, pad, pad), value=background)
        dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=gen)
        rows = torch.arange(h).view(1, h, 1) + dy
        cols = torch.arange(w).view(1, 1, w) + dx
        x = padded[torch.arange(n).view(n, 1, 1), 0, rows, cols].unsqueeze(1)
    if cfg.hflip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
        if y.dim() == 3:
            y = torch.where(flip.view(n, 1, 1), y.flip(-1), y)
    return x, y


def batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weights of rank >= 2 only (not on biases / norms / embeddings)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train_model(
    model: nn.Module, split: ds.Split, cfg: TrainConfig, epochs: int, seed: int
) -> None:
    """Train in place; prints the loss and held-out torch metric after each epoch."""
    x_train = torch.from_numpy(split.x_train)
    y_train = torch.from_numpy(split.y_train)
    background = float(x_train.min())  # the preprocessed value of a 0 pixel
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)),
    )
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    for epoch in range(epochs):
        model.train()
        start, total_loss = time.perf_counter(), 0.0
        for idx in batches(len(x_train), cfg.batch_size, gen):
            xb, yb = augment(x_train[idx], y_train[idx], cfg, gen, background)
            xb = xb.contiguous(memory_format=memory_format)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(idx)
        metric = evaluate(lambda xb: torch_predict(model, xb), split.x_test, split.y_test)
        print(
            f"  epoch {epoch + 1:3d}/{epochs}  loss {total_loss / len(x_train):.4f}  "
            f"test {metric:.4f}  ({time.perf_counter() - start:.1f}s)",
            flush=True,
        )
    model.to(memory_format=torch.contiguous_format)


# ========================================================================== metrics


def torch_predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    flat = truth.reshape(-1) * num_classes + pred.reshape(-1)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in the prediction or the truth."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean())


def evaluate(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 250,
) -> float:
    """Accuracy (classification, y is [N]) or dataset mIoU (segmentation, y is [N,H,W])."""
    segmentation = y.ndim == 3
    num_classes = ds.SEG_NUM_CLASSES
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    correct = 0
    for start in range(0, len(x), batch_size):
        pred = predict(x[start : start + batch_size]).argmax(axis=1)
        truth = y[start : start + batch_size]
        if segmentation:
            conf += confusion(pred, truth, num_classes)
        else:
            correct += int((pred == truth).sum())
    return mean_iou(conf) if segmentation else correct / len(x)


def metric_value(task: str, value: float) -> str:
    return f"{value:.4f}" if task == "segmentation" else f"{100 * value:.2f}%"


def format_metric(task: str, value: float) -> str:
    name = "mIoU" if task == "segmentation" else "accuracy"
    return f"{name} {metric_value(task, value)}"


def count_macs(model: nn.Module, sample: torch.Tensor) -> int:
    """MACs for one sample: Conv2d, ConvTranspose2d, Linear and attention matmuls.

    Element-wise ops (BN, activations, adds, softmax, norms, pooling, resize) are not
    counted; conv/linear biases are not counted.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.ConvTranspose2d):
            kh, kw = module.kernel_size
            total += inputs[0].numel() * (module.out_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, Attention):
            _, tokens, dim = inputs[0].shape
            total += 2 * tokens * tokens * dim  # q k^T and attn v over all heads

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, Attention)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        model.eval()
        with torch.no_grad():
            model(sample[:1])
    finally:
        for handle in handles:
            handle.remove()
    return total


# =========================================================================== export


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Copy of ``model`` with every Conv2d + BatchNorm2d pair (as built by ``conv_bn``)
    fused into one biased Conv2d."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[i] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
    return folded


def op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def export_dynamo(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("N")},),
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )


def export_legacy(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            dynamo=False,
            do_constant_folding=False,
            training=torch.onnx.TrainingMode.EVAL,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            opset_version=LEGACY_OPSET,
        )


def export_model(spec: SampleSpec, model: nn.Module, sample: torch.Tensor, path: Path) -> str:
    """Export ``model`` and return a sentence describing the exporter and BN handling."""
    model.eval()
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if spec.exporter == "legacy":
        export_legacy(model, sample, path)
        if "BatchNormalization" not in op_types(path):
            raise RuntimeError(f"{path}: expected BatchNormalization nodes")
        text = (
            f"legacy TorchScript exporter (`dynamo=False`, opset {LEGACY_OPSET}, "
            "`do_constant_folding=False`, `TrainingMode.EVAL`); BatchNormalization kept "
            f"({count_ops(path, 'BatchNormalization')} nodes)"
        )
        identities = count_ops(path, "Identity")
        if identities:
            text += (
                f"; the exporter merged {identities} bit-identical initializer(s) into "
                "another one, read through Identity node(s)"
            )
        return text + "."
    export_dynamo(model, sample, path)
    exporter = f"default torch.onnx exporter (`dynamo=True`, opset {onnx_opset(path)})"
    if not has_bn:
        return f"{exporter}; no BatchNorm in the model."
    if "BatchNormalization" not in op_types(path):
        return f"{exporter}; BatchNorm folded into the convolutions by the exporter."
    export_dynamo(fold_batchnorm(model), sample, path)
    if "BatchNormalization" in op_types(path):
        raise RuntimeError(f"{path}: BatchNormalization left after folding by hand")
    return f"{exporter}; BatchNorm folded into the convolutions by hand before export."


def count_ops(path: Path, op_type: str) -> int:
    return sum(node.op_type == op_type for node in onnx.load(str(path)).graph.node)


def onnx_opset(path: Path) -> int:
    model = onnx.load(str(path))
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def onnx_params(path: Path) -> int:
    model = onnx.load(str(path))
    return sum(int(np.prod(init.dims)) for init in model.graph.initializer)


def ort_session(path: Path) -> ort.InferenceSession:
    # onnx-cswap's options, so that this also runs in a process that shares its thread
    # pool (tools/bench_ablation.py checks the torch twins against the .onnx files).
    options = session_options(NUM_THREADS, spinning=False)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_predictor(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    session = ort_session(path)
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def verify_export(path: Path, model: nn.Module, x_test: np.ndarray) -> float:
    """Check the ONNX file and compare onnxruntime with torch; returns the max abs diff."""
    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path)).graph
    if [i.name for i in graph.input] != [INPUT_NAME] or [o.name for o in graph.output] != [
        OUTPUT_NAME
    ]:
        raise RuntimeError(f"{path}: unexpected graph inputs/outputs")
    if graph.input[0].type.tensor_type.shape.dim[0].dim_param != "N":
        raise RuntimeError(f"{path}: batch axis is not the dynamic axis 'N'")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise RuntimeError(f"{path}: larger than {MAX_ONNX_BYTES} bytes")
    predict = ort_predictor(path)
    worst = 0.0
    for batch in (x_test[:1], x_test[:7]):  # two batch sizes exercise the dynamic axis
        diff = np.abs(predict(batch) - torch_predict(model, batch)).max()
        worst = max(worst, float(diff))
    if worst >= MAX_ABS_DIFF:
        raise RuntimeError(f"{path}: onnxruntime differs from torch by {worst:.2e}")
    return worst


# ============================================================================= cards


@dataclass
class Result:
    """What a trained and exported sample model reports."""

    spec: SampleSpec
    train_seconds: float
    metric: float
    torch_metric: float
    max_abs_diff: float
    params: int
    macs: int
    size: int
    exporter: str
    ops: list[str]
    data_description: str
    npz_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # part -> (x, y) shapes
    command: str


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_preprocessing(spec: SampleSpec) -> str:
    if spec.data == "digits":
        return "`x = pixels / 16.0` (sklearn digits pixels are 0..16), float32 [N,1,8,8]."
    shape = "[N,1,64,64]" if spec.data == "seg" else "[N,1,28,28]"
    return (
        f"`x = (pixels / 255.0 - {ds.FMNIST_MEAN:.4f}) / {ds.FMNIST_STD:.4f}`, float32 {shape}. "
        "The model does not normalise; the npz files hold preprocessed inputs."
    )


def describe_training(cfg: TrainConfig, epochs: int) -> str:
    optimiser = "SGD (Nesterov, momentum 0.9)" if cfg.optimizer == "sgd" else "AdamW"
    augmentation = [f"random crop with padding {cfg.crop_pad}"] if cfg.crop_pad else []
    augmentation += ["random horizontal flip"] if cfg.hflip else []
    text = (
        f"{epochs} epochs, batch {cfg.batch_size}, {optimiser} lr {cfg.lr}, weight decay "
        f"{cfg.weight_decay} (weights of rank >= 2 except embeddings), "
        + (f"linear warmup {cfg.warmup_epochs:g} epoch(s) then " if cfg.warmup_epochs else "")
        + "cosine decay per step"
    )
    if cfg.label_smoothing:
        text += f", label smoothing {cfg.label_smoothing}"
    return text + (
        f"; augmentation: {', '.join(augmentation) or 'none'}. The weights after the last "
        "epoch are exported (no checkpoint selection on the test set)."
    )


def write_card(result: Result, epochs: int, out: Path) -> None:
    spec = result.spec
    metric_name = "dataset mIoU over 11 classes" if spec.task == "segmentation" else "accuracy"
    y_kind = "masks" if spec.task == "segmentation" else "labels"
    training = (
        f"Weights shared with `{spec.weights_from}` (same training run; see its card)."
        if spec.weights_from
        else describe_training(spec.train, epochs)
    )
    lines = [
        f"# {spec.name}",
        "",
        f"Task: {spec.task} ({DATA_LABELS[spec.data]}). Generated by `tools/train_samples.py`.",
        "",
        "## Architecture",
        "",
        spec.architecture,
        "",
        f"- Parameters (sum of ONNX initializer element counts): {result.params:,}",
        f"- MACs per sample: {result.macs:,} (Conv, ConvTranspose, Linear and attention "
        "matmuls q k^T and attn v; element-wise ops, norms, pooling, resize and biases "
        "not counted)",
        f"- File size: {result.size:,} bytes ({result.size / 1024:.1f} KiB)",
        f"- ONNX op types: {', '.join(result.ops)}",
        "",
        "## Data",
        "",
        f"- Preprocessing: {describe_preprocessing(spec)}",
        f"- Split: {result.data_description}",
        *(
            f"- `{spec.name}.{part}.npz`: `x` float32 {list(x_shape)}, `y` int64 "
            f"{list(y_shape)} {y_kind}."
            for part, (x_shape, y_shape) in result.npz_shapes.items()
        ),
        "",
        "## Results",
        "",
        f"- Test {metric_name} (onnxruntime on `{spec.name}.onnx` and `{spec.name}.test.npz`): "
        f"**{metric_value(spec.task, result.metric)}**",
        f"- Target: >= {metric_value(spec.task, spec.target)}"
        + ("" if result.metric >= spec.target else " (**missed**)"),
        f"- Same metric with torch before export: {metric_value(spec.task, result.torch_metric)}",
        f"- Max |onnxruntime - torch| on the logits of the first 1 and 7 test samples: "
        f"{result.max_abs_diff:.2e} (required < {MAX_ABS_DIFF:g})",
        "",
        "## Export",
        "",
        f"- Exporter: {result.exporter}",
        f"- Input `{INPUT_NAME}`, output `{OUTPUT_NAME}`, dynamic batch axis `N`; model in "
        "eval mode.",
        *(f"- Note: {note}" for note in spec.notes),
        "",
        "## Training",
        "",
        f"- {training}",
        f"- Seed {SEED}, `torch.use_deterministic_algorithms(True)`, "
        f"`torch.set_num_threads({NUM_THREADS})`, torch {torch.__version__}.",
        f"- Command: `{result.command}`",
        f"- Training wall time: {result.train_seconds:.1f} s on this machine "
        f"({cpu_name()}, {os.cpu_count()} cores, {NUM_THREADS} torch threads; the CPU may "
        "have been shared with other work).",
        "",
    ]
    (out / f"{spec.name}.md").write_text("\n".join(lines))


def write_readme(out: Path) -> None:
    """Table of every sample model present in ``out`` (metrics re-measured with ORT)."""
    rows = []
    for spec in SPECS:
        path = out / f"{spec.name}.onnx"
        test = out / f"{spec.name}.test.npz"
        if not (path.exists() and test.exists()):
            continue
        with np.load(test) as data:
            metric = evaluate(ort_predictor(path), data["x"], data["y"])
        bn = "BN kept" if "BatchNormalization" in op_types(path) else "no BN nodes"
        rows.append(
            f"| [`{path.name}`]({spec.name}.md) | {spec.task} | {DATA_LABELS[spec.data]} | "
            f"{onnx_params(path):,} | {format_metric(spec.task, metric)} | "
            f"{path.stat().st_size / 1024:.1f} KiB | {spec.exporter}, opset "
            f"{onnx_opset(path)}, {bn} |"
        )
    lines = [
        "# Sample models",
        "",
        "Small models trained on CPU by `tools/train_samples.py` (seeded, reproducible) "
        "and exported to ONNX with input `input` and output `logits` (dynamic batch axis "
        "`N`). Each `NAME.onnx` comes with `NAME.calib.npz` and `NAME.test.npz` (keys `x`: "
        "preprocessed float32 inputs, `y`: int64 labels or masks) and a model card "
        "`NAME.md`. Test metrics are measured with onnxruntime on the test npz.",
        "",
        "| File | Task | Data | Params | Test metric | Size | Export |",
        "| --- | --- | --- | ---: | --- | ---: | --- |",
        *rows,
        "",
        "Regenerate with `python tools/train_samples.py` (or `--only NAME ...`).",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


# ============================================================================== main


def save_npz(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    np.savez_compressed(path, x=x.astype(np.float32), y=y.astype(np.int64))


def train_fresh(
    spec: SampleSpec, split: ds.Split, epochs_scale: float
) -> tuple[nn.Module, float, int]:
    """Build and train ``spec``'s model from the fixed seed; returns (model, seconds, epochs)."""
    seed_everything(SEED)
    model = spec.build()
    epochs = max(1, round(spec.train.epochs * epochs_scale))
    print(f"[{spec.name}] training {epochs} epochs on {len(split.x_train)} samples", flush=True)
    start = time.perf_counter()
    train_model(model, split, spec.train, epochs, SEED)
    return model.eval(), time.perf_counter() - start, epochs


def run_spec(
    spec: SampleSpec,
    out: Path,
    epochs_scale: float,
    trained: dict[str, tuple[nn.Module, float, int]],
    splits: dict[str, ds.Split],
) -> Result:
    if spec.data not in splits:
        splits[spec.data] = load_split(spec.data)
    split = splits[spec.data]
    source = spec.weights_from or spec.name
    if source not in trained:
        trained[source] = train_fresh(SPEC_BY_NAME[source], split, epochs_scale)
    model, seconds, epochs = trained[source]

    path = out / f"{spec.name}.onnx"
    sample = torch.from_numpy(split.x_test[:2])
    exporter = export_model(spec, model, sample, path)
    max_diff = verify_export(path, model, split.x_test)
    save_npz(out / f"{spec.name}.calib.npz", split.x_calib, split.y_calib)
    save_npz(out / f"{spec.name}.test.npz", split.x_test, split.y_test)

    command = f"python tools/train_samples.py --only {source}"
    if epochs_scale != 1.0:
        command += f" --epochs-scale {epochs_scale:g}"
    result = Result(
        spec=spec,
        train_seconds=seconds,
        metric=evaluate(ort_predictor(path), split.x_test, split.y_test),
        torch_metric=evaluate(lambda xb: torch_predict(model, xb), split.x_test, split.y_test),
        max_abs_diff=max_diff,
        params=onnx_params(path),
        macs=count_macs(model, sample),
        size=path.stat().st_size,
        exporter=exporter,
        ops=sorted(op_types(path)),
        data_description=split.description,
        npz_shapes={
            "calib": (split.x_calib.shape, split.y_calib.shape),
            "test": (split.x_test.shape, split.y_test.shape),
        },
        command=command,
    )
    write_card(result, epochs, out)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[s.name for s in SPECS],
        metavar="NAME",
        help=f"models to (re)build, among: {', '.join(s.name for s in SPECS)} "
        "(a model sharing weights with another retrains that one deterministically)",
    )
    parser.add_argument(
        "--epochs-scale",
        type=float,
        default=1.0,
        help="multiply every model's number of epochs by F (rounded, at least 1)",
    )
    parser.add_argument("--out", type=Path, default=Path("sample_models"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_torch()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only or SPEC_BY_NAME)
    trained: dict[str, tuple[nn.Module, float, int]] = {}
    splits: dict[str, ds.Split] = {}
    for spec in SPECS:
        if spec.name not in wanted:
            continue
        result = run_spec(spec, args.out, args.epochs_scale, trained, splits)
        missed = (
            ""
            if result.metric >= spec.target
            else f"  (MISSED target {metric_value(spec.task, spec.target)})"
        )
        print(
            f"[{spec.name}] train {result.train_seconds:.1f}s  test "
            f"{format_metric(spec.task, result.metric)} (onnxruntime)  size "
            f"{result.size / 1024:.1f} KiB  params {result.params:,}  MACs {result.macs:,}"
            f"{missed}\n  ops: {' '.join(result.ops)}",
            flush=True,
        )
    write_readme(args.out)


if __name__ == "__main__":
    main()
