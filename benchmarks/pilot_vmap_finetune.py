"""Pilot for issue #21's "many tasks at once": is fine-tuning k tasks as one vmapped computation
(stacked per-task weights, `torch.func.vmap` over `functional_call` + `grad`) faster per task-step
than k sequential steps, on this machine, for the packaged MiniLM?

Each task has its own weights (all starting from the same init), its own batch of 16 sequences of
64 tokens and its own linear head on the mean-pooled encoder output, as in the shared fine-tuning
recipe; dropout is on (train mode; `randomness="different"` gives each task its own masks). The
update is SGD in both paths (the optimizer's elementwise arithmetic is the same work either way,
so it is left out of the comparison). Sequential and vmapped steps alternate over ``--repeats``;
the output is milliseconds per task-step and the ratio, for fp32 and bf16 autocast.

    python benchmarks/pilot_vmap_finetune.py --tasks 4 --steps 3 --repeats 2
"""
from __future__ import annotations

import copy

from pilot_timing import clock, compare, pilot_arguments


def main() -> None:
    import torch
    from torch.func import functional_call, grad, stack_module_state, vmap

    from metaft.suite.models import load_backbone

    parser = pilot_arguments(__doc__.splitlines()[0])
    parser.add_argument("--attention", default="sdpa", help="attention implementation (sdpa or eager)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    backbone = load_backbone("minilm").backbone.to(device).train()
    backbone.set_attn_implementation(args.attention)
    ways, k, lr = 4, args.tasks, 1e-4

    class Task(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = copy.deepcopy(backbone)
            self.head = torch.nn.Linear(backbone.config.hidden_size, ways, device=device)

        def forward(self, ids, mask, precision):
            # a prepared 4D additive mask: transformers returns it as is, where building one from the 2D mask
            # branches on its values (padding_mask.all()), which vmap refuses
            bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                hidden = self.backbone(input_ids=ids, attention_mask=bias).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            return self.head(((hidden * m).sum(1) / m.sum(1)).float())

    models = [Task() for _ in range(k)]
    vocab = backbone.config.vocab_size
    ids = torch.randint(1000, vocab, (k, args.batch, args.length), device=device)
    mask = torch.ones_like(ids)
    mask[:, :, -min(8, args.length // 2):] = 0  # padding, as real batches have
    labels = torch.randint(0, ways, (k, args.batch), device=device)

    def sequential(precision: str) -> float:
        start = clock(device)
        for _ in range(args.steps):
            for i, model in enumerate(models):
                loss = torch.nn.functional.cross_entropy(model(ids[i], mask[i], precision), labels[i])
                model.zero_grad(set_to_none=True)
                loss.backward()
                with torch.no_grad():
                    for p in model.parameters():
                        if p.grad is not None:  # (the pooler is not on the path)
                            p -= lr * p.grad
        return (clock(device) - start) / (args.steps * k)

    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def loss_of(p, b, x, m, y, precision):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (x, m, precision)), y)

    def batched(precision: str) -> float:
        step = vmap(grad(lambda p, b, x, m, y: loss_of(p, b, x, m, y, precision)), randomness="different")
        start = clock(device)
        for _ in range(args.steps):
            grads = step(params, buffers, ids, mask, labels)
            with torch.no_grad():
                for name, g in grads.items():
                    params[name] -= lr * g
        return (clock(device) - start) / (args.steps * k)

    compare(args, device, "tasks", "vmapped", sequential, batched)


if __name__ == "__main__":
    main()
