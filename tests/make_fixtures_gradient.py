"""Write tests/fixtures/gradient.npz: PyTorch reference values for at_jax.gradient.

Run: /work/venv/bin/python tests/make_fixtures_gradient.py

A tiny CNN, conv3x3 → act → conv3x3/stride 2 → act → flatten (NHWC order) → dense, is built twice
with different widths: a student (tanh, softplus) and a teacher (relu, relu), on a 2x8x8x3 batch
with 4 classes and a mean cross-entropy loss. With torch.autograd.grad(create_graph=True), in
float64, the script computes the input gradients J_s, J_t, the three gradient-attention losses and
the gradient of each loss w.r.t. every student parameter. Weights are drawn in float32 (and used in
float64 by torch) and saved in the JAX layout: conv kernels HWIO, dense kernel (in, out), inputs
NHWC. Gradients are saved in the same layout, under "<loss>/grad/<param>".
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

BATCH, HEIGHT, WIDTH, IN_CHANNELS, NUM_CLASSES = 2, 8, 8, 3, 4
STUDENT = {"widths": (4, 6), "activations": ("tanh", "softplus")}
TEACHER = {"widths": (8, 8), "activations": ("relu", "relu")}
ACTIVATIONS = {"tanh": torch.tanh, "softplus": F.softplus, "relu": torch.relu}
PARAM_NAMES = ("conv1/kernel", "conv1/bias", "conv2/kernel", "conv2/bias", "dense/kernel", "dense/bias")
OUTPUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gradient.npz")


def make_weights(rng: np.random.Generator, widths: tuple[int, int]) -> dict[str, np.ndarray]:
    """float32 weights in the JAX layout (HWIO kernels, (in, out) dense), fan-in scaled."""
    width1, width2 = widths
    flat_features = (HEIGHT // 2) * (WIDTH // 2) * width2
    shapes = {
        "conv1/kernel": (3, 3, IN_CHANNELS, width1),
        "conv1/bias": (width1,),
        "conv2/kernel": (3, 3, width1, width2),
        "conv2/bias": (width2,),
        "dense/kernel": (flat_features, NUM_CLASSES),
        "dense/bias": (NUM_CLASSES,),
    }
    fan_ins = {"conv1": 9 * IN_CHANNELS, "conv2": 9 * width1, "dense": flat_features}
    weights = {}
    for name, shape in shapes.items():
        scale = 1.0 / np.sqrt(fan_ins[name.split("/")[0]])
        if name.endswith("bias"):
            scale *= 0.5
        weights[name] = (scale * rng.standard_normal(shape)).astype(np.float32)
    return weights


def to_torch(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """JAX layout → torch layout (OIHW kernels, (out, in) dense), float64, requires_grad."""
    converted = {}
    for name, value in weights.items():
        tensor = torch.tensor(value, dtype=torch.float64)
        if name.startswith("conv") and name.endswith("kernel"):
            tensor = tensor.permute(3, 2, 0, 1)
        elif name == "dense/kernel":
            tensor = tensor.t()
        converted[name] = tensor.contiguous().requires_grad_(True)
    return converted


def grad_to_jax_layout(name: str, grad: torch.Tensor) -> np.ndarray:
    if name.startswith("conv") and name.endswith("kernel"):
        grad = grad.permute(2, 3, 1, 0)
    elif name == "dense/kernel":
        grad = grad.t()
    return grad.detach().numpy().astype(np.float32)


def loss_fn(weights: dict[str, torch.Tensor], activations, x_nchw: torch.Tensor, y: torch.Tensor):
    """Mean cross-entropy of the CNN; x is NCHW here."""
    act1, act2 = (ACTIVATIONS[name] for name in activations)
    h = act1(F.conv2d(x_nchw, weights["conv1/kernel"], weights["conv1/bias"], padding=1))
    h = act2(F.conv2d(h, weights["conv2/kernel"], weights["conv2/bias"], stride=2, padding=1))
    h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # flatten in NHWC order, as the JAX side
    logits = F.linear(h, weights["dense/kernel"], weights["dense/bias"])
    return F.cross_entropy(logits, y)


def input_gradient(weights, activations, x_nchw, y, create_graph):
    x_nchw = x_nchw.detach().requires_grad_(True)
    loss = loss_fn(weights, activations, x_nchw, y)
    (grad,) = torch.autograd.grad(loss, x_nchw, create_graph=create_graph)
    return grad


def main() -> None:
    rng = np.random.default_rng(20170101)
    x = rng.standard_normal((BATCH, HEIGHT, WIDTH, IN_CHANNELS)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=(BATCH,)).astype(np.int32)
    student_np = make_weights(rng, STUDENT["widths"])
    teacher_np = make_weights(rng, TEACHER["widths"])
    student, teacher = to_torch(student_np), to_torch(teacher_np)

    x_nchw = torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2)
    y_torch = torch.tensor(y, dtype=torch.long)
    student_act, teacher_act = STUDENT["activations"], TEACHER["activations"]

    input_grad_s = input_gradient(student, student_act, x_nchw, y_torch, create_graph=True)
    input_grad_t = input_gradient(teacher, teacher_act, x_nchw, y_torch, create_graph=False)
    flipped_grad_s = input_gradient(
        student, student_act, torch.flip(x_nchw, dims=[3]), y_torch, create_graph=True
    )
    losses = {
        "gradient_at_loss": 0.5 * torch.sum((input_grad_s - input_grad_t.detach()) ** 2),
        "input_gradient_penalty": 0.5 * torch.sum(input_grad_s**2),
        "flip_symmetry_loss": 0.5 * torch.sum((input_grad_s - torch.flip(flipped_grad_s, dims=[3])) ** 2),
    }

    arrays: dict[str, np.ndarray] = {"x": x, "y": y}
    arrays.update({f"student/{name}": value for name, value in student_np.items()})
    arrays.update({f"teacher/{name}": value for name, value in teacher_np.items()})
    to_nhwc = lambda tensor: tensor.detach().permute(0, 2, 3, 1).numpy()
    arrays["input_gradient_s"] = to_nhwc(input_grad_s)
    arrays["input_gradient_t"] = to_nhwc(input_grad_t)
    arrays["loss_s"] = np.array(loss_fn(student, student_act, x_nchw, y_torch).item())
    for loss_name, loss in losses.items():
        arrays[f"{loss_name}/value"] = np.array(loss.item())
        grads = torch.autograd.grad(loss, [student[name] for name in PARAM_NAMES], retain_graph=True)
        for name, grad in zip(PARAM_NAMES, grads):
            arrays[f"{loss_name}/grad/{name}"] = grad_to_jax_layout(name, grad)

    os.makedirs(os.path.dirname(OUTPUT_PATH), exist_ok=True)
    np.savez_compressed(OUTPUT_PATH, **arrays)
    size_kib = os.path.getsize(OUTPUT_PATH) / 1024
    print(f"wrote {OUTPUT_PATH} ({size_kib:.1f} KiB)")
    for loss_name in losses:
        print(f"  {loss_name} = {float(arrays[f'{loss_name}/value']):.6g}")


if __name__ == "__main__":
    main()
