"""Pilot for issue #21's "many tasks at once", the variant the vmap pilot left open: with LoRA the
backbone is frozen and the same for every task, so k tasks' batches can go through it as one batch
of k x 16 sequences (one large matrix product on shared weights, which is what the issue's batch-64
measurement gained from), with only each task's low-rank update and head applied per task (batched
products over the task axis). Is that faster per task-step than the k tasks one after the other?

Both paths use the same modules (``MultiTaskLoRA`` on the attention query and value projections,
as peft's default for BERT-like models, rank 8, alpha 16; a linear head per task on the mean-pooled
output; torch's Adam on the adapters and heads); the sequential path has one task slot and runs k
steps at batch 16, the batched path has k slots and runs one step at batch k x 16. Steps alternate
over ``--repeats``, one untimed step of each first; the output is milliseconds per task-step.

    python benchmarks/pilot_shared_base_lora.py --tasks 4 --steps 3 --repeats 2
"""
from __future__ import annotations

from pilot_timing import clock, compare, pilot_arguments


def main() -> None:
    import torch
    from torch import nn

    from metaft.algorithms.outer import make_optimizer
    from metaft.suite.models import load_backbone

    parser = pilot_arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    device = torch.device(args.device)

    class MultiTaskLoRA(nn.Module):
        """A frozen linear layer plus one LoRA update per task slot; the input's batch is the task
        slots' batches one after the other."""

        def __init__(self, base: nn.Linear, slots: int, r: int = 8, alpha: int = 16):
            super().__init__()
            self.base, self.scale = base, alpha / r
            self.A = nn.Parameter(torch.randn(slots, base.in_features, r, device=device) / base.in_features ** 0.5)
            self.B = nn.Parameter(torch.randn(slots, r, base.out_features, device=device) * 0.01)

        def forward(self, x):
            per_task = x.reshape(self.A.shape[0], -1, x.shape[-1])
            update = torch.bmm(torch.bmm(per_task, self.A.to(x.dtype)), self.B.to(x.dtype))
            return self.base(x) + self.scale * update.reshape(*x.shape[:-1], -1)

    def build(slots: int, ways: int = 4) -> tuple[nn.Module, nn.Parameter, torch.optim.Optimizer]:
        torch.manual_seed(0)
        backbone = load_backbone("minilm").backbone.to(device).train()
        for p in backbone.parameters():
            p.requires_grad_(False)
        for layer in backbone.encoder.layer:
            attention = layer.attention.self
            attention.query = MultiTaskLoRA(attention.query, slots)
            attention.value = MultiTaskLoRA(attention.value, slots)
        head = nn.Parameter(torch.randn(slots, backbone.config.hidden_size, ways, device=device) * 0.02)
        trainable = [p for p in backbone.parameters() if p.requires_grad] + [head]
        return backbone, head, make_optimizer("adam", trainable, 1e-4)

    def step(model, head, opt, ids, mask, labels, precision):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = ((hidden * m).sum(1) / m.sum(1)).float().reshape(head.shape[0], -1, head.shape[1])
        logits = torch.bmm(pooled, head).reshape(-1, head.shape[2])
        loss = nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    k = args.tasks
    one, one_head, one_opt = build(1)
    many, many_head, many_opt = build(k)
    vocab = int(one.config.vocab_size)
    ids = torch.randint(1000, vocab, (k * args.batch, args.length), device=device)
    mask = torch.ones_like(ids)
    mask[:, -min(8, args.length // 2):] = 0  # padding, as real batches have
    labels = torch.randint(0, 4, (k * args.batch,), device=device)


    def sequential(precision: str) -> float:
        start = clock(device)
        for _ in range(args.steps):
            for i in range(k):
                rows = slice(i * args.batch, (i + 1) * args.batch)
                step(one, one_head, one_opt, ids[rows], mask[rows], labels[rows], precision)
        return (clock(device) - start) / (args.steps * k)

    def batched(precision: str) -> float:
        start = clock(device)
        for _ in range(args.steps):
            step(many, many_head, many_opt, ids, mask, labels, precision)
        return (clock(device) - start) / (args.steps * k)

    compare(args, device, "LoRA tasks", "shared-base batch", sequential, batched)


if __name__ == "__main__":
    main()
