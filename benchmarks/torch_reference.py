"""The PyTorch side of the benchmarks: the official attention-transfer WRN, losses and train step.

The network is the functional WRN of szagoruyko/attention-transfer ``cifar.py`` (``resnet``), the same
definition ``tests/make_fixtures_wrn.py`` holds, ported to current PyTorch with the math unchanged:
pre-activation blocks ``o = relu(bn0(x)); y = conv3x3(o, s); z = conv3x3(relu(bn1(y)))``,
``out = z + (conv1x1(o, s) if channels change else x)``; stem conv 3->16, groups 16k/32k/64k at strides
1/2/2, head relu(bn) + 8x8 average pool + linear. The losses are the official ``utils.py``:

    at(x)      = normalize(mean_c(x**2).view(N, -1))            (l2 per example, eps 1e-12)
    at_loss    = mean((at(s) - at(t))**2)
    distill    = alpha * T**2 * KL(softmax(t/T) || softmax(s/T)) / N + (1 - alpha) * CE(s, y)

The step: teacher forward in inference mode under ``torch.no_grad``, student forward in train mode,
``total = task + beta * sum_groups at_loss`` (beta = 1e3, the weighting at_jax uses), backward, SGD
(momentum 0.9, weight decay 5e-4). Imported only for ``--framework torch``.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

METHODS = ("none", "at", "kd", "at+kd", "grad_at")
AT_BETA, KD_ALPHA, KD_TEMPERATURE, GRAD_AT_BETA = 1e3, 0.9, 4.0, 1.0


def parse_wrn(name: str) -> tuple[int, int]:
    """``"wrn-16-2"`` -> (16, 2)."""
    parts = name.split("-")
    if len(parts) != 3 or parts[0] != "wrn" or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"the torch reference implements WRN only (wrn-D-K), got {name!r}")
    return int(parts[1]), int(parts[2])


# ---- official definition (attention-transfer cifar.py / utils.py) ----
def conv_params(ni: int, no: int, k: int = 1) -> torch.Tensor:
    return torch.randn(no, ni, k, k) * np.sqrt(2.0 / (ni * k * k))  # kaiming normal, fan-in


def linear_params(ni: int, no: int) -> dict:
    return {"weight": torch.randn(no, ni) * np.sqrt(2.0 / ni), "bias": torch.zeros(no)}


def bnparams(n: int) -> dict:
    return {"weight": torch.rand(n), "bias": torch.zeros(n)}


def bnstats(n: int) -> dict:
    return {"running_mean": torch.zeros(n), "running_var": torch.ones(n)}


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if value is None:
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, prefix + key + "."))
        else:
            flat[prefix + key] = value
    return flat


def resnet(depth: int, width: int, num_classes: int):
    """Returns ``(f, params, stats)``; ``f(input, params, stats, mode) -> (logits, [g0, g1, g2])``."""
    assert (depth - 4) % 6 == 0, "depth should be 6n+4"
    n = (depth - 4) // 6
    widths = [int(v) for v in np.floor(np.asarray([16.0, 32.0, 64.0]) * width)]

    def gen_block_params(ni, no):
        return {"conv0": conv_params(ni, no, 3), "conv1": conv_params(no, no, 3),
                "bn0": bnparams(ni), "bn1": bnparams(no),
                "convdim": conv_params(ni, no, 1) if ni != no else None}

    def gen_group_params(ni, no, count):
        return {"block%d" % i: gen_block_params(ni if i == 0 else no, no) for i in range(count)}

    def gen_group_stats(ni, no, count):
        return {"block%d" % i: {"bn0": bnstats(ni if i == 0 else no), "bn1": bnstats(no)}
                for i in range(count)}

    params = flatten({
        "conv0": conv_params(3, 16, 3),
        "group0": gen_group_params(16, widths[0], n),
        "group1": gen_group_params(widths[0], widths[1], n),
        "group2": gen_group_params(widths[1], widths[2], n),
        "bn": bnparams(widths[2]),
        "fc": linear_params(widths[2], num_classes),
    })
    stats = flatten({
        "group0": gen_group_stats(16, widths[0], n),
        "group1": gen_group_stats(widths[0], widths[1], n),
        "group2": gen_group_stats(widths[1], widths[2], n),
        "bn": bnstats(widths[2]),
    })

    def activation(x, params, stats, base, mode):
        return F.relu(F.batch_norm(x, weight=params[base + ".weight"], bias=params[base + ".bias"],
                                   running_mean=stats[base + ".running_mean"],
                                   running_var=stats[base + ".running_var"],
                                   training=mode, momentum=0.1, eps=1e-5))

    def block(x, params, stats, base, mode, stride):
        o1 = activation(x, params, stats, base + ".bn0", mode)
        y = F.conv2d(o1, params[base + ".conv0"], stride=stride, padding=1)
        o2 = activation(y, params, stats, base + ".bn1", mode)
        z = F.conv2d(o2, params[base + ".conv1"], stride=1, padding=1)
        if base + ".convdim" in params:
            return z + F.conv2d(o1, params[base + ".convdim"], stride=stride)
        return z + x

    def group(o, params, stats, base, mode, stride):
        for i in range(n):
            o = block(o, params, stats, "%s.block%d" % (base, i), mode, stride if i == 0 else 1)
        return o

    def f(input, params, stats, mode):
        x = F.conv2d(input, params["conv0"], padding=1)
        g0 = group(x, params, stats, "group0", mode, 1)
        g1 = group(g0, params, stats, "group1", mode, 2)
        g2 = group(g1, params, stats, "group2", mode, 2)
        o = activation(g2, params, stats, "bn", mode)
        o = F.adaptive_avg_pool2d(o, 1)  # = avg_pool2d(o, 8) on 32x32 inputs
        o = o.view(o.size(0), -1)
        o = F.linear(o, params["fc.weight"], params["fc.bias"])
        return o, [g0, g1, g2]

    return f, params, stats


def at(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))


def at_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (at(x) - at(y)).pow(2).mean()


def distillation(y, teacher_scores, labels, T, alpha):
    p = F.log_softmax(y / T, dim=1)
    q = F.softmax(teacher_scores / T, dim=1)
    l_kl = F.kl_div(p, q, reduction="sum") * (T ** 2) / y.shape[0]
    l_ce = F.cross_entropy(y, labels)
    return l_kl * alpha + l_ce * (1.0 - alpha)


# ---- the benchmarked step ----
def make_step(student: str, teacher: str | None, method: str, *, num_classes: int, device: torch.device,
              dtype: str, compile: bool, learning_rate: float = 0.1) -> Callable:
    """Returns ``step(inputs, targets)``: one official-style AT training step (no host sync inside).

    ``dtype="bfloat16"`` runs the forward/backward under ``torch.autocast`` (float32 parameters and
    optimizer) with channels_last tensors; ``compile`` wraps the loss (teacher + student + terms) in
    ``torch.compile`` (the backward is compiled through AOTAutograd).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {METHODS}")
    channels_last = dtype == "bfloat16"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def place(tree, requires_grad):
        out = {}
        for key, value in tree.items():
            value = value.to(device)
            if value.ndim == 4:
                value = value.contiguous(memory_format=memory_format)
            out[key] = value.requires_grad_(requires_grad)
        return out

    f_s, params_s, stats_s = resnet(*parse_wrn(student), num_classes)
    params_s, stats_s = place(params_s, True), place(stats_s, False)
    uses_teacher = method != "none"
    if uses_teacher:
        f_t, params_t, stats_t = resnet(*parse_wrn(teacher), num_classes)
        params_t, stats_t = place(params_t, False), place(stats_t, False)
    optimizer = torch.optim.SGD(list(params_s.values()), lr=learning_rate, momentum=0.9, weight_decay=5e-4)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if dtype == "bfloat16" \
        else contextlib.nullcontext

    def compute_loss(inputs, targets):
        y_s, g_s = f_s(inputs, params_s, stats_s, True)
        if not uses_teacher:
            return F.cross_entropy(y_s.float(), targets)
        with torch.no_grad():
            y_t, g_t = f_t(inputs, params_t, stats_t, False)
        if method in ("kd", "at+kd"):
            loss = distillation(y_s.float(), y_t.float(), targets, KD_TEMPERATURE, KD_ALPHA)
        else:
            loss = F.cross_entropy(y_s.float(), targets)
        if method in ("at", "at+kd"):
            loss = loss + AT_BETA * sum(at_loss(s.float(), t.float()) for s, t in zip(g_s, g_t))
        return loss

    def compute_grad_at_loss(inputs, targets):
        """CE + beta * 0.5 * sum (J_s - J_t)**2 with J = dCE/dx (double backprop, create_graph)."""
        x = inputs.detach().requires_grad_(True)
        y_s, _ = f_s(x, params_s, stats_s, True)
        ce_s = F.cross_entropy(y_s.float(), targets)
        (j_s,) = torch.autograd.grad(ce_s, x, create_graph=True)
        x_t = inputs.detach().requires_grad_(True)
        y_t, _ = f_t(x_t, params_t, stats_t, False)
        (j_t,) = torch.autograd.grad(F.cross_entropy(y_t.float(), targets), x_t)
        return ce_s + GRAD_AT_BETA * 0.5 * (j_s - j_t).float().pow(2).sum()

    loss_fn = compute_grad_at_loss if method == "grad_at" else compute_loss
    if compile:
        loss_fn = torch.compile(loss_fn)

    def step(inputs, targets):
        with autocast():
            loss = loss_fn(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def make_batch(batch_size: int, num_classes: int, device: torch.device, dtype: str, image_size: int = 32):
    """A normalised float batch (N, 3, H, W) and int64 labels, already on ``device``."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    targets = torch.randint(0, num_classes, (batch_size,), generator=generator)
    if dtype == "bfloat16":
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs.to(device), targets.to(device)


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
