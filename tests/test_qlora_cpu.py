"""QLoRA on the CPU: a validation pass must not break the 4-bit layers' gradients.

bitsandbytes 0.50 repacks a Linear4bit for its CPU inference kernel (gemv_4bit) on the first
eval-mode forward without grad, and that kernel has no autograd: training after a validation pass
then backpropagates wrong gradients. bench's training turns the repacking off.
"""

import bitsandbytes as bnb  # a core dependency (pyproject.toml): missing, this module fails; it is never skipped
import pytest
import torch

from strategies.training.weights import keep_4bit_layers_differentiable


def _layer():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 64, bias=False)
    q = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    q.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False, quant_type="nf4")
    return torch.nn.Sequential(q.to("cpu"))


def _grad_after_eval_pass(model):
    """Input gradient of a training step, before and after an eval-mode no-grad forward."""
    x, g = torch.randn(5, 64), torch.randn(5, 64)

    def grad():
        xi = x.clone().requires_grad_(True)
        model.train()
        model(xi).backward(g)
        return xi.grad

    before = grad()
    model.eval()
    with torch.no_grad():
        model(x)  # the validation pass that runs before training
    return before, grad()


def test_training_after_an_eval_pass_keeps_exact_gradients():
    model = _layer()
    keep_4bit_layers_differentiable(model)
    before, after = _grad_after_eval_pass(model)
    assert not getattr(model[0].weight.quant_state, "packing_format_for_cpu", False)
    assert torch.allclose(before, after, atol=1e-5)


def test_without_the_fix_gradients_go_wrong_on_capable_cpus():
    model = _layer()
    if not getattr(model[0], "support_avx512bf16_for_cpu", False):
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes never repacks here")
    before, after = _grad_after_eval_pass(model)
    assert getattr(model[0].weight.quant_state, "packing_format_for_cpu", False)
    # the bug bench works around: no gradient reaches the layers below any more
    assert after is None or not torch.allclose(before, after, atol=1e-3)
