import io
import inspect
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import msresnet1d
from msresnet1d.models import MSResNet1d, ResNet, count_flops, count_parameters, create_model, list_models, summary
from msresnet1d.models.blocks import BasicBlock, Bottleneck, make_stage
from msresnet1d.models.layers import conv, min_input_size

MODELS_1D = [n for n in list_models() if create_model(n).dims == 1]
MODELS_2D = [n for n in list_models() if create_model(n).dims == 2]
LENGTHS = ["min", 97, 360, 361, 1000, 3600, 18000]


def _train_step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward + backward; BatchNorm cannot train on one value per channel, so a batch of one whose
    last stage has one position runs in eval mode (documented in models.base)."""
    last_positions = math.ceil(x.shape[-1] / model.total_stride) ** (x.dim() - 2)
    model.train(x.shape[0] * last_positions > 1)
    model.zero_grad()
    out = model(x)
    out.float().sum().backward()
    return out


def _check_grads(model: nn.Module, name: str) -> None:
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"


@pytest.mark.parametrize("name", MODELS_1D)
def test_1d_models_forward_backward_grid(name):
    # every length on one channel; the channel counts (which change the stem alone) at two lengths; a batch of 4
    # up to 10 s (the longest, 50 s, took a third of the test's minute for msresnet1d_large)
    models = {c: create_model(name, in_channels=c, num_classes=3) for c in (1, 2, 12)}
    for channels, model in models.items():
        for length in LENGTHS if channels == 1 else ["min", 361]:
            length = model.min_input_size if length == "min" else length
            for batch in (1, 4) if length <= 3600 else (1,):
                out = _train_step(model, torch.randn(batch, channels, length))
                assert out.shape == (batch, 3), (name, channels, length, batch)
                _check_grads(model, f"{name} C={channels} L={length} N={batch}")


@pytest.mark.parametrize("name", MODELS_2D)
def test_2d_models_forward_backward(name):
    for channels in (1, 3):
        model = create_model(name, in_channels=channels, num_classes=7)
        for size in (model.min_input_size, 28, 48):
            for batch in (1, 4):
                out = _train_step(model, torch.randn(batch, channels, size, size))
                assert out.shape == (batch, 7)
                _check_grads(model, f"{name} C={channels} {size}x{size} N={batch}")


@pytest.mark.parametrize("name", MODELS_1D + MODELS_2D)
def test_bad_input_names_expected_and_actual(name):
    model = create_model(name, in_channels=2).eval()
    spatial = (model.min_input_size + 40,) * model.dims
    with pytest.raises(ValueError, match=r"expected 2 input channel\(s\), got 3 .*; build the model with "
                                         r"in_channels=3 or select 2 channel\(s\)"):
        model(torch.randn(1, 3, *spatial))
    with pytest.raises(ValueError, match=r"channels come second: is it channels-last\? pass x.permute" +
                       (r"\(0, 2, 1\)" if model.dims == 1 else r"\(0, 3, 1, 2\)")):
        model(torch.randn(1, *spatial, 2))
    short = (model.min_input_size - 1,) * model.dims
    unit = "samples" if model.dims == 1 else "pixels"
    with pytest.raises(ValueError, match=rf"too short.*at least {model.min_input_size} {unit} per axis"):
        model(torch.randn(1, 2, *short))
    with pytest.raises(ValueError, match=r"expected a \d-D input"):
        model(torch.randn(2, *spatial))
    # in training, one input whose last stage has one position: said with what to change (was torch's "Expected
    # more than 1 value per channel when training"); one position more, or two inputs, train
    side = (model.total_stride,) * model.dims
    with pytest.raises(ValueError, match=rf"^training on 1 input\(s\) of shape \[2, {', '.join(map(str, side))}\]: "
                                         rf"BatchNorm needs 2 or more values per channel.*total stride "
                                         rf"{model.total_stride}\): train on batches of 2 or more, or on inputs longer"):
        model.train()(torch.randn(1, 2, *side))
    model(torch.randn(1, 2, *side[:-1], model.total_stride + 1))
    model(torch.randn(2, 2, *side))
    assert model(torch.randn(0, 2, *side)).shape[0] == 0  # an empty batch runs, as torch runs it
    for m in model.modules():  # frozen BatchNorms (fine-tuning the rest): one input runs, as before the check
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    model(torch.randn(1, 2, *side))
    model.eval()
    for m in model.modules():  # BatchNorms training in an eval-mode model (adapt_batchnorm's way): said too
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    with pytest.raises(ValueError, match=r"BatchNorm needs 2 or more values per channel"):
        model(torch.randn(1, 2, *side))
    model.eval()
    with pytest.raises(ValueError, match=r"input of dtype torch.float64, the model's parameters are torch.float32"):
        model(torch.randn(1, 2, *spatial, dtype=torch.float64))  # e.g. from a numpy array


def test_extra_features_of_another_dtype_are_named():
    model = create_model("msresnet1d_beat", extra_features=3).eval()
    with pytest.raises(ValueError, match=r"extra features of dtype torch.float64, .* are torch.float32"):
        model(torch.randn(2, 1, 200), torch.randn(2, 3, dtype=torch.float64))
    assert model.double()(torch.randn(2, 1, 200, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)).dtype \
        == torch.float64  # a model converted to float64 takes float64


@pytest.mark.parametrize("name, spatial", [("msresnet1d_beat", (16,)), ("resnet18", (4, 4))])
def test_forward_head_names_what_it_takes(name, spatial):
    model = create_model(name, in_channels=1, num_classes=3, **({"extra_features": 3} if name != "resnet18" else {}))
    model.eval()
    extra = (torch.randn(2, 3),) if name != "resnet18" else ()
    layout = "L'" if len(spatial) == 1 else "H', W'"
    features = torch.randn(2, model.num_features, *spatial)
    assert model.forward_head(features, *extra).shape == (2, 3)
    for wrong in (features[:, 1:], features.mean(dim=-1).flatten(1)):  # a channel short; already pooled
        with pytest.raises(ValueError, match=re.escape(
                f"forward_head takes the feature map of forward_features, (N, num_features={model.num_features}, "
                f"{layout}); got shape {list(wrong.shape)}")):
            model.forward_head(wrong, *extra)
    with pytest.raises(TypeError, match=re.escape("features must be a torch.Tensor, got ndarray: convert it with "
                                                  "torch.from_numpy(x).float()")):
        model.forward_head(features.numpy(), *extra)
    with pytest.raises(ValueError, match=r"features of dtype torch\.float64, the model's parameters are "
                                         r"torch\.float32"):
        model.forward_head(features.double(), *extra)
    x = torch.randn(2, 1, *[200] * len(spatial))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # --bf16: the feature map comes in autocast's dtype
        assert model(x, *extra).shape == (2, 3)
        # inputs already in autocast's dtype, as plain torch layers take them there
        torch.testing.assert_close(model(x.bfloat16(), *[e.bfloat16() for e in extra]), model(x, *extra))
    with pytest.raises(ValueError, match=r"input of dtype torch\.bfloat16, the model's parameters are torch\.float32"):
        model(x.bfloat16(), *extra)  # outside autocast, refused
    if extra:
        with pytest.raises(TypeError, match=re.escape("extra must be a torch.Tensor, got ndarray")):
            model(torch.randn(2, 1, 200), extra[0].numpy())
    meta = model.to("meta")  # shapes without memory: no autocast there, and no error
    assert meta(torch.empty(2, 1, *[200] * len(spatial), device="meta"), *[e.to("meta") for e in extra]).shape == (2, 3)


def test_autocast_is_asked_as_the_installed_torch_can(monkeypatch):
    from msresnet1d.models import base

    def before_2_4(*device_type):  # torch 2.2 and 2.3: no device type argument (and no CUDA autocast here)
        if device_type:
            raise TypeError("is_autocast_enabled() takes 0 positional arguments but 1 was given")
        return False

    real = torch.is_autocast_enabled
    # torch 2.2's own CPU question (deprecated since 2.4, and to be removed)
    monkeypatch.setattr(torch, "is_autocast_cpu_enabled", lambda: real("cpu"), raising=False)
    monkeypatch.setattr(torch, "is_autocast_enabled", before_2_4)
    assert not base._autocast_on("cpu")
    monkeypatch.setattr(torch, "is_autocast_enabled", real)  # torch.autocast itself asks it, with a device type
    with torch.autocast("cpu", dtype=torch.bfloat16):
        monkeypatch.setattr(torch, "is_autocast_enabled", before_2_4)
        assert base._autocast_on("cpu")  # through torch.is_autocast_cpu_enabled()
        assert not base._autocast_on("cuda")  # CPU autocast is not CUDA's (torch.is_autocast_enabled() is CUDA's)
        monkeypatch.setattr(torch, "is_autocast_enabled", real)


def test_d2l_resnet18_matches_the_textbook():
    model = create_model("resnet18_d2l", in_channels=1, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 11_178_378
    shapes = []
    x = model.stem(torch.zeros(1, 1, 224, 224))
    shapes.append(tuple(x.shape[1:]))
    for stage in model.stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(64, 56, 56), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    # d2l layout: conv biases on, 1x1 shortcut without BN, identity where the shape is unchanged.
    assert model.stem[0].bias is not None
    assert isinstance(model.stages[0][0].shortcut, nn.Identity)
    assert isinstance(model.stages[1][0].shortcut, nn.Conv2d) and model.stages[1][0].shortcut.bias is not None


def test_one_channel_image_net_on_rgb_input_says_what_to_do():
    model = create_model("resnet18_d2l", in_channels=1).eval()
    with pytest.raises(ValueError, match=r"expected 1 input channel\(s\), got 3.*in_channels=3"):
        model(torch.randn(2, 3, 96, 96))


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("preact", [False, True])
@pytest.mark.parametrize("block_cls", [BasicBlock, Bottleneck])
def test_blocks_are_dimension_generic(dims, preact, block_cls):
    block = block_cls(dims, 16, 8, stride=2, preact=preact, shortcut="avg_conv_bn")
    x = torch.randn(2, 16, *(11,) * dims)
    y = block(x)
    assert y.shape == (2, 8 * block_cls.expansion, *(6,) * dims)
    # Pre-activation adds nothing after the sum; post-activation ends on ReLU.
    assert isinstance(block.act, nn.Identity) == preact


def test_shortcut_is_identity_only_where_the_shape_is_unchanged():
    stage = make_stage("basic", 1, 16, 32, 3, stride=2)
    assert not isinstance(stage[0].shortcut, nn.Identity)
    assert all(isinstance(b.shortcut, nn.Identity) for b in stage[1:])
    same = make_stage("basic", 1, 32, 32, 1, stride=1)
    assert isinstance(same[0].shortcut, nn.Identity)
    with pytest.raises(ValueError, match=r"one of \['basic', 'bottleneck'\] or a block class, got 'basc'"):
        make_stage("basc", 1, 16, 32, 1)  # was KeyError: 'basc'


@pytest.mark.parametrize("kernel", [2, 3, 4, 7, 8])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_padding_for_odd_and_even_kernels(kernel, stride, dilation):
    layer = conv(1, 3, 5, kernel, stride, dilation)
    for length in (5, 96, 97):
        assert layer(torch.randn(1, 3, length)).shape[-1] == math.ceil(length / stride)


def test_min_input_size_rule():
    assert min_input_size([2, 2, 1, 2, 2, 2]) == 17  # ResNet-18: stage 4 still sees 2 positions
    assert min_input_size([1, 1]) == 1
    assert min_input_size([4]) == 4


def test_zero_init_residual_makes_blocks_start_as_identity():
    model = MSResNet1d(zero_init_residual=True)
    block = model.stages[0].branches[0][0]
    assert torch.count_nonzero(block.last_norm().weight) == 0
    plain = MSResNet1d(zero_init_residual=False)
    assert torch.count_nonzero(plain.stages[0].branches[0][0].last_norm().weight) > 0
    # the branch adds zero: a post-activation block with an identity shortcut computes ReLU(0 + x)
    assert isinstance(block.shortcut, nn.Identity)
    x = torch.randn(2, block.last_norm().num_features, 50)
    assert torch.equal(block.eval()(x), torch.relu(x))


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention", "late"])
def test_msresnet_fusion_modes_and_timm_interface(fusion):
    model = MSResNet1d(in_channels=2, num_classes=4, kernels=(3, 8, 15), dilations=(1, 1, 2), fusion=fusion)
    model.eval()
    x = torch.randn(3, 2, 400)
    features = model.forward_features(x)
    assert features.shape[:2] == (3, model.num_features) and features.shape[-1] == math.ceil(400 / model.total_stride)
    logits = model.forward_head(features)
    assert torch.equal(logits, model(x))
    assert model.forward_head(features, pre_logits=True).shape == (3, model.num_features)
    with pytest.raises(ValueError, match="pre_logits must be True or False, got 'no'"):  # a truthy string gave them
        model.forward_head(features, pre_logits="no")
    model.reset_classifier(9)
    assert model(x).shape == (3, 9)


def test_each_branch_has_its_own_kernel_and_attention_weighs_the_branches():
    model = MSResNet1d(kernels=(3, 8, 15), widths=(8, 8), layers=(1, 1), stem_channels=8, fusion="attention")
    for stage in model.stages:
        convs = [[m for m in branch.modules() if isinstance(m, nn.Conv1d)] for branch in stage.branches]
        assert [c[0].weight.shape[-1] for c in convs] == [3, 8, 15]
    # the softmax is over branches: branches that agree are returned unchanged, whatever the weights
    fuse = model.stages[0].fuse
    with torch.no_grad():
        fuse.excite.weight.normal_()
    x = torch.randn(2, 8, 20)
    torch.testing.assert_close(fuse([x, x, x]), x)


def test_late_fusion_keeps_towers_independent():
    model = MSResNet1d(kernels=(3, 5, 7), fusion="late", zero_init_residual=False).eval()
    x = torch.randn(2, 1, 256)
    stem = model.stem(x)
    towers = model.stages.towers
    assert len(towers) == 3
    # Perturbing one tower's weights changes only its slice of the joined features.
    with torch.no_grad():
        before = model.stages(stem)
        towers[1][0][0].branch[0].weight.add_(1.0)
        after = model.stages(stem)
    width = before.shape[1] // 3
    assert torch.equal(before[:, :width], after[:, :width])
    assert torch.equal(before[:, 2 * width:], after[:, 2 * width:])
    assert not torch.equal(before[:, width:2 * width], after[:, width:2 * width])


def test_regression_head_and_extra_features():
    model = MSResNet1d(out_features=2, extra_features=4).eval()
    assert model.task == "regression"
    x, extra = torch.randn(5, 1, 200), torch.randn(5, 4)
    assert model(x, extra).shape == (5, 2)
    with pytest.raises(ValueError, match="pass extra"):
        model(x)
    with pytest.raises(ValueError, match=r"shape \(5, 4\)"):
        model(x, torch.randn(5, 3))


@pytest.mark.parametrize("dims", [1, 2])
def test_extra_features_mlp_and_modality_dropout(dims):
    kwargs = dict(extra_features=8, extra_hidden=16, feature_drop_rate=0.5)
    model = (create_model("msresnet1d_beat", **kwargs) if dims == 1 else
             create_model("resnet18", dims=2, in_channels=1, num_classes=5, widths=(8, 8, 8, 8), stem_channels=8,
                          **kwargs))
    assert model.fc.in_features == model.num_features + 16
    features, extra = torch.randn(4000, model.num_features, *[3] * dims), torch.randn(4000, 8)
    with torch.no_grad():
        kept = model.eval().forward_head(features, extra)
        dropped = model.forward_head(torch.zeros_like(features), extra)  # the extra features alone
        trained = model.train().forward_head(features, extra)
        embedding = model.eval().forward_head(features, extra, pre_logits=True)
    torch.testing.assert_close(embedding[:, model.num_features:], model.extra_mlp(extra))
    is_kept = torch.isclose(trained, kept).all(dim=1)
    is_dropped = torch.isclose(trained, dropped).all(dim=1)
    assert (is_kept ^ is_dropped).all()  # each example keeps or loses all its pooled features
    assert 0.45 < is_dropped.float().mean() < 0.55
    model.reset_classifier(3)
    assert model.eval()(torch.randn(2, 1, *[128] * dims), torch.randn(2, 8)).shape == (2, 3)
    scripted = torch.jit.script(model)
    x, e = torch.randn(2, 1, *[128] * dims), torch.randn(2, 8)
    torch.testing.assert_close(scripted(x, e), model(x, e))


@pytest.mark.parametrize("dims, extra_hidden", [(1, 16), (1, 0), (2, 16)])
def test_split_by_extra_lets_the_extra_features_alone_divide_the_groups_probability(dims, extra_hidden):
    kwargs = dict(extra_features=4, extra_hidden=extra_hidden, split_by_extra=(3, 0))
    model = (create_model("msresnet1d_beat", **kwargs) if dims == 1 else
             create_model("resnet18", dims=2, in_channels=1, num_classes=5, widths=(8, 8, 8, 8), stem_channels=8,
                          **kwargs)).eval()
    x, extra = torch.randn(6, 1, *[64] * dims), torch.randn(6, 4)
    with torch.no_grad():
        p = model(x, extra).softmax(dim=1)
        other = model(torch.randn_like(x), extra).softmax(dim=1)  # another waveform, the same extra features
        # without the split: the plain head's probabilities, whose group total the split keeps
        plain = model.fc(model.forward_head(model.forward_features(x), extra, pre_logits=True)).softmax(dim=1)
        within = model.split_fc(model.extra_mlp(extra)).softmax(dim=1)  # (6, 2): classes 3 and 0, in that order
    torch.testing.assert_close(p.sum(dim=1), torch.ones(6))
    torch.testing.assert_close(p[:, [1, 2, 4]], plain[:, [1, 2, 4]])
    torch.testing.assert_close(p[:, [3, 0]], plain[:, [3, 0]].sum(dim=1, keepdim=True) * within)
    group_share = p[:, [3, 0]] / p[:, [3, 0]].sum(dim=1, keepdim=True)
    torch.testing.assert_close(group_share, other[:, [3, 0]] / other[:, [3, 0]].sum(dim=1, keepdim=True))
    assert not torch.allclose(p, other)  # the waveform still sets the group's total
    # trained by the loss through the split: the waveform gets no gradient from how the group divides
    logits = model.train()(x, extra)
    grads = torch.autograd.grad(logits.log_softmax(1)[:, 3].sum() - logits.log_softmax(1)[:, 0].sum(),
                                [model.fc.weight, model.split_fc.weight])
    assert grads[0].abs().max() < 1e-6 and grads[1].abs().max() > 0
    scripted = torch.jit.script(model.eval())
    torch.testing.assert_close(scripted(x, extra), model(x, extra))
    assert not any(k.startswith("split_select") for k in model.state_dict())  # rebuilt from the option
    model.reset_classifier(3)  # another task's classes: the group is dropped
    assert model.split_fc is None and model(x, extra).shape == (6, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(extra_features=3, split_by_extra=(1,)), "at least 2"),
    (dict(extra_features=3, split_by_extra=(1, 1)), "distinct"),
    (dict(extra_features=3, split_by_extra=(0, 5)), r"in \[0, 5\)"),
    (dict(extra_features=3, split_by_extra=(0.9, 1)), r"class indices"),
    (dict(extra_features=3, split_by_extra="01"), r"class indices"),
    (dict(split_by_extra=(0, 1)), "extra_features=0"),
    (dict(extra_features=3, out_features=2, split_by_extra=(0, 1)), "regression"),
])
def test_split_by_extra_is_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MSResNet1d(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(extra_hidden=8), "extra_features=0"), (dict(feature_drop_rate=0.2), "extra_features=0"),
    (dict(extra_features=2, feature_drop_rate=1.0), r"feature_drop_rate must be a probability in \[0, 1\), got 1\.0"),
])
def test_head_options_need_extra_features(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MSResNet1d(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(fusion="mean"), r"fusion must be one of \('concat', 'sum', 'attention', 'late'\), got 'mean'"),
    (dict(kernels=(3, 5), dilations=(1,)), r"kernels \(3, 5\) and dilations \(1,\) must be non-empty and of equal"),
    (dict(block="wide"), r"block must be one of \['basic', 'bottleneck'\], got 'wide'"),
])
def test_msresnet_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MSResNet1d(**kwargs)


@pytest.mark.parametrize("model, kwargs, match", [
    (MSResNet1d, dict(kernels=(0, 3, 3)), r"kernels must be integers >= 1, got \(0, 3, 3\)"),
    (MSResNet1d, dict(kernels=(-3, 3, 3)), "kernels must be integers >= 1"),
    (MSResNet1d, dict(dilations=(0, 1, 1)), "dilations must be integers >= 1"),
    (MSResNet1d, dict(widths=(0, 0, 0)), "widths must be integers >= 1"),
    (MSResNet1d, dict(layers=(1, 0, 1)), "layers must be integers >= 1"),
    (MSResNet1d, dict(in_channels=0), "in_channels must be an integer >= 1, got 0"),
    (MSResNet1d, dict(stem_stride=1.5), "stem_stride must be an integer >= 1, got 1.5"),
    (ResNet, dict(dims=1, kernel_size=0), "kernel_size must be an integer >= 1"),
    (ResNet, dict(dims=1, in_channels=True), "in_channels must be an integer >= 1, got True"),
])
def test_sizes_must_be_positive_integers_and_are_named(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model(**kwargs)


@pytest.mark.parametrize("model, kwargs, match", [
    (MSResNet1d, dict(widths=(10**12, 16, 16)), r"widths must be at most 2\*\*31 .*got \(1000000000000, 16, 16\)"),
    (MSResNet1d, dict(stem_channels=2**63 - 1), r"stem_channels must be at most 2\*\*31 .*got 9223372036854775807"),
    (MSResNet1d, dict(stem_kernel=2**63 - 1), r"stem_kernel must be at most 2\*\*31"),
    (MSResNet1d, dict(kernels=(3, 2**63 - 1)), r"kernels must be at most 2\*\*31"),
    (MSResNet1d, dict(extra_features=8, extra_hidden=2**40),
     r"extra_hidden must be at most 2\*\*31 .*got 1099511627776"),
    (MSResNet1d, dict(num_classes=2**40), r"num_classes or out_features must be at most 2\*\*31"),
    (ResNet, dict(dims=1, widths=(2**40,) * 4), r"widths must be at most 2\*\*31"),
])
def test_sizes_past_2_to_the_31_are_refused_before_torch_overflows(model, kwargs, match):
    """They stopped in torch: 'Storage size calculation overflowed', or an allocation of petabytes."""
    with pytest.raises(ValueError, match=match):
        model(**kwargs)


@pytest.mark.parametrize("model, kwargs", [
    (MSResNet1d, dict(stem_stride=[])), (MSResNet1d, dict(stem_stride=[2])), (MSResNet1d, dict(stem_channels=[8])),
    (MSResNet1d, dict(stem_kernel=np.array([7]))), (MSResNet1d, dict(in_channels=(1,))),
    (ResNet, dict(dims=1, kernel_size=[3])),
])
def test_a_scalar_size_given_as_a_sequence_is_refused_naming_it(model, kwargs):
    """An IndexError inside Conv1d (stem_stride=[]) or a comparison of a tuple with an int."""
    name = next(key for key in kwargs if key != "dims")
    with pytest.raises(ValueError, match=rf"^{name} must be one integer >= 1, not a sequence, got "):
        model(**kwargs)


@pytest.mark.parametrize("name, options", [
    ("msresnet1d_beat", dict(preact="no")), ("msresnet1d_beat", dict(separable="no")),
    ("msresnet1d_beat", dict(stem_pool="False")), ("msresnet1d_beat", dict(zero_init_residual="off")),
    ("msresnet1d_beat", dict(preact=1)), ("msresnet1d_beat", dict(separable=None)),
    ("resnet18", dict(dims=1, bias="no")), ("resnet18", dict(dims=1, preact="False")),
    ("resnet18", dict(dims=1, stem_pool=0)), ("resnet18", dict(dims=1, zero_init_residual="yes")),
])
def test_boolean_options_must_be_true_or_false(name, options):
    """A string such as "False" (from --set) was taken as true: a pre-activation model, recorded as "False"."""
    option = next(key for key in options if key != "dims")
    value = options[option]
    with pytest.raises(ValueError, match=rf"^{option} must be True or False, got {re.escape(repr(value))}$"):
        create_model(name, **options)


def test_boolean_options_may_be_numpy_booleans_and_are_kept_as_bools():
    model = create_model("msresnet1d_beat", preact=np.bool_(True), stem_pool=np.bool_(False),
                         zero_init_residual=np.bool_(True))
    assert type(model.zero_init_residual) is bool and len(model.stem) == 1  # pre-activation: the convolution alone


def test_sizes_may_be_numpy_integers_as_a_parameter_grid_gives_them():
    model = MSResNet1d(widths=np.array([8, 16, 16]), layers=(np.int64(1),) * 3, in_channels=np.array(2),
                       stem_channels=np.int64(8), kernels=np.array([3, 5]))
    assert model.in_channels == 2 and type(model.in_channels) is int and model.kernels == (3, 5)
    x = torch.randn(2, 2, 100)
    torch.testing.assert_close(torch.jit.script(model.eval())(x), model(x))  # plain ints in every layer
    assert ResNet(dims=1, in_channels=np.int64(2), widths=np.array([8] * 4), kernel_size=np.int64(3))(x).shape[1] == 1000


def test_registry():
    assert "msresnet1d_beat" in list_models() and "resnet18_d2l" in list_models()
    assert list_models("msresnet1d_*") == [n for n in list_models() if n.startswith("msresnet1d_")]
    signal_net = msresnet1d.create_model("resnet34", dims=1, in_channels=12)
    assert isinstance(signal_net, ResNet) and signal_net.dims == 1
    with pytest.raises(ValueError, match="unknown model 'nope'.*msresnet1d_beat"):
        create_model("nope")


def test_summary_prints_shapes_and_parameters():
    lines = []
    model = create_model("resnet18_d2l")
    rows = summary(model, (1, 1, 96, 96), depth=1, print_fn=lines.append)
    assert [r[1] for r in rows if r[0] == "stages"] == [(1, 512, 3, 3)]
    assert [r[:2] for r in rows[1:4]] == [("stages", (1, 512, 3, 3)), ("(global average pool)", (1, 512)),
                                          ("dropout", (1, 512))]  # the pooling inside forward_head, as d2l's AdaptiveAvgPool2d
    assert lines[2].split()[:2] == ["stages", "Sequential"] and lines[-1].split()[-1] == "11,178,378"
    assert len({len(line) for line in lines}) == 1  # the columns line up, the total too
    # a 1D model in channels-last mode shows (N, C, L), as it takes and gives
    beat = create_model("msresnet1d_beat", in_channels=2)
    plain = summary(beat, (1, 2, 126), print_fn=lambda line: None)
    assert summary(beat.set_channels_last(), (1, 2, 126), print_fn=lambda line: None) == plain
    assert ("stages", (1, 64, 8), sum(p.numel() for p in beat.stages.parameters())) in plain
    # d2l's way: an example input tensor, whose shape is used
    assert summary(beat, torch.rand(1, 2, 126), print_fn=lambda line: None) == plain
    assert count_flops(beat, torch.rand(1, 2, 126)) == count_flops(beat, (1, 2, 126))
    twice = nn.Sequential(nn.Conv1d(1, 1, 3))  # a module run twice: its first output, once
    twice.forward = lambda x: twice[0](twice[0](x))
    assert summary(twice, (1, 1, 10), print_fn=lambda line: None) == [("0", (1, 1, 8), 4)]
    for bad in ((1, 2, 0), (1, 2.5, 126), "1x2x126", 126):
        with pytest.raises(ValueError, match=r"input_shape must be a shape such as \(1, 1, 360\)"):
            summary(beat, bad, print_fn=lambda line: None)
    calls = {"summary": lambda m: summary(m, (1, 1, 126)), "count_flops": lambda m: count_flops(m, (1, 1, 126)),
             "count_parameters": count_parameters}
    for function, call in calls.items():  # a name was "'str' object has no attribute 'named_modules'"
        with pytest.raises(TypeError, match=re.escape(f"{function}: model must be a torch.nn.Module, got str "
                                                      "'msresnet1d_beat' (build one with msresnet1d.models.")):
            call("msresnet1d_beat")
    for depth in (0, "x", 1.5):
        message = rf"summary: depth must be a whole number >= 1 .*, got {re.escape(repr(depth))}"
        with pytest.raises(ValueError, match=message):
            summary(beat, (1, 2, 126), depth=depth)
    with pytest.raises(TypeError, match="summary: print_fn must be callable"):
        summary(beat, (1, 2, 126), print_fn=None)


@pytest.mark.parametrize("fusion", ["concat", "attention", "late"])
def test_torchscript_and_torch_export_match_eager(fusion):
    from torch.export import Dim, export

    model = create_model("msresnet1d_beat", in_channels=2, fusion=fusion).eval()
    example = torch.randn(2, 2, 300)
    scripted = torch.jit.script(model)
    length = Dim("length", min=model.total_stride + 1, max=1_000_000)
    exported = export(model, (example,), dynamic_shapes={"x": {0: Dim("batch", max=4096), 2: length}}).module()
    for x in (torch.randn(3, 2, 360), torch.randn(1, 2, 1001)):
        expected = model(x)
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(exported(x), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["msresnet1d_beat", "resnet1d_beat"])
def test_eval_is_deterministic_and_state_dict_round_trips(name):
    model = create_model(name, in_channels=2).eval()
    x = torch.randn(4, 2, 500)
    first = model(x)
    assert torch.equal(first, model(x))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = create_model(name, in_channels=2).eval()
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(clone(x), first)


def test_1d_layers_compute_the_same_on_a_one_row_image():
    """The package's 1D layers take (N, C, L) and (N, C, 1, L) alike (the channels-last mode)."""
    from msresnet1d.models.layers import BatchNorm1d, Conv1d, avgpool, maxpool

    torch.manual_seed(0)
    layers = {"conv": Conv1d(3, 4, 5, stride=2, padding=4, dilation=2, groups=1, bias=True),
              "grouped": Conv1d(4, 4, 3, padding=1, groups=4), "bn": BatchNorm1d(3).train(),
              "maxpool": maxpool(1, 3, 2), "avgpool": avgpool(1, 2)}
    for length in (5, 96, 97):
        for name, layer in layers.items():
            x = torch.randn(2, 4 if name == "grouped" else 3, length)
            flat = layer(x)
            image = layer(x.unsqueeze(2).contiguous(memory_format=torch.channels_last))
            assert image.shape == (flat.shape[0], flat.shape[1], 1, flat.shape[2]), name
            torch.testing.assert_close(image.squeeze(2), flat, msg=name)
        x = torch.randn(2, 3, length)
        assert torch.equal(maxpool(1, 3, 2)(x), nn.MaxPool1d(3, 2, 1)(x))
        assert torch.equal(avgpool(1, 2)(x), nn.AvgPool1d(2, 2, ceil_mode=True, count_include_pad=False)(x))
    with pytest.raises(ValueError, match="5-D"):
        BatchNorm1d(3)(torch.randn(2, 3, 1, 1, 4))
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        Conv1d(3, 4, 3, padding=1, padding_mode="reflect")


