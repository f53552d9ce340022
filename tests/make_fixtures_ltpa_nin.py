"""Writes tests/fixtures/ltpa_nin.npz: the authors' LTPA networks, cifar.torch's VGG and the AT authors' NIN, rebuilt
in PyTorch from their Torch (Lua) files, module by module, with the flax models' parameter names.

Sources (Lua files of saumya-jetley/cd_ICLR18_LearnToPayAttention unless named; line numbers of those files):
  - ``ConvBNReLU``: conv3x3 (bias) -> SpatialBatchNormalization(n, 1e-3) -> ReLU [-> Dropout]:
    ``VGGNet/models/models_CIFARS/vgg_bn_drop.lua`` 6-11, dropout rates 17-38 (= szagoruyko/cifar.torch
    ``models/vgg_bn_drop.lua``).
  - ``vgg``: that file, all five ceil max pools (19, 23, 28, 33, 38), head 39-47.
  - LTPA local stages: ``Training_CIFARS/models_CIFARS/3_level_atten_3global/1.1_vgg_local.lua`` 17-25 (conv1-7,
    no pools); ``Training_CIFARS/models/models_CIFARS/2_level_atten_1global/1.1_vgg_local.lua`` 18-31 (pool
    after conv7, conv8-10) and ``1.2_vgg_local.lua`` (pool, three 512 convs).
  - global: ``Training_CIFARS/models_CIFARS/2_level_atten_1global/2.2_vgg_global.lua`` 18-27.
  - attention: ``Training_CIFARS/models_CIFARS/3_level_atten_1global/3.1_vgg_atten.lua`` 11-32 (256-wide l:
    BN-ReLU-Dropout-Linear(512, 256) on g), ``models/models_CIFARS/3_level_atten_1global_pred-ensemble/
    3_vgg_atten.lua`` 11-27 (512-wide), ``models/models_CIFARS/2_level_atten_1globalDP/1_vgg_atten.lua`` 16-20 (dp).
  - heads: ``models/models_CIFARS/3_level_atten_1global/vgg_match.lua`` 12-26 (concat),
    ``models/models_CIFARS/3_level_atten_1global_pred-ensemble/vgg_match.lua`` 12-27 (indep, CAddTable = sum).
  - the authors' backward: ``VGGNet/lua_source/main_AttLevel3_1global.lua`` and ``main_AttLevel2_1global.lua``,
    train()'s feval (g gets the mean of the attention units' gradients, each attended l the mean of its two).
  - NIN: szagoruyko/wide-residual-networks ``models/nin.lua`` 13-34.

Saved (weights from tests/reference_weights.py, rebuilt there by name, so none are stored):
  ``counts/<model>/<classes>``   parameter count (int64)
  ``names/<model>``              JSON [[state_dict name, shape], ...] of the 10-class network
  ``input16``, ``input32``       (2, S, S, 3) NHWC inputs;  ``labels``  (2,) int
  ``logits/<model>``             eval-mode logits, 10 classes, float64 forward on the float32 weights
  ``maps/<model>``               the attention maps, flattened and concatenated in level order
  ``grad/<true|authors>/<model>/<name>``   eval-mode gradients of the mean cross-entropy for a few tensors
Forwards of the VGG family use the 16 x 16 input (the networks are size-generic; cheaper), the NIN the 32 x 32 one.

Run: python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
     /tmp/torchvenv/bin/python tests/make_fixtures_ltpa_nin.py
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from reference_weights import reference_input, reference_tensor  # noqa: E402  pylint: disable=wrong-import-position

OUT_PATH = os.path.join(HERE, "fixtures", "ltpa_nin.npz")
VGG_CONVS = ((64, 0.3), (64, 0.0), (128, 0.4), (128, 0.0), (256, 0.4), (256, 0.4), (256, 0.0),
             (512, 0.4), (512, 0.4), (512, 0.0), (512, 0.4), (512, 0.4), (512, 0.0), (512, 0.4), (512, 0.4))
NIN_WIDE = ((192, 160, 96), (192, 192, 192), (192, 192, 192))
NIN_THIN = ((96, 80, 48), (80, 80, 80), (80, 80, 80))
GRAD_TENSORS = ("conv1.conv.bias", "conv7.conv.bias", "conv8.conv.bias", "conv10.conv.bias", "conv13.conv.bias",
                "conv15.conv.bias", "global.bias", "attention2.u.weight", "attention3.u.bias", "head3_bn.weight",
                "classify.bias", "attention1.project.bias", "attention1.u.weight")


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, rate: float):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.drop = nn.Dropout(rate)

    def forward(self, x):
        return self.drop(F.relu(self.bn(self.conv(x))))


def pool(x):
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


def add_convs(module: nn.Module, count: int) -> None:
    cin = 3
    for index, (width, rate) in enumerate(VGG_CONVS[:count], start=1):
        module.add_module(f"conv{index}", ConvBNReLU(cin, width, rate))
        cin = width


class VggBnDrop(nn.Module):
    """cifar.torch vgg_bn_drop."""

    def __init__(self, classes: int):
        super().__init__()
        add_convs(self, 13)
        self.fc1, self.fc1_bn, self.classify = nn.Linear(512, 512), nn.BatchNorm1d(512), nn.Linear(512, classes)

    def forward(self, x):
        for index in range(1, 14):
            x = getattr(self, f"conv{index}")(x)
            if index in (2, 4, 7, 10, 13):
                x = pool(x)
        x = F.dropout(x.view(x.shape[0], 512), 0.5, self.training)
        x = F.dropout(F.relu(self.fc1_bn(self.fc1(x))), 0.5, self.training)
        return self.classify(x), ()


class Attention(nn.Module):
    """The authors' attention estimator for a C-channel l and the 512-d g."""

    def __init__(self, channels: int, compatibility: str):
        super().__init__()
        self.channels, self.compatibility = channels, compatibility
        if channels != 512:
            self.project_bn, self.project = nn.BatchNorm1d(512), nn.Linear(512, channels)
        if compatibility == "pc":
            self.u = nn.Conv2d(channels, 1, 1)

    def forward(self, local, g):
        if self.channels != 512:
            g = self.project(F.dropout(F.relu(self.project_bn(g)), 0.5, self.training))
        n, c, h, w = local.shape
        if self.compatibility == "pc":
            scores = self.u(local + g[:, :, None, None])
        else:
            scores = (local * g[:, :, None, None]).sum(1)
        attention = F.softmax(scores.reshape(n, h * w), dim=1)
        return attention.reshape(n, h, w), (local.reshape(n, c, h * w) * attention[:, None, :]).sum(2)


