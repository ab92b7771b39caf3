"""AdaptFormer (models/adapters/adaptformer.py): its formula, its zero start, and its place beside each MLP."""

import pytest
import timm
import torch
import torch.nn.functional as F

from bagmar_cli.models.adapters.adaptformer import AdaptFormer, MlpWithAdapter, add_adaptformer, count_mlp_blocks


def _randomised(adapter):
    with torch.no_grad():
        for param in adapter.parameters():
            param.normal_()
    return adapter


def test_the_adapter_is_its_formula():
    torch.manual_seed(0)
    adapter = _randomised(AdaptFormer(6, 3, scale=0.1))
    x = torch.randn(4, 5, 6)
    ln = F.layer_norm(x, (6,), adapter.ln.weight, adapter.ln.bias)
    hidden = torch.clamp(ln @ adapter.down_proj.weight.T + adapter.down_proj.bias, min=0)
    expected = (hidden @ adapter.up_proj.weight.T + adapter.up_proj.bias) * adapter.scale
    torch.testing.assert_close(adapter(x), expected)


def test_the_adapter_starts_at_zero_with_lifts_scale_and_learns_through_every_part():
    torch.manual_seed(0)
    adapter = AdaptFormer(6, 3)
    assert adapter.scale.item() == 1.0  # LIFT's learned scale starts at 1
    x = torch.randn(4, 6)
    assert torch.equal(adapter(x), torch.zeros(4, 6))
    adapter(x).sum().backward()
    assert adapter.up_proj.weight.grad.abs().sum() > 0  # the zero up-projection gets a gradient at once
    assert adapter.down_proj.weight.grad.abs().sum() == 0  # ... which the down-projection waits for


def test_the_gradient_matches_finite_differences():
    torch.manual_seed(0)
    adapter = _randomised(AdaptFormer(4, 2)).double()
    x = torch.randn(3, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(adapter, (x,))


@pytest.mark.parametrize(("backbone", "size", "blocks"), [("test_vit", 160, 6), ("test_convnext", 32, 9)])
def test_beside_every_mlp_the_backbone_starts_as_it_was(backbone, size, blocks):
    torch.manual_seed(0)
    model = timm.create_model(backbone, pretrained=False, num_classes=0).eval()
    x = torch.randn(2, 3, size, size)
    before = model(x)
    assert count_mlp_blocks(model) == blocks
    assert add_adaptformer(model, 4, 1.0) == blocks
    wrappers = [m for m in model.modules() if isinstance(m, MlpWithAdapter)]
    assert len(wrappers) == blocks
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_the_adapter_reads_the_residual_stream_before_the_blocks_norm_as_lift():
    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=0).eval()
    block = model.blocks[0]
    norm, mlp = block.norm2, block.mlp
    add_adaptformer(model, 4, 1.0)
    _randomised(block.mlp.adaptformer)
    x = torch.randn(2, 7, norm.normalized_shape[0])
    torch.testing.assert_close(block.mlp(x), mlp(norm(x)) + block.mlp.adaptformer(x))
    assert isinstance(block.norm2, torch.nn.Identity)