@pytest.mark.parametrize("name", ["msresnet1d_beat", "resnet18"])
def test_a_pre_activation_stem_ends_on_its_convolution_for_every_model(name):
    # the first block normalises and activates its input itself: no second BatchNorm-ReLU in the stem
    for preact in (False, True):
        model = create_model(name, in_channels=1, dims=1, preact=preact) if name == "resnet18" else \
            create_model(name, in_channels=1, preact=preact)
        norms = [m for m in model.stem.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert len(norms) == (0 if preact else 1)


CHANNELS_LAST_CASES = [
    ("msresnet1d_beat", dict(kernels=[3, 3, 3], dilations=[1, 3, 7], extra_hidden=8, extra_features=4)),
    ("msresnet1d_beat", dict(fusion="attention", kernels=[4, 9])),
    ("msresnet1d_beat", dict(fusion="sum", separable=True, shortcut="avg_conv_bn")),
    ("msresnet1d_beat", dict(fusion="late", preact=True, block="bottleneck")),
    ("resnet18", dict(dims=1)),
    ("resnet18_d2l", dict()),
]


@pytest.mark.parametrize("name,kwargs", CHANNELS_LAST_CASES)
def test_channels_last_mode_matches_the_default_layout(name, kwargs):
    torch.manual_seed(0)
    model = create_model(name, in_channels=2, **kwargs)
    fast = create_model(name, in_channels=2, **kwargs)
    fast.load_state_dict(model.state_dict())
    assert fast.set_channels_last() is fast and fast.channels_last
    x = torch.randn(8, 2, 200) if model.dims == 1 else torch.randn(8, 2, 32, 32)
    extra = [torch.randn(8, 4)] if kwargs.get("extra_features") else []
    # Gradients in float64: in float32, training-mode BatchNorm on small batches amplifies the
    # different rounding of the two layouts to ~1% in the deep networks' first layers.
    for m in (model, fast):
        m.double().train()
        m.zero_grad()
        m(x.double(), *[e.double() for e in extra]).square().sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for n, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-9, atol=1e-9, msg=n)
    model.float().eval(), fast.float().eval()
    torch.testing.assert_close(fast(x, *extra), model(x, *extra), rtol=1e-4, atol=1e-5)
    assert fast.forward_features(x).shape == model.forward_features(x).shape
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    if model.dims == 2:
        assert fast.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    fast.set_channels_last(False)
    torch.testing.assert_close(fast(x, *extra), model(x, *extra), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 2])