class LtpaVgg(nn.Module):
    """The authors' VGG with attention at ``levels`` (att3 = (1, 2, 3), att2 = (2, 3))."""

    def __init__(self, classes: int, levels: tuple, compatibility: str, aggregation: str):
        super().__init__()
        self.levels, self.aggregation = levels, aggregation
        add_convs(self, 15)
        self.add_module("global", nn.Linear(512, 512))
        widths = {1: 256, 2: 512, 3: 512}
        for level in levels:
            self.add_module(f"attention{level}", Attention(widths[level], compatibility))
            self.add_module(f"head{level}_bn", nn.BatchNorm1d(widths[level]))
            if aggregation == "indep":
                self.add_module(f"classify{level}", nn.Linear(widths[level], classes))
        if aggregation == "concat":
            self.classify = nn.Linear(sum(widths[level] for level in levels), classes)

    def stage(self, x, first: int, last: int):
        """conv``first``..conv``last``, with the pool that precedes conv8 / conv11 / conv14 / conv15."""
        for index in range(first, last + 1):
            x = getattr(self, f"conv{index}")(pool(x) if index in (8, 11, 14, 15) else x)
        return x

    def stages(self):
        """(first, last) conv of each local stage, one stage per attended level (the authors' mlocal_k)."""
        ends = [{1: 7, 2: 10, 3: 13}[level] for level in self.levels]
        return list(zip([1] + [end + 1 for end in ends[:-1]], ends))

    def global_feature(self, l3):
        x = pool(self.stage(l3, 14, 15))
        return getattr(self, "global")(F.dropout(x.view(x.shape[0], 512), 0.5, self.training))

    def match(self, descriptors):
        heads = [F.dropout(F.relu(getattr(self, f"head{level}_bn")(d)), 0.5, self.training)
                 for level, d in zip(self.levels, descriptors)]
        if self.aggregation == "concat":
            return self.classify(torch.cat(heads, 1))
        return sum(getattr(self, f"classify{level}")(h) for level, h in zip(self.levels, heads))

    def forward(self, x):
        locals_ = []
        for first, last in self.stages():
            x = self.stage(x, first, last)
            locals_.append(x)
        g = self.global_feature(x)
        outputs = [getattr(self, f"attention{level}")(l, g) for level, l in zip(self.levels, locals_)]
        return self.match([d for _, d in outputs]), tuple(a for a, _ in outputs)


def leaf(tensor):
    return tensor.detach().requires_grad_(True)


def authors_backward(model: LtpaVgg, x, labels) -> None:
    """Parameter gradients as the authors' feval computes them (stage by stage, averaged at the junctions)."""
    inputs, outputs = [], []
    for first, last in model.stages():
        inputs.append(leaf(outputs[-1]) if outputs else x)
        outputs.append(model.stage(inputs[-1], first, last))
    global_input = leaf(outputs[-1])
    g = model.global_feature(global_input)
    local_leaves, g_leaves, descriptors = [], [], []
    for level, out in zip(model.levels, outputs):
        local_leaves.append(leaf(out))
        g_leaves.append(leaf(g))
        descriptors.append(getattr(model, f"attention{level}")(local_leaves[-1], g_leaves[-1])[1])
    descriptor_leaves = [leaf(d) for d in descriptors]
    F.cross_entropy(model.match(descriptor_leaves), labels).backward()
    for descriptor, descriptor_leaf in zip(descriptors, descriptor_leaves):
        descriptor.backward(descriptor_leaf.grad)
    g.backward(sum(g_leaf.grad for g_leaf in g_leaves) / len(g_leaves))
    downstream = global_input.grad
    for index in reversed(range(len(outputs))):
        outputs[index].backward((downstream + local_leaves[index].grad) / 2)
        downstream = inputs[index].grad if index > 0 else None


