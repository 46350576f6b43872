"""Meta-gradients against finite differences and closed forms, in float64."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from metaft.algorithms import Episode, get_algorithm


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def loss_fn(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def task(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 2, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    return Episode((x[:6], y[:6]), (x[6:], y[6:]))


def meta_gradient(algo, model, ep):
    model.zero_grad()
    objective, _ = algo.meta_loss(model, ep, loss_fn)
    objective.backward()
    return [p.grad.clone() for p in model.parameters()]


def manual_sgd(model, batch, steps, lr):
    fast = copy.deepcopy(model)
    for _ in range(steps):
        fast.zero_grad()
        loss_fn(fast, batch).backward()
        with torch.no_grad():
            for p in fast.parameters():
                p -= lr * p.grad
    return fast


def assert_matches_central_differences(model, analytic, objective, eps=1e-6):
    """Every coordinate of ``analytic`` (one tensor per parameter) equals the central difference
    of ``objective()`` (float64)."""
    for p, g in zip(model.parameters(), analytic):
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            flat[i] = old + eps; up = objective()
            flat[i] = old - eps; down = objective()
            flat[i] = old
            assert g.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_maml_meta_gradient_matches_finite_differences():
    model, ep = small_net(), task()
    algo = get_algorithm("maml", inner_lr=0.1, inner_steps=3)
    analytic = meta_gradient(algo, model, ep)

    def objective():
        fast = manual_sgd(model, ep.support, 3, 0.1)
        return float(loss_fn(fast, ep.query).detach())

    assert_matches_central_differences(model, analytic, objective)


def test_maml_differs_from_its_first_order_approximation():
    model, ep = small_net(), task()
    second = meta_gradient(get_algorithm("maml", inner_lr=0.1, inner_steps=3), model, ep)
    first = meta_gradient(get_algorithm("maml", inner_lr=0.1, inner_steps=3, first_order=True), model, ep)
    assert max((a - b).abs().max().item() for a, b in zip(second, first)) > 1e-4


def test_fomaml_gradient_is_the_query_gradient_at_the_adapted_weights():
    model, ep = small_net(), task()
    fo = meta_gradient(get_algorithm("fomaml", inner_lr=0.1, inner_steps=3), model, ep)
    fast = manual_sgd(model, ep.support, 3, 0.1)
    fast.zero_grad()
    loss_fn(fast, ep.query).backward()
    for a, p in zip(fo, fast.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-10, atol=1e-12)


def test_maml_with_zero_inner_steps_is_ordinary_training():
    model, ep = small_net(), task()
    g = meta_gradient(get_algorithm("maml", inner_steps=0), model, ep)
    plain = copy.deepcopy(model)
    loss_fn(plain, ep.query).backward()
    for a, p in zip(g, plain.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_reptile_step_equals_its_formula():
    model, ep = small_net(), task()
    algo = get_algorithm("reptile", inner_lr=0.05, inner_steps=4, outer="interpolate", epsilon=0.3,
                         meta_batch_size=1)
    fast = manual_sgd(model, ep.support, 4, 0.05)
    expected = [p.detach() + 0.3 * (f.detach() - p.detach()) for p, f in zip(model.parameters(), fast.parameters())]
    algo.meta_train(model, [ep], loss_fn)
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-10, atol=1e-12)


def test_reptile_meta_batch_moves_towards_the_mean_of_adapted_weights():
    model, eps_ = small_net(), [task(1), task(2)]
    algo = get_algorithm("reptile", inner_lr=0.05, inner_steps=2, outer="interpolate", epsilon=1.0,
                         meta_batch_size=2)
    fasts = [manual_sgd(model, ep.support, 2, 0.05) for ep in eps_]
    mean = [(a.detach() + b.detach()) / 2 for a, b in zip(fasts[0].parameters(), fasts[1].parameters())]
    algo.meta_train(model, eps_, loss_fn)
    for p, m in zip(model.parameters(), mean):
        torch.testing.assert_close(p.detach(), m)


def test_anil_adapts_only_the_head_in_the_inner_loop():
    model, ep = small_net(), task()
    anil = get_algorithm("anil", inner_lr=0.1, inner_steps=2)
    g = meta_gradient(anil, model, ep)
    # closed form: adapt the last layer only, then the query gradient through that adaptation
    body, head = model[:2], model[2]
    params = list(model.parameters())
    fw, fb = head.weight, head.bias
    x, y = ep.support
    for _ in range(2):
        l = ((body(x) @ fw.T + fb - y) ** 2).mean()
        gw, gb = torch.autograd.grad(l, [fw, fb], create_graph=True)
        fw, fb = fw - 0.1 * gw, fb - 0.1 * gb
    xq, yq = ep.query
    q = ((body(xq) @ fw.T + fb - yq) ** 2).mean()
    expected = torch.autograd.grad(q, params)
    for a, e in zip(g, expected):
        torch.testing.assert_close(a, e)


def test_metasgd_learns_its_step_sizes():
    model, ep = small_net(), task()
    algo = get_algorithm("metasgd", inner_lr=0.05, inner_steps=1, outer_lr=1e-3, lr_lr=1e-2, meta_batch_size=1)
    algo.meta_train(model, [ep] * 5, loss_fn)
    lrs = algo.learned_lrs()
    assert set(lrs) == {"0", "2"}  # one step size per layer
    assert all(v != pytest.approx(0.05, abs=1e-6) for v in lrs.values())


def test_checkpointed_maml_gives_the_unrolled_meta_gradient_with_dropout_on():
    """Same random state, same meta-gradient (float64, to rounding); dropout masks are replayed."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 1)).double().train()
    ep = task()
    plain = get_algorithm("maml", inner_lr=0.1, inner_steps=4)
    ckpt = get_algorithm("maml", inner_lr=0.1, inner_steps=4, checkpoint_inner=True)
    torch.manual_seed(7)
    g_plain = meta_gradient(plain, model, ep)
    after_plain = torch.rand(1)
    torch.manual_seed(7)
    g_ckpt = meta_gradient(ckpt, model, ep)
    after_ckpt = torch.rand(1)
    for a, b in zip(g_plain, g_ckpt):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.equal(after_plain, after_ckpt)  # the random stream continues as after one pass
    torch.manual_seed(8)  # another dropout draw: another gradient (the masks matter, and were replayed)
    assert any(not torch.allclose(a, b) for a, b in zip(meta_gradient(ckpt, model, ep), g_ckpt))