def test_channels_last_mode_scripts_and_runs_nhwc_convolutions(channels):
    from msresnet1d.models.layers import Conv1d

    model = create_model("msresnet1d_beat", in_channels=channels).set_channels_last().eval()
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = (out.dim(), out.is_contiguous(memory_format=torch.channels_last))
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if isinstance(m, Conv1d)]
    x = torch.randn(3, channels, 126)
    out = model(x)
    assert len(seen) > 10 and set(seen.values()) == {(4, True)}, seen
    for handle in handles:
        handle.remove()
    torch.testing.assert_close(torch.jit.script(model)(x), out)


def _with_batchnorm_statistics(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Random BN scales and shifts and running statistics from a few training batches."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    model.train()
    with torch.no_grad():
        for scale in (1.0, 2.0, 3.0):
            model(x * scale + 0.5)
    return model.eval()


@pytest.mark.parametrize("name,kwargs", CHANNELS_LAST_CASES)
def test_fuse_batchnorm_keeps_the_outputs(name, kwargs):
    from msresnet1d.models.fuse import fuse_batchnorm

    torch.manual_seed(0)
    model = create_model(name, in_channels=2, **{k: v for k, v in kwargs.items() if k not in ("extra_features", "extra_hidden")})
    x = torch.randn(16, 2, 200) if model.dims == 1 else torch.randn(16, 2, 32, 32)
    model = _with_batchnorm_statistics(model, x)
    norms = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_batchnorm(model)
    left = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in fused.modules())
    # every conv -> BN pair is folded; pre-activation BNs (before a convolution) stay
    assert left < norms and (left == 0 or kwargs.get("preact"))
    assert not fused.training
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fuse_batchnorm(model.set_channels_last())(x), model(x), rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model is left as it was