class Nin(nn.Module):
    """wide-residual-networks models/nin.lua (optionally without BN / without the ReLU before each pool)."""

    def __init__(self, classes: int, widths, batch_norm: bool = True, relu_before_pool: bool = True):
        super().__init__()
        self.batch_norm, self.relu_before_pool = batch_norm, relu_before_pool
        cin = 3
        for block, (channels, kernel) in enumerate(zip(widths, (5, 5, 3)), start=1):
            for position, width in enumerate(channels, start=1):
                size = kernel if position == 1 else 1
                self.add_module(f"block{block}_{position}_conv",
                                nn.Conv2d(cin, width, size, padding=(size - 1) // 2, bias=not batch_norm))
                if batch_norm:
                    self.add_module(f"block{block}_{position}_bn", nn.BatchNorm2d(width, eps=1e-5))
                cin = width
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x):
        features = []
        for block in (1, 2, 3):
            for position in (1, 2, 3):
                x = getattr(self, f"block{block}_{position}_conv")(x)
                if self.batch_norm:
                    x = getattr(self, f"block{block}_{position}_bn")(x)
                if position < 3 or self.relu_before_pool:
                    x = F.relu(x)
            features.append(x)
            if block == 1:
                x = F.max_pool2d(x, 3, 2, ceil_mode=True)
            elif block == 2:
                x = F.avg_pool2d(x, 3, 2, ceil_mode=True)
        return self.classifier(x.mean((2, 3))), tuple(features)


def build(name: str, classes: int) -> nn.Module:
    if name == "vgg":
        return VggBnDrop(classes)
    if name.startswith("vgg-att"):
        _, levels, aggregation, compatibility = name.split("-")
        return LtpaVgg(classes, (1, 2, 3) if levels == "att3" else (2, 3), compatibility, aggregation)
    options = {"batch_norm": "-nobn" not in name, "relu_before_pool": "-norelu" not in name}
    return Nin(classes, NIN_THIN if "thin" in name else NIN_WIDE, **options)


def with_reference_weights(model: nn.Module) -> nn.Module:
    state = {key: torch.from_numpy(reference_tensor(key, tuple(value.shape)).astype(np.float64))
             for key, value in model.state_dict().items() if not key.endswith("num_batches_tracked")}
    model.double().load_state_dict(state, strict=False)
    return model.eval()


def gradients(model: nn.Module, x, labels, authors: bool) -> dict:
    model.zero_grad()
    if authors:
        authors_backward(model, x, labels)
    else:
        F.cross_entropy(model(x)[0], labels).backward()
    named = dict(model.named_parameters())
    return {name: named[name].grad.numpy() for name in GRAD_TENSORS if name in named}


def main() -> None:
    count_models = (["vgg"] + [f"vgg-att{n}-{a}-{c}" for n in (2, 3) for a in ("concat", "indep") for c in ("pc", "dp")]
                    + ["nin-thin", "nin-wide", "nin-thin-nobn", "nin-wide-nobn"])
    out = {"input16": reference_input((2, 16, 16, 3), 1), "input32": reference_input((2, 32, 32, 3), 2),
           "labels": np.array([3, 7])}
    for name in count_models:
        for classes in (10, 100):
            model = build(name, classes)
            out[f"counts/{name}/{classes}"] = np.int64(sum(p.numel() for p in model.parameters()))
        names = [[key, list(value.shape)] for key, value in build(name, 10).state_dict().items()
                 if not key.endswith("num_batches_tracked")]
        out[f"names/{name}"] = np.array(json.dumps(names))
    forward_models = ("vgg", "vgg-att3-concat-pc", "vgg-att3-indep-dp", "vgg-att2-indep-pc", "nin-wide",
                      "nin-thin-nobn-norelu")
    labels = torch.from_numpy(out["labels"])
    for name in forward_models:
        model = with_reference_weights(build(name, 10))
        x = torch.from_numpy(out["input32" if name.startswith("nin") else "input16"]).double().permute(0, 3, 1, 2)
        with torch.no_grad():
            logits, maps = model(x)
        out[f"logits/{name}"] = logits.numpy()
        if name.startswith("vgg-att"):
            out[f"maps/{name}"] = np.concatenate([m.reshape(-1).numpy() for m in maps])
        if name in ("vgg-att3-concat-pc", "vgg-att2-indep-pc"):
            for mode in ("true", "authors"):
                for tensor, grad in gradients(model, x, labels, mode == "authors").items():
                    out[f"grad/{mode}/{name}/{tensor}"] = grad
    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    np.savez_compressed(OUT_PATH, **out)
    for name in count_models:
        print(f"{name:22s} {int(out[f'counts/{name}/10']):>12,d} {int(out[f'counts/{name}/100']):>12,d}")


if __name__ == "__main__":
    main()