def test_second_order_maml_out_of_memory_switches_to_checkpointing_and_redoes_the_step():
    """An out-of-memory error inside a meta-step (injected here, where no GPU runs: CUDA raises the
    same torch.OutOfMemoryError) switches MAML to the checkpointed inner loop and redoes the step
    from the same random state, so the run is the run with checkpoint_inner=True from the start,
    bit for bit (dropout on); other errors, and first-order MAML, which has no such path, raise."""
    torch.manual_seed(0)
    start = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 1)).double().train()
    episodes = [task(seed) for seed in range(1, 7)]

    def run(algo, loss):
        model = copy.deepcopy(start)
        torch.manual_seed(7)
        stats = algo.meta_train(model, episodes, loss, meta_batch_size=2)
        return [p.detach().clone() for p in model.parameters()], stats

    def failing(error, at_call):
        calls = {"n": 0}

        def loss(model, batch):
            calls["n"] += 1
            if calls["n"] == at_call:  # the first meta-step's second episode: the first one's gradient is in
                raise error
            return loss_fn(model, batch)
        return loss

    settings = {"inner_lr": 0.1, "inner_steps": 3, "outer_lr": 1e-2}
    checkpointed, _ = run(get_algorithm("maml", checkpoint_inner=True, **settings), loss_fn)
    unrolled, plain_stats = run(get_algorithm("maml", **settings), loss_fn)
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    switched, stats = run(get_algorithm("maml", **settings), failing(oom, at_call=5))
    assert stats.memory_fallback_step == 1 and plain_stats.memory_fallback_step is None
    assert stats.steps == 3 and stats.episodes == 6  # the redone step is counted once
    assert all(torch.equal(a, b) for a, b in zip(switched, checkpointed))
    assert not all(torch.equal(a, b) for a, b in zip(unrolled, checkpointed))  # the paths differ in rounding
    with pytest.raises(RuntimeError, match="something else"):
        run(get_algorithm("maml", **settings), failing(RuntimeError("something else"), at_call=5))
    with pytest.raises(torch.OutOfMemoryError):
        run(get_algorithm("fomaml", **settings), failing(oom, at_call=5))


def test_checkpointed_maml_matches_finite_differences():
    model, ep = small_net(), task()
    algo = get_algorithm("maml", inner_lr=0.1, inner_steps=3, checkpoint_inner=True)
    analytic = meta_gradient(algo, model, ep)

    def objective():
        fast = manual_sgd(model, ep.support, 3, 0.1)
        return float(loss_fn(fast, ep.query).detach())

    assert_matches_central_differences(model, analytic, objective)