def test_fuse_batchnorm_divides_by_the_square_root_of_the_variance_plus_eps():
    # a channel of near-zero variance: eps decides the scale (1 / sqrt(1e-5 + 1e-5), not 1 / sqrt(1e-5))
    from msresnet1d.models.fuse import fuse_batchnorm

    pair = nn.Sequential(nn.Conv1d(1, 1, 1, bias=False), nn.BatchNorm1d(1)).eval()
    with torch.no_grad():
        pair[0].weight.fill_(1.0)
        pair[1].running_var.fill_(1e-5)
    x = torch.ones(1, 1, 3)
    torch.testing.assert_close(fuse_batchnorm(pair)(x), torch.full((1, 1, 3), 2e-5 ** -0.5))
    torch.testing.assert_close(pair(x), torch.full((1, 1, 3), 2e-5 ** -0.5))


def test_adapt_batchnorm_reestimates_the_statistics_on_the_target_inputs():
    from msresnet1d.models.adapt import adapt_batchnorm
    from msresnet1d.models.fuse import fuse_batchnorm

    torch.manual_seed(0)
    x = torch.randn(64, 2, 126) * torch.tensor([[[1.0], [3.0]]]) + torch.tensor([[[2.0], [-1.0]]])
    first = nn.Sequential(nn.Dropout(0.9), nn.BatchNorm1d(2))  # the dropout stays off while adapting
    adapted = adapt_batchnorm(first, [(x,)])
    torch.testing.assert_close(adapted[1].running_mean, x.mean(dim=(0, 2)))
    torch.testing.assert_close(adapted[1].running_var, x.transpose(0, 1).reshape(2, -1).var(dim=1))
    assert not adapted.training and adapted[1].momentum == 0.1 and first[1].running_mean.abs().sum() == 0
    bare = adapt_batchnorm(first, [x[:32], x[32:]])  # a batch may be the input tensor itself
    torch.testing.assert_close(bare[1].running_mean, adapted[1].running_mean)
    from msresnet1d.models.adapt import shuffled_chunks

    ids = torch.arange(70)
    chunks = list(shuffled_chunks([ids, ids * 10], batch_size=32))  # 70 examples: 3 chunks of 24, 24, 22
    assert [len(c[0]) for c in chunks] == [24, 24, 22] and all(torch.equal(c[1], c[0] * 10) for c in chunks)
    assert sorted(torch.cat([c[0] for c in chunks]).tolist()) == list(range(70))
    assert not torch.equal(torch.cat([c[0] for c in chunks]), ids)  # shuffled, the same way each time
    assert all(torch.equal(a[0], b[0]) for a, b in zip(chunks, shuffled_chunks([ids], batch_size=32)))
    for tensors, size, message in (
            ([ids[:0]], 32, r"no examples \(N = 0\)"), ([ids], 0, "batch_size must be a whole number >= 1, got 0"),
            ([ids, ids[:5]], 32, r"give tensors of one length N, got lengths \[70, 5\]")):
        with pytest.raises(ValueError, match=f"shuffled_chunks: {message}"):  # at the call, not at the first chunk
            shuffled_chunks(tensors, batch_size=size)
    # a record at 3x the gain is predicted as the original record is (the convolutions have no bias)
    model = create_model("msresnet1d_beat", in_channels=2, num_classes=5, extra_features=3, extra_hidden=8,
                         feature_drop_rate=0.5, widths=(8, 16, 16), stem_channels=8)
    model.eval()
    extra = torch.randn(64, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    on_x = adapt_batchnorm(model, [(x[:32], extra[:32]), (x[32:], extra[32:])])
    on_3x = adapt_batchnorm(model, [(3 * x[:32], extra[:32]), (3 * x[32:], extra[32:])])
    with torch.no_grad():
        torch.testing.assert_close(on_3x(3 * x, extra), on_x(x, extra), rtol=1e-3, atol=1e-3)
        assert not torch.allclose(model(3 * x, extra), model(x, extra), rtol=1e-3, atol=1e-3)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="no BatchNorm layer with running statistics"):
        adapt_batchnorm(fuse_batchnorm(nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4))), [(x,)])
    with pytest.raises(ValueError, match="got no batches"):
        adapt_batchnorm(model, [])
    with pytest.raises(ValueError, match=r"batch 0 holds 1 tensors; give \(x, extra\) with extra \(N, 3\)"):
        adapt_batchnorm(model, [x])
    plain = create_model("msresnet1d_beat", in_channels=2, widths=(8, 16, 16), stem_channels=8)
    labels = torch.zeros(64, dtype=torch.long)
    with pytest.raises(ValueError, match=r"batch 0 holds 2 tensors; give x alone: .*labelled loader's \(x, y\)"):
        adapt_batchnorm(plain, [(x, labels)])  # what a DataLoader of a TensorDataset(x, y) gives
    with pytest.raises(TypeError, match=r"batch 0: expected a tensor x or .*got ndarray \(convert it with "
                                        r"torch\.from_numpy\)"):
        adapt_batchnorm(plain, [x.numpy()])
    with pytest.raises(ValueError, match=r"this model takes no extra features \(extra_features=0\), got extra of "
                                         r"shape \[64, 3\]"):
        plain(x, extra)
    with pytest.raises(TypeError, match=r"the input must be a torch\.Tensor, got ndarray: convert it with "
                                        r"torch\.from_numpy\(x\)\.float\(\)"):
        plain(x.numpy())
    with pytest.raises(ValueError, match=r"input of dtype torch\.int64, .*convert it with \.to\(torch\.float32\)$"):
        plain(x.long())  # the float64 hint is for float64 inputs only


def test_sign_flip_average_is_the_mean_probability_of_both_polarities():
    from msresnet1d.models.tta import SignFlipAverage, with_tta
    from msresnet1d.training.config import TrainConfig

    torch.manual_seed(0)
    model = create_model("msresnet1d_beat", in_channels=2, num_classes=5, extra_features=3).eval()
    x, rr = torch.randn(6, 2, 120), torch.randn(6, 3)
    with torch.no_grad():
        both = with_tta(model, "flip")(x, rr).softmax(dim=1)
        expected = (model(x, rr).softmax(dim=1) + model(-x, rr).softmax(dim=1)) / 2
        assert not torch.allclose(model(x, rr), model(-x, rr), atol=1e-3)  # the two views differ
    torch.testing.assert_close(both, expected)
    assert isinstance(with_tta(model, "flip"), SignFlipAverage) and with_tta(model, "none") is model
    wrapped = with_tta(model, "flip")  # described as the model (what whole-record inference reads)
    assert (wrapped.in_channels, wrapped.min_input_size, wrapped.fc) == (2, model.min_input_size, model.fc)
    assert list(wrapped.state_dict()) == [f"model.{k}" for k in model.state_dict()]
    chained = wrapped.set_channels_last()  # a chained call keeps the averaging
    assert chained is wrapped and model.channels_last
    with torch.no_grad():
        torch.testing.assert_close(chained(x, rr).softmax(dim=1), expected)
    with pytest.raises(ValueError, match=r"tta must be one of \('none', 'flip'\), got 'mirror'"):
        with_tta(model, "mirror")
    with pytest.raises(ValueError, match=r"config: tta must be one of \('none', 'flip'\), got 'mirror'"):
        TrainConfig(tta="mirror")
    model.reset_classifier(0)  # features out: no probabilities to average
    with pytest.raises(ValueError, match=r"SignFlipAverage averages class probabilities, but this model has no "
                                         r"classifier \(num_classes=0"):
        with_tta(model, "flip")
    with pytest.raises(ValueError, match=r"this model has a regression head \(out_features\): its outputs are "
                                         r"values, not logits"):
        with_tta(create_model("msresnet1d_beat", out_features=2), "flip")