def batched_meta_gradient(algo, model, episodes):
    """The gradient of one meta-batch through `meta_batch_loss` (the vmap path); fails if the
    algorithm fell back to the task-by-task loop."""
    model.zero_grad()
    together = algo.meta_batch_loss(model, episodes, loss_fn)
    assert together is not None, "the batched path was not taken"
    together[0].backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["maml", "fomaml"])
def test_batched_tasks_give_the_sum_of_the_sequential_meta_gradients(name):
    """vmap over 4 tasks = the 4 tasks one after another (float64, to rounding)."""
    model, episodes = small_net(), [task(seed) for seed in range(1, 5)]
    sequential = get_algorithm(name, inner_lr=0.1, inner_steps=3)
    batched = get_algorithm(name, inner_lr=0.1, inner_steps=3, batched_tasks=True)
    per_task = [meta_gradient(sequential, model, ep) for ep in episodes]
    expected = [sum(gs) for gs in zip(*per_task)]
    for a, b in zip(expected, batched_meta_gradient(batched, model, episodes)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # unequal shapes cannot be stacked: the algorithm falls back to the sequential loop
    short = Episode((episodes[0].support[0][:4], episodes[0].support[1][:4]), episodes[0].query)
    assert batched.meta_batch_loss(model, [short, *episodes[1:]], loss_fn) is None


def test_batched_maml_matches_finite_differences():
    model, episodes = small_net(), [task(seed) for seed in (1, 2)]
    analytic = batched_meta_gradient(get_algorithm("maml", inner_lr=0.1, inner_steps=3, batched_tasks=True),
                                     model, episodes)

    def objective():
        return sum(float(loss_fn(manual_sgd(model, ep.support, 3, 0.1), ep.query).detach()) for ep in episodes)

    assert_matches_central_differences(model, analytic, objective)


def test_batched_tasks_with_dropout_draw_per_task_masks():
    """Under vmap, dropout is drawn per task (randomness="different"): not the sequential loop's
    stream, so equality is statistical, not exact; the path must run and be finite."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 1)).double().train()
    episodes = [task(seed) for seed in range(1, 4)]
    algo = get_algorithm("maml", inner_lr=0.1, inner_steps=2, batched_tasks=True)
    torch.manual_seed(1)
    g1 = batched_meta_gradient(algo, model, episodes)
    torch.manual_seed(2)
    g2 = batched_meta_gradient(algo, model, episodes)
    assert all(torch.isfinite(g).all() for g in g1) and any(not torch.allclose(a, b) for a, b in zip(g1, g2))


def test_the_functional_loop_leaves_no_loss_function_on_the_model():
    """The reused functional_call wrapper lives on the model; it must not keep the last loss
    function (a closure may hold tensors, and a lambda would make the model unpicklable)."""
    import pickle

    model, ep = small_net(), task()
    meta_gradient(get_algorithm("maml", inner_lr=0.1, inner_steps=2), model, ep)
    wrapper = model.__dict__["_functional_loss_wrapper"]
    assert wrapper.loss_fn is None and pickle.loads(pickle.dumps(model)) is not None
    clone = copy.deepcopy(model)
    assert clone.__dict__["_functional_loss_wrapper"].model is clone


def test_the_suites_adam_is_the_fused_kernel_and_follows_the_for_loop_kernel():
    """The suite's Adam (fine-tuning, meta-training outer steps) is torch's fused kernel where the
    parameters allow it (4.5-5x faster per CPU step, docs/findings/2026-12-fused-adam.md), and its
    trajectory is the for-loop kernel's to float32 rounding; parameters it cannot take get the
    for-loop kernel instead of an error."""
    from metaft.algorithms.outer import make_optimizer

    def trajectory(fused: bool):
        g = torch.Generator().manual_seed(0)
        params = [nn.Parameter(torch.randn(shape, generator=g)) for shape in ((64, 32), (32,), (3, 5, 7))]
        opt = make_optimizer("adam", params, 1e-3) if fused else torch.optim.Adam(params, lr=1e-3, foreach=False)
        for _ in range(20):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        return opt, params

    opt, fused = trajectory(True)
    assert opt.defaults["fused"] is True
    _, loop = trajectory(False)
    assert not all(torch.equal(a, b) for a, b in zip(fused, loop))  # a different kernel, not a relabelled one
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    on_meta = make_optimizer("adam", [nn.Parameter(torch.empty(3, device="meta"))], 1e-3)
    assert not on_meta.defaults["fused"]