def test_sign_flip_average_stays_finite_where_a_softmax_underflows():
    from msresnet1d.models.tta import SignFlipAverage

    class Fixed(nn.Module):  # logits with a gap of 120 in both views: float32's softmax gives exactly 0
        def forward(self, x, extra=None):
            return torch.tensor([[-120.0, 0.0]]).expand(x.shape[0], 2)

    out = SignFlipAverage(Fixed())(torch.randn(3, 1, 10))
    torch.testing.assert_close(out, torch.tensor([[-120.0, 0.0]]).expand(3, 2))  # not [-inf, 0]


def test_sign_flip_average_follows_the_models_mode_and_scripts():
    from msresnet1d.models.tta import with_tta

    model = create_model("msresnet1d_beat", extra_features=3).eval()
    x, rr = torch.randn(2, 1, 200), torch.randn(2, 3)
    expected = model(x, rr)
    wrapped = with_tta(model, "flip")
    assert not wrapped.training and with_tta(create_model("msresnet1d_beat"), "flip").training
    lines = []
    rows = summary(wrapped, (1, 1, 200), print_fn=lines.append)  # restores the wrapper's mode, recursively
    assert rows == summary(model, (1, 1, 200), print_fn=lambda line: None)  # its model's rows, once each
    assert len({name for name, _, _ in rows}) == len(rows) and any(name == "(global average pool)" for name, _, _ in rows)
    assert not model.training and torch.equal(model(x, rr), expected)
    torch.testing.assert_close(torch.jit.script(wrapped)(x, rr), wrapped(x, rr))
    tuning = create_model("msresnet1d_beat").train()
    tuning.stem.eval()  # a frozen stem, as in fine-tuning: wrapping for validation leaves it so
    assert with_tta(tuning, "flip").training and not tuning.stem.training and tuning.stages.training


def test_sign_flip_average_scripted_or_exported_runs_whole_records_like_the_eager_one(tmp_path):
    from msresnet1d.export import export_torchscript
    from msresnet1d.inference import classify_beats
    from msresnet1d.models.tta import SHAPE_ATTRIBUTES, with_tta

    model = create_model("msresnet1d_beat", extra_features=8).eval()
    wrapped = with_tta(model, "flip")
    scripted = torch.jit.script(wrapped)
    loaded = torch.jit.load(str(export_torchscript(wrapped, tmp_path / "tta.pt")))
    for copy in (scripted, loaded):  # the shape constants survive scripting, unlike attributes reached through the model
        assert all(getattr(copy, name) == getattr(model, name) for name in SHAPE_ATTRIBUTES)
    signal = np.random.default_rng(0).standard_normal((1, 5000)).astype(np.float32)
    beats = np.arange(200, 4800, 300)
    expected = classify_beats(wrapped, signal, beats, (-45, 81), fs=180.0).logits
    assert not np.allclose(expected, classify_beats(model, signal, beats, (-45, 81), fs=180.0).logits, atol=1e-4)
    for copy in (scripted, loaded):
        np.testing.assert_allclose(classify_beats(copy, signal, beats, (-45, 81), fs=180.0).logits, expected, atol=1e-5)


def test_xavier_reinitialisation_keeps_zero_init_residual():
    from msresnet1d.models.blocks import ResidualBlock, init_weights

    def last_norms(model: nn.Module) -> list[torch.Tensor]:
        return [m.last_norm().weight for m in model.modules() if isinstance(m, ResidualBlock)]

    for model in (MSResNet1d(zero_init_residual=True), create_model("resnet1d_beat", zero_init_residual=True)):
        init_weights(model, scheme="xavier")
        assert last_norms(model) and all(torch.count_nonzero(w) == 0 for w in last_norms(model))
        init_weights(model, zero_init_residual=False, scheme="xavier")  # an explicit choice wins
        assert all(torch.count_nonzero(w) > 0 for w in last_norms(model))
    plain = MSResNet1d(zero_init_residual=False)
    init_weights(plain, scheme="xavier")
    assert all(torch.count_nonzero(w) > 0 for w in last_norms(plain))


def test_keyword_arguments_override_every_preset_setting():
    beat = create_model("resnet1d_beat", widths=(8, 16, 32))
    assert beat.num_features == 32
    d2l = create_model("resnet18_d2l", dims=1, bias=False, shortcut="conv_bn")
    assert d2l.dims == 1 and d2l.stem[0].bias is None
    assert isinstance(d2l.stages[1][0].shortcut[1], nn.BatchNorm1d)


def test_an_unknown_option_is_named_with_the_options_the_model_takes():
    from msresnet1d.models.registry import model_options

    with pytest.raises(TypeError, match=r"model 'msresnet1d_beat' takes no option 'bogus', 'dims'; its options: "
                                        r"block, dilations, .*fusion, in_channels, kernels"):
        create_model("msresnet1d_beat", bogus=1, dims=1, widths=(8, 8, 8))
    for name in list_models():
        model, options = create_model(name), model_options(name)
        assert {"in_channels", "num_classes", "widths", "drop_rate"} <= options
        if "dims" in options:  # e.g. resnet1d_beat, whose preset sets 1
            assert create_model(name, dims=model.dims).dims == model.dims


def test_model_options_come_from_the_signatures_without_building_a_model(monkeypatch):
    # the message for an unknown option built a default model to learn its class (1.5 s and 25 M parameters for
    # resnet50)
    from msresnet1d.models import registry
    from msresnet1d.models.registry import model_options

    expected = {name: model_options(name) for name in list_models()}
    signatures = {cls: inspect.signature(cls.__init__) for cls in (ResNet, MSResNet1d)}
    for cls, signature in signatures.items():
        def refuse(*args, **kwargs):
            pytest.fail("a model was built")

        refuse.__signature__ = signature  # the options are read from it
        monkeypatch.setattr(cls, "__init__", refuse)
    assert {name: model_options(name) for name in list_models()} == expected
    assert {"stem_pool", "kernel_size", "zero_init_residual"} <= expected["resnet50"]
    monkeypatch.undo()
    for name in list_models():  # each preset's annotation is the class it builds
        assert registry._built_class(registry._MODELS[name]) is type(create_model(name))
    monkeypatch.undo()
    # a user's factory annotated loosely (nn.Module) or with a name that does not resolve: the class built

    class Net(nn.Module):
        def __init__(self, in_channels: int = 1, width: int = 4) -> None:
            super().__init__()

    def loose(**kwargs) -> nn.Module:
        return Net(**kwargs)

    def unresolved(**kwargs):
        return Net(**kwargs)

    unresolved.__annotations__["return"] = "NotImportedHere"  # a TYPE_CHECKING-only name

    for factory in (loose, unresolved):
        monkeypatch.setitem(registry._MODELS, factory.__name__, factory)
        assert model_options(factory.__name__) == {"in_channels", "width"}
        with pytest.raises(TypeError, match=r"takes no option 'widht' \(did you mean 'width'\?\); its options: "
                                            "in_channels, width"):
            create_model(factory.__name__, widht=3)

def test_other_type_errors_pass_through_create_model_unchanged(monkeypatch):
    from msresnet1d.models import registry

    def broken(**kwargs):
        raise TypeError("a bug inside the factory")

    monkeypatch.setitem(registry._MODELS, "broken", broken)
    with pytest.raises(TypeError, match="^a bug inside the factory$"):
        create_model("broken", widths=(8,))


@pytest.mark.parametrize("options, message", [
    ({"kernels": 5}, r"kernels must be a sequence of integers >= 1, got 5 \(for one, write \(5,\)\)"),
    ({"widths": 64}, r"widths must be a sequence of integers >= 1, got 64"),
    ({"dilations": 2}, r"dilations must be a sequence of integers >= 1, got 2"),
    ({"layers": 2}, r"layers must be a sequence of integers >= 1, got 2"),
    ({"split_by_extra": 0, "extra_features": 2}, r"split_by_extra must be a sequence of class indices, got 0"),
    ({"num_classes": 2.0}, r"the head needs a whole number >= 0 of outputs \(num_classes or out_features; 0: no linear "
                           r"layer\), got 2\.0"),
    ({"extra_features": 1.0}, r"extra_features must be a whole number >= 0, got 1\.0"),
    ({"drop_rate": "0.1"}, r"drop_rate must be a probability in \[0, 1\), got '0\.1'"),
    ({"block": ["basic"]}, r"block must be one of \['basic', 'bottleneck'\], got \['basic'\]"),
])  # fmt: skip
def test_options_of_the_wrong_type_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        create_model("msresnet1d_beat", **options)
    model = create_model("msresnet1d_beat", num_classes=np.int64(3), drop_rate=np.float64(0.1))  # numpy's are fine
    assert model.num_classes == 3


def test_reset_classifier_keeps_the_models_dtype_and_device():
    model = create_model("msresnet1d_beat").double().eval()
    assert model.num_classes == 5 and model.get_classifier() is model.fc
    model.reset_classifier(3)
    assert model.num_classes == 3 and model.get_classifier() is model.fc and model.fc.out_features == 3
    assert model(torch.randn(2, 1, 200, dtype=torch.float64)).dtype == torch.float64
    meta = create_model("msresnet1d_beat").to("meta")
    meta.reset_classifier(3)
    assert meta.fc.weight.is_meta
    for bad in (-1, 2.0, "3"):
        with pytest.raises(ValueError, match=rf"num_classes must be a whole number >= 0 \(0: no linear layer\), "
                                             rf"got {bad!r}"):
            model.reset_classifier(bad)


@pytest.mark.parametrize("name, shape, extra", [("msresnet1d_beat", (2, 1, 200), 0), ("msresnet1d_beat", (2, 1, 200), 3),
                                                ("resnet18_d2l", (2, 1, 28, 28), 0)])
def test_no_classifier_returns_the_pooled_features_as_in_timm(name, shape, extra):
    # timm: reset_classifier(0) or create_model(..., num_classes=0) -> the model gives pre-logits features
    options = dict(extra_features=extra, extra_hidden=4) if extra else {}
    model = create_model(name, **options).double().eval()
    inputs = (torch.randn(*shape, dtype=torch.float64),) + ((torch.randn(2, extra, dtype=torch.float64),) if extra else ())
    pooled = model.forward_head(model.forward_features(inputs[0]), *inputs[1:], pre_logits=True)
    model.reset_classifier(0)
    assert model.num_classes == 0 and isinstance(model.get_classifier(), nn.Identity)
    assert "fc.weight" not in model.state_dict()
    features = model(*inputs)
    assert features.shape == (2, model.num_features + (4 if extra else 0)) and torch.equal(features, pooled)
    with pytest.raises(ValueError, match=r"input of dtype torch\.float32, the model's parameters are torch\.float64"):
        model(inputs[0].float(), *inputs[1:])  # the dtype check no longer reads the linear layer
    scripted = torch.jit.script(model)
    assert torch.allclose(scripted(*inputs), features)
    model.reset_classifier(3)  # and back: a linear layer in the model's dtype
    assert model.num_classes == 3 and model.fc.weight.dtype == torch.float64 and model(*inputs).shape == (2, 3)
    built = create_model(name, num_classes=0, **options)
    assert built.num_classes == 0 and isinstance(built.fc, nn.Identity)


def test_regression_head_needs_an_output():
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match=rf"out_features must be a whole number >= 1 \(the regression outputs\), "
                                             rf"got {bad!r}"):
            MSResNet1d(out_features=bad)
    with pytest.raises(ValueError, match=r"the head needs a whole number >= 0 of outputs \(num_classes or out_features; "
                                         r"0: no linear layer\), got -1"):
        MSResNet1d(num_classes=-1)


@pytest.mark.parametrize("device, dtype", [("cpu", torch.float64), ("meta", torch.float32)])
def test_summary_feeds_inputs_in_the_models_dtype_and_on_its_device(device, dtype):
    model = create_model("msresnet1d_beat", extra_features=2, extra_hidden=4).to(device, dtype)
    rows = summary(model, (1, 1, 200), print_fn=lambda line: None)
    assert rows[-1][:2] == ("fc", (1, 5))


def _set_batchnorm_statistics(norm: nn.Module, generator: torch.Generator) -> None:
    """Random scale, shift and running statistics, so that an eval-mode BatchNorm is a known affine map."""
    with torch.no_grad():
        for tensor in (norm.weight, norm.bias, norm.running_mean):
            tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))
        norm.running_var.copy_(torch.rand(norm.running_var.shape, generator=generator, dtype=norm.running_var.dtype) + 0.5)


@pytest.mark.parametrize("preact", [False, True])
@pytest.mark.parametrize("in_channels, stride, dilation", [(4, 2, 1), (6, 1, 2)])
def test_basic_block_computes_the_documented_residual_with_fixed_weights(preact, in_channels, stride, dilation):
    # A numerical reference written from the blocks docstring with torch.nn.functional. Mutations the shape tests
    # let through: the ReLU between the two convolutions lost (post-activation) or dropped from the pre-activation
    # unit, the stride moved from the first convolution to the second (same output length), the dilation ignored.
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    block = BasicBlock(1, in_channels, 6, stride=stride, dilation=dilation, preact=preact).double().eval()
    norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm1d)]  # the branch's two, then the shortcut's
    for norm in norms:
        _set_batchnorm_statistics(norm, generator)
    w1, w2 = [m.weight for m in block.branch.modules() if isinstance(m, nn.Conv1d)]
    assert (w1.shape, w2.shape) == ((6, in_channels, 3), (6, 6, 3))

    def bn(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, training=False,
                            eps=norm.eps)

    def conv1(x: torch.Tensor) -> torch.Tensor:  # 'same' padding: dilation * (3 - 1) / 2 zeros each side
        return F.conv1d(x, w1, stride=stride, padding=dilation, dilation=dilation)

    def conv2(x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, w2, padding=dilation, dilation=dilation)

    x = torch.randn(3, in_channels, 11, generator=generator, dtype=torch.float64)
    if stride == 1:  # identity shortcut
        assert len(norms) == 2 and isinstance(block.shortcut, nn.Identity)
        shortcut = x
    else:  # torchvision's 1x1 strided convolution + BN
        shortcut = bn(F.conv1d(x, block.shortcut[0].weight, stride=stride), norms[2])
    if preact:  # ResNet v2: BN -> ReLU -> conv, twice; nothing after the sum
        expected = conv2(F.relu(bn(conv1(F.relu(bn(x, norms[0]))), norms[1]))) + shortcut
    else:  # ResNet / d2l: conv -> BN -> ReLU -> conv -> BN, then ReLU after the sum
        expected = F.relu(bn(conv2(F.relu(bn(conv1(x), norms[0]))), norms[1]) + shortcut)
    with torch.no_grad():
        out = block(x)
    assert out.shape == (3, 6, math.ceil(11 / stride))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("preact", [False, True])
def test_the_stride_is_on_the_first_convolution_of_a_basic_block_and_the_k_convolution_of_a_bottleneck(preact):
    # Moving the stride to BasicBlock's second convolution (or to a bottleneck's 1x1 convolutions) keeps the output
    # length ceil(L / 2), so only the layers show it; a bottleneck strides on its k-convolution (ResNet-50 v1.5).
    x = torch.randn(2, 4, 11)
    for block, kernels, strides in [(BasicBlock(1, 4, 8, stride=2, preact=preact), [3, 3], [2, 1]),
                                    (Bottleneck(1, 4, 8, stride=2, kernel_size=5, preact=preact), [1, 5, 1], [1, 2, 1])]:
        convs = [m for m in block.branch.modules() if isinstance(m, nn.Conv1d)]
        assert [c.kernel_size for c in convs] == [(k,) for k in kernels]
        assert [c.stride for c in convs] == [(s,) for s in strides]
        assert block(x).shape[-1] == math.ceil(11 / 2)


@pytest.mark.parametrize("block_cls", [BasicBlock, Bottleneck])
def test_every_unit_of_a_branch_has_its_relu(block_cls):
    # A mutation audit found no test that would notice the ReLU between the branch's convolutions lost (the
    # post-activation loop stopping one unit early) or a pre-activation unit without its ReLU: the docstring's order.
    def kinds(block: nn.Module) -> list[str]:
        names = {nn.Conv1d: "conv", nn.BatchNorm1d: "bn", nn.ReLU: "relu"}
        return [next(name for cls, name in names.items() if isinstance(m, cls)) for m in block.branch]

    units = 2 if block_cls is BasicBlock else 3
    post = ["conv", "bn", "relu"] * units
    assert kinds(block_cls(1, 8, 8)) == post[:-1]  # the last ReLU comes after the sum
    assert isinstance(block_cls(1, 8, 8).act, nn.ReLU)
    assert kinds(block_cls(1, 8, 8, preact=True)) == ["bn", "relu", "conv"] * units


@pytest.mark.parametrize("separable", [False, True])
def test_each_branch_convolves_with_its_own_dilation(separable):
    # A dilation silently ignored (always 1) left every shape and output length as it was: the k-convolutions of
    # each branch must carry the branch's dilation, the 1x1 ones none; an impulse shows taps `dilation` apart.
    model = MSResNet1d(kernels=(3, 5), dilations=(1, 3), widths=(8, 8), layers=(1, 1), stem_channels=8,
                       separable=separable, block="bottleneck")
    for stage in model.stages:
        for branch, kernel, dilation in zip(stage.branches, (3, 5), (1, 3)):
            convs = [m for m in branch.modules() if isinstance(m, nn.Conv1d)]
            wide = [c for c in convs if c.kernel_size != (1,)]
            assert wide and all(c.kernel_size == (kernel,) and c.dilation == (dilation,) for c in wide)
            assert all(c.dilation == (1,) for c in convs if c.kernel_size == (1,))
    block = BasicBlock(1, 1, 1, dilation=2, kernel_size=3, bias=True)
    first = [m for m in block.branch.modules() if isinstance(m, nn.Conv1d)][0]
    with torch.no_grad():
        first.weight.fill_(1.0)
        first.bias.zero_()
        impulse = torch.zeros(1, 1, 9)
        impulse[..., 4] = 1.0
        assert first(impulse).flatten().nonzero().flatten().tolist() == [2, 4, 6]


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
def test_a_multi_scale_stage_fuses_the_branches_as_documented(fusion):
    # A reference for each fusion, from its docstring, on branches that all read the same input.
    import torch.nn.functional as F
    from msresnet1d.models.msresnet import MultiScaleStage

    generator = torch.Generator().manual_seed(0)
    branches = [nn.Conv1d(4, 6, k, padding=k // 2) for k in (1, 3, 5)]
    stage = MultiScaleStage(branches, fusion, 6).double().eval()
    for norm in [m for m in stage.modules() if isinstance(m, nn.BatchNorm1d)]:
        _set_batchnorm_statistics(norm, generator)
    x = torch.randn(2, 4, 10, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        outs = [branch(x) for branch in stage.branches]
        fuse = stage.fuse
        if fusion == "concat":  # concatenate along channels, then 1x1 conv + BN + ReLU
            conv_, norm = fuse.proj[0], fuse.proj[1]
            expected = F.relu(F.batch_norm(F.conv1d(torch.cat(outs, dim=1), conv_.weight), norm.running_mean,
                                           norm.running_var, norm.weight, norm.bias, training=False, eps=norm.eps))
        elif fusion == "sum":
            expected = outs[0] + outs[1] + outs[2]
        else:  # selective kernel: per channel, a softmax over the branches of an MLP of the pooled sum
            pooled = (outs[0] + outs[1] + outs[2]).mean(dim=-1)  # (N, C)
            hidden = F.relu(F.linear(pooled, fuse.squeeze[0].weight, fuse.squeeze[0].bias))
            logits = F.linear(hidden, fuse.excite.weight, fuse.excite.bias).view(2, 3, 6)
            weights = torch.softmax(logits, dim=1)
            assert not torch.allclose(weights, torch.full_like(weights, 1 / 3), atol=1e-3)
            expected = sum(weights[:, b, :, None] * outs[b] for b in range(3))
        torch.testing.assert_close(stage(x), expected)


def test_create_model_refuses_a_factory_that_builds_no_residual_network():
    from msresnet1d.models import registry

    @registry.register_model
    def plain_linear_for_this_test(**kwargs) -> nn.Module:
        return nn.Linear(2, 2)

    try:
        with pytest.raises(TypeError, match=r"model 'plain_linear_for_this_test': its factory built a Linear, not a "
                                            r"msresnet1d\.models\.base\.ResidualNetwork"):
            create_model("plain_linear_for_this_test")
    finally:
        del registry._MODELS["plain_linear_for_this_test"]


def test_the_package_is_typed_and_create_model_says_what_it_builds():
    import importlib.resources
    import tomllib
    import typing
    from pathlib import Path

    from msresnet1d.models import registry
    from msresnet1d.models.base import ResidualNetwork

    assert importlib.resources.files("msresnet1d").joinpath("py.typed").is_file()  # PEP 561: type checkers read the hints
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["msresnet1d"]  # and wheels carry it
    assert typing.get_type_hints(registry.create_model)["return"] is ResidualNetwork
    for name in list_models():
        assert isinstance(create_model(name), ResidualNetwork), name


def test_a_model_built_on_the_meta_device_imports_no_compiler():
    # evaluate, predict and export check a checkpoint's weights on a meta model first: torch's init
    # functions and indexing on meta tensors imported sympy and torch._dynamo, a second of each command
    script = ("import sys, torch\nfrom msresnet1d import create_model\n"
              "from msresnet1d.models.blocks import init_weights\n"
              "with torch.device('meta'):\n"
              "    for name in ('msresnet1d_beat', 'resnet18_d2l'):\n"
              "        init_weights(create_model(name, extra_features=5 if name.startswith('ms') else 0))\n"
              "print(sorted(m for m in ('sympy', 'torch._dynamo') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


def test_init_weights_leaves_only_a_model_wholly_on_the_meta_device():
    from msresnet1d.models.blocks import init_weights

    partly = nn.Sequential(nn.Conv1d(1, 8, 3), nn.Linear(4, 2, device="meta"))
    with torch.no_grad():
        partly[0].weight.fill_(1.0)
    init_weights(partly)  # the CPU convolution is initialised
    assert not torch.equal(partly[0].weight, torch.ones_like(partly[0].weight))
